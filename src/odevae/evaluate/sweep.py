"""Tables over the seeds of a sweep (``sweep.seeds``): every fold of every seed is one
run, summarised by mean, sd and the worst run."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd


def fold_rows(tables: Mapping[int, pd.DataFrame]) -> pd.DataFrame:
    """The per-fold rows (``fold`` a number, not ``mean``/``sd``/``pooled``) of each
    seed's table, with a ``seed`` column."""
    parts = []
    for seed, table in tables.items():
        rows = table[table["fold"].astype(str).str.fullmatch(r"\d+")]
        parts.append(rows.assign(seed=seed, fold=rows["fold"].astype(int)))
    return pd.concat(parts, ignore_index=True)


def _worst(part: pd.DataFrame, column: str, largest: bool) -> dict:
    values = part[column].astype(float)
    if values.isna().all():
        return {"worst": np.nan, "worst_seed": pd.NA, "worst_fold": pd.NA}
    at = values.idxmax() if largest else values.idxmin()
    row = part.loc[at]
    return {"worst": values[at], "worst_seed": row["seed"], "worst_fold": row["fold"]}


def recovery_over_seeds(tables: Mapping[int, pd.DataFrame]) -> pd.DataFrame:
    """Per recovery metric (accuracies, sign agreement, R² per dimension) over all
    seeds × folds: number of runs, mean, sd and the worst (lowest) run."""
    runs = fold_rows(tables)
    metrics = [
        c for c in runs.columns if c not in ("fold", "seed", "n_train", "n_test")
    ]
    rows = []
    for metric in metrics:
        values = runs[metric].astype(float)
        rows.append(
            {
                "metric": metric,
                "n_runs": int(values.notna().sum()),
                "mean": values.mean(),
                "sd": values.std(ddof=1),
                **_worst(runs, metric, largest=False),
            }
        )
    return pd.DataFrame(rows)


def scores_over_seeds(tables: Mapping[int, pd.DataFrame]) -> pd.DataFrame:
    """Per horizon and method of ``cv/summary.tsv`` over all seeds × folds: the
    error ratio to the reference's mean, sd and worst (highest) run, the mean MSE,
    the folds flagged as diverged, and the mean and sd over seeds of the pooled
    ratio."""
    runs = fold_rows(tables)
    pooled = pd.concat(
        [
            t[t["fold"].astype(str) == "pooled"].assign(seed=s)
            for s, t in tables.items()
        ],
        ignore_index=True,
    )
    rows = []
    for (horizon, method), part in runs.groupby(["horizon", "method"], sort=False):
        ratio = part["ratio_mse"].astype(float)
        pool = pooled[(pooled["horizon"] == horizon) & (pooled["method"] == method)]
        worst = _worst(part, "ratio_mse", largest=True)
        rows.append(
            {
                "horizon": horizon,
                "method": method,
                "n_runs": len(part),
                "mse_mean": part["mse"].astype(float).mean(),
                "ratio_mse_mean": ratio.mean(),
                "ratio_mse_sd": ratio.std(ddof=1),
                "ratio_mse_worst": worst["worst"],
                "worst_seed": worst["worst_seed"],
                "worst_fold": worst["worst_fold"],
                "pooled_ratio_mean": pool["ratio_mse"].astype(float).mean(),
                "pooled_ratio_sd": pool["ratio_mse"].astype(float).std(ddof=1),
                "n_diverged": int(
                    part["model_diverged"].astype(str).str.lower().eq("true").sum()
                ),
            }
        )
    return pd.DataFrame(rows)
