import copy
import hashlib
import os
import sys
from pathlib import Path

import yaml
from snakemake.utils import min_version, update_config, validate

# The odevae library of this checkout (torch-free modules only in this process).
sys.path.insert(0, str(Path(workflow.basedir) / "src"))
from odevae.config_schema import (
    in_schema_order,
    resolve_auto,
    schema_error,
    standardize_measurements,
)
from odevae import config_checks
from odevae.errors import InputError
from odevae.paper import RUNS, item_sources
from odevae.model.systems import alignment_kind
from odevae.resources import training_resources, training_size

min_version("9.0")


# ===== helpers =========================================================
def simulated():
    """True when the cohort is simulated, so ground truth exists."""
    return config["data"]["source"] == "simulate"


def simulated_registry():
    """True when the cohort is a simulated registry export, so its true groups and
    rates (but no true trajectories) exist."""
    return config["data"]["source"] == "simulate_registry"


def recovered():
    """True when the cohort's truth is known, so rule ``all`` (and a sweep) scores
    its recovery: simulated cohorts and simulated registry exports."""
    return simulated() or simulated_registry()


def registry_source():
    """True when the cohort is a SMArtCARE-layout registry export."""
    return config["data"]["source"] in ("smartcare", "simulate_registry")


def config_error(message):
    """Stop before any job with one ``odevae:`` line (no traceback)."""
    print(f"odevae: {message}", file=sys.stderr)
    sys.exit(1)


def validate_config(schema):
    """The schema's checks as one line naming the key, then Snakemake's validation
    (which fills in the defaults); then the config in canonical key order, so that
    equal configs give equal params (no rerun) whichever route merged them."""
    rules = yaml.safe_load(Path(schema).read_text())
    problem = schema_error(config, rules)
    if problem is not None:
        config_error(problem)
    validate(config, schema=schema)
    ordered = in_schema_order(config, rules)
    config.clear()
    config.update(ordered)


def check_config(schema):
    """Every cross-key check (:mod:`odevae.config_checks`) as one line naming the
    key."""
    try:
        config_checks.check_config(config, yaml.safe_load(Path(schema).read_text()))
    except InputError as error:
        config_error(error)


def tuning():
    """True when ``tuning.candidates`` names settings to choose per fold."""
    return bool(config["tuning"]["candidates"])


def candidate_config(name):
    """The config with tuning candidate ``name``'s overrides merged in."""
    return config_checks.candidate_config(config, name)


def ingest_drops():
    """What ingestion dropped, for the preprocessing report (none when simulated)."""
    return [] if simulated() else [f"{OUT}/data/ingest_drops.tsv"]


def ingest_notes():
    """Ingestion's notes for the report (covariates that change between visits)."""
    return [] if simulated() else [f"{OUT}/data/ingest_notes.tsv"]


def registry_inputs():
    """The registry export: simulated, or the configured files."""
    if config["data"]["source"] == "simulate_registry":
        return {key: f"{OUT}/registry/{key}.tsv" for key in ("visits", "baseline")}
    return {key: config["registry"][key] for key in ("visits", "baseline")}


def table_inputs():
    """The configured visit table, and the baseline table if there is one."""
    table = config["table"]
    return {k: table[k] for k in ("visits", "baseline") if table[k] is not None}


def measurement_transforms():
    """Transform per measurement pattern (name or glob), to show original units."""
    if registry_source():
        registry = config["registry"]
        six = {item: "item_0_6" for item in registry["items_0_6"]}
        four = {item: "item_0_4" for item in registry["items_0_4"]}
        return six | four | {f"{registry['test']}_*": "item_0_2"}
    if config["data"]["source"] == "table":
        return config["table"]["transforms"]
    return {}


def time_unit():
    """The unit of visit times in the model's cohort."""
    return "a.u." if simulated() else config["data"]["time_unit"]


def sweeping():
    """True when ``sweep.seeds`` repeats the run over several seeds."""
    return bool(config["sweep"]["seeds"])


def run_seed(wildcards):
    """The seed of a job: its ``{seed}`` wildcard in a sweep, ``seed`` otherwise."""
    return int(wildcards.seed) if sweeping() else config["seed"]


def training_config(wildcards):
    """The config sections that determine a trained model (display options left
    out, ``auto`` settings resolved), with the job's seed; a tuning candidate's
    (``{candidate}`` wildcard) with its overrides."""
    source = config
    if "candidate" in wildcards.keys():
        source = candidate_config(wildcards.candidate)
    sections = {key: source[key] for key in ("model", "loss", "train")}
    train = {k: v for k, v in source["train"].items() if k != "progress_bar"}
    model = source["model"] | {"standardize_measurements": standardized()}
    return {**sections, "seed": run_seed(wildcards), "model": model, "train": train}


def tuned_models(wildcards):
    """Every tuning candidate's model and inner-validation scores of one fold."""
    names = list(config["tuning"]["candidates"])
    fold = f"{OUT}/tune/fold_{wildcards.fold}"
    return {
        key: [f"{fold}/{name}/{file}" for name in names]
        for key, file in (
            ("checkpoints", "model.ckpt"),
            ("metrics", "metrics.csv"),
            ("hparams", "hparams.yaml"),
            ("selections", "selection.tsv"),
        )
    }


def standardized():
    """Whether measurements are standardised (``auto``: for table sources)."""
    return standardize_measurements(config)


def train_inputs(wildcards):
    """The train rule's inputs: the true groups too where the cohort is simulated."""
    inputs = {"cohort": f"{OUT}/preprocessed/cohort.npz", "folds": f"{OUT}/folds.tsv"}
    if simulated():
        inputs["truth_patients"] = f"{OUT}/data/truth_patients.tsv"
    return inputs


def parameter_figure_inputs(wildcards):
    """Each fold's learned parameters, and the true groups where simulated."""
    inputs = {"params": fold_outputs(f"{OUT}/predict/fold_{{fold}}/params.tsv")}
    if simulated():
        inputs["truth_patients"] = f"{OUT}/data/truth_patients.tsv"
    return inputs


def config_hash():
    """A digest of the whole config, so that a record of it is rewritten when it
    changes."""
    text = yaml.safe_dump(config, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def fold_outputs(pattern):
    """``pattern`` (with a {fold} wildcard) for every cross-validation fold."""
    return expand(pattern, fold=FOLDS, allow_missing=True)


def sized_by_cohort(name):
    """A training job's resource ``name`` (runtime or mem_mb) sized from the cohort
    (:mod:`odevae.resources`: the preprocessed cohort, else a simulated cohort's
    config; <TBD> in a dry run of a real cohort not yet preprocessed), times the
    attempt, so that a retried job gets more."""

    def resource(wildcards, input, attempt):
        size = training_size(input.cohort, config)
        return attempt * training_resources(size, config)[name]

    return resource


def gpu_request():
    """``gpu=1`` for ``train`` when training is configured to run on a GPU.

    SLURM then allocates a GPU (``sbatch --gpus=1``); locally, ``snakemake
    --resources gpu=1`` keeps concurrent training jobs from sharing one GPU.
    ``auto`` asks for none: it uses a GPU only where one is visible anyway.
    """
    return {"gpu": 1} if config["train"]["accelerator"] in ("gpu", "cuda") else {}


def all_outputs():
    """Everything ``rule all`` builds for the configured run."""
    outputs = [
        f"{OUT}/folds.tsv",
        f"{OUT}/software.tsv",
        f"{OUT}/preprocessed/report.tsv",
        f"{OUT}/figures/visit_times.png",
        f"{OUT}/figures/measurements.png",
        f"{OUT}/figures/loss_curves.png",
        f"{OUT}/figures/parameters.png",
        f"{OUT}/cv/summary.tsv",
        f"{OUT}/cv/per_variable.tsv",
        f"{OUT}/figures/heldout_patients.png",
        f"{OUT}/figures/prediction_errors.png",
    ]
    if simulated():
        outputs += [
            f"{OUT}/recovery.tsv",
            f"{OUT}/figures/data_vs_truth.png",
            f"{OUT}/figures/latent_trajectories.png",
            f"{OUT}/figures/individual_fits.png",
        ]
        if config["train"]["batching"] == "similarity":
            outputs.append(f"{OUT}/figures/batch_purity.png")
    if simulated_registry():
        outputs.append(f"{OUT}/recovery.tsv")
    if sweeping():
        outputs = expand(outputs, seed=config["sweep"]["seeds"])
        outputs += sweep_outputs()
    return outputs


def sweep_outputs():
    """The tables aggregated over the seeds of a sweep."""
    outputs = [f"{SWEEP}/summary.tsv"]
    return outputs + [f"{SWEEP}/recovery.tsv"] if recovered() else outputs


def sweep_recovery_output():
    """Rule sweep's recovery table, where the truth is known (:func:`recovered`)."""
    if not recovered():
        return {}
    table = report(
        f"{SWEEP}/recovery.tsv",
        caption="../report/sweep_recovery.rst",
        category="Sweep over seeds",
    )
    return {"recovery": table}


def sweep_tables(wildcards):
    """Each seed's held-out scores (and recovery, where the truth is known) for rule
    sweep."""
    seeds = config["sweep"]["seeds"]
    inputs = {"summaries": expand(f"{OUT}/cv/summary.tsv", seed=seeds)}
    if recovered():
        inputs["recoveries"] = expand(f"{OUT}/recovery.tsv", seed=seeds)
    return inputs


def paper_config(run):
    """Config of a run ``snakemake paper`` needs: its preset merged over
    config/config.yaml, then ``paper.overrides``; the current config for its own run."""
    if run == config["name"] and not sweeping():
        return config
    root = Path(workflow.basedir)
    merged = yaml.safe_load((root / "config" / "config.yaml").read_text())
    if RUNS[run] != "config/config.yaml":
        update_config(merged, yaml.safe_load((root / RUNS[run]).read_text()))
    update_config(merged, copy.deepcopy(config["paper"]["overrides"]))
    update_config(
        merged, {"name": run, "paper": {"module": True}, "sweep": {"seeds": []}}
    )
    return merged


def paper_module(run):
    """True when ``snakemake paper`` imports ``run`` as a module (selected in
    ``paper.runs`` and not the run of the current config, unless that is a sweep)."""
    return (
        not config["paper"]["module"]
        and run in config["paper"]["runs"]
        and (run != config["name"] or sweeping())
    )


def paper_selected():
    """The runs (and ``cost``, the cost benchmark) whose items the paper makes."""
    cost = [] if config["paper"]["cost_benchmark"] == "skip" else ["cost"]
    return [*config["paper"]["runs"], *cost]


def paper_inputs():
    """Every paper item the selected runs make, keyed by its file name."""
    return item_sources(paper_selected())


def paper_fold_outputs(run, pattern):
    """``results/<run>/<pattern>`` for every fold of that run."""
    folds = range(paper_config(run)["cv"]["folds"])
    return [f"results/{run}/{pattern}".format(fold=fold) for fold in folds]


# ===== config ==========================================================
SCHEMA = Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml"
validate_config(SCHEMA)
resolve_auto(config)
check_config(SCHEMA)

# A sweep puts each seed's run under results/<name>/seed<seed>/ (a {seed} wildcard
# in every path) and the tables over seeds under results/<name>/sweep/.
RUN = f"results/{config['name']}"
SWEEP = f"{RUN}/sweep"
OUT = f"{RUN}/seed{{seed}}" if sweeping() else RUN
LOGS = f"{OUT}/logs"
FOLDS = list(range(config["cv"]["folds"]))

# Jobs import the odevae library of this checkout, also in --use-conda environments.
# (Set here, not required from the user: hence no envvars directive.)
os.environ.update(
    PYTHONPATH=os.pathsep.join(
        filter(None, [str(Path(workflow.basedir) / "src"), os.getenv("PYTHONPATH")])
    )
)


wildcard_constraints:
    fold=r"\d+",
    seed=r"\d+",
    candidate=r"[A-Za-z0-9_]+",


# ===== cluster =========================================================
# Every rule declares threads and resources (mem_mb in MB, runtime in minutes),
# sized from the benchmark files (results/<name>/benchmarks/) of `snakemake
# --cores 2` runs of config/config.yaml, config/pbcseq.yaml, config/registry.yaml
# and the tests' tiny similarity-batch config on a 2-core machine: every job peaked
# at 300-551 MB resident memory (torch, pandas and matplotlib imports dominate) and
# took 2-34 s, so 1000 MB and 10 minutes leave at least a 1.8-fold memory and
# 17-fold time margin; train gets 1000 MB and 30 minutes per attempt (README,
# "Running on a SLURM cluster"). Under a cluster executor the light jobs below
# (figures, the recovery and score tables; fetch_pbcseq and the paper's tables in
# their own files) run in the Snakemake process itself instead of being submitted.
localrules:
    software,
    plot_cohort,
    plot_data,
    plot_latent,
    plot_losses,
    plot_purity,
    plot_predictions,
    plot_parameters,
    evaluate,
