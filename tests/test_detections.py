"""Per-class scoring under class names (taomake/detections.py) and the training progress line,
without TAO: a class map that swaps two names must show up per class even when the overall
mAP would not; KITTI names with spaces; the ETA from the epochs' pace."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from taomake.detections import kitti_detections, per_class_ap, plot_grid, read_classmap
from taomake.progress import Progress, duration

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


def test_progress_line_has_scores_and_eta(tmp_path, capsys, monkeypatch):
    status = tmp_path / "status.json"
    lines = []
    clock = [100.0]
    monkeypatch.setattr("taomake.progress.time.monotonic", lambda: clock[0])
    progress = Progress(status, 0, "train (base)", epochs=10)
    for epoch, now in ((0, 130.0), (1, 140.0), (2, 150.0)):
        # the records TAO 7.3.0 writes per epoch (taken from a real train/status.json)
        lines.append({"message": "Eval metrics generated.", "status": "RUNNING",
                      "kpi": {"val_mAP": "0.25", "val_mAP50": "0.5", "val_loss": 1.0}})
        lines.append({"epoch": epoch, "max_epoch": 9, "message": "Training loop in progress",
                      "status": "RUNNING"})
        lines.append({"message": "Train metrics generated.", "status": "RUNNING",
                      "kpi": {"train_loss": 3.0}})
        status.write_text("".join(json.dumps(x) + "\n" for x in lines))
        clock[0] = now
        progress()
    err = capsys.readouterr().err
    assert "epoch 0 done (1/10), train_loss 3.0000, val_mAP 0.2500, val_mAP50 0.5000\n" in err
    assert "epoch 1 done (2/10), train_loss 3.0000, val_mAP 0.2500, val_mAP50 0.5000, " \
           "ETA 1 min 20 s" in err  # 10 s per epoch since the first, 8 to go
    assert "epoch 2 done (3/10)" in err and "ETA 1 min 10 s" in err
    assert duration(59.6) == "1 min 00 s" and duration(5) == "5 s"


def test_engine_provenance_names_the_gpu(tmp_path, monkeypatch):
    """Which GPU built an engine goes into provenance (an engine runs only on that model)."""
    from taomake.provenance import gpu_models

    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho '0, NVIDIA A100-SXM4-80GB, 550.54.15'\n"
                    "echo '1, NVIDIA L4, 550.54.15'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    assert gpu_models((1,)) == ["NVIDIA L4 (driver 550.54.15)"]
    assert len(gpu_models()) == 2
    monkeypatch.setenv("PATH", "/nonexistent")
    assert gpu_models() == []
