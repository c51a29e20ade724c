"""Where a cache keeps its entries: an S3 prefix or a shared folder, behind one small interface.

Under the location (`cache.url`):

    v1/blobs/<sha256[:2]>/<sha256>           each artifact's bytes, named by their digest
    v1/manifests/<action>/<key>.json          one job's entry: its key's parts, its files

A blob is written whole before anything names it (S3: one PUT or a completed multipart
upload; a folder: temp file + rename), and a manifest is written last, so a reader never sees
a manifest whose blobs were not all sent by its publisher.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

ROOT = "v1"


def blob_name(sha: str) -> str:
    return f"{ROOT}/blobs/{sha[:2]}/{sha}"


def manifest_name(action: str, key: str) -> str:
    return f"{ROOT}/manifests/{action}/{key}.json"


@dataclass(frozen=True)
class Listed:
    name: str  # relative to the cache's location
    size: int
    modified: float  # epoch seconds


class Store(Protocol):
    url: str  # shown to users: never with credentials (compiler.urls refuses them)

    def exists(self, name: str) -> bool: ...

    def put_file(self, path: Path, name: str) -> None: ...

    def put_bytes(self, data: bytes, name: str) -> None: ...

    def get_file(self, name: str, dest: Path) -> None:
        """Download to `dest` (a temporary name the caller renames); FileNotFoundError when
        the object is missing."""
        ...

    def get_bytes(self, name: str) -> bytes | None: ...

    def list(self, prefix: str) -> list[Listed]: ...

    def delete(self, name: str) -> None: ...


class FolderStore:
    """A cache in a folder (`file:///shared/dir`): NFS or a local disk."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.root = Path(url.removeprefix("file://"))

    def _path(self, name: str) -> Path:
        return self.root / name

    def exists(self, name: str) -> bool:
        return self._path(name).is_file()

    def _write(self, name: str, write) -> None:
        dest = self._path(name)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as fh:
                write(fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, dest)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def put_file(self, path: Path, name: str) -> None:
        import shutil

        def copy(fh) -> None:
            with path.open("rb") as src:
                shutil.copyfileobj(src, fh, 1 << 20)

        self._write(name, copy)

    def put_bytes(self, data: bytes, name: str) -> None:
        self._write(name, lambda fh: fh.write(data))

    def get_file(self, name: str, dest: Path) -> None:
        import shutil

        with self._path(name).open("rb") as src, dest.open("wb") as fh:
            shutil.copyfileobj(src, fh, 1 << 20)

    def get_bytes(self, name: str) -> bytes | None:
        try:
            return self._path(name).read_bytes()
        except FileNotFoundError:
            return None

    def list(self, prefix: str) -> list[Listed]:
        base = self._path(prefix)
        if not base.is_dir():
            return []
        out = []
        for path in base.rglob("*"):
            if path.is_file() and not path.name.startswith("."):
                st = path.stat()
                out.append(Listed(str(path.relative_to(self.root)), st.st_size, st.st_mtime))
        return out

    def delete(self, name: str) -> None:
        self._path(name).unlink(missing_ok=True)


class S3CacheStore:
    """A cache under an S3 prefix, through taomake's S3 client (storage settings, the
    standard credential chain, retries, errors that name the bucket)."""

    def __init__(self, url: str, s3) -> None:  # s3: taomake.data.s3.S3Store
        from taomake.data.s3 import split_uri

        self.url, self.s3 = url, s3
        self.bucket, prefix = split_uri(url)
        self.prefix = prefix.strip("/")

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def _uri(self, name: str) -> str:
        return f"s3://{self.bucket}/{self._key(name)}"

    def exists(self, name: str) -> bool:
        return self.s3.metadata(self._uri(name)) is not None

    def put_file(self, path: Path, name: str) -> None:
        self.s3.upload(path, self._uri(name), {})

    def put_bytes(self, data: bytes, name: str) -> None:
        key = self._key(name)
        self.s3._retrying(self._uri(name), "uploading", lambda: self.s3.client.put_object(
            Bucket=self.bucket, Key=key, Body=data))

    def _missing(self, exc: Exception) -> bool:
        response = getattr(exc, "response", None) or {}
        return response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404 or \
            response.get("Error", {}).get("Code") in ("NoSuchKey", "404")

    def get_file(self, name: str, dest: Path) -> None:
        from botocore.exceptions import ClientError

        key = self._key(name)

        def once() -> None:
            try:
                self.s3.client.download_file(self.bucket, key, str(dest),
                                             Config=self.s3.transfer_config)
            except ClientError as exc:
                if self._missing(exc):
                    raise FileNotFoundError(self._uri(name)) from None
                raise

        self.s3._retrying(self._uri(name), "downloading", once)

    def get_bytes(self, name: str) -> bytes | None:
        from botocore.exceptions import ClientError

        key = self._key(name)

        def once() -> bytes | None:
            try:
                return self.s3.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
            except ClientError as exc:
                if self._missing(exc):
                    return None
                raise

        return self.s3._retrying(self._uri(name), "downloading", once)

    def list(self, prefix: str) -> list[Listed]:
        start = self._key(prefix).rstrip("/") + "/"
        cut = len(self.prefix) + 1 if self.prefix else 0

        def listing() -> list[Listed]:
            out = []
            for page in self.s3.client.get_paginator("list_objects_v2").paginate(
                    Bucket=self.bucket, Prefix=start):
                for o in page.get("Contents", []):
                    out.append(Listed(o["Key"][cut:], int(o["Size"]),
                                      o["LastModified"].timestamp()))
            return out

        return self.s3._retrying(self._uri(prefix), "listing", listing)

    def delete(self, name: str) -> None:
        key = self._key(name)
        self.s3._retrying(self._uri(name), "deleting", lambda: self.s3.client.delete_object(
            Bucket=self.bucket, Key=key))


def open_store(url: str, storage: dict) -> Store:
    if url.startswith("file://"):
        return FolderStore(url)
    from taomake.data.s3 import S3Settings, S3Store

    return S3CacheStore(url, S3Store(S3Settings.of(storage)))


def age_days(listed: Listed, now: float | None = None) -> float:
    return ((time.time() if now is None else now) - listed.modified) / 86400


__all__ = ["FolderStore", "Listed", "S3CacheStore", "Store", "age_days", "blob_name",
           "manifest_name", "open_store"]
