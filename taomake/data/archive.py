"""Safe extraction of image archives (.tar.gz, .tgz, .tar, .zip) into a fresh folder.

A dataset archive comes from someone else, so it is treated as hostile:

* **Containment by construction.**  taomake writes every member itself (never `tarfile`'s or
  `zipfile`'s own extraction, so nothing depends on the `filter=` argument, which Debian 12's
  Python 3.11.2 lacks, or on `realpath`, which CVE-2025-4517 fools).  Each name is checked in
  a `tree.Tree` before its member is written: absolute names, `..`, a member written through a
  symbolic link or inside a file, duplicate names, devices and FIFOs reject the whole archive.
  Files are created with O_EXCL|O_NOFOLLOW into a fresh temporary folder that holds no symbolic
  link while members are written: links are created last, after each was resolved inside the
  tree and found to end at a member.
* **Budgets.**  Extraction stops past `Limits` (a ratio to the archive's size above a floor,
  and an absolute cap), counted on the bytes actually written, and checks free space first.
* **Integrity.**  The whole compressed stream is read, so gzip's CRC and length trailer and
  every zip member's CRC are verified; an archive that fails is rejected, never half-used.

Extraction happens in a temporary sibling folder renamed into place only when complete, so a
failure leaves nothing behind.  Bad archives raise `DataError`/`UnsafeArchiveError` (exit 2);
a full disk raises `DiskSpaceError` (exit 1), which names the disk, not the archive.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
import struct
import tarfile
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from taomake.compiler.errors import DataError
from taomake.compiler.files import nearest_existing
from taomake.errors import DiskSpaceError, UnsafeArchiveError

from .tree import NameProblem, Tree, is_junk

FIX = "rebuild the archive from inside the image folder: tar -C images -czf images.tar.gz ."
DAMAGED_FIX = "the archive is damaged or incomplete: re-create it, or download it again"
CHUNK = 1 << 20
GB = 1000**3
RESERVE = 256 * 1024 * 1024  # left free on the disk for everything else
SPECIAL = {"device": "device file", "fifo": "FIFO", "special": "special tar entry"}
ZIP_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate",
               zipfile.ZIP_BZIP2: "bzip2", zipfile.ZIP_LZMA: "lzma"}


@dataclass(frozen=True)
class Limits:
    """How much an archive may expand to (project.yaml `storage.archive_*`)."""

    max_ratio: float = 100.0  # extracted bytes / archive bytes ...
    ratio_floor: int = 128 * 1024 * 1024  # ... checked only past this many bytes
    max_bytes: int = 500 * GB  # whatever the ratio

    def allowed(self, archive_size: int) -> int:
        return int(min(self.max_bytes, max(self.ratio_floor, self.max_ratio * archive_size)))

    @classmethod
    def of(cls, storage: dict) -> Limits:
        return cls(max_ratio=float(storage.get("archive_max_ratio", cls.max_ratio)),
                   max_bytes=int(float(storage.get("archive_max_gb", cls.max_bytes / GB)) * GB))


@dataclass(frozen=True)
class Extracted:
    root: Path  # the final folder holding the images
    files: int  # regular files written
    bytes: int  # their total size
    stripped: str | None  # the single top-level folder that was stripped, if any


class _ReadFailure(Exception):
    """Reading the archive failed (damaged data): the archive's fault."""


def _mb(n: float) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"


class _Budget:
    """Counts bytes written; refuses a bomb (exit 2) or a full disk (exit 1) before it happens."""

    def __init__(self, archive: Path, dest: Path, limits: Limits) -> None:
        self.archive = archive
        self.size = archive.stat().st_size
        self.allowed = limits.allowed(self.size)
        self.limits = limits
        self.free = shutil.disk_usage(dest).free - RESERVE
        self.dest = dest
        self.written = 0

    def expect(self, total: int, what: str, *, estimate: bool = False) -> None:
        """Before anything is written: the declared total must fit (an `estimate`, such as
        gzip's trailer, can lie: it only warns of a full disk, up to the allowed size)."""
        if estimate:
            total = min(total, self.allowed)
        elif total > self.allowed:
            self._bomb(total, what)
        if total > self.free:
            raise self._disk(total)

    def take(self, n: int, member: str) -> None:
        self.written += n
        if self.written > self.allowed:
            self._bomb(self.written, f"member {member!r}")
        if self.written > self.free:
            raise self._disk(self.written)

    def _bomb(self, total: int, what: str) -> None:
        ratio = total / max(self.size, 1)
        limits = self.limits
        raise UnsafeArchiveError(
            f"{self.archive}: expands to more than {_mb(self.allowed)} (reached "
            f"{_mb(total)} at {what}; the archive is {_mb(self.size)}, ratio {ratio:.0f}); "
            f"allowed: {limits.max_ratio:g} x the archive size (at least "
            f"{_mb(limits.ratio_floor)}), at most {_mb(limits.max_bytes)}; nothing was kept\n"
            "    fix: if the archive is genuine, raise storage.archive_max_ratio or "
            "storage.archive_max_gb in project.yaml")

    def _disk(self, need: int) -> DiskSpaceError:
        return disk_space_error(f"extract {self.archive.name}", need, self.dest, self.free)


def disk_space_error(doing: str, need: int, where: Path, free: int) -> DiskSpaceError:
    return DiskSpaceError(
        f"not enough disk space to {doing}: it needs at least {_mb(need)} under {where}, which "
        f"has {_mb(max(free, 0))} free (keeping {_mb(RESERVE)} spare); nothing was kept\n"
        "    fix: free disk space there, or move the results folder (`results:` in "
        "project.yaml) to a bigger disk")


def ensure_free(doing: str, need: int, where: Path) -> None:
    """Refuse (DiskSpaceError, exit 1) to start writing `need` bytes into `where`."""
    free = shutil.disk_usage(nearest_existing(where)).free - RESERVE
    if need > free:
        raise disk_space_error(doing, need, Path(where), free)


def _reader(archive: Path) -> Callable[[Path, _Writer], None]:
    name = archive.name.lower()
    if name.endswith(".zip"):
        return _extract_zip
    if name.endswith((".tar.gz", ".tgz", ".tar")):
        return _extract_tar
    raise DataError(f"{archive}: not an archive taomake can read (.tar.gz, .tgz, .tar, .zip)")


def extract_archive(archive: Path, dest: Path, limits: Limits | None = None) -> Extracted:
    """Extract `archive` into `dest` (which must not exist), atomically."""
    archive, dest = Path(archive), Path(dest)
    if dest.exists():
        raise FileExistsError(dest)
    extract = _reader(archive)
    tmp = dest.parent / f".{dest.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        tmp.mkdir(parents=True)
        budget = _Budget(archive, tmp, limits or Limits())
        writer = _Writer(tmp, budget)
        try:
            extract(archive, writer)
            top = writer.finish()
        except NameProblem as p:
            raise UnsafeArchiveError(f"{archive}: member {p}; nothing was extracted\n"
                                     f"    fix: {FIX}") from None
        except _ReadFailure as exc:
            cause = exc.__cause__
            detail = f" ({type(cause).__name__}: {cause})" if cause is not None else ""
            raise DataError(f"{archive}: cannot be read{exc.args[0]}{detail}; nothing was kept\n"
                            f"    fix: {DAMAGED_FIX}") from None
        root = tmp / top if top else tmp
        os.replace(root, dest)
        return Extracted(dest, writer.files, budget.written, top)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskSpaceError(
                f"the disk filled up while extracting {archive.name} into {dest.parent} "
                f"({exc.strerror}); nothing was kept\n    fix: free disk space there, or move "
                "the results folder (`results:` in project.yaml) to a bigger disk") from None
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class _Writer:
    """Writes checked members into a fresh folder; symbolic links only at the end."""

    FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC

    def __init__(self, root: Path, budget: _Budget) -> None:
        self.root = root
        self.budget = budget
        self.tree = Tree()
        self.files = 0
        self._made: set[str] = set()

    def _folder(self, path: str) -> None:
        if path and path not in self._made:
            os.makedirs(os.path.join(self.root, path), mode=0o755, exist_ok=True)
            self._made.add(path)

    def add(self, name: str, kind: str, link: str = "",
            data: Callable[[], IO[bytes]] | None = None) -> None:
        """One member: `data` opens its content (regular files)."""
        if kind in SPECIAL:
            raise NameProblem(name, f"is a {SPECIAL[kind]}")
        path = self.tree.add(name, kind, link)
        if path is None or kind == "symlink" or is_junk(path):
            return  # junk is never written; links wait for finish()
        if kind == "dir":
            self._folder(path)
            return
        self._folder(os.path.dirname(path))
        full = os.path.join(self.root, path)
        if kind == "hardlink":
            target = self._hardlink_target(name, link, path)
            os.link(os.path.join(self.root, target), full, follow_symlinks=False)
            self.files += 1
            return
        fd = os.open(full, self.FLAGS, 0o644)
        with os.fdopen(fd, "wb", buffering=0) as out:
            self._read_member(name, data, out.write)
        self.files += 1

    def _read_member(self, name: str, data: Callable[[], IO[bytes]],
                     sink: Callable[[bytes], Any]) -> None:
        """Feed a member's content to `sink` block by block, counted against the budget;
        a read that fails is the archive's fault."""
        try:
            src = data()
        except Exception as exc:
            raise _ReadFailure(f": member {name!r}") from exc
        with src:
            while True:
                try:
                    block = src.read(CHUNK)
                except Exception as exc:
                    raise _ReadFailure(f": member {name!r}") from exc
                if not block:
                    break
                self.budget.take(len(block), name)
                sink(block)

    def _hardlink_target(self, name: str, link: str, path: str) -> str:
        target = self.tree.nodes[path].link
        if is_junk(target):
            raise NameProblem(name, f"is a hard link to {link!r}, a macOS metadata file")
        return target

    def finish(self) -> str | None:
        """Create the symbolic links (each resolved inside the tree first); returns the single
        top folder to strip, if any."""
        top = self.tree.single_top()
        for path in _checked_links(self.tree, top):
            if is_junk(path):
                continue
            self._folder(os.path.dirname(path))
            os.symlink(self.tree.nodes[path].link, os.path.join(self.root, path))
        return top


def _checked_links(tree: Tree, top: str | None) -> list[str]:
    """The symbolic links of an archive, each resolved inside its tree (top folder stripped)."""
    checked = []
    for path in tree.links():
        try:
            tree.resolve(path, top)
        except NameProblem as p:
            if top and not is_junk(path):
                raise NameProblem(p.name, f"{p.why} (or outside its top folder {top!r}, "
                                  "which is stripped)") from None
            raise
        checked.append(path)
    return checked


class _Hasher(_Writer):
    """Reads an archive the way `_Writer` extracts it (same name checks, junk skipped, same
    budget, whole stream read) but writes nothing: it hashes each member's content."""

    def __init__(self, budget: _Budget) -> None:
        super().__init__(Path("."), budget)
        self.entries: dict[str, str] = {}  # path -> sha256 of a file, or "link:<target>"

    def add(self, name: str, kind: str, link: str = "",
            data: Callable[[], IO[bytes]] | None = None) -> None:
        if kind in SPECIAL:
            raise NameProblem(name, f"is a {SPECIAL[kind]}")
        path = self.tree.add(name, kind, link)
        if path is None or kind == "dir" or is_junk(path):
            return
        if kind == "symlink":
            self.entries[path] = f"link:{link}"
            return
        if kind == "hardlink":
            self.entries[path] = self.entries.get(self._hardlink_target(name, link, path), "")
            self.files += 1
            return
        h = hashlib.sha256()
        self._read_member(name, data, h.update)
        self.entries[path] = h.hexdigest()
        self.files += 1

    def finish(self) -> str | None:
        top = self.tree.single_top()
        _checked_links(self.tree, top)
        return top


class _CountingBudget(_Budget):
    """The extraction budget without the disk: nothing is written."""

    def __init__(self, archive: Path, limits: Limits) -> None:
        super().__init__(archive, archive.parent, limits)
        self.free = float("inf")


def archive_identity(archive: Path, limits: Limits | None = None) -> dict[str, int | str]:
    """What an archive holds, independent of how it was packed (member order, timestamps,
    compression, the tool): a sha256 over (path, content sha256) of the members extraction
    would write, the single top folder stripped as extraction strips it.  Read with the same
    checks as `extract_archive`, so a hostile archive is refused here too (nothing written)."""
    archive = Path(archive)
    read = _reader(archive)
    hasher = _Hasher(_CountingBudget(archive, limits or Limits()))
    try:
        read(archive, hasher)
        top = hasher.finish()
    except NameProblem as p:
        raise UnsafeArchiveError(f"{archive}: member {p}\n    fix: {FIX}") from None
    except _ReadFailure as exc:
        cause = exc.__cause__
        detail = f" ({type(cause).__name__}: {cause})" if cause is not None else ""
        raise DataError(f"{archive}: cannot be read{exc.args[0]}{detail}\n"
                        f"    fix: {DAMAGED_FIX}") from None
    h = hashlib.sha256()
    strip = f"{top}/" if top else ""
    for path in sorted(hasher.entries):
        h.update(f"{path.removeprefix(strip)}\0{hasher.entries[path]}\n".encode())
    return {"members_sha256": h.hexdigest(), "files": hasher.files,
            "size": hasher.budget.written}


# --------------------------------------------------------------------------- tar


def _tar_kind(info: tarfile.TarInfo) -> str:
    if info.isdir():
        return "dir"
    if info.issym():
        return "symlink"
    if info.islnk():
        return "hardlink"
    if info.ischr() or info.isblk():
        return "device"
    if info.isfifo():
        return "fifo"
    return "file" if info.isreg() else "special"


class _Info(tarfile.TarInfo):
    """Remembers why the member list ended: only tar's end marker (a zero block) is a proper
    end; tarfile also stops quietly at a damaged header or at a cut, which must not pass."""

    @classmethod
    def fromtarfile(cls, tar):
        try:
            return super().fromtarfile(tar)
        except tarfile.HeaderError as exc:
            tar.taomake_end = exc
            raise


def _gzip_size(archive: Path) -> int:
    """The uncompressed size a gzip trailer states (mod 4 GiB: an estimate, never trusted)."""
    with open(archive, "rb") as f:
        if f.read(2) != b"\x1f\x8b":
            return archive.stat().st_size
        f.seek(-4, os.SEEK_END)
        return struct.unpack("<I", f.read(4))[0]


def _extract_tar(archive: Path, writer: _Writer) -> None:
    size = archive.stat().st_size
    estimate = size if archive.name.lower().endswith(".tar") else max(size, _gzip_size(archive))
    writer.budget.expect(estimate, "the size the archive states", estimate=True)
    try:
        tar = tarfile.open(archive, "r:*", tarinfo=_Info)
    except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
        raise _ReadFailure(" as a tar archive") from exc
    with tar:
        members = iter(tar)
        while True:
            try:
                info = next(members)
            except StopIteration:
                break
            except Exception as exc:  # tarfile.ReadError, zlib.error, EOFError, BadGzipFile
                raise _ReadFailure(" (after "
                                   f"{writer.files} files)") from exc
            kind = _tar_kind(info)
            if kind == "file":
                writer.budget.expect(writer.budget.written + info.size, f"member {info.name!r}")
            writer.add(info.name, kind, info.linkname,
                       lambda info=info: tar.extractfile(info))
        if not isinstance(getattr(tar, "taomake_end", None), tarfile.EOFHeaderError):
            raise _ReadFailure(f" past byte {tar.offset}: a damaged header or a cut there, "
                               "not tar's end marker") from getattr(tar, "taomake_end", None)
        try:  # read to the very end: gzip checks its CRC and length only there
            while tar.fileobj.read(CHUNK):
                pass
        except Exception as exc:
            raise _ReadFailure(" to its end") from exc


# --------------------------------------------------------------------------- zip


def _zip_kind(info: zipfile.ZipInfo) -> str:
    mode = info.external_attr >> 16
    if info.is_dir():
        return "dir"
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    if stat.S_ISFIFO(mode):
        return "fifo"
    return "file"


def _extract_zip(archive: Path, writer: _Writer) -> None:
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise _ReadFailure(" as a zip archive") from exc
    with zf:
        infos = zf.infolist()
        for info in infos:
            if info.flag_bits & 0x1:
                raise DataError(f"{archive}: member {info.filename!r} is encrypted; taomake "
                                "cannot read password-protected archives\n"
                                "    fix: re-create the archive without a password")
            if info.compress_type not in ZIP_METHODS:
                raise DataError(f"{archive}: member {info.filename!r} uses compression method "
                                f"{info.compress_type}, which taomake cannot read (it reads "
                                f"{', '.join(ZIP_METHODS.values())})\n"
                                "    fix: re-create the archive with deflate (zip -r)")
        writer.budget.expect(sum(i.file_size for i in infos), "the sizes the archive declares")
        for info in infos:
            kind = _zip_kind(info)
            link = ""
            if kind == "symlink":
                if info.file_size > 4096:
                    raise NameProblem(info.filename, "is a symbolic link with a "
                                      f"{info.file_size}-byte target")
                try:
                    link = zf.read(info).decode("utf-8")
                except Exception as exc:
                    raise _ReadFailure(f": member {info.filename!r}") from exc
            writer.add(info.filename, kind, link, lambda info=info: zf.open(info))
