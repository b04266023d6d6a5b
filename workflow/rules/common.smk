from snakemake.utils import min_version, validate

min_version("9.0")


validate(config, schema="../schemas/config.schema.yaml")

OUT = f"results/{config['name']}"
LOGS = f"{OUT}/logs"
FOLDS = list(range(config["cv"]["folds"]))


wildcard_constraints:
    fold=r"\d+",


def simulated():
    """True when the cohort is simulated, so ground truth exists."""
    return config["data"]["source"] == "simulate"


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
    return outputs
