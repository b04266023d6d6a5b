# Input functions and the predicates they share: what each rule reads and
# writes for the configured run (config and paths: config.smk).
from odevae import config_checks
from odevae.config_schema import standardize_measurements
from odevae.model.systems import alignment_kind


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


def training_config(wildcards, candidate=None):
    """The config sections that determine a trained model (display options left
    out, ``auto`` settings resolved), with the job's seed; a tuning candidate's
    (``candidate``) with its overrides."""
    source = config if candidate is None else candidate_config(candidate)
    sections = {key: source[key] for key in ("model", "loss", "train")}
    train = {k: v for k, v in source["train"].items() if k != "progress_bar"}
    model = source["model"] | {"standardize_measurements": standardized()}
    return {**sections, "seed": run_seed(wildcards), "model": model, "train": train}


TUNED_FILES = {
    "checkpoints": "model.ckpt",
    "metrics": "metrics.csv",
    "hparams": "hparams.yaml",
    "selections": "selection.tsv",
}


def tune_outputs(candidate=None):
    """What the tune rule writes for one fold, each named file for ``candidate``
    (a wildcard pattern), or for every tuning candidate (lists in their order)."""
    names = [candidate] if candidate else list(config["tuning"]["candidates"])
    fold = f"{OUT}/tune/fold_{{fold}}"
    return {
        key: [f"{fold}/{name}/{file}" for name in names]
        for key, file in TUNED_FILES.items()
    }


def candidate_configs(wildcards):
    """{candidate: its training config} for every tuning candidate: the same
    params whichever way ``tuning.jobs`` splits the work, so that switching it
    retrains nothing (each job trains those of its outputs)."""
    names = list(config["tuning"]["candidates"])
    return {name: training_config(wildcards, name) for name in names}


def ensemble_size():
    """How many models a fold's predict averages (tuning.ensemble, at most the
    number of candidates; 1 without tuning)."""
    if not tuning():
        return 1
    return min(config["tuning"]["ensemble"], len(config["tuning"]["candidates"]))


def tuned_models(wildcards):
    """Every tuning candidate's model and inner-validation scores of one fold."""
    return {
        key: expand(paths, fold=wildcards.fold, allow_missing=True)
        for key, paths in tune_outputs().items()
    }


def predict_inputs(wildcards):
    """The predict rule's inputs: the multivariate mixed model that rule
    comparators fitted (odevae_combined combines it) and, with tuning, the chosen
    candidate's inner selection (rule choose), which predict then reuses, and
    every candidate's model with the choice that names the ensemble's members."""
    fold = wildcards.fold
    inputs = {
        "checkpoint": f"{OUT}/train/fold_{fold}/model.ckpt",
        "cohort": f"{OUT}/preprocessed/cohort.npz",
        "folds": f"{OUT}/folds.tsv",
        "multivariate": f"{OUT}/comparators/fold_{fold}/multivariate_mixed.npz",
    }
    if tuning():
        inputs["selection"] = f"{OUT}/train/fold_{fold}/selection.tsv"
        inputs["choice"] = f"{OUT}/tune/fold_{fold}/choice.tsv"
        inputs["candidates"] = tuned_models(wildcards)["checkpoints"]
    return inputs


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


def fold_outputs(pattern):
    """``pattern`` (with a {fold} wildcard) for every cross-validation fold."""
    return expand(pattern, fold=FOLDS, allow_missing=True)


def variable_set_outputs():
    """``cv/summary_<name>.tsv`` of every set of ``evaluation.variable_sets``, named
    ``summary_<name>`` (rule evaluate's outputs)."""
    sets = config["evaluation"]["variable_sets"]
    return {f"summary_{name}": f"{OUT}/cv/summary_{name}.tsv" for name in sets}


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
