"""``snakemake paper``: the papers' figures and tables, and their manifest.

:data:`RUNS` names the config presets the papers need; :data:`ITEMS` lists every
figure or table with the run (or runs) that make it. The ``paper`` rule copies each
item into ``results/paper/`` and writes ``MANIFEST.tsv`` (paper, item, file, config,
status): an item whose run was not selected (config ``paper.runs``) is a row that
says so, never a placeholder file.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd

#: Run name → the config file that defines it (merged over config/config.yaml).
RUNS = {
    "workshop": "config/config.yaml",
    "workshop_vae": "config/workshop_vae.yaml",
    "bj_linear2": "config/bj_linear2.yaml",
    "bj_lotka_volterra": "config/bj_lotka_volterra.yaml",
    "bj_linear4": "config/bj_linear4.yaml",
    "registry": "config/registry.yaml",
    "pbcseq": "config/pbcseq.yaml",
}

BJ, SA, WS = "BJ 2022", "arXiv 2311.16286", "NORBIS workshop 2022"
_SECTIONS = {
    "bj_linear2": "Sec. 5.2",
    "bj_lotka_volterra": "Sec. 5.3",
    "bj_linear4": "Sec. 5.4",
}
_FITS = {
    "data_vs_truth": "data vs truth per group",
    "individual_fits": "two individual fits",
    "latent_trajectories": "all held-out individuals per group over the truth",
}

#: (paper, item, runs, source under results/ (``{run}`` filled in), file name)
ITEMS = [
    *[
        (BJ, f"{sec} {what}", [run], f"{run}/figures/{fig}.png", f"{run}_{fig}.png")
        for run, sec in _SECTIONS.items()
        for fig, what in _FITS.items()
    ],
    (
        BJ,
        "Fig. 6 similarity batches of two reference individuals",
        ["bj_linear4"],
        "bj_linear4/figures/similarity_batches.png",
        "bj_linear4_similarity_batches.png",
    ),
    (
        BJ,
        "Tables 1-3 computational cost (benchmarks/cost.py)",
        ["cost"],
        "paper/cost/cost.png",
        "cost.png",
    ),
    *[
        (
            SA,
            f"Fig. 3 local ODE solutions from each visit, {run}",
            [run],
            f"{run}/figures/local_solutions.png",
            f"{run}_local_solutions.png",
        )
        for run in ("registry", "pbcseq")
    ],
    *[
        (
            SA,
            f"prediction table (held out; latent and data space), {run}",
            [run],
            f"paper/{run}_prediction_table.tsv",
            f"{run}_prediction_table.tsv",
        )
        for run in ("registry", "pbcseq")
    ],
    (
        WS,
        "VAE-only latent means vs ODE-VAE trajectories",
        ["workshop_vae", "workshop"],
        "paper/vae_vs_odevae.png",
        "vae_vs_odevae.png",
    ),
]

#: Methods of the follow-up paper's prediction table, and what they are called there.
TABLE_METHODS = {
    "odevae": "ODE",
    "odevae_mixed": "ODE + random effects",
    "ols_latent": "OLS",
    "locf": "LOCF",
    "vae_roundtrip": "LOCF (latent)",
    "mixed_model": "linear mixed model",
}


def latent_one_step_mse(latent: pd.DataFrame) -> pd.Series:
    """Held-out one-step squared error in latent space per method: the mean over
    latent dimensions, then per patient, then over patients (each fold's model in
    its own latent coordinates)."""
    one = latent[latent["horizon"] == "one_step"]
    sq = (one["predicted"] - one["target"]) ** 2
    per_visit = sq.groupby(
        [one["method"], one["fold"], one["patient_id"], one["visit"]]
    ).mean()
    per_patient = per_visit.groupby(level=["method", "fold", "patient_id"]).mean()
    return per_patient.groupby(level="method").mean()


def prediction_table(summary: pd.DataFrame, latent: pd.DataFrame) -> pd.DataFrame:
    """The follow-up paper's one-step comparison, held out: latent MSE (ODE, OLS,
    LOCF of the encodings) and data MSE (standardised) with the ratio to LOCF."""
    pooled = summary[(summary["fold"] == "pooled") & (summary["horizon"] == "one_step")]
    data = pooled.set_index("method")
    latent_mse = latent_one_step_mse(latent)
    rows = []
    for method, label in TABLE_METHODS.items():
        rows.append(
            {
                "method": label,
                "workflow_method": method,
                "latent_mse": latent_mse.get(method, np.nan),
                "data_mse": data["mse"].get(method, np.nan),
                "data_ratio_to_locf": data["ratio_mse"].get(method, np.nan),
                "ratio_ci_low": data["ratio_ci_low"].get(method, np.nan),
                "ratio_ci_high": data["ratio_ci_high"].get(method, np.nan),
            }
        )
    return pd.DataFrame(rows)


def item_sources(selected: list[str]) -> dict[str, str]:
    """Input name → path (under results/) of every item whose runs are selected."""
    return {
        target: f"results/{source}"
        for _, _, runs, source, target in ITEMS
        if all(run in selected for run in runs)
    }


def write_manifest(
    selected: list[str], sources: dict[str, str], out_dir: str | Path
) -> pd.DataFrame:
    """Copy every produced item to ``out_dir`` and write ``out_dir/MANIFEST.tsv``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for paper, item, runs, _, target in ITEMS:
        row = {"paper": paper, "item": item, "file": "", "config": "", "status": ""}
        row["config"] = ", ".join(RUNS.get(run, "benchmarks/cost.py") for run in runs)
        missing = [run for run in runs if run not in selected]
        if missing:
            row["status"] = (
                f"not made: {', '.join(missing)} not selected (config paper.runs, "
                "paper.cost_benchmark)"
            )
        elif target not in sources or not Path(sources[target]).is_file():
            row["status"] = "not made: its source file is missing"
        else:
            if Path(sources[target]).resolve() != (out_dir / target).resolve():
                shutil.copyfile(sources[target], out_dir / target)
            row["file"] = str(out_dir / target)
            row["status"] = "made"
        rows.append(row)
    manifest = pd.DataFrame(rows)
    manifest.to_csv(out_dir / "MANIFEST.tsv", sep="\t", index=False)
    return manifest
