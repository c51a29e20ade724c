"""Long runs on the real SLURM cluster (scripts/services/slurm.sh) with the fake TAO
(tests/fake_tao: a training whose epochs take a set time): what happens when people act
around the pipeline: its job cancelled, Snakemake stopped or killed.  The cluster's own
limits (requeue, time limit, memory) are in tests/func/test_slurm_limits.py."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.func.test_slurm import SLURM_HW
from tests.helpers import REPO, make_project

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def fake_slurm_project(folder: Path, account: str, epochs: int, hardware: str = "") -> Path:
    from tests.func.test_build import fake_project_text

    text = fake_project_text(", FAKE_TAO_MEMORY_MB").replace(
        "  epochs: 2", f"  epochs: {epochs}").replace(
        "  shm_size: 2g\n", "  shm_size: 2g\n" + SLURM_HW.format(account=account) + hardware)
    make_project(folder, text)
    return folder


def start_snakemake(folder: Path, epoch_seconds: float, *args: str,
                    env: dict[str, str] | None = None,
                    out: str = "snakemake.out") -> subprocess.Popen:
    with open(folder / out, "w") as log:  # the child keeps its own copy
        return subprocess.Popen(
            [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--profile",
             str(REPO / "profiles/slurm"), *args, "results/base/train/run.json"], cwd=folder,
            env={**os.environ, "FAKE_TAO_EPOCH_SECONDS": str(epoch_seconds),
                 "FAKE_TAO_CALLS": str(folder / "calls.txt"), **(env or {})},
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=_default_sigint)


def _default_sigint() -> None:
    """Snakemake as a user starts it: Ctrl-C works.  A test runner started as a background
    job (`cmd &` in a non-interactive shell, as CI scripts do) has SIGINT ignored, children
    inherit that, and Python then never raises KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def running_train_job(folder: Path, proc: subprocess.Popen, epoch: int = 0,
                      limit: float = 120, out: str = "snakemake.out") -> str:
    """The SLURM id of the train job, once it runs and has written checkpoint `epoch`."""
    checkpoint = folder / f"results/base/train/model_epoch_{epoch:03d}.pth"
    deadline = time.monotonic() + limit
    while not checkpoint.exists():
        assert proc.poll() is None, (folder / out).read_text()[-3000:]
        assert time.monotonic() < deadline, f"{checkpoint} never appeared"
        time.sleep(0.5)
    return re.findall(r"submitted with SLURM jobid (\d+)", (folder / out).read_text())[-1]


def wait_exit(proc: subprocess.Popen, limit: float) -> int:
    try:
        return proc.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise AssertionError(f"snakemake still running {limit:.0f} s later") from None


def job_state(job: str) -> str:
    out = subprocess.run(["sacct", "-n", "-X", "-P", "-j", job, "-o", "State"],
                         capture_output=True, text=True).stdout.split("\n")
    return [s for s in out if s][-1] if any(out) else ""


def wait_state(job: str, prefix: str, limit: float = 30) -> None:
    deadline = time.monotonic() + limit
    while not job_state(job).startswith(prefix):
        assert time.monotonic() < deadline, (job, job_state(job))
        time.sleep(1)


def test_scancel_fails_the_build_and_a_rerun_resumes(slurm_cluster, tmp_path,
                                                     cancel_leftovers):
    """sacct says `CANCELLED by 0`; snakemake-executor-plugin-slurm 2.8.0 matched states
    exactly and waited forever.  Now: the build fails at the plugin's next status check."""
    folder = fake_slurm_project(tmp_path / "p", slurm_cluster, epochs=30)
    proc = start_snakemake(folder, epoch_seconds=2)
    job = running_train_job(folder, proc)
    subprocess.run(["scancel", job], check=True)
    started = time.monotonic()
    rc = wait_exit(proc, 240)
    out = (folder / "snakemake.out").read_text()
    print(f"exit {rc} {time.monotonic() - started:.0f} s after scancel")
    assert rc != 0 and "SLURM status is: 'CANCELLED'" in out, out[-3000:]
    assert not list((folder / ".snakemake/locks").glob("*"))
    log = (folder / "results/base/logs/train.log").read_text()
    assert "interrupted by SIGTERM" in log, log[-2000:]  # scancel's signal, not a TAO failure
    # the rerun resumes from the saved checkpoints (10 more epochs would not fit in 2 s each)
    proc = start_snakemake(folder, epoch_seconds=0)
    assert wait_exit(proc, 300) == 0, (folder / "snakemake.out").read_text()[-3000:]
    log = (folder / "results/base/logs/train.log").read_text()
    assert "resuming: checkpoints up to epoch" in log, log[-2000:]


SLOW_SACCT = """#!/bin/sh
# sacct as on a busy slurmdbd: a status query (the executor's) takes seconds
case "$*" in
  *JobIdRaw,State*) echo "$(date +%s.%N)" >> "{marker}"; sleep {seconds} ;;
esac
exec {sacct} "$@"
"""


def slow_sacct(folder: Path, seconds: float) -> dict[str, str]:
    """An environment whose `sacct` (first on PATH) sleeps before answering a status query,
    and notes when each query starts in `sacct-queries.txt`."""
    import shutil

    bin_dir = folder / "slow-bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "sacct"
    wrapper.write_text(SLOW_SACCT.format(marker=folder / "sacct-queries.txt", seconds=seconds,
                                         sacct=shutil.which("sacct")))
    wrapper.chmod(0o755)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


def inside_a_status_query(folder: Path, proc: subprocess.Popen, limit: float = 90) -> None:
    """Return once a new status query has started (and sleeps in the slow sacct)."""
    marker = folder / "sacct-queries.txt"
    seen = len(marker.read_text().splitlines()) if marker.exists() else 0
    deadline = time.monotonic() + limit
    while not marker.exists() or len(marker.read_text().splitlines()) <= seen:
        assert proc.poll() is None, (folder / "snakemake.out").read_text()[-3000:]
        assert time.monotonic() < deadline, "no status query started"
        time.sleep(0.2)
    time.sleep(1)  # well inside its sleep


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT", "SIGHUP"])
def test_stopping_snakemake_in_a_status_query_cancels_its_slurm_jobs(
        slurm_cluster, tmp_path, signame, cancel_leftovers):
    """SIGTERM (a scheduler's or `kill`), SIGINT (Ctrl-C) or SIGHUP (the terminal closed) to
    Snakemake on the login node while its executor waits on a slow `sacct`: the running
    SLURM job is cancelled, Snakemake exits, no lock is left behind.  Before: the executor
    library had emptied its active-job list for the query and the stop cancelled nothing
    (the training ran on); SIGHUP killed Snakemake, leaving the job and the lock."""
    folder = fake_slurm_project(tmp_path / "p", slurm_cluster, epochs=60)
    proc = start_snakemake(folder, 2, env=slow_sacct(folder, seconds=8))
    job = running_train_job(folder, proc)
    inside_a_status_query(folder, proc)
    os.kill(proc.pid, getattr(signal, signame))  # snakemake only
    rc = wait_exit(proc, 90)
    out = (folder / "snakemake.out").read_text()
    assert rc != 0, out[-3000:]
    wait_state(job, "CANCELLED")
    assert f"taomake: {signame}: scancel --name=" in out, out[-3000:]
    assert not list((folder / ".snakemake/locks").glob("*")), "a lock was left behind"
    nothing_left_of(folder)
    saved = list((folder / "results/base/train").glob("model_epoch_*.pth"))
    assert saved and not (folder / "results/base/train/run.json").exists()


def nothing_left_of(folder: Path, limit: float = 30) -> None:
    """No process of the folder's jobs is left: taomake, TAO, and the job's own Snakemake
    (the cluster tracks a job's processes in its cgroup: a reparented one goes too)."""
    from tests.helpers import processes_matching

    deadline = time.monotonic() + limit
    while left := processes_matching(str(folder)):
        assert time.monotonic() < deadline, left
        time.sleep(0.5)


def test_a_rerun_never_trains_beside_a_running_job(slurm_cluster, tmp_path,
                                                   cancel_leftovers):
    """Snakemake killed hard (kill -9: no handler runs) leaves its training job running and
    its lock behind; `--unlock` and a rerun submit a second training job for the same
    folder.  It must refuse at once, naming the first job and how to stop it, not train
    beside it (before: both trained into one folder and the build "succeeded")."""
    folder = fake_slurm_project(tmp_path / "p", slurm_cluster, epochs=40)
    proc = start_snakemake(folder, 2)
    first = running_train_job(folder, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert job_state(first) == "RUNNING"
    unlock = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"),
                             "--unlock"], cwd=folder, capture_output=True, text=True)
    assert unlock.returncode == 0, unlock.stderr[-2000:]
    proc = start_snakemake(folder, 2, out="rerun.out")
    rc = wait_exit(proc, 240)
    out = (folder / "rerun.out").read_text()
    log = (folder / "results/base/logs/train.log").read_text()
    assert rc != 0, out[-3000:]
    second = re.findall(r"submitted with SLURM jobid (\d+)", out)[-1]
    assert second != first
    refusal = f"results/base/train is in use by train (base) (SLURM job {first}"
    assert refusal in log and f"stop it with `scancel {first}`" in log, log[-3000:]
    assert job_state(first) == "RUNNING"  # untouched: the refusal stops nothing
    assert job_state(second) == "FAILED"
    # one trainer only: the second job never started TAO
    calls = (folder / "calls.txt").read_text().splitlines()
    assert len(calls) == 1, calls
