"""Data in a real S3 server (SeaweedFS, scripts/services/s3.sh): the build stages it once,
counts every byte, restages only what changed, survives a server dying mid-download, and
explains wrong credentials and missing keys.  TAO is the fast test double here; the real TAO
run on S3 data is in test_e2e_tao.py."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import pytest
from taomake.compiler.layout import DataSource, Shared

from taomake.data.identity import refresh_stamps
from taomake.data.s3 import S3Settings, S3Store
from taomake.data.stage import Stager, downloaded_bytes
from taomake.errors import StorageAccessError, StorageError
from tests.func.test_build import SNAKEMAKE, calls, fake_project_text
from tests.helpers import REPO, make_project

SPLITS = ("train", "val", "test")


def tar_gz(folder: Path, top: str = "images") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for f in sorted(folder.iterdir()):
            tar.add(f, arcname=f"{top}/{f.name}")
    return buf.getvalue()


def upload_dataset(client, bucket: str) -> None:
    for split in SPLITS:
        base = REPO / "data/shapes" / split
        client.put_object(Bucket=bucket, Key=f"shapes/{split}/images.tar.gz",
                          Body=tar_gz(base / "images"))
        client.put_object(Bucket=bucket, Key=f"shapes/{split}/annotations.json",
                          Body=(base / "annotations.json").read_bytes())


def s3_project_text(bucket: str, base: str | None = None) -> str:
    text = base if base is not None else fake_project_text()
    for split in SPLITS:
        for old, new in ((f"data/shapes/{split}/images",
                          f"s3://{bucket}/shapes/{split}/images.tar.gz"),
                         (f"data/shapes/{split}/annotations.json",
                          f"s3://{bucket}/shapes/{split}/annotations.json")):
            assert text.count(old) == 1, old
            text = text.replace(old, new)
    return text


def run(folder: Path, env: dict[str, str], *args: str, check: bool = True,
        timeout: float = 300):
    full = {**os.environ, **env, "FAKE_TAO_CALLS": str(folder / "calls.txt")}
    proc = subprocess.run([*SNAKEMAKE, *args], cwd=folder, env=full, capture_output=True,
                          text=True, timeout=timeout)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture
def s3_project(tmp_path, s3_env, s3_bucket) -> tuple[Path, dict[str, str], str]:
    bucket, client = s3_bucket
    upload_dataset(client, bucket)
    folder = tmp_path / "proj"
    make_project(folder, s3_project_text(bucket))
    run(folder, s3_env)
    assert {c[0] for c in calls(folder)} == {"train", "evaluate", "export", "inference"}
    return folder, s3_env, bucket


def test_unchanged_s3_data_is_never_downloaded_again(s3_project, s3_bucket):
    folder, env, bucket = s3_project
    data = folder / Shared("results").transfers
    first = downloaded_bytes(data)
    sizes = sum(o["Size"] for o in s3_bucket[1].list_objects_v2(Bucket=bucket)["Contents"])
    assert first == sizes  # each object exactly once
    spec = (folder / "results/base/specs/train.yaml").read_text()
    assert "s3://" not in spec and "results/_data/" in spec

    proc = run(folder, env)
    assert calls(folder) == [] and "Nothing to be done" in proc.stderr
    assert downloaded_bytes(data) == first  # zero bytes the second time

    # replace the test annotations: only that staging, its check and evaluate rerun
    client = s3_bucket[1]
    doc = json.loads((REPO / "data/shapes/test/annotations.json").read_text())
    doc["info"] = {"description": "relabelled"}
    body = json.dumps(doc).encode()
    client.put_object(Bucket=bucket, Key="shapes/test/annotations.json", Body=body)
    proc = run(folder, env)
    assert [c[0] for c in calls(folder)] == ["evaluate"]
    ran = {line.split("rule ")[1].rstrip(":") for line in proc.stderr.splitlines()
           if line.startswith(("rule ", "localrule "))}
    assert ran == {"stage_data", "data_check", "evaluate", "detections", "report", "all"}, ran
    assert downloaded_bytes(data) == first + len(body)


def put_multipart(client, bucket: str, key: str, body: bytes) -> None:
    """Upload `body` as a one-part multipart upload: the same bytes as a plain PUT, another
    ETag (an md5 of md5s with a part count)."""
    up = client.create_multipart_upload(Bucket=bucket, Key=key)
    part = client.upload_part(Bucket=bucket, Key=key, UploadId=up["UploadId"], PartNumber=1,
                              Body=body)
    client.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=up["UploadId"],
                                     MultipartUpload={"Parts": [{"ETag": part["ETag"],
                                                                 "PartNumber": 1}]})


def test_same_content_with_another_etag_or_packing_rebuilds_nothing(s3_project, s3_bucket):
    """Re-uploaded with another ETag (multipart) and re-packed (members in another order,
    other timestamps): the content is the same, so nothing is staged or run again; learning
    that costs one download of each re-uploaded object, once."""
    folder, env, bucket = s3_project
    client = s3_bucket[1]
    ledger = folder / Shared("results").transfers
    before = downloaded_bytes(ledger)
    key = "shapes/val/annotations.json"
    etag = client.head_object(Bucket=bucket, Key=key)["ETag"]
    body = (REPO / "data/shapes/val/annotations.json").read_bytes()
    put_multipart(client, bucket, key, body)
    assert client.head_object(Bucket=bucket, Key=key)["ETag"] != etag
    images = REPO / "data/shapes/train/images"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for f in sorted(images.iterdir(), reverse=True):
            info = tar.gettarinfo(f, arcname=f"images/{f.name}")
            info.mtime = 0
            with open(f, "rb") as fh:
                tar.addfile(info, fh)
    repacked = buf.getvalue()
    assert repacked != tar_gz(images)
    client.put_object(Bucket=bucket, Key="shapes/train/images.tar.gz", Body=repacked)

    proc = run(folder, env)
    ran = {line.split("rule ")[1].rstrip(":") for line in proc.stderr.splitlines()
           if line.startswith(("rule ", "localrule "))}
    assert calls(folder) == [] and ran <= {"all"}, proc.stderr[-2000:]
    assert downloaded_bytes(ledger) == before + len(body) + len(repacked)
    run(folder, env)
    assert calls(folder) == [] and downloaded_bytes(ledger) == before + len(body) + len(repacked)


def test_wrong_credentials_name_the_bucket_not_the_key(s3_project):
    folder, env, bucket = s3_project
    bad = {**env, "AWS_SECRET_ACCESS_KEY": "not-the-secret-1234"}
    (folder / "project.yaml").write_text((folder / "project.yaml").read_text()
                                         .replace("epochs: 2", "epochs: 3"))
    proc = run(folder, bad, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out[-2000:]
    assert f"bucket {bucket!r}" in out and "credentials from: env" in out
    assert "not-the-secret-1234" not in out and env["AWS_ACCESS_KEY_ID"] not in out
    assert "Traceback" not in out
    assert calls(folder) == []  # refused before any job ran


def test_missing_key_names_the_uri(tmp_path, s3_env, s3_bucket):
    bucket, client = s3_bucket
    upload_dataset(client, bucket)
    client.delete_object(Bucket=bucket, Key="shapes/val/annotations.json")
    make_project(tmp_path, s3_project_text(bucket))
    proc = run(tmp_path, s3_env, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2
    assert f"s3://{bucket}/shapes/val/annotations.json does not exist" in out
    assert "Traceback" not in out


# --------------------------------------------------------------------------- faults


def big_archive(tmp_path: Path, mb: int) -> bytes:
    """An uncompressible images.tar (random bytes) of about `mb` MB."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for i in range(mb // 8):
            payload = os.urandom(8 * 1024 * 1024)
            info = tarfile.TarInfo(f"images/blob_{i:03d}.bin")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return buf.getvalue()


def stamped(tmp_path: Path, uri: str, store: S3Store) -> tuple[DataSource, Stager]:
    source = DataSource(uri, "images")
    refresh_stamps(tmp_path, "results", [source], store)
    return source, Stager(tmp_path, "results", store)


def kill_when_downloading(server, folder: Path, timeout: float = 60) -> threading.Thread:
    """Kill the server as soon as a partial download file appears under `folder`."""

    def watch() -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for _dirpath, _dirs, files in os.walk(folder):
                if any(".part-" in f and os.path.getsize(os.path.join(_dirpath, f)) > 0
                       for f in files):
                    server.kill()
                    return
            time.sleep(0.005)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    return t


def no_partial_files(folder: Path) -> list[str]:
    return [str(p) for p in folder.rglob("*") if ".part-" in p.name or p.name.endswith(".tmp")]


def test_server_dies_mid_download_then_the_retry_succeeds(tmp_path, private_s3,
                                                          monkeypatch):
    client = private_s3.client()
    client.create_bucket(Bucket="data")
    body = big_archive(tmp_path, 160)
    client.put_object(Bucket="data", Key="big/images.tar", Body=body)
    monkeypatch.setattr(os, "environ", {**os.environ, **private_s3.env})
    restarted = []

    def sleep_then_restart(_seconds: float) -> None:  # the backoff: bring the server back
        if not restarted:
            private_s3.start()
            private_s3.wait_readable("data", "big/images.tar")
            restarted.append(True)

    store = S3Store(S3Settings(attempts=3, max_concurrency=4), sleep=sleep_then_restart)
    # the one download is the one that learns the archive's content (staging extracts it)
    watcher = kill_when_downloading(private_s3, tmp_path / "results")
    source, stager = stamped(tmp_path, "s3://data/big/images.tar", store)
    watcher.join(1)
    assert restarted, "the server was never killed: the download finished too fast"
    done = stager.stage(source)
    target = tmp_path / source.target("results")
    assert len(list(target.iterdir())) == 20
    assert done.downloaded == 0  # staging took that download
    # the retry fetched everything again
    assert downloaded_bytes(tmp_path / Shared("results").transfers) >= len(body)
    assert no_partial_files(tmp_path) == []


def test_server_gone_fails_cleanly_and_a_rerun_completes(tmp_path, private_s3, monkeypatch):
    client = private_s3.client()
    client.create_bucket(Bucket="data")
    client.put_object(Bucket="data", Key="big/images.tar", Body=big_archive(tmp_path, 160))
    monkeypatch.setattr(os, "environ", {**os.environ, **private_s3.env})
    store = S3Store(S3Settings(attempts=2), sleep=lambda s: None)
    source = DataSource("s3://data/big/images.tar", "images")
    watcher = kill_when_downloading(private_s3, tmp_path / "results")
    with pytest.raises(StorageError) as err:  # learning its content needs the download
        stamped(tmp_path, source.uri, store)
    watcher.join(1)
    assert "s3://data/big/images.tar" in str(err.value)
    assert not (tmp_path / source.stamp("results")).exists()
    assert not (tmp_path / source.marker("results")).exists()
    assert not (tmp_path / source.target("results")).exists()
    assert no_partial_files(tmp_path) == []

    private_s3.start()
    private_s3.wait_readable("data", "big/images.tar")
    store = S3Store(S3Settings(attempts=2))
    source, stager = stamped(tmp_path, source.uri, store)
    done = stager.stage(source)
    assert not done.reused and len(list((tmp_path / source.target("results")).iterdir())) == 20
    assert (tmp_path / source.marker("results")).exists()


def test_store_errors_are_user_errors(private_s3, monkeypatch):
    monkeypatch.setattr(os, "environ", {**os.environ, **private_s3.env})
    private_s3.client().create_bucket(Bucket="data")
    store = S3Store(S3Settings(attempts=1))
    with pytest.raises(StorageAccessError, match="s3://data/nope.json does not exist"):
        store.head("s3://data/nope.json")
    with pytest.raises(StorageAccessError, match="bucket 'nobucket'"):
        store.head("s3://nobucket/x.json")


# --------------------------------------------------------------------------- upload


def test_upload_pushes_artifacts_with_checksums_once(tmp_path, s3_env, s3_bucket):
    bucket, client = s3_bucket
    folder = tmp_path / "proj"
    text = fake_project_text() + f"upload:\n  to: s3://{bucket}/runs\n" \
        "  artifacts: [model, onnx, metrics]\n"
    make_project(folder, text)
    run(folder, s3_env)
    receipt = json.loads((folder / "results/base/upload.json").read_text())
    by_artifact = {e["artifact"]: e for e in receipt["files"]}
    assert set(by_artifact) == {"model", "onnx", "metrics"}
    onnx = by_artifact["onnx"]
    assert onnx["uri"] == f"s3://{bucket}/runs/base/export/model.onnx" and onnx["sent"]
    head = client.head_object(Bucket=bucket, Key="runs/base/export/model.onnx")
    import hashlib

    local = hashlib.sha256((folder / "results/base/export/model.onnx").read_bytes())
    assert head["Metadata"]["sha256"] == local.hexdigest() == onnx["sha256"]

    # the upload reruns after an evaluate-only change, but resends nothing unchanged
    (folder / "project.yaml").write_text((folder / "project.yaml").read_text()
                                         .replace("data/shapes/test/", "data/shapes/val/"))
    run(folder, s3_env)
    receipt = json.loads((folder / "results/base/upload.json").read_text())
    sent = {e["artifact"]: e["sent"] for e in receipt["files"]}
    assert sent["model"] is False and sent["onnx"] is False  # unchanged: not sent again

    # someone replaced the remote ONNX with other bytes of the same size and kept our sha256
    # metadata: the ETag S3 computed differs, so it is sent again (metadata is not trusted)
    onnx_bytes = (folder / "results/base/export/model.onnx").read_bytes()
    client.put_object(Bucket=bucket, Key="runs/base/export/model.onnx",
                      Body=bytes(len(onnx_bytes)), Metadata={"sha256": local.hexdigest()})
    proc = subprocess.run([sys.executable, "-m", "taomake.cli", "data", "upload", "-e", "base",
                           "--receipt", str(tmp_path / "receipt.json")], cwd=folder,
                          env={**os.environ, **s3_env}, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    sent = {e["artifact"]: e["sent"] for e in json.loads((tmp_path / "receipt.json")
                                                         .read_text())["files"]}
    assert sent == {"model": False, "onnx": True, "metrics": False}
    body = client.get_object(Bucket=bucket, Key="runs/base/export/model.onnx")["Body"].read()
    assert body == onnx_bytes


def test_expected_etag_matches_what_s3_computes(tmp_path, s3_env, s3_bucket, monkeypatch):
    """Single-part and multipart (8 MB parts): our ETag of a local file equals the server's."""
    bucket, _client = s3_bucket
    for k, v in s3_env.items():
        monkeypatch.setenv(k, v)
    store = S3Store(S3Settings())
    for size in (1000, 20 * 1024 * 1024 + 5):
        path = tmp_path / f"f{size}"
        path.write_bytes(os.urandom(size))
        oid = store.upload(path, f"s3://{bucket}/etag/{size}", {})
        assert store.expected_etag(path) == oid.etag
        assert ("-" in oid.etag) == (size > 8 * 1024 * 1024)


def test_data_stage_by_hand(tmp_path, s3_env, s3_bucket):
    bucket, client = s3_bucket
    upload_dataset(client, bucket)
    make_project(tmp_path, s3_project_text(bucket))
    env = {**os.environ, **s3_env}
    cmd = [sys.executable, "-m", "taomake.cli", "data", "stage"]
    first = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    assert first.stdout.count("MB downloaded") == 6
    again = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert again.stdout.count("up to date") == 6


def test_s3_settings_are_project_storage_settings():
    """One set of defaults: the light S3Settings (read at Snakemake's parse) has the fields of
    project.yaml's `storage` it needs, with the model's defaults, and reads the plan's dump."""
    from dataclasses import fields

    from taomake.compiler.model import Storage

    for f in fields(S3Settings):
        assert Storage.model_fields[f.name].default == f.default, f.name
    storage = Storage(endpoint_url="http://127.0.0.1:9000", attempts=2)
    assert S3Settings.of(storage) == S3Settings.of(storage.model_dump()) == S3Settings(
        endpoint_url="http://127.0.0.1:9000", attempts=2)
