"""The sample pipeline on the local SLURM cluster (scripts/services/slurm.sh) through
`snakemake --profile profiles/slurm`, with the real TAO CPU venv inside the jobs; resources from
project.yaml reach sbatch; a second run submits nothing; srun tasks get their own NODE_RANK."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.func.test_e2e_tao import job_counts, project_text
from tests.helpers import REPO, SMOKE_PROJECT, make_project, work_budget

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

SLURM_HW = """  slurm:
    partition: debug
    account: {account}
    cpus_per_gpu: 1            # per job on CPU projects
    mem_mb_per_gpu: 3000
    time_minutes: 20
    eval_time_minutes: 10
"""
FIELDS = "JobID,JobName%60,Partition,Account,ReqCPUS,ReqMem,Timelimit,ReqTRES%80,State,WorkDir%300"


def run_snakemake(folder: Path, *args: str, limit: float | None = None) -> tuple[int, str]:
    """A build through the SLURM profile; `limit` defaults to the budget of the smoke
    pipeline (six TAO jobs, two epochs)."""
    limit = limit or work_budget(tao_jobs=6, epochs=2)
    # timeout -k: the plugin can wait forever on a broken sacct and ignores SIGTERM
    cmd = ["timeout", "-k", "15", f"{limit:.0f}", sys.executable, "-m", "snakemake",
           "-s", str(REPO / "Snakefile"), "--profile", str(REPO / "profiles/slurm"), *args]
    proc = subprocess.run(cmd, cwd=folder, capture_output=True, text=True)
    return proc.returncode, proc.stdout + proc.stderr


def sacct_jobs(folder: Path, since: str) -> list[dict[str, str]]:
    time.sleep(2)  # a just-finished job can be missing from sacct for about 1 s
    out = subprocess.run(["sacct", "-a", "-X", "-P", "-S", since, f"--format={FIELDS}"],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    head = out[0].split("|")
    rows = [dict(zip(head, line.split("|"), strict=True)) for line in out[1:]]
    return [r for r in rows if r["WorkDir"].rstrip("/") == str(folder)]


@pytest.fixture(scope="module")
def slurm_demo(slurm_cluster, tao_venv, tmp_path_factory):
    folder = tmp_path_factory.mktemp("slurm") / "demo"
    text = project_text(tao_venv).replace(
        "  shm_size: 2g\n", "  shm_size: 2g\n" + SLURM_HW.format(account=slurm_cluster))
    assert "partition: debug" in text
    # a team cache its jobs publish to (test_a_second_clone_fetches_on_slurm)
    text += f"\ncache:\n  url: file://{folder.parent / 'cache'}\n"
    make_project(folder, text, copy_data=True)
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() - 2))
    rc, out = run_snakemake(folder)
    assert rc == 0, out[-5000:]
    (folder / "snakemake-first.log").write_text(out)
    return folder, since, out


def test_sample_pipeline_on_slurm(slurm_demo):
    folder, since, out = slurm_demo
    counts = job_counts(out)
    assert {k: counts.get(k) for k in ("train", "select_checkpoint", "evaluate", "export",
                                       "inference")} == dict.fromkeys(
        ("train", "select_checkpoint", "evaluate", "export", "inference"), 1), out[-3000:]
    base = folder / "results/base"
    assert (base / "train/model.pth").stat().st_size > 1_000_000
    assert (base / "export/model.onnx").exists() and (base / "evaluate/metrics.json").exists()
    jobs = sacct_jobs(folder, since)
    assert len(jobs) >= 5 and all(j["State"] == "COMPLETED" for j in jobs), jobs


def test_a_second_clone_fetches_on_slurm(slurm_demo, tmp_path):
    """The SLURM jobs of the first build published to the team cache; a second clone's build
    through the profile fetches each TAO job's artifacts inside its SLURM job, runs no TAO."""
    folder, _, out = slurm_demo
    first_logs = "".join((folder / "results/base/logs" / f"{rule}.log").read_text()
                         for rule in ("train", "evaluate", "export", "inference"))
    assert first_logs.count("published to the cache") == 4, first_logs[-3000:]
    second = tmp_path / "second"
    make_project(second, (folder / "project.yaml").read_text(), copy_data=True)
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() - 2))
    rc, out = run_snakemake(second)
    assert rc == 0, out[-5000:]
    logs = "".join((second / "results/base/logs" / f"{rule}.log").read_text()
                   for rule in ("train", "evaluate", "export", "inference"))
    assert logs.count("from cache") == 4 and "via the local runner" not in logs, logs[-3000:]
    assert (second / "results/base/export/model.onnx").read_bytes() == \
        (folder / "results/base/export/model.onnx").read_bytes()
    jobs = sacct_jobs(second, since)
    assert len(jobs) >= 4 and all(j["State"] == "COMPLETED" for j in jobs), jobs


def scontrol_job(job_id: str) -> dict[str, str]:
    """`scontrol show job` as a dict.  Finished jobs stay there for MinJobAge (a day, set by
    scripts/services/slurm.sh): the tests read jobs of a pipeline that took >10 min on a busy
    machine, and the 600 s this was once caught its first job purged."""
    out = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True,
                         text=True, check=True).stdout
    return dict(item.split("=", 1) for item in out.split() if "=" in item)


def test_resources_reach_sbatch(slurm_demo, slurm_cluster):
    folder, since, _ = slurm_demo
    by_rule = {}
    for j in sacct_jobs(folder, since):
        show = scontrol_job(j["JobID"])
        rule = show["Comment"].removeprefix("rule_").split("_wildcards")[0]
        by_rule[rule] = (j, show)
        print(rule, j, {k: show.get(k) for k in ("Partition", "Account", "NumCPUs", "TRES",
                                                  "TimeLimit", "Requeue", "Comment")})
    for rule in ("train", "evaluate", "export", "inference"):
        j, show = by_rule[rule]
        assert j["Partition"] == "debug" and j["Account"] == slurm_cluster, j
        assert show["Partition"] == "debug" and show["Account"] == slurm_cluster
        assert j["ReqCPUS"] == "1" and show["NumCPUs"] == "1", j
        assert "mem=3000M" in show["TRES"] and "gres/gpu" not in show["TRES"], show
        assert show["Requeue"] == "1"  # hardware.slurm.requeue: true -> --requeue
        # training sized apart from evaluation/export/inference
        assert show["TimeLimit"] == ("00:20:00" if rule == "train" else "00:10:00"), show


def test_second_run_submits_nothing(slurm_demo):
    folder, since, _ = slurm_demo
    before = {j["JobID"] for j in sacct_jobs(folder, since)}
    rc, out = run_snakemake(folder, limit=work_budget(fake_jobs=10))
    assert rc == 0, out[-3000:]
    assert "Nothing to be done" in out, out[-3000:]
    assert {j["JobID"] for j in sacct_jobs(folder, since)} == before


def test_srun_tasks_get_their_own_node_rank(slurm_cluster, tmp_path):
    taomake = str(Path(sys.executable).parent / "taomake")
    cmd = ["timeout", "-k", "5", "60", "srun", f"--account={slurm_cluster}", "--partition=debug",
           "--nodes=1", "--ntasks=2", "--cpus-per-task=1", "--mem-per-cpu=500",
           taomake, "node-env", "--",
           sys.executable, "-c", "import os; print('RANK', *(os.environ[k] for k in ("
           "'NODE_RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT', 'SLURM_JOB_ID')))"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = sorted(line.split()[1:] for line in proc.stdout.splitlines()
                   if line.startswith("RANK"))
    host = subprocess.run(["hostname", "-s"], capture_output=True, text=True).stdout.strip()
    job = lines[0][4]
    port = str(20000 + int(job) % 20000)  # from the job id: jobs sharing a host don't collide
    # one task per TAO node: srun's 2 tasks are 2 nodes
    assert lines == [["0", "2", host, port, job], ["1", "2", host, port, job]], proc.stdout


def test_nested_srun_is_a_step_of_the_job_and_each_task_sets_its_rank(slurm_cluster,
                                                                      tmp_path):
    """What the local and pyxis runners do inside a training job's allocation, on the real
    cluster: srun with taomake's prefix, the environment kept from the allocation (a step of
    this job, not a new allocation) and the `sh -c` that sets NODE_RANK per task from
    SLURM_PROCID (nothing of taomake's inside the task)."""
    batch = tmp_path / "batch.py"
    batch.write_text(
        "import os, subprocess, sys\n"
        f"sys.path.insert(0, {str(REPO)!r})\n"
        "from taomake.runners.multinode import (RANK_FROM_PROCID, allocation_env, "
        "shared_env, srun_prefix, step_cpus)\n"
        "env = {**allocation_env(os.environ), **shared_env(os.environ), "
        "'PATH': os.environ['PATH']}\n"
        "argv = [*srun_prefix(1, 0, cpus_per_task=step_cpus(os.environ), "
        "extra=['--ntasks=2', '--ntasks-per-node=2']), *RANK_FROM_PROCID, sys.executable, "
        "'-c', \"import os; print('TASK', *(os.environ.get(k) for k in ('NODE_RANK', "
        "'WORLD_SIZE', 'MASTER_ADDR', 'SLURM_JOB_ID', 'SLURM_STEP_ID')))\"]\n"
        "print('BATCH', os.environ['SLURM_JOB_ID'], flush=True)\n"
        "sys.exit(subprocess.run(argv, env=env).returncode)\n")
    out = tmp_path / "out.txt"
    cmd = ["timeout", "-k", "5", "120", "sbatch", "--wait", f"--account={slurm_cluster}",
           "--partition=debug", "--nodes=1", "--ntasks=2", "--cpus-per-task=1",
           "--mem-per-cpu=500", f"--output={out}", "--wrap", f"{sys.executable} {batch}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    text = out.read_text() if out.exists() else ""
    assert proc.returncode == 0, proc.stderr + text
    [job] = [line.split()[1] for line in text.splitlines() if line.startswith("BATCH")]
    tasks = sorted(line.split()[1:] for line in text.splitlines() if line.startswith("TASK"))
    host = subprocess.run(["hostname", "-s"], capture_output=True, text=True).stdout.strip()
    assert [t[:4] for t in tasks] == [["0", "1", host, job], ["1", "1", host, job]], text
    assert tasks[0][4] == tasks[1][4] != "batch", text  # one step of the same job


def test_preflight_refuses_more_nodes_than_the_partition_has(slurm_cluster, tmp_path):
    """On the real cluster (partition debug: one node): 2 nodes would pend forever."""
    from taomake import preflight as pf

    text = SMOKE_PROJECT.read_text().replace(
        "  gpus_per_node: 0             # CPU: TAO runs in the venv made by `taomake setup "
        "tao-cpu`", "  gpus_per_node: 1\n  nodes: 2\n  slurm: {partition: debug}").replace(
        "    kind: local", "    kind: pyxis")
    project = make_project(tmp_path / "two", text)
    [check] = [c for c in pf.preflight(project, slurm=True) if c.what == "SLURM partition"]
    assert check.level == "FAIL" and "'debug' has 1 node, the training asks for 2" in \
        check.detail, check.render()
    one = make_project(tmp_path / "one", text.replace("  nodes: 2\n", ""))
    [check] = [c for c in pf.preflight(one, slurm=True) if c.what == "SLURM partition"]
    assert check.level == "PASS", check.render()
    missing = make_project(tmp_path / "missing", text.replace("partition: debug",
                                                              "partition: nosuch"))
    [check] = [c for c in pf.preflight(missing, slurm=True) if c.what == "SLURM partition"]
    assert check.level == "FAIL" and "does not exist" in check.detail


def test_gpu_and_requeue_settings_reach_sbatch(slurm_cluster, tmp_path):
    """A 1-GPU project (the cluster's fake gres) with requeue off: the train job asks for the
    GPU and is not requeueable.  The TAO test double keeps it fast."""
    from tests.func.test_build import fake_project_text

    text = fake_project_text().replace(
        "  gpus_per_node: 0             # CPU: TAO runs in the venv made by `taomake setup "
        "tao-cpu`", "  gpus_per_node: 1").replace(
        "  shm_size: 2g\n", "  shm_size: 2g\n" + SLURM_HW.format(account=slurm_cluster)
        + "    requeue: false\n")
    assert "gpus_per_node: 1" in text and "requeue: false" in text
    folder = tmp_path / "gpu"
    make_project(folder, text)
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() - 2))
    rc, out = run_snakemake(folder, "results/base/train/curve.csv", limit=work_budget(fake_jobs=4))
    assert rc == 0, out[-4000:]
    train = [j for j in sacct_jobs(folder, since)
             if scontrol_job(j["JobID"])["Comment"].startswith("rule_train_")]
    assert len(train) == 1, train
    show = scontrol_job(train[0]["JobID"])
    # the request as SLURM recorded it (accounting here does not track gres in TRES)
    assert show.get("TresPerNode", "").replace("/", ":") == "gres:gpu:1", show
    assert show["Requeue"] == "0", show


def test_two_node_training_with_real_tao_through_slurm(slurm_cluster, tao_venv, tmp_path):
    """hardware.nodes: 2 on the real cluster with the real TAO on CPU: one SLURM job whose
    srun step runs two tasks (pack_nodes: the cluster has one host), each a TAO node with its
    own NODE_RANK (from SLURM_PROCID) and spec copy; both join one gloo rendezvous and train
    the epoch together (the data sharded: half the steps of one node); rank 0 alone writes
    the checkpoint; a second run submits nothing."""
    folder = tmp_path / "two"
    text = project_text(tao_venv, epochs=1).replace(
        "  shm_size: 2g\n", "  shm_size: 2g\n  nodes: 2\n  pack_nodes: true\n"
        + SLURM_HW.format(account=slurm_cluster))
    make_project(folder, text)
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() - 2))
    rc, out = run_snakemake(folder, "results/base/train/run.json",
                            limit=work_budget(tao_jobs=1, epochs=1))
    train = folder / "results/base/train"
    log = (folder / "results/base/logs/train.log").read_text(errors="replace")
    assert rc == 0, out[-3000:] + log[-3000:]
    assert "srun --nodes=1 --ntasks=2 --ntasks-per-node=2" in log, log[:2000]
    assert "WORLD_SIZE=2 NUM_GPU_PER_NODE=1" in log, log[:2000]
    # both TAO nodes joined one process group
    assert "GLOBAL_RANK: 0, MEMBER: 1/2" in log and "GLOBAL_RANK: 1, MEMBER: 2/2" in log, log
    assert "All distributed processes registered. Starting with 2 processes" in log
    # each node read its own spec copy (TAO rewrites it in place)
    assert {p.name for p in (train / ".taomake").glob("job-train.node*.yaml")} == {
        "job-train.node0.yaml", "job-train.node1.yaml"}
    # 32 training images, batch 4: 8 steps on one node, 4 per node on two
    import json

    steps = [json.loads(line) for line in (train / "status.json").read_text().splitlines()
             if '"max_step"' in line]
    assert steps and {s["max_step"] for s in steps} == {4}, steps
    assert sorted(p.name for p in train.glob("model_epoch_*.pth")) == ["model_epoch_000.pth"]
    [job] = [j for j in sacct_jobs(folder, since)
             if scontrol_job(j["JobID"]).get("Comment", "").startswith("rule_train_")]
    assert job["State"] == "COMPLETED", job
    step = subprocess.run(["sacct", "-n", "-P", "-j", f"{job['JobID']}.0", "-o",
                           "NTasks,State"], capture_output=True, text=True).stdout.split()
    assert step == ["2|COMPLETED"], step
    rc, out = run_snakemake(folder, "results/base/train/run.json", limit=work_budget(fake_jobs=4))
    assert rc == 0 and "Nothing to be done" in out, out[-3000:]


def test_pyxis_single_node_step_runs_nested_in_the_plugins_step(slurm_cluster, tmp_path):
    """snakemake's SLURM plugin runs a rule inside `srun -n1` (holding the job's CPUs and
    memory); the pyxis runner's own srun then runs nested.  A plain nested srun waits forever
    here; the runner's `--overlap --mem=0` prefix (without the Pyxis options, which this
    cluster has no plugin for) runs as the next step of the same job, GPU gres included."""
    from dataclasses import replace

    from taomake.runners.pyxis import nested_prefix
    from tests.unit.test_container_argv import job as container_job

    step = [*nested_prefix(replace(container_job(1), gpus=1)), "sh", "-c",
            'echo INNER "$SLURM_JOB_ID" "$SLURM_STEP_ID"']
    script = tmp_path / "batch.sh"
    import shlex

    script.write_text("#!/bin/sh\nsrun -n1 --cpus-per-task=1 --gpus=1 sh -c "
                      + shlex.quote('echo OUTER "$SLURM_JOB_ID" "$SLURM_STEP_ID"; '
                                    f"timeout 30 {shlex.join(step)}") + "\n")
    out = tmp_path / "out.txt"
    proc = subprocess.run(["timeout", "-k", "5", "120", "sbatch", "--wait",
                           f"--account={slurm_cluster}", "--partition=debug", "--ntasks=1",
                           "--cpus-per-task=1", "--gpus=1", "--mem-per-cpu=300",
                           f"--output={out}", str(script)], capture_output=True, text=True)
    text = out.read_text() if out.exists() else ""
    assert proc.returncode == 0, proc.stderr + text
    [outer] = [line.split()[1:] for line in text.splitlines() if line.startswith("OUTER")]
    [inner] = [line.split()[1:] for line in text.splitlines() if line.startswith("INNER")]
    assert inner[0] == outer[0] and outer[1] == "0" and inner[1] == "1", text
