"""The data summary `taomake data check` prints: what each split looks like to TAO, and the
problems to fix first (tiny boxes, a rare class, 16-bit images refused, converted modes)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from taomake.cli import main as cli
from taomake.data.summary import findings, summarize_split
from tests.datagen import write_dataset, write_split

CLASSES = {2: "round ball", 5: "square box", 9: "plus sign"}


def hostile_split(folder: Path) -> Path:
    """A split with tiny boxes, a rare class, 16-bit PNGs and CMYK JPEGs."""
    ann = write_split(folder / "images", folder / "annotations.json", 30, seed=3,
                      categories={2: "round ball", 5: "square box"})
    doc = json.loads(ann.read_text())
    for im in doc["images"][:3]:  # 16-bit grayscale PNGs
        im["file_name"] = f"deep_{im['id']}.png"
        deep = (np.arange(im["width"] * im["height"], dtype=np.uint16) * 37).reshape(
            im["height"], im["width"])
        Image.fromarray(deep).save(folder / "images" / im["file_name"])  # I;16
    for im in doc["images"][3:6]:  # CMYK JPEGs
        im["file_name"] = f"cmyk_{im['id']}.jpg"
        Image.new("CMYK", (im["width"], im["height"]), (10, 200, 30, 0)).save(
            folder / "images" / im["file_name"])
    image = doc["images"][6]
    doc["annotations"].append({"id": 1, "image_id": image["id"], "category_id": 9,
                               "bbox": [2, 2, 3, 3], "area": 9.0, "iscrowd": 0})  # rare, tiny
    doc["categories"].append({"id": 9, "name": "plus sign"})
    ann.write_text(json.dumps(doc))
    return ann


def test_the_summary_names_what_to_fix(tmp_path):
    ann = hostile_split(tmp_path / "train")
    s = summarize_split("train", json.loads(ann.read_text()), tmp_path / "train/images",
                        (160, 160))
    findings(s, CLASSES, (160, 160), training=True)
    assert s.images == 30 and s.modes["I;16"] == 3 and s.modes["CMYK"] == 3
    assert s.formats["PNG"] and s.formats["JPEG"]
    text = "\n".join(s.lines(CLASSES, (160, 160)))
    assert "30 images" in text and "round ball" in text and "median" in text
    assert len(s.errors) == 1 and "16-bit" in s.errors[0] and "fix:" in s.errors[0]
    warnings = "\n".join(s.warnings)
    assert "3 CMYK (CMYK)" in warnings and "grayscale" in warnings  # datagen: 1/3 grayscale
    assert "under 8 px" in warnings and "raise dataset.augmentation.train_size" in warnings
    assert "class 9 'plus sign' has 1 boxes" in warnings


def test_data_check_prints_the_summary_and_refuses_16_bit(tmp_path, capsys):
    files = write_dataset(tmp_path / "data", "folders", counts={"train": 12, "val": 6,
                                                               "test": 6})
    out = tmp_path / "proj" / "project.yaml"
    assert cli(["init", str(files["train"]), "-o", str(out), "--preset", "cpu",
                "--no-snakefile"]) == 0
    capsys.readouterr()
    assert cli(["data", "-p", str(out), "check"]) == 0
    text = capsys.readouterr().out
    assert "train[0]: 12 images" in text and "box shorter side at train_size" in text
    assert "grayscale (L)" in text  # mixed modes, said once per split
    hostile_split(tmp_path / "data" / "val")  # the validation split turns hostile
    assert cli(["data", "-p", str(out), "check"]) == 2
    assert "16-bit" in capsys.readouterr().out
