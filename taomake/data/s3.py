"""S3 transfers for staging and uploads (boto3; any S3-compatible store).

Credentials come only from the standard AWS chain (environment, ~/.aws files, instance role);
project.yaml may name an endpoint, a profile and a region, never a secret.  Every error names
the bucket or the URI and the credential *source* ("env", "shared-credentials-file"), never a
key.  Downloads go to a temporary name and are renamed into place only once complete, with
the ETag checked against the one the build planned with before and after the transfer (boto3's
own ranged GETs of one download are pinned to one ETag), so an object replaced mid-build fails
the job instead of being taken for the planned one.
"""

from __future__ import annotations

import hashlib
import os
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, fields
from functools import cached_property
from pathlib import Path
from typing import Any

from taomake.errors import StorageAccessError, StorageError

# botocore error codes that mean "these credentials are not accepted here"
CREDENTIAL_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403",
                    "InvalidToken", "ExpiredToken", "TokenRefreshRequired", "Forbidden"}
MISSING_KEY_CODES = {"NoSuchKey", "404", "NotFound"}
MB = 1024 * 1024


def split_uri(uri: str) -> tuple[str, str]:
    """s3://bucket/some/key -> ("bucket", "some/key")."""
    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {uri}")
    bucket, _, key = uri[len("s3://"):].partition("/")
    return bucket, key


@dataclass(frozen=True)
class ObjectId:
    """What identifies a remote object's content: ETag and size."""

    etag: str
    size: int

    def as_dict(self) -> dict[str, Any]:
        return {"etag": self.etag, "size": self.size}


@dataclass(frozen=True)
class S3Settings:
    """The connection part of project.yaml `storage` (compiler.model.Storage: its defaults and
    help; tests/func/test_data_s3.py checks these agree), light enough for Snakemake's parse; no
    secrets here by construction."""

    endpoint_url: str | None = None
    profile: str | None = None
    region: str | None = None
    max_concurrency: int = 8
    attempts: int = 5

    @classmethod
    def of(cls, storage: Any) -> S3Settings:
        """From the validated `storage` model, or its dump in the cached build plan."""
        get = storage.get if isinstance(storage, dict) else (lambda k: getattr(storage, k))
        return cls(**{f.name: get(f.name) for f in fields(cls)})


class S3Store:
    """A thin client: head, list, download, upload, with errors a user can act on."""

    def __init__(self, settings: S3Settings = S3Settings(),
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.settings = settings
        self._sleep = sleep

    @cached_property
    def _session(self):
        import boto3

        try:
            return boto3.Session(profile_name=self.settings.profile,
                                 region_name=self.settings.region)
        except Exception as exc:  # botocore ProfileNotFound
            raise StorageAccessError(
                f"AWS profile {self.settings.profile!r} not found\n"
                "    fix: create it in ~/.aws/credentials, or change storage.profile") from exc

    @cached_property
    def client(self):
        from botocore.config import Config

        config = Config(
            # botocore retries each request (throttling, 5xx, dropped connections); whole
            # transfers are retried on top of that in `_retrying`.
            retries={"max_attempts": 3, "mode": "standard"},
            connect_timeout=10, read_timeout=60,
            max_pool_connections=max(10, self.settings.max_concurrency + 2))
        return self._session.client("s3", endpoint_url=self.settings.endpoint_url,
                                    config=config)

    @cached_property
    def transfer_config(self):
        from boto3.s3.transfer import TransferConfig

        return TransferConfig(multipart_threshold=8 * MB, multipart_chunksize=8 * MB,
                              max_concurrency=self.settings.max_concurrency, use_threads=True)

    def credential_source(self) -> str:
        creds = self._session.get_credentials()
        return getattr(creds, "method", "unknown") if creds else "none found"

    # ------------------------------------------------------------------ errors

    def _where(self) -> str:
        return self.settings.endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") \
            or os.environ.get("AWS_ENDPOINT_URL") or "AWS S3"

    def _translate(self, exc: Exception, uri: str, doing: str) -> StorageError:
        from botocore.exceptions import (
            ClientError,
            EndpointConnectionError,
            NoCredentialsError,
            PartialCredentialsError,
        )

        bucket, _ = split_uri(uri)
        if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
            return StorageAccessError(
                f"no AWS credentials for bucket {bucket!r} ({doing} {uri})\n"
                "    fix: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE or "
                "storage.profile (project.yaml never holds keys)")
        if isinstance(exc, ClientError):
            err = exc.response.get("Error", {})
            code = str(err.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code == "NoSuchBucket" or (status == 404 and not self._bucket_exists(bucket)):
                return StorageAccessError(
                    f"bucket {bucket!r} does not exist at {self._where()} ({doing} {uri})\n"
                    "    fix: check the bucket name and storage.endpoint_url")
            if code in MISSING_KEY_CODES or status == 404:
                return StorageAccessError(
                    f"{uri} does not exist ({doing})\n"
                    "    fix: check the path in project.yaml (list it with "
                    f"`aws s3 ls {uri.rsplit('/', 1)[0]}/`)")
            if code in CREDENTIAL_CODES or status == 403:
                return StorageAccessError(
                    f"S3 refused access to bucket {bucket!r} at {self._where()} ({code or status}"
                    f"; credentials from: {self.credential_source()})\n"
                    "    fix: check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or the profile, and "
                    "that they may read this bucket")
            if code in ("PreconditionFailed", "412") or status == 412:
                return StorageError(
                    f"{uri} changed while it was being downloaded\n"
                    "    fix: run the build again (it will pick up the new version)")
            return StorageError(f"S3 error {code or status} {doing} {uri}: "
                                f"{err.get('Message', '')}".rstrip(": "))
        if isinstance(exc, EndpointConnectionError):
            return StorageError(f"cannot reach S3 at {self._where()} ({doing} {uri})\n"
                                "    fix: check the endpoint (storage.endpoint_url / "
                                "AWS_ENDPOINT_URL_S3) and the network")
        return StorageError(f"{doing} {uri} failed: {type(exc).__name__}: {exc}")

    def _bucket_exists(self, bucket: str) -> bool:
        """A HEAD's 404 has no body: ask whether the bucket or the key is missing."""
        try:
            self.client.head_bucket(Bucket=bucket)
        except Exception as exc:
            status = getattr(exc, "response", {}).get("ResponseMetadata", {}).get(
                "HTTPStatusCode")
            return status != 404
        return True

    def _transient(self, exc: Exception) -> bool:
        """Worth another try: connection trouble and server errors, not refusals."""
        from botocore.exceptions import (
            ClientError,
            ConnectionError,
            HTTPClientError,
            ResponseStreamingError,
        )

        if isinstance(exc, ClientError):
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
            return status >= 500 or exc.response.get("Error", {}).get("Code") in (
                "SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable")
        if isinstance(exc, (ConnectionError, HTTPClientError, ResponseStreamingError, OSError)):
            return True
        # s3transfer wraps a download's final failure in RetriesExceededError
        return type(exc).__name__ in ("RetriesExceededError", "IncompleteReadError")

    def _retrying(self, uri: str, doing: str, fn: Callable[[], Any],
                  on_retry: Callable[[], None] = lambda: None) -> Any:
        attempts = max(1, self.settings.attempts)
        for attempt in range(1, attempts + 1):
            try:
                return fn()
            except StorageError:
                raise
            except Exception as exc:
                if attempt == attempts or not self._transient(exc):
                    raise self._translate(exc, uri, doing) from exc
                on_retry()
                delay = min(30.0, 2 ** (attempt - 1)) * (0.75 + random.random() / 2)
                print(f"taomake: {doing} {uri}: {type(exc).__name__}; retry {attempt}/"
                      f"{attempts - 1} in {delay:.1f} s", flush=True)
                self._sleep(delay)
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------ operations

    def head(self, uri: str) -> ObjectId:
        bucket, key = split_uri(uri)
        r = self._retrying(uri, "checking", lambda: self.client.head_object(Bucket=bucket,
                                                                            Key=key))
        return ObjectId(r["ETag"].strip('"'), int(r["ContentLength"]))

    def list(self, uri: str) -> dict[str, ObjectId]:
        """Objects under a prefix: relative key -> identity (folders end in '/')."""
        bucket, prefix = split_uri(uri)
        prefix = prefix.rstrip("/") + "/" if prefix else ""

        def listing() -> dict[str, ObjectId]:
            out = {}
            for page in self.client.get_paginator("list_objects_v2").paginate(
                    Bucket=bucket, Prefix=prefix):
                for o in page.get("Contents", []):
                    rel = o["Key"][len(prefix):]
                    if rel and not rel.endswith("/"):
                        out[rel] = ObjectId(o["ETag"].strip('"'), int(o["Size"]))
            return out

        objects = self._retrying(uri, "listing", listing)
        if not objects:
            raise StorageAccessError(f"{uri} holds no objects\n"
                                     "    fix: check the prefix in project.yaml")
        return objects

    def download(self, uri: str, dest: Path, expect: ObjectId | None = None,
                 progress: Callable[[int], None] | None = None) -> int:
        """Download `uri` to `dest` atomically; returns the bytes transferred (retries
        included).  With `expect`, the object must still have that ETag and size."""
        bucket, key = split_uri(uri)
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(f".{dest.name}.part-{os.getpid()}")
        moved = [0]
        lock = threading.Lock()

        def count(n: int) -> None:
            with lock:
                moved[0] += n
            if progress:
                progress(n)

        def same_object() -> None:
            if expect is not None and self.head(uri) != expect:
                raise StorageError(f"{uri} changed since the build was planned\n"
                                   "    fix: run the build again (it will use the new version)")

        def once() -> None:
            same_object()
            self.client.download_file(bucket, key, str(part), Callback=count,
                                      Config=self.transfer_config)
            same_object()

        try:
            self._retrying(uri, "downloading", once, on_retry=lambda: part.unlink(missing_ok=True))
            size = part.stat().st_size
            if expect is not None and size != expect.size:
                raise StorageError(f"{uri}: downloaded {size} bytes, expected {expect.size}")
            os.replace(part, dest)
        finally:
            part.unlink(missing_ok=True)
        return moved[0]

    def upload(self, path: Path, uri: str, metadata: dict[str, str]) -> ObjectId:
        bucket, key = split_uri(uri)

        def once() -> None:
            self.client.upload_file(str(path), bucket, key, ExtraArgs={"Metadata": metadata},
                                    Config=self.transfer_config)

        self._retrying(uri, "uploading", once)
        return self.head(uri)

    def expected_etag(self, path: Path) -> str:
        """The ETag S3 computes for `path` uploaded with this store's transfer settings: the
        MD5 of the bytes, or for a multipart upload the MD5 of the parts' MD5s and "-N".
        Comparing it with the remote ETag compares content S3 itself hashed (not metadata we
        wrote); another part size or SSE-KMS gives another ETag, and the file is re-sent."""
        size = path.stat().st_size
        cfg = self.transfer_config
        if size < cfg.multipart_threshold:
            h = hashlib.md5(usedforsecurity=False)
            with path.open("rb") as f:
                while block := f.read(MB):
                    h.update(block)
            return h.hexdigest()
        chunk = cfg.multipart_chunksize
        while -(-size // chunk) > 10_000:  # what s3transfer's ChunksizeAdjuster does
            chunk *= 2
        parts = []
        with path.open("rb") as f:
            while block := f.read(chunk):
                parts.append(hashlib.md5(block, usedforsecurity=False).digest())
        return f"{hashlib.md5(b''.join(parts), usedforsecurity=False).hexdigest()}-{len(parts)}"

    def check_writable(self, uri: str) -> None:
        """Put and delete a small object under `uri`: the bucket exists and these credentials
        may write there (raises StorageError/StorageAccessError with the fix)."""
        bucket, key = split_uri(uri)
        probe = f"{key.rstrip('/')}/.taomake-write-check-{uuid.uuid4().hex[:12]}".lstrip("/")

        def once() -> None:
            # first: some S3 servers (SeaweedFS) create a missing bucket on the first PUT
            self.client.head_bucket(Bucket=bucket)
            self.client.put_object(Bucket=bucket, Key=probe, Body=b"")
            self.client.delete_object(Bucket=bucket, Key=probe)

        self._retrying(uri, "checking write access to", once)

    def metadata(self, uri: str) -> tuple[ObjectId, dict[str, str]] | None:
        """Identity and user metadata of an object, or None when it does not exist."""
        from botocore.exceptions import ClientError

        bucket, key = split_uri(uri)
        try:
            r = self.client.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                return None
            raise self._translate(exc, uri, "checking") from exc
        except Exception as exc:
            raise self._translate(exc, uri, "checking") from exc
        return ObjectId(r["ETag"].strip('"'), int(r["ContentLength"])), r.get("Metadata", {})
