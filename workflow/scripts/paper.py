"""The papers' figures and tables in results/paper/ with MANIFEST.tsv (rule
``paper``): every item its selected runs made, and a row saying why for the rest."""

from pathlib import Path

from odevae.paper import write_manifest
from odevae.runner import run_script


def main(snakemake):
    sources = {name: path for name, path in snakemake.input.items()}
    manifest = write_manifest(
        snakemake.params.selected, sources, Path(snakemake.output.manifest).parent
    )
    for row in manifest.itertuples():
        print(f"{row.paper}: {row.item}: {row.status}")


run_script(snakemake, main)
