"""ONNX parity: run the exported model with ONNX Runtime on the test split, score it with the
same COCO evaluation TAO uses (pycocotools), and compare with the PyTorch evaluate result.

An export that silently differs from its checkpoint (a wrong opset, a different checkpoint
swapped in, broken post-processing in a deployment) shows up as an mAP gap; the job fails
when the gap exceeds `export.parity_tolerance`.  It also records ONNX Runtime latency (median,
p90) at the export size, batch 1, on this machine.

Pre- and post-processing follow TAO RT-DETR (docs/tao-notes.md §5): RGB, resize to eval size, 0..1,
no mean/std; sigmoid scores over (query, class), top `num_select`, cxcywh boxes scaled to the
original image size.
"""

from __future__ import annotations

import contextlib
import io
import json
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from taomake.compiler.files import atomic_write
from taomake.errors import RunError


@dataclass
class ParityResult:
    onnx_mAP: float
    onnx_mAP50: float
    pytorch_mAP: float
    pytorch_mAP50: float | None
    gap: float  # |onnx_mAP - pytorch_mAP|
    tolerance: float
    ok: bool
    images: int
    latency_ms_median: float
    latency_ms_p90: float
    input_size: list[int]
    provider: str
    per_class: dict[str, dict[str, Any]]  # class name -> id, AP, AP50, objects


def _preprocess(path: Path, size: tuple[int, int]):
    import numpy as np
    from PIL import Image

    with Image.open(path) as im:
        rgb = im.convert("RGB")
        w, h = rgb.size
        resized = rgb.resize((size[1], size[0]), Image.BILINEAR)
    x = np.asarray(resized, dtype=np.float32).transpose(2, 0, 1)[None] / 255.0
    return x, (w, h)


def _postprocess(logits, boxes, orig: tuple[int, int], num_select: int) -> list[dict[str, Any]]:
    import numpy as np

    scores = 1.0 / (1.0 + np.exp(-logits[0]))  # (Q, C)
    q, c = scores.shape
    flat = scores.reshape(-1)
    k = min(num_select, flat.size)
    top = np.argpartition(-flat, k - 1)[:k]
    top = top[np.argsort(-flat[top])]
    w, h = orig
    out = []
    for idx in top:
        qi, label = divmod(int(idx), c)
        cx, cy, bw, bh = boxes[0, qi]
        x0, y0 = (cx - bw / 2) * w, (cy - bh / 2) * h
        out.append({"category_id": label, "score": float(flat[idx]),
                    "bbox": [float(x0), float(y0), float(bw * w), float(bh * h)]})
    return out


def coco_map(annotations: Path, detections: list[dict[str, Any]]) -> tuple[float, float]:
    """(mAP@[.5:.95], mAP@.5) of `detections` against a COCO file, via pycocotools."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its tables
        gt = COCO(str(annotations))
        if not detections:
            return 0.0, 0.0
        dt = gt.loadRes(detections)
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[0]), float(ev.stats[1])


def check_parity(onnx: Path, annotations: Path, image_dir: Path, metrics: Path, *,
                 size: tuple[int, int], num_select: int, tolerance: float,
                 latency_runs: int = 30, names: dict[int, str] | None = None) -> ParityResult:
    import numpy as np
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(onnx), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own (pybind) exception types
        raise RunError(f"{onnx} cannot be loaded by ONNX Runtime: {exc}\n"
                       "    fix: re-export it (delete it and rebuild)") from exc
    input_name = session.get_inputs()[0].name
    doc = json.loads(annotations.read_text())
    detections: list[dict[str, Any]] = []
    for image in doc["images"]:
        x, orig = _preprocess(image_dir / image["file_name"], size)
        logits, boxes = session.run(["pred_logits", "pred_boxes"], {input_name: x})
        for det in _postprocess(logits, boxes, orig, num_select):
            detections.append({"image_id": image["id"], **det})
    mAP, mAP50 = coco_map(annotations, detections)
    from .detections import per_class_ap  # label index = category id (docs/tao-notes.md §5)

    per_class = per_class_ap(annotations, detections, names or {
        c["id"]: c["name"] for c in doc["categories"]})

    reference = json.loads(metrics.read_text())
    ref_map = float(reference["test_mAP"])
    ref_50 = reference.get("test_mAP50")

    dummy = np.random.default_rng(0).random((1, 3, *size), dtype=np.float32)
    for _ in range(3):  # warm-up
        session.run(None, {input_name: dummy})
    times = []
    for _ in range(latency_runs):
        t = time.perf_counter()
        session.run(None, {input_name: dummy})
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    gap = abs(mAP - ref_map)
    return ParityResult(
        onnx_mAP=round(mAP, 6), onnx_mAP50=round(mAP50, 6), pytorch_mAP=ref_map,
        pytorch_mAP50=ref_50, gap=round(gap, 6), tolerance=tolerance, ok=gap <= tolerance,
        images=len(doc["images"]), latency_ms_median=round(statistics.median(times), 3),
        latency_ms_p90=round(times[min(len(times) - 1, int(0.9 * len(times)))], 3),
        input_size=list(size), provider="CPUExecutionProvider", per_class=per_class)


def _class_names(root: Path, exp) -> dict[int, str] | None:
    """id -> the project's class name, for the classes of the compiled class map (None: no
    inference)."""
    if "inference" not in exp.specs:
        return None
    from .detections import read_classmap

    path = root / exp.specs["inference"].data["dataset"]["infer_data_sources"]["classmap"]
    shown = exp.names()
    return {i: shown.get(i, n) for n, i in read_classmap(path).items()} if path.is_file() \
        else None


def run_parity(root: Path, exp, out: Path, onnx: Path | None = None,
               tolerance: float | None = None) -> ParityResult:
    """The `onnx_parity` rule: paths from the experiment's evaluate and export specs.  `onnx`
    and `tolerance` (by hand) check another ONNX file, or with another tolerance."""
    ev = exp.specs["evaluate"].data
    ex = exp.specs["export"].data["export"]
    test = ev["dataset"]["test_data_sources"]
    lay = exp.layout
    onnx = onnx or root / lay.onnx
    result = check_parity(
        onnx, root / test["json_file"], root / test["image_dir"],
        root / lay.metrics("evaluate"),
        size=(ex["input_height"], ex["input_width"]),
        num_select=ev["model"].get("num_select", 300),
        tolerance=exp.parity_tolerance if tolerance is None else tolerance,
        names=_class_names(root, exp))
    verdict = (f"ONNX mAP {result.onnx_mAP:.4f} vs PyTorch {result.pytorch_mAP:.4f}: gap "
               f"{result.gap:.4f} (tolerance {result.tolerance}); latency median "
               f"{result.latency_ms_median:.1f} ms, p90 {result.latency_ms_p90:.1f} ms")
    print(verdict, flush=True)
    if not result.ok:
        out.unlink(missing_ok=True)
        raise RunError(f"{onnx} does not match the checkpoint {exp.name} evaluated: {verdict}\n"
                       "    fix: re-export (delete the ONNX and rebuild); if the gap is expected "
                       "(e.g. a quantized export), raise export.parity_tolerance")
    atomic_write(out, json.dumps(asdict(result), indent=1, sort_keys=True) + "\n")
    return result
