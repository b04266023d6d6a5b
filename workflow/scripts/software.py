"""The package versions and the config of this run (rule ``software``): a config
that reruns it as it was (in a sweep, one seed's run)."""

import yaml

from odevae.data.tables import write_tsv
from odevae.provenance import pinned_packages, software_table
from odevae.runner import run_script


def main(snakemake):
    table = software_table(pinned_packages(snakemake.input.environment))
    write_tsv(table, snakemake.output.software)
    # the config of this run: in a sweep, one seed's run (its seed, no sweep)
    config = {**snakemake.config, "seed": snakemake.params.seed}
    if config["sweep"]["seeds"]:
        config["sweep"] = {**config["sweep"], "seeds": []}
    with open(snakemake.output.config, "w") as handle:
        yaml.safe_dump(config, handle, sort_keys=False)


run_script(snakemake, main)
