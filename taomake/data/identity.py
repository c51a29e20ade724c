"""What a data source *is*: a digest of its content, wherever it lies.

Snakemake decides staleness by mtimes, and a copied, moved or touched dataset has new mtimes
(and a new path) but the same content.  So each source gets a stamp file
(`<results>/_data/<key>/source.json`, key = its place in the project) holding its content
identity, rewritten only when that changes; jobs depend on stamps (or on the staging marker
that depends on one), never on the raw data, and specs name the data inside that folder (a
link to a local source, which `compiler.plan.load_plan` keeps pointing at wherever it is
now).  Identities:

* a file: sha256 and size; a folder: sha256 over (relative name, sha256) of its files;
* an archive: sha256 over (member path, content sha256) of what extraction writes
  (`archive.archive_identity`), so re-packing the same members changes nothing;
* on S3 the same, of the objects' content: an ETag is only a hint (the same bytes uploaded
  with another part size get another ETag), so an object whose ETag is new is downloaded
  once and hashed; an unchanged source costs one HEAD or LIST request.

Paths and ETags are only hints for caches: local hashes are cached by (size, mtime, ctime,
inode, device), S3 digests by (ETag, size), each under the source's folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from taomake.compiler.errors import DataError
from taomake.compiler.files import (
    atomic_write,
    sha256_file,
    write_if_changed,
)
from taomake.compiler.layout import (
    ETAG_CACHE,
    HASH_CACHE,
    SOURCE_DOWNLOAD,
    DataSource,
    Shared,
    is_archive,
)
from taomake.digests import stat_key
from taomake.errors import UnsafeArchiveError

from .archive import Limits, archive_identity, ensure_free
from .s3 import ObjectId, S3Store
from .tree import NameProblem, Tree


class _Cache:
    """A source's digest cache: name -> [hint..., digest]; a digest is reused while its hint
    (a stat key, or an ETag and size) is the same.

    ctime is in the stat key because an in-place edit can restore the mtime (`touch -d`,
    rsync -t, a careless tool) but never the ctime."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.entries: dict[str, list[Any]] = json.loads(path.read_text())
        except (OSError, ValueError):
            self.entries = {}
        self.fresh: dict[str, list[Any]] = {}
        self.hashed_bytes = 0

    def get(self, name: str, hint: list[Any], compute: Callable[[], Any], size: int) -> Any:
        old = self.entries.get(name)
        if old and old[:-1] == hint:
            value = old[-1]
        else:
            value = compute()
            self.hashed_bytes += size
        self.fresh[name] = hint + [value]
        return value

    def save(self) -> None:
        if self.fresh != self.entries:
            atomic_write(self.path, json.dumps(self.fresh, sort_keys=True))


def _tree_identity(digests: dict[str, tuple[str, int]]) -> dict[str, Any]:
    """A folder of files as one digest: relative name -> (sha256, size)."""
    h = hashlib.sha256()
    for rel in sorted(digests):
        h.update(f"{rel}\0{digests[rel][0]}\n".encode())
    return {"tree_sha256": h.hexdigest(), "files": len(digests),
            "size": sum(size for _, size in digests.values())}


def local_identity(path: Path, cache_file: Path, limits: Limits | None = None) -> dict[str, Any]:
    """The content identity of a local file, archive or folder (hidden files skipped)."""
    cache = _Cache(cache_file)
    started = time.monotonic()
    try:
        if path.is_file():
            st = path.stat()
            if is_archive(path.name):
                identity = cache.get(path.name, stat_key(st),
                                     lambda: archive_identity(path, limits), st.st_size)
            else:
                identity = {"sha256": cache.get(path.name, stat_key(st),
                                                lambda: sha256_file(path), st.st_size),
                            "size": st.st_size}
        elif path.is_dir():
            identity = _tree_identity({
                rel: (cache.get(rel, stat_key(st), lambda full=full: sha256_file(full),
                                st.st_size), st.st_size)
                for rel, full, st in _walk(path)})
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


def identity_id(identity: dict[str, Any]) -> str:
    """A short name for an identity (staged versions, downloads)."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def check_listing(uri: str, objects: dict[str, ObjectId], folder: Path, limits: Limits) -> None:
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
    if total > limits.max_bytes:
        raise UnsafeArchiveError(
            f"{uri}: holds {total / 1e9:.1f} GB in {len(objects)} objects, more than "
            f"storage.archive_max_gb ({limits.max_bytes / 1e9:g} GB); nothing was "
            "downloaded\n    fix: point the project at a smaller prefix, or raise "
            "storage.archive_max_gb in project.yaml")
    ensure_free(f"download {uri}", total, folder)


def log_transfer(ledger: Path, uri: str, nbytes: int) -> None:
    """Append one download to the results folder's transfer ledger (`Shared.transfers`)."""
    line = json.dumps({"time": time.time(), "uri": uri, "bytes": nbytes}) + "\n"
    ledger.parent.mkdir(parents=True, exist_ok=True)
    with open(ledger, "a") as f:  # one short O_APPEND write per transfer
        f.write(line)


DOWNLOADS = "download"  # under a source's folder: objects fetched to learn their content


def remote_identity(source: DataSource, store: S3Store, folder: Path, ledger: Path,
                    limits: Limits | None = None) -> tuple[dict[str, Any], Any]:
    """The content identity of an S3 object or prefix, and what the store says of it now
    (an ObjectId, or relative name -> ObjectId): one HEAD or LIST request, plus a download of
    each object whose (ETag, size) the cache has not seen.  Those downloads stay in
    `<folder>/download/` (names checked as staging checks them), where staging takes them
    instead of downloading again."""
    cache = _Cache(folder / ETAG_CACHE)
    limits = limits or Limits()
    downloads = folder / DOWNLOADS

    def fetch(uri: str, rel: str, obj: ObjectId) -> Path:
        dest = downloads / rel
        if not dest.resolve().is_relative_to(downloads.resolve()):
            raise DataError(f"object {uri} would be written outside {downloads}")
        log_transfer(ledger, uri, store.download(uri, dest, obj))
        return dest

    def named(uri: str, path: Path, compute: Callable[[Path], Any]) -> Any:
        try:
            return compute(path)
        except DataError as exc:  # name the object, not the downloaded copy
            raise type(exc)(str(exc).replace(str(path), uri)) from None

    if source.kind == "images" and not source.archive:  # a folder of objects
        objects = store.list(source.uri)
        base = source.uri.rstrip("/") + "/"
        todo = [rel for rel in objects
                if (cache.entries.get(rel) or [])[:-1] != [objects[rel].etag, objects[rel].size]]
        if todo:
            check_listing(source.uri, {rel: objects[rel] for rel in todo}, folder, limits)
        with ThreadPoolExecutor(max_workers=store.settings.max_concurrency) as pool:
            fresh = dict(zip(todo, pool.map(lambda rel: sha256_file(
                fetch(base + rel, rel, objects[rel])), todo), strict=True))
        digests = {rel: (cache.get(rel, [o.etag, o.size], lambda rel=rel: fresh[rel], o.size),
                         o.size) for rel, o in objects.items()}
        cache.save()
        return _tree_identity(digests), objects
    obj = store.head(source.uri)
    name = source.uri.rsplit("/", 1)[-1]
    if source.archive:
        def compute() -> Any:
            ensure_free(f"download {source.uri}", obj.size, folder)
            found = named(source.uri, fetch(source.uri, name, obj),
                          lambda path: archive_identity(path, limits))
            # staging extracts this download rather than fetching it again
            atomic_write(folder / SOURCE_DOWNLOAD, json.dumps({"id": identity_id(found)}))
            return found

        identity = cache.get("", [obj.etag, obj.size], compute, obj.size)
    else:
        identity = {"sha256": cache.get("", [obj.etag, obj.size], lambda: sha256_file(
            fetch(source.uri, name, obj)), obj.size), "size": obj.size}
    cache.save()
    return identity, obj


def identify(source: DataSource, root: Path, results: str, store: S3Store,
             limits: Limits | None = None) -> dict[str, Any]:
    folder = root / source.folder(results)
    if source.remote:
        return remote_identity(source, store, folder, root / Shared(results).transfers,
                               limits)[0]
    return local_identity(root / source.uri, folder / HASH_CACHE, limits)


def stamp_text(source: DataSource, identity: dict[str, Any]) -> str:
    """What the stamp holds: the content only (the path is where the link points)."""
    return json.dumps({"kind": source.kind, "identity": identity},
                      indent=1, sort_keys=True) + "\n"


def read_stamp(root: Path, results: str, source: DataSource) -> dict[str, Any]:
    return json.loads((root / source.stamp(results)).read_text())["identity"]


def refresh_stamps(root: Path, results: str, sources: list[DataSource],
                   store: S3Store, limits: Limits | None = None) -> list[DataSource]:
    """Write every source's stamp when its identity changed; returns the sources whose
    stamp changed.  (The links to local sources are the plan's: `load_plan` writes them with
    the specs that name them.)

    A missing local source is left to the compiler's own check (it names the project key)."""
    changed = []
    for source in sources:
        try:
            identity = identify(source, root, results, store, limits)
        except FileNotFoundError:
            continue
        if write_if_changed(root / source.stamp(results), stamp_text(source, identity)):
            changed.append(source)
    return changed
