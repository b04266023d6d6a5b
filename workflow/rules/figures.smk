# Figures of the cohort, the fits, the latent space, the prediction and the papers'
# diagnostics, each wrapped in report() with its caption.


rule plot_cohort:
    input:
        cohort=f"{OUT}/preprocessed/cohort.npz",
    output:
        visit_times=report(
            f"{OUT}/figures/visit_times.png",
            caption="../report/visit_times.rst",
            category="Data",
        ),
        measurements=report(
            f"{OUT}/figures/measurements.png",
            caption="../report/measurements.rst",
            category="Data",
        ),
    log:
        f"{LOGS}/plot_cohort/plot_cohort.log",
    benchmark:
        f"{OUT}/benchmarks/plot_cohort.tsv"
    conda:
        "../envs/odevae.yaml"
    params:
        transforms=measurement_transforms(),
        time_unit=time_unit(),
        dpi=config["figures"]["dpi"],
    script:
        "../scripts/plot_cohort.py"


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
    params:
        folds=FOLDS,
        dpi=config["figures"]["dpi"],
    script:
        "../scripts/plot_purity.py"


rule plot_predictions:
    input:
        model=fold_outputs(f"{OUT}/predict/fold_{{fold}}/predictions.tsv"),
        comparators=fold_outputs(f"{OUT}/comparators/fold_{{fold}}/predictions.tsv"),
        summary=f"{OUT}/cv/summary.tsv",
    output:
        patients=report(
            f"{OUT}/figures/heldout_patients.png",
            caption="../report/heldout_patients.rst",
            category="Held-out prediction",
        ),
        errors=report(
            f"{OUT}/figures/prediction_errors.png",
            caption="../report/prediction_errors.rst",
            category="Held-out prediction",
        ),
    log:
        f"{LOGS}/plot_predictions/plot_predictions.log",
    benchmark:
        f"{OUT}/benchmarks/plot_predictions.tsv"
    priority: 1
    conda:
        "../envs/odevae.yaml"
    params:
        patients=config["evaluation"]["figure_patients"],
        seed=run_seed,
        time_unit=time_unit(),
        dpi=config["figures"]["dpi"],
    script:
        "../scripts/plot_predictions.py"


rule plot_parameters:
    input:
        unpack(parameter_figure_inputs),
    output:
        figure=report(
            f"{OUT}/figures/parameters.png",
            caption="../report/parameters.rst",
            category="Model fit",
        ),
    log:
        f"{LOGS}/plot_parameters/plot_parameters.log",
    benchmark:
        f"{OUT}/benchmarks/plot_parameters.tsv"
    conda:
        "../envs/odevae.yaml"
    params:
        seed=run_seed,
        dpi=config["figures"]["dpi"],
    script:
        "../scripts/plot_parameters.py"


rule plot_local_solutions:
    input:
        checkpoints=fold_outputs(f"{OUT}/train/fold_{{fold}}/model.ckpt"),
        cohort=f"{OUT}/preprocessed/cohort.npz",
        folds=f"{OUT}/folds.tsv",
    output:
        figure=report(
            f"{OUT}/figures/local_solutions.png",
            caption="../report/local_solutions.rst",
            category="Model fit",
        ),
        table=f"{OUT}/figures/local_solutions.tsv",
    log:
        f"{LOGS}/plot_local_solutions/plot_local_solutions.log",
    benchmark:
        f"{OUT}/benchmarks/plot_local_solutions.tsv"
    conda:
        "../envs/odevae.yaml"
    params:
        patients=24,
        seed=run_seed,
        time_unit=time_unit(),
        dpi=config["figures"]["dpi"],
    script:
        "../scripts/plot_local_solutions.py"


rule plot_similarity_batches:
    input:
        checkpoint=f"{OUT}/train/fold_0/model.ckpt",
        cohort=f"{OUT}/preprocessed/cohort.npz",
        folds=f"{OUT}/folds.tsv",
        truth_patients=f"{OUT}/data/truth_patients.tsv",
    output:
        figure=report(
            f"{OUT}/figures/similarity_batches.png",
            caption="../report/similarity_batches.rst",
            category="Training",
        ),
    log:
        f"{LOGS}/plot_similarity_batches/plot_similarity_batches.log",
    benchmark:
        f"{OUT}/benchmarks/plot_similarity_batches.tsv"
    conda:
        "../envs/odevae.yaml"
    params:
        times=config["train"]["similarity"]["times"],
        neighbours=config["train"]["similarity"]["neighbours"],
        bandwidth=config["train"]["similarity"]["bandwidth"],
        dpi=config["figures"]["dpi"],
    script:
        "../scripts/plot_similarity_batches.py"
