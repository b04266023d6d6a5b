"""A simulated SMArtCARE registry export (:mod:`odevae.data.registry`'s layout)
with known individual latent trajectories."""

from __future__ import annotations

import string

import numpy as np
import pandas as pd
from scipy.linalg import expm
from scipy.special import expit

from odevae.data.registry import TESTS


def simulate_registry(cfg: dict, seed: int) -> dict[str, pd.DataFrame]:
    """A RULM-like registry export with known individual latent linear dynamics.

    Each patient has ``du/dt = diag(a1, a2) u`` (per year) with individual rates
    around one of two group means, u(0) = (1, 0.5). Item A (0..6) and items B..T
    (0..2) discretise a noisy logistic decoding of the latent state. Baseline
    covariates: age, SMA type and ``q_info`` noisy copies of the rates. So that every
    registry filter acts, ``n_single`` patients have one visit, ``n_flat`` patients
    repeat their first visit (sum-score variance 0), ``n_outliers`` visits lose all
    points, ``n_duplicates`` rows are duplicated, and the test is not done at some
    visits (probability ``p_not_done``). Returns tables ``visits``, ``baseline`` and
    ``truth_patients``.
    """
    rng = np.random.default_rng(seed)
    n, test = cfg["n"], "RULM"
    letters = string.ascii_uppercase[:20]
    items = [f"{test}_{c}" for c in letters]
    levels = np.array([6] + [2] * 19)
    loading = np.zeros((20, 2))
    loading[np.arange(20), np.arange(20) % 2] = rng.uniform(1.5, 3.0, 20)
    offset = rng.normal(-1.0, 0.5, 20)  # items spread over their range
    group = np.arange(n) % 2
    means = np.array([[-0.3, -0.1], [-0.1, 0.3]])
    rates = means[group] + rng.normal(0.0, 0.03, (n, 2))
    u0 = np.array([1.0, 0.5])
    visit_rows, base_rows = [], []
    start = pd.Timestamp("2018-01-01")
    for i in range(n):
        pid = f"R{i + 1:03d}"
        k = 0 if i < cfg["n_single"] else rng.integers(1, cfg["maxntps"] + 1)
        months = np.concatenate([[0.0], np.cumsum(rng.uniform(3, 12, k))]).round(1)
        flat = cfg["n_single"] <= i < cfg["n_single"] + cfg["n_flat"]
        for j, m in enumerate(months):
            u = expm(np.diag(rates[i]) * m / 12) @ u0
            p = expit(loading @ u + offset + rng.normal(0, cfg["sigma"], 20))
            score = np.rint(p * levels)
            if flat and j > 0:
                score = visit_rows[-j][items].to_numpy(dtype=float)
            done = j == 0 or rng.random() >= cfg["p_not_done"]
            row = {"patient_id": pid, "months_since_1st_test": m}
            row |= {t: int(rng.random() < 0.5) for t in TESTS}
            row[test] = int(done)
            row |= dict(zip(items, score if done else np.full(20, np.nan), strict=True))
            row[f"{test}_sum"] = score.sum() if done else np.nan
            row["HFMSE_sum"] = rng.integers(0, 67) if row["HFMSE"] else np.nan
            visit_rows.append(pd.Series(row))
        base_rows.append(
            {
                "patient_id": pid,
                "cohort": f"C{rng.integers(1, 4)}",
                "baseline_date": (start + pd.Timedelta(days=int(i * 7))).date(),
                "age": round(float(rng.uniform(2, 30)), 1),
                "sma_type": int(rng.integers(1, 4)),
            }
            | {
                f"info{c + 1}": round(float(rates[i, c % 2] + rng.normal(0, 0.02)), 4)
                for c in range(cfg["q_info"])
            }
        )
    visits = pd.DataFrame(visit_rows).reset_index(drop=True)
    skip = cfg["n_single"] + cfg["n_flat"]
    visits = _inject_outliers(visits, items, test, cfg["n_outliers"], skip)
    dup = visits[visits[test] == 1].iloc[1 : 1 + cfg["n_duplicates"]]
    visits = pd.concat([visits, dup]).sort_index(kind="stable").reset_index(drop=True)
    truth = pd.DataFrame(
        {"patient_id": [r["patient_id"] for r in base_rows], "group": group}
        | {"a11": rates[:, 0], "a22": rates[:, 1]}
    )
    return {
        "visits": visits,
        "baseline": pd.DataFrame(base_rows),
        "truth_patients": truth,
    }


def _inject_outliers(visits, items, test, count, skip) -> pd.DataFrame:
    """Zero all items of a middle test visit of the first patients with 3+ of them."""
    visits = visits.copy()
    done = visits[visits[test] == 1]
    per_patient = done.groupby("patient_id", sort=True)
    chosen = 0
    for _, rows in list(per_patient)[skip:]:
        if chosen == count:
            break
        if len(rows) >= 3:
            idx = rows.index[len(rows) // 2]
            visits.loc[idx, items] = 0.0
            visits.loc[idx, f"{test}_sum"] = 0.0
            chosen += 1
    return visits
