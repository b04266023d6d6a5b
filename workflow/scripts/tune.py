"""Train one fold's tuning candidates, in turn, and score each on the fold's inner
validation patients (rule ``tune``: every candidate of the fold, or one with
``tuning.jobs: candidate``)."""

import gc
import logging
from pathlib import Path

from odevae.data.cohort import Cohort
from odevae.data.tables import read_tsv, write_tsv
from odevae.evaluate.prediction.selection import inner_multivariate, inner_selection
from odevae.runner import run_script
from odevae.train.training import train_fold

log = logging.getLogger("odevae.tune")


def main(snakemake):
    cohort = Cohort.load(snakemake.input.cohort)
    folds = read_tsv(snakemake.input.folds)
    fold = int(snakemake.wildcards.fold)
    truth = getattr(snakemake.input, "truth_patients", None)
    groups = None if truth is None else read_tsv(truth).set_index("patient_id")["group"]
    cap = snakemake.params.mixed_model_max_patients
    out = snakemake.output
    # the inner selection's multivariate mixed model does not depend on the
    # candidate: fitted once for the candidates this job trains
    multivariate = inner_multivariate(cohort, folds, fold, cap)
    # params.config holds every candidate; the job trains those it writes
    for checkpoint, selection_path in zip(out.checkpoints, out.selections, strict=True):
        name = Path(checkpoint).parent.name
        log.info("fold %d: candidate %s", fold, name)
        model = train_fold(
            cohort,
            folds,
            fold,
            snakemake.params.config[name],
            Path(checkpoint).parent,
            groups=groups,
            progress_bar=snakemake.config["train"]["progress_bar"],
        )
        selection = inner_selection(model, cohort, folds, fold, cap, multivariate)
        write_tsv(selection.assign(fold=fold), selection_path)
        del model, selection
        gc.collect()  # one candidate's memory at a time (mem_mb is sized for one)


run_script(snakemake, main)
