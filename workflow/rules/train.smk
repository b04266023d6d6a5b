# One model per fold: trained on the fold's training patients (train), or, with
# tuning.candidates, every candidate trained and the inner best kept (tune, choose);
# then the fold's model applied to every patient (predict).


if not tuning():

    rule train:
        input:
            unpack(train_inputs),
        output:
            checkpoint=f"{OUT}/train/fold_{{fold}}/model.ckpt",
            metrics=f"{OUT}/train/fold_{{fold}}/metrics.csv",
            hparams=f"{OUT}/train/fold_{{fold}}/hparams.yaml",
        log:
            f"{LOGS}/train/fold_{{fold}}.log",
        benchmark:
            f"{OUT}/benchmarks/train/fold_{{fold}}.tsv"
        # training is the longest path (train -> predict -> evaluate -> figures):
        # started first, the light jobs fill the other cores around it
        priority: 2
        conda:
            "../envs/odevae.yaml"
        threads: 1
        resources:
            **gpu_request(),
            mem_mb=sized_by_cohort("mem_mb"),
            runtime=sized_by_cohort("runtime"),
        params:
            config=training_config,
        script:
            "../scripts/train.py"

else:
    # tuning.candidates: every candidate trains on every fold and is scored on the
    # fold's inner validation patients; the best becomes the fold's model.

    # tuning.jobs fold: one job per fold trains the fold's candidates in turn (each
    # job start imports Lightning, seconds); candidate: one job per fold and
    # candidate, which a cluster runs side by side. The same params either way.
    PER_FOLD = config["tuning"]["jobs"] == "fold"
    TUNE_JOB = "fold_{fold}" if PER_FOLD else "fold_{fold}/{candidate}"

    rule tune:
        input:
            unpack(train_inputs),
        output:
            **tune_outputs(None if PER_FOLD else "{candidate}"),
        log:
            f"{LOGS}/tune/{TUNE_JOB}.log",
        benchmark:
            f"{OUT}/benchmarks/tune/{TUNE_JOB}.tsv"
        priority: 2
        conda:
            "../envs/odevae.yaml"
        threads: 1
        resources:
            **gpu_request(),
            mem_mb=sized_by_cohort("mem_mb"),
            runtime=sized_by_cohort(
                "runtime", jobs=len(config["tuning"]["candidates"]) if PER_FOLD else 1
            ),
        params:
            config=candidate_configs,
            mixed_model_max_patients=config["evaluation"]["mixed_model_max_patients"],
        script:
            "../scripts/tune.py"

    rule choose:
        input:
            unpack(tuned_models),
        output:
            checkpoint=f"{OUT}/train/fold_{{fold}}/model.ckpt",
            metrics=f"{OUT}/train/fold_{{fold}}/metrics.csv",
            hparams=f"{OUT}/train/fold_{{fold}}/hparams.yaml",
            selection=f"{OUT}/train/fold_{{fold}}/selection.tsv",
            choice=f"{OUT}/tune/fold_{{fold}}/choice.tsv",
        log:
            f"{LOGS}/choose/fold_{{fold}}.log",
        benchmark:
            f"{OUT}/benchmarks/choose/fold_{{fold}}.tsv"
        localrule: True
        conda:
            "../envs/odevae.yaml"
        params:
            candidates=list(config["tuning"]["candidates"]),
            predictor=config["tuning"]["predictor"],
            ensemble=config["tuning"]["ensemble"],
        script:
            "../scripts/choose.py"


rule predict:
    input:
        unpack(predict_inputs),
    output:
        params=f"{OUT}/predict/fold_{{fold}}/params.tsv",
        latents=f"{OUT}/predict/fold_{{fold}}/latents.tsv",
        trajectories=f"{OUT}/predict/fold_{{fold}}/trajectories.tsv",
        predictions=f"{OUT}/predict/fold_{{fold}}/predictions.tsv",
        latent_predictions=f"{OUT}/predict/fold_{{fold}}/latent_predictions.tsv",
        selection=f"{OUT}/predict/fold_{{fold}}/selection.tsv",
    log:
        f"{LOGS}/predict/fold_{{fold}}.log",
    benchmark:
        f"{OUT}/benchmarks/predict/fold_{{fold}}.tsv"
    priority: 1
    conda:
        "../envs/odevae.yaml"
    resources:
        mem_mb=sized_for_evaluation("mem_mb", ensemble_size()),
        runtime=sized_for_evaluation("runtime", ensemble_size()),
    params:
        grid_dt=config["predict"]["grid_dt"],
        transforms=measurement_transforms(),
        mixed_model_max_patients=config["evaluation"]["mixed_model_max_patients"],
    script:
        "../scripts/predict.py"
