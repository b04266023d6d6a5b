import numpy as np
import pandas as pd
import pytest

from odevae.data.preprocess import preprocess, preprocess_tables
from odevae.errors import InputError


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


BASELINE = "patient_id\tage\nA\t1.0\nB\t2.0\n"
ONE = {"min_visits": 1}  # keep one-visit patients (the default drops them)


def test_sorts_visits_and_shifts_times_to_first_visit(tmp_path):
    visits = write(
        tmp_path,
        "v.tsv",
        "patient_id\ttime\tx1\tx2\n"
        "B\t7.0\t5\t6\n"
        "A\t3.5\t1\t2\n"
        "B\t2.0\t3\t4\n"
        "A\t1.5\t0\t1\n"
        "A\t2.5\t9\t9\n",
    )
    cohort = preprocess(visits, write(tmp_path, "b.tsv", BASELINE))
    assert list(cohort.patient_ids) == ["B", "A"]  # order of first appearance
    np.testing.assert_allclose(cohort.times[0, :2], [0.0, 5.0])
    np.testing.assert_allclose(cohort.times[1], [0.0, 1.0, 2.0])
    np.testing.assert_allclose(cohort.values[0, :2], [[3, 4], [5, 6]])
    np.testing.assert_allclose(cohort.values[1, :, 0], [0, 9, 1])
    assert cohort.visits.tolist() == [[True, True, False], [True, True, True]]
    np.testing.assert_allclose(cohort.baseline[:, 0], [2.0, 1.0])  # B then A
    assert list(cohort.measurement_names) == ["x1", "x2"]


def test_missing_values_are_masked_not_imputed(tmp_path):
    visits = write(
        tmp_path, "v.csv", "patient_id,time,x1,x2\nA,0,1.0,\nA,1,,4.0\nB,0,2.0,3.0\n"
    )
    cohort = preprocess(visits, write(tmp_path, "b.tsv", BASELINE), options=ONE)
    assert cohort.observed[0].tolist() == [[True, False], [False, True]]
    assert cohort.values[0, 0, 1] == 0.0 and cohort.values[0, 1, 0] == 0.0
    assert not cohort.observed[1, 1].any()  # padding slot of B


def test_roundtrip_save_load(tiny_cohort, tmp_path):
    tiny_cohort.save(tmp_path / "c.npz")
    loaded = type(tiny_cohort).load(tmp_path / "c.npz")
    for key in tiny_cohort.__dataclass_fields__:
        np.testing.assert_array_equal(getattr(loaded, key), getattr(tiny_cohort, key))


def test_simulated_tables_feed_the_contract(tiny_cohort, tiny_tables):
    visits = pd.read_csv(tiny_tables["visits"], sep="\t")
    assert tiny_cohort.n == visits["patient_id"].nunique()
    assert int(tiny_cohort.visits.sum()) == len(visits)
    assert tiny_cohort.observed[tiny_cohort.visits].all()
    summary = tiny_cohort.summary()
    assert summary["n_visits"].sum() == len(visits)


@pytest.mark.parametrize(
    ("visits", "baseline", "pattern"),
    [
        (
            "patient_id\tx1\nA\t1\n",
            BASELINE,
            r"v.tsv, column 'time': column is missing",
        ),
        (
            "id\ttime\tx1\nA\t0\t1\n",
            BASELINE,
            r"column 'patient_id': column is missing",
        ),
        ("patient_id\ttime\nA\t0\n", BASELINE, "expected at least one measurement"),
        (
            "patient_id\ttime\tx1\nA\t0\t1\nA\t1\tabc\nB\t0\t1\n",
            BASELINE,
            r"column 'x1', line 3: expected a number, found 'abc'",
        ),
        (
            "patient_id\ttime\tx1\nA\t0\t1\nA\t\t2\nB\t0\t1\n",
            BASELINE,
            r"column 'time', line 3: expected a visit time",
        ),
        (
            "patient_id\ttime\tx1\nA\t0\tinf\nB\t0\t1\n",
            BASELINE,
            r"column 'x1', line 2: expected a finite number",
        ),
        (
            "patient_id\ttime\tx1\tx2\nA\t0\t1\t\nB\t0\t1\t\n",
            BASELINE,
            r"column 'x2': every value is missing",
        ),
        ("", BASELINE, "v.tsv: the file is empty"),
        (
            "patient_id\ttime\tx1\n",
            BASELINE,
            "v.tsv: the file has a header but no rows",
        ),
        (
            "patient_id\ttime\tx1\nA\t0\t1\nB\t0\t1\nC\t0\t1\n",
            BASELINE,
            r"b.tsv, column 'patient_id': patient 'C' has visits but no baseline row",
        ),
        (
            "patient_id\ttime\tx1\nA\t0\t1\n",
            BASELINE,
            r"b.tsv, column 'patient_id', line 3: patient 'B' has a baseline row",
        ),
        (
            "patient_id\ttime\tx1\nA\t0\t1\nB\t0\t1\n",
            "patient_id\tage\nA\t1\nB\told\n",
            r"b.tsv, column 'age', line 3: expected a number, found 'old'",
        ),
        (
            "patient_id\ttime\tx1\nA\t0\t1\nB\t0\t1\n",
            "patient_id\tage\nA\t\nB\t\n",
            r"b.tsv, column 'age': every value is missing",
        ),
        (
            "patient_id\ttime\tx1\nA\t0\t1\nA\tlate\t1\n",
            BASELINE,
            r"column 'time', line 3: expected a number, found 'late'",
        ),
    ],
)
def test_bad_input_names_file_column_and_line(tmp_path, visits, baseline, pattern):
    v = write(tmp_path, "v.tsv", visits)
    b = write(tmp_path, "b.tsv", baseline)
    with pytest.raises(InputError, match=pattern):
        preprocess(v, b, options=ONE)


def test_ids_are_text_and_empty_visits_are_dropped(tmp_path, caplog):
    visits = write(
        tmp_path,
        "v.tsv",
        "patient_id\ttime\tx1\tx2\n01\t0\t1\t2\n01\t1\t\t\n1\t3\t5\t6\n1\t4\t7\t\n",
    )
    baseline = write(tmp_path, "b.tsv", "patient_id\tage\n1\t3\n01\t4\n")
    with caplog.at_level("WARNING"):
        cohort = preprocess(visits, baseline, options=ONE)
    assert list(cohort.patient_ids) == ["01", "1"]  # "01" and "1" stay two patients
    assert cohort.visits.sum(1).tolist() == [1, 2]  # the empty visit of 01 is gone
    np.testing.assert_allclose(cohort.times[1], [0.0, 1.0])
    np.testing.assert_allclose(cohort.baseline[:, 0], [4.0, 3.0])
    assert "1 visits without any observed measurement (first at line 3)" in (
        caplog.text
    )


def drops_of(result):
    return result.drops.set_index("reason")[["patients", "visits"]]


def test_duplicates_collapsed_or_an_error_naming_the_lines_or_averaged(tmp_path):
    text = (
        "patient_id\ttime\tx1\tx2\n"
        "A\t0\t1\t2\n"
        "A\t0\t1\t2\n"  # exact duplicate: collapsed and counted
        "A\t1\t3\t\n"
        "A\t1\t5\t4\n"  # conflicting duplicate of line 4
        "B\t0\t1\t1\n"
        "B\t2\t1\t1\n"
    )
    v, b = write(tmp_path, "v.tsv", text), write(tmp_path, "b.tsv", BASELINE)
    with pytest.raises(
        InputError,
        match=r"v.tsv, column 'x1': patient 'A' has 2 visits at time 1 with different "
        r"values \(line 4, line 5\)",
    ):
        preprocess_tables(v, b)
    result = preprocess_tables(v, b, {"duplicates": "average"})
    counts = drops_of(result)
    assert counts.loc["exact duplicate visits (collapsed)", "visits"] == 1
    assert counts.loc["conflicting duplicate visits (averaged)", "visits"] == 1
    np.testing.assert_allclose(result.cohort.values[0, 1], [4.0, 4.0])  # mean, x2 4
    assert result.cohort.observed[0, 1].all()


def test_min_visits_drops_and_counts_patients(tmp_path):
    v = write(
        tmp_path,
        "v.tsv",
        "patient_id\ttime\tx1\nA\t5\t1\nA\t7\t2\nB\t3\t1\nC\t1\t1\nC\t2\t1\nC\t3\t1\n",
    )
    b = write(tmp_path, "b.tsv", "patient_id\tage\nA\t1\nB\t2\nC\t3\n")
    result = preprocess_tables(v, b)
    assert list(result.cohort.patient_ids) == ["A", "C"]
    assert drops_of(result).loc["fewer than 2 visits"].tolist() == [1, 1]
    np.testing.assert_allclose(result.cohort.times[0, :2], [0.0, 2.0])
    three = preprocess_tables(v, b, {"min_visits": 3})
    assert list(three.cohort.patient_ids) == ["C"]
    with pytest.raises(
        InputError, match=r"v.tsv, config key 'preprocess.min_visits': no patient is"
    ):
        preprocess_tables(v, b, {"min_visits": 4})


def test_outlier_filter_drops_jumps_keeps_first_visits(tmp_path):
    slopes = {"A": 1.0, "B": 1.5, "C": 2.0, "D": 0.5, "E": 0.8, "F": 1.2}
    rows = ["patient_id\ttime\tx1"]
    for p, slope in slopes.items():
        rows += [f"{p}\t{t}\t{10 + slope * t:g}" for t in range(4)]
    rows[rows.index("C\t2\t14")] = "C\t2\t40"  # +26, then -22: IQR of changes 0.55
    rows.append("G\t0\t90\nG\t1\t91")  # first visit far off: kept
    v = write(tmp_path, "v.tsv", "\n".join(rows) + "\n")
    b = write(
        tmp_path, "b.tsv", "patient_id\tage\n" + "".join(f"{p}\t1\n" for p in "ABCDEFG")
    )
    options = {"outlier_filter": {"score": "sum", "iqr_factor": 8.0}}
    result = preprocess_tables(v, b, options)
    assert drops_of(result).loc["outlier visits (score change)", "visits"] == 1
    c = result.visits[result.visits["patient_id"] == "C"]
    # the jump goes; the next visit is compared with the last kept one (+4) and stays
    assert c["x1"].tolist() == [10.0, 12.0, 16.0]
    assert result.visits["patient_id"].value_counts()["G"] == 2
    off = preprocess_tables(v, b)
    assert len(off.visits) == len(result.visits) + 1
    with pytest.raises(InputError, match="preprocess.outlier_filter.score"):
        preprocess_tables(v, b, {"outlier_filter": {"score": "x9", "iqr_factor": 2}})


def test_missing_covariates_get_an_indicator_and_stay_nan(tmp_path):
    v = write(
        tmp_path, "v.tsv", "patient_id\ttime\tx1\nA\t0\t1\nA\t1\t2\nB\t0\t1\nB\t1\t3\n"
    )
    b = write(tmp_path, "b.tsv", "patient_id\tage\tbmi\nA\t1\t\nB\t2\t30\n")
    cohort = preprocess(v, b)
    assert list(cohort.covariate_names) == ["age", "bmi", "bmi_missing"]
    assert np.isnan(cohort.baseline[0, 1]) and cohort.baseline[1, 1] == 30
    np.testing.assert_array_equal(cohort.baseline[:, 2], [1.0, 0.0])


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("patient_id,time,x1\nA,0,caf\xe9\n".encode("latin-1"), "expected UTF-8"),
        (b"patient_id,time,x1\nA,0,1\nA,1,2,7\n", "expected every row to have"),
        (b"patient_id,time,x1,x1\nA,0,1,2\n", "column 'x1': expected distinct"),
    ],
)
def test_unreadable_text_tables_are_one_clear_error(tmp_path, content, words):
    from odevae.data.validation import read_table

    path = tmp_path / "v.csv"
    path.write_bytes(content)
    with pytest.raises(InputError, match=words) as err:
        read_table(path)
    assert str(path) in str(err.value)


def test_line_numbers_count_blank_lines(tmp_path):
    v = write(tmp_path, "v.csv", "patient_id,time,x1\nA,0,1\n\nA,1,abc\n")
    b = write(tmp_path, "b.csv", "patient_id,age\nA,1\n")
    with pytest.raises(InputError, match="line 4"):
        preprocess_tables(v, b)


EARLY = (  # A's first row (an enrolment row) has no measurement
    "patient_id\ttime\tx1\tx2\n"
    "A\t1.0\t\t\n"
    "A\t3.0\t1\t2\n"
    "A\t4.5\t2\t3\n"
    "B\t2.0\t3\t4\n"
    "B\t2.5\t5\t6\n"
)


def notes_of(result, section):
    return result.notes[result.notes["section"] == section].set_index("step")


@pytest.mark.parametrize(
    "time_zero, times_a", [("first_measurement", [0.0, 1.5]), ("first_row", [2.0, 3.5])]
)
def test_time_zero_is_the_first_measured_visit_or_the_first_row(
    tmp_path, caplog, time_zero, times_a
):
    visits = write(tmp_path, "v.tsv", EARLY)
    with caplog.at_level("WARNING"):
        result = preprocess_tables(
            visits, write(tmp_path, "b.tsv", BASELINE), {"time_zero": time_zero}
        )
    np.testing.assert_allclose(result.cohort.times[0], times_a)
    np.testing.assert_allclose(result.cohort.times[1], [0.0, 0.5])  # B: no difference
    notes = notes_of(result, "time zero")
    assert notes.loc[time_zero, "patients"] == 2
    differ = notes.loc["first row without measurements"]
    assert differ["patients"] == 1 and differ["value"] == 2.0
    assert "1 patients have rows without any measurement" in caplog.text
    assert f"preprocess.time_zero: {time_zero}" in caplog.text


def test_an_unknown_time_zero_names_the_key(tmp_path):
    visits = write(tmp_path, "v.tsv", EARLY)
    with pytest.raises(InputError, match="config key 'preprocess.time_zero'"):
        preprocess(visits, write(tmp_path, "b.tsv", BASELINE), options={"time_zero": 0})


def test_a_first_visit_after_time_zero_starts_the_ode_there(tmp_path, tiny_config):
    from odevae.data.folds import make_folds
    from odevae.evaluate.predict import predict_fold
    from odevae.train.training import train_fold

    rows = ["patient_id\ttime\tx1\tx2"]
    for i in range(8):
        rows.append(f"P{i}\t0\t\t")  # enrolment rows without measurements
        rows += [f"P{i}\t{1 + i % 3 + k}\t{k + i}\t{2 * k - i}" for k in range(3)]
    visits = write(tmp_path, "v.tsv", "\n".join(rows) + "\n")
    base = "patient_id\tage\n" + "".join(f"P{i}\t{i}\n" for i in range(8))
    result = preprocess_tables(
        visits, write(tmp_path, "b.tsv", base), {"time_zero": "first_row"}
    )
    cohort = result.cohort
    assert (cohort.times[:, 0] > 0).all()
    folds = make_folds(cohort.patient_ids, 2, seed=0)
    train_fold(cohort, folds, 0, tiny_config, tmp_path / "fold")
    tables = predict_fold(
        str(tmp_path / "fold" / "model.ckpt"), cohort, folds, 0, 0.5, {}
    )
    latents = tables["latents"]
    first = latents[latents["visit"] == 0]
    np.testing.assert_allclose(first["time"], cohort.times[:, 0])
    np.testing.assert_allclose(first["mu1"], first["ode1"], rtol=1e-5)  # IVP start
    traj = tables["trajectories"].merge(
        first[["patient_id", "time", "mu1"]], on=["patient_id", "time"]
    )
    assert len(traj) == cohort.n  # first visits lie on the 0.5 grid
    np.testing.assert_allclose(traj["z1"], traj["mu1"], rtol=1e-5)


def test_scale_hint_when_measurements_differ_by_orders_of_magnitude(tmp_path, caplog):
    visits = write(
        tmp_path,
        "v.tsv",
        "patient_id\ttime\tsmall\tlarge\tflag\n"
        "A\t0\t0.1\t1000\t0\nA\t1\t0.2\t3000\t1\n"
        "B\t0\t0.3\t5000\t1\nB\t1\t0.1\t2000\t0\n",
    )
    baseline = write(tmp_path, "b.tsv", BASELINE)
    with caplog.at_level("WARNING"):
        off = preprocess_tables(visits, baseline, standardized=False)
    hint = off.notes[off.notes["section"] == "hint"]
    assert len(hint) == 1
    assert hint["step"].iloc[0] == "model.standardize_measurements is off"
    assert "(small)" in hint["item"].iloc[0] and "(large)" in hint["item"].iloc[0]
    assert hint["value"].iloc[0] > 1e4
    assert "measurement scales span orders of magnitude" in caplog.text
    on = preprocess_tables(visits, baseline, standardized=True)
    assert (on.notes["section"] != "hint").all()
    close = write(
        tmp_path,
        "w.tsv",
        "patient_id\ttime\ta\tb\nA\t0\t1\t10\nA\t1\t2\t30\nB\t0\t3\t20\nB\t1\t1\t40\n",
    )
    quiet = preprocess_tables(close, baseline, standardized=False)
    assert (quiet.notes["section"] != "hint").all()  # sd 0.96 vs 12.9: < 100-fold


def test_report_lists_time_unit_and_notes(tmp_path):
    from odevae.data.report import cohort_report

    visits = write(tmp_path, "v.tsv", EARLY)
    result = preprocess_tables(
        visits, write(tmp_path, "b.tsv", BASELINE), time_unit="weeks"
    )
    assert result.cohort.time_unit == "weeks"
    report = cohort_report(result.drops, result.cohort, result.notes)
    assert "follow-up (weeks)" in set(report["section"])
    assert "time zero" in set(report["section"])
