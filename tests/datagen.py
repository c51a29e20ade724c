"""A user's own COCO dataset, unlike the demo's: images of several non-square sizes, grayscale
and RGB, PNG and JPEG, image and category ids with gaps, category names with spaces, laid out
the way people lay out COCO data.

    write_dataset(root, layout="roboflow" | "folders" | "instances" | "train-only", ...)

Objects are large plain shapes (a disk, a square, a plus) on a lightly textured background,
so a tiny model learns them on a CPU within minutes (tests/func/test_own_data.py).  Besides
grayscale and RGB, a split has CMYK JPEGs, RGBA and palette PNGs: TAO converts each to RGB.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from PIL import Image, ImageDraw

CATEGORIES = {2: "round ball", 5: "square box", 9: "plus sign"}  # gaps, spaces
SIZES = [(144, 112), (128, 96), (160, 128), (112, 96)]  # (width, height), none square


def _draw(draw: ImageDraw.ImageDraw, cid: int, box: tuple[int, int, int, int], ink) -> None:
    x0, y0, x1, y1 = box
    if cid == 2:
        draw.ellipse(box, fill=ink)
    elif cid == 5:
        draw.rectangle(box, fill=ink)
    else:
        w, h = x1 - x0, y1 - y0
        draw.rectangle((x0 + w // 3, y0, x1 - w // 3, y1), fill=ink)
        draw.rectangle((x0, y0 + h // 3, x1, y1 - h // 3), fill=ink)


def _image(rng: random.Random, image_id: int, size: tuple[int, int], gray: bool,
           counts: dict[int, int] | None = None, tiny: bool = False):
    w, h = size
    base = rng.randint(150, 230)
    img = Image.new("RGB", size, (base, base - 10, base - 20))
    draw = ImageDraw.Draw(img)
    for _ in range(25):  # texture: faint lines
        x, y = rng.randrange(w), rng.randrange(h)
        draw.line((x, y, x + rng.randint(-20, 20), y + rng.randint(-20, 20)),
                  fill=(base - 30,) * 3)
    anns, taken = [], []
    for _ in range(rng.choice((1, 1, 2))):
        cid = rng.choice(list(counts) if counts else list(CATEGORIES))
        side = rng.randint(4, 6) if tiny else rng.randint(int(0.3 * h), int(0.55 * h))
        for _try in range(20):
            x0, y0 = rng.randint(0, w - side - 1), rng.randint(0, h - side - 1)
            if all(x0 + side < a or a + s < x0 or y0 + side < b or b + s < y0
                   for a, b, s in taken):
                break
        else:
            continue
        taken.append((x0, y0, side))
        ink = tuple(rng.randint(10, 90) for _ in range(3))
        _draw(draw, cid, (x0, y0, x0 + side, y0 + side), ink)
        anns.append({"image_id": image_id, "category_id": cid,
                     "bbox": [x0, y0, side + 1, side + 1], "area": float((side + 1) ** 2),
                     "iscrowd": 0})
    return (img.convert("L") if gray else img), anns


def _save(img: Image.Image, path: Path, i: int, mixed_modes: bool) -> Path:
    """Half PNG, half JPEG; with `mixed_modes` also CMYK JPEGs, RGBA and palette PNGs."""
    if mixed_modes and i % 8 == 3:
        path = path.with_suffix(".jpg")
        img.convert("CMYK").save(path, quality=92)
    elif mixed_modes and i % 8 == 5:
        path = path.with_suffix(".png")
        img.convert("RGBA").save(path)
    elif mixed_modes and i % 8 == 7:
        path = path.with_suffix(".png")
        img.convert("P").save(path)
    elif path.suffix == ".jpg":
        img.save(path, quality=92)
    else:
        img.save(path)
    return path


def write_split(folder: Path, ann_path: Path, n: int, seed: int, *, first_id: int = 1,
                categories: dict[int, str] = CATEGORIES, mixed_modes: bool = False) -> Path:
    """`n` images in `folder`, their COCO file at `ann_path`; ids start at `first_id` with
    gaps of 1-3; a third grayscale, half PNG (`mixed_modes`: some CMYK, RGBA, palette)."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    images, annotations, image_id = [], [], first_id
    for i in range(n):
        size = SIZES[i % len(SIZES)]
        img, anns = _image(rng, image_id, size, gray=i % 3 == 0,
                           counts=dict.fromkeys(categories))
        name = _save(img, folder / f"img_{image_id:05d}.{'png' if i % 2 else 'jpg'}", i,
                     mixed_modes).name
        images.append({"id": image_id, "file_name": name, "width": size[0],
                       "height": size[1]})
        annotations += anns
        image_id += rng.randint(1, 3)
    for k, a in enumerate(annotations, start=100):
        a["id"] = k * 2  # annotation ids with gaps too
    ann_path.parent.mkdir(parents=True, exist_ok=True)
    ann_path.write_text(json.dumps({
        "images": images, "annotations": annotations,
        "categories": [{"id": cid, "name": name, "supercategory": "thing"}
                       for cid, name in categories.items()]}))
    return ann_path


LAYOUTS = {  # layout -> split -> (annotations, images) relative to the dataset root
    "roboflow": {s: (f"{s}/_annotations.coco.json", s) for s in ("train", "valid", "test")},
    "folders": {s: (f"{s}/annotations.json", f"{s}/images") for s in ("train", "val", "test")},
    "instances": {s: (f"annotations/instances_{s}2017.json", f"{s}2017")
                  for s in ("train", "val")},
    "train-only": {"train": ("annotations.json", "images")},
}
COUNTS = {"train": 96, "valid": 24, "val": 24, "test": 24}


def write_dataset(root: Path, layout: str = "roboflow", counts: dict[str, int] | None = None
                  ) -> dict[str, Path]:
    """A dataset laid out as `layout`; split -> its annotations file."""
    counts = {**COUNTS, **(counts or {})}
    out = {}
    for i, (split, (ann, images)) in enumerate(LAYOUTS[layout].items()):
        out[split] = write_split(root / images, root / ann, counts[split], seed=i,
                                 first_id=1 + 1000 * i, mixed_modes=True)
    return out


__all__ = ["CATEGORIES", "LAYOUTS", "write_dataset", "write_split"]
