"""SMArtCARE registry exports: the simulated layout and the reader's steps."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit
from snakemake.utils import validate

from odevae.data.registry import (
    TESTS,
    item_transforms,
    read_registry,
)
from odevae.data.simulate_registry import simulate_registry
from odevae.data.tables import write_tsv
from odevae.data.transforms import TRANSFORMS
from odevae.errors import InputError
from tests.conftest import ROOT

SCHEMA = str(ROOT / "workflow" / "schemas" / "config.schema.yaml")


@pytest.fixture
def registry_cfg() -> dict:
    config = {"registry": {"simulation": {"n": 30, "maxntps": 6}}}
    validate(config, SCHEMA)
    return config["registry"]


@pytest.fixture
def export(registry_cfg, tmp_path):
    tables = simulate_registry(registry_cfg["simulation"], seed=3)
    paths = {}
    for key, table in tables.items():
        paths[key] = tmp_path / f"{key}.tsv"
        write_tsv(table, paths[key])
    return tables, paths


def test_simulated_export_has_the_registry_layout(export):
    tables, _ = export
    visits, baseline = tables["visits"], tables["baseline"]
    assert {"patient_id", "months_since_1st_test", *TESTS} <= set(visits.columns)
    items = [f"RULM_{c}" for c in "ABCDEFGHIJKLMNOPQRST"]
    assert set(items) <= set(visits.columns) and "RULM_sum" in visits.columns
    done = visits["RULM"] == 1
    assert visits.loc[done, "RULM_A"].between(0, 6).all()
    assert set(np.unique(visits.loc[done, items[1:]])) <= {0.0, 1.0, 2.0}
    np.testing.assert_allclose(
        visits.loc[done, items].sum(axis=1), visits.loc[done, "RULM_sum"]
    )
    assert visits.loc[~done, items].isna().all().all() and (~done).any()
    assert list(baseline.columns[:3]) == ["patient_id", "cohort", "baseline_date"]


def test_every_registry_filter_acts(export, registry_cfg):
    tables, paths = export
    visits, baseline, drops = read_registry(
        paths["visits"], paths["baseline"], registry_cfg, "months"
    )
    counts = drops.set_index("reason")
    assert counts.loc["visits without the test RULM", "visits"] > 0
    assert counts.loc["duplicate rows", "visits"] == 3
    assert counts.loc["fewer than 2 visits", "patients"] >= 3  # the one-visit ones
    assert counts.loc["RULM_sum variance below 1", "patients"] >= 2  # the flat ones
    assert counts.loc["outlier visits (RULM_sum change)", "visits"] >= 1
    for flat in ("R004", "R005"):  # n_single = 3, then n_flat = 2 patients
        assert flat not in set(visits["patient_id"])
    # the injected outliers (all items 0) are gone
    raw = tables["visits"]
    zeroed = raw[(raw["RULM"] == 1) & (raw["RULM_sum"] == 0)]
    assert len(zeroed) == 2
    for row in zeroed.itertuples():  # simulated times start at 0 months
        times = visits.loc[visits["patient_id"] == row.patient_id, "time"]
        assert not np.isclose(times, row.months_since_1st_test).any()
    # shifted to 0, at least 2 visits each, items recoded and logit
    assert (visits.groupby("patient_id")["time"].min() == 0).all()
    assert (visits.groupby("patient_id").size() >= 2).all()
    assert set(np.round(np.unique(visits["RULM_B"]), 6)) <= set(
        np.round(np.log([0.1 / 0.9, 1.0, 9.0]), 6)
    )
    # covariates: patient_id, cohort and baseline_date excluded, kept patients only
    assert list(baseline.columns) == ["patient_id", "age", "sma_type"] + [
        f"info{k}" for k in range(1, 5)
    ]
    assert baseline["patient_id"].tolist() == list(visits["patient_id"].unique())


def test_item_recoding_and_its_inverse():
    forward, inverse = TRANSFORMS["item_0_2"][:2]
    np.testing.assert_allclose(
        forward(np.array([0, 1, 2])), np.log([0.1 / 0.9, 1.0, 0.9 / 0.1])
    )
    y = forward(np.array([0.0, 1.0, 2.0]))
    # the notes' back-transform (sigmoid - 0.1) * 2.5 agrees on the 0..2 items
    np.testing.assert_allclose(
        (1 / (1 + np.exp(-y)) - 0.1) * 2.5, [0, 1, 2], atol=1e-12
    )
    np.testing.assert_allclose(inverse(y), [0, 1, 2], atol=1e-12)
    np.testing.assert_allclose(
        inverse(np.array([5.0])), (1 / (1 + np.exp(-5)) - 0.1) * 2.5
    )
    six = TRANSFORMS["item_0_6"][0](np.arange(7.0))
    np.testing.assert_allclose(
        1 / (1 + np.exp(-six)), [0.1, 0.2, 0.3, 0.5, 0.7, 0.8, 0.9]
    )


def _break(paths, table, edit):
    frame = pd.read_csv(paths[table], sep="\t", dtype={"patient_id": str})
    edit(frame)
    write_tsv(frame, paths[table])


@pytest.mark.parametrize(
    ("table", "edit", "pattern"),
    [
        (
            "visits",
            lambda f: f.pop("RULM"),
            r"visits.tsv, column 'RULM', config key 'registry.test': column is missing",
        ),
        (
            "visits",
            lambda f: f.loc.__setitem__((0, "RULM_C"), 5),
            r"visits.tsv, column 'RULM_C', line 2: transform 'item_0_2' needs an item "
            r"score 0, 1 or 2, found 5",
        ),
        (
            "baseline",
            lambda f: f.loc.__setitem__((1, "patient_id"), "X9"),
            r"baseline.tsv, column 'patient_id', line 3: patient 'X9' has a baseline "
            "row but no visits",
        ),
        (
            "visits",
            lambda f: f.loc.__setitem__(
                (f["RULM"] == 1, "RULM_sum"), f["RULM_sum"].iloc[0]
            ),
            r"no patient is left after the registry filters",
        ),
    ],
)
def test_bad_registry_input(export, registry_cfg, table, edit, pattern):
    _, paths = export
    _break(paths, table, edit)
    with pytest.raises(InputError, match=pattern):
        read_registry(paths["visits"], paths["baseline"], registry_cfg)


def test_item_levels_by_name_or_glob():
    items = ["CHOP-INTEND_A", "CHOP-INTEND_B", "CHOP-INTEND_C"]
    assert item_transforms(items, ["CHOP-INTEND_A"], ["CHOP-INTEND_*"]) == {
        "CHOP-INTEND_A": "item_0_6",
        "CHOP-INTEND_B": "item_0_4",
        "CHOP-INTEND_C": "item_0_4",
    }
    assert set(item_transforms(items, [], []).values()) == {"item_0_2"}
    four = TRANSFORMS["item_0_4"][0](np.arange(5.0))
    np.testing.assert_allclose(expit(four), [0.1, 0.3, 0.5, 0.7, 0.9])
