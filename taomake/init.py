"""`taomake init`: a starter project.yaml with the classes read from a COCO file."""

from __future__ import annotations

import json
import os
from pathlib import Path

from taomake.compiler.coco import read_coco_summary
from taomake.compiler.errors import DataError, UsageError
from taomake.compiler.files import atomic_write

TEMPLATE = """\
# Starter project written by `taomake init` from {annotations}.
# Check it with `taomake validate`, then build with `snakemake --cores all`.
name: {name}

dataset:
  classes:                     # id -> name, read from the annotations' categories
{classes}
  train:
    - images: {images}
      annotations: {annotations}
  val:                         # TODO: point at a separate validation split
    images: {images}
    annotations: {annotations}
  batch_size: 4
  workers: 8
  augmentation:
    train_size: [640, 640]
    eval_size: [640, 640]

hardware:
  gpus_per_node: 1             # 0 runs on CPU (tiny models only)
  runner:
    kind: docker

model:
  backbone: resnet_50

train:
  epochs: 72
"""


def _yaml_str(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def init_project(annotations: Path, images: Path | None, output: Path, *,
                 force: bool = False) -> Path:
    if output.exists() and not force:
        raise UsageError(f"{output} exists; pass --force to overwrite it")
    summary = read_coco_summary(annotations)
    if not summary.categories:
        raise DataError(f"{annotations}: no categories to read class names from")
    bad = [i for i in summary.categories if i < 1]
    if bad:
        raise DataError(f"{annotations}: category id {bad[0]} < 1; taomake needs ids >= 1 "
                        "(renumber the categories, e.g. add 1 to every id)")
    images = images or annotations.parent / "images"
    base = output.resolve().parent
    rel = lambda p: Path(os.path.relpath(p.resolve(), base)).as_posix()
    classes = "\n".join(f"    {cid}: {_yaml_str(name)}"
                        for cid, name in sorted(summary.categories.items()))
    name = "".join(c if c.isalnum() or c in "_-" else "-" for c in base.name) or "project"
    atomic_write(output, TEMPLATE.format(annotations=_yaml_str(rel(annotations)),
                                         images=_yaml_str(rel(images)), classes=classes,
                                         name=name.lstrip("-_") or "project"))
    return output
