"""A multivariate linear mixed model: the continuous measurements jointly.

For patient i, measurement k (of the m continuous ones) at time t::

    y_ik(t) = [1, t, x_i]·beta_k + [1, t]·b_ik + e,   e ~ N(0, sigma2_k),

with the 2m random effects b_i = (b_i1, ..., b_im) ~ N(0, Psi), Psi a free
2m × 2m covariance: random intercepts and slopes correlated across measurements,
so one measurement's history informs another's prediction. x are the baseline
covariates handled as in the univariate mixed model (training median fill, kept
non-collinear, standardised). 0/1 measurements are not modelled (NaN predictions).
Values are standardised per measurement on the training patients for conditioning.

Fitted by maximum likelihood with an ECME algorithm (:func:`fit_multivariate_mixed`)
instead of statsmodels' MixedLM on the stacked values: MixedLM has a single residual
variance for all measurements, and on pbcseq's six labs (~230 patients, 12 random
effects, 78 covariance parameters) its fit ran 2 minutes without converging; this
fit takes seconds. Prediction
(:func:`multivariate_mixed`) is the patient's BLUP from its history visits.

A fit is saved with :func:`save_fit` and read back, exactly, with :func:`load_fit`:
rule ``comparators`` fits the model on a fold's training patients and rule
``predict`` combines the same fit with the ODE-VAE (``odevae_combined``) instead of
fitting it again.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd

from odevae.data.cohort import Cohort
from odevae.evaluate.prediction.comparators import Prediction, median_gap
from odevae.evaluate.prediction.mixed import (
    MIXED_MODEL_MAX_PATIENTS,
    _covariate_scaling,
    fitting_patients,
)
from odevae.evaluate.prediction.targets import history_mask, in_history_passes

log = logging.getLogger(__name__)

#: Training patients needed per random effect: fewer leave the (2m)² covariance
#: barely identified and EM creeping along its boundary (minutes, no convergence).
PATIENTS_PER_EFFECT = 5


@dataclass(frozen=True)
class MultivariateMixedFit:
    """ML estimates in standardised units of the measurements at ``variables``.

    A value y of measurement ``variables[k]`` is modelled as (y − ``center[k]``) /
    ``scale[k]``; ``beta`` (m, 2 + k') holds per measurement the coefficients of
    [1, t, covariates]; ``psi`` (2m, 2m) the covariance of the random effects ordered
    (intercept, slope) per measurement; ``sigma2`` (m,) the residual variances.
    Covariates as in :class:`~odevae.evaluate.prediction.comparators.MixedFit`.
    """

    variables: np.ndarray
    center: np.ndarray
    scale: np.ndarray
    fill: np.ndarray
    keep: np.ndarray
    mean: np.ndarray
    sd: np.ndarray
    beta: np.ndarray
    psi: np.ndarray
    sigma2: np.ndarray
    loglik: float
    iterations: int
    converged: bool

    def covariates(self, baseline: np.ndarray) -> np.ndarray:
        """Standardised kept covariates (n, k') of raw ``baseline`` (n, q)."""
        x = np.where(np.isnan(baseline), self.fill, baseline)[:, self.keep]
        return (x - self.mean) / self.sd


def modelled_variables(cohort: Cohort) -> np.ndarray:
    """Indices of the measurements whose observed values are not all 0 or 1 and
    that have values from at least 3 patients, more than one per patient on
    average beyond 2 (what random slopes need) and some spread."""
    mask = cohort.observed & cohort.visits[..., None]
    chosen = []
    for k in range(cohort.p):
        values = cohort.values[..., k][mask[..., k]]
        patients = int(mask[..., k].any(1).sum())
        if np.isin(values, (0.0, 1.0)).all():
            continue
        if patients < 3 or len(values) < patients + 2 or np.std(values) == 0:
            name = cohort.measurement_names[k]
            log.warning("multivariate mixed model: too few data for %s", name)
            continue
        chosen.append(k)
    return np.array(chosen, dtype=int)


def _blocks(blocks: np.ndarray) -> np.ndarray:
    """Block-diagonal (..., m·a, m·b) of per-measurement blocks (..., m, a, b)."""
    *lead, m, a, b = blocks.shape
    full = np.einsum("kl,...kab->...kalb", np.eye(m), blocks)
    return full.reshape(*lead, m * a, m * b)


def _moments(f: np.ndarray, y: np.ndarray, mask: np.ndarray):
    """Per patient and measurement Σ f f' and Σ f y over the observed values:
    (n, m, F, F), (n, m, F); ``f`` (n, T, F), ``y``, ``mask`` (n, T, m)."""
    w = mask.astype(float)
    return (
        np.einsum("ntk,nta,ntb->nkab", w, f, f),
        np.einsum("ntk,nta,ntk->nka", w, f, np.where(mask, y, 0.0)),
    )


def _covariance(ff, psi, sigma2):
    """A = Z'R⁻¹Z and C = (Ψ⁻¹ + A)⁻¹ = (I + ΨA)⁻¹Ψ (valid for singular Ψ), each
    (n, 2m, 2m)."""
    a = _blocks(ff[..., :2, :2] / sigma2[:, None, None])
    c = np.linalg.solve(np.eye(len(psi)) + psi @ a, np.broadcast_to(psi, a.shape))
    return a, (c + np.swapaxes(c, 1, 2)) / 2


def _residuals(f, y, mask, beta):
    """Z'r (n, m, 2) and r'r (n, m) of the residuals r = y − Xβ per patient and
    measurement, over the observed values; ``f``, ``y``, ``mask`` as
    :func:`_moments` takes them. From the values, not from the moments: a pass
    over Σ f f' (n, m, F, F) per iteration cost more than the rest of ECME."""
    r = np.where(mask, y - f @ beta.T, 0.0)  # (n, T, m)
    return np.einsum("ntk,nti->nki", r, f[..., :2]), (r * r).sum(1)


def _posterior(counts, zr, rr, psi, sigma2, a, c):
    """BLUP b (n, 2m) and each patient's log likelihood (n,) from the values per
    patient and measurement (``counts``) and the residual moments of
    :func:`_residuals`, with A, C of :func:`_covariance`.

    With u = Z'R⁻¹r (r = y − Xβ): b = C u and −2 log L = Σ n_k log(2π σ²_k) +
    log|I + ΨA| + r'R⁻¹r − u'C u (Woodbury and the determinant lemma).
    """
    n, m = rr.shape
    u = (zr / sigma2[:, None]).reshape(n, 2 * m)
    b = np.einsum("nij,nj->ni", c, u)
    sign, logdet = np.linalg.slogdet(np.eye(2 * m) + psi @ a)
    logdet = np.where(sign > 0, logdet, np.inf)  # a Ψ that is no covariance
    quad = (rr / sigma2).sum(1) - np.einsum("ni,ni->n", u, b)
    loglik = -0.5 * ((counts * np.log(2 * np.pi * sigma2)).sum(1) + logdet + quad)
    return b, loglik


def _gls(xx, xy, xz, zy, c, sigma2):
    """Fixed effects β (m, F) by generalised least squares given C (Σ X'V⁻¹X β =
    Σ X'V⁻¹y with V⁻¹ = R⁻¹ − R⁻¹ZCZ'R⁻¹) from the moments of :func:`_moments`:
    ``xx`` (m, F, F) and ``xy`` (m, F) summed over the patients, ``xz`` (n, m, F,
    2) and ``zy`` (n, m, 2) per patient; X'R⁻¹Z is block-diagonal per measurement.

    The correction Σ_n X'R⁻¹Z C Z'R⁻¹X is matrix products, the last over all
    patients at once per measurement k: as one three-operand einsum it took
    minutes per fit with ~50 covariates, and as one batched product over k its
    operands' transposed copies cost a third of an ECME iteration.
    """
    n, m, size = xz.shape[:3]
    xrz = xz / sigma2[:, None, None]
    # cz[n, l, (k, i), b] = Σ_j C[n, (k, i), (l, j)] xrz[n, l, b, j]
    cz = c.reshape(n, 2 * m, m, 2).transpose(0, 2, 1, 3) @ xrz.transpose(0, 1, 3, 2)
    cz = cz.reshape(n, m, m, 2, size)  # (n, l, k, i, b)
    correction = np.empty((m, size, m, size))
    for k in range(m):
        xr = xrz[:, k].transpose(1, 0, 2).reshape(size, 2 * n)  # (a, (n, i))
        ck = cz[:, :, k].transpose(0, 2, 1, 3).reshape(2 * n, m * size)
        correction[k] = (xr @ ck).reshape(size, m, size)  # (a, l, b)
    left = _blocks(xx / sigma2[:, None, None]) - correction.reshape(m * size, m * size)
    czy = np.einsum("nij,nj->ni", c, (zy / sigma2[:, None]).reshape(n, 2 * m))
    right = (xy / sigma2[:, None]).ravel() - np.einsum(
        "nkai,nki->ka", xrz, czy.reshape(n, m, 2)
    ).ravel()
    return np.linalg.solve(left, right).reshape(m, size)


class _ECME:
    """One ECME evaluation of :func:`_posterior`'s model at (Ψ, σ²): β by GLS (the
    conditional maximum), the log likelihood there, and the EM update of (Ψ, σ²)."""

    def __init__(self, f, y, mask, shared):
        self.f, self.y, self.mask, self.shared = f, y, mask, shared
        self.ff, fy = _moments(f, y, mask)
        self.counts = self.ff[..., 0, 0]
        self.xx, self.xy = self.ff.sum(0), fy.sum(0)
        self.xz, self.zy = self.ff[..., :2].copy(), fy[..., :2]
        self.gg = self.ff[..., :2, :2]
        self.evaluations = 0

    def __call__(self, psi, sigma2):
        """β, the log likelihood and the updated Ψ, σ² from ``psi``, ``sigma2``."""
        self.evaluations += 1
        gg, counts = self.gg, self.counts
        a, c = _covariance(self.ff, psi, sigma2)
        beta = _gls(self.xx, self.xy, self.xz, self.zy, c, sigma2)
        zr, rr = _residuals(self.f, self.y, self.mask, beta)
        b, loglik = _posterior(counts, zr, rr, psi, sigma2, a, c)
        bk = b.reshape(len(b), -1, 2)
        ck = np.einsum("nkakb->nkab", c.reshape(len(c), -1, 2, gg.shape[1], 2))
        ss = rr - 2 * np.einsum("nka,nka->nk", bk, zr)
        ss = ss + np.einsum("nka,nkab,nkb->nk", bk, gg, bk)
        ss = (ss + np.einsum("nkab,nkba->nk", ck, gg)).sum(0)
        pooled = np.full_like(sigma2, ss.sum() / counts.sum())
        new_sigma2 = np.maximum(pooled if self.shared else ss / counts.sum(0), 1e-10)
        new_psi = (np.einsum("ni,nj->ij", b, b) + c.sum(0)) / len(b)
        return beta, float(loglik.sum()), new_psi, new_sigma2


def _valid(psi, sigma2) -> bool:
    """Whether Ψ is a covariance (positive semi-definite) and every σ² finite and
    at least ECME's floor of 1e-10."""
    if not (np.isfinite(sigma2) & (sigma2 >= 1e-10)).all():
        return False
    if not np.isfinite(psi).all():
        return False
    return np.linalg.eigvalsh(psi)[0] >= 0.0


def _ecme(step, psi, sigma2, tol, max_iter, accelerate=True):
    """β, Ψ, σ², log likelihood, ECME evaluations and convergence of
    :func:`_posterior`'s model from ``psi`` and ``sigma2``, with ``step`` an
    :class:`_ECME` of the data; see :func:`fit_multivariate_mixed`.

    Converged where one ECME step from the current point gains less than ``tol``
    per value; that step's end point is returned. With ``accelerate`` (SQUAREM,
    Varadhan & Roland 2008, scheme S3, with its monotone safeguard) each cycle
    extrapolates two ECME steps from θ = (Ψ, σ²) along θ₀ − 2αr + α²v (r = θ₁ − θ₀,
    v = θ₂ − 2θ₁ + θ₀, α = −‖r‖/‖v‖ ≤ −1) and keeps the extrapolation only where it
    is a valid covariance and its likelihood is at least θ₁'s, halving α towards
    −1 otherwise (α = −1 is the plain second step, θ₂, which ECME never makes
    worse than θ₁). The same fixed point as plain ECME, in far fewer steps where
    EM creeps (a fit of 10 measurements: 1,130 steps plain).
    """
    n_values = step.counts.sum()
    beta, loglik, next_psi, next_sigma2 = step(psi, sigma2)
    last = (beta, psi, sigma2, loglik)  # the last point accepted on the path
    while step.evaluations < max_iter:
        beta, next_loglik, psi2, sigma2_2 = step(next_psi, next_sigma2)
        if next_loglik - loglik < tol * n_values:
            return beta, next_psi, next_sigma2, next_loglik, step.evaluations, True
        last = (beta, next_psi, next_sigma2, next_loglik)
        if not accelerate:
            loglik, next_psi, next_sigma2 = next_loglik, psi2, sigma2_2
            continue
        points = ((psi, sigma2), (next_psi, next_sigma2), (psi2, sigma2_2))
        theta = [np.append(cov.ravel(), var) for cov, var in points]
        r, v = theta[1] - theta[0], theta[2] - 2 * theta[1] + theta[0]
        alpha = -np.sqrt((r @ r) / (v @ v)) if v @ v > 0 else -1.0
        alpha = min(alpha, -1.0) if np.isfinite(alpha) else -1.0
        while step.evaluations < max_iter:
            if alpha > -1.01:  # α = −1 is the plain second step
                alpha, new_psi, new_sigma2 = -1.0, psi2, sigma2_2
            else:
                point = theta[0] - 2 * alpha * r + alpha**2 * v
                new_psi = point[: psi.size].reshape(psi.shape)
                new_psi, new_sigma2 = (new_psi + new_psi.T) / 2, point[psi.size :]
            if alpha == -1.0 or _valid(new_psi, new_sigma2):
                beta, new_loglik, psi3, sigma2_3 = step(new_psi, new_sigma2)
                if alpha == -1.0 or (
                    np.isfinite(new_loglik) and new_loglik >= next_loglik
                ):
                    break
            alpha = (alpha - 1.0) / 2
        else:
            break
        last = (beta, new_psi, new_sigma2, new_loglik)
        psi, sigma2, loglik = new_psi, new_sigma2, new_loglik
        next_psi, next_sigma2 = psi3, sigma2_3
    return (*last, step.evaluations, False)


def _standardised(cohort: Cohort, fit_or_stats, variables):
    """Design f = [1, t, covariates] (n, T, F), standardised values and mask
    (n, T, m) of the measurements at ``variables``."""
    center, scale, covariates = fit_or_stats
    x = covariates(cohort.baseline)
    t = cohort.times[..., None]
    f = np.concatenate(
        [np.ones_like(t), t, np.broadcast_to(x[:, None], (*t.shape[:2], x.shape[1]))],
        -1,
    )
    mask = cohort.observed[..., variables] & cohort.visits[..., None]
    return f, (cohort.values[..., variables] - center) / scale, mask


def fit_multivariate_mixed(
    train: Cohort,
    tol: float = 1e-7,
    max_iter: int = 2000,
    shared_residual: bool = False,
    max_patients: int = MIXED_MODEL_MAX_PATIENTS,
    seed: int = 0,
    accelerate: bool = True,
) -> MultivariateMixedFit | None:
    """ML fit on the training patients, or on a random ``max_patients`` of them
    drawn with ``seed`` (as the univariate mixed models,
    :func:`~odevae.evaluate.prediction.mixed.fitting_patients`; logged): an ECME
    iteration's cost grows with n·m³, and 12,000 training patients with 20
    measurements took 3.5 s per iteration. None (logged) without modelled measurements
    or with fewer than :data:`PATIENTS_PER_EFFECT` patients per random effect.

    ECME (Liu & Rubin 1994; Laird, Lange & Stram 1987): from σ² = 0.5 and Ψ =
    diag(0.5, 0.5/g²) per measurement (g the median visit gap), each iteration

    1. β ← GLS estimate given Ψ and σ² (the conditional maximum of the likelihood);
    2. E-step: per patient the posterior of b, C = (Ψ⁻¹ + Z'R⁻¹Z)⁻¹ and
       b̂ = C Z'R⁻¹(y − Xβ);
    3. M-step: Ψ ← mean over patients of b̂b̂' + C; σ²_k ← mean over measurement k's
       values of (y − Xβ − Zb̂)² + (Z C Z')_jj (pooled over all values with
       ``shared_residual``, the model statsmodels' MixedLM fits).

    Each step does not decrease the likelihood; the fit stops when an iteration
    gains less than ``tol`` per value in log likelihood (not converged, logged,
    after ``max_iter`` iterations, each an evaluation of the likelihood and its
    ECME update; a stopped fit is the last point accepted on the path).
    ``accelerate`` extrapolates the iterations (SQUAREM, :func:`_ecme`; rejected
    extrapolations count as iterations): on the Lotka–Volterra run's 10
    measurements and 50 covariates 123 iterations instead of 1,130, ending nearer
    the maximum (plain ECME creeps: it stops where one step gains little, not at
    the maximum).
    Deterministic: no random start.
    """
    chosen = fitting_patients(train.n, max_patients, seed)
    if len(chosen) < train.n:
        log.info(
            "multivariate mixed model fitted on a random %d of the %d training "
            "patients (evaluation.mixed_model_max_patients %d, seed %d)",
            len(chosen),
            train.n,
            max_patients,
            seed,
        )
        train = train.subset(chosen)
    variables = modelled_variables(train)
    if not len(variables):
        log.warning("multivariate mixed model: no continuous measurement to model")
        return None
    mask = train.observed[..., variables] & train.visits[..., None]
    has_data = mask.any((1, 2))
    if has_data.sum() < PATIENTS_PER_EFFECT * 2 * len(variables):
        log.warning(
            "multivariate mixed model: %d patients are too few for %d random effects",
            has_data.sum(),
            2 * len(variables),
        )
        return None
    train = train.subset(np.flatnonzero(has_data))
    mask = mask[has_data]
    values = train.values[..., variables]
    count = mask.sum((0, 1))
    center = np.where(mask, values, 0).sum((0, 1)) / count
    scale = np.sqrt((np.where(mask, values - center, 0) ** 2).sum((0, 1)) / count)
    fill, keep, mean, sd = _covariate_scaling(train.baseline)

    def covariates(baseline):
        x = np.where(np.isnan(baseline), fill, baseline)[:, keep]
        return (x - mean) / sd

    f, y, mask = _standardised(train, (center, scale, covariates), variables)
    m = len(variables)
    gap = median_gap(train)
    psi = np.diag(np.tile([0.5, 0.5 / gap**2], m))
    step = _ECME(f, y, mask, shared_residual)
    beta, psi, sigma2, loglik, iterations, converged = _ecme(
        step, psi, np.full(m, 0.5), tol, max_iter, accelerate
    )
    if not converged:
        log.warning("multivariate mixed model: not converged in %d steps", max_iter)
    log.info("multivariate mixed model: %d measurements, %d steps", m, iterations)
    return MultivariateMixedFit(
        variables, center, scale, fill, keep, mean, sd, beta, psi, sigma2,
        loglik, iterations, converged,
    )  # fmt: skip


#: The ``multivariate`` argument of the predictors that combine this model, meaning
#: "fit it here on the training patients given" (a fit, or None for none possible,
#: is used as it is).
FIT_HERE = "fit"


def given_or_fitted(
    multivariate, train: Cohort, **kwargs
) -> MultivariateMixedFit | None:
    """``multivariate`` as given (a fit, or None), or :func:`fit_multivariate_mixed`
    of ``train`` (with ``kwargs``) where it is :data:`FIT_HERE`."""
    if isinstance(multivariate, str):
        if multivariate != FIT_HERE:
            raise ValueError(
                f"multivariate: a fit, None or {FIT_HERE!r}, not {multivariate!r}"
            )
        return fit_multivariate_mixed(train, **kwargs)
    return multivariate


def save_fit(fit: MultivariateMixedFit | None, path: str | Path) -> None:
    """Write ``fit`` (None: no model could be fitted) to the ``.npz`` file ``path``;
    :func:`load_fit` reads it back bit for bit."""
    arrays = {} if fit is None else asdict(fit)
    with open(path, "wb") as handle:  # the exact name (savez would append .npz)
        np.savez(handle, fitted=fit is not None, **arrays)


def load_fit(path: str | Path) -> MultivariateMixedFit | None:
    """The fit :func:`save_fit` wrote to ``path`` (None where it wrote none)."""
    with np.load(path) as stored:
        if not bool(stored["fitted"]):
            return None
        values = {
            field.name: stored[field.name] for field in fields(MultivariateMixedFit)
        }
    scalars = {"loglik": float, "iterations": int, "converged": bool}
    for name, kind in scalars.items():
        values[name] = kind(values[name])
    return MultivariateMixedFit(**values)


@in_history_passes(cohort_arg=1)
def multivariate_mixed(
    fit: MultivariateMixedFit | None, test: Cohort, targets: pd.DataFrame
) -> Prediction:
    """Predict each target from its history's BLUP under ``fit``.

    Every observed history value of the modelled measurements informs b̂ (any
    subset per visit); pred_k = [1, t, x]·β_k + [1, t]·b̂_k at the target time t,
    sd_k = √([1, t] C_kk [1, t]' + σ²_k), back in the measurement's units.
    NaN for measurements not modelled (0/1, too few data) or without a fit.
    """
    pred = np.full((len(targets), test.p), np.nan)
    sd = np.full_like(pred, np.nan)
    if fit is None:
        return pred, sd
    rows = targets["row"].to_numpy()
    cohort = test.subset(rows)
    f, y, mask = _standardised(
        cohort, (fit.center, fit.scale, fit.covariates), fit.variables
    )
    mask = mask & history_mask(test, targets)[..., None]
    zz, _ = _moments(f[..., :2], y, mask)  # Σ z z' only: what C and the counts need
    a, c = _covariance(zz, fit.psi, fit.sigma2)
    zr, rr = _residuals(f, y, mask, fit.beta)
    b, _ = _posterior(zz[..., 0, 0], zr, rr, fit.psi, fit.sigma2, a, c)
    t = targets["time"].to_numpy()
    g = np.column_stack([np.ones_like(t), t])
    x = np.column_stack([g, fit.covariates(cohort.baseline)])
    m = len(fit.variables)
    ck = np.einsum("nkakb->nkab", c.reshape(len(c), m, 2, m, 2))
    mean = x @ fit.beta.T + np.einsum("na,nka->nk", g, b.reshape(len(b), m, 2))
    var = np.einsum("na,nkab,nb->nk", g, ck, g) + fit.sigma2
    pred[:, fit.variables] = fit.center + fit.scale * mean
    sd[:, fit.variables] = fit.scale * np.sqrt(var)
    return pred, sd
