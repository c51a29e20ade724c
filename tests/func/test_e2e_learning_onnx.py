"""The exported demo model (the shared build of tests/learned_demo.py, on this file's own
copy), with the real TAO RT-DETR on CPU: the ONNX runs in ONNX Runtime, and deleting it
rebuilds the export only.  (Its own file, beside test_e2e_learning_quantize.py: the files
waiting for the shared build then run side by side.)"""

from __future__ import annotations

import pytest

from tests.func.test_e2e_tao import job_counts
from tests.learned_demo import build

pytestmark = [pytest.mark.tao, pytest.mark.slow]


def test_onnx_runs_in_onnxruntime(learned):
    import numpy as np
    import onnxruntime as ort

    folder, _ = learned
    session = ort.InferenceSession(str(folder / "results/base/export/model.onnx"),
                                   providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["inputs"]
    assert {o.name for o in session.get_outputs()} == {"pred_logits", "pred_boxes"}
    logits, boxes = session.run(["pred_logits", "pred_boxes"],
                                {"inputs": np.zeros((2, 3, 128, 128), np.float32)})
    assert logits.shape == (2, 30, 5) and boxes.shape == (2, 30, 4)


def test_deleting_onnx_rebuilds_export_only(learned):
    folder, _ = learned
    (folder / "results/base/export/model.onnx").unlink()
    assert job_counts(build(folder)) == {"export": 1, "onnx_parity": 1, "detections": 1,
                                         "report": 1}
