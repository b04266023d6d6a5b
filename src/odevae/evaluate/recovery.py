"""Ground-truth comparisons on simulated cohorts: group recovery and latent alignment.

The latent space of a VAE is identified only up to axis order, sign and scale, and
every fold's model has its own orientation. :func:`align_folds` maps each fold's
latents onto the true axes before they are compared with the truth.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
from sklearn.metrics import r2_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.tree import DecisionTreeClassifier


def latent_columns(table: pd.DataFrame, prefix: str) -> list[str]:
    """Columns ``prefix1, prefix2, ...`` in order."""
    cols = [
        c for c in table.columns if c.startswith(prefix) and c[len(prefix) :].isdigit()
    ]
    return sorted(cols, key=lambda c: int(c[len(prefix) :]))


def fold_parameters(part: pd.DataFrame, names, fold) -> list[str]:
    """The parameters among ``names`` that fold ``fold``'s model has: those with a
    value in its rows ``part``. Tuned folds may differ in latent dimension or
    system, which leaves the other folds' parameter columns empty in this fold's
    rows; a parameter that the fold has for some patients only is an error."""
    own = [name for name in names if part[name].notna().any()]
    for name in own:
        missing = int(part[name].isna().sum())
        if missing:
            raise ValueError(
                f"fold {fold}: parameter {name} is missing for {missing} of "
                f"{len(part)} patients; a fold's model gives every patient each of "
                "its parameters"
            )
    return own


def group_recovery(
    params: pd.DataFrame, truth: pd.DataFrame, param_names: list[str]
) -> pd.DataFrame:
    """Per fold, how well learned ODE parameters separate the simulated groups.

    ``params`` holds one row per patient and fold with columns ``fold``, ``split``
    (``train``/``test``) and the parameters. Classifiers are fitted on the training
    patients' parameters and true groups, and scored on the held-out patients:
    1-nearest-neighbour and a single threshold on one parameter (a depth-1 tree).
    Each fold uses the parameters its model has (:func:`fold_parameters`).
    """
    data = params.merge(truth[["patient_id", "group"]], on="patient_id", how="left")
    rows = []
    for fold, part in data.groupby("fold", sort=True):
        train = part[part["split"] == "train"]
        test = part[part["split"] == "test"]
        names = fold_parameters(part, param_names, fold)
        row = {"fold": fold, "n_train": len(train), "n_test": len(test)}
        for label, clf in (
            ("accuracy_1nn", KNeighborsClassifier(n_neighbors=1)),
            ("accuracy_threshold", DecisionTreeClassifier(max_depth=1, random_state=0)),
        ):
            clf.fit(train[names].to_numpy(), train["group"].to_numpy())
            pred = clf.predict(test[names].to_numpy())
            row[label] = float(np.mean(pred == test["group"].to_numpy()))
        rows.append(row)
    return pd.DataFrame(rows)


def trajectory_recovery(aligned: pd.DataFrame) -> pd.DataFrame:
    """Per fold, R² of aligned held-out trajectories against the truth, per dimension.

    ``aligned`` is the trajectory table of :func:`align_folds` (columns ``z*`` and
    ``u*``). Returns columns ``fold`` and ``r2_dim<k>``.
    """
    zcols, ucols = latent_columns(aligned, "z"), latent_columns(aligned, "u")
    rows = []
    for fold, part in aligned.groupby("fold", sort=True):
        row = {"fold": fold}
        for k, (z, u) in enumerate(zip(zcols, ucols, strict=True)):
            row[f"r2_dim{k + 1}"] = float(r2_score(part[u], part[z]))
        rows.append(row)
    return pd.DataFrame(rows)


def with_mean_row(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` (one row per fold) with a final row ``fold = mean``."""
    mean = table.drop(columns="fold").mean().to_dict()
    out = table.astype({"fold": str})
    return pd.concat([out, pd.DataFrame([{"fold": "mean", **mean}])], ignore_index=True)


def _affine(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares y ≈ a x + b."""
    design = np.column_stack([x, np.ones_like(x)])
    (a, b), *_ = np.linalg.lstsq(design, y, rcond=None)
    return float(a), float(b)


ALIGNMENTS = ("axis", "affine")


def fit_alignment(
    learned: np.ndarray, true: np.ndarray, kind: str = "axis"
) -> tuple[np.ndarray, np.ndarray]:
    """The map ``aligned = learned @ W + c`` of learned latents (N, d) onto true ones.

    ``axis`` (systems whose parameters act per axis, e.g. diagonal A): tries every
    axis order and sign; each aligned dimension is then a positive least-squares
    rescaling of one learned dimension. ``affine`` (full or non-diagonal systems,
    whose latent space is identified only up to an invertible linear map): ordinary
    least squares of the true states on all learned dimensions. Returns (W, c).
    """
    d = learned.shape[1]
    if kind == "affine":
        design = np.column_stack([learned, np.ones(len(learned))])
        coef, *_ = np.linalg.lstsq(design, true, rcond=None)
        return coef[:d], coef[d]
    if kind != "axis":
        raise ValueError(f"unknown alignment {kind!r}, expected one of {ALIGNMENTS}")
    best, best_err = None, np.inf
    for perm in itertools.permutations(range(d)):
        for signs in itertools.product((1.0, -1.0), repeat=d):
            W, c, err = np.zeros((d, d)), np.zeros(d), 0.0
            for k in range(d):
                slope, icpt = _affine(signs[k] * learned[:, perm[k]], true[:, k])
                slope = max(slope, 0.0)  # keep the chosen sign
                fit = slope * signs[k] * learned[:, perm[k]] + icpt
                err += float(np.sum((fit - true[:, k]) ** 2))
                W[perm[k], k], c[k] = slope * signs[k], icpt
            if err < best_err:
                best, best_err = (W, c), err
    return best


def apply_alignment(learned: np.ndarray, alignment) -> np.ndarray:
    """Apply the map (W, c) of :func:`fit_alignment` to latents (N, d)."""
    W, c = alignment
    return learned @ W + c


def true_at(truth_traj: pd.DataFrame, groups, times) -> np.ndarray:
    """True latent states of each (group, time) pair, linearly interpolated."""
    ucols = latent_columns(truth_traj, "u")
    groups, times = np.asarray(groups), np.asarray(times, dtype=float)
    out = np.full((len(times), len(ucols)), np.nan)
    for g, part in truth_traj.groupby("group"):
        sel = groups == g
        for k, col in enumerate(ucols):
            out[sel, k] = np.interp(times[sel], part["time"], part[col])
    return out


def fold_alignments(
    trajectories: pd.DataFrame,
    latents: pd.DataFrame,
    truth_patients: pd.DataFrame,
    truth_traj: pd.DataFrame,
    kind: str = "axis",
) -> dict:
    """Per fold, the map of :func:`fit_alignment` (of ``kind``) fitted on the fold's
    *training* patients: their ODE trajectories ``z*`` up to their last visit
    against their group's true trajectory. Returns {fold: (W, c)}."""
    zcols = latent_columns(trajectories, "z")
    ucols = latent_columns(truth_traj, "u")
    maps = {}
    for fold, traj in _observed(trajectories, latents).groupby("fold", sort=True):
        train = _with_truth(traj[traj["split"] == "train"], truth_patients, truth_traj)
        maps[fold] = fit_alignment(
            train[zcols].to_numpy(), train[ucols].to_numpy(), kind
        )
    return maps


def _observed(trajectories: pd.DataFrame, latents: pd.DataFrame) -> pd.DataFrame:
    """Trajectory rows up to each patient's last visit."""
    last = latents.groupby("patient_id")["time"].max()
    return trajectories[
        trajectories["time"] <= trajectories["patient_id"].map(last) + 1e-9
    ]


def _with_truth(
    frame: pd.DataFrame, truth_patients: pd.DataFrame, truth_traj: pd.DataFrame
) -> pd.DataFrame:
    """``frame`` with each row's true group and true latent states ``u*``."""
    group_of = truth_patients.set_index("patient_id")["group"]
    frame = frame.copy()
    frame["group"] = frame["patient_id"].map(group_of).to_numpy()
    true = true_at(truth_traj, frame["group"], frame["time"])
    for k, u in enumerate(latent_columns(truth_traj, "u")):
        frame[u] = true[:, k]
    return frame


def align_folds(
    trajectories: pd.DataFrame,
    latents: pd.DataFrame,
    truth_patients: pd.DataFrame,
    truth_traj: pd.DataFrame,
    kind: str = "axis",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Map each fold's held-out latents onto the true axes.

    The maps of :func:`fold_alignments` (fitted on each fold's training patients)
    are applied to the held-out patients' trajectories, encoder means (``mu*``) and
    ODE solutions at visits (``ode*``), so nothing about the held-out patients'
    truth enters the map. Returns the held-out rows of both tables, aligned, with
    ``group`` and the true states ``u*`` added.
    """
    zcols = latent_columns(trajectories, "z")
    maps = fold_alignments(trajectories, latents, truth_patients, truth_traj, kind)
    traj_out, lat_out = [], []
    for fold, traj in _observed(trajectories, latents).groupby("fold", sort=True):
        test = _with_truth(traj[traj["split"] == "test"], truth_patients, truth_traj)
        lat = latents[(latents["fold"] == fold) & (latents["split"] == "test")]
        lat = _with_truth(lat, truth_patients, truth_traj)
        test[zcols] = apply_alignment(test[zcols].to_numpy(), maps[fold])
        for prefix in ("mu", "ode"):
            cols = latent_columns(lat, prefix)
            lat[cols] = apply_alignment(lat[cols].to_numpy(), maps[fold])
        traj_out.append(test)
        lat_out.append(lat)
    return pd.concat(traj_out, ignore_index=True), pd.concat(lat_out, ignore_index=True)


def sign_agreement(
    params: pd.DataFrame, truth_patients: pd.DataFrame, maps: dict
) -> pd.DataFrame:
    """Per fold, the share of held-out patients' nonzero true diagonal rates
    ``a_kk`` whose learned counterpart has the same sign.

    The learned rate of true axis k is ``a_jj`` of the learned dimension j that the
    fold's axis alignment (``maps`` of :func:`fold_alignments`) maps onto axis k;
    rates do not change under the alignment's sign flips and positive rescaling. A
    fold whose model makes a growing group decay scores about half, however well
    its parameters separate the groups. NaN where the parameters are not diagonal
    rates, or the alignment is not per axis.
    """
    truth = truth_patients.set_index("patient_id")
    rows = []
    for fold, (W, _) in sorted(maps.items()):
        part = params[(params["fold"] == fold) & (params["split"] == "test")]
        agree = []
        for k in range(W.shape[1]):
            j = int(np.argmax(np.abs(W[:, k])))
            learned, true = f"a{j + 1}{j + 1}", f"a{k + 1}{k + 1}"
            if (
                learned not in part
                or true not in truth
                or np.count_nonzero(W[:, k]) != 1
            ):
                agree = []
                break
            want = truth.loc[part["patient_id"], true].to_numpy(dtype=float)
            have = part[learned].to_numpy(dtype=float)
            keep = want != 0
            agree.append(np.sign(have[keep]) == np.sign(want[keep]))
        share = float(np.mean(np.concatenate(agree))) if agree else np.nan
        rows.append({"fold": fold, "sign_agreement": share})
    return pd.DataFrame(rows)
