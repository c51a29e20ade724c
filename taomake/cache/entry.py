"""One job's cache entry: what files it holds, fetching it (verified, placed atomically) and
publishing it (blobs first, deduplicated; the manifest last).

A manifest names each file by its path in the experiment's folder (`train/model_epoch_001.pth`)
and its sha256 and size, or, for a link TAO made (`rtdetr_model_latest.pth`), its target.
Nothing fetched is trusted: a path that leaves the experiment's folder, a blob whose digest
differs or a missing blob turns the whole entry into a miss, with nothing placed.
"""

from __future__ import annotations

import fnmatch
import getpass
import json
import os
import platform
import posixpath
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taomake.compiler.actions import STEPS, Action
from taomake.compiler.files import sha256_file
from taomake.compiler.layout import Layout

from .key import KEY_FORMAT, JobKey, digest
from .store import Store, blob_name, manifest_name

NEAREST_LIMIT = 50  # manifests of an action compared when a job misses (the newest first)


class BadEntry(Exception):
    """A manifest or blob that cannot be trusted; the text names the key and the object."""


@dataclass
class Fetched:
    key: str
    files: int
    bytes: int
    seconds: float
    published: dict[str, Any]
    placed: list[str]  # paths relative to the project folder


@dataclass
class Published:
    key: str
    files: int
    bytes: int
    sent: int  # bytes uploaded (blobs already there are not re-sent), manifest included
    seconds: float


@dataclass
class Nearest:
    key: str
    published: dict[str, Any]
    differs: dict[str, list[str]] = field(default_factory=dict)


# --------------------------------------------------------------------------- a job's files


def _not_its_own(lay: Layout, action: Action) -> list[str]:
    """Files other steps write in the action's folder (patterns, relative to the project)."""
    out = [p for step in STEPS.values() for p in step.produces(lay)]
    if action.trains:  # the hand-off (`taomake select`) and a sweep's rungs
        out += [lay.model(action.name), lay.selection(action.name), lay.rung_record("*")]
    return out


def job_files(root: Path, lay: Layout, action: Action, spec: dict[str, Any]) -> list[str]:
    """What the job left: its folder's files (not taomake's hidden records, not other steps'
    files) and its artifacts elsewhere; paths relative to the project folder."""
    folder = root / lay.folder(action.name)
    skip = _not_its_own(lay, action)
    out: list[str] = []
    for path in sorted(folder.rglob("*")) if folder.is_dir() else ():
        rel = path.relative_to(root).as_posix()
        if any(part.startswith(".") for part in path.relative_to(folder).parts):
            continue
        if (path.is_file() or path.is_symlink()) and not any(
                fnmatch.fnmatchcase(rel, pattern) for pattern in skip):
            out.append(rel)
    out += [p for p in action.produces(lay, spec)
            if not (root / p).is_relative_to(folder) and (root / p).is_file()]
    return out


def _in_experiment(lay: Layout, rel: str) -> str:
    return posixpath.relpath(rel, lay.root)


def _safe(lay: Layout, name: str) -> str:
    """A manifest's file name as a path in the experiment's folder, or BadEntry."""
    norm = posixpath.normpath(name)
    if not isinstance(name, str) or norm != name or name.startswith(("/", "../")) \
            or name in (".", "..") or any(p.startswith(".") for p in name.split("/")):
        raise BadEntry(f"file name {name!r} leaves the experiment's folder")
    return posixpath.join(lay.root, name)


# --------------------------------------------------------------------------- publish


def publisher() -> dict[str, Any]:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "?"
    return {"by": f"{user}@{platform.node()}",
            "when": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def publish(store: Store, key: JobKey, root: Path, lay: Layout, action: Action,
            spec: dict[str, Any], about: dict[str, Any]) -> Published:
    """Send the job's files as blobs (those already there are skipped), then its manifest."""
    from taomake.digests import artifact_sha256

    started = time.monotonic()
    files: dict[str, dict[str, Any]] = {}
    total = sent = 0
    for rel in job_files(root, lay, action, spec):
        path = root / rel
        if path.is_symlink():
            files[_in_experiment(lay, rel)] = {"link": os.readlink(path)}
            continue
        sha, size = artifact_sha256(path), path.stat().st_size
        total += size
        if not store.exists(blob_name(sha)):
            store.put_file(path, blob_name(sha))
            sent += size
        files[_in_experiment(lay, rel)] = {"sha256": sha, "size": size}
    manifest = json.dumps({"format": KEY_FORMAT, "key": key.digest, "action": action.name,
                           "parts": key.parts, "files": files,
                           "published": {**publisher(), **about}}, indent=1,
                          sort_keys=True).encode()
    store.put_bytes(manifest, manifest_name(action.name, key.digest))
    return Published(key.digest, len(files), total, sent + len(manifest),
                     time.monotonic() - started)


# --------------------------------------------------------------------------- fetch


def read_manifest(store: Store, action: str, key: str) -> dict[str, Any] | None:
    """The manifest of `key`, None when there is none, BadEntry when it cannot be read."""
    raw = store.get_bytes(manifest_name(action, key))
    if raw is None:
        return None
    try:
        m = json.loads(raw)
        ok = (m.get("format") == KEY_FORMAT and m.get("key") == key
              and isinstance(m.get("files"), dict) and isinstance(m.get("parts"), dict))
    except (ValueError, AttributeError):
        ok = False
    if not ok:
        raise BadEntry(f"manifest {manifest_name(action, key)} does not parse as a "
                       f"{KEY_FORMAT} entry for key {key[:12]}")
    return m


def _download(store: Store, lay: Layout, root: Path, key: str, name: str,
              entry: dict[str, Any], temps: list[tuple[Path, Path]]) -> int:
    dest = root / _safe(lay, name)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.cache-{os.getpid()}")
    temps.append((tmp, dest))
    if "link" in entry:
        target = str(entry["link"])
        if posixpath.isabs(target) or ".." in target.split("/"):
            raise BadEntry(f"entry {key[:12]}: link {name} -> {target!r} leaves its folder")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(target)
        return 0
    sha = str(entry.get("sha256", ""))
    try:
        store.get_file(blob_name(sha), tmp)
    except FileNotFoundError:
        raise BadEntry(f"entry {key[:12]}: blob {blob_name(sha)} ({name}) is missing") \
            from None
    got = sha256_file(tmp)
    if got != sha or tmp.stat().st_size != entry.get("size"):
        raise BadEntry(f"entry {key[:12]}: blob {blob_name(sha)} ({name}) has sha256 "
                       f"{got[:12]}, not the manifest's {sha[:12]}: refused")
    return tmp.stat().st_size


def fetch(store: Store, key: JobKey, root: Path, lay: Layout) -> Fetched | None:
    """Place the entry of `key`: None when there is none; BadEntry (nothing placed) when it
    cannot be trusted.  Every blob is downloaded and checked before any file is placed."""
    from taomake.digests import remember_sha256

    started = time.monotonic()
    manifest = read_manifest(store, key.action, key.digest)
    if manifest is None:
        return None
    temps: list[tuple[Path, Path]] = []
    size = 0
    try:
        for name, entry in sorted(manifest["files"].items()):
            if not isinstance(entry, dict):
                raise BadEntry(f"entry {key.short}: file {name!r} is not described")
            size += _download(store, lay, root, key.digest, name, entry, temps)
        for tmp, dest in temps:  # all verified: place them
            os.replace(tmp, dest)
    finally:
        for tmp, _ in temps:
            if tmp.is_symlink() or tmp.exists():
                tmp.unlink()
    for name, entry in manifest["files"].items():
        if "sha256" in entry:
            remember_sha256(root / _safe(lay, name), entry["sha256"])
    return Fetched(key.digest, len(temps), size, time.monotonic() - started,
                   manifest.get("published", {}),
                   [_safe(lay, name) for name in sorted(manifest["files"])])


# --------------------------------------------------------------------------- a miss


def _differs(name: str, mine: Any, theirs: Any) -> list[str]:
    """What differs in one part of two keys, in a user's words."""
    if name == "spec":
        from taomake.compiler.writer import changed_keys

        return list(changed_keys(theirs, mine)) if isinstance(theirs, dict) else ["spec"]
    if isinstance(mine, dict) and isinstance(theirs, dict):
        return sorted(k for k in set(mine) | set(theirs)
                      if digest(mine.get(k)) != digest(theirs.get(k)))
    return [name]


def nearest(store: Store, key: JobKey) -> Nearest | None:
    """The published entry of the same action whose key shares most parts with `key`, and
    what differs (spec keys, data paths, upstream artifacts, runtime fields)."""
    listed = sorted(store.list(f"v1/manifests/{key.action}"), key=lambda x: -x.modified)
    best: Nearest | None = None
    for item in listed[:NEAREST_LIMIT]:
        other_key = posixpath.basename(item.name).removesuffix(".json")
        try:
            m = read_manifest(store, key.action, other_key)
        except BadEntry:
            continue
        if m is None:
            continue
        parts = m["parts"]
        differs = {n: _differs(n, key.parts.get(n), parts.get(n))
                   for n in sorted(set(key.parts) | set(parts))
                   if digest(key.parts.get(n)) != digest(parts.get(n))}
        rank = (len(differs), sum(len(v) for v in differs.values()))
        if best is None or rank < (len(best.differs),
                                   sum(len(v) for v in best.differs.values())):
            best = Nearest(other_key, m.get("published", {}), differs)
    return best


__all__ = ["BadEntry", "Fetched", "Nearest", "Published", "fetch", "job_files", "nearest",
           "publish", "read_manifest"]
