"""Before a training resumes (taomake.resume): damaged checkpoints are moved aside and TAO's
latest link points at the newest whole epoch; checkpoints of another spec or TAO runtime are
moved aside, not resumed."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import pytest

from taomake.resume import damage, repair_checkpoints


def checkpoint(folder: Path, epoch: int, ema: bool = False) -> Path:
    path = folder / f"model_epoch_{epoch:03d}{'-EMA' if ema else ''}.pth"
    with zipfile.ZipFile(path, "w") as archive:  # what torch.save writes: a zip archive
        archive.writestr("archive/data.pkl", os.urandom(4096))
        archive.writestr("archive/data/0", os.urandom(65536))
    return path


def link_latest(folder: Path, epoch: int) -> Path:
    latest = folder / "rtdetr_model_latest.pth"
    latest.unlink(missing_ok=True)
    latest.symlink_to(f"model_epoch_{epoch:03d}.pth")
    return latest


@pytest.fixture
def train(tmp_path) -> Path:
    folder = tmp_path / "train"
    folder.mkdir()
    for epoch in range(3):
        checkpoint(folder, epoch)
    link_latest(folder, 2)
    return folder


def truncate(path: Path) -> None:
    with open(path, "r+b") as fh:
        fh.truncate(path.stat().st_size // 2)


def test_whole_checkpoints_are_left_alone(train):
    log = io.BytesIO()
    assert repair_checkpoints(train, log) == 2
    assert log.getvalue() == b"" and not (train / ".damaged").exists()
    assert os.readlink(train / "rtdetr_model_latest.pth") == "model_epoch_002.pth"


@pytest.mark.parametrize("how", ["cut short", "empty", "flipped byte"])
def test_a_damaged_newest_checkpoint_is_moved_and_the_previous_resumes(train, how):
    newest = train / "model_epoch_002.pth"
    if how == "cut short":
        truncate(newest)
    elif how == "empty":
        newest.write_bytes(b"")
    else:  # a byte of the stored data changed: its CRC fails
        data = bytearray(newest.read_bytes())
        data[len(data) // 2] ^= 0xFF
        newest.write_bytes(bytes(data))
    checkpoint(train, 2, ema=True)  # the epoch's EMA copy goes with it
    log = io.BytesIO()
    assert repair_checkpoints(train, log) == 1
    assert os.readlink(train / "rtdetr_model_latest.pth") == "model_epoch_001.pth"
    assert sorted(p.name for p in train.glob("*.pth")) == [
        "model_epoch_000.pth", "model_epoch_001.pth", "rtdetr_model_latest.pth"]
    [moved] = list((train / ".damaged").iterdir())
    assert sorted(p.name for p in moved.iterdir()) == [
        "WHY.txt", "model_epoch_002-EMA.pth", "model_epoch_002.pth"]
    why = (moved / "WHY.txt").read_text()
    assert "model_epoch_002.pth: " in why
    assert {"cut short": "not a complete checkpoint archive", "empty": "empty (0 bytes)",
            "flipped byte": "fails the CRC check"}[how] in why, why
    said = log.getvalue().decode()
    assert "damaged checkpoint(s) model_epoch_002.pth moved to" in said
    assert "training resumes from epoch 1 (model_epoch_001.pth)" in said


def test_two_damaged_epochs_resume_from_the_newest_whole_one(train):
    truncate(train / "model_epoch_002.pth")
    (train / "model_epoch_001.pth").write_bytes(b"")
    assert repair_checkpoints(train, None) == 0
    assert os.readlink(train / "rtdetr_model_latest.pth") == "model_epoch_000.pth"


def test_nothing_whole_left_trains_from_scratch(train):
    for epoch in range(3):
        truncate(train / f"model_epoch_{epoch:03d}.pth")
    log = io.BytesIO()
    assert repair_checkpoints(train, log) is None
    assert list(train.glob("*.pth")) == []  # no latest link: TAO starts from scratch
    assert "no whole checkpoint is left: training starts from scratch" in log.getvalue().decode()


def test_a_latest_link_behind_the_newest_whole_epoch_is_moved_up(train):
    link_latest(train, 1)  # TAO died after saving epoch 2, before moving its link
    log = io.BytesIO()
    assert repair_checkpoints(train, log) == 2
    assert os.readlink(train / "rtdetr_model_latest.pth") == "model_epoch_002.pth"
    assert "now at model_epoch_002.pth" in log.getvalue().decode()
    assert not (train / ".damaged").exists()


def test_a_damaged_first_save_is_moved(tmp_path):
    """Before the first periodic checkpoint TAO's latest file is a real file; cut short, it
    goes, and training starts from scratch."""
    latest = tmp_path / "rtdetr_model_latest.pth"
    latest.write_bytes(b"PK\x03\x04 cut")
    assert repair_checkpoints(tmp_path, None) is None
    assert not latest.exists() and list(tmp_path.glob(".damaged/*/rtdetr_model_latest.pth"))


@pytest.mark.parametrize("content,expected", [
    (b"", "empty (0 bytes)"),
    (b"not a zip at all", "not a complete checkpoint archive"),
])
def test_damage_names_what_is_wrong(tmp_path, content, expected):
    path = tmp_path / "model_epoch_000.pth"
    path.write_bytes(content)
    assert expected in damage(path)
    assert damage(checkpoint(tmp_path, 1)) is None


# --------------------------------------------------------------------------- a compatible spec

GUARD_CASES = [
    # (name, recorded spec, recorded runtime, new spec, new runtime, resumed?)
    ("same spec, same runtime", {"train": {"num_epochs": 4}}, "img:1",
     {"train": {"num_epochs": 4}}, "img:1", True),
    ("more epochs", {"train": {"num_epochs": 4}}, "img:1",
     {"train": {"num_epochs": 8}}, "img:1", True),
    ("fewer epochs than saved", {"train": {"num_epochs": 4}}, "img:1",
     {"train": {"num_epochs": 1}}, "img:1", False),
    ("another learning rate", {"train": {"num_epochs": 4, "lr": 1}}, "img:1",
     {"train": {"num_epochs": 4, "lr": 2}}, "img:1", False),
    ("a new TAO image", {"train": {"num_epochs": 4}}, "img:1",
     {"train": {"num_epochs": 4}}, "img:2", False),
    ("recorded before runtimes were", {"train": {"num_epochs": 4}}, None,
     {"train": {"num_epochs": 4}}, "img:1", True),
    ("no record at all", None, None, {"train": {"num_epochs": 4}}, "img:1", False),
]


@pytest.mark.parametrize("name,old,old_runtime,new,runtime,resumed", GUARD_CASES,
                         ids=[c[0] for c in GUARD_CASES])
def test_resume_guard(tmp_path, name, old, old_runtime, new, runtime, resumed):
    import io

    from ruamel.yaml import YAML

    from taomake.resume import RUNTIME_KEY, guard_resume

    out = tmp_path / "train"
    (out / ".taomake").mkdir(parents=True)
    for epoch in range(3):
        checkpoint(out, epoch)
    if old is not None:
        buf = io.StringIO()
        YAML(typ="safe", pure=True).dump({**old, **({RUNTIME_KEY: old_runtime}
                                                    if old_runtime else {})}, buf)
        (out / ".taomake" / "checkpoints-spec.yaml").write_text(buf.getvalue())
    log = io.BytesIO()
    guard_resume(out, new, log, runtime, record=out / ".taomake" / "checkpoints-spec.yaml")
    kept = sorted(p.name for p in out.glob("*.pth"))
    assert (kept == ["model_epoch_000.pth", "model_epoch_001.pth", "model_epoch_002.pth"]) \
        is resumed, log.getvalue()
    if not resumed:
        [moved] = (out / ".stale").iterdir()
        assert len(list(moved.glob("*.pth"))) == 3  # kept aside, never deleted
        if runtime != old_runtime and old_runtime:
            assert "the TAO runtime" in log.getvalue().decode()
            assert RUNTIME_KEY in (moved / "WHY.txt").read_text()
    record = YAML(typ="safe", pure=True).load((out / ".taomake/checkpoints-spec.yaml").read_text())
    assert record[RUNTIME_KEY] == runtime


def test_the_local_runners_runtime_is_its_venvs_tao_version(tmp_path):
    """The local runner ignores tao.version (it names container images): what decides
    whether checkpoints resume is the nvidia-tao-pytorch installed in its venv."""
    from taomake.runners.local import LocalRunner

    runner = LocalRunner(venv=tmp_path)
    assert runner.runtime(None) == f"the TAO of {tmp_path}"
    (tmp_path / "lib/python3.12/site-packages/nvidia_tao_pytorch-7.3.0.dist-info").mkdir(
        parents=True)
    assert runner.runtime(None) == "nvidia-tao-pytorch 7.3.0"
