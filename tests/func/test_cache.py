"""The team cache with the fake TAO and a `file://` cache: what is fetched, what misses and
why, what is refused, what read-only never writes, `cache ls` / `gc` (the real TAO and S3
path: tests/func/test_cache_tao.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.func.test_build import calls, edit, fake_project_text, snakemake
from tests.helpers import make_project

pytestmark = pytest.mark.slow

FAKE_RTDETR = Path(__file__).resolve().parents[1] / "fake_tao" / "bin" / "rtdetr"
CURVE = "results/base/train/curve.csv"  # a training alone: the misses these tests are about


def fake_venv(folder: Path, tao: str = "7.3.0", torch: str = "2.5.0") -> Path:
    """The fake TAO as a venv that names its TAO and torch versions (the cache keys on them)."""
    (folder / "bin").mkdir(parents=True)
    (folder / "bin" / "rtdetr").symlink_to(FAKE_RTDETR)
    site = folder / "lib" / "python3.12" / "site-packages"
    for dist, version in (("nvidia_tao_pytorch", tao), ("torch", torch)):
        (site / f"{dist}-{version}.dist-info").mkdir(parents=True)
    return folder


def cached_project(folder: Path, venv: Path, cache: Path, mode: str = "read-write") -> Path:
    text = fake_project_text().replace(str(FAKE_RTDETR.parents[1]), str(venv))
    assert str(venv) in text
    text += f"\ncache:\n  url: file://{cache}\n  mode: {mode}\n"
    return make_project(folder, text)


def clone(tmp_path: Path, venv: Path, cache: Path, mode: str = "read-write",
          name: str = "second") -> Path:
    """Another clone of the project, in its own folder, on the same cache."""
    cached_project(tmp_path / name, venv, cache, mode)
    return tmp_path / name


def taomake(folder: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "taomake.cli", *args], cwd=folder,
                          capture_output=True, text=True)
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def tao_actions(folder: Path) -> list[str]:
    return sorted(action for action, _ in calls(folder))


def listing(cache: Path) -> dict[str, int]:
    return {str(p.relative_to(cache)): p.stat().st_size for p in cache.rglob("*")
            if p.is_file()}


def provenance(folder: Path, action: str) -> dict:
    return json.loads((folder / f"results/base/{action}/.taomake/provenance-{action}.json")
                      .read_text())


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> tuple[Path, Path, Path]:
    """A first clone built with a read-write cache: (its folder, the cache, the venv)."""
    base = tmp_path_factory.mktemp("cache")
    venv, cache = fake_venv(base / "venv"), base / "cache"
    first = base / "first"
    cached_project(first, venv, cache)
    out = snakemake(first)
    assert "published to the cache" in out.stderr
    assert tao_actions(first) == ["evaluate", "export", "inference", "train"]
    return first, cache, venv


def test_second_clone_fetches_everything_and_runs_no_tao(published, tmp_path):
    first, cache, venv = published
    second = tmp_path / "elsewhere" / "second"
    cached_project(second, venv, cache)
    out = snakemake(second)
    assert tao_actions(second) == []  # not one TAO job
    assert out.stderr.count("from cache") == 4, out.stderr[-3000:]
    for rel in ("train/model.pth", "train/curve.csv", "export/model.onnx",
                "evaluate/metrics.json", "inference/summary.json"):
        assert (second / "results/base" / rel).read_bytes() == \
            (first / "results/base" / rel).read_bytes(), rel
    record = provenance(second, "train")["cache"]
    assert record["state"] == "hit" and record["published"]["job"] == "train (base)"
    assert "@" in record["published"]["by"]
    status = taomake(second, "status").stdout
    assert "from cache" in status and "stale" not in status and "missing" not in status
    # built like any other: nothing to do now
    assert "Nothing to be done" in snakemake(second, "-n").stdout + snakemake(second, "-n").stderr


def test_an_inference_edit_runs_and_publishes_inference_only(published, tmp_path):
    first, cache, venv = published
    second = clone(tmp_path, venv, cache)
    snakemake(second)
    calls(second)
    edit(second, "conf_threshold: 0.1", "conf_threshold: 0.2")
    out = snakemake(second)
    assert tao_actions(second) == ["inference"], out.stderr[-2000:]
    assert "published to the cache" in out.stderr
    assert provenance(second, "inference")["cache"]["state"] == "published"
    # a third clone with the same edit fetches it
    third = tmp_path / "third"
    cached_project(third, venv, cache)
    (third / "project.yaml").write_text((second / "project.yaml").read_text())
    snakemake(third)
    assert tao_actions(third) == []


def test_a_changed_tao_version_misses_and_explain_names_it(published, tmp_path):
    first, cache, _ = published
    other = fake_venv(tmp_path / "venv", tao="7.4.0")
    second = clone(tmp_path, other, cache, "read-only")
    out = snakemake(second, CURVE)
    assert tao_actions(second) == ["train"]
    assert "cache miss" in out.stderr and "runtime (tao)" in out.stderr, out.stderr[-3000:]
    why = taomake(second, "explain", "results/base/train/curve.csv").stdout
    assert "runtime (tao)" in why, why


def test_a_changed_data_file_misses_train_and_names_it(published, tmp_path):
    first, cache, venv = published
    second = clone(tmp_path, venv, cache, "read-only")
    (second / "data").unlink()
    shutil.copytree(Path(os.readlink(first / "data")), second / "data")
    ann = second / "data/shapes/train/annotations.json"
    coco = json.loads(ann.read_text())
    coco["annotations"] = coco["annotations"][:-1]
    ann.write_text(json.dumps(coco))
    out = snakemake(second, CURVE)
    assert tao_actions(second) == ["train"]
    assert "data (@results/_data/train-0-annotations" in out.stderr, out.stderr[-3000:]
    why = taomake(second, "explain", "results/base/train/curve.csv").stdout
    assert "data data/shapes/train/annotations.json: its content differs" in why, why


def test_a_changed_spec_misses_and_names_the_key_and_line(published, tmp_path):
    first, cache, venv = published
    second = clone(tmp_path, venv, cache, "read-only")
    edit(second, "  lr: 0.0002", "  lr: 0.0003")
    snakemake(second, CURVE)
    why = taomake(second, "explain", "results/base/train/curve.csv").stdout
    assert "train.optim.lr" in why and "project.yaml:" in why, why


def test_read_only_writes_nothing(published, tmp_path):
    first, cache, venv = published
    before = listing(cache)
    second = clone(tmp_path, venv, cache, "read-only")
    edit(second, "  epochs: 2", "  epochs: 3")  # a miss: trains, and may not publish
    out = snakemake(second, CURVE)
    assert tao_actions(second) == ["train"]
    assert "published" not in out.stderr.replace("published by", "")
    assert listing(cache) == before


def test_read_only_on_s3_leaves_the_bucket_unchanged(s3_env, s3_bucket, tmp_path):
    """A reader (CI) on the team's S3 cache with an edit of its own: its job runs and the
    bucket listing is the same before and after."""
    from tests.func.test_cache_tao import bucket_listing

    bucket, client = s3_bucket
    venv = fake_venv(tmp_path / "venv")
    url = f"s3://{bucket}/team"
    writer = clone(tmp_path, venv, tmp_path / "unused", name="writer")
    snakemake(writer, env={**s3_env, "TAOMAKE_CACHE_URL": url})
    assert len(tao_actions(writer)) == 4
    before = bucket_listing(client, bucket)
    assert len([k for k in before if "/manifests/" in k]) == 4
    reader = clone(tmp_path, venv, tmp_path / "unused", name="reader")
    edit(reader, "conf_threshold: 0.1", "conf_threshold: 0.3")
    out = snakemake(reader, env={**s3_env, "TAOMAKE_CACHE_URL": url,
                                 "TAOMAKE_CACHE_MODE": "read-only"})
    assert tao_actions(reader) == ["inference"], out.stderr[-3000:]
    assert out.stderr.count("from cache") == 3
    assert bucket_listing(client, bucket) == before


def test_a_tampered_blob_is_refused_and_the_job_runs(published, tmp_path):
    first, cache, venv = published
    copy = tmp_path / "cache"
    shutil.copytree(cache, copy)
    manifest = next((copy / "v1/manifests/export").glob("*.json"))
    sha = json.loads(manifest.read_text())["files"]["export/model.onnx"]["sha256"]
    blob = copy / "v1/blobs" / sha[:2] / sha
    blob.write_bytes(blob.read_bytes() + b"tampered")
    second = clone(tmp_path, venv, copy, "read-only")
    out = snakemake(second, "results/base/export/model.onnx")
    assert tao_actions(second) == ["export"], out.stderr[-3000:]
    assert "cache entry refused" in out.stderr and sha[:12] in out.stderr
    assert not list((second / "results/base/export").glob(".*.cache-*"))


def test_an_interrupted_publish_is_a_miss(published, tmp_path):
    """Blobs sent, the manifest never written (what a killed publish leaves): a miss."""
    first, cache, venv = published
    copy = tmp_path / "cache"
    shutil.copytree(cache, copy)
    for manifest in (copy / "v1/manifests/train").glob("*.json"):
        manifest.unlink()
    second = clone(tmp_path, venv, copy, "read-only")
    snakemake(second, CURVE)
    assert tao_actions(second) == ["train"]


def test_environment_overrides_and_turns_off(published, tmp_path):
    first, cache, venv = published
    second = tmp_path / "second"
    cached_project(second, venv, tmp_path / "nowhere")
    snakemake(second, CURVE, env={"TAOMAKE_CACHE_URL": f"file://{cache}",
                                  "TAOMAKE_CACHE_MODE": "read-only"})
    assert tao_actions(second) == []
    third = tmp_path / "third"
    cached_project(third, venv, cache)
    snakemake(third, CURVE, env={"TAOMAKE_CACHE_MODE": "off"})
    assert tao_actions(third) == ["train"]
    bad = snakemake(third, "-F", "results/base/export/model.onnx", check=False,
                    env={"TAOMAKE_CACHE_URL": "s3://key:secret@bucket/x"})
    assert bad.returncode != 0 and "secret" not in bad.stderr + bad.stdout
    assert "TAOMAKE_CACHE_URL has credentials" in bad.stderr + bad.stdout


def test_cache_ls_and_gc(published, tmp_path):
    first, cache, venv = published
    copy = tmp_path / "cache"
    shutil.copytree(cache, copy)
    folder = tmp_path / "p"
    cached_project(folder, venv, copy)
    entries = len(list((copy / "v1/manifests").rglob("*.json")))
    shown = taomake(folder, "cache", "ls").stdout
    assert f"{entries} entries" in shown
    for action in ("train", "evaluate", "export", "inference"):
        assert action in shown, shown
    # the train entry is old; the others are kept
    train_manifest = next((copy / "v1/manifests/train").glob("*.json"))
    files = json.loads(train_manifest.read_text())["files"]
    old = 1_000_000_000
    os.utime(train_manifest, (old, old))
    for entry in files.values():
        if "sha256" in entry:
            blob = copy / "v1/blobs" / entry["sha256"][:2] / entry["sha256"]
            os.utime(blob, (old, old))
    out = taomake(folder, "cache", "gc", "--keep-days", "30").stdout
    assert "removed 1 manifest" in out, out
    assert not train_manifest.exists()
    kept = [json.loads(m.read_text()) for m in (copy / "v1/manifests").rglob("*.json")]
    for m in kept:  # every blob a kept manifest names is still there
        for entry in m["files"].values():
            if "sha256" in entry:
                assert (copy / "v1/blobs" / entry["sha256"][:2] / entry["sha256"]).exists()
    assert len(kept) == entries - 1


def test_a_changed_upstream_artifact_misses_downstream(published, tmp_path):
    """Another checkpoint selected (no retraining: train is a hit) changes model.pth: what
    reads it misses, and explain names the artifact."""
    first, cache, venv = published
    second = clone(tmp_path, venv, cache, "read-only")
    edit(second, "  use_checkpoint: best", "  use_checkpoint: last")  # fake: best is 0
    out = snakemake(second)
    assert tao_actions(second) == ["evaluate", "export", "inference"], out.stderr[-3000:]
    why = taomake(second, "explain", "results/base/evaluate/metrics.json").stdout
    assert "train (base): from cache" in why, why
    assert "upstream (@experiment/train/model.pth)" in why, why
