"""Data sources without a network: identity stamps, local archives, the dataset check command
and how data changes reach the build (with the fake TAO of test_build)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest
from taomake.compiler.layout import DataSource

from taomake.data.identity import refresh_stamps
from taomake.data.s3 import S3Store
from taomake.data.stage import Stager
from tests.func.test_build import calls, fake_project_text, snakemake
from tests.helpers import REPO, SMOKE_PROJECT, make_project


def make_tar(folder: Path, archive: Path, top: str | None = "images") -> Path:
    with tarfile.open(archive, "w:gz") as tar:
        for f in sorted(folder.iterdir()):
            tar.add(f, arcname=f"{top}/{f.name}" if top else f.name)
    return archive


def taomake(folder: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "taomake.cli", *args], cwd=folder,
                          capture_output=True, text=True, timeout=300)


# --------------------------------------------------------------------------- identity


def test_stamp_follows_content_not_mtime(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"a" * 100)
    (folder / "b.png").write_bytes(b"b" * 100)
    sources = [DataSource("imgs", "images")]
    store = S3Store()
    assert refresh_stamps(tmp_path, "results", sources, store) == sources  # first: recorded
    stamp = tmp_path / sources[0].stamp("results")
    before = stamp.stat().st_mtime_ns
    time.sleep(0.01)
    for f in folder.iterdir():  # a touched (or copied) dataset is the same dataset
        os.utime(f)
    assert refresh_stamps(tmp_path, "results", sources, store) == []
    assert stamp.stat().st_mtime_ns == before
    (folder / "b.png").write_bytes(b"c" * 100)  # same size, new content
    assert refresh_stamps(tmp_path, "results", sources, store) == sources
    identity = json.loads(stamp.read_text())["identity"]
    assert identity["files"] == 2 and identity["size"] == 200


def test_local_archive_is_staged_by_identity(tmp_path):
    images = tmp_path / "src"
    images.mkdir()
    (images / "x.png").write_bytes(b"x")
    make_tar(images, tmp_path / "images.tar.gz")
    source = DataSource("images.tar.gz", "images")
    refresh_stamps(tmp_path, "results", [source], S3Store())
    stager = Stager(tmp_path, "results")
    first = stager.stage(source)
    target = tmp_path / source.target("results")
    assert not first.reused and (target / "x.png").read_bytes() == b"x"
    assert target.is_symlink() and os.readlink(target).startswith("v-")
    marker = json.loads((tmp_path / source.marker("results")).read_text())
    assert marker["target"] == "results/_data/" + source.key + "/images"

    assert stager.stage(source).reused  # same identity: nothing extracted again

    (images / "x.png").write_bytes(b"y")
    make_tar(images, tmp_path / "images.tar.gz")
    refresh_stamps(tmp_path, "results", [source], S3Store())
    old = os.readlink(target)
    assert not stager.stage(source).reused
    assert os.readlink(target) != old and (target / "x.png").read_bytes() == b"y"
    versions = [p.name for p in target.parent.iterdir() if p.name.startswith("v-")]
    assert versions == [os.readlink(target)]  # the old extraction is gone


def test_stage_without_stamp_says_what_to_do(tmp_path):
    from taomake.compiler.errors import DataError

    with pytest.raises(DataError, match="source.json is missing"):
        Stager(tmp_path, "results").stage(DataSource("images.tar.gz", "images"))


# --------------------------------------------------------------------------- data check


def test_data_check_reports_counts_per_class_and_split(tmp_path):
    make_project(tmp_path)
    proc = taomake(tmp_path, "data", "check", "--json", "report.json")
    assert proc.returncode == 0, proc.stderr
    assert "circle" in proc.stdout and "train[0]" in proc.stdout and "test" in proc.stdout
    assert "ok: 0 errors" in proc.stdout
    report = json.loads((tmp_path / "report.json").read_text())
    splits = {s["split"]: s for s in report["splits"]}
    coco = json.loads((REPO / "data/shapes/val/annotations.json").read_text())
    assert splits["val"]["images"] == len(coco["images"])
    assert sum(splits["val"]["annotations_per_class"].values()) == len(coco["annotations"])


BROKEN = {
    "missing image": (lambda d: d["images"][0].update(file_name="nope.png"), "not found",
                      "images[0]"),
    "bbox out of bounds": (lambda d: d["annotations"][0].update(bbox=[100, 100, 500, 500]),
                           "outside", "annotations[0]"),
    "missing area": (lambda d: d["annotations"][0].pop("area"), "area", "annotations[0]"),
    # these two are caught already when the project compiles (local annotations)
    "undeclared category": (lambda d: d["annotations"][0].update(category_id=2),
                            "not in dataset.classes: 2", "annotations[0]"),
    "category id >= num_classes": (lambda d: d["annotations"][0].update(category_id=7),
                                   "num_classes", "annotations[0]"),
    "empty split": (lambda d: d.update(images=[], annotations=[]), "has no images", ""),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_data_check_catches_broken_datasets(tmp_path, case):
    make_project(tmp_path, copy_data=True)
    mutate, text, record = BROKEN[case]
    path = tmp_path / "data/shapes/val/annotations.json"
    doc = json.loads(path.read_text())
    mutate(doc)
    path.write_text(json.dumps(doc))
    proc = taomake(tmp_path, "data", "check", "--no-open" if case != "missing image" else "-s",
                   *([] if case != "missing image" else ["val"]), "--json", "r.json")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert "Traceback" not in out
    assert text in out and "data/shapes/val/annotations.json" in out
    if record:
        assert record in out
    assert not (tmp_path / "r.json").exists()  # a failed check leaves no report behind


def test_data_check_needs_one_batch_of_training_images(tmp_path):
    text = SMOKE_PROJECT.read_text().replace("  batch_size: 4", "  batch_size: 400")
    assert "batch_size: 400" in text
    make_project(tmp_path, text)
    proc = taomake(tmp_path, "data", "check", "--no-open", "-s", "train")
    out = proc.stdout + proc.stderr  # local annotations: the compiler already catches it
    assert proc.returncode == 2 and "batch_size x GPUs" in out and "= 400" in out


# --------------------------------------------------------------------------- build


@pytest.fixture
def archived(tmp_path) -> Path:
    """The demo project (fake TAO) with its training images as a local images.tar.gz."""
    folder = tmp_path / "proj"
    text = fake_project_text().replace(
        "images: data/shapes/train/images", "images: data/train-images.tar.gz")
    assert "train-images.tar.gz" in text
    make_project(folder, text, copy_data=True)
    make_tar(folder / "data/shapes/train/images", folder / "data/train-images.tar.gz")
    snakemake(folder)
    assert {c[0] for c in calls(folder)} == {"train", "evaluate", "export", "inference"}
    return folder


def relabel(annotations: Path) -> None:
    """New bytes in an annotation file (an `info` record), the same boxes and classes."""
    doc = json.loads(annotations.read_text())
    doc["info"] = {"description": "relabelled"}
    annotations.write_text(json.dumps(doc))


def test_data_changes_rerun_only_what_reads_them(archived):
    folder = archived
    snakemake(folder)
    assert calls(folder) == []
    archive = folder / "data/train-images.tar.gz"
    os.utime(archive)  # same bytes, new mtime: nothing
    for f in (folder / "data/shapes/test/images").iterdir():
        os.utime(f)
    snakemake(folder)
    assert calls(folder) == []

    relabel(folder / "data/shapes/test/annotations.json")
    proc = snakemake(folder)
    assert [c[0] for c in calls(folder)] == ["evaluate"], proc.stderr[-2000:]
    assert "data_check" in proc.stderr  # the test split was checked again

    from PIL import Image

    image = sorted((folder / "data/shapes/train/images").iterdir())[0]
    with Image.open(image) as im:
        changed = im.convert("RGB")
    changed.putpixel((0, 0), (1, 2, 3))
    changed.save(image)
    make_tar(folder / "data/shapes/train/images", archive)  # one training image changed
    proc = snakemake(folder)
    assert {c[0] for c in calls(folder)} == {"train", "evaluate", "export", "inference"}
    assert "stage_data" in proc.stderr


def ran_rules(proc: subprocess.CompletedProcess) -> set[str]:
    return {line.split("rule ")[1].rstrip(":") for line in proc.stderr.splitlines()
            if line.startswith(("rule ", "localrule "))} - {"all"}


def test_moved_copied_or_repacked_data_rebuilds_nothing(archived):
    """Identity is content: the dataset copied elsewhere (new paths, mtimes, inodes) and its
    archive re-packed as a zip (another format, member order and timestamps) is the same
    data, so nothing reruns, nothing is extracted again, and the specs do not change."""
    folder = archived
    specs = {p: p.read_text() for p in (folder / "results/base/specs").glob("*.yaml")}
    elsewhere = folder.parent / "moved" / "datasets"
    shutil.copytree(folder / "data", elsewhere, copy_function=shutil.copy)  # new mtimes
    shutil.rmtree(folder / "data")
    with zipfile.ZipFile(elsewhere / "train-images.zip", "w", zipfile.ZIP_DEFLATED) as z:
        for f in sorted((elsewhere / "shapes/train/images").iterdir(), reverse=True):
            z.write(f, f"images/{f.name}")
    (elsewhere / "train-images.tar.gz").unlink()
    project = folder / "project.yaml"
    text = project.read_text().replace("data/train-images.tar.gz",
                                       f"{elsewhere}/train-images.zip")
    project.write_text(text.replace("data/shapes/", f"{elsewhere}/shapes/"))

    proc = snakemake(folder)
    assert calls(folder) == [] and ran_rules(proc) == set(), proc.stderr[-2000:]
    assert {p: p.read_text() for p in specs} == specs
    # what TAO reads now points at the new place
    assert os.readlink(folder / "results/_data/val-images/images") == \
        str(elsewhere / "shapes/val/images")

    # the control: one changed byte in the copy is new data, and reruns what reads it
    relabel(elsewhere / "shapes/test/annotations.json")
    proc = snakemake(folder)
    assert [c[0] for c in calls(folder)] == ["evaluate"], proc.stderr[-2000:]
