"""`taomake init`: a project.yaml for a user's COCO dataset that runs as written.

It finds the validation and test splits laid out beside the training split (or cuts a
deterministic validation split: taomake.init.splits), writes a recipe for this machine (`--preset
cpu | gpu`, sized from the data: taomake.init.preset) and the class names as the file has them
(names TAO cannot carry get a TAO-safe label when compiled: compiler.facts.tao_label).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from taomake.compiler.coco import read_coco_summary
from taomake.compiler.errors import DataError, UsageError
from taomake.compiler.files import atomic_write
from taomake.compiler.layout import cut_split

from .preset import DataShape, Preset, cpu_sections, gpu_sections, machine_preset
from .splits import SplitFiles, cut_validation, default_images, sibling

DEFAULT_BUDGET_MINUTES = 20


@dataclass
class Initialized:
    path: Path
    preset: Preset
    why_preset: str
    notes: list[str]


def _yaml_str(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def _shape(train: SplitFiles, val_images: int) -> DataShape:
    doc = json.loads(train.annotations.read_text(encoding="utf-8"))
    sizes = [(im["width"], im["height"]) for im in doc.get("images") or []
             if isinstance(im.get("width"), int) and isinstance(im.get("height"), int)]
    per_image: dict[object, int] = {}
    for a in doc.get("annotations") or []:
        per_image[a.get("image_id")] = per_image.get(a.get("image_id"), 0) + 1
    return DataShape(len(doc.get("images") or []), val_images, sizes,
                     max(per_image.values(), default=0))


def _classes(annotations: Path) -> dict[int, str]:
    summary = read_coco_summary(annotations)
    if not summary.categories:
        raise DataError(f"{annotations}: no categories to read class names from")
    bad = [i for i in summary.categories if i < 1]
    if bad:
        raise DataError(f"{annotations}: category id {bad[0]} < 1; taomake needs ids >= 1 "
                        "(renumber the categories, e.g. add 1 to every id)")
    return summary.categories


def find_splits(train: SplitFiles, output: Path, val_fraction: float
                ) -> tuple[SplitFiles, SplitFiles, SplitFiles | None, list[str]]:
    """(train, val, test or None, notes): the user's sibling splits, or a cut one."""
    notes = []
    val, test = sibling(train, "val"), sibling(train, "test")
    if val is not None:
        notes.append(f"validation split: {val.annotations} (beside the training split)")
    else:
        train, val, n_train, n_val = cut_validation(train, val_fraction,
                                                    output.resolve().parent)
        notes.append(f"no validation split beside {train.annotations.name}: {n_val} of "
                     f"{n_train + n_val} training images set aside for validation "
                     f"(--val-fraction {val_fraction:g}, by a hash of the image id) in "
                     f"{Path(cut_split('val')).parent}/; your files are unchanged")
    notes.append(f"test split: {test.annotations}" if test else
                 "no test split found: evaluate is left out (add dataset.test to score the "
                 "model on data it never saw)")
    return train, val, test, notes


def _split_lines(role: str, s: SplitFiles, rel, listed: bool) -> list[str]:
    why = "   # cut by `taomake init` from the training set" if s.made else ""
    if listed:
        return [f"  {role}:{why}", f"    - images: {_yaml_str(rel(s.images))}",
                f"      annotations: {_yaml_str(rel(s.annotations))}"]
    return [f"  {role}:{why}", f"    images: {_yaml_str(rel(s.images))}",
            f"    annotations: {_yaml_str(rel(s.annotations))}"]


def render(name: str, classes: dict[int, str], splits: tuple, sections: dict[str, list[str]],
           rel, source: Path, preset: Preset) -> str:
    train, val, test = splits
    lines = [f"# Written by `taomake init` from {rel(source)} (preset: {preset}).",
             "# Check it with `taomake validate`; `taomake data check` summarises the data.",
             f"name: {name}", "", "dataset:",
             "  classes:                     # id -> name, as the annotations' categories",
             *(f"    {cid}: {_yaml_str(n)}" for cid, n in sorted(classes.items())),
             *_split_lines("train", train, rel, listed=True),
             *_split_lines("val", val, rel, listed=False)]
    if test is not None:
        lines += _split_lines("test", test, rel, listed=False)
        lines += ["  inference:                   # the test images: detections scored per "
                  "class", f"    images: {_yaml_str(rel(test.images))}"]
    lines += sections["dataset"]
    for section in ("hardware", "model", "train", "inference"):
        if section in sections:
            lines += ["", f"{section}:", *sections[section]]
    return "\n".join(lines) + "\n"


def init_project(annotations: Path, images: Path | None, output: Path, *,
                 force: bool = False, preset: Preset | None = None, val_fraction: float = 0.1,
                 budget_minutes: float = DEFAULT_BUDGET_MINUTES) -> Initialized:
    if output.exists() and not force:
        raise UsageError(f"{output} exists; pass --force to overwrite it")
    classes = _classes(annotations)
    train = SplitFiles(annotations, images or default_images(annotations))
    if not train.images.is_dir():
        raise DataError(f"no image folder {train.images}\n    fix: give it as the second "
                        "argument (`taomake init annotations.json path/to/images`)")
    train, val, test, notes = find_splits(train, output, val_fraction)
    why = f"--preset {preset}" if preset else ""
    if preset is None:
        preset, why = machine_preset()
    n_val = len(json.loads(val.annotations.read_text(encoding="utf-8")).get("images") or [])
    shape = _shape(train, n_val)
    sections = cpu_sections(shape, budget_minutes) if preset == "cpu" else gpu_sections(shape)
    base = output.resolve().parent
    rel = lambda p: Path(os.path.relpath(Path(p).resolve(), base)).as_posix()
    name = "".join(c if c.isalnum() or c in "_-" else "-" for c in base.name).lstrip("-_")
    atomic_write(output, render(name or "project", classes, (train, val, test), sections, rel,
                                annotations, preset))
    return Initialized(output, preset, why, notes)


__all__ = ["DEFAULT_BUDGET_MINUTES", "Initialized", "find_splits", "init_project"]
