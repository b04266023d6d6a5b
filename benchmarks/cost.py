"""Computational cost of training: odevae's batched path vs a per-patient reference.

Reproduces the layout of BJ 2022's cost tables (appendix, Tables 1-3): the whole
training of the linear two-parameter model (``linear_diagonal``, initial-value loss,
35 epochs) on simulated cohorts of n ∈ {50, ..., 5000} patients (p = 10, q = 50),
p ∈ {10, ..., 200} (n = 100, q = 50) and q ∈ {10, ..., 200} (n = 100, p = 10), plus
Lotka-Volterra (BJ 5.3, n = 200, 5 epochs both ways). Each row reports:

* ``batched_*``: odevae as the workflow trains it: :class:`~odevae.model.module.ODEVAE`
  (solver ``closed_form``; ``dopri5`` on the batch's union grid for Lotka-Volterra)
  on shuffled batches sliced from the cohort's tensors on the training device
  (:class:`~odevae.train.batches.ShuffledBatches`, the workflow's data path),
  fitted by the workflow's own Trainer
  (:func:`odevae.train.training.make_trainer`: deterministic, CSV logger, checkpoint of
  the last epoch, into a temporary folder). ``batched_plain_*`` trains the same
  module on the same batches in a plain PyTorch loop (no Lightning): the difference
  is Lightning's per-step overhead. Batch size ⌈n / 7⌉ in [32, 512] (about seven
  steps per epoch), lr 2e-2 (``--batch-size``, ``--lr``); Lotka-Volterra batch
  100, lr 2e-2.
* ``ref_*``: a faithful per-patient reference in the style of the original code: one
  patient per Adam step (lr 5e-4; 1e-4 for Lotka-Volterra, as BJ), a Python loop
  over the shuffled patients, each patient's latent IVP solved by adaptive
  ``dopri5`` on its own visit times with the original's tolerances (Julia's
  defaults: rtol 1e-3, atol 1e-6), by torchdiffeq's own ``odeint`` (as the
  original used its library's solver; ``--ref-solver odevae``: by odevae's
  :func:`~odevae.model.runge_kutta.adaptive_solve`, the same method in fewer
  operators, which the batched path uses, so the ratio is then the batching's
  alone). It uses the same ODEVAE networks and loss (a batch of one patient), so
  the comparison is of the training scheme and solver, not of different maths.
  The n sweep runs it in full up to n·epochs = 3500 steps (n ≤ 100); elsewhere
  only the first 500 steps are timed and the seconds scaled linearly to n·epochs
  steps (``ref_timing`` = ``extrapolated``; loss and
  recovery then stay empty). ``speedup`` = ref_s / batched_s (``speedup_plain``
  against the plain loop).
* ``*_s``: wall clock of the whole training (model, Trainer and loader set-up and all
  epochs; not simulation or preprocessing). ``*_peak_mb``: peak resident memory
  (VmHWM) during training minus the resident memory when training starts. Every
  training runs in a fresh forked process whose peak is reset first
  (``/proc/self/clear_refs``; Linux) after a one-step warm-up, so this is the memory
  the training itself touches: model, activations, optimiser state, batches,
  Lightning.
* what was learned, so that speed never comes from learning less: ``*_loss`` is the
  mean per-patient loss over all training patients after training (z = μ, no
  sampling; ``*_init_loss`` before training); ``*_acc_1nn`` / ``*_acc_threshold``
  are :func:`odevae.evaluate.recovery.group_recovery` of the learned ODE
  parameters against the simulated groups (classifiers fitted on every other patient,
  scored on the
  rest; ``*_init_acc_*``: the untrained model's).
* ``bj_s``: BJ 2022's published seconds (Julia 1.6 on a Mac CPU: a different
  machine, for orientation only); ``*_s_per_1k`` (n sweep) and ``*_rel`` (p, q
  sweeps: relative to the smallest size) and cost_fits.tsv (log-log slopes of
  seconds vs size) show how cost grows: the reference linearly in n; the batched
  path sublinearly, as the batch-size rule fixes its step count (a fixed
  ``--batch-size`` makes it linear in n); both flat in q.

Data: ``odevae.data.simulate.simulate_cohort`` with the simulation section of
config/config.yaml scaled to n/p/q (q_info = min(10, q)), written to TSV and read
back by ``odevae.data.preprocess.preprocess``. The Lotka-Volterra cohort (u0 (2, 2),
[α, β, γ, δ] = [1, 1, 1, .5] / [.5, 1, 1, 2], q_info = 20, follow-ups from t = 0,
groupsonly covariates) is the simulator's ``config/bj_lotka_volterra.yaml`` preset;
model ``lotka_volterra`` (α, δ learned; its encoder means are positive, so the
populations never start where the system blows up).
Everything is seeded (``--seed``) and deterministic. torch uses ``--threads``
threads, default 1 as the workflow trains (rule ``train`` has ``threads: 1``, which
odevae.runner passes to torch). With 2 threads on a 2-core machine that is doing
anything else, the threads spin against each other: n = 5000 took 62 s instead of
2.9 s at load average 2. The load average is printed and recorded per row.

    python benchmarks/cost.py                # full layout (~6-10 min on 2 cores)
    python benchmarks/cost.py --threads 2    # torch on two threads
    python benchmarks/cost.py --quick        # tiny sizes, seconds (the test uses it)
    python benchmarks/cost.py --tables n,lv  # a subset of the tables
    python benchmarks/cost.py --step 5000    # one training step profiled, and the
                                             # data path before/after (see below)

``--step N`` profiles training at n = N (35 epochs, the n table's settings) instead
of the tables: the whole Trainer training fed by the former ``DataLoader`` +
``collate`` path and by the device-resident batches (either way a pass is one
Lightning step, as the workflow trains), alternated ``--repeats`` times
(seconds, ratio, final loss: equal batches give equal losses); the plain
loop's time per step split into batch, forward + loss, backward and optimiser
(the rest of the Trainer's time is Lightning's); the floor of this maths: the
same step with the loss written as one straight line of PyTorch on the module's
layers (:func:`straight_line_loss`), alternated with the module's step on the same
batches, and that floor again with kernels that round differently (feature-major
products, tanh by sigmoid, fused Adam: faster here, and every trained number would
change); and one step's operator count and its most expensive operators
(``torch.profiler``).

Writes results/benchmarks/cost_{n,p,q,lv}.tsv, cost_fits.tsv and cost.png.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import resource
import tempfile
import time
import traceback
import warnings
from itertools import islice
from pathlib import Path
from unittest import mock

import lightning as L
import matplotlib
import numpy as np
import pandas as pd
import torch
import yaml
from snakemake.utils import update_config
from torch.utils.data import DataLoader
from torchdiffeq import odeint

from odevae.data.batching import CohortDataset, collate
from odevae.data.cohort import Cohort
from odevae.data.preprocess import preprocess
from odevae.data.simulate import simulate_cohort, write_cohort
from odevae.evaluate.recovery import group_recovery
from odevae.model import solving
from odevae.model.flat_adam import FlatAdam
from odevae.model.loss import LOG_2PI
from odevae.model.module import ODEVAE
from odevae.train.batches import DeviceCohort, OnePass, ShuffledBatches
from odevae.train.training import make_trainer

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

#: BJ 2022 appendix, seconds for the whole 35-epoch training (Julia 1.6, Mac CPU).
BJ_SECONDS = {
    "n": {50: 6.23, 100: 13.52, 250: 30.30, 500: 51.92, 1000: 99.12, 2000: 169.73,
          5000: 411.73},
    "p": {10: 14.80, 20: 16.09, 50: 20.36, 100: 28.31, 200: 56.79},
    "q": {10: 14.32, 20: 14.24, 50: 14.39, 100: 14.46, 200: 14.86},
}  # fmt: skip

#: The original's solver tolerances (Julia DifferentialEquations defaults).
ORIGINAL_RTOL, ORIGINAL_ATOL = 1e-3, 1e-6
#: The original's optimiser settings (one patient per Adam step).
REF_LR = 5e-4
#: The original's Lotka-Volterra learning rate.
LV_REF_LR = 1e-4
#: Batched settings: about seven steps per epoch (batch ⌈n / 7⌉ in [32, 512]) at lr
#: 2e-2 ended at a loss at least as low as the full reference's (n = 50, 100; and
#: 63.9 vs 64.7 at n = 1000, whose reference took 610 s in a separate full run).
#: Ten steps per epoch learned the same (63.5) and cost ~20 % more time.
LR = 2e-2
#: Lotka-Volterra: 2 batches per epoch at lr 2e-2 reached a lower loss and higher
#: accuracy than the reference's 1000 steps (batch 64: loss 100 in twice the time;
#: lr 2e-3: loss 132, accuracy 0.74).
LV_BATCH_SIZE, LV_LR = 100, 2e-2


def auto_batch_size(n: int) -> int:
    """⌈n / 7⌉ clipped to [32, 512] (never more than n)."""
    return min(n, max(32, min(512, -(-n // 7))))


FULL = {
    "n": [50, 100, 250, 500, 1000, 2000, 5000],
    "p": [10, 20, 50, 100, 200],
    "q": [10, 20, 50, 100, 200],
    "base": {"n": 100, "p": 10, "q": 50},
    "epochs": 35,
    "lv": {"n": 200, "epochs": 5},
    "ref_max_steps": 3500,  # n = 100 × 35 epochs: measured in full
    "ref_steps": 500,
}
QUICK = {
    "n": [20, 40],
    "p": [4, 6],
    "q": [4, 8],
    "base": {"n": 20, "p": 4, "q": 6},
    "epochs": 2,
    "lv": {"n": 16, "epochs": 1},
    "ref_max_steps": 40,
    "ref_steps": 20,
}


# --- data ------------------------------------------------------------------------


def simulation_config(n: int, p: int, q: int, preset: str | None = None) -> dict:
    """The workflow's simulation section (or a preset's) scaled to n, p, q."""
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    if preset is not None:  # merged as snakemake --configfile merges it
        override = yaml.safe_load((ROOT / "config" / f"{preset}.yaml").read_text())
        update_config(config, override)
    cfg = config["simulation"]
    return {**cfg, "n": n, "p": p, "q": q, "q_info": min(cfg["q_info"], q)}


def simulated_cohort(
    n: int, p: int, q: int, seed: int, preset: str | None = None
) -> tuple[Cohort, np.ndarray]:
    """A simulated cohort, preprocessed as the workflow does, and the true groups."""
    sim = simulate_cohort(simulation_config(n, p, q, preset), seed)
    tables = ("visits", "baseline", "truth_patients", "truth_trajectories")
    with tempfile.TemporaryDirectory() as tmp:
        paths = {k: Path(tmp) / f"{k}.tsv" for k in tables}
        write_cohort(sim, paths)
        cohort = preprocess(paths["visits"], paths["baseline"])
    groups = sim.truth_patients.set_index("patient_id").loc[cohort.patient_ids]
    return cohort, groups["group"].to_numpy()


# --- measurement helpers -----------------------------------------------------------


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def _reset_peak() -> bool:
    """Reset this process's peak RSS to its current RSS (Linux ≥ 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class Meter:
    """Wall clock and peak resident-memory increase of a block of code."""

    def __enter__(self):
        self.reset = _reset_peak()
        self.rss0 = _status_kb("VmRSS")
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t0
        if self.reset:
            peak = _status_kb("VmHWM")
        else:  # fall back on the process's lifetime peak
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        self.peak_mb = max(peak - self.rss0, 0) / 1024
        return False


def _all_patients(cohort: Cohort) -> dict:
    dataset = CohortDataset(cohort)
    return collate(dataset.__getitems__(list(range(cohort.n))))


def assess(model: ODEVAE, cohort: Cohort, groups: np.ndarray) -> dict:
    """Mean per-patient loss (z = μ) and group recovery of the learned parameters."""
    model.eval()
    with torch.no_grad():
        batch = model.scale(_all_patients(cohort))
        loss = float(model.loss_terms(batch, sample=False)["per_patient"].mean())
        theta = model.core.prior_params(batch).numpy()
    model.train()
    names = model.param_names
    params = pd.DataFrame(theta, columns=names)
    params["patient_id"] = cohort.patient_ids
    params["fold"] = 0
    params["split"] = np.where(np.arange(cohort.n) % 2 == 0, "train", "test")
    truth = pd.DataFrame({"patient_id": cohort.patient_ids, "group": groups})
    rec = group_recovery(params, truth, names).iloc[0]
    return {
        "loss": loss,
        "acc_1nn": float(rec["accuracy_1nn"]),
        "acc_threshold": float(rec["accuracy_threshold"]),
    }


def _warm_up(kwargs: dict, cohort: Cohort, seed: int) -> None:
    """One forward/backward on two patients of a throwaway model (lazy init)."""
    L.seed_everything(seed, verbose=False)
    model = ODEVAE(**kwargs)
    dataset = CohortDataset(cohort)
    batch = collate(dataset.__getitems__([0, min(1, cohort.n - 1)]))
    model.loss_terms(model.scale(batch), sample=True)["loss"].backward()


def _quiet_lightning() -> None:
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")


# --- the two training schemes ------------------------------------------------------


def _batches(cohort: Cohort, batch_size: int, seed: int) -> ShuffledBatches:
    """The workflow's training batches: sliced from tensors on the device."""
    tensors = CohortDataset(cohort).tensors
    generator = torch.Generator().manual_seed(seed)
    return ShuffledBatches(DeviceCohort(tensors), batch_size, generator)


def _loader(cohort: Cohort, batch_size: int, seed: int) -> DataLoader:
    """The former path: a DataLoader collating every batch (same batches)."""
    return DataLoader(
        CohortDataset(cohort),
        batch_size=batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
        collate_fn=collate,
    )


def train_batched(task: dict, cohort: Cohort, groups: np.ndarray) -> dict:
    """odevae's path: Lightning's Trainer as in odevae.train.training (and a plain
    loop)."""
    kwargs, epochs, bs = task["model"], task["epochs"], task["batch_size"]
    seed = task["seed"]
    _warm_up(kwargs, cohort, seed)
    L.seed_everything(seed, verbose=False)
    init = assess(ODEVAE(**kwargs), cohort, groups)
    out = {f"init_{k}": v for k, v in init.items()}
    with tempfile.TemporaryDirectory() as tmp:
        L.seed_everything(seed, verbose=False)
        with Meter() as meter:
            model = ODEVAE(**kwargs)
            trainer = make_trainer(tmp, epochs, accelerator="cpu")
            trainer.fit(model, train_dataloaders=OnePass(_batches(cohort, bs, seed)))
    out |= {"s": meter.seconds, "peak_mb": meter.peak_mb}
    out |= assess(model, cohort, groups)
    # The same module and batches without Lightning.
    L.seed_everything(seed, verbose=False)
    with Meter() as meter:
        model = ODEVAE(**kwargs)
        optimiser = model.configure_optimizers()
        batches = _batches(cohort, bs, seed)
        for _ in range(epochs):
            for batch in batches:
                loss = model.loss_terms(model.scale(batch), sample=True)["loss"]
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
    out |= {"plain_s": meter.seconds, "plain_peak_mb": meter.peak_mb}
    out |= {f"plain_{k}": v for k, v in assess(model, cohort, groups).items()}
    return out


def _torchdiffeq_solve(field, y0, times, *, rtol, atol, method_name):
    """:func:`~odevae.model.runge_kutta.adaptive_solve` by torchdiffeq's odeint."""
    return odeint(
        lambda t, u: field(u), y0, times, rtol=rtol, atol=atol, method=method_name
    )


def train_reference(task: dict, cohort: Cohort, groups: np.ndarray) -> dict:
    """One patient per Adam step, dopri5 per patient on its own visit times (by
    torchdiffeq's odeint unless ``task["ref_solver"]`` is ``odevae``)."""
    if task["ref_solver"] == "torchdiffeq":  # a forked child: patched for it only
        with mock.patch.object(solving, "adaptive_solve", _torchdiffeq_solve):
            return _train_reference(task, cohort, groups)
    return _train_reference(task, cohort, groups)


def _train_reference(task: dict, cohort: Cohort, groups: np.ndarray) -> dict:
    kwargs, epochs = task["model"], task["epochs"]
    seed = task["seed"]
    total = cohort.n * epochs
    steps = total if total <= task["ref_max_steps"] else task["ref_steps"]
    dataset = CohortDataset(cohort)
    patients = [collate(dataset.__getitems__([i])) for i in range(cohort.n)]
    _warm_up(kwargs, cohort, seed)
    L.seed_everything(seed, verbose=False)
    rng = np.random.default_rng(seed)
    with Meter() as meter:
        model = ODEVAE(**kwargs)
        optimiser = model.configure_optimizers()
        done = 0
        while done < steps:
            for i in rng.permutation(cohort.n)[: steps - done]:
                loss = model.loss_terms(model.scale(patients[i]), sample=True)
                optimiser.zero_grad()
                loss["loss"].backward()
                optimiser.step()
            done = min(done + cohort.n, steps)
    out = {
        "s": meter.seconds * total / steps,
        "timing": "measured" if steps == total else "extrapolated",
        "steps_timed": steps,
        "peak_mb": meter.peak_mb,
    }
    if steps == total:
        out |= assess(model, cohort, groups)
    return out


# --- running cells in fresh processes ----------------------------------------------


def _child(conn, fn, task, cohort, groups) -> None:
    try:
        torch.set_num_threads(task["threads"])
        torch.use_deterministic_algorithms(True)
        _quiet_lightning()
        conn.send(("ok", fn(task, cohort, groups)))
    except BaseException:  # report any failure to the parent
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


def in_fresh_process(fn, task: dict, cohort: Cohort, groups: np.ndarray) -> dict:
    """Run ``fn`` in a forked child (own peak memory, no state between cells)."""
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, fn, task, cohort, groups))
    proc.start()
    child.close()
    status, result = parent.recv()
    proc.join()
    if status != "ok":
        raise RuntimeError(f"{fn.__name__} failed:\n{result}")
    return result


def model_kwargs(cohort: Cohort, system: str, solver: str, lr: float) -> dict:
    """ODEVAE arguments; ODE solvers use the original's tolerances."""
    model = {"system": system, "solver": solver}
    if solver != "closed_form":
        model |= {"rtol": ORIGINAL_RTOL, "atol": ORIGINAL_ATOL}
    return {"p": cohort.p, "q": cohort.q, "model": model, "lr": lr}


# --- tables ------------------------------------------------------------------------


def _prefixed(prefix: str, result: dict) -> dict:
    return {f"{prefix}_{k}": v for k, v in result.items()}


def measure(
    cohort: Cohort,
    groups: np.ndarray,
    args: argparse.Namespace,
    epochs: int,
    ref_max_steps: int,
    ref_steps: int,
    system: str = "linear_diagonal",
    batch_size: int | str | None = None,
    ref_lr: float = REF_LR,
) -> dict:
    """Batched and reference training of one cohort, as one table row."""
    solver = "closed_form" if system == "linear_diagonal" else "dopri5"
    base = {"epochs": epochs, "seed": args.seed, "threads": args.threads}
    bs = args.batch_size if batch_size is None else batch_size
    bs = auto_batch_size(cohort.n) if bs == "auto" else min(int(bs), cohort.n)
    batched = in_fresh_process(
        train_batched,
        {
            **base,
            "model": model_kwargs(cohort, system, solver, args.lr),
            "batch_size": bs,
        },
        cohort,
        groups,
    )
    row = {"n": cohort.n, "p": cohort.p, "q": cohort.q, "epochs": epochs}
    row["load_avg"] = os.getloadavg()[0]  # 1-minute load average when the row began
    row |= {"threads": args.threads, "batch_size": bs, "lr": args.lr, "ref_lr": ref_lr}
    row["ref_solver"] = args.ref_solver
    row |= _prefixed("batched", batched)
    if not args.no_reference:
        ref = in_fresh_process(
            train_reference,
            {
                **base,
                "model": model_kwargs(cohort, system, "dopri5", ref_lr),
                "ref_max_steps": ref_max_steps,
                "ref_steps": ref_steps,
                "ref_solver": args.ref_solver,
            },
            cohort,
            groups,
        )
        row |= _prefixed("ref", ref)
        row["speedup"] = ref["s"] / batched["s"]
        row["speedup_plain"] = ref["s"] / batched["plain_s"]
    return row


def run_tables(args: argparse.Namespace, layout: dict) -> dict[str, pd.DataFrame]:
    """The n, p and q tables (linear model) and the Lotka-Volterra row."""
    base, epochs = layout["base"], layout["epochs"]
    sweeps = {
        "n": [(n, base["p"], base["q"]) for n in layout["n"]],
        "p": [(base["n"], p, base["q"]) for p in layout["p"]],
        "q": [(base["n"], base["p"], q) for q in layout["q"]],
    }
    tables = {}
    for name, sizes in sweeps.items():
        if name not in args.tables:
            continue
        # Full reference runs on the n sweep only; p and q extrapolate.
        max_steps = layout["ref_max_steps"] if name == "n" else 0
        rows = []
        for n, p, q in sizes:
            cohort, groups = simulated_cohort(n, p, q, args.seed)
            row = measure(cohort, groups, args, epochs, max_steps, layout["ref_steps"])
            row["bj_s"] = BJ_SECONDS[name].get(row[name], np.nan)
            rows.append(row)
            _progress(name, row)
        tables[name] = pd.DataFrame(rows)
    if "lv" not in args.tables:
        return tables
    lv = layout["lv"]
    cohort, groups = simulated_cohort(
        lv["n"], base["p"], base["q"], args.seed, preset="bj_lotka_volterra"
    )
    row = measure(
        cohort,
        groups,
        argparse.Namespace(**{**vars(args), "lr": args.lv_lr}),
        lv["epochs"],
        lv["n"] * lv["epochs"],
        layout["ref_steps"],
        system="lotka_volterra",
        batch_size=args.lv_batch_size,
        ref_lr=LV_REF_LR,
    )
    tables["lv"] = pd.DataFrame([row])
    _progress("lv", row)
    return tables


def _progress(name: str, row: dict) -> None:
    ref = row.get("ref_s", np.nan)
    print(
        f"  [{name}] n={row['n']} p={row['p']} q={row['q']}: batched "
        f"{row['batched_s']:.2f} s (plain {row['batched_plain_s']:.2f} s), "
        f"reference {ref:.1f} s",
        flush=True,
    )


def add_fits(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per-size columns (s per 1000 patients; time relative to the smallest p/q)
    and log-log slopes of seconds against the swept size."""
    fits = []
    series = {"batched": "batched_s", "plain": "batched_plain_s"}
    series |= {"ref": "ref_s", "bj": "bj_s"}
    for name in ("n", "p", "q"):
        table = tables.get(name)
        if table is None:
            continue
        for label, col in series.items():
            if col not in table:
                continue
            y = table[col].to_numpy(dtype=float)
            x = table[name].to_numpy(dtype=float)
            if name == "n":
                table[f"{label}_s_per_1k"] = 1000 * y / x
            else:
                table[f"{label}_rel"] = y / y[0]
            ok = np.isfinite(y) & (y > 0)
            slope = (
                np.polyfit(np.log(x[ok]), np.log(y[ok]), 1)[0]
                if ok.sum() > 1
                else np.nan
            )
            fits.append({"table": name, "series": label, "loglog_slope": slope})
    return pd.DataFrame(fits, columns=["table", "series", "loglog_slope"])


SHOW = {
    "batched_s": "batched s",
    "batched_plain_s": "plain loop s",
    "batched_peak_mb": "batched MB",
    "batched_loss": "batched loss",
    "batched_acc_threshold": "batched acc",
    "batched_init_acc_threshold": "init acc",
    "ref_s": "ref s",
    "ref_timing": "ref timing",
    "ref_peak_mb": "ref MB",
    "ref_loss": "ref loss",
    "ref_acc_threshold": "ref acc",
    "speedup": "speed-up",
    "bj_s": "BJ s (Julia, Mac)",
}


def print_tables(tables: dict[str, pd.DataFrame], fits: pd.DataFrame, args) -> None:
    for name, table in tables.items():
        cols = [name if name != "lv" else "n", "batch_size"]
        cols += [c for c in SHOW if c in table]
        extra = [c for c in table if c.endswith(("_s_per_1k", "_rel"))]
        view = table[cols + extra].rename(columns=SHOW)
        first = table.iloc[0]
        title = {
            "n": f"Table 1: whole training vs n (p = {first.p}, q = {first.q})",
            "p": f"Table 2: whole training vs p (n = {first.n}, q = {first.q})",
            "q": f"Table 3: whole training vs q (n = {first.n}, p = {first.p})",
            "lv": "Lotka-Volterra (dopri5 both ways; BJ 5.3 data)",
        }[name]
        epochs = int(table["epochs"].iloc[0])
        print(f"\n{title}, {epochs} epochs, {args.threads} threads")
        print(view.to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    if len(fits):
        print("\nlog-log slope of seconds vs size (1 = linear, 0 = flat):")
        wide = fits.pivot(index="series", columns="table", values="loglog_slope")
        print(wide.to_string(float_format=lambda x: f"{x:.2f}"))
    print(
        "\nBJ s: published seconds of BJ 2022 (Julia 1.6, Mac CPU) -- a different "
        "machine, for orientation only. 'ref timing extrapolated': the first "
        "ref_steps_timed steps were timed and scaled to n x epochs steps."
    )


def plot(tables: dict[str, pd.DataFrame], path: Path) -> None:
    """Log-log seconds vs size: batched, reference, BJ published; LV bars."""
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.8))
    for ax, name in zip(axes, ("n", "p", "q"), strict=False):
        if name not in tables:
            ax.set_visible(False)
            continue
        table = tables[name]
        x = table[name]
        ax.plot(x, table["batched_s"], "o-", label="odevae batched (Trainer)")
        ax.plot(x, table["batched_plain_s"], ".:", label="odevae batched (plain loop)")
        if "ref_s" in table:
            measured = table["ref_timing"] == "measured"
            ax.plot(
                x,
                table["ref_s"],
                "s--",
                color="C3",
                mfc="none",
                label="per-patient reference (open: extrapolated)",
            )
            ax.plot(x[measured], table["ref_s"][measured], "s", color="C3")
        if table["bj_s"].notna().any():
            ax.plot(x, table["bj_s"], "^-.", color="0.5", label="BJ 2022 (Julia, Mac)")
        ax.set(
            xscale="log", yscale="log", xlabel=name, ylabel="seconds (whole training)"
        )
        ax.set_xticks(x, [str(v) for v in x], minor=False)
        ax.set_xticks([], minor=True)
        ax.set_title(f"cost vs {name}")
        ax.grid(True, which="both", alpha=0.3)
    next(ax for ax in axes if ax.get_visible()).legend(fontsize=7)
    if "lv" not in tables:
        axes[3].set_visible(False)
        return _save(fig, path)
    lv = tables["lv"].iloc[0]
    bars = {"batched": lv["batched_s"], "plain loop": lv["batched_plain_s"]}
    if "ref_s" in lv:
        bars["per patient"] = lv["ref_s"]
    values = list(bars.values())
    axes[3].bar(list(bars), values, color=["C0", "C1", "C3"][: len(bars)])
    for k, value in enumerate(values):
        axes[3].text(k, value, f"{value:.3g} s", ha="center", va="bottom")
    axes[3].set(yscale="log", ylabel="seconds", ylim=(min(values) / 4, max(values) * 3))
    axes[3].set_title(f"Lotka-Volterra, n = {int(lv['n'])}, {int(lv['epochs'])} epochs")
    _save(fig, path)


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --- one training step profiled --------------------------------------------------


def _fit_seconds(cohort: Cohort, kwargs: dict, loader, epochs: int, seed: int):
    """Seconds and final training loss of the workflow's Trainer on ``loader``."""
    L.seed_everything(seed, verbose=False)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        model = ODEVAE(**kwargs)
        trainer = make_trainer(tmp, epochs, accelerator="cpu")
        trainer.fit(model, train_dataloaders=loader)
        seconds = time.perf_counter() - t0
    return seconds, float(trainer.callback_metrics["train/loss"])


def _plain_split(batches, kwargs: dict, epochs: int, seed: int) -> dict:
    """Mean milliseconds per step of the plain loop's parts."""
    L.seed_everything(seed, verbose=False)
    model = ODEVAE(**kwargs)
    optimiser = model.configure_optimizers()
    parts = dict.fromkeys(("batch", "forward_loss", "backward", "optimiser"), 0.0)
    steps = 0
    for _ in range(epochs):
        it = iter(batches)
        while True:
            t0 = time.perf_counter()
            batch = next(it, None)
            if batch is None:
                break
            t1 = time.perf_counter()
            loss = model.loss_terms(model.scale(batch), sample=True)["loss"]
            t2 = time.perf_counter()
            optimiser.zero_grad()
            loss.backward()
            t3 = time.perf_counter()
            optimiser.step()
            t4 = time.perf_counter()
            for key, dt in zip(
                parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True
            ):
                parts[key] += dt
            steps += 1
    return {key: 1000 * value / steps for key, value in parts.items()} | {
        "steps": steps
    }


def _step_operators(cohort: Cohort, kwargs: dict, batch_size: int, seed: int):
    """One step (batch, forward, loss, backward, Adam) under torch.profiler:
    operator calls (top level and all) and the most expensive operators."""
    from torch.profiler import ProfilerActivity, profile

    L.seed_everything(seed, verbose=False)
    model = ODEVAE(**kwargs)
    optimiser = model.configure_optimizers()
    batches = _batches(cohort, batch_size, seed)
    for batch in islice(batches, 2):  # warm up, optimiser state built
        optimiser.zero_grad()
        model.loss_terms(model.scale(batch), sample=True)["loss"].backward()
        optimiser.step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        batch = next(iter(batches))
        loss = model.loss_terms(model.scale(batch), sample=True)["loss"]
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    events = [e for e in prof.events() if e.name.startswith("aten::")]
    top = sum(
        1
        for e in events
        if e.cpu_parent is None or not str(e.cpu_parent.name).startswith("aten::")
    )
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12)
    return len(events), top, table


#: What :func:`straight_line_loss` computes: the benchmark's model and loss (and
#: the parameter bound ``sigmoid``, this system's ``auto``).
STRAIGHT_LINE = {
    "model": {
        "system": "linear_diagonal",
        "solver": "closed_form",
        "autoencoder": "learned",
        "history": "none",
        "bottleneck": 0,
        "fixed_params": None,
    },
    "loss": {
        "kind": "initial_value",
        "free_bits": 0.0,
        "param_l2": 0.0,
        "param_group_lasso": 0.0,
        "own_reconstruction_weight": 0.0,
    },
}


def straight_line_inputs(model: ODEVAE, batch: dict, kernels: str = "torch") -> tuple:
    """A batch prepared once for :func:`straight_line_loss`: scaled, masks as
    floats, offsets from the first visit in the solver's time (what the module
    derives from the batch at every step). ``kernels="fast"`` stores the visit
    tensors feature-major, as its products read them."""
    s = model.scale(batch)
    visits = s["visits"]
    later = visits.clone()
    later[:, 0] = False
    observed = (s["observed"] & visits[..., None]).to(s["values"].dtype)
    values = s["values"]
    if kernels == "fast":  # (B, T, p) views of (p, B, T) tensors
        values, observed = (
            x.permute(2, 0, 1).contiguous().permute(1, 2, 0) for x in (values, observed)
        )
    t = torch.where(visits, s["times"] - s["times"][:, :1], 0.0)
    t = t / model.core.time_scale
    return values, observed, visits.to(t.dtype), later.to(t.dtype), s["baseline"], t


def _linear(layer: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    return layer(x)


def _linear_feature_major(layer: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """``layer(x)`` as W·Xᵀ, the result a transposed view: MKL's kernel for this
    orientation is several times faster with few outputs (and rounds differently)."""
    flat = x.reshape(-1, x.shape[-1])
    out = torch.addmm(layer.bias[:, None], layer.weight, flat.t()).t()
    return out.reshape(*x.shape[:-1], out.shape[-1])


def _tanh_by_sigmoid(x: torch.Tensor) -> torch.Tensor:
    return 2.0 * torch.sigmoid(2.0 * x) - 1.0


#: ``kernels`` of :func:`straight_line_loss`: the linear layers and tanh.
KERNELS = {
    "torch": (_linear, torch.tanh),
    "fast": (_linear_feature_major, _tanh_by_sigmoid),
}


def straight_line_loss(
    model: ODEVAE,
    inputs: tuple,
    noise: torch.Tensor | None = None,
    kernels: str = "torch",
) -> torch.Tensor:
    """The benchmark model's training loss written as one straight line of PyTorch
    on the module's own layers (``inputs`` from :func:`straight_line_inputs`;
    ``noise`` (B, T, d) the reparametrisation's draws, none: z = μ). It is the
    maths of ``linear_diagonal`` solved in closed form under the initial-value
    loss, and nothing of the module's generality (loss kinds, systems, masking by
    ``where``, per-step scaling): the floor a hand-written step of the same maths
    reaches. ``kernels="fast"``: the same maths with kernels that round
    differently (the encoder's and decoder's layers as W·Xᵀ on feature-major
    inputs, tanh as 2 sigmoid(2x) − 1), which the workflow does not use."""
    hparams = model.hparams
    unsupported = [
        f"{section}.{key}={hparams[section][key]!r}"
        for section, wanted in STRAIGHT_LINE.items()
        for key, value in wanted.items()
        if hparams[section][key] != value
    ]
    bound = hparams["model"]["param_bound"]
    if bound != "sigmoid" and (bound, model.core.system.default_bound) != (
        "auto",
        "sigmoid",
    ):
        unsupported.append(f"model.param_bound={bound!r}")
    if unsupported:
        raise ValueError(f"straight_line_loss does not compute {unsupported}")
    linear, tanh = KERNELS[kernels]
    values, observed, visits, later, baseline, t = inputs
    core, loss = model.core, hparams["loss"]
    enc, dec, net = core.encoder, core.decoder, core.param_net
    h = tanh(linear(enc.hidden, values)) + 1.0
    mu = linear(enc.mean, h)
    logvar = enc.logvar_affine(-torch.relu(linear(enc.logvar, h)))
    hidden = torch.tanh(net.hidden(baseline))
    rates = net.affine((torch.sigmoid(net.out(hidden)) - 0.5) / net.scale)
    mu_ode = mu[:, :1] * torch.exp(rates[:, None, :] * t[..., None])
    mean = torch.cat([mu[:, :1], mu_ode[:, 1:]], 1)
    z = mean if noise is None else mean + torch.exp(0.5 * logvar) * noise
    hd = tanh(linear(dec.hidden, z))
    x_mean, x_logvar = linear(dec.mean, hd), linear(dec.logvar, hd)
    sq = (values - x_mean) ** 2 * torch.exp(-x_logvar)
    nll = (0.5 * (LOG_2PI + x_logvar + sq) * observed).sum((1, 2))
    kl = 0.5 * (torch.exp(logvar) + mean**2 - 1.0 - logvar)
    kl = (kl.sum(-1) * visits).sum(1)
    consistency = (((mu_ode - mu) ** 2).sum(-1) * later).sum(1)
    per_patient = (
        nll + loss["kl_weight"] * kl + loss["consistency_weight"] * consistency
    )
    l2 = sum((w**2).sum() for w in dec.parameters())
    return per_patient.mean() + loss["decoder_l2"] * l2


#: The paths :func:`_floor` times: (loss, kernels, torch's fused Adam).
FLOOR_PATHS = {
    "module": ("module", "torch", False),
    "straight_line": ("straight_line", "torch", False),
    "straight_line_fast": ("straight_line", "fast", True),
}


def _floor(
    cohort: Cohort, kwargs: dict, batch_size: int, seed: int, repeats: int
) -> dict:
    """Milliseconds per step (median of ``repeats`` alternated passes) of each of
    :data:`FLOOR_PATHS` on the same batches sliced beforehand: the module's step,
    :func:`straight_line_loss`'s with the module's optimiser, and the same with
    the ``fast`` kernels and torch's fused Adam on the flat tensor."""
    batches = list(_batches(cohort, batch_size, seed))
    runs = {}
    for path, (loss, kernels, fused) in FLOOR_PATHS.items():
        L.seed_everything(seed, verbose=False)
        model = ODEVAE(**kwargs)
        prepared = (  # the module's step takes the batches as they are
            [None] * len(batches)
            if loss == "module"
            else [straight_line_inputs(model, b, kernels) for b in batches]
        )
        optimiser = (
            FlatAdam(model.parameters(), lr=model.hparams.lr, fused=True)
            if fused
            else model.configure_optimizers()
        )
        runs[path] = (model, optimiser, prepared, loss, kernels)

    def step(model, batch, inputs, loss, kernels):
        if loss == "module":
            return model.loss_terms(model.scale(batch), sample=True)["loss"]
        d = model.core.encoder.mean.out_features
        noise = torch.randn(*inputs[0].shape[:2], d)
        return straight_line_loss(model, inputs, noise, kernels)

    times = {path: [] for path in runs}
    for _ in range(repeats):
        for path, (model, optimiser, prepared, loss, kernels) in runs.items():
            t0 = time.perf_counter()
            for batch, inputs in zip(batches, prepared, strict=True):
                value = step(model, batch, inputs, loss, kernels)
                optimiser.zero_grad()
                value.backward()
                optimiser.step()
            times[path].append(1000 * (time.perf_counter() - t0) / len(batches))
    return {path: float(np.median(ms)) for path, ms in times.items()}


def profile_training(args: argparse.Namespace) -> None:
    """``--step``: the data path before/after, the step split and its operators."""
    n, epochs = args.step, (QUICK if args.quick else FULL)["epochs"]
    cohort, _ = simulated_cohort(n, FULL["base"]["p"], FULL["base"]["q"], args.seed)
    kwargs = model_kwargs(cohort, "linear_diagonal", "closed_form", args.lr)
    bs = auto_batch_size(n)
    print(f"\nn = {n}, p = {cohort.p}, q = {cohort.q}, batch {bs}, {epochs} epochs")
    loader = OnePass(_batches(cohort, bs, args.seed))  # a pass per Lightning step
    _fit_seconds(cohort, kwargs, loader, 1, args.seed)
    rows = []
    for repeat in range(args.repeats):
        for path, make in (("loader", _loader), ("device", _batches)):
            loader = OnePass(make(cohort, bs, args.seed))
            seconds, loss = _fit_seconds(cohort, kwargs, loader, epochs, args.seed)
            rows.append({"repeat": repeat, "path": path, "s": seconds, "loss": loss})
    runs = pd.DataFrame(rows)
    print("Trainer training, former DataLoader + collate vs device batches:")
    print(runs.to_string(index=False, float_format=lambda x: f"{x:.6g}"))
    wide = runs.pivot(index="repeat", columns="path", values="s")
    ratio = wide["loader"] / wide["device"]
    print(
        f"median s: loader {wide['loader'].median():.3f}, device "
        f"{wide['device'].median():.3f}; loader / device per repeat "
        + ", ".join(f"{r:.3f}" for r in ratio)
    )
    split = _plain_split(_batches(cohort, bs, args.seed), kwargs, epochs, args.seed)
    plain = sum(v for k, v in split.items() if k != "steps")
    trainer_ms = 1000 * wide["device"].median() / split["steps"]
    print(
        f"per step (ms): plain loop {plain:.2f} = "
        + ", ".join(f"{k} {v:.2f}" for k, v in split.items() if k != "steps")
        + f"; Trainer {trainer_ms:.2f} (set-up included)"
    )
    floor = _floor(cohort, kwargs, bs, args.seed, args.repeats)
    steps = split["steps"]
    line, fast = floor["straight_line"], floor["straight_line_fast"]
    print(
        f"straight-line floor (the same maths hand-written on the module's layers, "
        f"batches prepared once, the same optimiser; median of {args.repeats} "
        f"alternated passes): {line:.2f} ms per step against the module's "
        f"{floor['module']:.2f} ms ({floor['module'] / line:.2f}x); {steps} steps: "
        f"{line * steps / 1000:.2f} s against {floor['module'] * steps / 1000:.2f} s"
    )
    print(
        f"  with kernels that round differently (layers as W x^T on feature-major "
        f"visits, tanh by sigmoid, torch's fused Adam; not the workflow's): "
        f"{fast:.2f} ms per step ({fast / line - 1:+.0%}); {steps} steps: "
        f"{fast * steps / 1000:.2f} s"
    )
    total, top, table = _step_operators(cohort, kwargs, bs, args.seed)
    print(f"one step: {top} top-level aten operators ({total} with nested ones)")
    print(table)
    runs.to_csv(args.out / "cost_step.tsv", sep="\t", index=False)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, 2 epochs")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument(
        "--batch-size",
        default="auto",
        help="an integer or auto: ceil(n / 7) in [32, 512]",
    )
    parser.add_argument("--lr", type=float, default=LR)
    parser.add_argument("--lv-batch-size", type=int, default=LV_BATCH_SIZE)
    parser.add_argument("--lv-lr", type=float, default=LV_LR)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--tables",
        type=lambda v: v.split(","),
        default=["n", "p", "q", "lv"],
        help="comma-separated subset of n,p,q,lv",
    )
    parser.add_argument(
        "--no-reference", action="store_true", help="skip the per-patient reference"
    )
    parser.add_argument(
        "--ref-solver",
        choices=["torchdiffeq", "odevae"],
        default="torchdiffeq",
        help="the reference's dopri5: torchdiffeq's odeint or odevae's",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "benchmarks")
    parser.add_argument(
        "--step",
        type=int,
        default=None,
        help="profile training at this n instead of the tables (see above)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="with --step")
    args = parser.parse_args(argv)
    layout = QUICK if args.quick else FULL
    torch.set_num_threads(args.threads)
    _quiet_lightning()
    args.out.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()[0]
    print(f"{os.cpu_count()} CPUs, load average {load:.2f}, {args.threads} threads")
    if load > 0.5:
        print("  the machine is busy: timings are noisy (much more so with 2 threads)")
    if args.step:
        profile_training(args)
        return
    tables = run_tables(args, layout)
    fits = add_fits(tables)
    for name, table in tables.items():
        table.to_csv(
            args.out / f"cost_{name}.tsv", sep="\t", index=False, float_format="%.6g"
        )
    fits.to_csv(args.out / "cost_fits.tsv", sep="\t", index=False, float_format="%.4g")
    plot(tables, args.out / "cost.png")
    print_tables(tables, fits, args)
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
