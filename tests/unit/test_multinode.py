"""Multi-node environment per srun task, the srun command line and per-action resources."""

from __future__ import annotations

import pytest

from taomake.runners.multinode import srun_prefix, task_env
from tests.helpers import SMOKE_PROJECT


def fake_expand(nodelist):
    assert nodelist == "node[01-02]"
    return ["node01", "node02"]


@pytest.mark.parametrize("procid", ["0", "1"])
def test_task_env_two_nodes_four_gpus(procid):
    environ = {"SLURM_JOB_NODELIST": "node[01-02]", "SLURM_JOB_NUM_NODES": "2",
               "SLURM_GPUS_PER_NODE": "4", "SLURM_PROCID": procid,
               "NODE_RANK": "0"}  # a value exported once by the batch script: ignored
    assert task_env(environ, expand=fake_expand) == {
        "WORLD_SIZE": "2", "NUM_GPU_PER_NODE": "4", "MASTER_ADDR": "node01",
        "MASTER_PORT": "29500", "NODE_RANK": procid}
    # inside a job the port follows the job id: two jobs on one first host don't collide
    assert task_env({**environ, "SLURM_JOB_ID": "1234567"},
                    expand=fake_expand)["MASTER_PORT"] == str(20000 + 1234567 % 20000)


def test_task_env_typed_gpus_and_port():
    env = task_env({"SLURM_JOB_NODELIST": "node[01-02]", "SLURM_PROCID": "1",
                    "SLURM_GPUS_PER_NODE": "a100:4", "MASTER_PORT": "12345"}, expand=fake_expand)
    assert env["NUM_GPU_PER_NODE"] == "4" and env["MASTER_PORT"] == "12345"
    assert env["WORLD_SIZE"] == "2"


def test_task_env_outside_srun_fails():
    with pytest.raises(ValueError):
        task_env({}, expand=fake_expand)
    with pytest.raises(ValueError):
        task_env({"SLURM_JOB_NODELIST": "node[01-02]"}, expand=fake_expand)


def test_shared_env_reads_the_node_list_of_the_job_when_snakemake_stripped_it():
    """snakemake's SLURM jobstep keeps only SLURM_JOB_ID (and a few) in the rule's env."""
    from taomake.runners.multinode import shared_env

    asked = []

    def nodelist_of(job):
        asked.append(job)
        return "node[01-02]"

    env = shared_env({"SLURM_JOB_ID": "77"}, nodes=2, gpus_per_node=4, expand=fake_expand,
                     nodelist_of=nodelist_of)
    assert asked == ["77"]
    assert env == {"WORLD_SIZE": "2", "NUM_GPU_PER_NODE": "4", "MASTER_ADDR": "node01",
                   "MASTER_PORT": str(20000 + 77)}
    with pytest.raises(ValueError, match="not inside a SLURM allocation"):
        shared_env({}, nodes=2)


def test_cpu_nodes_run_one_process_each():
    from taomake.runners.multinode import shared_env

    env = shared_env({"SLURM_JOB_NODELIST": "node[01-02]"}, nodes=2, gpus_per_node=0,
                     expand=fake_expand)
    assert env["NUM_GPU_PER_NODE"] == "1" and env["WORLD_SIZE"] == "2"


@pytest.mark.parametrize("shell", ["sh", "dash", "bash"])
def test_rank_one_liner_sets_node_rank_and_picks_the_node_spec(shell, tmp_path):
    """The `sh -c` each srun task runs, executed for real: NODE_RANK from SLURM_PROCID and the
    marked spec argument turned into that node's copy; other arguments untouched."""
    import shutil
    import subprocess
    import sys

    from taomake.runners.multinode import RANK_FROM_PROCID, marked_spec, node_spec

    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed")
    spec = tmp_path / "dir with space" / "job-train.yaml"
    argv = [shell, *RANK_FROM_PROCID[1:], sys.executable, "-c",
            "import os, sys; print(os.environ['NODE_RANK'], *sys.argv[1:], sep='|')",
            "-e", str(marked_spec(spec)), "results_dir=r b", "a*b", ""]
    for rank in ("0", "3"):
        out = subprocess.run(argv, env={"SLURM_PROCID": rank, "PATH": "/usr/bin:/bin"},
                             capture_output=True, text=True, check=True).stdout
        assert out.rstrip("\n").split("|") == [rank, "-e", str(node_spec(spec, rank)),
                                                "results_dir=r b", "a*b", ""]


def test_srun_argv():
    assert srun_prefix(2, 4) == [
        "srun", "--nodes=2", "--ntasks=2", "--ntasks-per-node=1", "--kill-on-bad-exit=1",
        "--gpus-per-node=4"]
    # hardware.pack_nodes: every TAO node a task on one host
    assert srun_prefix(2, 0, pack=True)[:4] == ["srun", "--nodes=1", "--ntasks=2",
                                                 "--ntasks-per-node=2"]
    assert "--wait-all-nodes=1" not in srun_prefix(2, 4)  # sbatch's option, not srun's
    assert srun_prefix(1, 0, cpus_per_task=8)[-2:] == ["--kill-on-bad-exit=1",
                                                        "--cpus-per-task=8"]


def hardware(**kw):
    from taomake.compiler.hardware import Hardware

    return Hardware(**kw)


def test_resources_gpu_training_vs_eval():
    from taomake.compiler.plan import resources_of

    r = resources_of(hardware(gpus_per_node=4, nodes=2, slurm={
        "partition": "gpu", "account": "proj", "constraint": "a100", "cpus_per_gpu": 8,
        "mem_mb_per_gpu": 32000, "time_minutes": 720, "eval_time_minutes": 60}))
    assert r["train"] == {"nodes": 2, "gres": "gpu:4", "cpus_per_task": 32, "mem_mb": 128000,
                          "runtime": 720, "slurm_partition": "gpu", "slurm_account": "proj",
                          "constraint": "a100", "slurm_extra": "--requeue",
                          # a task per node; the rule runs in the batch step (no srun -n1
                          # wrapper) so taomake's srun is a step of the job
                          "tasks": 2, "mpi": "srun", "tasks_per_gpu": 0}
    assert r["distill"] == r["train"]
    for action in ("gen_trt_engine", "evaluate", "trt_evaluate", "export", "inference"):
        assert r[action]["gres"] == "gpu:1" and r[action]["nodes"] == 1
        assert r[action]["runtime"] == 60 and r[action]["cpus_per_task"] == 8


def test_resources_cpu_project_requests_no_gpu():
    from taomake.compiler.plan import resources_of

    r = resources_of(hardware(gpus_per_node=0, nodes=1, slurm={"requeue": False}))
    assert all("gres" not in v for v in r.values())
    assert all("slurm_partition" not in v and "slurm_account" not in v for v in r.values())
    assert r["train"]["slurm_extra"] == "--no-requeue"


def test_resources_cpu_multinode_and_packed():
    from taomake.compiler.plan import resources_of

    r = resources_of(hardware(gpus_per_node=0, nodes=2, slurm={"cpus_per_gpu": 1,
                                                              "mem_mb_per_gpu": 3000}))
    assert r["train"]["nodes"] == 2 and r["train"]["tasks"] == 2 and "gres" not in r["train"]
    assert "tasks_per_gpu" not in r["train"] and r["train"]["mem_mb"] == 3000
    packed = resources_of(hardware(gpus_per_node=0, nodes=2, pack_nodes=True, slurm={
        "cpus_per_gpu": 1, "mem_mb_per_gpu": 3000}))["train"]
    assert packed["nodes"] == 1 and packed["tasks"] == 2 and packed["mem_mb"] == 6000
    assert "tasks" not in resources_of(hardware(nodes=1))["train"]


def test_resources_do_not_change_specs(tmp_path):
    """hardware.slurm only sizes jobs: the compiled specs are the same bytes."""
    from taomake.compiler.plan import load_plan

    from tests.helpers import make_project

    a = load_plan(make_project(tmp_path / "a"))
    text = SMOKE_PROJECT.read_text().replace(
        "  shm_size: 2g", "  shm_size: 2g\n  slurm: {partition: x, account: y, cpus_per_gpu: 3}")
    b = load_plan(make_project(tmp_path / "b", text))
    sa, sb = a.experiments["base"], b.experiments["base"]
    assert {k: s.text for k, s in sa.specs.items()} == {k: s.text for k, s in sb.specs.items()}
    train = sb.resources["train"]
    assert train["slurm_partition"] == "x" and train["cpus_per_task"] == 3


def test_local_runner_runs_one_task_per_node_for_multinode_training(tmp_path):
    from dataclasses import replace
    from pathlib import Path

    from taomake.compiler.actions import ACTIONS

    from taomake.runners import TaoJob
    from taomake.runners.local import LocalRunner

    job = TaoJob(action=ACTIONS["train"], spec=Path("/p/s.yaml"), results_dir="results/base",
                 workdir=Path("/p"), image="img", gpus=4, nodes=1)
    runner = LocalRunner(tmp_path)
    assert runner.argv(job)[0] == str(tmp_path / "bin/rtdetr")
    allocation = {"SLURM_JOB_ID": "42", "SLURM_JOB_NODELIST": "n[1-2]", "SLURM_JOB_NUM_NODES":
                  "2", "SLURM_CPUS_PER_TASK": "16", "SLURM_STEP_ID": "batch", "PATH": "/bin",
                  "SECRET_NOT_ASKED_FOR": "x"}
    two = replace(job, nodes=2)
    argv = runner.argv(two, allocation)
    prefix = srun_prefix(2, 4, cpus_per_task=16)
    assert argv[:len(prefix)] == prefix and "--cpus-per-task=16" in prefix
    rest = argv[len(prefix):]
    from taomake.runners.multinode import RANK_FROM_PROCID

    assert rest[:4] == RANK_FROM_PROCID
    assert rest[4:] == [str(tmp_path / "bin/rtdetr"), "train", "-e", "/p/s.node-RANK.yaml",
                        "results_dir=results/base"]
    assert two.node_specs() == [Path("/p/s.node0.yaml"), Path("/p/s.node1.yaml")]
    assert job.node_specs() == [] and runner.argv(job)[3] == "/p/s.yaml"
    from unittest.mock import patch

    with patch("taomake.runners.multinode.scontrol_hostnames", lambda nodes: ["n1", "n2"]):
        env = runner.env(two, allocation)
    # a step of this job's allocation (its SLURM_* kept), not a request for a new one
    assert env["SLURM_JOB_ID"] == "42" and env["SLURM_JOB_NODELIST"] == "n[1-2]"
    assert env["WORLD_SIZE"] == "2" and env["MASTER_ADDR"] == "n1"
    assert "NODE_RANK" not in env and "SECRET_NOT_ASKED_FOR" not in env
    assert "SLURM_JOB_ID" not in runner.env(job, allocation)  # one node: no srun at all
