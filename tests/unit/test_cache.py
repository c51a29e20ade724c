"""taomake.cache: what is in a job's key and what is not, publish/fetch against a folder
store, and what a fetched entry must prove before anything is placed."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest
from taomake.compiler import compile_project, load_project_text
from taomake.compiler.actions import ACTIONS
from taomake.compiler.errors import UsageError
from taomake.compiler.layout import Layout

from taomake.cache import CacheSettings, cache_settings
from taomake.cache.entry import BadEntry, fetch, nearest, publish
from taomake.cache.key import JobKey, NoKey, job_key, portable
from taomake.cache.store import FolderStore, blob_name, manifest_name
from tests.helpers import SMOKE_PROJECT, make_project

RUNTIME = {"tao": "7.3.0", "torch": "2.5.0", "compat": "abc"}
BASE = Layout("results", "base")


def specs(tmp_path: Path, text: str) -> dict[str, dict]:
    make_project(tmp_path / "p", text)
    lp = load_project_text(text, tmp_path / "p" / "project.yaml")
    return {a: s.data for a, s in compile_project(lp)["base"].specs.items()}


def key_of(spec: dict, lay: Layout = BASE, action: str = "train",
           runtime=RUNTIME, root: Path = Path("/nowhere")) -> JobKey:
    return job_key(ACTIONS[action], spec, lay, root=root, results=lay.results, sources=[],
                   consumed=[], runtime=runtime)


# --------------------------------------------------------------------------- the key


@pytest.mark.parametrize("old,new", [
    ("    kind: local", "    kind: docker"),  # the runner
    ("  shm_size: 2g", "  shm_size: 8g"),
    ("    kind: local", "    kind: local\n    log_level: DEBUG"),
    ("hardware:\n", "hardware:\n  slurm: {partition: gpu, time_minutes: 30, account: lab}\n"),
])
def test_runner_slurm_and_log_settings_are_not_in_the_key(tmp_path, old, new):
    text = SMOKE_PROJECT.read_text()
    assert old in text
    before = specs(tmp_path / "a", text)
    after = specs(tmp_path / "b", text.replace(old, new, 1))
    for action in before:
        assert key_of(before[action], action=action).digest == \
            key_of(after[action], action=action).digest, action


def test_what_tao_does_is_in_the_key(tmp_path):
    text = SMOKE_PROJECT.read_text()
    base = specs(tmp_path / "a", text)["train"]
    lr = specs(tmp_path / "b", text.replace("  lr: 0.0002", "  lr: 0.0003"))["train"]
    assert key_of(base).digest != key_of(lr).digest
    assert key_of(base).digest != key_of(base, runtime={**RUNTIME, "tao": "7.4.0"}).digest
    assert key_of(base).digest != key_of(base, action="distill").digest


def test_the_key_is_location_independent():
    spec = {"results_dir": "results/base", "train": {"gpu_ids": [0], "num_epochs": 2},
            "dataset": {"json_file": "results/_data/x/annotations.json"},
            "wandb": {"enable": True, "project": "mine"}}
    moved = {"results_dir": "out/exp1", "train": {"gpu_ids": [3], "num_epochs": 2},
             "dataset": {"json_file": "out/_data/x/annotations.json"}, "wandb": {"enable": False}}
    assert portable(spec, Layout("results", "base")) == portable(moved, Layout("out", "exp1"))
    assert portable(spec, Layout("results", "base"))["results_dir"] == "@experiment"


def test_upstream_and_data_identities_chain(tmp_path):
    lay = Layout("results", "base")
    model = tmp_path / lay.model("train")
    model.parent.mkdir(parents=True)
    model.write_bytes(b"one")
    spec = {"evaluate": {"checkpoint": lay.model("train")}}

    def key() -> str:
        return job_key(ACTIONS["evaluate"], spec, lay, root=tmp_path, results="results",
                       sources=[], consumed=[lay.model("train")], runtime=RUNTIME).digest

    first = key()
    model.write_bytes(b"two")
    assert key() != first
    model.unlink()
    with pytest.raises(NoKey, match="missing"):
        key()


def test_no_runtime_or_no_gpu_means_no_key(tmp_path, monkeypatch):
    with pytest.raises(NoKey, match="runtime"):
        key_of({}, runtime=None)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(NoKey, match="nvidia-smi"):
        key_of({"gen_trt_engine": {}}, action="gen_trt_engine")
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'NVIDIA A100-SXM4-80GB, 8.0'\n")
    smi.chmod(0o755)
    key = key_of({"gen_trt_engine": {}}, action="gen_trt_engine")
    assert key.parts["gpu"] == ["NVIDIA A100-SXM4-80GB, 8.0"]


def test_settings_environment_over_project():
    configured = {"url": "s3://team/cache", "mode": "read-write"}
    assert cache_settings(None, {}) is None
    assert cache_settings(configured, {}) == CacheSettings("s3://team/cache", "read-write")
    assert cache_settings(configured, {"TAOMAKE_CACHE_MODE": "off"}) is None
    assert cache_settings(None, {"TAOMAKE_CACHE_URL": "file:///shared/c"}).writable
    assert not cache_settings(configured, {"TAOMAKE_CACHE_MODE": "read-only"}).writable
    with pytest.raises(UsageError) as exc:
        cache_settings(None, {"TAOMAKE_CACHE_URL": "s3://AKIA:s3cr3t@bucket/x"})
    assert "s3cr3t" not in str(exc.value)
    with pytest.raises(UsageError, match="cache mode"):
        cache_settings(configured, {"TAOMAKE_CACHE_MODE": "sometimes"})


# --------------------------------------------------------------------------- entries


@pytest.fixture
def built(tmp_path) -> tuple[Path, Layout, dict]:
    """An export's folder as a job leaves it."""
    root, lay = tmp_path / "proj", Layout("results", "base")
    folder = root / lay.folder("export")
    (folder / ".taomake").mkdir(parents=True)
    (folder / "model.onnx").write_bytes(os.urandom(3000))
    (folder / "status.json").write_text('{"status": "SUCCESS"}\n')
    (folder / ".taomake" / "built-export.yaml").write_text("hidden\n")
    (root / lay.parity).write_text("{}")  # the parity step's, not the export's
    return root, lay, {"export": {}}


def test_publish_then_fetch_elsewhere(built, tmp_path):
    root, lay, spec = built
    store = FolderStore(f"file://{tmp_path / 'cache'}")
    key = key_of(spec, action="export")
    done = publish(store, key, root, lay, ACTIONS["export"], spec, {"job": "export (base)"})
    assert done.files == 2  # not the hidden records, not parity.json
    again = publish(store, key, root, lay, ACTIONS["export"], spec, {"job": "export (base)"})
    manifest = store.get_bytes(manifest_name("export", key.digest))
    assert again.sent == len(manifest)  # a re-publish sends the manifest only

    other = tmp_path / "other"
    got = fetch(store, key, other, Layout("results", "base"))
    assert got is not None and got.files == 2
    assert (other / lay.onnx).read_bytes() == (root / lay.onnx).read_bytes()
    assert not (other / lay.parity).exists()
    assert fetch(store, key_of({"export": {"x": 1}}, action="export"), other, lay) is None


def test_a_bad_blob_or_manifest_places_nothing(built, tmp_path):
    root, lay, spec = built
    store = FolderStore(f"file://{tmp_path / 'cache'}")
    key = key_of(spec, action="export")
    publish(store, key, root, lay, ACTIONS["export"], spec, {})
    m = json.loads(store.get_bytes(manifest_name("export", key.digest)))
    sha = m["files"]["export/model.onnx"]["sha256"]
    blob = store.root / blob_name(sha)
    blob.write_bytes(b"x" + blob.read_bytes()[1:])
    other = tmp_path / "other"
    with pytest.raises(BadEntry, match=sha[:12]):
        fetch(store, key, other, lay)
    assert not [p for p in other.rglob("*") if p.is_file()]  # not even status.json
    blob.unlink()
    with pytest.raises(BadEntry, match="missing"):
        fetch(store, key, other, lay)
    m["files"]["../../etc/passwd"] = {"sha256": sha, "size": 1}
    store.put_bytes(json.dumps(m).encode(), manifest_name("export", key.digest))
    with pytest.raises(BadEntry, match="leaves"):
        fetch(store, key, other, lay)
    store.put_bytes(b"{not json", manifest_name("export", key.digest))
    with pytest.raises(BadEntry, match="does not parse"):
        fetch(store, key, other, lay)


def test_two_publishers_of_one_key_leave_one_valid_manifest(built, tmp_path):
    root, lay, spec = built
    store = FolderStore(f"file://{tmp_path / 'cache'}")
    key = key_of(spec, action="export")
    errors = []

    def one() -> None:
        try:
            publish(store, key, root, lay, ACTIONS["export"], spec, {})
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert fetch(store, key, tmp_path / "other", lay).files == 2
    assert [p.name for p in (store.root / "v1/manifests/export").iterdir()] == [
        f"{key.digest}.json"]


def test_nearest_names_what_differs(built, tmp_path):
    root, lay, spec = built
    store = FolderStore(f"file://{tmp_path / 'cache'}")
    publish(store, key_of({"export": {"opset_version": 17}}, action="export"), root, lay,
            ACTIONS["export"], spec, {})
    publish(store, key_of({"export": {"opset_version": 17}}, action="export",
                          runtime={**RUNTIME, "torch": "9"}), root, lay, ACTIONS["export"],
            spec, {})
    near = nearest(store, key_of({"export": {"opset_version": 18}}, action="export"))
    assert near.differs == {"spec": ["export.opset_version"]}
    near = nearest(store, key_of({"export": {"opset_version": 17}}, action="export",
                                 runtime={**RUNTIME, "tao": "8"}))
    assert near.differs == {"runtime": ["tao"]}


def test_a_converted_image_is_keyed_by_its_bytes(tmp_path):
    from taomake.runners import image_file_identity

    sif = tmp_path / "images" / "tao.sif"
    assert image_file_identity(sif) is None
    sif.parent.mkdir()
    sif.write_bytes(b"image one")
    one = image_file_identity(sif)
    sif.write_bytes(b"image two")
    assert image_file_identity(sif) != one and set(one) == {"image_file"}
