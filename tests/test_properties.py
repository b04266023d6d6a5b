"""Property-based tests (hypothesis) of ingestion, preprocessing and config checks.

Generated long tables: any well-formed one round-trips into the cohort, whatever
the row order; any malformed one is an :class:`InputError` naming file, column and
line (never another exception); any invalid config value is named by its key path.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from odevae.config_schema import schema_error
from odevae.data.ingest import ingest_table
from odevae.data.preprocess import preprocess_tables
from odevae.data.tables import write_tsv
from odevae.errors import InputError
from tests.conftest import ROOT
from tests.test_ingest import table_cfg

SCHEMA = yaml.safe_load(
    (ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text()
)
DEFAULT = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
MEASUREMENTS = ["m1", "m2", "m3"]
TABLE = table_cfg(  # the column map of the generated tables (schema defaults filled)
    visits="visits.csv",
    id_column="id",
    time_column="time",
    time_unit="days",
    measurements=list(MEASUREMENTS),
    covariates=["age"],
)
FAST = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# values that survive CSV text exactly: hundredths, some negative, some missing
value = st.one_of(st.none(), st.integers(-10_000, 10_000).map(lambda k: k / 100))


#: A malformed cell: kind → (column, None for the drawn measurement column; the bad
#: text; what the error must say).
CELL_ERRORS = {
    "infinite": (None, "inf", "finite"),
    "time_word": ("time", "soon", "expected a number"),
    "empty_time": ("time", "", "empty cell"),
    "empty_id": ("id", "", "patient id"),
}


@st.composite
def long_tables(draw) -> pd.DataFrame:
    """A well-formed visit table: text ids, distinct times per patient, at least
    one observed measurement per row, a covariate constant per patient."""
    ids = draw(
        st.lists(
            st.text("abcXYZ019_-", min_size=1, max_size=4),
            min_size=1,
            max_size=5,
            unique=True,
        )
    )
    rows = []
    for k, pid in enumerate(ids):
        times = draw(st.lists(st.integers(0, 400), min_size=1, max_size=5, unique=True))
        for t in times:
            values = draw(st.lists(value, min_size=3, max_size=3))
            # at least one observed value per row, and per column (the first row)
            seen = range(3) if not rows else [draw(st.integers(0, 2))]
            for j in seen:
                if values[j] is None:
                    values[j] = draw(st.integers(-10_000, 10_000)) / 100
            rows.append(
                {
                    "id": pid,
                    "time": t / 4,
                    **dict(zip(MEASUREMENTS, values, strict=True)),
                }
                | {"age": 20 + k}
            )
    return pd.DataFrame(rows)


def ingest_and_preprocess(table: pd.DataFrame, tmp: Path):
    path = tmp / "visits.csv"
    table.to_csv(path, index=False)
    visits, baseline = ingest_table(TABLE | {"visits": str(path)}, "days")
    write_tsv(visits, tmp / "v.tsv", digits=12)
    write_tsv(baseline, tmp / "b.tsv", digits=12)
    return preprocess_tables(tmp / "v.tsv", tmp / "b.tsv", {"min_visits": 1}).cohort


def observed_cells(cohort) -> pd.DataFrame:
    """(patient, relative time, measurement, value) of every observed value."""
    long = cohort.to_long().melt(["patient_id", "time"], var_name="m").dropna()
    return long.sort_values(["patient_id", "time", "m"]).reset_index(drop=True)


@FAST
@given(table=long_tables(), seed=st.integers(0, 2**16))
def test_well_formed_tables_round_trip_in_any_row_order(table, seed):
    with tempfile.TemporaryDirectory() as tmp:
        cohort = ingest_and_preprocess(table, Path(tmp))
        shuffled = table.sample(frac=1.0, random_state=seed)
        again = ingest_and_preprocess(shuffled, Path(tmp))
    # each observed value once, at its patient and time since the first visit
    expected = table.assign(
        time=table["time"] - table.groupby("id")["time"].transform("min")
    )
    expected = (
        expected.rename(columns={"id": "patient_id"})
        .drop(columns="age")
        .melt(["patient_id", "time"], var_name="m")
        .dropna()
        .sort_values(["patient_id", "time", "m"])
        .reset_index(drop=True)
    )
    got = observed_cells(cohort)
    assert got[["patient_id", "m"]].equals(expected[["patient_id", "m"]])
    np.testing.assert_allclose(got["time"], expected["time"], atol=1e-9)
    np.testing.assert_allclose(got["value"], expected["value"], atol=1e-9)
    # observed masks are the non-missing cells, padding is never observed
    assert not (cohort.observed & ~cohort.visits[..., None]).any()
    assert int(cohort.observed.sum()) == int(table[MEASUREMENTS].notna().sum().sum())
    assert (cohort.values[~cohort.observed] == 0).all()
    # shuffling rows changes nothing but the order of the patients
    order = again.index_of(cohort.patient_ids)
    for key in ("times", "values", "observed", "visits", "baseline"):
        np.testing.assert_array_equal(getattr(again, key)[order], getattr(cohort, key))
    ages = table.groupby("id")["age"].first().loc[list(cohort.patient_ids)]
    np.testing.assert_array_equal(cohort.baseline[:, 0], ages.to_numpy())


def _defect(draw, table: pd.DataFrame) -> tuple[pd.DataFrame, str, int | None, str]:
    """One defect in a copy of ``table``: the table (all cells as text), the column,
    the 0-based row (None: the whole column) and a word of the expected message."""
    text = table.astype(object).where(table.notna(), "").astype(str)
    row = draw(st.integers(0, len(text) - 1))
    kind = draw(
        st.sampled_from(
            [
                "word",
                "infinite",
                "time_word",
                "empty_time",
                "empty_id",
                "missing_column",
                "duplicate_time",
            ]
        )
    )
    col = draw(st.sampled_from(MEASUREMENTS))
    if kind == "word":
        text.iloc[row, text.columns.get_loc(col)] = draw(
            st.sampled_from(["n.d.", "<5", "high", "1,5", "x"])
        )
        return text, col, row, "expected a number"
    if kind in CELL_ERRORS:
        column, value, expected = CELL_ERRORS[kind]
        column = column or col  # None: the drawn measurement column
        text.iloc[row, text.columns.get_loc(column)] = value
        return text, column, row, expected
    if kind == "missing_column":
        return text.drop(columns=col), col, None, "does not exist"
    # a second visit of the row's patient at the same time, with other values
    copy_row = text.iloc[[row]].copy()
    copy_row[MEASUREMENTS] = "12345"
    text = pd.concat([text, copy_row], ignore_index=True)
    return text, None, row, "with different values"


@FAST
@given(data=st.data())
def test_malformed_tables_raise_input_error_naming_file_column_and_line(data):
    table = data.draw(long_tables())
    text, col, row, words = _defect(data.draw, table)
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "visits.csv")
        text.to_csv(path, index=False)
        try:
            ingest_table(TABLE | {"visits": path}, "days")
        except InputError as err:
            error, message = err, str(err)
        else:
            raise AssertionError(f"no error for a table with a defect ({words})")
    assert words in message, message
    assert message.startswith(f"file {path}"), message
    assert "\n" not in message
    if words == "with different values":
        first, second = row + 2, len(text) + 1  # header is line 1
        assert f"line {first}" in message and f"line {second}" in message, message
        return
    assert error.column == col, message
    if row is not None:
        assert error.line == row + 2, message


def _leaves(schema: dict, path=()) -> list[tuple[tuple, dict]]:
    """Every key path of the schema with its node (objects and their keys)."""
    out = []
    for key, node in schema.get("properties", {}).items():
        out.append(((*path, key), node))
        out += _leaves(node, (*path, key))
    return out


LEAVES = [(path, node) for path, node in _leaves(SCHEMA) if path != ("paper",)]
SECTIONS = [()] + [path for path, node in LEAVES if "properties" in node]
WRONG = [123456789, -1, 0.5, "not-a-valid-choice", [["nested"]], {"zz": 1}, True, None]


def _set(config: dict, path: tuple, value) -> None:
    node = config
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value


@settings(max_examples=300, deadline=None)
@given(leaf=st.sampled_from(LEAVES), wrong=st.sampled_from(WRONG))
def test_an_invalid_value_is_named_by_its_key_path(leaf, wrong):
    path, node = leaf
    assume(not Draft202012Validator(node).is_valid(wrong))
    config = copy.deepcopy(DEFAULT)
    _set(config, path, wrong)
    message = schema_error(config, SCHEMA)
    assert message is not None
    named = message.split("'")[1]  # the key path, or an item below it (list.0)
    assert named == ".".join(path) or named.startswith(".".join(path) + "."), message
    assert "\n" not in message


@settings(max_examples=100, deadline=None)
@given(section=st.sampled_from(SECTIONS), name=st.text("abcxyz_", min_size=1))
def test_an_unknown_key_is_named_with_its_section_and_the_allowed_keys(section, name):
    node = SCHEMA
    for key in section:
        node = node["properties"][key]
    assume(name not in node["properties"])
    config = copy.deepcopy(DEFAULT)
    _set(config, (*section, name), 1)
    message = schema_error(config, SCHEMA)
    where = ".".join(section) or "(top level)"
    assert message.startswith(f"config key '{where}': Additional properties"), message
    assert f"'{name}' was unexpected" in message
    assert "allowed keys: " + ", ".join(node["properties"]) in message
