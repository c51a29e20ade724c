"""Atomic, change-only file writes and file hashes (light: no third-party imports)."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path


def atomic_write(path: Path, content: str | bytes) -> None:
    """Write via a temp file in the same folder + rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = content.encode() if isinstance(content, str) else content
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_if_changed(path: Path, content: str, *, unchanged_since: int | None = None) -> bool:
    """Write `content` unless the file already holds it.  `unchanged_since` (ns): a file of
    the right size not modified since then is taken as written without reading it (the plan
    cache's time: a spec edited by hand after it is read and put back)."""
    try:
        if unchanged_since is not None:
            st = path.stat()
            if st.st_mtime_ns <= unchanged_since and st.st_size == len(content.encode()):
                return False
        if path.read_text(encoding="utf-8") == content:
            return False
    except (FileNotFoundError, UnicodeDecodeError):
        pass
    atomic_write(path, content)
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
