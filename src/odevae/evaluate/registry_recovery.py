"""Recovery of a simulated registry's true rates (rule ``registry_recovery``).

A simulated registry export (:mod:`odevae.data.simulate_registry`) knows each
patient's group and diagonal rates ``a_kk`` but no latent trajectories to align to.
The learned latent axes are identified only up to order, sign and scale; rates do
not change under sign flips and rescaling, so only the order is matched: per fold,
on the training patients alone, each true rate goes with the learned diagonal rate
that maximises the summed Spearman correlation over axis permutations. The held-out
patients' rates are then scored under that matching.
"""

from __future__ import annotations

import itertools
import logging

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from odevae.evaluate.recovery import (
    fold_parameters,
    group_recovery,
    sign_agreement,
    with_mean_row,
)

log = logging.getLogger(__name__)

META = ("patient_id", "fold", "split")


def diagonal_rates(columns) -> dict[int, str]:
    """The diagonal rates ``a11, a22, ...`` among ``columns``, keyed by their axis
    (1, 2, ...) in axis order."""
    found = {}
    for column in columns:
        digits = column[1:]
        half = len(digits) // 2
        if (
            column.startswith("a")
            and digits.isdigit()
            and len(digits) % 2 == 0
            and digits[:half] == digits[half:]
        ):
            found[int(digits[:half])] = column
    return dict(sorted(found.items()))


def spearman(x, y) -> float:
    """Spearman's rank correlation (ties averaged); NaN for fewer than two pairs or
    a constant side."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return np.nan
    return float(spearmanr(x, y).statistic)


def match_rates(
    frame: pd.DataFrame, learned: list[str], true: list[str]
) -> tuple[str, ...] | None:
    """The learned rate matched to each true rate in ``true``: the one-to-one
    assignment maximising the summed Spearman correlation over the rows of
    ``frame`` (which holds both). A correlation that cannot be computed counts 0;
    ties go to the first assignment in ``learned`` order. None when there are
    fewer learned than true rates."""
    if len(learned) < len(true):
        return None
    best, best_score = None, -np.inf
    for chosen in itertools.permutations(learned, len(true)):
        score = sum(
            np.nan_to_num(spearman(frame[t], frame[a]))
            for a, t in zip(chosen, true, strict=True)
        )
        if score > best_score:
            best, best_score = chosen, score
    return best


def rate_recovery(
    params: pd.DataFrame, truth_patients: pd.DataFrame
) -> tuple[pd.DataFrame, dict]:
    """Per fold, the held-out Spearman correlation of each true diagonal rate with
    its matched learned rate (:func:`match_rates` on the fold's training patients).

    ``params`` holds one row per patient and fold (``fold``, ``split``, the learned
    parameters); ``truth_patients`` the true rates per patient (``a11``, ...),
    merged on ``patient_id``. Returns the table (``fold`` and
    ``rate_spearman_<a_kk>``; NaN without a matching) and, per fold, the matching
    as a map (W, c) whose W[j, k] = 1 maps learned axis j onto true axis k, the
    form :func:`~odevae.evaluate.recovery.sign_agreement` reads (W all zero
    without a matching).
    """
    true = diagonal_rates(truth_patients.columns)
    learned = diagonal_rates(c for c in params.columns if c not in META)
    truth = truth_patients[["patient_id", *true.values()]].rename(
        columns={t: f"true_{t}" for t in true.values()}
    )
    data = params.merge(truth, on="patient_id", how="left")
    axis_of = {name: axis for axis, name in learned.items()}
    shape = (max(learned, default=1), max(true, default=0))
    rows, maps = [], {}
    for fold, part in data.groupby("fold", sort=True):
        train = part[part["split"] == "train"]
        test = part[part["split"] == "test"]
        targets = [f"true_{t}" for t in true.values()]
        own = fold_parameters(part, learned.values(), fold)
        matched = match_rates(train, own, targets)
        pairs = (
            "none (fewer learned than true diagonal rates)"
            if matched is None
            else ", ".join(
                f"true {t} ~ learned {a}"
                for t, a in zip(true.values(), matched, strict=True)
            )
        )
        log.info(
            "fold %s, matched on %d training patients: %s", fold, len(train), pairs
        )
        W = np.zeros(shape)
        row = {"fold": fold}
        for k, (axis, name) in enumerate(true.items()):
            value = np.nan
            if matched is not None:
                value = spearman(test[targets[k]], test[matched[k]])
                W[axis_of[matched[k]] - 1, axis - 1] = 1.0
            row[f"rate_spearman_{name}"] = value
        rows.append(row)
        maps[fold] = (W, np.zeros(shape[1]))
    return pd.DataFrame(rows), maps


def registry_recovery(
    params: pd.DataFrame, truth_patients: pd.DataFrame
) -> pd.DataFrame:
    """Per fold and their mean: held-out group separation by the learned parameters
    (:func:`~odevae.evaluate.recovery.group_recovery`), each true rate's held-out
    Spearman correlation with its matched learned rate (:func:`rate_recovery`) and
    the share of held-out true nonzero rates whose matched learned rate has the same
    sign (``sign_agreement``, under the same matching).

    Only patients in ``params`` (those that survived preprocessing) are scored.
    """
    names = [c for c in params.columns if c not in META]
    groups = group_recovery(params, truth_patients, names)
    rates, maps = rate_recovery(params, truth_patients)
    signs = sign_agreement(params, truth_patients, maps)
    table = groups.merge(rates, on="fold").merge(signs, on="fold")
    return with_mean_row(table)
