# Held-out evaluation: the comparators per fold, the summary over folds, and the
# recovery of the simulated truth (simulation, registry simulation, seed sweep).


rule comparators:
    input:
        cohort=f"{OUT}/preprocessed/cohort.npz",
        folds=f"{OUT}/folds.tsv",
    output:
        predictions=f"{OUT}/comparators/fold_{{fold}}/predictions.tsv",
        fits=f"{OUT}/comparators/fold_{{fold}}/fits.tsv",
        multivariate=f"{OUT}/comparators/fold_{{fold}}/multivariate_mixed.npz",
    log:
        f"{LOGS}/comparators/fold_{{fold}}.log",
    benchmark:
        f"{OUT}/benchmarks/comparators/fold_{{fold}}.tsv"
    priority: 1
    conda:
        "../envs/odevae.yaml"
    resources:
        mem_mb=sized_for_evaluation("mem_mb"),
        runtime=sized_for_evaluation("runtime"),
    params:
        transforms=measurement_transforms(),
        mixed_model_max_patients=config["evaluation"]["mixed_model_max_patients"],
        seed=config["seed"],
    script:
        "../scripts/comparators.py"


rule evaluate:
    input:
        cohort=f"{OUT}/preprocessed/cohort.npz",
        folds=f"{OUT}/folds.tsv",
        model=fold_outputs(f"{OUT}/predict/fold_{{fold}}/predictions.tsv"),
        comparators=fold_outputs(f"{OUT}/comparators/fold_{{fold}}/predictions.tsv"),
        metrics=fold_outputs(f"{OUT}/train/fold_{{fold}}/metrics.csv"),
        selection=fold_outputs(f"{OUT}/predict/fold_{{fold}}/selection.tsv"),
    output:
        **variable_set_outputs(),
        summary=report(
            f"{OUT}/cv/summary.tsv",
            caption="../report/summary.rst",
            category="Held-out prediction",
        ),
        per_variable=report(
            f"{OUT}/cv/per_variable.tsv",
            caption="../report/per_variable.rst",
            category="Held-out prediction",
        ),
        summary_continuous=f"{OUT}/cv/summary_continuous.tsv",
        contrasts=f"{OUT}/cv/contrasts.tsv",
        training=f"{OUT}/cv/training.tsv",
        selection=f"{OUT}/cv/selection.tsv",
    log:
        f"{LOGS}/evaluate/evaluate.log",
    benchmark:
        f"{OUT}/benchmarks/evaluate.tsv"
    priority: 1
    conda:
        "../envs/odevae.yaml"
    params:
        reference="locf",
        n_boot=config["evaluation"]["bootstrap"],
        seed=run_seed,
        folds=FOLDS,
        divergence_factor=config["evaluation"]["divergence_factor"],
        early_stopping=config["train"]["early_stopping"]["inner_fraction"] > 0,
        variable_sets=config["evaluation"]["variable_sets"],
    script:
        "../scripts/evaluate.py"


# Recovery of the truth: simulated cohorts (groups, rates and latent trajectories)
# and simulated registry exports (groups and rates only), each with its own rule.
if simulated():

    rule recovery:
        input:
            params=fold_outputs(f"{OUT}/predict/fold_{{fold}}/params.tsv"),
            trajectories=fold_outputs(f"{OUT}/predict/fold_{{fold}}/trajectories.tsv"),
            latents=fold_outputs(f"{OUT}/predict/fold_{{fold}}/latents.tsv"),
            truth_patients=f"{OUT}/data/truth_patients.tsv",
            truth_trajectories=f"{OUT}/data/truth_trajectories.tsv",
        output:
            recovery=report(
                f"{OUT}/recovery.tsv",
                caption="../report/recovery.rst",
                category="Model fit",
            ),
        log:
            f"{LOGS}/recovery/recovery.log",
        benchmark:
            f"{OUT}/benchmarks/recovery.tsv"
        localrule: True
        conda:
            "../envs/odevae.yaml"
        params:
            alignment=alignment_kind(config),
        script:
            "../scripts/recovery.py"


if simulated_registry():

    rule registry_recovery:
        input:
            params=fold_outputs(f"{OUT}/predict/fold_{{fold}}/params.tsv"),
            truth_patients=f"{OUT}/registry/truth_patients.tsv",
        output:
            recovery=report(
                f"{OUT}/recovery.tsv",
                caption="../report/registry_recovery.rst",
                category="Model fit",
            ),
        log:
            f"{LOGS}/registry_recovery/registry_recovery.log",
        benchmark:
            f"{OUT}/benchmarks/registry_recovery.tsv"
        localrule: True
        conda:
            "../envs/odevae.yaml"
        script:
            "../scripts/registry_recovery.py"


# A sweep over seeds (config sweep.seeds): every fold of every seed is one run.
if sweeping():

    rule sweep:
        input:
            unpack(sweep_tables),
        output:
            **sweep_recovery_output(),
            summary=report(
                f"{SWEEP}/summary.tsv",
                caption="../report/sweep_summary.rst",
                category="Sweep over seeds",
            ),
        log:
            f"{SWEEP}/logs/sweep.log",
        benchmark:
            f"{SWEEP}/benchmarks/sweep.tsv"
        localrule: True
        conda:
            "../envs/odevae.yaml"
        script:
            "../scripts/sweep.py"
