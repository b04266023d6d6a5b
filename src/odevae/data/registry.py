"""SMArtCARE registry exports (arXiv 2311.16286): the reader.

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
(:data:`odevae.data.transforms.TRANSFORMS`, ``item_0_2`` / ``item_0_6``).
:func:`odevae.data.simulate_registry.simulate_registry` writes that layout with
known latent trajectories.
"""

from __future__ import annotations

import logging

import pandas as pd

from odevae.data.cleaning import (
    Drops,
    collapse_duplicates,
    drop_short_patients,
    outlier_visits,
)
from odevae.data.transforms import (
    DAYS_PER,
    apply_transforms,
    one_hot,
    resolve_transforms,
)
from odevae.data.validation import (
    check_baseline_ids,
    check_ids,
    check_times,
    numeric,
    read_table,
    require_columns,
)
from odevae.errors import InputError

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
    check_times(t, vfile, time_col, raw[time_col], "months since the first test")
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
