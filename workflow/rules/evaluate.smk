rule recovery:
    input:
        params=fold_outputs(f"{OUT}/predict/fold_{{fold}}/params.tsv"),
        trajectories=fold_outputs(f"{OUT}/predict/fold_{{fold}}/trajectories.tsv"),
        latents=fold_outputs(f"{OUT}/predict/fold_{{fold}}/latents.tsv"),
        truth_patients=f"{OUT}/data/truth_patients.tsv",
        truth_trajectories=f"{OUT}/data/truth_trajectories.tsv",
    output:
        recovery=f"{OUT}/recovery.tsv",
    log:
        f"{LOGS}/recovery/recovery.log",
    benchmark:
        f"{OUT}/benchmarks/recovery.tsv"
    conda:
        "../envs/odevae.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        alignment=alignment_kind(config),
    script:
        "../scripts/recovery.py"
