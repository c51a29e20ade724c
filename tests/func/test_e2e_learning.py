"""The demo pipeline with the real TAO RT-DETR on CPU (the root project.yaml on the bundled demo
data, as `make demo` builds it), and what only a learning model can prove: the demo learns;
class ids with gaps keep their names through evaluation, ONNX Runtime and inference labels;
ONNX parity compares real numbers; the selected epoch is the best validation epoch.  On a copy
of the build: a second run does nothing (the copy is up to date), an edit rebuilds only what
depends on it.

The build is shared with tests/func/test_e2e_learning_checkpoints.py (a student distilled from the
demo model; another checkpoint selected), tests/func/test_e2e_learning_onnx.py (the ONNX in ONNX
Runtime, a deleted ONNX rebuilt alone) and tests/func/test_e2e_learning_quantize.py (torchao and
modelopt quantization): tests/learned_demo.py builds it once per session (30 epochs, minutes)
and each file works on its own copy, so the four run side by side.  A TAO job costs ~20
CPU-seconds of start-up before it does anything, so a second pipeline for the smoke checks
would cost minutes."""

from __future__ import annotations

import csv
import json
import re

import pytest

from tests.func.test_e2e_tao import job_counts
from tests.helpers import REPO
from tests.learned_demo import CLASSES, build

pytestmark = [pytest.mark.tao, pytest.mark.slow]


def test_the_demo_learns(learned):
    folder, out = learned
    base = folder / "results/base"
    metrics = json.loads((base / "evaluate/metrics.json").read_text())
    assert metrics["test_mAP50"] >= 0.5, metrics
    rows = list(csv.DictReader((base / "train/curve.csv").open()))
    val = [float(r["val_mAP"]) for r in rows]
    assert len(val) == int(re.search(r"epochs: (\d+)", (REPO / "project.yaml").read_text())[1])
    assert max(val[-5:]) > val[0] + 0.3, val  # a rising validation curve
    # progress lines with validation scores and an ETA while it trained
    assert re.search(r"train \(base\): epoch 3 done \(4/\d+\), train_loss [\d.]+, val_mAP "
                     r"[\d.]+, val_mAP50 [\d.]+, ETA \d", out), out[-3000:]


def test_best_epoch_is_selected(learned):
    folder, _ = learned
    base = folder / "results/base/train"
    rows = list(csv.DictReader((base / "curve.csv").open()))
    best = max(range(len(rows)), key=lambda i: float(rows[i]["val_mAP"]))
    selection = json.loads((base / "selection.json").read_text())
    assert selection["policy"] == "best" and selection["epoch"] == int(rows[best]["epoch"])
    assert selection["value"] == pytest.approx(float(rows[best]["val_mAP"]))


def test_class_names_hold_through_evaluation_onnx_and_inference(learned):
    folder, _ = learned
    base = folder / "results/base"
    table = json.loads((base / "detections/per_class.json").read_text())
    assert {n: c["id"] for n, c in table["classes"].items()} == CLASSES
    for side in ("pytorch", "onnx"):
        scores = table[side]
        assert set(scores) == set(CLASSES), (side, scores)
        for name, c in scores.items():
            # each class is found where the ground truth of *that* class is: a shuffled or
            # shifted class map scores near 0 here even when the overall mAP looks fine
            assert c["id"] == CLASSES[name] and c["AP50"] > 0.2, (side, name, c)
    names = {line.split(" ")[0] for p in (base / "inference/labels").glob("*.txt")
             for line in p.read_text().splitlines()}
    assert names and names <= set(CLASSES), names
    summary = json.loads((base / "inference/summary.json").read_text())
    assert set(summary["detections_per_class"]) <= set(CLASSES) and summary["detections"] > 0
    grid = folder / "results/report/test_grid_base.png"
    assert grid.stat().st_size > 20_000 and grid.read_bytes()[:4] == b"\x89PNG"
    md = (base / "detections/per_class.md").read_text()
    assert all(f"| {n} | {i} |" in md for n, i in CLASSES.items())


def test_onnx_parity_compares_real_numbers(learned):
    folder, _ = learned
    parity = json.loads((folder / "results/base/export/parity.json").read_text())
    assert parity["ok"] and parity["pytorch_mAP"] > 0.2 and parity["onnx_mAP"] > 0.2, parity
    assert parity["gap"] <= parity["tolerance"] == 0.02


def test_demo_artifacts(learned):
    folder, out = learned
    assert job_counts(out) == {"runtime_ready": 1, "data_check": 3, "train": 1,
                               "select_checkpoint": 1, "evaluate": 1, "export": 1,
                               "onnx_parity": 1, "inference": 1, "detections": 1,
                               "report": 1}, out[-3000:]
    base = folder / "results/base"
    model = base / "train/model.pth"
    assert model.stat().st_size > 1_000_000
    selection = json.loads((base / "train/selection.json").read_text())
    assert (base / "train" / selection["source"]).stat().st_ino == model.stat().st_ino
    curve = (base / "train/curve.csv").read_text().splitlines()
    assert curve[0] == "epoch,train_loss,val_loss,val_mAP,val_mAP50"
    assert all(row.split(",")[1] for row in curve[1:]), "train_loss per epoch"
    labels = sorted((base / "inference/labels").glob("*.txt"))
    assert [p.stem for p in labels] == sorted(p.stem for p in (REPO / "data/demo/test/images")
                                               .glob("*.jpg"))
    for action, message in (("train", "Train finished successfully."),
                            ("evaluate", "Evaluate finished successfully."),
                            ("export", "Export finished successfully."),
                            ("inference", "Inference finished successfully.")):
        last = (base / action / "status.json").read_text().strip().splitlines()[-1]
        assert json.loads(last)["message"] == message


def test_second_run_executes_nothing(learned):
    out = build(learned[0])
    assert job_counts(out) == {} and "Nothing to be done" in out


@pytest.mark.parametrize("old,new,expected", [
    ("# taomake demo project:", "#  taomake demo project (edited comment):", {}),
    ("  conf_threshold: 0.3", "  conf_threshold: 0.25", {"inference": 1, "detections": 1}),
])
def test_minimal_rebuilds_with_real_tao(learned, old, new, expected):
    folder, _ = learned
    project = folder / "project.yaml"
    text = project.read_text()
    assert old in text
    project.write_text(text.replace(old, new))
    try:
        assert job_counts(build(folder)) == expected
    finally:
        project.write_text(text)
    # back to the original value: that artifact is rebuilt only
    assert job_counts(build(folder)) == expected
