"""Scores of held-out predictions, all methods on the same targets.

The input is the long prediction table
(:data:`~odevae.evaluate.prediction.targets.COLUMNS`) of all folds stacked, with an
integer ``fold`` column, in modelling units. Errors
are standardised by the SD of each variable over the fold's training patients, and
aggregated per patient first (per variable, the mean over patients of each
patient's mean error), then averaged over variables, so that patients with many
visits do not dominate.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from odevae.data.cohort import Cohort
from odevae.data.folds import fold_members
from odevae.errors import InputError
from odevae.evaluate.prediction.targets import HORIZONS

#: A scored target: one observation of one patient predicted at one horizon.
KEY = ["fold", "horizon", "patient_id", "visit", "variable"]
_FOLD_STATS = ["n_patients", "n_targets", "mse", "mae", "ratio_mse"]
_COVERAGE = ["coverage_1sd", "coverage_2sd", "brier"]
SUMMARY_COLUMNS = [
    "horizon",
    "method",
    "fold",
    *_FOLD_STATS,
    "ratio_ci_low",
    "ratio_ci_high",
    *_COVERAGE,
]
PER_VARIABLE_COLUMNS = [
    "horizon",
    "method",
    "variable",
    "n_patients",
    "mse",
    "mae",
    "ratio_mse",
]


def variable_sd(cohort: Cohort) -> np.ndarray:
    """The SD (ddof=1) of each variable over all observed values of ``cohort``
    (p,); an SD that is 0 or undefined is 1."""
    observed = cohort.observed & cohort.visits[..., None]
    x = np.where(observed, cohort.values, np.nan).reshape(-1, cohort.p)
    n = np.isfinite(x).sum(0)
    mean = np.nansum(x, 0) / np.maximum(n, 1)
    sd = np.sqrt(np.nansum((x - mean) ** 2, 0) / np.maximum(n - 1, 1))
    return np.where((n > 1) & (sd > 0), sd, 1.0)


def training_sd(cohort: Cohort, folds: pd.DataFrame) -> pd.DataFrame:
    """Per fold, the SD of each variable over its training patients
    (:func:`variable_sd`). Returns columns ``fold, variable, sd``."""
    parts = []
    for fold in sorted(folds["fold"].unique()):
        train, _ = fold_members(folds, fold)
        sd = variable_sd(cohort.subset(cohort.index_of(train)))
        parts.append(
            pd.DataFrame(
                {"fold": int(fold), "variable": cohort.measurement_names, "sd": sd}
            )
        )
    return pd.concat(parts, ignore_index=True)


def common_targets(pred: pd.DataFrame) -> pd.DataFrame:
    """The rows whose target every method of its horizon and variable observed and
    predicted.

    A target (:data:`KEY`) is kept only where ``observed`` and ``predicted`` are
    finite for each method with rows for that horizon and variable, so that all
    methods of a horizon are scored on exactly the same set of each variable (a
    method modelling some variables only, such as ``mixed_multivariate`` with
    continuous ones, has no rows for the others).
    """
    ok = np.isfinite(pred["observed"]) & np.isfinite(pred["predicted"])
    keys = [pred[k] for k in KEY]
    n_ok = pred["method"].where(ok).groupby(keys).transform("nunique")
    n_methods = pred.groupby(["horizon", "variable"])["method"].transform("nunique")
    return pred[ok & (n_ok == n_methods)].reset_index(drop=True)


def _scored_rows(pred: pd.DataFrame, train_sd: pd.DataFrame) -> pd.DataFrame:
    """The common targets with standardised errors and coverage indicators."""
    rows = common_targets(pred)
    # each row's training SD by (fold, variable): a lookup, not a merge's copy
    # of a large cohort's millions of rows
    lookup = train_sd.drop_duplicates(["fold", "variable"], keep=False)
    if len(lookup) < len(train_sd):
        raise ValueError("train_sd has more than one SD per fold and variable")
    lookup = lookup.set_index(["fold", "variable"])["sd"]
    at = pd.MultiIndex.from_arrays(
        [rows["fold"].to_numpy(), rows["variable"].astype(str).to_numpy()]
    )
    rows["sd_train"] = lookup.reindex(at).to_numpy()
    missing = rows.loc[rows["sd_train"].isna(), ["fold", "variable"]]
    if len(missing):
        fold, variable = missing.iloc[0]
        raise ValueError(f"no training SD for variable {variable!r} in fold {fold}")
    diff = rows["predicted"] - rows["observed"]
    rows["se"] = (diff / rows["sd_train"]) ** 2
    rows["ae"] = diff.abs() / rows["sd_train"]
    # coverage for continuous variables; a 0/1 variable gets the Brier score of
    # its predicted probability instead
    binary = _binary_variables(rows)
    has_sd = np.isfinite(rows["sd"]) & ~binary
    for k in (1, 2):
        inside = (diff.abs() <= k * rows["sd"]).astype(float)
        rows[f"coverage_{k}sd"] = inside.where(has_sd)
    rows["brier"] = (diff**2).where(binary)
    return rows


def variable_set_rows(
    pred: pd.DataFrame, name: str, variables: list[str]
) -> pd.DataFrame:
    """The rows of ``pred`` of the measurements in the set ``name`` of
    ``evaluation.variable_sets``; an :class:`InputError` naming the set when a
    name is not one of the cohort's measurements."""
    known = set(pred["variable"])
    unknown = [v for v in variables if v not in known]
    if unknown:
        raise InputError(
            f"{unknown} not among the cohort's measurements {sorted(known)}",
            key=f"evaluation.variable_sets.{name}",
        )
    return pred[pred["variable"].isin(variables)]


def continuous_rows(pred: pd.DataFrame) -> pd.DataFrame | None:
    """The rows of the variables ``mixed_multivariate`` predicts (the continuous
    measurements it fitted), so that every method is scored on the same variables
    as it; without that method, of the variables whose observed values are not all
    0 or 1. None when that is every variable (nothing to leave out); no rows when
    it is none."""
    variable = pred["variable"]
    if "mixed_multivariate" in set(pred["method"]):
        inside = variable.isin(variable[pred["method"] == "mixed_multivariate"])
    else:
        seen = pred[np.isfinite(pred["observed"])]
        inside = ~variable.isin(seen["variable"][_binary_variables(seen)])
    return None if inside.all() else pred[inside]


def _binary_variables(rows: pd.DataFrame) -> pd.Series:
    """Per row: its variable's observed values are all 0 or 1 (both present)."""
    observed = rows.groupby("variable")["observed"]
    is_01 = observed.transform(lambda x: bool(x.isin([0.0, 1.0]).all()))
    both = observed.transform("nunique") == 2
    return is_01.astype(bool) & both


def _stats(rows: pd.DataFrame, by: list[str], reference: str) -> pd.DataFrame:
    """n_patients, n_targets, mse, mae, ratio_mse and coverage per ``by`` group.

    ``ratio_mse`` compares with the ``reference`` on the same variables: a method
    scored on some variables only is divided by the reference's MSE over those.
    """
    by_variable = by if "variable" in by else [*by, "variable"]
    patient = rows.groupby([*by_variable, "patient_id"])[["se", "ae"]].mean()
    errors = patient.groupby(level=by_variable).mean()
    same = [k for k in by_variable if k != "method"]
    ref = errors.xs(reference, level="method")["se"].rename("ref_mse")
    errors = errors.join(ref, on=same)
    if "variable" not in by:
        errors = errors.groupby(level=by).mean()
    groups = rows.groupby(by)
    out = errors.rename(columns={"se": "mse", "ae": "mae"})
    out["n_patients"] = groups["patient_id"].nunique()
    out["n_targets"] = groups.size()
    out[_COVERAGE] = groups[_COVERAGE].mean()
    out = as_text(out.reset_index())
    out["ratio_mse"] = out["mse"] / out.pop("ref_mse")
    return out


def as_text(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with categorical label columns (a large cohort's predictions are
    read with categories, :func:`~odevae.data.tables.read_tsvs`) as plain text, so
    that results sort and print as from text labels."""
    for column in table.columns[table.dtypes == "category"]:
        table[column] = table[column].astype(str)
    return table


def _bootstrap_mse(matrix: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Aggregate MSE of a patients × variables matrix under each resample."""
    has = np.isfinite(matrix)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_variable = (counts @ np.where(has, matrix, 0.0)) / (counts @ has)
        n = np.isfinite(per_variable).sum(1)
        return np.nansum(per_variable, 1) / n


def _paired_ratios(
    rows: pd.DataFrame, pairs: list[tuple[str, str]], n_boot: int, seed: int
) -> pd.DataFrame:
    """Per horizon and (method, reference) pair: the pooled MSE ratio and its
    paired patient-level bootstrap 95% interval (the same resamples for every
    pair of a horizon)."""
    patient = rows.groupby(["horizon", "method", "fold", "patient_id", "variable"])
    patient = patient["se"].mean().reset_index()
    out = []
    for horizon, part in patient.groupby("horizon", sort=False):
        wide = part.pivot(
            index=["fold", "patient_id"], columns=["method", "variable"], values="se"
        )
        methods = set(wide.columns.unique(level="method"))
        present = [(m, r) for m, r in pairs if m in methods and r in methods]
        if not present:
            continue
        variables = wide.columns.unique(level="variable")
        n = len(wide)
        rng = np.random.default_rng(seed)
        counts = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(float)
        matrix = {m: wide[m].reindex(columns=variables).to_numpy() for m in methods}
        once = np.ones((1, n))
        for method, reference in present:
            # the same variables for both: those both were scored on (a method
            # modelling the continuous measurements only, as mixed_multivariate,
            # has no rows for the others)
            cols = np.isfinite(matrix[method]).any(0) & np.isfinite(
                matrix[reference]
            ).any(0)
            a, b = matrix[method][:, cols], matrix[reference][:, cols]
            with np.errstate(invalid="ignore", divide="ignore"):
                ratio = _bootstrap_mse(a, counts) / _bootstrap_mse(b, counts)
                point = (_bootstrap_mse(a, once) / _bootstrap_mse(b, once))[0]
            ratio = ratio[np.isfinite(ratio)]
            ci = np.quantile(ratio, [0.025, 0.975]) if len(ratio) else [np.nan] * 2
            out.append((horizon, method, reference, point, *ci))
    columns = ["horizon", "method", "reference", "ratio_mse"]
    return pd.DataFrame(out, columns=[*columns, "ratio_ci_low", "ratio_ci_high"])


def _ratio_ci(
    rows: pd.DataFrame, reference: str, n_boot: int, seed: int
) -> pd.DataFrame:
    """Paired patient-level bootstrap 95% interval of the pooled MSE ratio."""
    pairs = [(m, reference) for m in rows["method"].unique()]
    table = _paired_ratios(rows, pairs, n_boot, seed)
    return table[["horizon", "method", "ratio_ci_low", "ratio_ci_high"]]


#: What each contrast measures: (method, reference) pairs whose pooled MSE ratio
#: and interval :func:`contrasts` writes, where both were scored.
CONTRASTS = (
    ("odevae", "odevae_prior"),  # what the visits seen so far add to the dynamics
    ("odevae", "odevae_population"),  # individual vs average dynamics
    ("odevae", "vae_roundtrip"),  # the time step vs none
    ("odevae_mixed", "vae_mixed"),  # the ODE under the random effects
    ("odevae", "mixed_model"),
    ("odevae", "mixed_multivariate"),
    ("odevae_selected", "mixed_model"),
    ("odevae_selected", "mixed_multivariate"),
    ("odevae_combined", "mixed_multivariate"),  # what the ODE-VAE adds to it
)


def contrasts(
    pred: pd.DataFrame,
    train_sd: pd.DataFrame,
    pairs=CONTRASTS,
    n_boot: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Pooled MSE ratios of method pairs with paired bootstrap intervals: columns
    horizon, method, reference, ratio_mse, ratio_ci_low, ratio_ci_high (a ratio
    below 1 with its upper bound below 1: the method predicts better)."""
    rows = _scored_rows(pred, train_sd)
    table = _paired_ratios(rows, list(pairs), n_boot, seed)
    known = {h: i for i, h in enumerate(HORIZONS)}
    order = {pair: i for i, pair in enumerate(pairs)}
    rank = table.assign(
        _h=table["horizon"].map(known).fillna(len(known)),
        _p=[
            order[(m, r)]
            for m, r in zip(table["method"], table["reference"], strict=True)
        ],
    )
    return table.loc[rank.sort_values(["_h", "_p"], kind="stable").index].reset_index(
        drop=True
    )


def _sort(table: pd.DataFrame, order: dict[str, int], extra: str) -> pd.DataFrame:
    """Rows by horizon (known order first), method ``order`` and ``extra``."""
    known = {h: i for i, h in enumerate(HORIZONS)}
    rank = table.assign(
        _h=table["horizon"].map(known).fillna(len(known)),
        _m=table["method"].map(order),
    )
    return rank.sort_values(["_h", "horizon", "_m", *extra.split()], kind="stable")


def summarise(
    pred: pd.DataFrame,
    train_sd: pd.DataFrame,
    reference: str = "locf",
    n_boot: int = 1000,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Scores per fold and pooled, and per variable, relative to ``reference``.

    ``pred`` is the stacked long table with ``fold``; ``train_sd`` comes from
    :func:`training_sd`. Returns ``(summary, per_variable)``: ``summary`` has
    :data:`SUMMARY_COLUMNS`, with rows per (horizon, method) for each fold, the
    ``mean`` and ``sd`` over folds and ``pooled`` (all held-out patients; only it
    carries the bootstrap interval of ``ratio_mse``); ``per_variable`` has
    :data:`PER_VARIABLE_COLUMNS`, pooled over folds.
    """
    if reference not in set(pred["method"]):
        raise ValueError(
            f"reference method {reference!r} is absent; methods present: "
            f"{sorted(set(pred['method']))}"
        )
    rows = _scored_rows(pred, train_sd)
    per_fold = _stats(rows, ["horizon", "method", "fold"], reference)
    by_fold = per_fold.groupby(["horizon", "method"])[_FOLD_STATS + _COVERAGE]
    mean = by_fold.mean().reset_index().assign(fold="mean")
    sd = by_fold.std().reset_index().assign(fold="sd")
    pooled = _stats(rows, ["horizon", "method"], reference).assign(fold="pooled")
    pooled = pooled.merge(
        _ratio_ci(rows, reference, n_boot, seed), on=["horizon", "method"], how="left"
    )
    folds = sorted(per_fold["fold"].astype(int).unique())
    fold_rank = {str(f): i for i, f in enumerate([*folds, "mean", "sd", "pooled"])}
    per_fold["fold"] = per_fold["fold"].astype(int).astype(str)
    summary = pd.concat([per_fold, mean, sd, pooled], ignore_index=True)

    one_step = pooled[pooled["horizon"] == "one_step"].set_index("method")["ratio_mse"]
    one_step = one_step[np.isfinite(one_step)]
    methods = sorted(
        set(summary["method"]),
        key=lambda m: (m != reference, m not in one_step, one_step.get(m, 0.0), m),
    )
    order = {m: i for i, m in enumerate(methods)}
    summary = _sort(summary.assign(_f=summary["fold"].map(fold_rank)), order, "_f")
    summary = summary[SUMMARY_COLUMNS].reset_index(drop=True)
    per_variable = _stats(rows, ["horizon", "method", "variable"], reference)
    per_variable = _sort(per_variable, order, "variable")
    return summary, per_variable[PER_VARIABLE_COLUMNS].reset_index(drop=True)
