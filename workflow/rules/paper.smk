# snakemake paper: the papers' figures and tables into results/paper/ with a
# MANIFEST.tsv. Each run the papers need is this same workflow imported as a module
# with its preset's config (config paper.runs); the run of the current config comes
# from the main workflow itself. The modules skip Snakemake's validation, which
# would parse the schema file again for each: config.smk checks their configs and
# fills in the defaults from the schema it parsed once.


include: "paper_helpers.smk"


if paper_module("workshop"):

    module workshop:
        snakefile:
            "../../Snakefile"
        config:
            paper_config("workshop")
        skip_validation:
            True

    use rule * from workshop as workshop_*


if paper_module("workshop_vae"):

    module workshop_vae:
        snakefile:
            "../../Snakefile"
        config:
            paper_config("workshop_vae")
        skip_validation:
            True

    use rule * from workshop_vae as workshop_vae_*


if paper_module("bj_linear2"):

    module bj_linear2:
        snakefile:
            "../../Snakefile"
        config:
            paper_config("bj_linear2")
        skip_validation:
            True

    use rule * from bj_linear2 as bj_linear2_*


if paper_module("bj_lotka_volterra"):

    module bj_lotka_volterra:
        snakefile:
            "../../Snakefile"
        config:
            paper_config("bj_lotka_volterra")
        skip_validation:
            True

    use rule * from bj_lotka_volterra as bj_lotka_volterra_*


if paper_module("bj_linear4"):

    module bj_linear4:
        snakefile:
            "../../Snakefile"
        config:
            paper_config("bj_linear4")
        skip_validation:
            True

    use rule * from bj_linear4 as bj_linear4_*


if paper_module("registry"):

    module registry:
        snakefile:
            "../../Snakefile"
        config:
            paper_config("registry")
        skip_validation:
            True

    use rule * from registry as registry_*


if paper_module("pbcseq"):

    module pbcseq:
        snakefile:
            "../../Snakefile"
        config:
            paper_config("pbcseq")
        skip_validation:
            True

    use rule * from pbcseq as pbcseq_*


localrules:
    paper_prediction_table,
    paper_vae_vs_odevae,
    paper,


rule paper_cost:
    output:
        figure="results/paper/cost/cost.png",
    log:
        "results/paper/logs/paper_cost.log",
    benchmark:
        "results/paper/benchmarks/paper_cost.tsv"
    conda:
        "../envs/odevae.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=60,
    params:
        quick=config["paper"]["cost_benchmark"] == "quick",
    script:
        "../scripts/paper_cost.py"


rule paper_prediction_table:
    input:
        summary="results/{run}/cv/summary.tsv",
        latent=lambda w: paper_fold_outputs(
            w.run, "predict/fold_{fold}/latent_predictions.tsv"
        ),
    output:
        table="results/paper/{run}_prediction_table.tsv",
    log:
        "results/paper/logs/prediction_table_{run}.log",
    benchmark:
        "results/paper/benchmarks/prediction_table_{run}.tsv"
    conda:
        "../envs/odevae.yaml"
    script:
        "../scripts/paper_prediction_table.py"


# One fold's model of each run: folds have latent spaces of their own orientation.
rule paper_vae_vs_odevae:
    input:
        vae_latents=["results/workshop_vae/predict/fold_0/latents.tsv"],
        ode_trajectories=["results/workshop/predict/fold_0/trajectories.tsv"],
        ode_latents=["results/workshop/predict/fold_0/latents.tsv"],
        truth_patients="results/workshop/data/truth_patients.tsv",
    output:
        figure="results/paper/vae_vs_odevae.png",
    log:
        "results/paper/logs/vae_vs_odevae.log",
    benchmark:
        "results/paper/benchmarks/vae_vs_odevae.tsv"
    conda:
        "../envs/odevae.yaml"
    params:
        dpi=config["figures"]["dpi"],
    script:
        "../scripts/plot_vae_vs_odevae.py"


rule paper:
    input:
        **paper_inputs(),
    output:
        manifest="results/paper/MANIFEST.tsv",
    log:
        "results/paper/logs/paper.log",
    benchmark:
        "results/paper/benchmarks/paper.tsv"
    conda:
        "../envs/odevae.yaml"
    params:
        selected=paper_selected(),
    script:
        "../scripts/paper.py"
