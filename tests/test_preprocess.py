import numpy as np
import pandas as pd
import pytest

from odevae.errors import InputError
from odevae.preprocess import preprocess


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
            "patient_id\ttime\tx1\nA\t0\t1\nA\t-1\t1\n",
            BASELINE,
            r"column 'time', line 3: expected a visit time >= 0, found -1",
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
