"""The package versions and the config of this run (rule ``software``)."""

import yaml

from odevae.provenance import pinned_packages, software_table
from odevae.runner import run_script
from odevae.tables import write_tsv


def main(snakemake):
    table = software_table(pinned_packages(snakemake.input.environment))
    write_tsv(table, snakemake.output.software)
    with open(snakemake.output.config, "w") as handle:
        yaml.safe_dump(snakemake.config, handle, sort_keys=False)


run_script(snakemake, main)
