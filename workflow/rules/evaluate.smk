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
    conda:
        "../envs/odevae.yaml"
    params:
        alignment=alignment_kind(config),
    script:
        "../scripts/recovery.py"
