"""`taomake init` on the ways people lay out COCO data: sibling splits found, a missing
validation split cut deterministically (never val = train), presets sized from the data,
names TAO cannot carry given labels, and what it writes validates with no warning."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from taomake.compiler import compile_project, load_project
from taomake.compiler.facts import tao_label

from taomake.cli import main as cli
from taomake.init import init_project
from taomake.init.preset import DataShape, cpu_epochs, input_size
from tests.datagen import CATEGORIES, write_dataset, write_split

COCO_80 = [
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat",
    "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack",
    "umbrella", "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball",
    "kite", "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket",
    "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair",
    "couch", "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse",
    "remote", "keyboard", "cell phone", "microwave", "oven", "toaster", "sink",
    "refrigerator", "book", "clock", "vase", "scissors", "teddy bear", "hair drier",
    "toothbrush"]
# COCO's own ids: 1..90 with gaps
COCO_IDS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24,
            25, 27, 28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49,
            50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74,
            75, 76, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87, 88, 89, 90]


def init(root: Path, ann: Path, *args: str) -> tuple[Path, dict]:
    out = root / "proj" / "project.yaml"
    assert cli(["init", str(ann), "-o", str(out), "--preset", "cpu", "--no-snakefile",
                *args]) == 0
    lp = load_project(out)
    return out, lp


def split_paths(lp) -> dict[str, str]:
    ds = lp.base.dataset
    out = {"train": ds.train[0].annotations, "val": ds.val.annotations}
    if ds.test:
        out["test"] = ds.test.annotations
    return out


@pytest.mark.parametrize("layout,val,test", [
    ("roboflow", "valid/_annotations.coco.json", "test/_annotations.coco.json"),
    ("folders", "val/annotations.json", "test/annotations.json"),
    ("instances", "annotations/instances_val2017.json", None),
])
def test_sibling_splits_are_found(tmp_path, layout, val, test):
    files = write_dataset(tmp_path / "data", layout, counts={"train": 8, "valid": 4, "val": 4,
                                                            "test": 4})
    out, lp = init(tmp_path, files["train"])
    paths = split_paths(lp)
    assert paths["val"] == f"../data/{val}"
    assert paths.get("test") == (f"../data/{test}" if test else None)
    assert not (out.parent / "splits").exists()
    ds = lp.base.dataset
    assert ds.val.images != ds.train[0].images
    if layout == "instances":
        assert ds.val.images == "../data/val2017"


def test_without_a_validation_split_one_is_cut_deterministically(tmp_path):
    files = write_dataset(tmp_path / "data", "train-only", counts={"train": 60})
    original = files["train"].read_bytes()
    out, lp = init(tmp_path, files["train"], "--val-fraction", "0.2")
    assert files["train"].read_bytes() == original  # the user's file is untouched
    train = json.loads((out.parent / "splits/train.json").read_text())
    val = json.loads((out.parent / "splits/val.json").read_text())
    train_ids = {im["id"] for im in train["images"]}
    val_ids = {im["id"] for im in val["images"]}
    # a hash threshold: ~20 % of 60 (here 21; the same ids always give the same split)
    assert train_ids.isdisjoint(val_ids) and 5 <= len(val_ids) <= 24
    assert train_ids | val_ids == {im["id"] for im in json.loads(original)["images"]}
    assert {a["image_id"] for a in val["annotations"]} <= val_ids
    assert lp.base.dataset.val.annotations == "splits/val.json"
    first = (out.parent / "splits/val.json").read_bytes()
    init(tmp_path / "again", files["train"], "--val-fraction", "0.2")
    assert (tmp_path / "again/proj/splits/val.json").read_bytes() == first
    # a new image never moves the old ones
    doc = json.loads(original)
    doc["images"].append({**doc["images"][0], "id": 99999, "file_name": "new.png"})
    files["train"].write_text(json.dumps(doc))
    init(tmp_path / "grown", files["train"], "--val-fraction", "0.2")
    grown = {im["id"] for im in json.loads(
        (tmp_path / "grown/proj/splits/val.json").read_text())["images"]}
    assert grown - {99999} == val_ids


def test_the_cpu_preset_is_sized_from_the_data(tmp_path):
    files = write_dataset(tmp_path / "data", "folders", counts={"train": 8})
    out, lp = init(tmp_path, files["train"], "--budget-minutes", "5")
    p = lp.base
    assert p.hardware.gpus_per_node == 0 and p.hardware.runner.kind == "local"
    assert p.dataset.augmentation.train_size == [128, 128]  # median longer side 136 -> 128
    assert p.model.backbone == "resnet_18" and p.train.lr == 0.001
    text = out.read_text()
    for key in ("train_size", "epochs:", "lr:", "backbone:", "num_queries:", "gpus_per_node"):
        line = next(line for line in text.splitlines() if key in line)
        assert " # " in line, f"no reason given for {line!r}"
    assert input_size(DataShape(10, 2, [(1920, 1080)] * 3, 4), 320) == 320
    fast, _ = cpu_epochs(DataShape(100, 20, [], 1), 128, 30, cores=2)
    slow, _ = cpu_epochs(DataShape(100, 20, [], 1), 320, 30, cores=2)
    assert fast > slow


def test_the_gpu_preset_keeps_taos_recipe(tmp_path):
    files = write_dataset(tmp_path / "data", "folders", counts={"train": 8})
    out = tmp_path / "gpu" / "project.yaml"
    init_project(files["train"], None, out, preset="gpu")
    p = load_project(out).base
    assert p.hardware.runner.kind == "docker" and p.hardware.gpus_per_node >= 1
    assert p.model.backbone == "resnet_50" and p.dataset.augmentation.train_size == [640, 640]
    assert "pretrained_backbone" in out.read_text()


def test_coco_names_need_no_edit_and_no_warning(tmp_path):
    categories = dict(zip(COCO_IDS, COCO_80, strict=True))
    root = tmp_path / "coco"
    for split in ("train", "val"):
        write_split(root / f"{split}2017", root / f"annotations/instances_{split}2017.json",
                    8, seed=1, categories=categories)
    out, lp = init(tmp_path, root / "annotations/instances_train2017.json")
    assert lp.base.dataset.classes == categories
    compiled = compile_project(lp)["base"]
    assert not compiled.warnings, compiled.warnings
    classmap = compiled.files[next(f for f in compiled.files if f.endswith("classmap.txt"))]
    assert "traffic_light" in classmap.splitlines() and "traffic light" not in classmap


def test_labels_are_tao_safe_and_unique(tmp_path):
    assert tao_label("traffic light") == "traffic_light"
    assert tao_label(" hair  drier ") == "hair_drier"
    assert tao_label("a/b,c") == "a_b_c"
    files = write_dataset(tmp_path / "data", "folders", counts={"train": 8})
    out, _ = init(tmp_path, files["train"])
    text = out.read_text().replace('"square box"', '"round_ball"')
    out.write_text(text)
    assert cli(["validate", "-p", str(out)]) == 2  # "round ball" and "round_ball" collide


def test_names_with_spaces_reach_the_classmap_as_labels(tmp_path):
    files = write_dataset(tmp_path / "data", "roboflow", counts={"train": 8})
    _, lp = init(tmp_path, files["train"])
    assert lp.base.dataset.classes == CATEGORIES
    compiled = compile_project(lp)["base"]
    assert not compiled.warnings, compiled.warnings


def test_the_default_preset_follows_the_machine(tmp_path, monkeypatch):
    from taomake.init.preset import machine_preset

    monkeypatch.setenv("PATH", str(tmp_path))
    assert machine_preset()[0] == "cpu"
    (tmp_path / "sbatch").write_text("#!/bin/sh\n")
    (tmp_path / "sbatch").chmod(0o755)
    preset, why = machine_preset()
    assert preset == "cpu" and "no NVIDIA GPU found" in why and "profiles/slurm" in why
