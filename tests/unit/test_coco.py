"""taomake.compiler.coco: a broken-dataset corpus made from the shapes dataset, summary cache,
speed."""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from taomake.compiler import coco
from taomake.compiler.coco import CocoReport, check_coco, clear_cache, read_coco_summary
from taomake.compiler.errors import DataError

from taomake.sample_data import DEFAULT_CLASSES, make_shapes_dataset

Doc = dict[str, Any]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ds") / "shapes"
    make_shapes_dataset(root, n_train=3, n_val=8, n_test=3, n_infer=0)
    return root


def val_doc(shapes: Path) -> Doc:
    return json.loads((shapes / "val" / "annotations.json").read_text())


def run(shapes: Path, tmp_path: Path, mutate: Callable[[Doc, Path], Any] | None = None,
        text: str | None = None, num_classes: int = 5, open_images: bool = True) -> CocoReport:
    """Copy val (json + images) into tmp_path, break it, check it."""
    img = tmp_path / "images"
    shutil.copytree(shapes / "val" / "images", img)
    ann = tmp_path / "annotations.json"
    doc = val_doc(shapes)
    if mutate is not None:
        mutate(doc, img)
    ann.write_text(text if text is not None else json.dumps(doc))
    return check_coco(ann, img, num_classes=num_classes, declared=dict(DEFAULT_CLASSES),
                      open_images=open_images)


def set_bbox(i: int, bbox: list[float]) -> Callable[[Doc, Path], None]:
    def f(d: Doc, _: Path) -> None:
        d["annotations"][i]["bbox"] = bbox
    return f


def drop_file(d: Doc, img: Path) -> None:
    (img / "val_0002.jpg").unlink()


def add_category(d: Doc, _: Path) -> None:
    d["categories"].append({"id": 2, "name": "hexagon", "supercategory": "shape"})
    d["annotations"][3]["category_id"] = 2


def corrupt_image(d: Doc, img: Path) -> None:
    p = img / "val_0001.jpg"
    p.write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")


# (name, mutate, raw text, num_classes, expected error codes, code to locate, its record)
CASES: list[tuple[str, Any, str | None, int, set[str], str, str]] = [
    ("missing image file", drop_file, None, 5, {"image-missing"}, "image-missing",
     "images[2] (id 3, file_name 'val_0002.jpg')"),
    ("bbox out of bounds", set_bbox(0, [110.0, 10.0, 30.0, 30.0]), None, 5, {"bbox-outside"},
     "bbox-outside", "annotations[0] (id 1)"),
    ("degenerate bbox", set_bbox(1, [10.0, 10.0, 0.0, 30.0]), None, 5, {"bbox-degenerate"},
     "bbox-degenerate", "annotations[1] (id 2)"),
    ("bbox not 4 numbers", set_bbox(1, [10.0, 10.0, 30.0]), None, 5, {"bbox-format"},
     "bbox-format", "annotations[1] (id 2)"),
    ("missing area", lambda d, _: d["annotations"][2].pop("area"), None, 5, {"missing-area"},
     "missing-area", "annotations[2] (id 3)"),
    ("undeclared category", add_category, None, 5, {"undeclared-category"},
     "undeclared-category", "categories[3] (id 2, name 'hexagon')"),
    # 1-based ids 1..4 need num_classes 5: num_classes 4 is the classic off-by-one.
    ("category id >= num_classes", None, None, 4, {"category-out-of-range"},
     "category-out-of-range", "categories[2] (id 4, name 'square')"),
    ("annotation on unknown image", lambda d, _: d["annotations"][4].update(image_id=999),
     None, 5, {"unknown-image"}, "unknown-image", "annotations[4] (id 5)"),
    ("unknown category in annotation",
     lambda d, _: d["annotations"][5].update(category_id=7), None, 5,
     {"unknown-category", "undeclared-category", "category-out-of-range"}, "unknown-category",
     "annotations[5] (id 6)"),
    ("empty split", lambda d, _: d.update(images=[], annotations=[]), None, 5, {"no-images"},
     "no-images", ""),
    ("unparsable json", None, '{"images": [', 5, {"unreadable"}, "unreadable", ""),
    ("missing categories", lambda d, _: d.pop("categories"), None, 5,
     {"missing-categories", "unknown-category"}, "missing-categories", ""),
    ("duplicate image id", lambda d, _: d["images"][1].update(id=1), None, 5,
     {"duplicate-image-id", "unknown-image"},  # image 2's boxes now point nowhere
     "duplicate-image-id", "images[1] (id 1, file_name 'val_0001.jpg')"),
    ("duplicate annotation id", lambda d, _: d["annotations"][1].update(id=1), None, 5,
     {"duplicate-annotation-id"}, "duplicate-annotation-id", "annotations[1] (id 1)"),
    ("ignore set", lambda d, _: d["annotations"][0].update(ignore=1), None, 5, {"ignore"},
     "ignore", "annotations[0] (id 1)"),
    ("image size mismatch", lambda d, _: d["images"][0].update(width=200), None, 5,
     {"image-size-mismatch"}, "image-size-mismatch",
     "images[0] (id 1, file_name 'val_0000.jpg')"),
    ("corrupt image", corrupt_image, None, 5, {"image-unreadable"}, "image-unreadable",
     "images[1] (id 2, file_name 'val_0001.jpg')"),
]


@pytest.mark.parametrize(("mutate", "text", "num_classes", "codes", "code", "record"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_broken_dataset_is_caught(shapes: Path, tmp_path: Path, mutate: Any, text: str | None,
                                  num_classes: int, codes: set[str], code: str,
                                  record: str) -> None:
    report = run(shapes, tmp_path, mutate, text, num_classes)
    assert not report.ok
    assert {f.code for f in report.errors} == codes, report.render()
    finding = next(f for f in report.errors if f.code == code)
    ann = str(tmp_path / "annotations.json")
    assert finding.file == ann and finding.record == record
    assert str(finding).startswith(f"{ann}: {record}" if record else ann)
    assert finding.message


def test_clean_split_has_no_findings(shapes: Path, tmp_path: Path) -> None:
    report = run(shapes, tmp_path)
    assert report.ok and report.warnings == [], report.render()
    assert report.annotations_per_category.keys() == {1, 3, 4}
    assert report.images_opened == 8
    assert "8 images" in report.render()


def test_missing_file_checked_without_opening_images(shapes: Path, tmp_path: Path) -> None:
    report = run(shapes, tmp_path, drop_file, open_images=False)
    assert [f.code for f in report.errors] == ["image-missing"] and report.images_opened == 0


def test_class_name_mismatch_is_a_warning(shapes: Path, tmp_path: Path) -> None:
    report = run(shapes, tmp_path, lambda d, _: d["categories"][0].update(name="ball"))
    assert report.ok
    [w] = report.warnings
    assert w.code == "class-name-mismatch" and w.record == "categories[0] (id 1, name 'ball')"
    assert "'ball'" in w.message and "'circle'" in w.message


def test_project_class_missing_from_file_is_a_warning(shapes: Path, tmp_path: Path) -> None:
    ann = tmp_path / "a.json"
    shutil.copy(shapes / "val" / "annotations.json", ann)
    report = check_coco(ann, None, num_classes=6, declared={**DEFAULT_CLASSES, 5: "star"})
    assert report.ok and [w.code for w in report.warnings] == ["class-not-in-file"]


def test_many_bad_boxes_of_one_unknown_category_give_one_finding(shapes: Path,
                                                                 tmp_path: Path) -> None:
    def all_seven(d: Doc, _: Path) -> None:
        for a in d["annotations"]:
            a["category_id"] = 7
    report = run(shapes, tmp_path, all_seven, num_classes=8)
    unknown = [f for f in report.errors if f.code == "unknown-category"]
    assert len(unknown) == 1 and "used by 16 annotations" in unknown[0].message


def test_summary_and_data_errors(shapes: Path, tmp_path: Path) -> None:
    s = read_coco_summary(shapes / "val" / "annotations.json")
    assert s.n_images == 8 and s.n_annotations == sum(s.annotations_per_category.values())
    assert s.max_category_id == 4
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match=r"bad\.json.*not valid JSON.*line 1"):
        read_coco_summary(bad)
    bad.write_text(json.dumps({"images": [], "annotations": []}))
    with pytest.raises(DataError, match=r"bad\.json.*'categories'"):
        read_coco_summary(bad)
    with pytest.raises(DataError, match="not found"):
        read_coco_summary(tmp_path / "absent.json")


def test_images_without_annotations_counted(shapes: Path, tmp_path: Path) -> None:
    doc = val_doc(shapes)
    doc["images"].append({"id": 100, "file_name": "x.jpg", "width": 10, "height": 10})
    p = tmp_path / "a.json"
    p.write_text(json.dumps(doc))
    assert read_coco_summary(p).images_without_annotations == 1


def test_summary_cache(shapes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = coco._load

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(coco, "_load", counting)
    clear_cache()
    p = tmp_path / "a.json"
    shutil.copy(shapes / "val" / "annotations.json", p)
    first = read_coco_summary(p)
    assert read_coco_summary(p) is first and len(calls) == 1
    assert read_coco_summary(tmp_path / "." / "a.json") is first  # keyed by resolved path
    doc = val_doc(shapes)
    doc["annotations"].pop()
    p.write_text(json.dumps(doc))
    os.utime(p, ns=(1, 1))  # a changed file is re-read even if the size happened to match
    assert read_coco_summary(p).n_annotations == first.n_annotations - 1 and len(calls) == 2
    check_coco(p, None)  # a clean check leaves its summary in the cache
    assert read_coco_summary(p).n_annotations == first.n_annotations - 1 and len(calls) == 3


def test_100k_annotations_is_linear(tmp_path: Path) -> None:
    rng = random.Random(0)
    n_img = 20_000
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 640, "height": 480}
              for i in range(1, n_img + 1)]
    anns = []
    for j in range(1, 100_001):
        w, h = rng.uniform(5, 100), rng.uniform(5, 100)
        anns.append({"id": j, "image_id": rng.randint(1, n_img), "category_id": rng.choice([1, 2]),
                     "bbox": [rng.uniform(0, 640 - w), rng.uniform(0, 480 - h), w, h],
                     "area": w * h, "iscrowd": 0})
    p = tmp_path / "big.json"
    p.write_text(json.dumps({"images": images, "annotations": anns,
                             "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}))
    t = time.perf_counter()
    report = check_coco(p, None, num_classes=3, declared={1: "a", 2: "b"}, open_images=False)
    elapsed = time.perf_counter() - t
    assert report.ok and sum(report.annotations_per_category.values()) == 100_000
    assert elapsed < 15, f"{elapsed:.1f}s: something quadratic crept in"  # ~1 s here
