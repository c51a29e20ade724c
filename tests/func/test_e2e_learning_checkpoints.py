"""Other checkpoints from the demo model that learned (the shared build of
tests/learned_demo.py, on this file's own copy), with the real TAO RT-DETR on CPU: a student
distilled from it (TAO's distill action, the teacher not retrained), and another epoch
selected: evaluation, export and parity rerun on it, score far lower, and an ONNX of the best
epoch fails parity against it at the default tolerance."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import pytest

from tests.func.test_e2e_tao import job_counts
from tests.helpers import work_budget
from tests.learned_demo import build

pytestmark = [pytest.mark.tao, pytest.mark.slow]


DISTILL = """experiments:
  base: {}
  student:
    train.epochs: 2
    distill:
      teacher:
        checkpoint: 'experiment:base'
      bindings:
        - {student: srcs, teacher: srcs, criterion: IOU}
"""


def test_distill_a_student_from_the_demo_checkpoint(learned):
    """TAO's distill action for real on CPU: the student learns from the demo model (its
    teacher, not retrained) through an IOU feature binding for 2 epochs, then is evaluated
    and exported.  project.yaml is put back afterwards (the student leaves the DAG)."""
    folder, _ = learned
    project = folder / "project.yaml"
    text = project.read_text()
    project.write_text(text + DISTILL)
    try:
        out = build(folder, "results/student/evaluate/metrics.json",
                    "results/student/export/model.onnx")
    finally:
        project.write_text(text)
    counts = job_counts(out)
    assert counts.get("train", 0) == 0 and counts["distill"] == 1, counts  # teacher reused
    assert counts["evaluate"] == 1 and counts["export"] == 1, counts
    student = folder / "results/student"
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


def test_another_checkpoint_changes_the_number_and_fails_parity(learned, tmp_path):
    """Re-select epoch 0: evaluate, export and parity rerun on it (no training) and score far
    lower; the best epoch's ONNX checked against epoch 0's evaluation fails at the default
    tolerance."""
    folder, _ = learned
    base = folder / "results/base"
    best_onnx = tmp_path / "best.onnx"
    shutil.copy(base / "export/model.onnx", best_onnx)
    best = json.loads((base / "evaluate/metrics.json").read_text())
    project = folder / "project.yaml"
    project.write_text(project.read_text().replace("use_checkpoint: best", "use_checkpoint: 0"))
    out = build(folder)
    assert "rule train:" not in out
    first = json.loads((base / "evaluate/metrics.json").read_text())
    assert json.loads((base / "train/selection.json").read_text())["epoch"] == 0
    assert first["test_mAP50"] < best["test_mAP50"] - 0.2, (first, best)
    proc = subprocess.run([sys.executable, "-m", "taomake.cli", "parity", "--onnx",
                           str(best_onnx), "--out", str(tmp_path / "parity.json")],
                          cwd=folder, capture_output=True, text=True,
                          timeout=work_budget(tao_jobs=2))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "does not match the checkpoint" in proc.stderr and "tolerance 0.02" in proc.stderr
    assert not (tmp_path / "parity.json").exists()
