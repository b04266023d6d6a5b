"""Batched training vs the original one-patient-per-step schedule.

The original code takes one Adam step per patient (lr 5e-4, 25 epochs). odevae
trains batches of patients; this benchmark runs the whole workflow twice on the
default simulated cohort, once per schedule, and prints held-out quality (final
validation loss, group recovery, trajectory R²) and training time side by side.

    python benchmarks/batching.py            # from the repository root
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]

SCHEDULES = {
    "original": {"batch_size": 1, "epochs": 25, "lr": 5.0e-4},
    "batched": {},  # the defaults of config/config.yaml
}


def run(name: str, train: dict, cores: int) -> dict:
    """Run the workflow for one schedule and collect its summary row."""
    config = {"name": f"bench_{name}", "train": {**train, "progress_bar": False}}
    path = ROOT / "results" / f"bench_{name}.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--cores",
            str(cores),
            "-q",
            "--configfile",
            str(path),
        ],
        cwd=ROOT,
        check=True,
    )
    out = ROOT / "results" / config["name"]
    merged = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())["train"]
    merged.update(train)
    recovery = pd.read_csv(out / "recovery.tsv", sep="\t").set_index("fold")
    losses = pd.read_csv(out / "figures" / "loss_curves.tsv", sep="\t")
    last = losses[losses["epoch"] == losses["epoch"].max()]
    seconds = [
        pd.read_csv(p, sep="\t")["s"].iloc[0]
        for p in sorted((out / "benchmarks" / "train").glob("fold_*.tsv"))
    ]
    return {
        "schedule": name,
        "batch_size": merged["batch_size"],
        "epochs": merged["epochs"],
        "lr": merged["lr"],
        "val_loss": last.loc[last["split"] == "validation", "loss"].mean(),
        "accuracy_1nn": recovery.loc["mean", "accuracy_1nn"],
        "accuracy_threshold": recovery.loc["mean", "accuracy_threshold"],
        "r2_dim1": recovery.loc["mean", "r2_dim1"],
        "r2_dim2": recovery.loc["mean", "r2_dim2"],
        "train_s_per_fold": sum(seconds) / len(seconds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cores", type=int, default=2)
    args = parser.parse_args()
    table = pd.DataFrame([run(n, t, args.cores) for n, t in SCHEDULES.items()])
    out = ROOT / "results" / "bench_batching.tsv"
    table.to_csv(out, sep="\t", index=False, float_format="%.4g")
    print(table.to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    print(f"\nwritten to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
