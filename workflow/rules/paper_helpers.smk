# Helpers of the paper rules (paper.smk): the runs the papers need, their configs
# and the items they make.
import copy
from pathlib import Path

import yaml
from snakemake.utils import update_config

from odevae.config_schema import load_yaml
from odevae.paper import RUNS, item_sources


def paper_config(run):
    """Config of a run ``snakemake paper`` needs: its preset merged over
    config/config.yaml, then ``paper.overrides``; the current config for its own run."""
    if run == config["name"] and not sweeping():
        return config
    root = Path(workflow.basedir)
    merged = load_yaml(root / "config" / "config.yaml")
    if RUNS[run] != "config/config.yaml":
        update_config(merged, load_yaml(root / RUNS[run]))
    update_config(merged, copy.deepcopy(config["paper"]["overrides"]))
    # how rule tune splits its work follows the command's config (profiles/slurm)
    jobs = {"tuning": {"jobs": config["tuning"]["jobs"]}}
    update_config(
        merged,
        {"name": run, "paper": {"module": True}, "sweep": {"seeds": []}} | jobs,
    )
    return merged


def paper_module(run):
    """True when ``snakemake paper`` imports ``run`` as a module (selected in
    ``paper.runs`` and not the run of the current config, unless that is a sweep)."""
    return (
        not config["paper"]["module"]
        and run in config["paper"]["runs"]
        and (run != config["name"] or sweeping())
    )


def paper_selected():
    """The runs (and ``cost``, the cost benchmark) whose items the paper makes."""
    cost = [] if config["paper"]["cost_benchmark"] == "skip" else ["cost"]
    return [*config["paper"]["runs"], *cost]


def paper_inputs():
    """Every paper item the selected runs make, keyed by its file name."""
    return item_sources(paper_selected())


def paper_fold_outputs(run, pattern):
    """``results/<run>/<pattern>`` for every fold of that run."""
    folds = range(paper_config(run)["cv"]["folds"])
    return [f"results/{run}/{pattern}".format(fold=fold) for fold in folds]
