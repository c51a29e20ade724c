"""The synthetic shapes dataset: deterministic, valid COCO, every class everywhere, atomic."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from taomake.compiler.coco import check_coco, read_coco_summary

from taomake import sample_data
from taomake.sample_data import DEFAULT_CLASSES, main, make_shapes_dataset

REPO = Path(__file__).resolve().parents[2]
SPLITS = ("train", "val", "test")


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ds") / "shapes"
    make_shapes_dataset(root)
    return root


def test_same_seed_is_byte_identical(shapes: Path, tmp_path: Path) -> None:
    make_shapes_dataset(tmp_path / "again")
    assert tree(tmp_path / "again") == tree(shapes)


def test_other_seed_differs(shapes: Path, tmp_path: Path) -> None:
    make_shapes_dataset(tmp_path / "s1", seed=1)
    a, b = tree(tmp_path / "s1"), tree(shapes)
    assert a.keys() == b.keys()
    assert a["train/annotations.json"] != b["train/annotations.json"]


@pytest.mark.parametrize("split", SPLITS)
def test_valid_coco_with_every_class(shapes: Path, split: str) -> None:
    report = check_coco(shapes / split / "annotations.json", shapes / split / "images",
                        num_classes=5, declared=DEFAULT_CLASSES, open_images=True)
    assert report.errors == [] and report.warnings == []
    assert report.images_opened == report.summary.n_images  # type: ignore[union-attr]
    s = read_coco_summary(shapes / split / "annotations.json")
    assert s.categories == {1: "circle", 3: "triangle", 4: "square"}  # non-contiguous ids
    assert s.category_ids_used == {1, 3, 4}
    assert s.images_without_annotations == 0


def test_layout_counts_and_box_sizes(shapes: Path) -> None:
    counts = {"train": 32, "val": 8, "test": 8, "infer": 4}
    for split, n in counts.items():
        assert len(list((shapes / split / "images").glob("*.jpg"))) == n
    assert not (shapes / "infer" / "annotations.json").exists()
    doc = json.loads((shapes / "train" / "annotations.json").read_text())
    assert {c["supercategory"] for c in doc["categories"]} == {"shape"}
    per_image: dict[int, int] = {}
    for a in doc["annotations"]:
        per_image[a["image_id"]] = per_image.get(a["image_id"], 0) + 1
        _, _, w, h = a["bbox"]
        assert all(isinstance(v, float) for v in a["bbox"])
        assert 24 <= w <= 56 and 24 <= h <= 56 and a["area"] == w * h and a["iscrowd"] == 0
    assert set(per_image.values()) <= {1, 2, 3} and len(per_image) == 32
    assert sum(p.stat().st_size for p in shapes.rglob("*") if p.is_file()) < 1_000_000


def test_small_counts_still_cover_every_class(tmp_path: Path) -> None:
    s = make_shapes_dataset(tmp_path / "d", n_train=1, n_val=1, n_test=2, n_infer=0, size=64)
    for split in SPLITS:
        assert read_coco_summary(tmp_path / "d" / split / "annotations.json").category_ids_used \
            == {1, 3, 4}
    assert s["splits"]["infer"]["images"] == 0 and s["num_classes"] == 5
    with pytest.raises(ValueError):
        make_shapes_dataset(tmp_path / "e", n_val=0)
    with pytest.raises(ValueError, match="unknown shape"):
        make_shapes_dataset(tmp_path / "e", classes={0: "hexagon"})


def test_refuses_non_empty_target_and_overwrites_on_request(tmp_path: Path) -> None:
    out = tmp_path / "d"
    out.mkdir()  # an empty folder is fine
    make_shapes_dataset(out, n_train=3, n_val=3, n_test=3, n_infer=0)
    (out / "mine.txt").write_text("keep")
    with pytest.raises(FileExistsError):
        make_shapes_dataset(out, n_train=3, n_val=3, n_test=3, n_infer=0)
    assert (out / "mine.txt").read_text() == "keep"
    make_shapes_dataset(out, n_train=4, n_val=3, n_test=3, n_infer=0, overwrite=True)
    assert not (out / "mine.txt").exists()
    assert len(list((out / "train" / "images").iterdir())) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]  # no temp or old dirs left


def test_failure_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = sample_data._write_split

    def fail_on_val(root: Path, split: str, *args: object) -> dict[int, int]:
        if split == "val":
            raise RuntimeError("disk full")
        return real(root, split, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(sample_data, "_write_split", fail_on_val)
    with pytest.raises(RuntimeError):
        make_shapes_dataset(tmp_path / "d")
    assert list(tmp_path.iterdir()) == []


def test_main(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = [str(tmp_path / "d"), "--seed", "2", "--size", "96", "--train", "4", "--val", "3",
            "--test", "3", "--infer", "1", "--classes", "0:diamond,2:circle"]
    assert main(args) == 0
    s = read_coco_summary(tmp_path / "d" / "val" / "annotations.json")
    assert s.categories == {0: "diamond", 2: "circle"} and s.category_ids_used == {0, 2}
    assert main(args) == 2
    assert "not empty" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0


def test_committed_dataset_is_valid_and_reproducible(tmp_path: Path) -> None:
    committed = REPO / "data" / "shapes"
    if not committed.is_dir():
        pytest.skip("data/shapes not present")
    fresh = tmp_path / "shapes"
    make_shapes_dataset(fresh)
    # JSON and README do not depend on the Pillow build (colours are chosen from computed
    # background values), so they must match exactly; JPEG bytes may differ across libjpeg.
    for name in ("README.md", *(f"{s}/annotations.json" for s in SPLITS)):
        assert (committed / name).read_bytes() == (fresh / name).read_bytes(), name
    assert sorted(tree(committed)) == sorted(tree(fresh))
    for split in SPLITS:
        report = check_coco(committed / split / "annotations.json", committed / split / "images",
                            num_classes=5, declared=DEFAULT_CLASSES)
        assert report.ok, report.render()


def test_committed_demo_dataset_is_reproducible_from_its_readme(tmp_path: Path) -> None:
    """data/demo (the learning demo's data) is what the command in its README makes."""
    import re
    import shlex

    committed = REPO / "data" / "demo"
    readme = (committed / "README.md").read_text()
    command = re.search(r"taomake sample-data <out_dir> (.*?)\n\n", readme, re.S)[1]
    args = shlex.split(command.replace("\\\n", " "))
    assert main([str(tmp_path / "demo"), *args]) == 0
    fresh = tmp_path / "demo"
    for name in ("README.md", *(f"{s}/annotations.json" for s in ("train", "val", "test"))):
        assert (committed / name).read_bytes() == (fresh / name).read_bytes(), name
    assert sorted(tree(committed)) == sorted(tree(fresh))
    report = check_coco(committed / "test" / "annotations.json", committed / "test" / "images",
                        num_classes=5, declared=DEFAULT_CLASSES)
    assert report.ok and report.summary.n_images == 32
