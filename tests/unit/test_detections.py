"""Per-class scoring under class names (taomake/detections.py) and the training progress line,
without TAO: a class map that swaps two names must show up per class even when the overall
mAP would not; KITTI names with spaces; the ETA from the epochs' pace."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from taomake.detections import kitti_detections, per_class_ap, plot_grid, read_classmap

CLASSES = {1: "circle", 3: "triangle", 4: "square"}


@pytest.fixture
def split(tmp_path: Path) -> Path:
    """Two 100x100 images, one box of each class (gaps in the ids, as in the demo)."""
    doc = {"images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 100},
                      {"id": 2, "file_name": "b.jpg", "width": 100, "height": 100}],
           "annotations": [
               {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 30],
                "area": 900, "iscrowd": 0},
               {"id": 2, "image_id": 1, "category_id": 3, "bbox": [50, 50, 40, 40],
                "area": 1600, "iscrowd": 0},
               {"id": 3, "image_id": 2, "category_id": 4, "bbox": [20, 20, 50, 50],
                "area": 2500, "iscrowd": 0}],
           "categories": [{"id": i, "name": n} for i, n in CLASSES.items()]}
    path = tmp_path / "test.json"
    path.write_text(json.dumps(doc))
    return path


def kitti(name: str, box: list[float], score: float) -> str:
    x, y, w, h = box
    return (f"{name} 0.00 0 0.00 {x:.3f} {y:.3f} {x + w:.3f} {y + h:.3f} "
            f"0.00 0.00 0.00 0.00 0.00 0.00 0.00 {score:.3f}\n")


def write_labels(folder: Path, names: dict[int, str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "a.txt").write_text(kitti(names[1], [10, 10, 30, 30], 0.9)
                                  + kitti(names[3], [50, 50, 40, 40], 0.8))
    (folder / "b.txt").write_text(kitti(names[4], [20, 20, 50, 50], 0.7))


def test_right_names_score_every_class(split, tmp_path):
    write_labels(tmp_path / "labels", CLASSES)
    doc = json.loads(split.read_text())
    dets, unknown = kitti_detections(tmp_path / "labels", doc["images"],
                                     {n: i for i, n in CLASSES.items()})
    assert not unknown and {d["category_id"] for d in dets} == {1, 3, 4}
    table = per_class_ap(split, dets, CLASSES)
    assert {n: (c["id"], c["AP50"], c["objects"]) for n, c in table.items()} == {
        "circle": (1, 1.0, 1), "triangle": (3, 1.0, 1), "square": (4, 1.0, 1)}


def test_a_swapped_class_map_shows_per_class(split, tmp_path):
    """Names of ids 1 and 3 swapped in the label files: those two classes score 0."""
    write_labels(tmp_path / "labels", {1: "triangle", 3: "circle", 4: "square"})
    doc = json.loads(split.read_text())
    dets, _ = kitti_detections(tmp_path / "labels", doc["images"],
                               {n: i for i, n in CLASSES.items()})
    table = per_class_ap(split, dets, CLASSES)
    assert table["circle"]["AP50"] == 0 and table["triangle"]["AP50"] == 0
    assert table["square"]["AP50"] == 1.0


def test_names_with_spaces_and_unknown_names(split, tmp_path):
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "a.txt").write_text(kitti("red circle", [10, 10, 30, 30], 0.9)
                                  + kitti("nope", [1, 1, 5, 5], 0.5))
    doc = json.loads(split.read_text())
    dets, unknown = kitti_detections(labels, doc["images"], {"red circle": 1})
    assert unknown == {"nope"} and len(dets) == 1
    assert dets[0]["category_id"] == 1 and dets[0]["bbox"] == [10.0, 10.0, 30.0, 30.0]


def test_classmap_lines_are_ids(tmp_path):
    path = tmp_path / "classmap.txt"
    path.write_text("_0\ncircle\n_2\ntriangle\nsquare\n")
    assert read_classmap(path)["triangle"] == 3 and read_classmap(path)["circle"] == 1


def test_grid_is_a_png(split, tmp_path):
    from PIL import Image

    for name in ("a.jpg", "b.jpg"):
        Image.new("RGB", (100, 100), "grey").save(tmp_path / name)
    out = tmp_path / "grid.png"
    plot_grid(split, tmp_path, [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 30],
                                 "score": 0.9}], CLASSES, out, threshold=0.3)
    assert out.read_bytes()[:4] == b"\x89PNG"
    plot_grid(split, tmp_path, None, CLASSES, out, threshold=0.3)  # inference elsewhere
    assert out.stat().st_size > 1000
