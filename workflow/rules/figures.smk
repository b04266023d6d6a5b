rule plot_data:
    input:
        visits=f"{OUT}/data/visits.tsv",
        truth_patients=f"{OUT}/data/truth_patients.tsv",
        truth_trajectories=f"{OUT}/data/truth_trajectories.tsv",
    output:
        figure=report(
            f"{OUT}/figures/data_vs_truth.png",
            caption="../report/data_vs_truth.rst",
            category="Data",
        ),
    log:
        f"{LOGS}/plot_data/plot_data.log",
    benchmark:
        f"{OUT}/benchmarks/plot_data.tsv"
    conda:
        "../envs/odevae.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        dpi=config["figures"]["dpi"],
    script:
        "../scripts/plot_data.py"


rule plot_latent:
    input:
        trajectories=fold_outputs(f"{OUT}/predict/fold_{{fold}}/trajectories.tsv"),
        latents=fold_outputs(f"{OUT}/predict/fold_{{fold}}/latents.tsv"),
        truth_patients=f"{OUT}/data/truth_patients.tsv",
        truth_trajectories=f"{OUT}/data/truth_trajectories.tsv",
    output:
        trajectories=report(
            f"{OUT}/figures/latent_trajectories.png",
            caption="../report/latent_trajectories.rst",
            category="Model fit",
        ),
        individual=report(
            f"{OUT}/figures/individual_fits.png",
            caption="../report/individual_fits.rst",
            category="Model fit",
        ),
    log:
        f"{LOGS}/plot_latent/plot_latent.log",
    benchmark:
        f"{OUT}/benchmarks/plot_latent.tsv"
    conda:
        "../envs/odevae.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        dpi=config["figures"]["dpi"],
        alignment=alignment_kind(config),
    script:
        "../scripts/plot_latent.py"


rule plot_losses:
    input:
        metrics=fold_outputs(f"{OUT}/train/fold_{{fold}}/metrics.csv"),
    output:
        figure=report(
            f"{OUT}/figures/loss_curves.png",
            caption="../report/loss_curves.rst",
            category="Training",
        ),
        table=f"{OUT}/figures/loss_curves.tsv",
    log:
        f"{LOGS}/plot_losses/plot_losses.log",
    benchmark:
        f"{OUT}/benchmarks/plot_losses.tsv"
    conda:
        "../envs/odevae.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        folds=FOLDS,
        dpi=config["figures"]["dpi"],
    script:
        "../scripts/plot_losses.py"


rule plot_purity:
    input:
        metrics=fold_outputs(f"{OUT}/train/fold_{{fold}}/metrics.csv"),
    output:
        figure=report(
            f"{OUT}/figures/batch_purity.png",
            caption="../report/batch_purity.rst",
            category="Training",
        ),
        table=f"{OUT}/figures/batch_purity.tsv",
    log:
        f"{LOGS}/plot_purity/plot_purity.log",
    benchmark:
        f"{OUT}/benchmarks/plot_purity.tsv"
    conda:
        "../envs/odevae.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        folds=FOLDS,
        dpi=config["figures"]["dpi"],
    script:
        "../scripts/plot_purity.py"
