"""A tiny synthetic COCO detection dataset: coloured shapes on noisy coloured backgrounds.

Used as the committed example dataset (`data/shapes/`), by tests and by `taomake sample-data`.
Small enough to train a tiny RT-DETR on a CPU in seconds (docs/tao-notes.md §9 used 32 images of
128x128), yet learnable: shapes are 3/16..7/16 of the image side and never overlap.

Determinism: all randomness comes from one `random.Random(seed)` (its algorithm is stable
across Python versions), Pillow writes JPEGs without metadata or timestamps, and JSON is
written with sorted keys.  Same seed and same Pillow/libjpeg build => byte-identical files.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFilter

DEFAULT_CLASSES: dict[int, str] = {1: "circle", 3: "triangle", 4: "square"}
SHAPES = ("circle", "triangle", "square", "diamond")
ANNOTATED_SPLITS = ("train", "val", "test")
JPEG_QUALITY = 85


@dataclass(frozen=True)
class Style:
    """How hard the images are.  The defaults make the small test dataset (data/shapes); the
    demo dataset (data/demo) uses fewer, larger shapes on calmer backgrounds, which a tiny
    RT-DETR learns on a CPU in minutes."""

    max_shapes: int = 3  # shapes per image: 1..max_shapes
    sizes: tuple[int, int] = (3, 7)  # shape side, in sixteenths of the image side
    noise: float = 0.3  # blend weight of the grey noise over the gradient

    def args(self) -> str:
        """The command-line options that give this style (empty for the default)."""
        d = Style()
        out = []
        if self.max_shapes != d.max_shapes:
            out.append(f"--max-shapes {self.max_shapes}")
        if self.sizes != d.sizes:
            out.append(f"--sizes {self.sizes[0]}:{self.sizes[1]}")
        if self.noise != d.noise:
            out.append(f"--noise {self.noise:g}")
        return " ".join(out)

Box = tuple[int, int, int, int]  # x, y, w, h in pixels
Colour = tuple[int, int, int]


def _background(rng: random.Random, size: int,
                noise_weight: float) -> tuple[Image.Image, Colour, Colour]:
    """A two-colour vertical gradient plus blurred grey noise, and its top/bottom colours."""
    top = (rng.randrange(20, 200), rng.randrange(20, 200), rng.randrange(20, 200))
    bottom = (rng.randrange(20, 200), rng.randrange(20, 200), rng.randrange(20, 200))
    mask = Image.linear_gradient("L").resize((size, size))
    img = Image.composite(Image.new("RGB", (size, size), bottom),
                          Image.new("RGB", (size, size), top), mask)
    # randbytes is seeded by rng (Image.effect_noise is not); blur keeps the JPEGs small.
    noise = Image.frombytes("L", (size, size), rng.randbytes(size * size))
    noise = noise.filter(ImageFilter.GaussianBlur(1)).convert("RGB")
    return Image.blend(img, noise, noise_weight), top, bottom


def _expected_background(top: Colour, bottom: Colour, y: float, size: int,
                         noise: float) -> Colour:
    """The background colour at row y, computed rather than read from the pixels, so the
    random draws (and so the annotations) do not depend on Pillow's blur/resize arithmetic."""
    t = y / max(1, size - 1)
    r, g, b = (round((1 - noise) * (lo + (hi - lo) * t) + noise * 128)
               for lo, hi in zip(top, bottom, strict=False))
    return r, g, b


def _colour(rng: random.Random, avoid: Colour) -> Colour:
    """A random colour far enough from the local background to be visible."""
    for _ in range(100):
        c = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        if sum(abs(a - b) for a, b in zip(c, avoid, strict=False)) > 200:
            return c
    return (255 - avoid[0], 255 - avoid[1], 255 - avoid[2])


def _overlaps(a: Box, b: Box, margin: int = 2) -> bool:
    return not (a[0] + a[2] + margin <= b[0] or b[0] + b[2] + margin <= a[0]
                or a[1] + a[3] + margin <= b[1] or b[1] + b[3] + margin <= a[1])


def _place(rng: random.Random, size: int, shape: str, taken: list[Box],
           sizes: tuple[int, int]) -> Box:
    """A box for `shape` not overlapping `taken` (occlusion would make the boxes lie)."""
    lo, hi = max(4, size * sizes[0] // 16), max(5, size * sizes[1] // 16)
    box: Box = (0, 0, lo, lo)
    for attempt in range(200):
        s = rng.randint(lo, hi if attempt < 100 else lo)  # second half: smallest size only
        w, h = s, s
        if shape == "triangle":  # some aspect variety; squares and circles stay square
            h = max(lo, min(hi, round(s * rng.uniform(0.8, 1.2))))
        box = (rng.randrange(size - w + 1), rng.randrange(size - h + 1), w, h)
        if not any(_overlaps(box, t) for t in taken):
            return box
    return box  # practically unreachable (3 shapes of <= 7/16 side); accept an overlap then


def _draw(draw: ImageDraw.ImageDraw, shape: str, box: Box, fill: tuple[int, int, int]) -> None:
    x, y, w, h = box
    x1, y1 = x + w - 1, y + h - 1  # Pillow's coordinates are inclusive: box covers w x h pixels
    if shape == "circle":
        draw.ellipse((x, y, x1, y1), fill=fill)
    elif shape == "square":
        draw.rectangle((x, y, x1, y1), fill=fill)
    elif shape == "triangle":
        draw.polygon([(x + (w - 1) / 2, y), (x1, y1), (x, y1)], fill=fill)
    else:  # diamond
        draw.polygon([(x + (w - 1) / 2, y), (x1, y + (h - 1) / 2),
                      (x + (w - 1) / 2, y1), (x, y + (h - 1) / 2)], fill=fill)


def _split_classes(rng: random.Random, n_images: int, class_ids: list[int],
                   annotated: bool, max_shapes: int) -> list[list[int]]:
    """Class ids per image, 1-3 each; in annotated splits every class appears at least once."""
    counts = [rng.randint(1, max_shapes) for _ in range(n_images)]
    if annotated:
        if n_images * max_shapes < len(class_ids):
            raise ValueError(f"{n_images} images cannot hold all {len(class_ids)} classes")
        i = 0
        while sum(counts) < len(class_ids):  # rare: bump counts until every class fits
            counts[i % n_images] = min(max_shapes, counts[i % n_images] + 1)
            i += 1
    slots = [rng.choice(class_ids) for _ in range(sum(counts))]
    if annotated:  # guarantee coverage: a random permutation of all classes in random slots
        for slot, cid in zip(rng.sample(range(len(slots)), len(class_ids)),
                             rng.sample(class_ids, len(class_ids)), strict=False):
            slots[slot] = cid
    out, pos = [], 0
    for c in counts:
        out.append(slots[pos:pos + c])
        pos += c
    return out


def _write_split(root: Path, split: str, n_images: int, rng: random.Random, size: int,
                 classes: dict[int, str], style: Style) -> dict[int, int]:
    annotated = split in ANNOTATED_SPLITS
    img_dir = root / split / "images"
    img_dir.mkdir(parents=True)
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    per_class = {cid: 0 for cid in sorted(classes)}
    for index, cids in enumerate(_split_classes(rng, n_images, sorted(classes), annotated,
                                                style.max_shapes)):
        image_id, file_name = index + 1, f"{split}_{index:04d}.jpg"
        img, top, bottom = _background(rng, size, style.noise)
        draw = ImageDraw.Draw(img)
        taken: list[Box] = []
        for cid in cids:
            box = _place(rng, size, classes[cid], taken, style.sizes)
            taken.append(box)
            per_class[cid] += 1
            x, y, w, h = box
            local = _expected_background(top, bottom, y + h / 2, size, style.noise)
            _draw(draw, classes[cid], box, _colour(rng, local))
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": cid,
                "bbox": [float(x), float(y), float(w), float(h)], "area": float(w * h),
                "iscrowd": 0,
            })
        # Fixed quality and subsampling, no exif/icc: Pillow adds no timestamps to JPEGs.
        img.save(img_dir / file_name, "JPEG", quality=JPEG_QUALITY, subsampling=2,
                 optimize=False, progressive=False)
        images.append({"id": image_id, "file_name": file_name, "width": size, "height": size})
    if annotated:
        doc = {
            "info": {"description": f"taomake synthetic shapes, split {split}"},
            "images": images, "annotations": annotations,
            "categories": [{"id": cid, "name": classes[cid], "supercategory": "shape"}
                           for cid in sorted(classes)],
        }
        (root / split / "annotations.json").write_text(
            json.dumps(doc, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return per_class if annotated else {cid: 0 for cid in per_class}


def _readme(summary: dict, seed: int, size: int, style: Style) -> str:
    classes: dict[int, str] = summary["classes"]
    splits = summary["splits"]
    head = "| split | images | " + " | ".join(f"{cid} {n}" for cid, n in classes.items()) + " |"
    rows = [head, "|" + "---|" * (2 + len(classes))]
    for split, s in splits.items():
        counts = [str(s["per_class"][cid]) if split in ANNOTATED_SPLITS else "-" for cid in classes]
        rows.append(f"| {split} | {s['images']} | " + " | ".join(counts) + " |")
    class_lines = "\n".join(f"* `{cid}` {name}" for cid, name in classes.items())
    return f"""# Synthetic shapes dataset

A tiny COCO detection dataset of coloured shapes on noisy gradient backgrounds, generated by
`taomake/sample_data.py`. It exists so that examples, tests and a CPU smoke run of TAO RT-DETR
have real data without any download. Each image is {size}x{size} px with 1-{style.max_shapes}
non-overlapping shapes of {style.sizes[0]}/16 to {style.sizes[1]}/16 of the image side; shape
colours are random, so the class is the shape, not the colour.

Generated with the command below (same seed and Pillow build => byte-identical files; the
committed `data/shapes/` is `<out_dir>` = `data/shapes`, add `--overwrite` to regenerate it):

    taomake sample-data <out_dir> --seed {seed} --size {size} --train {splits['train']['images']} \\
        --val {splits['val']['images']} --test {splits['test']['images']} \\
        --infer {splits['infer']['images']}{(' ' + style.args()) if style.args() else ''}

Layout: `{{train,val,test}}/images/*.jpg` with `{{train,val,test}}/annotations.json`
(COCO: images, annotations with `area` and `iscrowd: 0`, categories), and `infer/images/*.jpg`
without annotations (for inference).

## Classes

{class_lines}

The category ids are **non-contiguous on purpose**: TAO uses `category_id` directly as the
label index (docs/tao-notes.md §5), so every id must be below `num_classes`. With a highest id of
{max(classes)} the project needs **`num_classes: {summary['num_classes']}`**; the ids that are not
classes (0 and the gaps) are never used as targets. This exercises the compiler's class-id
checks and the classmap placeholder lines.

## Annotation counts

{chr(10).join(rows)}
"""


def make_shapes_dataset(out_dir: Path, *, seed: int = 0, size: int = 128, n_train: int = 32,
                        n_val: int = 8, n_test: int = 8, n_infer: int = 4,
                        classes: dict[int, str] | None = None,
                        overwrite: bool = False, style: Style = Style()) -> dict:
    """Write the dataset to `out_dir` atomically and return a JSON-able summary.

    The tree is built in a sibling temp dir and renamed into place, so a crash never leaves a
    half-written dataset.  A non-empty `out_dir` is refused unless `overwrite=True`.
    """
    classes = dict(DEFAULT_CLASSES if classes is None else classes)
    if not classes:
        raise ValueError("at least one class is needed")
    for cid, name in classes.items():
        if not isinstance(cid, int) or cid < 0:
            raise ValueError(f"class id {cid!r} must be a non-negative integer")
        if name not in SHAPES:
            raise ValueError(f"class {cid}: unknown shape {name!r} (known: {', '.join(SHAPES)})")
    if style.max_shapes < 1 or not 0 <= style.noise <= 1:
        raise ValueError(f"max_shapes must be >= 1 and noise within 0..1 (got {style})")
    if size < 32:
        raise ValueError(f"size {size} is too small (minimum 32)")
    counts = {"train": n_train, "val": n_val, "test": n_test, "infer": n_infer}
    for split, n in counts.items():
        if n < (1 if split in ANNOTATED_SPLITS else 0):
            raise ValueError(f"n_{split} must be at least {1 if split in ANNOTATED_SPLITS else 0}")

    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"{out_dir} exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise FileExistsError(f"{out_dir} is not empty (use overwrite=True / --overwrite)")
    out_dir.parent.mkdir(parents=True, exist_ok=True)

    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        splits = {}
        for split, n in counts.items():
            # One child generator per split: changing n_train does not change the val images.
            split_rng = random.Random(f"{seed}/{split}")
            if n == 0 and split not in ANNOTATED_SPLITS:  # no empty folder (git drops it)
                per_class = dict.fromkeys(sorted(classes), 0)
            else:
                per_class = _write_split(tmp, split, n, split_rng, size, classes, style)
            splits[split] = {"images": n, "annotations": sum(per_class.values()),
                             "per_class": per_class}
        summary = {"root": str(out_dir), "seed": seed, "size": size,
                   "classes": dict(sorted(classes.items())),
                   "num_classes": max(classes) + 1, "splits": splits}
        (tmp / "README.md").write_text(_readme(summary, seed, size, style), encoding="utf-8")
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700; the dataset is meant to be shared
        _swap_into_place(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return summary


def _swap_into_place(tmp: Path, out_dir: Path) -> None:
    """Rename `tmp` to `out_dir`; an existing `out_dir` is moved aside first, then deleted."""
    if not out_dir.exists():
        os.rename(tmp, out_dir)
        return
    old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
    os.rename(out_dir, old)
    try:
        os.rename(tmp, out_dir)
    except BaseException:
        os.rename(old, out_dir)  # put the previous dataset back
        raise
    shutil.rmtree(old, ignore_errors=True)


def _parse_sizes(text: str) -> tuple[int, int]:
    lo, sep, hi = text.partition(":")
    if not (sep and lo.isdigit() and hi.isdigit() and 1 <= int(lo) <= int(hi) <= 15):
        raise argparse.ArgumentTypeError(f"expected LO:HI sixteenths, 1 <= LO <= HI <= 15, "
                                         f"got {text!r}")
    return int(lo), int(hi)


def _parse_classes(text: str) -> dict[int, str]:
    out: dict[int, str] = {}
    for item in text.split(","):
        cid, sep, name = item.partition(":")
        if not sep or not cid.strip().isdigit():
            raise argparse.ArgumentTypeError(f"expected ID:SHAPE[,ID:SHAPE...], got {item!r}")
        out[int(cid)] = name.strip()
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="taomake sample-data",
        description="Write a tiny synthetic COCO detection dataset (coloured shapes).")
    p.add_argument("out_dir", type=Path, help="folder to create (must be empty or absent)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=128, help="image side in pixels (default 128)")
    p.add_argument("--train", type=int, default=32, help="train images (default 32)")
    p.add_argument("--val", type=int, default=8, help="val images (default 8)")
    p.add_argument("--test", type=int, default=8, help="test images (default 8)")
    p.add_argument("--infer", type=int, default=4, help="unannotated inference images (default 4)")
    p.add_argument("--classes", type=_parse_classes, default=None,
                   help=f"ID:SHAPE list, shapes from {', '.join(SHAPES)} "
                        "(default 1:circle,3:triangle,4:square)")
    p.add_argument("--max-shapes", type=int, default=Style.max_shapes,
                   help="shapes per image: 1..N (default %(default)s)")
    p.add_argument("--sizes", type=_parse_sizes, default=Style.sizes, metavar="LO:HI",
                   help="shape side in sixteenths of the image side (default 3:7)")
    p.add_argument("--noise", type=float, default=Style.noise,
                   help="weight of the background noise, 0..1 (default %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty out_dir")
    args = p.parse_args(argv)
    try:
        s = make_shapes_dataset(args.out_dir, seed=args.seed, size=args.size,
                                n_train=args.train, n_val=args.val, n_test=args.test,
                                n_infer=args.infer, classes=args.classes,
                                overwrite=args.overwrite,
                                style=Style(args.max_shapes, args.sizes, args.noise))
    except (ValueError, FileExistsError) as e:
        print(f"taomake sample-data: {e}", file=sys.stderr)
        return 2
    parts = ", ".join(f"{k} {v['images']} images/{v['annotations']} boxes"
                      for k, v in s["splits"].items())
    print(f"wrote {args.out_dir}: {parts}; num_classes {s['num_classes']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
