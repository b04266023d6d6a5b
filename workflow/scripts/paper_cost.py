"""BJ 2022 Tables 1-3 (rule ``paper_cost``): benchmarks/cost.py, run by the
interpreter of the rule's environment, into the rule's output folder."""

import runpy
from pathlib import Path

from odevae.runner import run_script


def main(snakemake):
    out = Path(snakemake.output.figure).parent
    argv = ["--out", str(out), *(["--quick"] if snakemake.params.quick else [])]
    cost = runpy.run_path(str(Path(snakemake.scriptdir) / "../../benchmarks/cost.py"))
    cost["main"](argv)


run_script(snakemake, main)
