"""Tuning (config ``tuning.candidates``): the fold's model is the candidate setting
whose predictor named by ``tuning.predictor`` (``odevae`` as shipped, or
``selected``: each candidate's selected predictor) scores best on the fold's
inner validation patients. Torch-free: rule ``choose`` only reads the candidates'
score tables."""

from __future__ import annotations

import numpy as np
import pandas as pd

from odevae.errors import InputError


def choose_candidate(
    selections: dict[str, pd.DataFrame], predictor: str = "selected"
) -> pd.DataFrame:
    """Tuning: per candidate setting (in order), its selected predictor (or the
    named ``predictor``) and that predictor's inner-validation MSE; ``chosen``
    marks the lowest (the first on ties)."""
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
    choice = pd.DataFrame(rows)
    choice["chosen"] = np.arange(len(choice)) == choice["mse"].to_numpy().argmin()
    return choice
