"""ONNX parity logic on synthetic detectors with known answers: a model that finds the one box
of a one-image test split (mAP 1) passes against a PyTorch mAP of 1; a model "from another
checkpoint" that looks elsewhere fails with a message naming the gap.  (The demo's 2-epoch
model scores 0 in both runtimes, so only a detector that scores can show a gap.)"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image
from taomake.compiler.layout import Layout

from taomake.errors import RunError
from taomake.parity import check_parity, run_parity

SIZE = 64


def detector(path: Path, box: tuple[float, float, float, float]) -> Path:
    """Constant detector: query 0 says class 1 at normalised cxcywh `box`."""
    logits = np.full((1, 3, 2), -10.0, np.float32)
    logits[0, 0, 1] = 10.0
    boxes = np.full((1, 3, 4), 0.1, np.float32)
    boxes[0, 0] = box
    image = helper.make_tensor_value_info("inputs", TensorProto.FLOAT, [1, 3, SIZE, SIZE])
    # outputs = constant + 0 * mean(input): keeps the input part of the graph
    nodes = [helper.make_node("ReduceMean", ["inputs"], ["m"], keepdims=0),
             helper.make_node("Mul", ["m", "zero"], ["z"])]
    outputs = []
    for name, value in (("pred_logits", logits), ("pred_boxes", boxes)):
        nodes.append(helper.make_node("Add", [f"{name}_c", "z"], [name]))
        outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, value.shape))
    inits = [numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
             numpy_helper.from_array(logits, "pred_logits_c"),
             numpy_helper.from_array(boxes, "pred_boxes_c")]
    graph = helper.make_graph(nodes, "detector", [image], outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


@pytest.fixture
def split(tmp_path: Path) -> tuple[Path, Path]:
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (SIZE, SIZE)).save(images / "a.png")
    ann = tmp_path / "annotations.json"
    ann.write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.png", "width": SIZE, "height": SIZE}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [16, 16, 32, 32],
                         "area": 1024, "iscrowd": 0}],
        "categories": [{"id": 1, "name": "thing"}]}))
    return ann, images


def metrics(tmp_path: Path, value: float) -> Path:
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps({"test_mAP": value, "test_mAP50": value}))
    return path


def test_matching_export_passes(tmp_path, split):
    good = detector(tmp_path / "good.onnx", (0.5, 0.5, 0.5, 0.5))
    r = check_parity(good, *split, metrics(tmp_path, 1.0), size=(SIZE, SIZE), num_select=3,
                     tolerance=0.02, latency_runs=5)
    assert r.onnx_mAP == pytest.approx(1.0) and r.ok and r.gap < 1e-6
    assert 0 < r.latency_ms_median <= r.latency_ms_p90


def test_onnx_from_another_checkpoint_fails_with_the_gap(tmp_path, split):
    other = detector(tmp_path / "model.onnx", (0.15, 0.15, 0.1, 0.1))  # looks elsewhere
    ann, images = split
    lay = Layout("results", "base")
    (tmp_path / "results/base/export").mkdir(parents=True)
    (tmp_path / "results/base/evaluate").mkdir(parents=True)
    other.rename(tmp_path / lay.onnx)
    metrics(tmp_path / "results/base/evaluate", 1.0)
    exp = SimpleNamespace(
        name="base", layout=lay, parity_tolerance=0.02,
        specs={"evaluate": SimpleNamespace(data={
                   "dataset": {"test_data_sources": {"json_file": str(ann),
                                                     "image_dir": str(images)}},
                   "model": {"num_select": 3}}),
               "export": SimpleNamespace(data={"export": {"input_height": SIZE,
                                                          "input_width": SIZE}})})
    out = tmp_path / "parity.json"
    with pytest.raises(RunError) as err:
        run_parity(tmp_path, exp, out)
    assert "does not match the checkpoint base evaluated" in str(err.value)
    assert "gap 1.0000" in str(err.value) and "parity_tolerance" in str(err.value)
    assert not out.exists()


def test_unloadable_onnx_is_a_clear_error(tmp_path, split):
    bad = tmp_path / "bad.onnx"
    bad.write_text("not a model")
    with pytest.raises(RunError, match="cannot be loaded by ONNX Runtime"):
        check_parity(bad, *split, metrics(tmp_path, 0.0), size=(SIZE, SIZE), num_select=3,
                     tolerance=0.02)
