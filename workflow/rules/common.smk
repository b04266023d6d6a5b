import os
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, validate

# The odevae library of this checkout (torch-free modules only in this process).
sys.path.insert(0, str(Path(workflow.basedir) / "src"))
from odevae.errors import InputError
from odevae.systems import alignment_kind, check_model_config

min_version("9.0")


# ===== helpers =========================================================
def simulated():
    """True when the cohort is simulated, so ground truth exists."""
    return config["data"]["source"] == "simulate"


def check_config():
    """Cross-key checks the schema cannot express; errors name the keys."""
    try:
        check_model_config(config)
    except InputError as error:
        raise WorkflowError(str(error)) from None
    dim, u0 = config["model"]["latent_dim"], config["simulation"]["u0"]
    if simulated() and dim != len(u0):
        raise WorkflowError(
            f"config key 'model.latent_dim' = {dim} must equal the simulated latent "
            f"dimension len(simulation.u0) = {len(u0)}, so that learned and true "
            "trajectories can be compared"
        )


def training_config():
    """The config sections that determine a trained model (display options left out)."""
    sections = {key: config[key] for key in ("seed", "model", "loss", "train")}
    train = {k: v for k, v in config["train"].items() if k != "progress_bar"}
    return {**sections, "train": train}


def train_inputs(wildcards):
    """The train rule's inputs: the true groups too where the cohort is simulated."""
    inputs = {"cohort": f"{OUT}/preprocessed/cohort.npz", "folds": f"{OUT}/folds.tsv"}
    if simulated():
        inputs["truth_patients"] = f"{OUT}/data/truth_patients.tsv"
    return inputs


def fold_outputs(pattern):
    """``pattern`` (with a {fold} wildcard) for every cross-validation fold."""
    return expand(pattern, fold=FOLDS)


def all_outputs():
    """Everything ``rule all`` builds for the configured run."""
    outputs = [
        f"{OUT}/folds.tsv",
        f"{OUT}/figures/loss_curves.png",
        *fold_outputs(f"{OUT}/predict/fold_{{fold}}/params.tsv"),
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
    return outputs


# ===== config ==========================================================
validate(config, schema="../schemas/config.schema.yaml")
check_config()

OUT = f"results/{config['name']}"
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
