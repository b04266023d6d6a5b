# The cohort made ready for training (preprocessing of irregular visits; the folds
# and each fold's inner split), and the run's record of its software and config.


rule preprocess:
    input:
        visits=f"{OUT}/data/visits.tsv",
        baseline=f"{OUT}/data/baseline.tsv",
        drops=ingest_drops(),
        notes=ingest_notes(),
    output:
        cohort=f"{OUT}/preprocessed/cohort.npz",
        patients=f"{OUT}/preprocessed/patients.tsv",
        report=report(
            f"{OUT}/preprocessed/report.tsv",
            caption="../report/preprocess_report.rst",
            category="Data",
        ),
    log:
        f"{LOGS}/preprocess/preprocess.log",
    benchmark:
        f"{OUT}/benchmarks/preprocess.tsv"
    conda:
        "../envs/odevae.yaml"
    params:
        options=config["preprocess"],
        time_unit=time_unit(),
        standardized=standardized(),
    script:
        "../scripts/preprocess.py"


rule split:
    input:
        cohort=f"{OUT}/preprocessed/cohort.npz",
    output:
        folds=f"{OUT}/folds.tsv",
    log:
        f"{LOGS}/split/split.log",
    benchmark:
        f"{OUT}/benchmarks/split.tsv"
    conda:
        "../envs/odevae.yaml"
    params:
        k=config["cv"]["folds"],
        seed=run_seed,
        inner_fraction=config["train"]["early_stopping"]["inner_fraction"],
    script:
        "../scripts/split.py"


rule software:
    input:
        environment=workflow.source_path("../envs/odevae.yaml"),
    output:
        software=f"{OUT}/software.tsv",
        config=f"{OUT}/config.yaml",
    log:
        f"{LOGS}/software/software.log",
    conda:
        "../envs/odevae.yaml"
    params:
        # rerun when the config changes (the script writes snakemake.config)
        config_hash=config_hash(),
        seed=run_seed,
    script:
        "../scripts/software.py"
