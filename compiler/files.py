"""Atomic, change-only file writes and file hashes (light: no third-party imports)."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from .errors import WriteError


def atomic_write(path: Path, content: str | bytes, *, durable: bool = True) -> None:
    """Write via a temp file in the same folder + rename: readers never see half a file.
    `durable`: on disk before the rename (fsync).  Files derived again from others on every
    run (specs: their size and time are checked against the plan cache, which is durable) skip
    it: a thousand fsyncs are a fifth of compiling a 200-experiment project.
    A full disk, quota, read-only filesystem or missing permission is a WriteError naming
    `path`; nothing half-written is left."""
    data = content.encode() if isinstance(content, str) else content
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if WriteError.caught(exc):
            raise WriteError(path, exc) from None
        raise


def untouched_since(path: Path, size: int, since: int | None) -> bool:
    """True if `path` has `size` bytes and was not modified after `since` (ns): a file the
    plan cache wrote before that time, taken as written without reading it (one edited by hand
    afterwards is read and put back)."""
    if since is None:
        return False
    try:
        st = path.stat()
    except OSError:
        return False
    return st.st_mtime_ns <= since and st.st_size == size


def write_if_changed(path: Path, content: str, *, unchanged_since: int | None = None,
                     durable: bool = True) -> bool:
    """Write `content` unless the file already holds it (`unchanged_since`: see
    `untouched_since`; `durable`: see `atomic_write`)."""
    if untouched_since(path, len(content.encode()), unchanged_since):
        return False
    try:
        if path.read_text(encoding="utf-8") == content:
            return False
    except (FileNotFoundError, UnicodeDecodeError):
        pass
    atomic_write(path, content, durable=durable)
    return True


def replace_with_link(link: Path, text: str) -> None:
    """Make `link` a symbolic link to `text`, atomically (a real folder there is removed)."""
    link.parent.mkdir(parents=True, exist_ok=True)
    tmp = link.with_name(f".{link.name}.link-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    os.symlink(text, tmp)
    if link.is_dir() and not link.is_symlink():
        shutil.rmtree(link)
    os.replace(tmp, link)


def link_local_source(root: Path, uri: str, link_rel: str) -> bool:
    """Point `root/link_rel` (where specs name a local data source) at `root/uri`: relative
    inside the project folder (it moves with it), absolute outside.  True if it changed; a
    source that does not exist is left to the compiler's check (it names the project key)."""
    data = Path(os.path.normpath(root / uri))
    if not data.exists():
        return False
    link = root / link_rel
    text = os.path.relpath(data, link.parent) if data.is_relative_to(root) else str(data)
    try:
        if os.readlink(link) == text:
            return False
    except OSError:
        pass
    replace_with_link(link, text)
    return True


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def nearest_existing(path: Path) -> Path:
    """`path` or its closest existing parent (where a disk-space question can be asked)."""
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    return path
