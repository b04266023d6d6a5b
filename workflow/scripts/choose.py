"""Each fold's model: the tuning candidate that predicts the fold's inner validation
patients best (rule ``choose``)."""

import logging
import shutil

from odevae.data.tables import read_tsv, write_tsv
from odevae.evaluate.tuning import choose_candidate, ensemble_names
from odevae.runner import run_script

log = logging.getLogger("odevae.choose")


def main(snakemake):
    names = snakemake.params.candidates
    tables = dict(zip(names, map(read_tsv, snakemake.input.selections), strict=True))
    choice = choose_candidate(
        tables, snakemake.params.predictor, snakemake.params.ensemble
    )
    k = int(choice["chosen"].to_numpy().argmax())
    plural = {"checkpoint": "checkpoints", "selection": "selections"}
    for key in ("checkpoint", "metrics", "hparams", "selection"):
        source = snakemake.input[plural.get(key, key)][k]
        shutil.copyfile(source, snakemake.output[key])
    write_tsv(
        choice.assign(fold=int(snakemake.wildcards.fold)), snakemake.output.choice
    )
    log.info(
        "fold %s: candidate %s (predictor %s, inner one-step MSE %.4g) of %s",
        snakemake.wildcards.fold,
        names[k],
        choice["predictor"][k],
        choice["mse"][k],
        ", ".join(f"{n} {m:.4g}" for n, m in zip(names, choice["mse"], strict=True)),
    )
    members = ensemble_names(choice)
    if len(members) > 1:
        log.info(
            "fold %s: predictions averaged over the %d best candidates "
            "(tuning.ensemble): %s",
            snakemake.wildcards.fold,
            len(members),
            ", ".join(members),
        )


run_script(snakemake, main)
