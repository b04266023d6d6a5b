"""The cost benchmark's quick mode writes its tables and figure (no timing asserts)."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import ROOT

COLUMNS = [
    "n",
    "p",
    "q",
    "epochs",
    "batch_size",
    "batched_s",
    "batched_plain_s",
    "batched_peak_mb",
    "batched_loss",
    "batched_acc_1nn",
    "batched_acc_threshold",
    "ref_s",
    "ref_peak_mb",
    "speedup",
]


def test_cost_benchmark_quick(tmp_path):
    result = subprocess.run(
        [sys.executable, "benchmarks/cost.py", "--quick", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Table 1" in result.stdout
    for name in ("n", "p", "q", "lv"):
        table = pd.read_csv(tmp_path / f"cost_{name}.tsv", sep="\t")
        assert set(COLUMNS) <= set(table.columns), name
        values = table[[c for c in COLUMNS if c != "ref_s"]].to_numpy(dtype=float)
        assert np.isfinite(values).all(), name
        assert (table["ref_s"] > 0).all() and (table["batched_s"] > 0).all()
    n_table = pd.read_csv(tmp_path / "cost_n.tsv", sep="\t")
    assert set(n_table["ref_solver"]) == {"torchdiffeq"}  # the original's way
    # both reference modes are exercised: a full run and an extrapolated one
    assert set(n_table["ref_timing"]) == {"measured", "extrapolated"}
    measured = n_table[n_table["ref_timing"] == "measured"]
    assert np.isfinite(measured[["ref_loss", "ref_acc_threshold"]].to_numpy()).all()
    assert "batched_s_per_1k" in n_table
    assert "batched_rel" in pd.read_csv(tmp_path / "cost_q.tsv", sep="\t")
    fits = pd.read_csv(tmp_path / "cost_fits.tsv", sep="\t")
    assert np.isfinite(fits.loc[fits["series"] == "batched", "loglog_slope"]).all()
    assert (tmp_path / "cost.png").stat().st_size > 0


def run_tiny(script: str, out: Path, *args: str) -> subprocess.CompletedProcess:
    """Run a benchmark script in its tiny mode, writing to ``out``; it must pass."""
    result = subprocess.run(
        [sys.executable, f"benchmarks/{script}", "--tiny", *args, "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def test_gpu_benchmark_tiny_runs_end_to_end_on_the_cpu(tmp_path):
    result = run_tiny("gpu.py", tmp_path, "--threads", "1")
    for title in ("Training", "One training step", "default workflow's fold 0"):
        assert title in result.stdout
    cells = pd.read_csv(tmp_path / "gpu.tsv", sep="\t")
    has_gpu = "cuda" in set(cells["device"])
    assert len(cells) == 2 * 3 * (1 + has_gpu)  # n x batch x device
    values = cells[["s", "peak_mb", "loss", "steps"]].to_numpy(dtype=float)
    assert np.isfinite(values).all() and (cells["s"] > 0).all()
    # batches of 16 take more steps than one batch of everyone
    cpu = cells[cells["device"] == "cpu"].set_index(["n", "batch_setting"])
    assert (cpu.loc[(256, "16"), "steps"], cpu.loc[(256, "all"), "steps"]) == (16, 1)
    step = pd.read_csv(tmp_path / "gpu_step.tsv", sep="\t")
    assert (step["ms_per_step"] > 0).all() and (step["aten_ops"] > 100).all()
    flows = pd.read_csv(tmp_path / "gpu_workflow.tsv", sep="\t")
    assert "cpu" in set(flows["accelerator"])
    assert np.isfinite(flows["final_train_loss"]).all()
    assert set(flows["auto_picks"]) == {"cpu"}  # batches of 8: the CPU, GPU or not


def test_large_cohort_benchmark_tiny(tmp_path):
    result = run_tiny("large_cohort.py", tmp_path)
    stages = pd.read_csv(tmp_path / "stages.tsv", sep="\t")
    assert list(stages["stage"]) == [
        "simulate",
        "preprocess",
        "split",
        "train",
        "comparators",
        "predict",
        "mixed_fit_10",
        "mixed_fit_20",
    ]
    assert (stages["seconds"] >= 0).all() and (stages["max_rss_mb"] > 0).all()
    assert "60 patients" in stages.loc[1, "note"]
    assert (tmp_path / "train" / "model.ckpt").is_file()
    assert "fitted on a random 10 of the 48 training patients" in result.stdout


def test_large_cohort_workflow_mode_describes_a_table_cohort_and_reads_its_jobs(
    tmp_path,
):
    """--workflow: the tables' config is valid and trains without tuning (from a
    --configfile), and the stage table sums each rule's benchmark files."""
    import importlib.util

    import yaml
    from snakemake.utils import update_config, validate

    from odevae.config_schema import resolve_auto

    spec = importlib.util.spec_from_file_location(
        "large_cohort", ROOT / "benchmarks" / "large_cohort.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    update_config(config, module.workflow_config(tmp_path, "big"))
    validate(config, str(ROOT / "workflow" / "schemas" / "config.schema.yaml"))
    resolved = resolve_auto(config)
    assert resolved["tuning"]["candidates"] == {}
    assert resolved["table"]["visits"] == str(tmp_path / "visits.tsv")
    for rule, fold, seconds, rss in [
        ("train", 0, 10.0, 700.0),
        ("train", 1, 30.0, 800.0),
        ("evaluate", None, 2.0, 200.0),
    ]:
        path = (
            tmp_path
            / "benchmarks"
            / (f"{rule}/fold_{fold}.tsv" if fold is not None else f"{rule}.tsv")
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"s": [seconds], "h:m:s": ["0:00:10"], "max_rss": [rss]}).to_csv(
            path, sep="\t", index=False
        )
    stages = module.rule_stages(tmp_path / "benchmarks").set_index("rule")
    assert stages.loc["train"].to_dict() == {
        "jobs": 2,
        "seconds": 40.0,
        "longest_s": 30.0,
        "max_rss_mb": 800.0,
    }
    assert stages.loc["evaluate", "jobs"] == 1
    assert list(stages.index) == ["train", "evaluate"]  # the costliest first


def _load_benchmark(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        name, ROOT / "benchmarks" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_straight_line_floor_is_the_module_loss_and_refuses_other_maths():
    """The floor that cost.py --step times computes the module's own loss (the same
    value and gradients, to float rounding), and refuses settings whose maths it
    leaves out."""
    import torch

    cost = _load_benchmark("cost")
    cohort, _ = cost.simulated_cohort(24, 4, 6, seed=3)
    kwargs = cost.model_kwargs(cohort, "linear_diagonal", "closed_form", 1e-2)
    torch.manual_seed(0)
    model = cost.ODEVAE(**kwargs)
    batch = next(iter(cost._batches(cohort, 24, seed=3)))
    expected = model.loss_terms(model.scale(batch), sample=False)["loss"]
    want = torch.autograd.grad(expected, list(model.parameters()))
    line = cost.straight_line_loss(model, cost.straight_line_inputs(model, batch))
    got = torch.autograd.grad(line, list(model.parameters()))
    torch.testing.assert_close(line, expected)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    # the kernels that round differently compute the same loss to rounding
    fast = cost.straight_line_loss(
        model, cost.straight_line_inputs(model, batch, "fast"), kernels="fast"
    )
    torch.testing.assert_close(fast, expected, rtol=1e-4, atol=1e-4)
    noise = torch.randn(24, batch["visits"].shape[1], 2)
    sampled = cost.straight_line_loss(
        model, cost.straight_line_inputs(model, batch), noise
    )
    assert torch.isfinite(sampled) and sampled != line
    other = cost.ODEVAE(**(kwargs | {"loss": {"free_bits": 0.5}}))
    with pytest.raises(ValueError, match="free_bits"):
        cost.straight_line_loss(other, cost.straight_line_inputs(other, batch))


def test_cost_step_profile_times_the_data_paths_and_the_floor(tmp_path):
    """--step: the Trainer on either data path reaches the same loss, and the
    module's step is timed against the straight-line floor."""
    result = subprocess.run(
        [
            sys.executable,
            "benchmarks/cost.py",
            "--quick",
            "--step",
            "40",
            "--repeats",
            "1",
            "--out",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    runs = pd.read_csv(tmp_path / "cost_step.tsv", sep="\t")
    assert set(runs["path"]) == {"loader", "device"}
    assert runs["loss"].nunique() == 1  # the same batches, the same training
    assert "straight-line floor" in result.stdout
    assert "kernels that round differently" in result.stdout
    assert "top-level aten operators" in result.stdout
