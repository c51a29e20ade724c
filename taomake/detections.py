"""What the model detects on the test split, per class and under the project's class names.

TAO's own evaluate reports one mAP over all classes, which cannot show a wrong class map (ids
with gaps, names in the wrong lines): a model that finds every shape but calls circles
"square" can still score.  So, per experiment (rule `detections`, `taomake detections`):

* **PyTorch**: TAO's inference label files (KITTI lines `<name> ... x1 y1 x2 y2 ... score`),
  when the inference images are the test images, read back through the class *names* and
  scored per class against the test annotations (pycocotools);
* **ONNX Runtime**: the per-class scores `onnx_parity` computed from the exported model's
  outputs, whose label index is the category id;
* a table (`per_class.md`, `per_class.json`) and a grid of test images, ground truth next to
  the PyTorch detections with their class names (`<results>/report/test_grid_<exp>.png`).
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

from taomake.compiler.files import atomic_write
from taomake.errors import RunError

KITTI_FIELDS_AFTER_NAME = 15  # truncation, occlusion, alpha, 4 box, 7 3-D fields, score


def read_classmap(path: Path) -> dict[str, int]:
    """Class name -> id from TAO's classmap (line i names id i)."""
    return {name.strip(): i for i, name in enumerate(path.read_text().splitlines())
            if name.strip()}


def kitti_detections(labels_dir: Path, images: list[dict[str, Any]],
                     name_to_id: dict[str, int]) -> tuple[list[dict[str, Any]], set[str]]:
    """COCO-style detections from TAO's label files of these images; and the names found
    that are not classes (a broken class map shows up here)."""
    dets: list[dict[str, Any]] = []
    unknown: set[str] = set()
    for image in images:
        path = labels_dir / f"{Path(image['file_name']).stem}.txt"
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) <= KITTI_FIELDS_AFTER_NAME:
                continue
            # the name may hold spaces: it is everything before the 15 numeric fields
            name = " ".join(parts[:-KITTI_FIELDS_AFTER_NAME])
            x1, y1, x2, y2 = (float(v) for v in parts[-12:-8])
            if name not in name_to_id:
                unknown.add(name)
                continue
            dets.append({"image_id": image["id"], "category_id": name_to_id[name],
                         "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(parts[-1])})
    return dets, unknown


def per_class_ap(annotations: Path, detections: list[dict[str, Any]],
                 names: dict[int, str]) -> dict[str, dict[str, Any]]:
    """name -> {id, AP (0.5:0.95), AP50, objects}, for every class of `names` that the
    annotations declare (pycocotools' own per-category precision)."""
    import numpy as np
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(annotations))
        counts = {cid: len(gt.getAnnIds(catIds=[cid])) for cid in gt.getCatIds()}
        out = {names.get(cid, f"id {cid}"): {"id": cid, "AP": 0.0, "AP50": 0.0,
                                             "objects": counts[cid]}
               for cid in sorted(counts) if cid in names}
        if not detections:
            return out
        ev = COCOeval(gt, gt.loadRes(detections), "bbox")
        ev.evaluate()
        ev.accumulate()
    precision = ev.eval["precision"]  # [iou, recall, category, area, max_dets]
    for k, cid in enumerate(ev.params.catIds):
        if cid not in names:
            continue
        p = precision[:, :, k, 0, -1]
        valid = p[p > -1]
        p50 = p[0][p[0] > -1]
        out[names[cid]]["AP"] = round(float(np.mean(valid)) if valid.size else 0.0, 6)
        out[names[cid]]["AP50"] = round(float(np.mean(p50)) if p50.size else 0.0, 6)
    return out


def markdown(table: dict[str, Any]) -> str:
    rows = ["| class | id | test objects | PyTorch AP50 | PyTorch AP | ONNX AP50 | ONNX AP |",
            "|---|---|---|---|---|---|---|"]
    pt, ox = table.get("pytorch") or {}, table.get("onnx") or {}
    for name, c in table["classes"].items():
        def cell(side: dict[str, Any], key: str, name: str = name) -> str:
            return f"{side[name][key]:.3f}" if name in side else "–"

        rows.append(f"| {name} | {c['id']} | {c['objects']} | {cell(pt, 'AP50')} | "
                    f"{cell(pt, 'AP')} | {cell(ox, 'AP50')} | {cell(ox, 'AP')} |")
    notes = [f"\n{n}" for n in table.get("notes", [])]
    return "\n".join(rows) + "\n" + "".join(notes) + ("\n" if notes else "")


def plot_grid(annotations: Path, image_dir: Path, dets: list[dict[str, Any]] | None,
              names: dict[int, str], path: Path, *, threshold: float,
              limit: int = 8) -> None:
    """Up to `limit` test images: ground truth (left) next to the detections (right; `None`:
    inference did not run on these images)."""
    from matplotlib.figure import Figure  # no pyplot: a file, not a window (and 0.4 s less)
    from matplotlib.patches import Rectangle
    from PIL import Image

    doc = json.loads(annotations.read_text())
    images = doc["images"][:limit]
    palette = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6",
               "#bfef45", "#469990", "#9a6324"]
    colour = {cid: palette[i % len(palette)] for i, cid in enumerate(sorted(names))}
    # fixed margins, not tight_layout: the panels are alike, and tight_layout draws every
    # one of them once more to measure it (half the cost of the plot)
    fig = Figure(figsize=(6, 3 * len(images)))
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=1 - 0.12 / len(images),
                        wspace=0.04, hspace=0.12)
    axes = fig.subplots(len(images), 2, squeeze=False)
    for row, image in zip(axes, images, strict=True):
        with Image.open(image_dir / image["file_name"]) as im:
            pixels = im.convert("RGB")
        gts = [(a["category_id"], a["bbox"], None) for a in doc["annotations"]
               if a["image_id"] == image["id"]]
        found = sorted(((d["category_id"], d["bbox"], d["score"]) for d in dets or []
                        if d["image_id"] == image["id"] and d["score"] >= threshold),
                       key=lambda f: -f[2])[:max(3, 2 * len(gts))]  # DETR has no NMS
        for ax, boxes, title in ((row[0], gts, "ground truth"),
                                 (row[1], found, f"detections (score >= {threshold:g})")):
            ax.imshow(pixels)
            ax.set_axis_off()
            ax.set_title(f"{image['file_name']}: {title}", fontsize=7)
            for cid, (x, y, w, h), score in boxes:
                c = colour.get(cid, "white")
                ax.add_patch(Rectangle((x, y), w, h, fill=False, edgecolor=c, linewidth=1.5))
                label = names.get(cid, str(cid)) + (f" {score:.2f}" if score is not None
                                                    else "")
                ax.text(x, max(0, y - 2), label, color="white", fontsize=6,
                        bbox={"facecolor": c, "pad": 1, "linewidth": 0})
        if dets is None:
            row[1].text(0.5, 0.5, "inference does not run on the test images\n(set "
                        "dataset.inference to the test split's images)", ha="center",
                        va="center", fontsize=7, transform=row[1].transAxes,
                        bbox={"facecolor": "white"})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    tmp.replace(path)


def run_detections(root: Path, exp) -> dict[str, Any]:
    """The `detections` rule: per-class scores (PyTorch labels, ONNX parity) and the grid."""
    ev = exp.specs["evaluate"].data["dataset"]["test_data_sources"]
    inf = exp.specs["inference"].data
    annotations, test_images = root / ev["json_file"], root / ev["image_dir"]
    infer_dirs = [root / d for d in inf["dataset"]["infer_data_sources"]["image_dir"]]
    name_to_id = read_classmap(root / inf["dataset"]["infer_data_sources"]["classmap"])
    doc = json.loads(annotations.read_text())
    declared = {c["id"] for c in doc["categories"]}
    shown = exp.names()  # the project's names; the class map holds TAO's labels
    names = {i: shown.get(i, n) for n, i in name_to_id.items() if i in declared}
    table: dict[str, Any] = {"experiment": exp.name, "annotations": ev["json_file"],
                             "classes": {}, "pytorch": None, "onnx": None, "notes": [],
                             "grid": exp.layout.test_grid}
    labels = root / exp.layout.labels("inference")
    dets: list[dict[str, Any]] = []
    same = any(d.resolve() == test_images.resolve() for d in infer_dirs)
    if same:
        dets, unknown = kitti_detections(labels, doc["images"], name_to_id)
        if unknown:
            raise RunError(f"{labels}: detections named {sorted(unknown)}, which the class map "
                           f"({', '.join(sorted(name_to_id))}) does not have\n    fix: this is "
                           "a class-map bug; report it with the spec files")
        table["pytorch"] = per_class_ap(annotations, dets, names)
        threshold = float(inf["inference"].get("conf_threshold", 0.5))
        table["notes"].append(
            f"PyTorch: TAO inference label files (score >= {threshold:g}) on the test images, "
            "read back by class name.")
    else:
        table["notes"].append("PyTorch: not scored (dataset.inference is not the test split's "
                              "image folder).")
    parity = root / exp.layout.parity
    if parity.is_file():
        table["onnx"] = json.loads(parity.read_text()).get("per_class")
        table["notes"].append("ONNX: ONNX Runtime on the test split (onnx_parity), label index "
                              "= category id.")
    table["classes"] = {names[i]: {"id": i, "objects": sum(
        1 for a in doc["annotations"] if a["category_id"] == i)} for i in sorted(names)}
    atomic_write(root / exp.layout.per_class, json.dumps(table, indent=1, sort_keys=True) + "\n")
    atomic_write(root / exp.layout.per_class_table, markdown(table))
    plot_grid(annotations, test_images, dets if same else None, names,
              root / exp.layout.test_grid,
              threshold=float(inf["inference"].get("conf_threshold", 0.5)))
    return table
