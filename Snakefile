# odevae: individual disease trajectories from small longitudinal cohorts.
#
#   snakemake --cores 2                                  default run (config/config.yaml)
#   snakemake --cores 2 --configfile config/<run>.yaml   another run
#   snakemake --report results/report.html               HTML report of the figures


# ===== configuration ===================================================
configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


# ===== rules ===========================================================
include: "workflow/rules/config.smk"
include: "workflow/rules/common.smk"
include: "workflow/rules/resources.smk"
include: "workflow/rules/sources.smk"
include: "workflow/rules/preprocess.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/figures.smk"


if not config["paper"]["module"]:

    include: "workflow/rules/paper.smk"


# ===== targets =========================================================
rule all:
    default_target: True
    input:
        all_outputs(),
