"""``snakemake paper``: the manifest, the follow-up paper's prediction table, and a
paper run on tiny settings through Snakemake modules."""

import pandas as pd
import pytest
import yaml

from odevae.paper import ITEMS, latent_one_step_mse, prediction_table, write_manifest
from tests.conftest import TINY, merge, snakemake


def test_latent_error_is_averaged_per_patient_before_patients():
    rows = []
    # patient a: two one-step targets with squared errors 1 and 3 (per dim mean)
    for visit, err in ((1, 1.0), (2, 3.0)):
        for dim in (1, 2):
            rows.append(("a", visit, dim, err**0.5))
    rows.append(("b", 1, 1, 0.0))  # patient b: one target, error 0
    rows.append(("b", 1, 2, 0.0))
    latent = pd.DataFrame(rows, columns=["patient_id", "visit", "dim", "predicted"])
    latent = latent.assign(
        target=0.0, method="odevae", fold=0, horizon="one_step", n_history=1
    )
    extra = latent.assign(horizon="from_first", predicted=100.0)  # not scored
    mse = latent_one_step_mse(pd.concat([latent, extra]))
    assert mse["odevae"] == pytest.approx((2.0 + 0.0) / 2)


def test_prediction_table_takes_data_scores_from_the_pooled_one_step_rows():
    summary = pd.DataFrame(
        {
            "horizon": ["one_step", "one_step", "one_step", "from_first"],
            "method": ["locf", "odevae", "odevae", "odevae"],
            "fold": ["pooled", "pooled", "0", "pooled"],
            "mse": [2.0, 1.0, 9.0, 9.0],
            "ratio_mse": [1.0, 0.5, 9.0, 9.0],
            "ratio_ci_low": [1.0, 0.4, None, None],
            "ratio_ci_high": [1.0, 0.6, None, None],
        }
    )
    latent = pd.DataFrame(
        {
            "patient_id": ["a"],
            "visit": [1],
            "dim": [1],
            "predicted": [2.0],
            "target": [0.0],
            "method": ["odevae"],
            "fold": [0],
            "horizon": ["one_step"],
        }
    )
    table = prediction_table(summary, latent).set_index("workflow_method")
    assert table.loc["odevae", "data_mse"] == 1.0
    assert table.loc["odevae", "data_ratio_to_locf"] == 0.5
    assert table.loc["odevae", "latent_mse"] == 4.0
    assert table.loc["locf", "data_mse"] == 2.0
    assert pd.isna(table.loc["mixed_model", "data_mse"])  # absent: NaN, not made up


def test_manifest_copies_made_items_and_says_why_the_rest_are_missing(tmp_path):
    source = tmp_path / "made.png"
    source.write_bytes(b"png")
    target = "bj_linear2_data_vs_truth.png"
    manifest = write_manifest(
        ["bj_linear2"], {target: str(source)}, tmp_path / "paper"
    ).set_index("item")
    assert len(manifest) == len(ITEMS)
    made = manifest[manifest["status"] == "made"]
    assert list(made.index) == ["Sec. 5.2 data vs truth per group"]
    assert (tmp_path / "paper" / target).read_bytes() == b"png"
    missing_source = manifest.loc["Sec. 5.2 two individual fits", "status"]
    assert missing_source == "not made: its source file is missing"
    other = manifest.loc["Sec. 5.3 data vs truth per group", "status"]
    assert "bj_lotka_volterra not selected" in other
    assert (tmp_path / "paper" / "MANIFEST.tsv").is_file()


@pytest.mark.workflow
def test_paper_target_runs_a_preset_as_a_module(workdir):
    shrink = {
        "simulation": {"n": 20, "p": 4, "q": 6, "q_info": 2},
        "cv": {"folds": 2},
        "train": {"epochs": 2, "progress_bar": False},
        "figures": {"dpi": 40},
    }
    config = merge(
        TINY,
        {
            "paper": {
                "runs": ["bj_linear2"],
                "overrides": shrink,
                "cost_benchmark": "skip",
            }
        },
    )
    (workdir / "paper.yaml").write_text(yaml.safe_dump(config))
    snakemake(workdir, "paper", "--configfile", "paper.yaml")
    paper = workdir / "results" / "paper"
    manifest = pd.read_csv(paper / "MANIFEST.tsv", sep="\t", keep_default_na=False)
    assert len(manifest) == len(ITEMS)
    for row in manifest.itertuples():
        if row.status == "made":
            assert (workdir / row.file).is_file(), row.item
        else:
            assert row.status.startswith("not made: "), row.item
    made = manifest[manifest["status"] == "made"]
    assert len(made) == 3 and made["config"].eq("config/bj_linear2.yaml").all()
    # the module ran with the preset (n overridden) into results/bj_linear2/
    folds = pd.read_csv(workdir / "results" / "bj_linear2" / "folds.tsv", sep="\t")
    assert len(folds) == 20
