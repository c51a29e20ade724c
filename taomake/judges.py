"""What each TAO action must leave behind, and the result files taomake writes from it.

TAO exits 0 after some failures (docs/tao-notes.md §0), so a run counts only if its status.json
ends well *and* its judge finds the expected files (non-empty).  One judge per kind of output,
looked up by `Action.judged_as` (compiler/actions.py: the quantized model's evaluate is judged
as an evaluate); tests/unit/test_judges.py checks every action has one.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from taomake.compiler.actions import Action
from taomake.compiler.files import atomic_write
from taomake.compiler.layout import IMAGE_SUFFIXES, Layout

from .handoff import checkpoint_files
from .tao_status import EpochRow, evaluation_metrics, read_status, training_curve


@dataclass(frozen=True)
class Produced:
    """One finished TAO run, as its judge sees it."""

    action: Action
    root: Path
    """The project folder (spec paths are relative to it)."""
    layout: Layout
    """The experiment's files (relative to `root`)."""
    records: list[dict[str, Any]]
    """This run's status.json records."""
    spec: dict[str, Any]
    rung_out: Path | None = None
    """A sweep rung's own record (train only): the train outputs stay untouched."""

    @property
    def out_dir(self) -> Path:
        """Where TAO wrote (results/<exp>/<action folder>)."""
        return self.root / self.layout.folder(self.action.name)

    def at(self, rel: str) -> Path:
        return self.root / rel


def _nonempty(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 0


def images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) \
        if folder.is_dir() else []


def write_curve(rows: list[EpochRow], path: Path) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(EpochRow.FIELDS)
    for row in rows:
        writer.writerow(["" if v is None else v for v in (getattr(row, f) for f in
                                                          EpochRow.FIELDS)])
    atomic_write(path, buf.getvalue())


def judge_training(run: Produced) -> list[str]:
    """train/distill: non-empty epoch checkpoints; writes curve.csv and run.json (or the
    rung record)."""
    lay, name = run.layout, run.action.name
    saved = sorted(checkpoint_files(run.out_dir))
    if not saved or not all(_nonempty(p) for p in saved):
        return [f"no non-empty model_epoch_*.pth in {run.out_dir}"]
    curve = training_curve(read_status(run.at(lay.status(name))))
    epochs = run.spec["train"]["num_epochs"]
    if run.rung_out is not None:
        atomic_write(run.rung_out, json.dumps({
            "epochs": epochs,
            "curve": [{f: getattr(row, f) for f in EpochRow.FIELDS} for row in curve],
        }, indent=1, sort_keys=True) + "\n")
        return []
    write_curve(curve, run.at(lay.curve(name)))
    atomic_write(run.at(lay.run_record(name)), json.dumps({
        "epochs": epochs,
        "checkpoints": {p.name: p.stat().st_size for p in saved},
        "curve_rows": len(curve),
    }, indent=2, sort_keys=True) + "\n")
    return []


def judge_evaluation(run: Produced) -> list[str]:
    """evaluate (PyTorch: the status.json KPIs; TensorRT: results.json); writes metrics.json."""
    if run.action.flavor == "pytorch":
        metrics = evaluation_metrics(run.records)
    else:
        results = run.at(run.layout.trt_results(run.action.name))
        metrics = json.loads(results.read_text()) if _nonempty(results) else {}
        metrics = {"test_mAP": metrics.get("AP"), "test_mAP50": metrics.get("AP50"),
                   **metrics} if metrics else {}
    if metrics.get("test_mAP") is None:
        return ["no test_mAP in the evaluation results"]
    atomic_write(run.at(run.layout.metrics(run.action.name)),
                 json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    return []


def _file_named_by(section: str, key: str) -> Callable[[Produced], list[str]]:
    def judge(run: Produced) -> list[str]:
        path = run.spec[section][key]
        return [] if _nonempty(run.root / path) else [f"{path} is missing or empty"]

    judge.__doc__ = f"the non-empty file the spec names at {section}.{key}"
    return judge


def judge_quantize(run: Produced) -> list[str]:
    """quantize: the backend's quantized model (docs/tao-notes.md §7)."""
    produced = run.at(run.layout.quantized(run.spec["quantize"]["backend"]))
    return [] if _nonempty(produced) else [f"{produced} is missing or empty"]


def judge_inference(run: Produced) -> list[str]:
    """inference: a label file per input image; writes summary.json (detections per class)."""
    dirs = run.spec["dataset"]["infer_data_sources"]["image_dir"]
    images = [p for d in dirs for p in images_in(run.root / d)]
    labels = run.at(run.layout.labels(run.action.name))
    label_of = {p: run.at(run.layout.label_file(run.action.name, p.stem)) for p in images}
    missing = [p.name for p in images if not label_of[p].is_file()]
    if not images or missing:
        return [f"no label file for {len(missing)} of {len(images)} images in {labels}"]
    per_class: dict[str, int] = {}
    for p in images:
        for line in label_of[p].read_text().splitlines():
            if line.strip():
                cls = line.split(" ")[0]
                per_class[cls] = per_class.get(cls, 0) + 1
    atomic_write(run.at(run.layout.inference_summary(run.action.name)), json.dumps(
        {"images": len(images), "detections": sum(per_class.values()),
         "detections_per_class": per_class}, indent=2, sort_keys=True) + "\n")
    return []


JUDGES: dict[str, Callable[[Produced], list[str]]] = {
    "training": judge_training,
    "evaluate": judge_evaluation,
    "inference": judge_inference,
    "export": _file_named_by("export", "onnx_file"),
    "quantize": judge_quantize,
    "gen_trt_engine": _file_named_by("gen_trt_engine", "trt_engine"),
}


def judge(run: Produced) -> list[str]:
    """The problems with what `run` produced (empty: it is good); writes taomake's result
    files of a good run."""
    return JUDGES[run.action.judged_as](run)
