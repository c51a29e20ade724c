"""The quantized demo model (the shared build of tests/learned_demo.py, on this file's own
copy), with the real TAO RT-DETR on CPU: torchao int8 weight-only and modelopt static int8
quantization, each quantized checkpoint evaluated, run on the test images (and exported) and
reported beside the float one, nothing retrained."""

from __future__ import annotations

import json
import re

import pytest

from tests.learned_demo import build

pytestmark = [pytest.mark.tao, pytest.mark.slow]


def test_quantized_model_is_evaluated_exported_and_reported_beside_the_float_one(learned):
    """quantize (torchao int8 weight-only PTQ of the selected checkpoint, real TAO on CPU),
    then the quantized checkpoint evaluated, run on the test images and exported with
    `is_quantized: true` and the same `quantize:` section; nothing retrains; its mAP sits
    next to the float model's in the report."""
    folder, _ = learned
    base = folder / "results/base"
    project = folder / "project.yaml"
    project.write_text(project.read_text() + "\nquantize:\n  backend: torchao\n"
                       "  mode: weight_only_ptq\n  layers:\n"
                       "    - {module: Linear, weights: int8}\n")
    out = build(folder)
    counts = {m: out.count(f"rule {m}:") for m in ("train", "evaluate", "export", "quantize",
                                                   "quantized_evaluate", "quantized_export",
                                                   "quantized_inference")}
    assert counts == {"train": 0, "evaluate": 0, "export": 0, "quantize": 1,
                      "quantized_evaluate": 1, "quantized_export": 1,
                      "quantized_inference": 1}, counts
    float_ = json.loads((base / "evaluate/metrics.json").read_text())
    quantized = json.loads((base / "quantized/evaluate/metrics.json").read_text())
    print("float", float_, "quantized", quantized)
    # int8 weights cost little on this model; a broken load (wrong graph) would score ~0
    assert quantized["test_mAP50"] > 0.5, quantized
    assert abs(quantized["test_mAP50"] - float_["test_mAP50"]) < 0.1, (quantized, float_)
    spec = (base / "specs/quantized_evaluate.yaml").read_text()
    assert "is_quantized: true" in spec and "quantized_model_torchao.pth" in spec
    assert (base / "quantized/export/model.onnx").stat().st_size > 1_000_000
    assert json.loads((base / "quantized/inference/summary.json").read_text())["detections"] > 0
    md = (folder / "results/report/summary.md").read_text()
    assert "quantized mAP50" in md and f"{quantized['test_mAP50']:.4f}" in md, md


def test_modelopt_static_quantization_runs_on_cpu(learned):
    """modelopt.pytorch static PTQ (int8 weights and activations, calibrated on the val
    images through their COCO file) of the same checkpoint, then its evaluation and
    inference: real TAO with nvidia-modelopt on CPU.  (Its export is left out: TAO 7.3.0
    cannot load the quantizer state into the export model; `taomake validate` says so.)"""
    folder, _ = learned
    base = folder / "results/base"
    project = folder / "project.yaml"
    text = project.read_text()
    text = text.replace("  backend: torchao\n  mode: weight_only_ptq\n",
                        "  backend: modelopt.pytorch\n  mode: static_ptq\n")
    text = text.replace("    - {module: Linear, weights: int8}\n",
                        "    - {module: Linear, weights: int8, activations: int8}\n")
    demo = re.search(r"  val:\n    images: (\S+)\n    annotations: (\S+)\n", text)
    text = text.replace("  batch_size:", f"  calibration:\n    images: {demo[1]}\n"
                        f"    annotations: {demo[2]}\n  batch_size:", 1)
    project.write_text(text)
    out = build(folder)
    assert "rule train:" not in out and "rule quantize:" in out, out[-3000:]
    float_ = json.loads((base / "evaluate/metrics.json").read_text())
    quantized = json.loads((base / "quantized/evaluate/metrics.json").read_text())
    print("float", float_, "modelopt int8", quantized)
    assert (base / "quantize/quantized_model_modelopt.pytorch.pth").stat().st_size > 1_000_000
    assert quantized["test_mAP50"] > 0.3, quantized  # calibrated int8: a working model
    assert json.loads((base / "quantized/inference/summary.json").read_text())["detections"] > 0
