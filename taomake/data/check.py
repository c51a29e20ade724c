"""`taomake data check`: every split of an experiment checked the way TAO will read it
(compiler.coco.check_coco per split, on the staged files), plus what only the whole experiment
knows: enough training images for batch_size x GPUs (TAO asserts it, docs/tao-notes.md §5).

Runs as the `data_check` rule before training (its JSON report is an input of train) and on
the command line.  Errors fail it (exit 2) with the file and the record; warnings are printed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taomake.compiler.coco import CocoReport, Decoder, check_coco
from taomake.compiler.errors import DataError
from taomake.compiler.facts import (
    SPLIT_ROLES,
    dataset_sources,
    min_train_images,
    num_classes,
    splits,
)

from .summary import SplitSummary, findings, summarize_split


@dataclass
class SplitCheck:
    name: str  # "train[0]", "val", "test"
    annotations: str  # project.yaml value (path or URI)
    report: CocoReport


@dataclass
class DatasetCheck:
    experiment: str
    splits: list[SplitCheck] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # experiment-level
    classes: dict[int, str] = field(default_factory=dict)
    summaries: list[SplitSummary] = field(default_factory=list)  # what TAO will see
    train_size: tuple[int, int] = (640, 640)

    @property
    def ok(self) -> bool:
        return not self.errors and all(s.report.ok for s in self.splits) and not any(
            x.errors for x in self.summaries)

    def table(self) -> str:
        """Counts per class and split: annotations (images)."""
        names = [s.name for s in self.splits]
        rows = [["class", *names]]
        for cid, cname in sorted(self.classes.items()):
            rows.append([f"{cid} {cname}"] + [
                f"{s.report.annotations_per_category.get(cid, 0)} "
                f"({s.report.images_per_category.get(cid, 0)})" for s in self.splits])
        rows.append(["images"] + [str(s.report.summary.n_images if s.report.summary else "-")
                                  for s in self.splits])
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True))
                         .rstrip()
                         for r in rows)

    def render(self) -> str:
        parts = [f"experiment {self.experiment}: annotations (images) per class and split"]
        parts.append(self.table())
        for summary in self.summaries:
            parts += summary.lines(self.classes, self.train_size)
        for s in self.splits:
            findings = s.report.render()
            body = "\n".join(line for line in findings.splitlines()
                             if line.startswith(("error", "warning")))
            if body:
                parts.append(body)
        parts += [f"warning: {w}" for x in self.summaries for w in x.warnings]
        parts += [f"error: {e}" for e in self.errors + [e for x in self.summaries
                                                          for e in x.errors]]
        n_err = len(self.errors) + sum(len(s.report.errors) for s in self.splits) + sum(
            len(x.errors) for x in self.summaries)
        n_warn = sum(len(s.report.warnings) for s in self.splits) + sum(
            len(x.warnings) for x in self.summaries)
        parts.append(f"{'ok' if self.ok else 'FAILED'}: {n_err} errors, {n_warn} warnings")
        return "\n".join(parts)

    def as_json(self) -> dict[str, Any]:
        return {
            "experiment": self.experiment, "ok": self.ok, "errors": self.errors,
            "splits": [{
                "split": s.name, "annotations": s.annotations, "file": s.report.file,
                "images": s.report.summary.n_images if s.report.summary else None,
                "boxes": s.report.summary.n_annotations if s.report.summary else None,
                "annotations_per_class": {str(k): v for k, v in
                                          s.report.annotations_per_category.items()},
                "images_per_class": {str(k): v for k, v in
                                     s.report.images_per_category.items()},
                "errors": [str(f) for f in s.report.errors],
                "warnings": [str(f) for f in s.report.warnings],
            } for s in self.splits],
            "summary": [{"split": x.name, "images": x.images, "boxes": sum(x.boxes.values()),
                         "modes": dict(x.modes),
                         "formats": dict(x.formats), "without_boxes": x.empty,
                         "box_px_p5_p50_p95": x.percentiles(), "warnings": x.warnings,
                         "errors": x.errors} for x in self.summaries]}


ROLES = SPLIT_ROLES


def check_dataset(project: Any, experiment: str, root: Path, base: Any = None, *,
                  roles: tuple[str, ...] = ROLES, open_images: bool = True,
                  decoder: Decoder | None = None) -> DatasetCheck:
    """Check an experiment's splits of the given roles (train, val, test); staged sources
    must be staged already.  The build checks each role on its own, so a changed test split
    re-checks (and re-evaluates) without retraining."""
    ds = project.dataset
    classes = dict(ds.classes)
    result = DatasetCheck(experiment, classes=classes,
                          train_size=tuple(ds.augmentation.train_size))
    sources = dataset_sources(project, base)
    for s in splits(ds, roles):
        name, split = s.name, s.source
        ann, images = sources[f"{s.key}.annotations"], sources[f"{s.key}.images"]
        ann_path = root / ann.target(project.results)
        img_path = root / images.target(project.results)
        for source, path in ((ann, ann_path), (images, img_path)):
            if not path.exists():
                raise DataError(f"dataset.{name}: {source.uri} is not available at {path}"
                                + ("\n    fix: stage it first (`taomake data stage`)"
                                   if source.staged else ""))
        docs: list[dict] = []
        report = check_coco(ann_path, img_path, num_classes=num_classes(ds), declared=classes,
                            open_images=open_images, decoder=decoder, name=split.annotations,
                            with_doc=docs.append)
        result.splits.append(SplitCheck(name, split.annotations, report))
        if docs:  # the file parsed: what TAO will see of it
            summary = summarize_split(name, docs.pop(), img_path, result.train_size,
                                      open_images=open_images)
            findings(summary, classes, result.train_size, training=s.role == "train")
            result.summaries.append(summary)
    if "train" not in roles:
        return result
    need = min_train_images(project)
    have = sum(s.report.summary.n_images for s in result.splits
               if s.name.startswith("train") and s.report.summary)
    if have < need:
        result.errors.append(
            f"dataset.train has {have} images but one training step needs batch_size x GPUs = "
            f"{need} (TAO drops incomplete batches and asserts this)\n"
            "    fix: add images or lower dataset.batch_size")
    return result


def write_report(check: DatasetCheck, path: Path) -> None:
    from taomake.compiler.files import atomic_write

    atomic_write(path, json.dumps(check.as_json(), indent=1, sort_keys=True) + "\n")
