"""The comparators' linear mixed model, one per variable: y = [1, t, x]·beta +
[1, t]·b + e with a random intercept and slope in time per patient, fixed
intercept, time and baseline covariates, fitted by REML (statsmodels) on the
training patients and predicting a target from its history's empirical-Bayes
random effects (or from the fixed effects alone).

A REML fit costs passes over every training patient's visits per likelihood
evaluation: at a registry's size (9,000 training patients, 150,000 visits) this
dominates a fold's evaluation. Above ``max_patients`` training patients
(``evaluation.mixed_model_max_patients``) the model is fitted on a seeded random
subset of that many patients (logged) and still predicts for every patient; the
shipped cohorts (at most a few hundred patients) are fitted on all of them.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
from scipy.linalg import qr

from odevae.data.cohort import Cohort
from odevae.errors import InputError
from odevae.evaluate.prediction.mixed_reml import BatchedMixedLM, reml
from odevae.evaluate.prediction.targets import history_mask, in_history_passes

log = logging.getLogger(__name__)

#: (predicted, sd), each (targets, p) in modelling units.
Prediction = tuple[np.ndarray, np.ndarray]

#: Most training patients a mixed model is fitted on (the schema's default of
#: ``evaluation.mixed_model_max_patients``).
MIXED_MODEL_MAX_PATIENTS = 2000


def history_values(cohort: Cohort, targets: pd.DataFrame):
    """Rows (N,), history mask (N, T, p) of observed values, values (N, T, p)."""
    rows = targets["row"].to_numpy()
    mask = history_mask(cohort, targets)[:, :, None] & cohort.observed[rows]
    return rows, mask, cohort.values[rows]


@dataclass(frozen=True)
class MixedFit:
    """One variable's REML fit: y = [1, t, x]·beta + [1, t]·b + e.

    b ~ N(0, ``G``) per patient, e ~ N(0, ``sigma2``); x are the baseline covariates
    at ``keep``, NaN filled with ``fill`` (training median), standardised by
    ``mean`` and ``sd`` (of the training patients with data).
    """

    variable: str
    fill: np.ndarray
    keep: np.ndarray
    mean: np.ndarray
    sd: np.ndarray
    beta: np.ndarray | None = None
    G: np.ndarray | None = None
    sigma2: float = np.nan
    converged: bool = False
    patients: int = 0  # training patients with a value, the fit's groups
    result: object = field(repr=False, compare=False, default=None)  # statsmodels

    def covariates(self, baseline: np.ndarray) -> np.ndarray:
        """Standardised kept covariates (n, k) of raw ``baseline`` (n, q)."""
        x = np.where(np.isnan(baseline), self.fill, baseline)[:, self.keep]
        return (x - self.mean) / self.sd


def _covariate_scaling(base: np.ndarray):
    """Fill (median), keep mask, mean and sd of baseline covariates (n, q).

    Keeps the non-constant columns not collinear with the intercept or each other.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
        fill = np.nanmedian(base, 0)
        x = np.where(np.isnan(base), fill, base)
        mean, sd = x.mean(0), x.std(0)
    keep = np.isfinite(fill) & (sd > 1e-12 * np.maximum(np.abs(mean), 1))
    if keep.any():
        design = np.column_stack([np.ones(len(x)), (x - mean)[:, keep] / sd[keep]])
        _, r, pivot = qr(design, mode="economic", pivoting=True)
        rank = int((np.abs(np.diag(r)) > 1e-8 * np.abs(r[0, 0])).sum())
        chosen = np.flatnonzero(keep)[pivot[:rank][pivot[:rank] > 0] - 1]
        keep = np.isin(np.arange(len(keep)), chosen)
    return fill, keep, mean[keep], sd[keep]


def fit_mixed_model(train: Cohort, variable: int) -> MixedFit | None:
    """REML fit of measurement ``variable``; None (logged) if it is not possible."""
    name = str(train.measurement_names[variable])
    rows, slots = np.nonzero(train.visits & train.observed[..., variable])
    patients = np.unique(rows)
    fit = MixedFit(name, *_covariate_scaling(train.baseline[patients]))
    t, y = train.times[rows, slots], train.values[rows, slots, variable]
    exog = np.column_stack([np.ones_like(t), t, fit.covariates(train.baseline)[rows]])
    # random slopes need repeated values: some beyond one per patient
    if len(patients) < 3 or len(y) < max(exog.shape[1] + 4, len(patients) + 2):
        log.warning("mixed model %s: too few data (%d values)", name, len(y))
        return None
    model = BatchedMixedLM(y, exog, groups=train.patient_ids[rows], exog_re=exog[:, :2])
    result = reml(model, name)
    if result is None:
        return None
    beta, G = np.asarray(result.fe_params), np.asarray(result.cov_re)
    if not (np.isfinite(beta).all() and np.isfinite(G).all() and result.scale > 0):
        log.warning("mixed model %s: non-finite estimates", name)
        return None
    sigma2, converged = float(result.scale), bool(result.converged)
    return replace(
        fit,
        beta=beta,
        G=G,
        sigma2=sigma2,
        converged=converged,
        patients=len(patients),
        result=result,
    )


def fitting_patients(n: int, max_patients: int, seed: int) -> np.ndarray:
    """Indices (sorted) of the patients a mixed model is fitted on: all ``n``, or
    a random ``max_patients`` of them drawn with ``seed``."""
    if n <= max_patients:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, max_patients, replace=False))


def fit_mixed_models(
    train: Cohort, max_patients: int = MIXED_MODEL_MAX_PATIENTS, seed: int = 0
) -> list[MixedFit | None]:
    """:func:`fit_mixed_model` for every measurement, on at most ``max_patients``
    training patients (:func:`fitting_patients`; a subset is logged)."""
    if max_patients < 1:
        raise InputError(
            f"at least one patient is needed, not {max_patients}",
            key="evaluation.mixed_model_max_patients",
        )
    chosen = fitting_patients(train.n, max_patients, seed)
    if len(chosen) < train.n:
        log.info(
            "mixed models fitted on a random %d of the %d training patients "
            "(evaluation.mixed_model_max_patients %d, seed %d); they predict for "
            "every patient",
            len(chosen),
            train.n,
            max_patients,
            seed,
        )
        train = train.subset(chosen)
    return [fit_mixed_model(train, v) for v in range(train.p)]


def random_effects(
    fit: MixedFit, times: np.ndarray, y: np.ndarray, mask: np.ndarray, x: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Empirical-Bayes b (N, 2) and posterior covariance (N, 2, 2) of N patients.

    From values ``y`` (N, T) at ``times`` (N, T) where ``mask`` (N, T), raw baseline
    ``x`` (N, q). b = G Z'V⁻¹(y − Xβ), cov = G − G Z'V⁻¹Z G with V = Z G Z' + σ²I,
    computed as b = M G Z'r, cov = G − M G Z'Z G for M = (G Z'Z + σ²I)⁻¹ (valid for
    singular G); no observed value gives b = 0, cov = G.
    """
    z = np.stack([np.ones_like(times), times], -1)  # (N, T, 2)
    fixed = z @ fit.beta[:2] + (fit.covariates(x) @ fit.beta[2:])[:, None]
    resid = np.where(mask, y - fixed, 0.0)
    zm = z * mask[..., None]
    ztz = np.einsum("nti,ntj->nij", zm, zm)
    m = np.linalg.inv(fit.G @ ztz + fit.sigma2 * np.eye(2))
    b = np.einsum("nij,jk,nk->ni", m, fit.G, np.einsum("nti,nt->ni", zm, resid))
    return b, fit.G - m @ fit.G @ ztz @ fit.G


@in_history_passes(cohort_arg=1)
def mixed_model(
    fits: Sequence[MixedFit | None],
    test: Cohort,
    targets: pd.DataFrame,
    population: bool = False,
) -> Prediction:
    """Predict each target from its history's BLUP (or b = 0 if ``population``).

    pred = x_j β + z_j b, sd = √(z_j cov z_j' + σ²); NaN for variables without fit.
    """
    rows, mask, values = history_values(test, targets)
    times, t = test.times[rows], targets["time"].to_numpy()
    z = np.column_stack([np.ones_like(t), t])
    pred = np.full((len(targets), test.p), np.nan)
    sd = np.full_like(pred, np.nan)
    for v, fit in enumerate(fits):
        if fit is None:
            continue
        x = np.column_stack([z, fit.covariates(test.baseline[rows])])
        seen = mask[..., v] & (not population)
        b, cov = random_effects(fit, times, values[..., v], seen, test.baseline[rows])
        pred[:, v] = x @ fit.beta + (z * b).sum(1)
        # the posterior covariance can round to a tiny negative variance
        var = np.einsum("ni,nij,nj->n", z, cov, z) + fit.sigma2
        sd[:, v] = np.sqrt(np.maximum(var, 0.0))
    return pred, sd
