"""Ingestion of real cohorts by a column map (config section ``table``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from snakemake.utils import validate

from odevae.data.cleaning import Drops
from odevae.data.ingest import ingest_table
from odevae.data.preprocess import preprocess_tables
from odevae.data.report import cohort_report
from odevae.data.tables import write_tsv
from odevae.data.transforms import TRANSFORMS, inverse_transform
from odevae.errors import InputError
from tests.conftest import ROOT

SCHEMA = str(ROOT / "workflow" / "schemas" / "config.schema.yaml")


def table_cfg(**keys) -> dict:
    """The ``table`` section with schema defaults and ``keys``."""
    config = {"table": keys}
    validate(config, SCHEMA)
    return config["table"]


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


VISITS = (
    "pid,day,crp,score,age,sex\n"
    "p1,0,10,0.5,40,f\n"
    "p1,365.25,20,0.25,41,f\n"
    "p2,30,1,0.5,60,m\n"
    "p2,60,,0.75,60,m\n"
)


def cfg_for(path, **keys):
    base = dict(
        visits=path,
        id_column="pid",
        time_column="day",
        time_unit="days",
        measurements=["crp", "score"],
        covariates=["age", "sex"],
        categorical=["sex"],
    )
    return table_cfg(**(base | keys))


def test_column_map_transforms_units_and_first_visit_covariates(tmp_path):
    cfg = cfg_for(write(tmp_path, "v.csv", VISITS), transforms={"crp": "log"})
    visits, baseline = ingest_table(cfg, "years")
    assert list(visits.columns) == ["patient_id", "time", "crp", "score"]
    np.testing.assert_allclose(visits["time"], [0, 1, 30 / 365.25, 60 / 365.25])
    np.testing.assert_allclose(visits["crp"], np.log([10, 20, 1, np.nan]))
    # covariates from each patient's first visit; sex one-hot (f is the reference)
    assert list(baseline.columns) == ["patient_id", "age", "sex_m"]
    assert baseline.to_dict("list") == {
        "patient_id": ["p1", "p2"],
        "age": [40.0, 60.0],
        "sex_m": [0.0, 1.0],
    }
    months, _ = ingest_table(cfg, "months")
    np.testing.assert_allclose(months["time"][1], 12.0)


def test_globs_parquet_and_baseline_table(tmp_path):
    visits = pd.DataFrame(
        {
            "id": ["01", "01", "1", "1"],
            "t": [0.0, 2.0, 0.0, 1.0],
            "lab_a": [1.0, 2.0, 3.0, 4.0],
            "lab_b": [0.1, 0.2, 0.3, 0.4],
            "note": ["x"] * 4,
        }
    )
    visits.to_parquet(tmp_path / "v.parquet")
    base = write(tmp_path, "b.tsv", "id\tweight\tgroup\n1\t70\tB\n01\t80\tA\n")
    cfg = table_cfg(
        visits=str(tmp_path / "v.parquet"),
        baseline=base,
        id_column="id",
        time_column="t",
        time_unit="months",
        measurements=["lab_*"],
        categorical=["group"],
    )
    long, baseline = ingest_table(cfg, "months")
    assert list(long.columns) == ["patient_id", "time", "lab_a", "lab_b"]
    assert long["patient_id"].tolist() == ["01", "01", "1", "1"]  # text ids
    assert baseline.set_index("patient_id").loc["1", "group_B"] == 1.0


def test_dates_count_from_the_baseline_date(tmp_path):
    visits = write(
        tmp_path,
        "v.csv",
        "pid,date,x\na,2020-01-11,1\na,2020-01-31,2\nb,2021-03-01,3\nb,2021-03-11,4\n",
    )
    base = write(tmp_path, "b.csv", "pid,start,age\na,2020-01-01,3\nb,2021-03-01,4\n")
    cfg = table_cfg(
        visits=visits,
        baseline=base,
        id_column="pid",
        time_column="date",
        time_unit="date",
        baseline_date_column="start",
        measurements=["x"],
    )
    long, baseline = ingest_table(cfg, "days")
    assert long["time"].tolist() == [10.0, 30.0, 0.0, 10.0]
    assert list(baseline.columns) == ["patient_id", "age"]  # the date is no covariate
    # without a baseline table: the baseline date and covariates from the visits
    inline = write(
        tmp_path,
        "w.csv",
        "pid,date,start,x,age\na,2020-01-11,2020-01-01,1,3\na,2020-01-31,2020-01-01,"
        "2,3\nb,2021-03-05,2021-03-01,3,4\nb,2021-03-11,2021-03-01,4,4\n",
    )
    cfg = cfg | {"visits": inline, "baseline": None, "covariates": ["age"]}
    long, baseline = ingest_table(cfg, "weeks")
    np.testing.assert_allclose(long["time"], np.array([10, 30, 4, 10]) / 7)
    assert baseline["age"].tolist() == [3.0, 4.0]
    early = inline.replace("w.csv", "e.csv")
    Path(early).write_text(Path(inline).read_text().replace("2021-03-05", "2021-02-05"))
    # a visit before the baseline date gets a negative time (preprocessing re-zeroes)
    long, _ = ingest_table(cfg | {"visits": early}, "weeks")
    np.testing.assert_allclose(long["time"], np.array([10, 30, -24, 10]) / 7)


@pytest.mark.parametrize(
    ("text", "keys", "pattern"),
    [
        (VISITS.replace("pid,", "who,"), {}, r"column 'pid'.*config key 'table.id"),
        (VISITS.replace(",day,", ",when,"), {}, r"column 'day'.*'table.time_column'"),
        (
            VISITS,
            {"measurements": ["crp", "nope"]},
            r"v.csv, column 'nope', config key 'table.measurements': configured "
            r"column 'nope' does not exist",
        ),
        (
            VISITS,
            {"covariates": ["age", "bmi*"]},
            r"column 'bmi\*', config key 'table.covariates'",
        ),
        (
            VISITS.replace("p1,0,10,", "p1,0,high,"),
            {},
            r"v.csv, column 'crp', line 2: expected a number, found 'high'",
        ),
        (
            VISITS.replace("p2,30,1,", "p2,30,inf,"),
            {},
            r"column 'crp', line 4: expected a finite number, found inf",
        ),
        (
            VISITS.replace("p2,60,", "p2,,"),
            {},
            r"column 'day', line 5: expected a visit time, found an empty cell",
        ),
        (
            VISITS.replace("p2,60,", "p2,two,"),
            {},
            r"column 'day', line 5: expected a number, found 'two'",
        ),
        (
            VISITS,
            {"time_unit": None},
            r"config key 'table.time_unit': a numeric time column needs a unit",
        ),
        (
            VISITS.replace("p2,60,,0.75", "p2,30,5,0.75"),
            {},
            r"v.csv, column 'crp': patient 'p2' has 2 visits at time 30 with "
            r"different values \(line 4, line 5\)",
        ),
        (
            VISITS.replace("10,0.5", "10,")
            .replace("20,0.25", "20,")
            .replace("1,0.5", "1,")
            .replace(",0.75", ","),
            {},
            r"column 'score': every value is missing",
        ),
        (
            VISITS,
            {"transforms": {"score": "log", "crp": "logit"}},
            r"column 'crp', line 2, config key 'table.transforms.crp': transform "
            r"'logit' needs a value in \(0, 1\), found 10",
        ),
        (
            VISITS.replace("p1,0,10,", "p1,0,0,"),
            {"transforms": {"crp": "log"}},
            r"column 'crp', line 2, config key 'table.transforms.crp': transform "
            r"'log' needs a value > 0, found 0",
        ),
        (
            VISITS,
            {"transforms": {"cpr": "log"}},
            r"column 'cpr', config key 'table.transforms': configured column 'cpr'",
        ),
        (
            VISITS.replace("age,sex", "age,sex").replace(",40,f", ",old,f"),
            {},
            r"v.csv, column 'age', line 2: expected a number, found 'old'",
        ),
        ("", {}, "v.csv: the file is empty"),
        ("pid,day,crp,score,age,sex\n", {}, "v.csv: the file has a header but no rows"),
    ],
)
def test_bad_input_names_file_column_and_line_or_key(tmp_path, text, keys, pattern):
    cfg = cfg_for(write(tmp_path, "v.csv", text), **keys)
    with pytest.raises(InputError, match=pattern):
        ingest_table(cfg, "years")


def test_unknown_transform_is_a_schema_error():
    from snakemake.exceptions import WorkflowError

    with pytest.raises(WorkflowError, match=r"'sqrt' is not one of"):
        table_cfg(transforms={"crp": "sqrt"})


def test_unparseable_date_names_the_cell(tmp_path):
    visits = write(tmp_path, "v.csv", "pid,date,x\na,2020-01-11,1\na,11/02/2020,2\n")
    cfg = table_cfg(
        visits=visits,
        id_column="pid",
        time_column="date",
        time_unit="date",
        measurements=["x"],
        covariates=["x"],
    )
    with pytest.raises(
        InputError, match=r"column 'date', line 3: expected an ISO date.*'11/02/2020'"
    ):
        ingest_table(cfg, "years")


@pytest.mark.parametrize(
    ("baseline", "pattern"),
    [
        ("pid,age\np1,3\n", r"b.csv, column 'pid': patient 'p2' has visits but no"),
        ("pid,age\np1,3\np2,4\np1,5\n", r"line 4: patient 'p1' has more than one"),
    ],
)
def test_baseline_table_must_match_the_patients(tmp_path, baseline, pattern):
    cfg = cfg_for(
        write(tmp_path, "v.csv", VISITS),
        baseline=write(tmp_path, "b.csv", baseline),
        covariates=[],
        categorical=[],
    )
    with pytest.raises(InputError, match=pattern):
        ingest_table(cfg, "years")


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_inverse_transforms_undo_the_transforms(name):
    x = {
        "none": [-2.0, 0.0, 3.5],
        "log": [0.1, 1.0, 250.0],
        "log1p": [-0.5, 0.0, 9.0],
        "logit": [0.01, 0.5, 0.9],
        "item_0_2": [0.0, 1.0, 2.0],
        "item_0_4": [0.0, 1.0, 2.0, 3.0, 4.0],
        "item_0_6": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
    }[name]
    forward = TRANSFORMS[name][0]
    table = pd.DataFrame({"v": forward(np.array(x))})
    back = inverse_transform(table, {"v": name})["v"]
    np.testing.assert_allclose(back, x, rtol=1e-9, atol=1e-9)


def test_pbcseq_counts_27_one_visit_patients_dropped(pbcseq_raw, pbcseq):
    """The real public cohort: 312 patients, 1945 visits; 27 have one visit."""
    raw = pbcseq_raw
    assert raw.shape == (1945, 19) and raw["id"].nunique() == 312
    result = pbcseq
    drops = result.drops.set_index("reason")
    assert drops.loc["fewer than 2 visits", "patients"] == 27
    assert drops.loc["fewer than 2 visits", "visits"] == 27
    assert result.cohort.n == 312 - 27
    assert int(result.cohort.visits.sum()) == 1945 - 27
    chol = list(result.cohort.measurement_names).index("chol")
    kept_missing = 1 - result.cohort.observed[result.cohort.visits][:, chol].mean()
    assert 0.4 < kept_missing < 0.45  # masked, not imputed
    assert list(result.cohort.covariate_names) == ["age", "sex_m", "trt"]
    assert result.visits["time"].max() == pytest.approx(5152 / 365.25, abs=0.2)


def test_parquet_errors_name_the_row(tmp_path):
    frame = pd.DataFrame(
        {"pid": ["a", "a", "b"], "t": [0.0, 1.0, 0.0], "x": ["1", "2", "n.d."]}
    )
    frame.to_parquet(tmp_path / "v.parquet")
    cfg = table_cfg(
        visits=str(tmp_path / "v.parquet"),
        id_column="pid",
        time_column="t",
        time_unit="years",
        measurements=["x"],
        covariates=["x"],
    )
    with pytest.raises(
        InputError,
        match=r"v.parquet, column 'x', row 3: expected a number, found 'n.d.'",
    ):
        ingest_table(cfg, "years")


def test_conflicting_duplicates_pass_ingestion_when_averaged(tmp_path):
    text = VISITS.replace("p2,60,,0.75", "p2,30,5,0.75")
    cfg = cfg_for(write(tmp_path, "v.csv", text))
    visits, _ = ingest_table(cfg, "years", duplicates="average")
    assert len(visits) == 4  # averaged later, in preprocess


def test_dates_keep_the_time_of_day(tmp_path):
    visits = write(
        tmp_path,
        "v.csv",
        "pid,when,crp,age\np1,2020-01-01 09:00,1,5\np1,2020-01-01 15:00,2,5\n"
        "p1,2020-01-03 09:00,3,5\n",
    )
    cfg = table_cfg(
        visits=visits,
        id_column="pid",
        time_column="when",
        time_unit="date",
        measurements=["crp"],
        covariates=["age"],
    )
    long, _ = ingest_table(cfg, "days")
    np.testing.assert_allclose(long["time"], [0.0, 0.25, 2.0])


def test_covariate_globs_leave_out_time_and_measurements(tmp_path):
    visits = write(tmp_path, "v.csv", "pid,day,crp,age\np1,0,1,50\np1,3,2,50\n")
    cfg = table_cfg(
        visits=visits,
        id_column="pid",
        time_column="day",
        time_unit="days",
        measurements=["crp"],
        covariates=["*"],
    )
    _, baseline = ingest_table(cfg, "days")
    assert list(baseline.columns) == ["patient_id", "age"]


CHANGING = (  # p1's first row holds no measurement; age and sex change
    "pid,day,crp,score,age,sex\n"
    "p1,0,,,40,f\n"
    "p1,30,10,0.5,41,f\n"
    "p1,60,12,0.6,43,m\n"
    "p2,0,7,0.25,60,m\n"
    "p2,30,8,0.5,60,m\n"
)


@pytest.mark.parametrize(
    "row, time_zero, age_p1",
    [
        ("first", "first_measurement", 40.0),
        ("time_zero", "first_measurement", 41.0),
        ("time_zero", "first_row", 40.0),
    ],
)
def test_baseline_row_and_changing_covariates_are_reported(
    tmp_path, caplog, row, time_zero, age_p1
):
    cfg = cfg_for(write(tmp_path, "v.csv", CHANGING), baseline_row=row)
    notes = []
    with caplog.at_level("WARNING"):
        _, baseline = ingest_table(cfg, "days", time_zero=time_zero, notes=notes)
    assert baseline.set_index("patient_id").loc["p1", "age"] == age_p1
    report = pd.DataFrame(notes).set_index("step")
    assert report.loc["age", "section"] == "time-varying covariate"
    assert report.loc["age", "patients"] == 1 and report.loc["age", "value"] == 3.0
    assert report.loc["sex", "patients"] == 1 and report.loc["sex", "value"] == 2.0
    assert f"the model uses the {row} row's value" in report.loc["age", "item"]
    assert "covariate age changes between visits for 1 of 2 patients" in caplog.text


def test_each_covariate_column_is_reported_changing_or_not(tmp_path):
    cfg = cfg_for(write(tmp_path, "v.csv", VISITS))  # p1 turns 41 a year later
    notes = []
    ingest_table(cfg, "days", notes=notes)
    report = pd.DataFrame(notes).set_index("step")
    assert report.loc[["age", "sex"], "patients"].tolist() == [1, 0]
    assert report.loc[["age", "sex"], "value"].tolist() == [1.0, 1.0]


@pytest.mark.parametrize(
    "unit, factor", [("seconds", 86400.0), ("minutes", 1440.0), ("hours", 24.0)]
)
def test_fine_time_units_convert_to_the_output_unit(tmp_path, unit, factor):
    text = "pid,t,crp,score,age,sex\np1,0,1,2,40,f\np1,{},2,3,40,f\n"
    path = write(tmp_path, "v.csv", text.format(3 * factor))
    cfg = cfg_for(path, time_column="t", time_unit=unit)
    visits, _ = ingest_table(cfg, "days")
    assert visits["time"].tolist() == pytest.approx([0.0, 3.0])


def test_a_patient_without_measurements_keeps_its_first_row_as_baseline(tmp_path):
    text = CHANGING + "p3,0,,,70,f\n"
    cfg = cfg_for(write(tmp_path, "v.csv", text), baseline_row="time_zero")
    _, baseline = ingest_table(cfg, "days")
    assert baseline.set_index("patient_id").loc[["p1", "p3"], "age"].tolist() == [
        41.0,
        70.0,
    ]


ENROLMENT = (
    "pid,day,crp,score,age,sex\n"
    "p1,-10,10,0.5,40,f\n"
    "p1,0,20,0.25,40,f\n"
    "p1,30,15,0.5,40,f\n"
    "p2,5,1,0.5,60,m\n"
    "p2,40,2,0.75,60,m\n"
)


def test_times_before_enrolment_are_re_zeroed_and_the_shift_reported(tmp_path):
    """Days from enrolment: p1 has a lab value 10 days before it, p2's first is 5
    days after it. Both go in; preprocessing moves each first visit to 0."""
    cfg = cfg_for(write(tmp_path, "v.csv", ENROLMENT))
    visits, baseline = ingest_table(cfg, "days")
    assert visits["time"].tolist() == [-10.0, 0.0, 30.0, 5.0, 40.0]
    write_tsv(visits, tmp_path / "visits.tsv", digits=10)
    write_tsv(baseline, tmp_path / "baseline.tsv", digits=10)
    result = preprocess_tables(
        tmp_path / "visits.tsv", tmp_path / "baseline.tsv", time_unit="days"
    )
    assert result.visits["time"].tolist() == [0.0, 10.0, 40.0, 0.0, 35.0]
    report = cohort_report(result.drops, result.cohort, result.notes)
    before = report[report["step"] == "raw times before 0"].iloc[0]
    assert (before["patients"], before["visits"], before["value"]) == (1, 1, -10.0)
    shift = report[report["step"] == "shift"]
    assert shift["value"].tolist() == [-10.0, 5.0]  # smallest, largest time 0
    assert shift["patients"].tolist() == [2, 2]
    # in years, the same shift in the output unit
    years, _ = ingest_table(cfg, "years")
    np.testing.assert_allclose(years["time"][0], -10 / 365.25)


def test_baseline_rows_without_visits_are_dropped_and_counted(tmp_path):
    """A registry-wide baseline table: p9 and p10 have no visits."""
    base = write(tmp_path, "b.csv", "pid,age\np9,5\np1,3\np2,4\np10,6\np9,5\n")
    cfg = cfg_for(
        write(tmp_path, "v.csv", VISITS), baseline=base, covariates=[], categorical=[]
    )
    drops = Drops()
    _, baseline = ingest_table(cfg, "years", drops=drops)
    assert baseline["patient_id"].tolist() == ["p1", "p2"]
    assert baseline["age"].tolist() == [3.0, 4.0]
    table = drops.table()
    row = table[table["reason"] == "baseline row but no visits"].iloc[0]
    assert (row["step"], row["patients"], row["visits"]) == ("ingest", 2, 0)
    with pytest.raises(
        InputError,
        match=r"b.csv, column 'pid', line 2, config key 'table.strict_baseline': "
        r"patient 'p9' has a baseline row but no visits",
    ):
        ingest_table(cfg | {"strict_baseline": True}, "years")
    # a baseline table that matches the visits drops nothing
    exact = write(tmp_path, "c.csv", "pid,age\np1,3\np2,4\n")
    drops = Drops()
    ingest_table(cfg | {"baseline": exact}, "years", drops=drops)
    assert drops.table()["patients"].tolist() == [0]
