"""End to end with the real TAO RT-DETR (nvidia-tao-pytorch 7.3.0) on CPU: the demo pipeline,
no-op rebuilds, minimal rebuilds, interruption and resume."""

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

from tests.helpers import REPO, SMOKE_PROJECT, make_project, processes_matching, work_budget

pytestmark = [pytest.mark.tao, pytest.mark.slow]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--cores", "2"]


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


@pytest.fixture(scope="module")
def demo(tao_venv, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("e2e") / "demo"
    make_project(folder, project_text(tao_venv), copy_data=True)
    out, counts = snakemake(folder)
    assert counts == {"runtime_ready": 1, "data_check": 3, "train": 1, "select_checkpoint": 1,
                      "evaluate": 1, "export": 1, "onnx_parity": 1, "inference": 1,
                      "detections": 1, "report": 1}, out[-3000:]
    return folder


def test_demo_artifacts(demo):
    base = demo / "results/base"
    model = base / "train/model.pth"
    assert model.stat().st_size > 1_000_000
    selection = json.loads((base / "train/selection.json").read_text())
    assert (base / "train" / selection["source"]).stat().st_ino == model.stat().st_ino
    curve = (base / "train/curve.csv").read_text().splitlines()
    assert curve[0] == "epoch,train_loss,val_loss,val_mAP,val_mAP50" and len(curve) == 3
    assert all(row.split(",")[1] for row in curve[1:]), "train_loss per epoch"
    metrics = json.loads((base / "evaluate/metrics.json").read_text())
    assert isinstance(metrics["test_mAP"], float) and isinstance(metrics["test_mAP50"], float)
    labels = sorted((base / "inference/labels").glob("*.txt"))
    assert [p.stem for p in labels] == sorted(p.stem for p in (demo / "data/shapes/infer/images")
                                               .glob("*.jpg"))
    for action, message in (("train", "Train finished successfully."),
                            ("evaluate", "Evaluate finished successfully."),
                            ("export", "Export finished successfully."),
                            ("inference", "Inference finished successfully.")):
        last = (base / action / "status.json").read_text().strip().splitlines()[-1]
        assert json.loads(last)["message"] == message


def test_onnx_runs_in_onnxruntime(demo):
    import numpy as np
    import onnxruntime as ort

    session = ort.InferenceSession(str(demo / "results/base/export/model.onnx"),
                                   providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["inputs"]
    assert {o.name for o in session.get_outputs()} == {"pred_logits", "pred_boxes"}
    logits, boxes = session.run(["pred_logits", "pred_boxes"],
                                {"inputs": np.zeros((2, 3, 128, 128), np.float32)})
    assert logits.shape == (2, 30, 5) and boxes.shape == (2, 30, 4)


def test_second_run_executes_nothing(demo):
    out, counts = snakemake(demo)
    assert counts == {} and "Nothing to be done" in out


@pytest.mark.parametrize("old,new,expected", [
    ("# The tests' smoke project", "#  The tests' smoke project (edited comment)", {}),
    ("  conf_threshold: 0.1", "  conf_threshold: 0.05", {"inference": 1, "detections": 1}),
])
def test_minimal_rebuilds_with_real_tao(demo, old, new, expected):
    project = demo / "project.yaml"
    text = project.read_text()
    project.write_text(text.replace(old, new))
    try:
        _, counts = snakemake(demo)
        assert counts == expected
    finally:
        project.write_text(text)
    _, counts = snakemake(demo)  # back to the original value: that artifact is rebuilt only
    assert counts == expected


def test_deleting_onnx_rebuilds_export_only(demo):
    (demo / "results/base/export/model.onnx").unlink()
    _, counts = snakemake(demo)
    assert counts == {"export": 1, "onnx_parity": 1, "detections": 1, "report": 1}


DISTILL = """experiments:
  base: {}
  student:
    distill:
      teacher:
        checkpoint: 'experiment:base'
      bindings:
        - {student: srcs, teacher: srcs, criterion: IOU}
"""


def test_distill_a_student_from_the_demo_checkpoint(demo):
    """TAO's distill action for real on CPU: the student learns from the built demo model (its
    teacher, not retrained) through an IOU feature binding, then is evaluated and exported."""
    project = demo / "project.yaml"
    project.write_text(project.read_text() + DISTILL)
    out, counts = snakemake(demo, "results/student/evaluate/metrics.json",
                            "results/student/export/model.onnx")
    assert counts.get("train", 0) == 0 and counts["distill"] == 1, counts  # teacher reused
    assert counts["evaluate"] == 1 and counts["export"] == 1, counts
    student = demo / "results/student"
    spec = (student / "specs/distill.yaml").read_text()
    assert "pretrained_teacher_model_path: results/base/train/model.pth" in spec
    last = (student / "distill/status.json").read_text().strip().splitlines()[-1]
    assert "finished successfully" in json.loads(last)["message"], last
    assert (student / "distill/model.pth").stat().st_size > 1_000_000
    curve = (student / "distill/curve.csv").read_text().splitlines()
    assert len(curve) == 3  # header + 2 epochs
    metrics = json.loads((student / "evaluate/metrics.json").read_text())
    assert isinstance(metrics["test_mAP"], float)
    assert (student / "export/model.onnx").stat().st_size > 1_000_000
    assert re.search(r"distill \(student\): epoch 1 done \(2/2\)", out), out[-3000:]


def test_sigterm_mid_training_then_resume(tao_venv, tmp_path):
    folder = tmp_path / "interrupt"
    make_project(folder, project_text(tao_venv, epochs=3), copy_data=True)
    proc = subprocess.Popen([*SNAKEMAKE, "results/base/train/model.pth"], cwd=folder,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    first = folder / "results/base/train/model_epoch_000.pth"
    deadline = time.monotonic() + 600
    while not (first.exists() and first.stat().st_size > 0):
        assert proc.poll() is None and time.monotonic() < deadline, "training never saved"
        time.sleep(0.5)
    time.sleep(1.0)
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=work_budget()) != 0
    time.sleep(1.0)
    # what this test started (TAO runs with the project folder as cwd and its spec path in
    # argv); not every TAO process of the venv: another run may share the machine
    assert processes_matching(str(folder)) == []
    saved = sorted((folder / "results/base/train").glob("model_epoch_*.pth"))
    assert saved and len(saved) < 3

    out, counts = snakemake(folder, "results/base/train/model.pth")
    assert counts.get("train") == 1
    log = (folder / "results/base/logs/train.log").read_text()
    assert "resuming: checkpoints up to epoch" in log  # taomake kept the checkpoints
    assert "Setting resume checkpoint to" in log  # and TAO itself resumed from them
    assert (folder / "results/base/train/model_epoch_002.pth").exists()
    shutil.rmtree(folder / "results", ignore_errors=True)


def test_demo_with_train_and_val_data_in_s3(tao_venv, s3_env, s3_bucket, tmp_path):
    """TAO reads neither S3 nor archives: the build stages images.tar.gz + annotations.json
    from the bucket, and the real TAO trains and validates on the staged folders (the
    checkpoint is the target: the test split, evaluated later, is local)."""
    from tests.test_data_s3 import run, tar_gz

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
