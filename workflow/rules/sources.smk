# Where a run's cohort comes from: the simulation, registry simulations, the public
# pbcseq cohort, long-format tables and registry exports (data.source).


if simulated():

    rule simulate:
        output:
            visits=f"{OUT}/data/visits.tsv",
            baseline=f"{OUT}/data/baseline.tsv",
            truth_patients=f"{OUT}/data/truth_patients.tsv",
            truth_trajectories=f"{OUT}/data/truth_trajectories.tsv",
        log:
            f"{LOGS}/simulate/simulate.log",
        benchmark:
            f"{OUT}/benchmarks/simulate.tsv"
        conda:
            "../envs/odevae.yaml"
        params:
            simulation=config["simulation"],
            seed=run_seed,
        script:
            "../scripts/simulate.py"


if not config["paper"]["module"]:  # one rule makes it, also under snakemake paper

    localrules:
        fetch_pbcseq,

    rule fetch_pbcseq:
        output:
            table="resources/pbcseq.csv",
        log:
            "results/logs/fetch_pbcseq/fetch_pbcseq.log",  # shared by every run
        benchmark:
            "results/benchmarks/fetch_pbcseq.tsv"
        conda:
            "../envs/odevae.yaml"
        script:
            "../scripts/fetch_pbcseq.py"


if config["data"]["source"] == "table":

    rule ingest_table:
        input:
            **table_inputs(),
        output:
            visits=f"{OUT}/data/visits.tsv",
            baseline=f"{OUT}/data/baseline.tsv",
            drops=f"{OUT}/data/ingest_drops.tsv",
            notes=f"{OUT}/data/ingest_notes.tsv",
        log:
            f"{LOGS}/ingest_table/ingest_table.log",
        benchmark:
            f"{OUT}/benchmarks/ingest_table.tsv"
        conda:
            "../envs/odevae.yaml"
        params:
            table=config["table"],
            time_unit=config["data"]["time_unit"],
            duplicates=config["preprocess"]["duplicates"],
            time_zero=config["preprocess"]["time_zero"],
        script:
            "../scripts/ingest_table.py"


if registry_source():

    rule ingest_registry:
        input:
            **registry_inputs(),
        output:
            visits=f"{OUT}/data/visits.tsv",
            baseline=f"{OUT}/data/baseline.tsv",
            drops=f"{OUT}/data/ingest_drops.tsv",
            notes=f"{OUT}/data/ingest_notes.tsv",
        log:
            f"{LOGS}/ingest_registry/ingest_registry.log",
        benchmark:
            f"{OUT}/benchmarks/ingest_registry.tsv"
        conda:
            "../envs/odevae.yaml"
        params:
            registry=config["registry"],
            time_unit=config["data"]["time_unit"],
            min_visits=config["preprocess"]["min_visits"],
            duplicates=config["preprocess"]["duplicates"],
        script:
            "../scripts/ingest_registry.py"


rule simulate_registry:
    output:
        visits=f"{OUT}/registry/visits.tsv",
        baseline=f"{OUT}/registry/baseline.tsv",
        truth_patients=f"{OUT}/registry/truth_patients.tsv",
    log:
        f"{LOGS}/simulate_registry/simulate_registry.log",
    benchmark:
        f"{OUT}/benchmarks/simulate_registry.tsv"
    conda:
        "../envs/odevae.yaml"
    params:
        simulation=config["registry"]["simulation"],
        seed=run_seed,
    script:
        "../scripts/simulate_registry.py"
