"""The SLURM cluster's limits on a long run (scripts/services/slurm.sh, the fake TAO): a
requeue, a time limit and the memory limit, each ending as it should by itself."""

from __future__ import annotations

import re
import subprocess
import time

import pytest

from tests.func.test_slurm import scontrol_job
from tests.func.test_slurm_faults import (
    fake_slurm_project,
    nothing_left_of,
    running_train_job,
    start_snakemake,
    wait_exit,
)

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def test_requeued_training_resumes_and_the_build_completes(slurm_cluster, tmp_path,
                                                           cancel_leftovers):
    """`scontrol requeue` (what preemption with requeue does): SLURM stops the job and runs
    it again under the same id; the pipeline keeps waiting, the second run resumes from the
    checkpoints, and the build completes."""
    folder = fake_slurm_project(tmp_path / "p", slurm_cluster, epochs=12)
    proc = start_snakemake(folder, epoch_seconds=2)
    job = running_train_job(folder, proc, epoch=1)
    subprocess.run(["scontrol", "requeue", job], check=True)
    # SLURM makes a requeued job wait about 2 min before it is eligible again; the test plays
    # a scheduler that lets it start at once
    deadline = time.monotonic() + 60
    while scontrol_job(job).get("Reason") != "BeginTime":
        assert time.monotonic() < deadline, ("the requeued job never waited", scontrol_job(job))
        time.sleep(0.5)
    subprocess.run(["scontrol", "update", f"jobid={job}", "StartTime=now"], check=True)
    rc = wait_exit(proc, 400)
    out = (folder / "snakemake.out").read_text()
    assert rc == 0, out[-3000:]
    log = (folder / "results/base/logs/train.log").read_text()
    assert "resuming: checkpoints up to epoch" in log, log[-3000:]
    assert (folder / "results/base/train/model_epoch_011.pth").exists()
    states = subprocess.run(["sacct", "-n", "-D", "-X", "-P", "-j", job, "-o", "State"],
                            capture_output=True, text=True).stdout.split()
    assert states[0] == "REQUEUED" and states[-1] == "COMPLETED", states


def test_a_job_over_its_memory_fails_naming_the_setting(slurm_cluster, tmp_path,
                                                        cancel_leftovers):
    """The cluster enforces each job's memory (scripts/services/slurm.sh: cgroups): a
    training that holds more than the 3000 MB its job asked for is killed, SLURM says
    OUT_OF_MEMORY, and taomake names the setting to raise; nothing of the job is left."""
    folder = fake_slurm_project(tmp_path / "p", slurm_cluster, epochs=3)
    proc = start_snakemake(folder, 1, env={"FAKE_TAO_MEMORY_MB": "3500"})
    rc = wait_exit(proc, 300)
    out = (folder / "snakemake.out").read_text()
    assert rc != 0, out[-3000:]
    assert "SLURM status is: 'OUT_OF_MEMORY'" in out, out[-3000:]
    assert "ran out of the memory it asked for (3000 MB): raise " \
           "hardware.slurm.mem_mb_per_gpu" in out, out[-3000:]
    attempts = (folder / "results/base/train/.taomake/slurm-attempts.jsonl").read_text()
    assert '"state": "OUT_OF_MEMORY"' in attempts
    nothing_left_of(folder)


def test_a_training_past_its_time_limit_is_resubmitted_and_completes(slurm_cluster, tmp_path,
                                                                     cancel_leftovers):
    """hardware.slurm.time_minutes: 1 and a training of ~100 s: SLURM ends the job at its
    limit (TIMEOUT); taomake requeues it under the same id, it resumes from its checkpoints,
    and the build completes by itself, each attempt in the log and in provenance (before:
    the build failed with "SLURM status is: 'TIMEOUT'" and the log said only "interrupted by
    SIGTERM")."""
    import json

    folder = fake_slurm_project(tmp_path / "p", slurm_cluster, epochs=4)
    project = folder / "project.yaml"
    project.write_text(project.read_text().replace("time_minutes: 20", "time_minutes: 1"))
    proc = start_snakemake(folder, epoch_seconds=25)
    rc = wait_exit(proc, 600)
    out = (folder / "snakemake.out").read_text()
    log = (folder / "results/base/logs/train.log").read_text()
    assert rc == 0, out[-3000:] + log[-3000:]
    # one train job, requeued under its id
    [job] = set(re.findall(r"submitted with SLURM jobid (\d+) \(log: [^)]*rule_train/", out))
    said = (f"train (base): SLURM job {job} reached its time limit "
            "(hardware.slurm.time_minutes: 1);")
    assert said in out and f"earlier attempt 1: {said}" in log, out[-3000:] + log[-3000:]
    assert "resubmitted (attempt 2 of 4), it resumes from its checkpoints" in log, log[-3000:]
    assert f"train (base): attempt 2 of SLURM job {job} (requeued 1 time(s))" in log
    assert "resuming: checkpoints up to epoch" in log
    assert (folder / "results/base/train/model_epoch_003.pth").exists()
    states = subprocess.run(["sacct", "-n", "-D", "-X", "-P", "-j", job, "-o", "State"],
                            capture_output=True, text=True).stdout.split()
    assert states[0] in ("TIMEOUT", "REQUEUED") and states[-1] == "COMPLETED", states
    record = json.loads((folder / "results/base/train/.taomake/provenance-train.json")
                        .read_text())
    slurm = record["runtime"]["slurm"]
    assert slurm["job"] == job and slurm["attempt"] >= 2, slurm
    assert slurm["earlier"][0] == {"attempt": 1, "state": "TIMEOUT", "then": "requeue"}, slurm
