"""Long runs and the people around them, on one machine (the fake TAO; the SLURM side is
tests/func/test_slurm_faults.py, Docker's tests/func/test_docker_runner.py): an edit made
while a build trains is never lost, a reverted edit rebuilds nothing, one trainer per folder,
a killed `taomake run` leaves no trainer behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.func.test_build import SNAKEMAKE, calls, edit, fake_project_text, snakemake
from tests.helpers import make_project, processes_matching

pytestmark = pytest.mark.slow

SLOW = {"FAKE_TAO_EPOCH_SECONDS": "1.5"}


def start(folder: Path, *targets: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen([*SNAKEMAKE, *targets], cwd=folder,
                            env={**os.environ, "FAKE_TAO_CALLS": str(folder / "calls.txt"),
                                 **(env or {})}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def training(tmp_path: Path, epochs: int = 6) -> tuple[Path, subprocess.Popen]:
    """A whole build started in the background, once its training has saved epoch 0."""
    folder = tmp_path / "proj"
    make_project(folder, fake_project_text().replace("  epochs: 2", f"  epochs: {epochs}"))
    proc = start(folder, env=SLOW)
    wait_for(folder / "results/base/train/model_epoch_000.pth", proc)
    return folder, proc


def wait_for(path: Path, proc: subprocess.Popen | None = None, limit: float = 60) -> None:
    deadline = time.monotonic() + limit
    while not path.exists():
        assert proc is None or proc.poll() is None, proc.stdout.read()[-3000:]
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.1)


def finish(proc: subprocess.Popen) -> str:
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out[-3000:]
    return out


def taomake(folder: Path, *args: str) -> str:
    return subprocess.run([sys.executable, "-m", "taomake.cli", *args], cwd=folder,
                          capture_output=True, text=True, check=True).stdout


def assert_train_is_stale(folder: Path) -> None:
    """snakemake, status and explain all say the training must run again, and why."""
    dry = snakemake(folder, "-n").stdout
    assert "rule train:" in dry, dry[-3000:]
    status = taomake(folder, "status")
    row = next(x for x in status.splitlines() if "results/base/train/model.pth" in x)
    assert "stale (spec changed)" in row, status
    why = taomake(folder, "explain", "results/base/train/model.pth")
    assert "train.optim.lr: 0.0002 -> 0.0005  <- project.yaml:" in why, why


@pytest.mark.parametrize("then", ["dry run", "refused build"])
def test_an_edit_made_while_training_is_not_lost(tmp_path, then):
    """project.yaml edited while the build trains, then `snakemake -n` (or a second build,
    which Snakemake's lock refuses): the spec is rewritten while the old one trains.  When
    the build ends, its model was trained with the old lr: stale, though its files are newer
    than the rewritten spec (before: snakemake, status and explain said up to date)."""
    folder, proc = training(tmp_path)
    spec = folder / "results/base/specs/train.yaml"
    planned = spec.read_text()
    edit(folder, "  lr: 0.0002", "  lr: 0.0005")
    if then == "dry run":
        said = snakemake(folder, "-n").stderr
    else:
        refused = snakemake(folder, check=False)
        assert refused.returncode != 0 and "LockException" in refused.stderr, refused.stderr
        said = refused.stderr
    assert "taomake: a build is running in this folder" in said, said[-3000:]
    assert spec.read_text() == planned  # what the running build is judged by stays
    out = finish(proc)
    assert "project.yaml changed while this job ran" in out, out[-3000:]
    assert_train_is_stale(folder)
    calls(folder)
    snakemake(folder, env={"FAKE_TAO_EPOCH_SECONDS": "0"})  # the next build retrains
    assert "train" in {c[0] for c in calls(folder)}
    assert "Nothing to be done" in snakemake(folder, "-n").stdout


def test_an_edit_made_while_training_then_reverted_rebuilds_nothing(tmp_path):
    """Edited while the build trains (and written out by a dry run), reverted after the build
    ended: the model was trained with what project.yaml says again, so nothing reruns
    (before: the dry run had rewritten the spec mid-build, Snakemake recorded the edited spec
    as the one the training was built from, and the revert reran everything for nothing)."""
    folder, proc = training(tmp_path, epochs=5)
    edit(folder, "  lr: 0.0002", "  lr: 0.0005")
    snakemake(folder, "-n")
    finish(proc)
    edit(folder, "  lr: 0.0005", "  lr: 0.0002")
    assert "Nothing to be done" in snakemake(folder, "-n").stdout
    assert "stale" not in taomake(folder, "status")


def test_a_reverted_edit_rebuilds_nothing_without_snakemakes_records(tmp_path):
    """An edit written out, then reverted and written out again, in a build folder without
    Snakemake's records (`.snakemake/metadata` removed, as in a copy of the results): the
    spec is what the artifacts were built from, so it keeps that build's time and nothing
    reruns (before: the rewritten spec was newer than every output and all of it reran)."""
    import shutil

    folder = tmp_path / "proj"
    make_project(folder, fake_project_text())
    snakemake(folder)
    calls(folder)
    shutil.rmtree(folder / ".snakemake/metadata")
    edit(folder, "  lr: 0.0002", "  lr: 0.0005")
    assert "rule train:" in snakemake(folder, "-n").stdout
    edit(folder, "  lr: 0.0005", "  lr: 0.0002")
    assert "rule train:" not in snakemake(folder, "-n").stdout
    assert "stale" not in taomake(folder, "status")
    snakemake(folder)
    assert [c for c in calls(folder) if c[0] == "train"] == []


def test_a_second_job_for_the_same_folder_refuses(tmp_path):
    """`taomake run train` while another trains in the same folder (a rerun beside a build
    whose Snakemake was killed): refused at once with exit 1, naming the holder and the
    command that stops it; the first training is untouched and finishes."""
    folder, proc = training(tmp_path, epochs=5)
    env = {**os.environ, **SLOW, "FAKE_TAO_CALLS": str(folder / "calls.txt")}
    second = subprocess.run([sys.executable, "-m", "taomake.cli", "run", "train", "-e", "base",
                             "--log", str(folder / "second.log")], cwd=folder, env=env,
                            capture_output=True, text=True, timeout=120)
    assert second.returncode == 1, second.stderr
    assert "error: results/base/train is in use by train (base) (host " in second.stderr
    assert "stop it with `kill " in second.stderr, second.stderr
    assert "Traceback" not in second.stderr
    finish(proc)
    assert [c[0] for c in calls(folder)].count("train") == 1  # one trainer only
    record = (folder / "results/base/train/.lease.json").read_text()
    assert '"released": true' in record, record


def test_killing_taomake_run_hard_stops_its_trainer(tmp_path):
    """kill -9 of `taomake run` (what the OOM killer does): its TAO is told to stop by the
    kernel and keeps the folder's lease until it has; the rerun resumes, alone."""
    folder, proc = training(tmp_path, epochs=8)
    [runner] = [int(line.split(":")[0]) for line in processes_matching(str(folder))
                if " run train " in line and "rtdetr" not in line]
    os.kill(runner, signal.SIGKILL)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0
    deadline = time.monotonic() + 30
    while [p for p in processes_matching(str(folder)) if "rtdetr" in p]:
        assert time.monotonic() < deadline, processes_matching(str(folder))
        time.sleep(0.2)
    calls(folder)
    snakemake(folder, "results/base/train/model.pth", env={"FAKE_TAO_EPOCH_SECONDS": "0"})
    log = (folder / "results/base/logs/train.log").read_text()
    assert "took over the lease of results/base/train from train (base)" in log, log[-3000:]
    assert "resuming: checkpoints up to epoch" in log, log[-3000:]


def test_a_closed_terminal_stops_the_build_and_releases_its_lock(tmp_path):
    """SIGHUP (the terminal closed) to Snakemake on a workstation: its jobs are stopped and
    Snakemake ends its own way, leaving no lock (before: SIGHUP killed Snakemake outright,
    its lock stayed and the next build needed `--unlock`)."""
    folder, proc = training(tmp_path, epochs=8)
    os.kill(proc.pid, signal.SIGHUP)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert not list((folder / ".snakemake/locks").glob("*")), out[-3000:]
    deadline = time.monotonic() + 30
    while processes_matching(str(folder)):
        assert time.monotonic() < deadline, processes_matching(str(folder))
        time.sleep(0.2)
    log = (folder / "results/base/logs/train.log").read_text()
    assert "interrupted by SIGTERM" in log, log[-2000:]
    snakemake(folder, "results/base/train/model.pth", env={"FAKE_TAO_EPOCH_SECONDS": "0"})
