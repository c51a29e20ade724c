"""Artifacts are hashed once per content: provenance of a pipeline reads model.pth and the
checkpoints many times but hashes each of them once."""

from __future__ import annotations

import hashlib
import os

from taomake.compiler.layout import RECORDS_DIR

import taomake.digests as digests
from taomake.provenance import record_derived


def counting(monkeypatch):
    hashed: list[str] = []
    real = digests.sha256_file

    def sha256_file(path):
        hashed.append(path.name)
        return real(path)

    monkeypatch.setattr(digests, "sha256_file", sha256_file)
    return hashed


def test_a_file_is_hashed_once_until_its_bytes_change(tmp_path, monkeypatch):
    hashed = counting(monkeypatch)
    folder = tmp_path / "train"
    (folder / RECORDS_DIR).mkdir(parents=True)
    model = folder / "model_epoch_000.pth"
    model.write_bytes(b"weights" * 1000)
    want = hashlib.sha256(model.read_bytes()).hexdigest()
    assert [digests.artifact_sha256(model) for _ in range(3)] == [want] * 3
    assert hashed == ["model_epoch_000.pth"]
    # same size, mtime restored: the ctime still tells
    st = model.stat()
    model.write_bytes(b"WEIGHTS" * 1000)
    os.utime(model, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert digests.artifact_sha256(model) == hashlib.sha256(model.read_bytes()).hexdigest()
    assert len(hashed) == 2
    # replaced by another file (a new inode): hashed again
    model.unlink()
    model.write_bytes(b"weights" * 1000)
    assert digests.artifact_sha256(model) == want and len(hashed) == 3


def test_a_corrupt_record_is_rehashed_not_trusted(tmp_path, monkeypatch):
    hashed = counting(monkeypatch)
    (tmp_path / RECORDS_DIR).mkdir()
    f = tmp_path / "model.onnx"
    f.write_bytes(b"onnx")
    digests.artifact_sha256(f)
    record = tmp_path / RECORDS_DIR / "sha256" / "model.onnx.json"
    record.write_text("{not json")
    assert digests.artifact_sha256(f) == hashlib.sha256(b"onnx").hexdigest()
    record.write_text('{"key": [1, 2, 3, 4, 5], "sha256": "forged"}')
    assert digests.artifact_sha256(f) == hashlib.sha256(b"onnx").hexdigest()
    assert len(hashed) == 3


def test_files_outside_taomakes_folders_get_no_record(tmp_path, monkeypatch):
    hashed = counting(monkeypatch)
    teacher = tmp_path / "teacher.pth"
    teacher.write_bytes(b"t")
    digests.artifact_sha256(teacher)
    digests.artifact_sha256(teacher)
    assert len(hashed) == 2 and not (tmp_path / RECORDS_DIR).exists()


def test_provenance_of_a_pipeline_hashes_each_artifact_once(tmp_path, monkeypatch):
    hashed = counting(monkeypatch)
    train = tmp_path / "results/base/train"
    (train / RECORDS_DIR).mkdir(parents=True)
    model = train / "model.pth"
    model.write_bytes(b"m" * 4096)
    for step in ("evaluate", "export", "inference"):  # each consumes model.pth
        out = tmp_path / "results/base" / step
        (out / RECORDS_DIR).mkdir(parents=True)
        (out / "result.json").write_text(step)
        record_derived(tmp_path, step, out, [out / "result.json"], [model], ["x"], 0.0)
    assert hashed.count("model.pth") == 1
