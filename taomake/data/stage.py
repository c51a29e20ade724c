"""Staging: turn a remote or archived source into the plain file or folder TAO reads.

Layout under `<results>/_data/<key>/` (key: the source's place in the project,
compiler.layout.source_slot):

    source.json       content identity the build planned with (the stamp; written at DAG
                      time; taomake.data.identity)
    hashes.json, etags.json  digest caches (taomake.data.identity)
    staged.json       completion marker = the staging rule's output (written last)
    state.json        what is materialised now (survives a deleted marker: no re-download)
    annotations.json  a staged annotations file
    images -> v-<id>  a staged image folder: a symlink, swapped atomically, to a folder keyed by
                      the source's content identity
    download/         a downloaded archive, kept until it is extracted

Every byte fetched is appended to `<results>/_data/transfers.jsonl`, so "nothing was
downloaded" is something a user (and a test) can count.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from taomake.compiler.errors import DataError
from taomake.compiler.files import atomic_write, replace_with_link
from taomake.compiler.layout import (
    ETAG_CACHE,
    HASH_CACHE,
    SOURCE_DOWNLOAD,
    SOURCE_STAMP,
    SOURCE_STATE,
    DataSource,
    Shared,
)

from .archive import Limits, ensure_free, extract_archive
from .identity import (
    DOWNLOADS,
    check_listing,
    identity_id,
    log_transfer,
    read_stamp,
    remote_identity,
)
from .s3 import ObjectId, S3Store


@dataclass
class Staged:
    source: DataSource
    downloaded: int  # bytes fetched by this call
    reused: bool  # already materialised with the same identity: nothing done
    seconds: float


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def downloaded_bytes(ledger: Path) -> int:
    """Total bytes staging ever downloaded into a results folder (`Shared.transfers`)."""
    try:
        lines = ledger.read_text().splitlines()
    except OSError:
        return 0
    return sum(json.loads(line)["bytes"] for line in lines if line.strip())


def _fetched(folder: Path, etags: dict[str, Any], name: str, rel: str,
             obj: ObjectId) -> Path | None:
    """The copy of an object that learning its identity downloaded (`download/<rel>`), if it
    is still there and of the object the store holds now (`etags`, the folder's ETag cache
    as read once by the caller: its entry `name` records the ETag and size it was downloaded
    at)."""
    path = folder / DOWNLOADS / rel
    entry = etags.get(name)
    if isinstance(entry, list) and entry[:2] == [obj.etag, obj.size] and path.is_file():
        return path
    return None


def _clean(folder: Path, keep: set[str]) -> None:
    """Remove leftovers of earlier versions and interrupted runs."""
    for entry in folder.iterdir():
        if entry.name in keep:
            continue
        # old versions, a downloaded archive once extracted, interrupted temp files
        if entry.name.startswith(("v-", ".v-", "download", ".images")) or ".part-" in entry.name:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


class Stager:
    def __init__(self, root: Path, results: str, store: S3Store | None = None,
                 limits: Limits | None = None) -> None:
        self.root = root
        self.results = results
        self.store = store or S3Store()
        self.limits = limits or Limits()
        self.ledger = root / Shared(results).transfers

    def stage(self, source: DataSource) -> Staged:
        started = time.monotonic()
        folder = self.root / source.folder(self.results)
        marker = self.root / source.marker(self.results)
        try:
            identity = read_stamp(self.root, self.results, source)
        except (OSError, ValueError, KeyError) as exc:
            raise DataError(f"{source.stamp(self.results)} is missing: the build writes it "
                            f"before staging {source.uri}\n    fix: run snakemake (or "
                            "`taomake data stage`) instead of this step alone") from exc
        want = identity_id(identity)
        state = _read_json(folder / SOURCE_STATE)
        target = self.root / source.target(self.results)
        marker.unlink(missing_ok=True)
        reused = state.get("id") == want and target.exists()
        downloaded = 0
        if not reused:
            now = None  # what the store holds now: downloads must get the planned content
            if source.remote:
                found, now = remote_identity(source, self.store, folder, self.ledger,
                                             self.limits)
                if found != identity:
                    raise DataError(f"{source.uri} changed since the build was planned\n"
                                    "    fix: run the build again (it will use the new "
                                    "version)")
            downloaded, extra = self._materialise(source, identity, now, want, folder, state)
            new_state = {"id": want, "uri": source.uri, "identity": identity, **extra}
            atomic_write(folder / SOURCE_STATE, json.dumps(new_state, indent=1, sort_keys=True))
        record = {"uri": source.uri, "kind": source.kind, "identity": identity,
                  "target": source.target(self.results), "downloaded_bytes": downloaded}
        atomic_write(marker, json.dumps(record, indent=1, sort_keys=True) + "\n")
        return Staged(source, downloaded, reused, time.monotonic() - started)

    # ------------------------------------------------------------------ one source

    def _materialise(self, source: DataSource, identity: dict[str, Any], now: Any, want: str,
                     folder: Path, state: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Fetch/extract; returns bytes downloaded and what state.json should remember.
        `now`: the remote object (ObjectId) or objects (name -> ObjectId) to download; what
        learning their identity downloaded (`download/`) is taken instead."""
        folder.mkdir(parents=True, exist_ok=True)
        if source.kind == "file":  # remote annotations
            target = self.root / source.target(self.results)  # Shared.staged_annotations
            fetched = _fetched(folder, _read_json(folder / ETAG_CACHE), "",
                               source.uri.rsplit("/", 1)[-1], now)
            if fetched is not None:
                os.replace(fetched, target)
                return 0, {}
            ensure_free(f"download {source.uri}", now.size, folder)
            n = self.store.download(source.uri, target, now)
            log_transfer(self.ledger, source.uri, n)
            return n, {}
        version = f"v-{want}"
        downloaded, extra = 0, {"version": version}
        if source.archive:
            archive = self.root / source.uri
            if source.remote:
                archive = folder / DOWNLOADS / source.uri.rsplit("/", 1)[-1]
                if _read_json(folder / SOURCE_DOWNLOAD).get("id") != want or \
                        not archive.is_file():
                    ensure_free(f"download {source.uri}", now.size, folder)
                    downloaded = self.store.download(source.uri, archive, now)
                    log_transfer(self.ledger, source.uri, downloaded)
                    atomic_write(folder / SOURCE_DOWNLOAD, json.dumps({"id": want}))
            if (folder / version).exists():
                shutil.rmtree(folder / version)  # an interrupted swap: extract again
            extracted = extract_archive(archive, folder / version, self.limits)
            print(f"taomake: extracted {extracted.files} files ({extracted.bytes / 1e6:.1f} MB)"
                  f" from {source.uri}" + (f" (top folder {extracted.stripped}/ stripped)"
                                           if extracted.stripped else ""), flush=True)
        else:  # an s3:// folder of images
            downloaded, extra["etags"] = self._sync_folder(source, now, folder, version, state)
        replace_with_link(folder / "images", version)
        _clean(folder, keep={version, "images", SOURCE_STAMP, SOURCE_STATE, HASH_CACHE,
                             ETAG_CACHE})
        return downloaded, extra

    def _sync_folder(self, source: DataSource, objects: dict[str, ObjectId], folder: Path,
                     version: str, state: dict[str, Any]) -> tuple[int, dict[str, str]]:
        """Download an S3 prefix; files whose ETag did not change are hard-linked from the
        previous version instead of downloaded again."""
        check_listing(source.uri, objects, folder, self.limits)
        previous = folder / str(state.get("version", ""))
        old_etags = state.get("etags", {}) if previous.is_dir() else {}
        tmp = folder / f".{version}"
        if tmp.exists():
            shutil.rmtree(tmp)
        base = source.uri.rstrip("/") + "/"
        etags = _read_json(folder / ETAG_CACHE)  # once, not per object

        def fetch(rel: str) -> int:
            dest = tmp / rel
            if not dest.resolve().is_relative_to(tmp.resolve()):
                raise DataError(f"object {base}{rel} would be written outside {tmp}")
            dest.parent.mkdir(parents=True, exist_ok=True)
            if old_etags.get(rel) == objects[rel].etag and (previous / rel).is_file():
                os.link(previous / rel, dest)
                return 0
            fetched = _fetched(folder, etags, rel, rel, objects[rel])
            if fetched is not None:
                os.replace(fetched, dest)
                return 0
            return self.store.download(base + rel, dest, objects[rel])

        with ThreadPoolExecutor(max_workers=self.store.settings.max_concurrency) as pool:
            downloaded = sum(pool.map(fetch, sorted(objects)))
        log_transfer(self.ledger, source.uri, downloaded)
        if (folder / version).exists():
            shutil.rmtree(folder / version)
        os.replace(tmp, folder / version)
        return downloaded, {rel: o.etag for rel, o in objects.items()}
