"""Tuning (config ``tuning.candidates``): the fold's model is the candidate setting
whose predictor named by ``tuning.predictor`` (``odevae`` as shipped, or
``selected``: each candidate's selected predictor) scores best on the fold's
inner validation patients, and its predictions are averaged with those of the
next best (``tuning.ensemble`` candidates in all). Torch-free: rule ``choose``
only reads the candidates' score tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from odevae.errors import InputError


def choose_candidate(
    selections: dict[str, pd.DataFrame], predictor: str = "selected", ensemble: int = 1
) -> pd.DataFrame:
    """Tuning: per candidate setting (in order), its selected predictor (or the
    named ``predictor``) and that predictor's inner-validation MSE; ``chosen``
    marks the lowest (the first on ties), ``rank`` orders them (1: the lowest; ties
    in the candidates' order, an MSE that is not a number last) and ``ensemble``
    marks the ``ensemble`` lowest (all where there are fewer candidates), never a
    candidate whose MSE is not a number unless it is the only one."""
    rows = []
    for name, table in selections.items():
        if predictor == "selected":
            best = table[table["selected"].astype(bool)].iloc[0]
        else:
            rows_of = table[table["predictor"] == predictor]
            if rows_of.empty:
                raise InputError(
                    f"candidate {name} has no {predictor} prediction to choose by "
                    f"(its predictors: {', '.join(table['predictor'])})",
                    key="tuning.predictor",
                )
            best = rows_of.iloc[0]
        rows.append(
            {"candidate": name, "predictor": best["predictor"], "mse": best["mse"]}
        )
    if ensemble < 1:
        raise InputError(
            f"an ensemble of {ensemble} candidates: expected at least 1",
            key="tuning.ensemble",
        )
    choice = pd.DataFrame(rows)
    mse = choice["mse"].to_numpy(dtype=float)
    order = np.argsort(np.where(np.isnan(mse), np.inf, mse), kind="stable")
    rank = np.empty(len(choice), dtype=int)
    rank[order] = np.arange(1, len(choice) + 1)
    choice["chosen"] = rank == 1
    choice["rank"] = rank
    choice["ensemble"] = (rank == 1) | ((rank <= ensemble) & np.isfinite(mse))
    return choice


def ensemble_names(choice: pd.DataFrame) -> list[str]:
    """The candidates that a fold's ``choice`` table marks ``ensemble``, best
    first."""
    members = choice[choice["ensemble"].astype(bool)].sort_values("rank")
    return list(members["candidate"])


def ensemble_members(choice: pd.DataFrame, checkpoints: list[str]) -> list[str]:
    """The checkpoints of the candidates that ``choice`` marks ``ensemble``, best
    first; a candidate's checkpoint is the one in the folder of its name
    (``tune/fold_<k>/<candidate>/model.ckpt``)."""
    by_name = {Path(path).parent.name: path for path in checkpoints}
    names = ensemble_names(choice)
    missing = [name for name in names if name not in by_name]
    if missing:
        raise ValueError(f"no checkpoint of candidate(s) {missing} in {checkpoints}")
    return [by_name[name] for name in names]
