"""profiles/slurm against a real SLURM: a one-node cluster on this machine.

A session fixture installs Debian's SLURM (22.05) and MUNGE where they are missing,
writes a one-node configuration for localhost and starts munged, slurmctld and
slurmd by hand (no systemd), all as root; teardown stops them by their PIDs and
removes the configuration. The workflow then runs on the tiny config with
``--profile profiles/slurm`` and only the overrides this cluster needs: its
partition name, job states from squeue (there is no accounting database here) and
a short first status check (the plugin's default waits 40 s). Needs root and
apt-get (or SLURM already installed); skipped where neither is available.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import ROOT, TINY

pytestmark = pytest.mark.slurm

PARTITION = "odevae-test"
PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge")
BINARIES = ("slurmctld", "slurmd", "sbatch", "squeue", "scancel", "munged")
# Client commands and the srun inside each job read the default location: the
# job step plugin drops SLURM_CONF from the job's environment.
CONF_DIR = Path("/etc/slurm")
MARK = "# one-node test cluster of odevae tests/test_slurm.py; removed at teardown"
# Rules that must go through sbatch (all others are localrules or `all`).
CLUSTER_JOBS = {
    ("simulate", ""),
    ("preprocess", ""),
    ("split", ""),
    ("train", "0"),
    ("train", "1"),
    ("predict", "0"),
    ("predict", "1"),
    ("comparators", "0"),
    ("comparators", "1"),
}
LOCAL_RULES = {
    "software",
    "plot_data",
    "plot_cohort",
    "plot_losses",
    "plot_latent",
    "plot_parameters",
    "plot_predictions",
    "recovery",
    "evaluate",
}


# ===== the cluster =====================================================
def run(*args, check=True, **kwargs):
    return subprocess.run(args, check=check, capture_output=True, text=True, **kwargs)


def ensure_installed():
    if all(shutil.which(b) for b in BINARIES):
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("SLURM is not installed and apt-get as root is not available")
    env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", *PACKAGES]
    if subprocess.run(install, capture_output=True, env=env).returncode != 0:
        run("apt-get", "update", env=env)
        run(*install, env=env)


def free_ports(n):
    """``n`` distinct TCP ports free on localhost now."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def wait_for(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def stop(pid_file: Path):
    """SIGTERM the daemon whose PID the file holds; SIGKILL it after 20 s."""
    if not pid_file.is_file():
        return
    pid = int(pid_file.read_text().split()[0])
    try:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            os.kill(pid, 0)  # raises once the process is gone
            time.sleep(0.2)
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def slurm_conf(d: Path) -> str:
    node = dict(
        item.split("=", 1) for item in run("slurmd", "-C").stdout.split() if "=" in item
    )
    ctld_port, slurmd_port = free_ports(2)
    return f"""{MARK}
ClusterName=odevae-test
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={d}/munge.socket
SlurmUser=root
SlurmdUser=root
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/slurmctld.log
SlurmdLogFile={d}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MpiDefault=none
ReturnToService=2
# squeue reports finished jobs for 10 minutes: the plugin's status source here
MinJobAge=600
NodeName=localhost NodeAddr=127.0.0.1 CPUs={node["CPUs"]} \
RealMemory={node["RealMemory"]} State=UNKNOWN
PartitionName={PARTITION} Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""


# proctrack/linuxproc and task/none use no cgroups, but slurmd still loads a
# cgroup plugin (22.05 has no "disabled"): v1, constraining nothing.
CGROUP_CONF = f"""{MARK}
CgroupPlugin=cgroup/v1
ConstrainCores=no
ConstrainRAMSpace=no
ConstrainSwapSpace=no
ConstrainDevices=no
"""


@pytest.fixture(scope="session")
def slurm_cluster():
    """A running one-node SLURM cluster with partition PARTITION; its directory."""
    ensure_installed()
    conf = CONF_DIR / "slurm.conf"
    if conf.exists() and MARK not in conf.read_text():
        pytest.skip(f"{conf} exists: not replacing a real SLURM configuration")
    # munged wants its socket's folders searchable by all (pytest's are 0700)
    d = Path(tempfile.mkdtemp(prefix="odevae-slurm-"))
    d.chmod(0o755)
    (d / "state").mkdir()
    (d / "spool").mkdir()
    key = d / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    CONF_DIR.mkdir(exist_ok=True)
    conf.write_text(slurm_conf(d))
    (CONF_DIR / "cgroup.conf").write_text(CGROUP_CONF)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    try:
        run(
            "munged",
            f"--socket={d}/munge.socket",
            f"--key-file={key}",
            f"--pid-file={d}/munged.pid",
            f"--log-file={d}/munged.log",
            f"--seed-file={d}/munged.seed",
        )
        run("slurmctld", env=env)
        run("slurmd", "-N", "localhost", env=env)

        def idle():
            state = run("sinfo", "-h", "-o", "%T", check=False, env=env)
            return state.returncode == 0 and state.stdout.split() == ["idle"]

        wait_for(idle, 60, "the node to be idle in sinfo")
        yield d
    finally:
        for daemon in ("slurmd", "slurmctld", "munged"):
            stop(d / f"{daemon}.pid")
        for name in ("slurm.conf", "cgroup.conf"):
            path = CONF_DIR / name
            if path.exists() and MARK in path.read_text():
                path.unlink()
        shutil.rmtree(d, ignore_errors=True)


# ===== the runs ========================================================
def workflow_copy(path: Path) -> Path:
    """The workflow, its config and profiles in ``path``, with the tiny config."""
    path.mkdir()
    shutil.copy(ROOT / "Snakefile", path)
    for folder in ("workflow", "config", "profiles"):
        shutil.copytree(ROOT / folder, path / folder)
    (path / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    return path


def cluster_overrides():
    """The profile's default resources with this cluster's partition, plus the
    status command of a cluster without accounting (sacct has no records here)."""
    profile = yaml.safe_load((ROOT / "profiles/slurm/config.yaml").read_text())
    resources = profile["default-resources"] | {"slurm_partition": PARTITION}
    return [
        "--default-resources",
        *(f"{key}={value}" for key, value in resources.items()),
        "--slurm-status-command",
        "squeue",
        "--slurm-init-seconds-before-status-checks",
        "1",
    ]


def snakemake(workdir, *args):
    return subprocess.Popen(
        [sys.executable, "-m", "snakemake", "--configfile", "tiny.yaml", *args],
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("SLURM_")},
    )


def on_cluster(workdir):
    return snakemake(workdir, "--profile", "profiles/slurm", *cluster_overrides())


def finish(process, timeout=300):
    out, _ = process.communicate(timeout=timeout)
    return process.returncode, out


def jobs_in_squeue():
    """{SLURM job id: (state, comment, job name)} of every job slurmctld knows."""
    out = run("squeue", "--states=all", "-h", "-o", "%i|%T|%k|%j").stdout
    return {
        i: (state, comment, name)
        for i, state, comment, name in (line.split("|") for line in out.splitlines())
    }


def cancel_every_attempt(process, comment, attempts):
    """scancel each job with ``comment`` once it runs, ``attempts`` times."""
    cancelled = []
    deadline = time.monotonic() + 240
    while len(cancelled) < attempts and time.monotonic() < deadline:
        assert process.poll() is None, "snakemake ended before the cancellations"
        for job_id, (state, job_comment, _) in jobs_in_squeue().items():
            if (
                job_comment == comment
                and state == "RUNNING"
                and job_id not in cancelled
            ):
                run("scancel", job_id)
                cancelled.append(job_id)
        time.sleep(0.3)
    assert len(cancelled) == attempts, cancelled
    return cancelled


def submissions(log):
    """(rule, wildcards, SLURM job id) of each job snakemake submitted with sbatch."""
    pattern = (
        r"submitted with SLURM jobid (\d+) "
        r"\(log: \S*/slurm_logs/rule_(\w+?)/(?:(\w+)/)?\d+\.log"
    )
    return [(rule, wc or "", i) for i, rule, wc in re.findall(pattern, log)]


@pytest.fixture(scope="module")
def runs(slurm_cluster, tmp_path_factory):
    """The tiny workflow locally (--cores 2) and on SLURM: the first cluster run
    has fold 0's training cancelled at every attempt, a second run completes."""
    base = tmp_path_factory.mktemp("runs")
    local_dir = workflow_copy(base / "local")
    cluster_dir = workflow_copy(base / "slurm")
    started = time.monotonic()
    processes = []
    try:
        local = snakemake(local_dir, "--cores", "2")
        first = on_cluster(cluster_dir)
        processes += [local, first]
        cancelled = cancel_every_attempt(first, "rule_train_wildcards_0", attempts=3)
        first_rc, first_log = finish(first)
        trained = sorted(
            path.parent.name
            for path in (cluster_dir / "results").glob("tiny/train/*/model.ckpt")
        )
        local_rc, local_log = finish(local)
        assert local_rc == 0, local_log
        second = on_cluster(cluster_dir)
        processes.append(second)
        second_rc, second_log = finish(second)
    finally:
        for process in processes:  # after a failure: snakemake cancels its jobs
            if process.poll() is None:
                process.terminate()
                process.communicate(timeout=60)
    print(f"local and two SLURM runs: {time.monotonic() - started:.0f} s")
    return {
        "local": local_dir,
        "slurm": cluster_dir,
        "cancelled": cancelled,
        "first": (first_rc, first_log),
        "trained_after_first": trained,
        "second": (second_rc, second_log),
        "squeue": jobs_in_squeue(),
    }


# ===== the tests =======================================================
def test_every_cluster_job_went_through_sbatch(runs):
    logs = runs["first"][1] + runs["second"][1]
    submitted = submissions(logs)
    assert {(rule, wc) for rule, wc, _ in submitted} == CLUSTER_JOBS, logs
    # fold 0 trained four times: three cancelled attempts, then the rerun
    assert [wc for rule, wc, _ in submitted if rule == "train"].count("0") == 4
    # local rules ran in snakemake itself, cluster rules never did
    ran_locally = set(re.findall(r"^localrule (\w+):", logs, flags=re.M))
    assert ran_locally == LOCAL_RULES | {"all"}, ran_locally
    # SLURM's own records: every job id snakemake reported, with its rule
    run_ids = set(re.findall(r"SLURM run ID: (\S+)", logs))
    records = runs["squeue"]
    for rule, wc, job_id in submitted:
        state, comment, name = records[job_id]
        assert comment == f"rule_{rule}" + (f"_wildcards_{wc}" if wc else "")
        assert name in run_ids
        expected = "CANCELLED" if job_id in runs["cancelled"] else "COMPLETED"
        assert state == expected, (job_id, rule, wc, state)
    # the rule's resources reached sbatch: 1 CPU, 1000 MB, 30 min per attempt
    limits = [
        scontrol(job_id)
        for rule, wc, job_id in submitted
        if (rule, wc) == ("train", "0")
    ]
    assert [x["TimeLimit"] for x in limits] == [
        "00:30:00",
        "01:00:00",
        "01:30:00",
        "00:30:00",
    ]
    assert {(x["NumCPUs"], x["Partition"]) for x in limits} == {("1", PARTITION)}
    assert [x["MinMemoryNode"] for x in limits] == ["1000M", "2000M", "3000M", "1000M"]


def scontrol(job_id):
    out = run("scontrol", "show", "job", job_id).stdout
    return dict(item.split("=", 1) for item in out.split() if "=" in item)


def test_cancelled_training_is_retried_then_reported_and_a_rerun_completes(runs):
    rc, log = runs["first"]
    assert rc != 0
    # each cancellation is reported with its SLURM job id; the first two retried
    for job_id in runs["cancelled"]:
        assert f"SLURM-job '{job_id}' failed, SLURM status is: 'CANCELLED'" in log
    assert "Error in rule train" in log and "wildcards: fold=0" in log
    assert runs["trained_after_first"] == ["fold_1"]
    rc, log = runs["second"]
    assert rc == 0, log
    assert "steps (100%) done" in log


def test_cluster_results_equal_the_local_run(runs):
    local = runs["local"] / "results" / "tiny"
    cluster = runs["slurm"] / "results" / "tiny"
    for table in (
        "folds.tsv",
        "recovery.tsv",
        "train/fold_0/metrics.csv",
        "train/fold_1/metrics.csv",
        "predict/fold_0/params.tsv",
        "predict/fold_1/params.tsv",
        "figures/loss_curves.tsv",
    ):
        sep = "," if table.endswith(".csv") else "\t"
        pd.testing.assert_frame_equal(
            pd.read_csv(cluster / table, sep=sep),
            pd.read_csv(local / table, sep=sep),
            check_exact=True,
            obj=table,
        )
    for figure in ("data_vs_truth", "latent_trajectories", "loss_curves"):
        assert (cluster / "figures" / f"{figure}.png").is_file()


# ===== without a cluster ===============================================
def test_training_asks_for_a_gpu_only_when_configured_to_use_one(tmp_path):
    """train gets gpu=1 (sbatch --gpus=1) with train.accelerator: gpu, nothing else."""
    workdir = workflow_copy(tmp_path / "w")
    (workdir / "gpu.yaml").write_text(yaml.safe_dump({"train": {"accelerator": "gpu"}}))
    for extra, gpus in (([], 0), (["gpu.yaml"], 2)):
        process = snakemake(workdir, *extra, "--profile", "profiles/slurm", "-n")
        rc, out = finish(process, timeout=120)
        assert rc == 0, out
        jobs = re.findall(
            r"^(?:local)?rule (\w+):.*?resources: ([^\n]*)", out, re.M | re.S
        )
        assert {rule for rule, _ in jobs} >= {"train", "predict", "simulate"}
        requests = [rule for rule, resources in jobs if "gpu=1" in resources]
        assert requests == ["train"] * gpus, out
        train = [resources for rule, resources in jobs if rule == "train"]
        assert all("mem_mb=1000" in r and "runtime=30" in r for r in train), train


def test_training_time_and_memory_grow_with_the_cohort(tmp_path):
    """A dry run sizes each fold's train job from the (simulated) cohort: the tiny
    run keeps 30 minutes and 1000 MB, 15,000 patients with up to 256 visits get
    more of both."""
    workdir = workflow_copy(tmp_path / "w")
    large = {
        "simulation": {"n": 15000, "p": 2, "q": 5, "maxntps": 255, "dt": 0.02},
        "train": {"epochs": 300},
    }
    (workdir / "large.yaml").write_text(yaml.safe_dump(large))
    sized = {}
    for extra in ([], ["large.yaml"]):
        process = snakemake(workdir, *extra, "--profile", "profiles/slurm", "-n")
        rc, out = finish(process, timeout=120)
        assert rc == 0, out
        train = re.findall(r"^rule train:.*?resources: ([^\n]*)", out, re.M | re.S)
        assert len(train) == 2, out  # one job per fold
        sized[tuple(extra)] = [
            {k: int(v) for k, v in re.findall(r"(mem_mb|runtime)=(\d+)", r)}
            for r in train
        ]
    small, big = sized[()], sized[("large.yaml",)]
    assert all(r == {"mem_mb": 1000, "runtime": 30} for r in small), small
    assert all(r["runtime"] > 60 and r["mem_mb"] > 1000 for r in big), big


def test_the_profile_runs_each_tuning_candidate_as_its_own_job(tmp_path):
    """Locally one tune job per fold trains its candidates in turn; the SLURM
    profile (tuning.jobs candidate) submits one per fold and candidate, each sized
    for one candidate."""
    workdir = workflow_copy(tmp_path / "w")
    tuned = {
        "train": {"early_stopping": {"inner_fraction": 0.25}},
        "tuning": {"candidates": {"a": {}, "b": {"loss": {"kl_weight": 0.1}}}},
    }
    (workdir / "tuned.yaml").write_text(yaml.safe_dump(tuned))
    jobs = {}
    for extra in ([], ["--profile", "profiles/slurm"]):
        process = snakemake(workdir, "tuned.yaml", *extra, "-n")
        rc, out = finish(process, timeout=120)
        assert rc == 0, out
        jobs[bool(extra)] = re.findall(
            r"^rule tune:.*?wildcards: ([^\n]*).*?resources: ([^\n]*)",
            out,
            re.M | re.S,
        )
    local, cluster = jobs[False], jobs[True]
    assert sorted(w for w, _ in local) == ["fold=0", "fold=1"], local
    assert sorted(w for w, _ in cluster) == [
        f"fold={fold}, candidate={name}" for fold in (0, 1) for name in "ab"
    ], cluster
    assert all("runtime=30" in r for _, r in cluster), cluster
    assert all("runtime=60" in r for _, r in local), local  # both candidates
    # the paper's modules follow the profile too: pbcseq's 4 candidates x 5 folds
    paper = {"paper": {"runs": ["pbcseq"], "cost_benchmark": "skip"}}
    (workdir / "paper.yaml").write_text(yaml.safe_dump(paper))
    process = snakemake(
        workdir, "paper.yaml", "--profile", "profiles/slurm", "-n", "paper"
    )
    rc, out = finish(process, timeout=120)
    assert rc == 0, out
    tunes = re.findall(r"^rule pbcseq_tune:.*?wildcards: ([^\n]*)", out, re.M | re.S)
    assert len(tunes) == 20 and all("candidate=" in w for w in tunes), tunes
