"""REML fits of the comparators' per-variable mixed model (random intercept and
slope per patient): statsmodels' MixedLM and optimisers, with the likelihood, its
gradient and the GLS fixed effects computed for all patients at once."""

from __future__ import annotations

import logging
import warnings

import numpy as np
from statsmodels.regression.mixed_linear_model import MixedLM, MixedLMParams
from statsmodels.tools.sm_exceptions import ConvergenceWarning

log = logging.getLogger("odevae.evaluate.prediction.mixed")


class BatchedMixedLM(MixedLM):
    """statsmodels' MixedLM with its profiled REML likelihood, the likelihood's
    gradient in the covariance and the GLS fixed effects computed for all patients
    at once.

    statsmodels evaluates each with a Python loop over the patients (a
    Sherman–Morrison–Woodbury solve per patient and evaluation), which is most of
    a fit's time. For this model (random intercept and slope, no variance
    components, no penalty) the same formulas are sums over patients of 2 × 2
    solves with Q_i = G⁻¹ + Z_i'Z_i, done here as one batched solve over
    per-patient moments computed once. They equal statsmodels' to rounding
    (``tests/test_mixed_reml.py``); the optimisers and the parametrisation are
    statsmodels' own, and any other model falls back to them.

    statsmodels ends every fit with the Hessian for the standard errors, a
    per-patient loop that was a quarter of a fit's time. Prediction never uses
    them, so it is skipped unless ``standard_errors`` is set: the estimates and
    the likelihood are the same, and the result's ``bse`` is NaN. Two things of
    the Hessian go with it: its warnings (not positive definite: logged by
    :func:`reml`; singular) and the ``LinAlgError`` of inverting an exactly
    singular one, which made :func:`reml` drop that optimiser's fit.
    """

    #: compute the final Hessian (the result's standard errors)
    standard_errors = False

    def hessian(self, params):
        if self.standard_errors:
            return super().hessian(params)
        n = self.k_fe + self.k_re2 + self.k_vc
        return np.full((n, n), np.nan), False

    def _moments(self) -> dict:
        """Per-patient Z'Z, Z'[X y] and the totals X'[X y], in patient order."""
        if getattr(self, "_moment_cache", None) is None:
            index = np.empty(self.n_totobs, dtype=int)
            for g, label in enumerate(self.group_labels):
                index[self.row_indices[label]] = g
            z, xy = self.exog_re, np.column_stack([self.exog, self.endog])
            n_groups = len(self.group_labels)
            ztz = np.zeros((n_groups, 2, 2))
            ztxy = np.zeros((n_groups, 2, xy.shape[1]))
            np.add.at(ztz, index, z[:, :, None] * z[:, None, :])
            np.add.at(ztxy, index, z[:, :, None] * xy[:, None, :])
            self._moment_cache = {
                "index": index,
                "ztz": ztz,
                "ztxy": ztxy,
                "xtxy": self.exog.T @ xy,
            }
        return self._moment_cache

    def _vectorised(self) -> bool:
        return (
            self.k_re == 2
            and self.k_vc == 0
            and getattr(self, "cov_pen", None) is None
            and getattr(self, "fe_pen", None) is None
        )

    def get_fe_params(self, cov_re, vcomp, tol=1e-10):
        if not self._vectorised():
            return super().get_fe_params(cov_re, vcomp, tol)
        # L-BFGS asks for the likelihood and then its gradient at the same point,
        # and statsmodels profiles β out in each: the last result is reused when
        # the covariance is the same, bit for bit
        key = (cov_re.tobytes(), tol)
        last = getattr(self, "_last_fe", None)
        if last is not None and last[0] == key:
            return last[1].copy(), last[2]
        fe_params, singular = self._fe_params(cov_re, tol)
        self._last_fe = (key, fe_params.copy(), singular)
        return fe_params, singular

    def _fe_params(self, cov_re, tol):
        w, v = np.linalg.eigh(cov_re)
        singular = bool(w.min() < tol)
        if singular:  # pseudo-inverse, as statsmodels
            keep = w >= tol
            cov_re_inv = (v[:, keep] / w[keep]) @ v[:, keep].T
        else:
            cov_re_inv = np.linalg.inv(cov_re)
        m = self._moments()
        k = self.k_fe
        solved = np.linalg.solve(m["ztz"] + cov_re_inv, m["ztxy"])
        xtxy = m["xtxy"] - np.einsum("gik,gil->kl", m["ztxy"][:, :, :k], solved)
        if singular:
            fe_params = np.linalg.pinv(xtxy[:, :-1]) @ xtxy[:, -1]
        else:
            fe_params = np.linalg.solve(xtxy[:, :-1], xtxy[:, -1])
        return fe_params, singular

    def _per_patient(self, cov_re, fe_params) -> dict:
        """Per patient (g), with S = V⁻¹ = I − Z Q⁻¹ Z' and Q = G⁻¹ + Z'Z: Z'SZ,
        Z'Sr, Z'SX (r = y − Xβ), log det Q; and the totals r'Sr, X'SX. The last
        point's are reused for the same point (the likelihood's, then its
        gradient's), singular-covariance count included."""
        key = (cov_re.tobytes(), np.asarray(fe_params).tobytes())
        last = getattr(self, "_last_per_patient", None)
        if last is not None and last[0] == key:
            self._cov_sing += last[2]
            return last[1]
        singular = 0
        try:
            cov_re_inv = np.linalg.inv(cov_re)
        except np.linalg.LinAlgError:
            cov_re_inv = np.linalg.pinv(cov_re)
            singular = 1
        self._cov_sing += singular
        per = self._patient_terms(cov_re_inv, fe_params)
        self._last_per_patient = (key, per, singular)
        return per

    def _patient_terms(self, cov_re_inv, fe_params) -> dict:
        m = self._moments()
        k = self.k_fe
        resid = self.endog - self.exog @ fe_params
        z = self.exog_re
        ztr = np.stack(
            [np.bincount(m["index"], z[:, j] * resid, len(m["ztz"])) for j in (0, 1)],
            -1,
        )
        ztz, ztx = m["ztz"], m["ztxy"][:, :, :k]
        q = ztz + cov_re_inv
        rhs = np.concatenate([ztz, ztr[:, :, None], ztx], 2)
        solved = np.linalg.solve(q, rhs)
        s_ztz, s_ztr, s_ztx = solved[:, :, :2], solved[:, :, 2], solved[:, :, 3:]
        return {
            "logdet_q": np.linalg.slogdet(q)[1],
            "zsz": ztz - ztz @ s_ztz,
            "zsr": ztr - np.einsum("gij,gj->gi", ztz, s_ztr),
            "zsx": ztx - ztz @ s_ztx,
            "rsr": resid @ resid - np.einsum("gi,gi->", ztr, s_ztr),
            "xsx": m["xtxy"][:, :k] - np.einsum("gik,gil->kl", ztx, s_ztx),
        }

    def score_full(self, params, calc_fe):
        if calc_fe or not (self._vectorised() and self.reml):
            return super().score_full(params, calc_fe)
        per = self._per_patient(params.cov_re, params.fe_params)
        fac = self.n_totobs - self.k_fe
        xsx_inv = np.linalg.inv(per["xsx"])
        score_re = np.zeros(self.k_re2)
        jj = 0
        for j1 in range(2):
            for j2 in range(j1 + 1):
                both = 1.0 if j1 == j2 else 2.0  # a covariance enters twice
                dlv = both * per["zsz"][:, j1, j2].sum()
                rvavr = both * (per["zsr"][:, j1] * per["zsr"][:, j2]).sum()
                xtax = np.einsum("gk,gl->kl", per["zsx"][:, j1], per["zsx"][:, j2])
                if j1 != j2:
                    xtax = xtax + xtax.T
                score_re[jj] = (
                    -0.5 * dlv
                    + 0.5 * fac * rvavr / per["rsr"]
                    + 0.5 * np.sum(xsx_inv.T * xtax)
                )
                jj += 1
        return np.zeros(self.k_fe), score_re, np.zeros(0)

    def loglike(self, params, profile_fe=True):
        if not (self._vectorised() and self.reml):
            return super().loglike(params, profile_fe)
        if type(params) is not MixedLMParams:
            params = MixedLMParams.from_packed(
                params, self.k_fe, self.k_re, self.use_sqrt, has_fe=False
            )
        cov_re = params.cov_re
        if profile_fe:
            fe_params, singular = self.get_fe_params(cov_re, params.vcomp)
            self._cov_sing += int(singular)
        else:
            fe_params = params.fe_params
        per = self._per_patient(cov_re, fe_params)
        _, cov_re_logdet = np.linalg.slogdet(cov_re)
        n = self.n_totobs - self.k_fe
        _, logdet_xvx = np.linalg.slogdet(per["xsx"])
        qf = per["rsr"]
        logdet_q = per["logdet_q"]
        return float(
            -np.sum(cov_re_logdet + logdet_q) / 2.0
            - n * np.log(qf) / 2.0
            - logdet_xvx / 2.0
            - n * np.log(2 * np.pi) / 2.0
            + n * np.log(n) / 2.0
            - n / 2.0
        )


def reml(model: MixedLM, name: str):
    """REML by L-BFGS polished by Powell (the default BFGS often stalls); the fit
    with the higher finite likelihood, or None. Its ConvergenceWarnings are
    logged."""
    result, messages, errors = None, [], []
    for method in ("lbfgs", "powell"):
        start = None if result is None else result.params_object
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                new = model.fit(reml=True, method=method, start_params=start)
            except (np.linalg.LinAlgError, ValueError) as error:
                errors.append(f"{method}: {error}")
                continue
        if not np.isfinite(new.llf):  # a singular point's rounding, not a fit
            errors.append(f"{method}: log-likelihood {new.llf}")
            continue
        if result is None or new.llf >= result.llf:
            result, messages = new, caught
    for w in messages:
        level = logging.WARNING if w.category is ConvergenceWarning else logging.DEBUG
        log.log(level, "mixed model %s: %s", name, w.message)
    if result is None:
        log.warning("mixed model %s: fit failed (%s)", name, "; ".join(errors))
    return result
