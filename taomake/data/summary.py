"""What a split looks like to TAO, before an hour of training: images (sizes, pixel modes,
formats), boxes per class, box sizes once resized to `train_size`, images without boxes; and
the problems worth fixing first, each with its fix.

TAO's loaders open every image with Pillow and `.convert("RGB")` (serialized_dataset.py,
od_dataset.py in nvidia-tao-pytorch 7.3.0): grayscale, palette, RGBA and CMYK images are
converted (fine; said once when a split mixes them), but a 16-bit image (modes I;16, I, F)
has its values clipped to 0..255, i.e. mostly white: it is refused, with the fix.
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

TINY_PX = 8  # a box's shorter side at train_size below this is hard to learn (RT-DETR's
#              finest feature map has a stride of 8)
RARE_BOXES = 10  # a class with fewer training boxes than this barely learns
SIXTEEN_BIT = {"I;16", "I;16B", "I;16L", "I;16N", "I", "F"}
CONVERTED = {"L": "grayscale", "LA": "grayscale + alpha", "P": "palette", "RGBA": "RGBA",
             "CMYK": "CMYK", "1": "1-bit", "YCbCr": "YCbCr"}


@dataclass
class SplitSummary:
    name: str
    images: int = 0
    sizes: list[tuple[int, int]] = field(default_factory=list)
    modes: Counter = field(default_factory=Counter)
    formats: Counter = field(default_factory=Counter)
    boxes: Counter = field(default_factory=Counter)  # class id -> boxes
    box_px: list[float] = field(default_factory=list)  # shorter side at train_size
    empty: int = 0  # images without a box
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def percentiles(self) -> tuple[float, float, float] | None:
        if not self.box_px:
            return None
        q = sorted(self.box_px)
        at = lambda f: q[min(len(q) - 1, int(f * len(q)))]
        return at(0.05), at(0.5), at(0.95)

    def lines(self, classes: dict[int, str], train_size: tuple[int, int]) -> list[str]:
        ws = sorted(w for w, _ in self.sizes)
        hs = sorted(h for _, h in self.sizes)
        size = (f"{ws[0]}x{hs[0]} .. {statistics.median(ws):g}x{statistics.median(hs):g} "
                f"(median) .. {ws[-1]}x{hs[-1]}" if ws else "?")
        modes = ", ".join(f"{m} {n}" for m, n in self.modes.most_common())
        fmts = ", ".join(f"{f} {n}" for f, n in self.formats.most_common())
        boxes = ", ".join(f"{classes.get(c, c)} {n}" for c, n in sorted(self.boxes.items()))
        pct = self.percentiles()
        px = (f"p5 {pct[0]:.0f}, median {pct[1]:.0f}, p95 {pct[2]:.0f} px" if pct else "-")
        return [f"{self.name}: {self.images} images, {sum(self.boxes.values())} boxes, "
                f"{self.empty} without boxes",
                f"  sizes {size}; modes {modes or '?'}; {fmts or '?'}",
                f"  boxes per class: {boxes or 'none'}",
                f"  box shorter side at train_size {train_size[0]}x{train_size[1]}: {px}"]


def _open(path: Path) -> tuple[str, str] | None:
    """(mode, format) from the image's header (no pixel is decoded), None if unreadable."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.mode, im.format or path.suffix.lstrip(".").upper()
    except Exception:  # the decode check names unreadable images
        return None


def summarize_split(name: str, doc: dict, images: Path, train_size: tuple[int, int], *,
                    open_images: bool = True) -> SplitSummary:
    """`doc`: the split's parsed COCO file (compiler.coco.check_coco hands it over);
    `train_size` is [height, width] (project.yaml's dataset.augmentation.train_size)."""
    s = SplitSummary(name)
    th, tw = train_size
    by_id = {}
    for im in doc.get("images") or []:
        by_id[im.get("id")] = im
        s.images += 1
        if isinstance(im.get("width"), int) and isinstance(im.get("height"), int):
            s.sizes.append((im["width"], im["height"]))
        if open_images:
            found = _open(images / str(im.get("file_name", "")))
            if found:
                s.modes[found[0]] += 1
                s.formats[found[1]] += 1
    with_boxes = set()
    for a in doc.get("annotations") or []:
        s.boxes[a.get("category_id")] += 1
        with_boxes.add(a.get("image_id"))
        im, box = by_id.get(a.get("image_id")), a.get("bbox") or []
        if im and len(box) == 4 and im.get("width") and im.get("height"):
            s.box_px.append(min(box[2] * tw / im["width"], box[3] * th / im["height"]))
    s.empty = s.images - len(with_boxes & set(by_id))
    return s


def findings(s: SplitSummary, classes: dict[int, str], train_size: tuple[int, int],
             *, training: bool) -> None:
    """Fill `s.errors` / `s.warnings`, each with its fix."""
    deep = sorted(m for m in s.modes if m in SIXTEEN_BIT)
    if deep:
        n = sum(s.modes[m] for m in deep)
        s.errors.append(
            f"{s.name}: {n} image(s) are 16-bit ({', '.join(deep)}): TAO's loader converts with "
            "Pillow's convert('RGB'), which clips them to 0..255 (mostly white)\n"
            "    fix: save them as 8-bit, e.g. Image.open(p).point(lambda v: v / 256)"
            ".convert('L').save(p)")
    other = {m: n for m, n in s.modes.items() if m in CONVERTED}
    if other:
        s.warnings.append(
            f"{s.name}: " + ", ".join(f"{n} {CONVERTED[m]} ({m})" for m, n in other.items())
            + f" of {s.images} images: TAO converts each to RGB when it reads it (nothing to "
            "do, unless colour matters: then convert them yourself)")
    tiny = sum(1 for px in s.box_px if px < TINY_PX)
    if tiny:
        s.warnings.append(
            f"{s.name}: {tiny} of {len(s.box_px)} boxes are under {TINY_PX} px on their shorter "
            f"side at train_size {train_size[0]}x{train_size[1]}: hard to learn\n"
            "    fix: raise dataset.augmentation.train_size (and eval_size), or crop the "
            "images into tiles")
    if training:
        for cid, name in sorted(classes.items()):
            if s.boxes.get(cid, 0) < RARE_BOXES:
                s.warnings.append(
                    f"{s.name}: class {cid} {name!r} has {s.boxes.get(cid, 0)} boxes (< "
                    f"{RARE_BOXES}): it will barely be learned\n"
                    "    fix: add examples of it, or merge it into another class")


__all__ = ["RARE_BOXES", "TINY_PX", "SplitSummary", "findings", "summarize_split"]
