"""Staging: turn a remote or archived source into the plain file or folder TAO reads.

Layout under `<results>/_data/<key>/` (key from the URI, compiler.layout.DataSource):

    source.json       identity the build planned with (the stamp; written at DAG time)
    staged.json       completion marker = the staging rule's output (written last)
    state.json        what is materialised now (survives a deleted marker: no re-download)
    annotations.json  a staged annotations file
    images -> v-<id>  a staged image folder: a symlink, swapped atomically, to a folder keyed by
                      the source's identity (an archive's ETag or sha256)
    download/         a downloaded archive, kept until it is extracted

Every byte fetched is appended to `<results>/_data/transfers.jsonl`, so "nothing was
downloaded" is something a user (and a test) can count.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from taomake.compiler.errors import DataError
from taomake.compiler.files import atomic_write
from taomake.compiler.layout import DataSource, Shared
from taomake.errors import UnsafeArchiveError

from .archive import Limits, ensure_free, extract_archive
from .identity import read_stamp
from .s3 import ObjectId, S3Store
from .tree import NameProblem, Tree


@dataclass
class Staged:
    source: DataSource
    downloaded: int  # bytes fetched by this call
    reused: bool  # already materialised with the same identity: nothing done
    seconds: float


def identity_id(identity: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _log_transfer(ledger: Path, uri: str, nbytes: int) -> None:
    line = json.dumps({"time": time.time(), "uri": uri, "bytes": nbytes}) + "\n"
    ledger.parent.mkdir(parents=True, exist_ok=True)
    with open(ledger, "a") as f:  # one short O_APPEND write per transfer
        f.write(line)


def downloaded_bytes(ledger: Path) -> int:
    """Total bytes staging ever downloaded into a results folder (`Shared.transfers`)."""
    try:
        lines = ledger.read_text().splitlines()
    except OSError:
        return 0
    return sum(json.loads(line)["bytes"] for line in lines if line.strip())


def _swap_symlink(link: Path, target_name: str) -> None:
    """Point `link` at `target_name` (a sibling) atomically."""
    tmp = link.with_name(f".{link.name}.link-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    os.symlink(target_name, tmp)
    if link.is_dir() and not link.is_symlink():  # a real folder from elsewhere: replace it
        shutil.rmtree(link)
    os.replace(tmp, link)


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
        state = _read_json(folder / "state.json")
        target = self.root / source.target(self.results)
        marker.unlink(missing_ok=True)
        reused = state.get("id") == want and target.exists()
        downloaded = 0
        if not reused:
            downloaded, extra = self._materialise(source, identity, want, folder, state)
            new_state = {"id": want, "uri": source.uri, "identity": identity, **extra}
            atomic_write(folder / "state.json", json.dumps(new_state, indent=1, sort_keys=True))
        record = {"uri": source.uri, "kind": source.kind, "identity": identity,
                  "target": source.target(self.results), "downloaded_bytes": downloaded}
        atomic_write(marker, json.dumps(record, indent=1, sort_keys=True) + "\n")
        return Staged(source, downloaded, reused, time.monotonic() - started)

    # ------------------------------------------------------------------ one source

    def _materialise(self, source: DataSource, identity: dict[str, Any], want: str,
                     folder: Path, state: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Fetch/extract; returns bytes downloaded and what state.json should remember."""
        folder.mkdir(parents=True, exist_ok=True)
        if source.kind == "file":  # remote annotations
            ensure_free(f"download {source.uri}", identity["size"], folder)
            n = self.store.download(source.uri, folder / "annotations.json",
                                    ObjectId(identity["etag"], identity["size"]))
            _log_transfer(self.ledger, source.uri, n)
            return n, {}
        version = f"v-{want}"
        downloaded, extra = 0, {"version": version}
        if source.archive:
            archive = self.root / source.uri
            if source.remote:
                archive = folder / "download" / source.uri.rsplit("/", 1)[-1]
                if _read_json(folder / "download.json").get("id") != want or \
                        not archive.is_file():
                    ensure_free(f"download {source.uri}", identity["size"], folder)
                    downloaded = self.store.download(source.uri, archive,
                                                     ObjectId(identity["etag"], identity["size"]))
                    _log_transfer(self.ledger, source.uri, downloaded)
                    atomic_write(folder / "download.json", json.dumps({"id": want}))
            if (folder / version).exists():
                shutil.rmtree(folder / version)  # an interrupted swap: extract again
            extracted = extract_archive(archive, folder / version, self.limits)
            print(f"taomake: extracted {extracted.files} files ({extracted.bytes / 1e6:.1f} MB)"
                  f" from {source.uri}" + (f" (top folder {extracted.stripped}/ stripped)"
                                           if extracted.stripped else ""), flush=True)
        else:  # an s3:// folder of images
            downloaded, extra["etags"] = self._sync_folder(source, folder, version, state)
        _swap_symlink(folder / "images", version)
        _clean(folder, keep={version, "images", "source.json", "state.json", "hashes.json"})
        return downloaded, extra

    def _check_listing(self, uri: str, objects: dict[str, ObjectId], folder: Path) -> None:
        """The objects under a prefix become files: their names must make a tree (no
        `a.jpg` beside `a.jpg/b.jpg`, no `..`), and their total must fit the limits and the
        disk."""
        tree = Tree()
        for rel in sorted(objects):
            try:
                tree.add(rel, "file")
            except NameProblem as p:
                raise DataError(f"{uri}: object {p}; nothing was downloaded\n"
                                "    fix: rename or remove that object so that the prefix "
                                "is a plain folder of files") from None
        total = sum(o.size for o in objects.values())
        if total > self.limits.max_bytes:
            raise UnsafeArchiveError(
                f"{uri}: holds {total / 1e9:.1f} GB in {len(objects)} objects, more than "
                f"storage.archive_max_gb ({self.limits.max_bytes / 1e9:g} GB); nothing was "
                "downloaded\n    fix: point the project at a smaller prefix, or raise "
                "storage.archive_max_gb in project.yaml")
        ensure_free(f"download {uri}", total, folder)

    def _sync_folder(self, source: DataSource, folder: Path, version: str,
                     state: dict[str, Any]) -> tuple[int, dict[str, str]]:
        """Download an S3 prefix; files whose ETag did not change are hard-linked from the
        previous version instead of downloaded again."""
        objects = self.store.list(source.uri)
        self._check_listing(source.uri, objects, folder)
        previous = folder / str(state.get("version", ""))
        old_etags = state.get("etags", {}) if previous.is_dir() else {}
        tmp = folder / f".{version}"
        if tmp.exists():
            shutil.rmtree(tmp)
        base = source.uri.rstrip("/") + "/"

        def fetch(rel: str) -> int:
            dest = tmp / rel
            if not dest.resolve().is_relative_to(tmp.resolve()):
                raise DataError(f"object {base}{rel} would be written outside {tmp}")
            dest.parent.mkdir(parents=True, exist_ok=True)
            if old_etags.get(rel) == objects[rel].etag and (previous / rel).is_file():
                os.link(previous / rel, dest)
                return 0
            return self.store.download(base + rel, dest, objects[rel])

        with ThreadPoolExecutor(max_workers=self.store.settings.max_concurrency) as pool:
            downloaded = sum(pool.map(fetch, sorted(objects)))
        _log_transfer(self.ledger, source.uri, downloaded)
        if (folder / version).exists():
            shutil.rmtree(folder / version)
        os.replace(tmp, folder / version)
        return downloaded, {rel: o.etag for rel, o in objects.items()}
