# Cluster resources: which light rules run in the Snakemake process itself, and
# the train and tune rules' resources sized from the cohort.
from odevae.resources import evaluation_resources, training_resources, training_size


def sized_by_cohort(name, jobs=1):
    """A training job's resource ``name`` (runtime or mem_mb) sized from the cohort
    (:mod:`odevae.resources`: the preprocessed cohort, else a simulated cohort's
    config; <TBD> in a dry run of a real cohort not yet preprocessed), times the
    attempt, so that a retried job gets more; a job that trains ``jobs`` models
    in turn gets that many times the runtime."""

    def resource(wildcards, input, attempt):
        size = training_size(input.cohort, config)
        return attempt * jobs * training_resources(size, config)[name]

    return resource


def sized_for_evaluation(name, models=1):
    """A fold's ``predict`` or ``comparators`` resource ``name`` sized from the
    cohort's visits and the ``models`` it predicts with
    (:func:`odevae.resources.evaluation_resources`; the profile's defaults for
    every shipped preset), times the attempt."""

    def resource(wildcards, attempt):
        size = training_size(f"{OUT}/preprocessed/cohort.npz", config)
        return attempt * evaluation_resources(size, models)[name]

    return resource


def gpu_request():
    """``gpu=1`` for ``train`` when training is configured to run on a GPU.

    SLURM then allocates a GPU (``sbatch --gpus=1``); locally, ``snakemake
    --resources gpu=1`` keeps concurrent training jobs from sharing one GPU.
    ``auto`` asks for none: it uses a GPU only where one is visible anyway.
    """
    return {"gpu": 1} if config["train"]["accelerator"] in ("gpu", "cuda") else {}


# ===== cluster =========================================================
# Rules declare resources only where they differ from the profiles' defaults
# (profiles/slurm: 1000 MB and 10 minutes): train and tune, predict and
# comparators (sized from the cohort above) and paper_cost. Every job runs on one thread (Snakemake's
# default; train, tune and paper_cost say so). Under a cluster executor the light
# jobs below (figures, the recovery and score tables; fetch_pbcseq and the paper's
# tables in their own files) run in the Snakemake process itself instead of being
# submitted.


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
