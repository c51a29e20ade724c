"""sha256 of built artifacts, computed once per content.

A pipeline reads the same big files many times: model.pth is consumed by evaluate, export and
inference (each records its digest in provenance), and every training job records every
checkpoint of its folder.  Each digest is kept beside the file, in its folder's records
(`.taomake/sha256/<name>.json`), keyed by what changes when the bytes do (size, mtime, ctime,
inode, device: an in-place edit that restores the mtime still changes the ctime), so a file
is hashed once after it is written and read back afterwards.  Only folders taomake writes
records in (TAO's output folders) get a cache; any other file is hashed each time.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from taomake.compiler.files import atomic_write, sha256_file
from taomake.compiler.layout import RECORDS_DIR, digest_record


def stat_key(st: os.stat_result) -> list[int]:
    """What changes when a file's bytes do (also an in-place edit that restores the mtime:
    the ctime still moves); the data-source hash cache keys on it too."""
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


def _record(path: Path) -> Path:
    return Path(digest_record(str(path.parent), path.name))


def artifact_sha256(path: Path, *, remember: bool = True) -> str:
    """The file's sha256, from its record when the file is unchanged since it was hashed
    (`remember=False`: no record written, for commands that only read)."""
    path = Path(path)
    key = stat_key(path.stat())
    record = _record(path)
    try:
        old = json.loads(record.read_text())
        if old["key"] == key:
            return old["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    sha = sha256_file(path)
    if remember and stat_key(path.stat()) == key:  # not changed while it was read
        _remember(path, key, sha)
    return sha


def remember_sha256(path: Path, sha: str) -> None:
    """Record the digest of a file just checked against it (a fetched cache blob), so the
    next `artifact_sha256` does not read it again."""
    path = Path(path)
    _remember(path, stat_key(path.stat()), sha)


def _remember(path: Path, key: list[int], sha: str) -> None:
    """Keep `sha` for the file version `key`, in folders taomake keeps records in."""
    if not (path.parent / RECORDS_DIR).is_dir():
        return
    try:  # a cache: failing to write it costs a re-hash next time, nothing else
        atomic_write(_record(path), json.dumps({"key": key, "sha256": sha}) + "\n")
    except OSError:
        pass
