"""End to end with the real TAO RT-DETR (nvidia-tao-pytorch 7.3.0) on CPU, on the tests' smoke
project (2 epochs on data/shapes): interruption and resume, and training on data staged from
S3.  The helpers here (the smoke project, a build, its job counts) serve the other real-TAO
tests; the demo pipeline itself, its no-op and minimal rebuilds and distillation are tested on
the learned demo build (tests/func/test_e2e_learning.py)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import (
    ONE_THREAD,
    REPO,
    SMOKE_PROJECT,
    make_project,
    processes_matching,
    work_budget,
)

pytestmark = [pytest.mark.tao, pytest.mark.slow]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), *ONE_THREAD,
             "--cores", "2"]


def project_text(venv: Path, epochs: int = 2) -> str:
    text = SMOKE_PROJECT.read_text()
    text = text.replace("    kind: local", f"    kind: local\n    local: {{venv: {venv}}}")
    return text.replace("  epochs: 2", f"  epochs: {epochs}")


def snakemake(folder: Path, *args: str, check: bool = True, tao_jobs: int = 8,
              epochs: int = 6) -> tuple[str, dict[str, int]]:
    """A build of at most `tao_jobs` TAO jobs training `epochs` epochs in all (the default
    covers every build of these tests: a sweep's five trainings of two epochs at most)."""
    proc = subprocess.run([*SNAKEMAKE, *args], cwd=folder, capture_output=True, text=True,
                          timeout=work_budget(tao_jobs=tao_jobs, epochs=epochs))
    out = proc.stdout + proc.stderr
    if check:
        assert proc.returncode == 0, out[-4000:]
    return out, job_counts(out)


def job_counts(out: str) -> dict[str, int]:
    """The jobs snakemake ran, per rule, from its log: one 'rule X:' block per job (the 'Job
    stats' table printed at the start misses jobs a checkpoint adds later)."""
    counts: dict[str, int] = {}
    for m in re.finditer(r"^(?:local)?(?:rule|checkpoint) (\w+):\s*$", out, re.M):
        counts[m.group(1)] = counts.get(m.group(1), 0) + 1
    counts.pop("all", None)
    return counts


def test_sigterm_mid_training_then_resume_past_damaged_checkpoints(tao_venv, tmp_path):
    """SIGTERM to Snakemake once TAO has saved epoch 1 of 3; the newest checkpoint is then cut
    short (a node that died mid-write), and later another emptied: each rerun moves the
    damaged file aside, points TAO's latest link at the newest whole epoch, resumes from it
    and finishes.  (Before: taomake said "resuming up to epoch N" and TAO failed on the
    damaged file, "PytorchStreamReader failed reading zip archive" or an EOFError, on every
    rerun.)"""
    folder = tmp_path / "interrupt"
    make_project(folder, project_text(tao_venv, epochs=3), copy_data=True)
    proc = subprocess.Popen([*SNAKEMAKE, "results/base/train/model.pth"], cwd=folder,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    train = folder / "results/base/train"
    second = train / "model_epoch_001.pth"
    deadline = time.monotonic() + work_budget(tao_jobs=1, epochs=2)
    while not (second.exists() and second.stat().st_size > 0):
        assert proc.poll() is None and time.monotonic() < deadline, "training never saved"
        time.sleep(0.5)
    time.sleep(1.0)
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=work_budget()) != 0
    time.sleep(1.0)
    # what this test started (TAO runs with the project folder as cwd and its spec path in
    # argv); not every TAO process of the venv: another run may share the machine
    assert processes_matching(str(folder)) == []
    saved = sorted(p.name for p in train.glob("model_epoch_*.pth"))
    assert saved[:2] == ["model_epoch_000.pth", "model_epoch_001.pth"] and len(saved) < 4
    newest = train / saved[-1]
    with open(newest, "r+b") as fh:  # cut short, as by a node dying while TAO wrote it
        fh.truncate(newest.stat().st_size // 2)
    kept = len(saved) - 2  # the epoch TAO resumes from

    out, counts = snakemake(folder, "results/base/train/model.pth", tao_jobs=1, epochs=2)
    assert counts.get("train") == 1
    log = (folder / "results/base/logs/train.log").read_text()
    assert f"damaged checkpoint(s) {newest.name} moved to" in log, log[-3000:]
    assert f"training resumes from epoch {kept} (model_epoch_{kept:03d}.pth)" in log
    assert f"resuming: checkpoints up to epoch {kept}" in log  # taomake kept the whole ones
    assert "Setting resume checkpoint to" in log  # and TAO itself resumed from them
    assert (train / "model_epoch_002.pth").stat().st_size > 1_000_000
    [why] = list((train / ".damaged").glob("*/WHY.txt"))
    assert newest.name in why.read_text() and (why.parent / newest.name).exists()

    # the last checkpoint emptied and its job never finished (nothing after it was made):
    # the rerun trains epoch 2 again
    for output in ("curve.csv", "run.json", "model.pth", "selection.json"):
        (train / output).unlink()  # (model.pth first: a hard link of the checkpoint)
    (train / "model_epoch_002.pth").write_bytes(b"")
    out, counts = snakemake(folder, "results/base/train/model.pth", tao_jobs=1, epochs=1)
    log = (folder / "results/base/logs/train.log").read_text()
    assert "damaged checkpoint(s) model_epoch_002.pth moved to" in log, log[-3000:]
    assert "empty (0 bytes)" in "".join(p.read_text() for p in train.glob(".damaged/*/WHY.txt"))
    assert "training resumes from epoch 1 (model_epoch_001.pth)" in log
    assert (train / "model_epoch_002.pth").stat().st_size > 1_000_000
    last = (train / "status.json").read_text().strip().splitlines()[-1]
    assert json.loads(last)["message"] == "Train finished successfully."
    shutil.rmtree(folder / "results", ignore_errors=True)


def test_demo_with_train_and_val_data_in_s3(tao_venv, s3_env, s3_bucket, tmp_path):
    """TAO reads neither S3 nor archives: the build stages images.tar.gz + annotations.json
    from the bucket, and the real TAO trains and validates on the staged folders (the
    checkpoint is the target: the test split, evaluated later, is local)."""
    from tests.func.test_data_s3 import run, tar_gz

    bucket, client = s3_bucket
    text = project_text(tao_venv)
    for split in ("train", "val"):
        base = REPO / "data/shapes" / split
        client.put_object(Bucket=bucket, Key=f"shapes/{split}/images.tar.gz",
                          Body=tar_gz(base / "images"))
        client.put_object(Bucket=bucket, Key=f"shapes/{split}/annotations.json",
                          Body=(base / "annotations.json").read_bytes())
        text = text.replace(f"images: data/shapes/{split}/images",
                            f"images: s3://{bucket}/shapes/{split}/images.tar.gz")
        text = text.replace(f"annotations: data/shapes/{split}/annotations.json",
                            f"annotations: s3://{bucket}/shapes/{split}/annotations.json")
    assert text.count("s3://") == 4
    folder = tmp_path / "s3demo"
    make_project(folder, text, copy_data=True)
    target = "results/base/train/model.pth"
    proc = run(folder, s3_env, target, timeout=work_budget(tao_jobs=1, epochs=2))
    counts = job_counts(proc.stderr)
    assert counts["stage_data"] == 4 and counts["train"] == 1, counts
    train_spec = (folder / "results/base/specs/train.yaml").read_text()
    assert "results/_data/" in train_spec and "s3://" not in train_spec
    last = (folder / "results/base/train/status.json").read_text().strip().splitlines()[-1]
    assert json.loads(last)["message"] == "Train finished successfully."
    curve = (folder / "results/base/train/curve.csv").read_text().splitlines()
    assert len(curve) == 3 and all(row.split(",")[3] for row in curve[1:]), curve  # val_mAP
    proc = run(folder, s3_env, target)
    assert "Nothing to be done" in proc.stderr
