"""What a data source *is*, cheaply: ETag+size for S3 objects, a listing digest for S3 folders,
content hashes for local files and folders.

Snakemake decides staleness by mtimes, and a copied or touched dataset has new mtimes but the
same content.  So each source gets a stamp file (`<results>/_data/<key>/source.json`) holding
its identity, rewritten only when the identity changes; jobs depend on stamps (or on the staging
marker that depends on one), never on the raw data.  Local hashes are cached by
(size, mtime, inode) so an unchanged file is never read twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from taomake.compiler.errors import DataError
from taomake.compiler.files import atomic_write, sha256_file, write_if_changed
from taomake.compiler.layout import DataSource
from taomake.digests import stat_key

from .s3 import S3Store

HASH_CACHE = "hashes.json"


class _HashCache:
    """Per-source cache: relative name -> [size, mtime_ns, ctime_ns, inode, device, sha256].

    ctime is in the key because an in-place edit can restore the mtime (`touch -d`, rsync -t,
    a careless tool) but never the ctime."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.entries: dict[str, list[Any]] = json.loads(path.read_text())
        except (OSError, ValueError):
            self.entries = {}
        self.fresh: dict[str, list[Any]] = {}
        self.hashed_bytes = 0

    def digest(self, rel: str, path: Path, st: os.stat_result) -> str:
        key = stat_key(st)
        old = self.entries.get(rel)
        if old and old[:-1] == key:
            sha = old[-1]
        else:
            sha = sha256_file(path)
            self.hashed_bytes += st.st_size
        self.fresh[rel] = key + [sha]
        return sha

    def save(self) -> None:
        if self.fresh != self.entries:
            atomic_write(self.path, json.dumps(self.fresh, sort_keys=True))


def local_identity(path: Path, cache_file: Path) -> dict[str, Any]:
    """sha256 of a file, or of a folder's (relative name, sha256) list (hidden files skipped)."""
    cache = _HashCache(cache_file)
    started = time.monotonic()
    try:
        if path.is_file():
            st = path.stat()
            identity = {"sha256": cache.digest(path.name, path, st), "size": st.st_size}
        elif path.is_dir():
            h, files, total = hashlib.sha256(), 0, 0
            for rel, full, st in sorted(_walk(path)):
                h.update(f"{rel}\0{cache.digest(rel, full, st)}\n".encode())
                files += 1
                total += st.st_size
            identity = {"tree_sha256": h.hexdigest(), "files": files, "size": total}
        else:
            raise FileNotFoundError(path)
    except (FileNotFoundError, DataError):
        raise
    except OSError as exc:  # permissions, a vanished file, an I/O error
        raise DataError(f"{exc.filename or path}: cannot be read ({exc.strerror or exc})\n"
                        "    fix: check the file and its permissions") from None
    cache.save()
    if cache.hashed_bytes > 256 * 1024 * 1024:
        print(f"taomake: hashed {cache.hashed_bytes / 1e6:.0f} MB of {path} in "
              f"{time.monotonic() - started:.1f} s (cached from now on)", file=sys.stderr)
    return identity


def _walk(root: Path):
    """(relative name, path, stat) of every file, following symbolic links as TAO does; a link
    that leads back to a folder it is in is a loop (TAO would read forever): an error."""
    st = root.stat()
    stack = [(root, ((st.st_dev, st.st_ino),))]
    while stack:
        folder, ancestors = stack.pop()
        with os.scandir(folder) as it:
            for entry in it:
                if entry.name.startswith("."):
                    continue
                if entry.is_dir():
                    st = entry.stat()
                    ident = (st.st_dev, st.st_ino)
                    if ident in ancestors:
                        rel = Path(entry.path).relative_to(root).as_posix()
                        raise DataError(
                            f"{entry.path}: symbolic link loop ({rel} -> "
                            f"{os.readlink(entry.path) if entry.is_symlink() else '?'} leads "
                            f"back into a folder that contains it)\n"
                            "    fix: remove or replace that link in the image folder")
                    stack.append((Path(entry.path), (*ancestors, ident)))
                elif entry.is_file():
                    full = Path(entry.path)
                    yield full.relative_to(root).as_posix(), full, entry.stat()


def remote_identity(source: DataSource, store: S3Store) -> dict[str, Any]:
    if source.kind == "images" and not source.archive:  # a folder of objects
        objects = store.list(source.uri)
        h = hashlib.sha256()
        for rel in sorted(objects):
            h.update(f"{rel}\0{objects[rel].etag}\0{objects[rel].size}\n".encode())
        return {"listing_sha256": h.hexdigest(), "files": len(objects),
                "size": sum(o.size for o in objects.values())}
    return store.head(source.uri).as_dict()


def identify(source: DataSource, root: Path, results: str, store: S3Store) -> dict[str, Any]:
    if source.remote:
        return remote_identity(source, store)
    folder = root / source.folder(results)
    return local_identity(root / source.uri, folder / HASH_CACHE)


def stamp_text(source: DataSource, identity: dict[str, Any]) -> str:
    return json.dumps({"uri": source.uri, "kind": source.kind, "identity": identity},
                      indent=1, sort_keys=True) + "\n"


def read_stamp(root: Path, results: str, source: DataSource) -> dict[str, Any]:
    return json.loads((root / source.stamp(results)).read_text())["identity"]


def refresh_stamps(root: Path, results: str, sources: list[DataSource],
                   store: S3Store) -> list[DataSource]:
    """Write every source's stamp when its identity changed; returns the changed ones.

    A missing local source is left to the compiler's own check (it names the project key)."""
    changed = []
    for source in sources:
        try:
            identity = identify(source, root, results, store)
        except FileNotFoundError:
            continue
        if write_if_changed(root / source.stamp(results), stamp_text(source, identity)):
            changed.append(source)
    return changed
