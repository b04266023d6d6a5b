"""SMArtCARE registry exports (arXiv 2311.16286): reader and simulator.

Export layout:

* visit table: ``patient_id``, months since the first test (``time_column``), one
  indicator column per test (``CHOP-INTEND``, ``RULM``, ``HFMSE``, ``6MWT``; 1 = done
  at this visit), item columns ``<test>_<item>`` and a sum score ``<test>_sum``;
* baseline table: ``patient_id``, ``cohort``, ``baseline_date`` (these three are no
  covariates) and further covariates.

:func:`read_registry` applies the paper's steps for the chosen test: keep visits where
the test was done; drop duplicate rows (warning); shift times to the first visit; skip
patients with fewer than ``min_visits`` visits; skip patients whose sum-score variance
is below ``min_score_variance``; drop outlier visits (:func:`outlier_visits` on the
sum score; first visit kept); skip patients left with too few visits; recode items
0/1/2 → 0.1/0.5/0.9 and 0..6 → 0.1, .2, .3, .5, .7, .8, .9, then logit
(:data:`odevae.ingest.TRANSFORMS`, ``item_0_2`` / ``item_0_6``).
:func:`simulate_registry` writes that layout with known latent trajectories.
"""

from __future__ import annotations

import logging
import string

import numpy as np
import pandas as pd
from scipy.linalg import expm
from scipy.special import expit

from odevae.errors import InputError
from odevae.ingest import DAYS_PER, apply_transforms, one_hot, resolve_transforms
from odevae.preprocess import (
    Drops,
    check_baseline_ids,
    check_ids,
    collapse_duplicates,
    drop_short_patients,
    numeric,
    outlier_visits,
    read_table,
    require_columns,
    where,
)

log = logging.getLogger(__name__)

TESTS = ("CHOP-INTEND", "RULM", "HFMSE", "6MWT")
NOT_COVARIATES = ("patient_id", "cohort", "baseline_date")


def item_columns(columns, test: str) -> list[str]:
    """The item columns ``<test>_<item>`` of a test (its sum score excluded)."""
    prefix = f"{test}_"
    return [c for c in columns if c.startswith(prefix) and c != f"{test}_sum"]


def item_transforms(
    items: list[str], six_level: list[str], four_level: list[str] = ()
) -> dict[str, str]:
    """Transform name per item: ``item_0_6`` / ``item_0_4`` for the items named (or
    matched by a glob) in ``six_level`` / ``four_level``, else ``item_0_2``."""
    spec = dict.fromkeys(six_level, "item_0_6") | dict.fromkeys(four_level, "item_0_4")
    return {c: "item_0_2" for c in items} | resolve_transforms(spec, items)


def read_registry(
    visits_path,
    baseline_path,
    cfg: dict,
    out_unit: str = "years",
    min_visits: int = 2,
    duplicates: str = "error",
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The export tables → long-format visits and baseline, and the drop counts.

    ``cfg`` is the ``registry`` config section. Visits are ``patient_id, time (in
    out_unit), items…`` in model units (recoded, logit); baseline is ``patient_id,
    covariates…``.
    """
    vfile, bfile = str(visits_path), str(baseline_path)
    test, time_col = cfg["test"], cfg["time_column"]
    raw = read_table(vfile)
    sum_col = f"{test}_sum"
    require_columns(raw, ["patient_id"], vfile)
    require_columns(raw, [time_col], vfile, key="registry.time_column")
    require_columns(raw, [test, sum_col], vfile, key="registry.test")
    items = item_columns(raw.columns, test)
    if not items:
        raise InputError(
            f"expected item columns {test}_<item> for the chosen test, found none",
            file=vfile,
            key="registry.test",
        )
    for key in ("items_0_6", "items_0_4"):
        for pattern in cfg[key]:
            if not resolve_transforms({pattern: "none"}, items):
                raise InputError(
                    f"configured item {pattern!r} matches no item column of {test} "
                    f"({items})",
                    file=vfile,
                    column=pattern,
                    key=f"registry.{key}",
                )
    ids = check_ids(raw["patient_id"], vfile, "patient_id")
    drops = Drops()
    done = numeric(raw, [test], vfile)[test] == 1
    drops.add(
        "ingest",
        f"visits without the test {test}",
        int(ids.nunique() - ids[done].nunique()),
        int((~done).sum()),
    )
    table = raw[done.to_numpy()]
    if table.empty:
        raise InputError(
            f"no visit has the test {test} done (indicator column {test} = 1)",
            file=vfile,
            column=test,
            key="registry.test",
        )
    values = numeric(table, [time_col, sum_col, *items], vfile)
    t = values[time_col]
    bad = t.isna() | (t < 0)
    if bad.any():
        idx = t.index[bad.to_numpy()][0]
        raise InputError(
            "expected months since the first test >= 0, found "
            f"{'an empty cell' if pd.isna(raw[time_col][idx]) else raw[time_col][idx]}",
            file=vfile,
            column=time_col,
            **where(vfile, idx),
        )
    transforms = item_transforms(items, cfg["items_0_6"], cfg["items_0_4"])
    apply_transforms(values, transforms, vfile, None)  # checks the scores only
    long = pd.concat([ids[done].rename("patient_id"), values], axis=1)
    long["time"] = t * DAYS_PER["months"] / DAYS_PER[out_unit]
    long, n_exact, n_avg = collapse_duplicates(
        long, [sum_col, *items], vfile, duplicates
    )
    drops.add("ingest", "duplicate rows", 0, n_exact)
    if n_avg:
        drops.add("ingest", "conflicting duplicate rows (averaged)", 0, n_avg)
    long = long.sort_values(["patient_id", "time"], kind="stable")
    long["time"] -= long.groupby("patient_id")["time"].transform("min")

    def drop_patients(mask: pd.Series, reason: str) -> None:
        nonlocal long
        drops.add(
            "ingest",
            reason,
            int(long.loc[mask, "patient_id"].nunique()),
            int(mask.sum()),
        )
        long = long[~mask.to_numpy()]

    def too_few(suffix: str = "") -> None:
        nonlocal long
        long = drop_short_patients(
            long, min_visits, "patient_id", drops, suffix, step="ingest"
        )

    too_few()
    var = long.groupby("patient_id")[sum_col].transform(lambda s: s.var(ddof=1))
    drop_patients(
        var < cfg["min_score_variance"],
        f"{sum_col} variance below {cfg['min_score_variance']:g}",
    )
    if cfg["outlier_iqr_factor"] is not None:
        out = outlier_visits(long, long[sum_col], cfg["outlier_iqr_factor"])
        drops.add("ingest", f"outlier visits ({sum_col} change)", 0, int(out.sum()))
        long = long[~out]
        too_few(" after the outlier filter")
    if long.empty:
        raise InputError(
            "no patient is left after the registry filters",
            file=vfile,
            key="preprocess.min_visits",
        )
    long = apply_transforms(long, transforms, vfile, None)
    visits = long[["patient_id", "time", *items]].reset_index(drop=True)
    baseline = _registry_baseline(bfile, set(ids), visits, cfg["categorical"])
    return visits, baseline, drops.table()


def _registry_baseline(bfile, all_ids, visits, categorical) -> pd.DataFrame:
    base = read_table(bfile)
    require_columns(base, list(NOT_COVARIATES), bfile)
    ids = check_ids(base["patient_id"], bfile, "patient_id")
    kept = list(visits["patient_id"].drop_duplicates())
    check_baseline_ids(ids, all_ids, bfile, "patient_id", needed=sorted(kept))
    names = [c for c in base.columns if c not in NOT_COVARIATES]
    if not names:
        raise InputError("expected covariate columns", file=bfile)
    for col in categorical:
        require_columns(base, [col], bfile, key="registry.categorical")
    encoded, columns = one_hot(base[names], list(categorical))
    plain = [c for c in names if c not in categorical]
    encoded[plain] = numeric(base, plain, bfile)
    out = pd.concat([ids.rename("patient_id"), encoded[columns]], axis=1)
    return out.set_index("patient_id").loc[kept].reset_index()


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
