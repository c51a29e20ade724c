"""What refreshing data identities costs when nothing changed (every `snakemake` call does it
before planning): a stat per local file, no hashing, and one request per remote source."""

from __future__ import annotations

import io
import shutil
import tarfile

from taomake.compiler.layout import DataSource

import taomake.data.identity as identity
from taomake.data.identity import refresh_stamps
from taomake.data.s3 import S3Settings, S3Store
from tests.helpers import REPO


def counted_hashes(monkeypatch) -> list[str]:
    hashed: list[str] = []
    real = identity.sha256_file

    def sha256_file(path):
        hashed.append(str(path))
        return real(path)

    monkeypatch.setattr(identity, "sha256_file", sha256_file)
    return hashed


def test_unchanged_local_sources_are_stat_not_hashed(tmp_path, monkeypatch):
    shutil.copytree(REPO / "data/shapes/train", tmp_path / "train")
    sources = [DataSource("train/images", "images"),
               DataSource("train/annotations.json", "file")]
    hashed = counted_hashes(monkeypatch)
    assert refresh_stamps(tmp_path, "results", sources, S3Store()) == sources
    images = len(list((tmp_path / "train/images").iterdir()))
    assert len(hashed) == images + 1  # first look: every file once
    hashed.clear()
    assert refresh_stamps(tmp_path, "results", sources, S3Store()) == []
    assert hashed == []  # unchanged: nothing read
    # one image replaced: only that file is hashed again, and the stamp changes
    first = sorted((tmp_path / "train/images").iterdir())[0]
    first.write_bytes(first.read_bytes() + b"\0")
    assert refresh_stamps(tmp_path, "results", sources, S3Store()) == sources[:1]
    assert hashed == [str(first)]


def test_each_remote_source_costs_one_request(tmp_path, s3_env, s3_bucket, monkeypatch):
    bucket, client = s3_bucket
    for k, v in s3_env.items():
        monkeypatch.setenv(k, v)
    images = sorted((REPO / "data/shapes/val/images").iterdir())
    for p in images:  # a folder of objects
        client.put_object(Bucket=bucket, Key=f"val/images/{p.name}", Body=p.read_bytes())
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(REPO / "data/shapes/val/images", arcname="images")
    client.put_object(Bucket=bucket, Key="val/images.tar.gz", Body=buf.getvalue())
    client.put_object(Bucket=bucket, Key="val/annotations.json",
                      Body=(REPO / "data/shapes/val/annotations.json").read_bytes())
    sources = [DataSource(f"s3://{bucket}/val/images", "images"),
               DataSource(f"s3://{bucket}/val/images.tar.gz", "images"),
               DataSource(f"s3://{bucket}/val/annotations.json", "file")]
    store = S3Store(S3Settings())
    sent: list[str] = []
    store.client.meta.events.register("before-send", lambda request, **_: sent.append(
        f"{request.method} {request.url}"))
    assert refresh_stamps(tmp_path, "results", sources, store) == sources
    # a listing (one page), two HEADs, and one download of each object: content is identity
    got = {s.split("?")[0] for s in sent if s.startswith("GET") and "list-type" not in s}
    assert len(got) == len(images) + 2, sent
    sent.clear()
    assert refresh_stamps(tmp_path, "results", sources, store) == []
    assert len(sent) == 3, sent  # unchanged: the same three requests, nothing downloaded
    assert not any(s.startswith("GET") and "list-type" not in s for s in sent), sent
