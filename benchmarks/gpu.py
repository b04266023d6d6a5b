"""Training on a GPU against the CPU beside it: cohort size, batch size, one step.

Three parts, each printed as a table and written to ``--out``:

* ``gpu.tsv``: the linear two-parameter model of ``benchmarks/cost.py``
  (``linear_diagonal``, closed form, initial-value loss, lr 2e-2) trained by the
  workflow's Trainer (:func:`odevae.train.training.make_trainer`, deterministic) on
  the device-resident batches (:class:`odevae.train.batches.ShuffledBatches`) for
  ``--epochs`` epochs, for n ∈ {10⁴, 10⁵, 10⁶} patients and batches of 512, 4096 and
  all patients, on the GPU and on the CPU (all its cores, torch's default, or
  ``--threads``).
  Per cell: seconds of training (model, Trainer and epochs; the cohort's copy to
  the device excluded and reported as ``copy_s``), peak memory (GPU: torch's peak
  allocation; CPU: the peak resident memory's increase, VmHWM) and the last epoch's
  training loss. Cohorts larger than the simulated 10⁴ patients (the default
  simulation, p = 10, q = 50) repeat its patients: cost depends on the shapes only.
* ``gpu_step.tsv``: one training step at batch 512 (n = 10⁴): mean milliseconds over
  ``--steps`` steps of a plain loop (batch, loss, backward, Adam; synchronised), and
  the step's operator and GPU kernel counts from ``torch.profiler``.
* ``gpu_workflow.tsv``: fold 0 of the default workflow (config/config.yaml: 100
  simulated patients, batch 8, 150 epochs, 3 restarts) trained by
  :func:`odevae.train.training.train_fold` with ``train.accelerator`` gpu and cpu
  (CPU: one torch thread, as rule ``train`` runs), and which device ``auto`` picks.

Without a GPU the GPU cells are left out (the CPU ones still run). ``--tiny``
shrinks everything to seconds so that the script runs end to end on a CPU (the
test uses it). About 5 minutes on an H100/H200 machine with 16 cores.

    python benchmarks/gpu.py                 # the full layout (needs a GPU)
    python benchmarks/gpu.py --tiny --threads 1   # seconds, any machine
"""

from __future__ import annotations

import argparse
import copy
import os
import tempfile
import time
from pathlib import Path

import lightning as L
import pandas as pd
import torch
import yaml
from cost import (
    LR,
    ROOT,
    Meter,
    _quiet_lightning,
    model_kwargs,
    simulated_cohort,
)

from odevae.config_schema import resolve_auto
from odevae.data.batching import CohortDataset
from odevae.data.folds import make_folds
from odevae.model.module import ODEVAE
from odevae.train.batches import DeviceCohort, OnePass, ShuffledBatches
from odevae.train.device import choose_accelerator
from odevae.train.scale import batch_plan
from odevae.train.training import make_trainer, train_fold

FULL = {
    "n": [10_000, 100_000, 1_000_000],
    "batch": [512, 4096, None],  # None: every patient in one batch
    "epochs": 2,
    "steps": 50,
    "workflow": {},
}
TINY = {
    "n": [64, 256],
    "batch": [16, 64, None],
    "epochs": 1,
    "steps": 3,
    "workflow": {"epochs": 2, "restarts": {"n": 1}},
}


def cohort_tensors(n_max: int, seed: int) -> tuple[dict, dict]:
    """Padded tensors of ``n_max`` patients (the simulated ones, repeated) and the
    model's arguments."""
    cohort, _ = simulated_cohort(min(n_max, 10_000), 10, 50, seed)
    tensors = CohortDataset(cohort).tensors
    index = torch.arange(n_max) % cohort.n
    tensors = {key: value[index] for key, value in tensors.items()}
    return tensors, model_kwargs(cohort, "linear_diagonal", "closed_form", LR)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_cell(tensors, kwargs, n, batch, epochs, device, seed) -> dict:
    """The Trainer's training of the first ``n`` patients on ``device``."""
    L.seed_everything(seed, verbose=False)
    t0 = time.perf_counter()
    cohort = DeviceCohort({k: v[:n] for k, v in tensors.items()}, device)
    _sync(device)
    copy_s = time.perf_counter() - t0
    size = n if batch is None else min(batch, n)
    batches = ShuffledBatches(cohort, size, torch.Generator().manual_seed(seed))
    accelerator = "gpu" if device.type == "cuda" else "cpu"
    with tempfile.TemporaryDirectory() as tmp, Meter() as meter:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        model = ODEVAE(**kwargs)
        trainer = make_trainer(tmp, epochs, accelerator=accelerator)
        trainer.fit(model, train_dataloaders=OnePass(batches))
        _sync(device)
    peak = meter.peak_mb
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**20
    return {
        "n": n,
        "batch_setting": "all" if batch is None else str(batch),
        "batch": size,
        "device": device.type,
        "steps": len(batches) * epochs,
        "s": meter.seconds,
        "copy_s": copy_s,
        "peak_mb": peak,
        "loss": float(trainer.callback_metrics["train/loss"]),
    }


def step_profile(tensors, kwargs, batch, steps, device, seed) -> dict:
    """Milliseconds per plain step and one step's operators and GPU kernels."""
    from torch.profiler import ProfilerActivity, profile

    L.seed_everything(seed, verbose=False)
    cohort = DeviceCohort({k: v[:10_000] for k, v in tensors.items()}, device)
    model = ODEVAE(**kwargs).to(device)
    optimiser = model.configure_optimizers()
    batches = ShuffledBatches(cohort, batch, torch.Generator().manual_seed(seed))

    def step(batch_: dict) -> None:
        loss = model.loss_terms(model.scale(batch_), sample=True)["loss"]
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()

    pool = []
    while len(pool) < steps + 3:
        pool.extend(batches)
    for b in pool[:3]:  # warm-up: lazy initialisation, optimiser state
        step(b)
    _sync(device)
    t0 = time.perf_counter()
    for b in pool[3 : steps + 3]:
        step(b)
    _sync(device)
    ms = 1000 * (time.perf_counter() - t0) / steps
    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as prof:
        step(pool[0])
        _sync(device)
    events = prof.events()
    kernels = [e for e in events if e.device_type == torch.autograd.DeviceType.CUDA]
    busy_ms = sum(e.time_range.elapsed_us() for e in kernels) / 1000
    return {
        "device": device.type,
        "batch": len(pool[0]["index"]),
        "ms_per_step": ms,
        "aten_ops": sum(1 for e in events if e.name.startswith("aten::")),
        "gpu_kernels": len(kernels),
        "gpu_busy_ms": busy_ms,
        "gpu_busy_pct": 100 * busy_ms / ms,
    }


def workflow_fold(accelerator: str, threads: int, overrides: dict, seed: int):
    """Seconds of the default workflow's fold 0 with ``train.accelerator``."""
    config = resolve_auto(yaml.safe_load((ROOT / "config" / "config.yaml").read_text()))
    config = copy.deepcopy(config)
    for key, value in overrides.items():
        if isinstance(value, dict):
            config["train"][key] |= value
        else:
            config["train"][key] = value
    config["train"]["accelerator"] = accelerator
    sim = config["simulation"]
    cohort, _ = simulated_cohort(sim["n"], sim["p"], sim["q"], seed)
    folds = make_folds(cohort.patient_ids, config["cv"]["folds"], config["seed"])
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            train_fold(cohort, folds, 0, config, tmp, progress_bar=False)
            seconds = time.perf_counter() - t0
            metrics = pd.read_csv(Path(tmp) / "metrics.csv")
    finally:
        torch.set_num_threads(previous)
    train = config["train"]
    fitted = (folds["fold"] != 0).sum()  # no inner split in the default config
    batch, _ = batch_plan(fitted, train["batch_size"], train["batching"])
    auto = choose_accelerator("auto", batch, cohort.visits.shape[1])
    return {
        "accelerator": accelerator,
        "threads": threads,
        "epochs": train["epochs"],
        "restarts": train["restarts"]["n"],
        "s": seconds,
        "final_train_loss": float(metrics["train/loss"].dropna().iloc[-1]),
        "auto_picks": "cpu" if auto == "cpu" else "gpu",
    }


def _show(title: str, table: pd.DataFrame) -> None:
    print(f"\n{title}")
    print(table.to_string(index=False, float_format=lambda x: f"{x:.4g}"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="seconds, on any machine")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--threads", type=int, default=None, help="CPU torch threads (default: all)"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "benchmarks")
    args = parser.parse_args(argv)
    layout = TINY if args.tiny else FULL
    _quiet_lightning()
    if args.threads:
        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    devices = [torch.device("cpu")]
    if torch.cuda.is_available():
        devices.insert(0, torch.device("cuda"))
        print(f"GPU: {torch.cuda.get_device_name()}")
    else:
        print("no GPU: the GPU cells are left out")
    print(f"{os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}")
    tensors, kwargs = cohort_tensors(max(layout["n"]), args.seed)
    rows = []
    for n in layout["n"]:
        for batch in layout["batch"]:
            for device in devices:
                rows.append(
                    train_cell(
                        tensors, kwargs, n, batch, layout["epochs"], device, args.seed
                    )
                )
                print(
                    f"  n={n} batch={rows[-1]['batch']} {device.type}: "
                    f"{rows[-1]['s']:.2f} s",
                    flush=True,
                )
    cells = pd.DataFrame(rows)
    order = [str(b) if b else "all" for b in layout["batch"]]
    cells["batch_setting"] = pd.Categorical(cells["batch_setting"], order, ordered=True)
    wide = cells.drop(columns="batch").pivot(
        index=["n", "batch_setting"], columns="device"
    )
    wide.columns = [f"{device}_{name}" for name, device in wide.columns]
    keep = [c for c in wide if not c.endswith("_steps")] + ["cpu_steps"]
    wide = wide[keep].reset_index()
    if "cuda_s" in wide:
        wide["cpu_over_gpu"] = wide["cpu_s"] / wide["cuda_s"]
    _show(f"Training, {layout['epochs']} epochs (seconds, peak MB, loss)", wide)
    steps = pd.DataFrame(
        [
            step_profile(
                tensors, kwargs, layout["batch"][0], layout["steps"], d, args.seed
            )
            for d in devices
        ]
    )
    _show("One training step (plain loop)", steps)
    flows = [workflow_fold("cpu", 1, layout["workflow"], args.seed)]
    if torch.cuda.is_available():
        flows.insert(0, workflow_fold("gpu", 1, layout["workflow"], args.seed))
    flows = pd.DataFrame(flows)
    _show("The default workflow's fold 0", flows)
    cells.to_csv(args.out / "gpu.tsv", sep="\t", index=False, float_format="%.6g")
    steps.to_csv(args.out / "gpu_step.tsv", sep="\t", index=False)
    flows.to_csv(args.out / "gpu_workflow.tsv", sep="\t", index=False)
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
