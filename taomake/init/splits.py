"""Where a user's validation and test splits are, or a validation split made for them.

Datasets are laid out in a few common ways; each names its splits by a word in a path:

    data/train/annotations.json + data/train/images         (one folder per split)
    train/_annotations.coco.json with the images beside it  (Roboflow: train/ valid/ test/)
    annotations/instances_train2017.json + train2017/       (COCO)

So a sibling split is the training split's annotations and images paths with the word `train`
(or `training`) replaced by `val`, `valid` or `validation` (`test`, `testing`), where both
exist.  With no validation split, a deterministic one is cut from the training set: an image
goes to validation when the hash of its id falls under `val_fraction`, so adding images never
moves the others; two new COCO files are written under the project, the user's are untouched.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from taomake.compiler.errors import DataError
from taomake.compiler.files import atomic_write
from taomake.compiler.layout import cut_split

TRAIN_WORD = re.compile(r"train(?:ing)?", re.IGNORECASE)
OTHER_WORDS = {"val": ("val", "valid", "validation"), "test": ("test", "testing")}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


@dataclass(frozen=True)
class SplitFiles:
    annotations: Path
    images: Path
    made: bool = False  # cut from the training set by init (not the user's files)


def default_images(annotations: Path) -> Path:
    """images/ beside the annotations, the folder their file name names (COCO's), else
    their own folder when it holds images (Roboflow's exports)."""
    beside = annotations.parent / "images"
    if beside.is_dir():
        return beside
    # COCO's annotations/instances_train2017.json names its images folder: train2017/
    named = re.search(r"(?i)(?:train|val|valid|validation|test)\w*", annotations.stem)
    if named:
        for folder in (annotations.parent.parent, annotations.parent):
            if (folder / named.group(0)).is_dir():
                return folder / named.group(0)
    if any(p.suffix.lower() in IMAGE_SUFFIXES for p in annotations.parent.iterdir()):
        return annotations.parent
    return beside


def _same_case(word: str, like: str) -> str:
    if like.isupper():
        return word.upper()
    return word.capitalize() if like[:1].isupper() else word


def _renamed(path: Path, word: str) -> Path | None:
    """`path` with the train word of its deepest component that has one replaced by `word`."""
    parts = list(path.parts)
    for i in range(len(parts) - 1, -1, -1):
        if TRAIN_WORD.search(parts[i]):
            parts[i] = TRAIN_WORD.sub(lambda m: _same_case(word, m.group(0)), parts[i])
            return Path(*parts)
    return None


def sibling(train: SplitFiles, role: str) -> SplitFiles | None:
    """The `role` split (val or test) laid out like the training split, if it exists."""
    for word in OTHER_WORDS[role]:
        ann = _renamed(train.annotations, word)
        if ann is None or not ann.is_file():
            continue
        images = _renamed(train.images, word)
        if images is None or not images.is_dir():
            images = default_images(ann)
        if images.is_dir():
            return SplitFiles(ann, images)
    return None


def _in_val(image_id: Any, fraction: float) -> bool:
    digest = hashlib.sha256(f"taomake-val:{image_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2 ** 64 < fraction


def cut_validation(train: SplitFiles, fraction: float, folder: Path
                   ) -> tuple[SplitFiles, SplitFiles, int, int]:
    """Write the training set split by a hash of each image id under `folder` (the project's:
    Layout's cut_split paths).  Returns (train, val, images in train, images in val)."""
    if not 0 < fraction < 1:
        raise DataError(f"--val-fraction {fraction} must be between 0 and 1")
    try:
        doc = json.loads(train.annotations.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{train.annotations}: cannot be read as COCO JSON ({exc})") from None
    images = doc.get("images") or []
    val_ids = {im["id"] for im in images if _in_val(im["id"], fraction)}
    if not val_ids and images:  # a tiny set: at least one validation image
        val_ids = {min(images, key=lambda im: hashlib.sha256(
            f"taomake-val:{im['id']}".encode()).digest())["id"]}
    if len(val_ids) == len(images):
        raise DataError(f"{train.annotations} has {len(images)} image(s): too few to keep "
                        "any for training after a validation split\n"
                        "    fix: add images, or give a validation split of your own")
    out = []
    for name, keep in (("train", lambda i: i not in val_ids), ("val", lambda i: i in val_ids)):
        part = {k: v for k, v in doc.items() if k not in ("images", "annotations")}
        part["images"] = [im for im in images if keep(im["id"])]
        part["annotations"] = [a for a in doc.get("annotations") or []
                               if keep(a.get("image_id"))]
        path = folder / cut_split(name)
        atomic_write(path, json.dumps(part, ensure_ascii=False))
        out.append(SplitFiles(path, train.images, made=True))
    return out[0], out[1], len(images) - len(val_ids), len(val_ids)


__all__ = ["SplitFiles", "cut_validation", "default_images", "sibling"]
