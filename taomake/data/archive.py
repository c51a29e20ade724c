"""Safe extraction of image archives (.tar.gz, .tgz, .tar, .zip) into a fresh folder.

TAO reads only plain folders (TAO-FACTS §5), and a dataset archive comes from someone else: a
member that is absolute, climbs out with `..`, is a link pointing outside, or is a device or a
FIFO rejects the *whole* archive before anything is written.  Tar extraction additionally uses
Python's `data` filter as a second line of defence.  Extraction happens in a temporary sibling
folder that is renamed into place only when complete, so a failure leaves nothing behind.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import stat
import tarfile
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from compiler.errors import DataError, UnsafeArchiveError

JUNK = ("__MACOSX",)  # macOS resource forks: never a dataset's "top folder"
FIX = "rebuild the archive from inside the image folder: tar -C images -czf images.tar.gz ."


@dataclass(frozen=True)
class Extracted:
    root: Path  # the final folder holding the images
    files: int  # regular files written
    bytes: int  # their total size
    stripped: str | None  # the single top-level folder that was stripped, if any


@dataclass(frozen=True)
class _Member:
    name: str
    kind: str  # file, dir, symlink, hardlink, device, fifo
    link: str = ""
    size: int = 0


def _is_junk(name: str) -> bool:
    first = name.split("/", 1)[0]
    base = posixpath.basename(name.rstrip("/"))
    return first in JUNK or base.startswith("._") or base == ".DS_Store"


def _unsafe_name(name: str) -> str | None:
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "is an absolute path"
    if ".." in name.replace("\\", "/").split("/"):
        return "climbs out of the folder with '..'"
    return None


def _escapes(base: str, target: str) -> bool:
    """Whether `target` (relative to folder `base` inside the archive) leaves the archive root."""
    if target.startswith("/") or (len(target) > 1 and target[1] == ":"):
        return True
    joined = posixpath.normpath(posixpath.join(base, target))
    return joined == ".." or joined.startswith("../")


def _tar_members(tar: tarfile.TarFile) -> Iterator[tuple[_Member, tarfile.TarInfo]]:
    for info in tar:
        if info.isdir():
            kind = "dir"
        elif info.issym():
            kind = "symlink"
        elif info.islnk():
            kind = "hardlink"
        elif info.ischr() or info.isblk():
            kind = "device"
        elif info.isfifo():
            kind = "fifo"
        else:
            kind = "file"
        yield _Member(info.name, kind, info.linkname, info.size), info


def _zip_members(zf: zipfile.ZipFile) -> Iterator[tuple[_Member, zipfile.ZipInfo]]:
    for info in zf.infolist():
        mode = info.external_attr >> 16
        if info.is_dir():
            kind = "dir"
        elif stat.S_ISLNK(mode):
            kind = "symlink"
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            kind = "device"
        elif stat.S_ISFIFO(mode):
            kind = "fifo"
        else:
            kind = "file"
        link = zf.read(info).decode(errors="replace") if kind == "symlink" else ""
        yield _Member(info.filename, kind, link, info.file_size), info


def _validate(archive: Path, members: list[_Member]) -> None:
    for m in members:
        why = _unsafe_name(m.name)
        if why is None and m.kind in ("device", "fifo"):
            why = f"is a {'device file' if m.kind == 'device' else 'FIFO'}"
        if why is None and m.kind == "symlink" and _escapes(posixpath.dirname(m.name), m.link):
            why = f"is a symbolic link to {m.link!r}, outside the archive"
        if why is None and m.kind == "hardlink" and (_unsafe_name(m.link) or
                                                     _escapes("", m.link)):
            why = f"is a hard link to {m.link!r}, outside the archive"
        if why:
            raise UnsafeArchiveError(f"{archive}: member {m.name!r} {why}; nothing was "
                                     f"extracted\n    fix: {FIX}")


def _single_top(members: list[_Member]) -> str | None:
    tops = {m.name.strip("/").split("/", 1)[0] for m in members
            if not _is_junk(m.name) and m.name.strip("/") not in ("", ".")}
    tops.discard(".")
    if len(tops) != 1:
        return None
    top = tops.pop()
    # a single *file* at the root is content, not a folder to strip
    nested = any(m.name.strip("/").startswith(top + "/") for m in members)
    return top if nested else None


def extract_archive(archive: Path, dest: Path) -> Extracted:
    """Extract `archive` into `dest` (which must not exist), atomically."""
    archive, dest = Path(archive), Path(dest)
    if dest.exists():
        raise FileExistsError(dest)
    name = archive.name.lower()
    tmp = dest.parent / f".{dest.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        tmp.mkdir(parents=True)
        if name.endswith(".zip"):
            stripped = _extract_zip(archive, tmp)
        elif name.endswith((".tar.gz", ".tgz", ".tar")):
            stripped = _extract_tar(archive, tmp)
        else:
            raise DataError(f"{archive}: not an archive taomake can read (.tar.gz, .tgz, .tar, "
                            ".zip)")
        root = tmp / stripped if stripped else tmp
        for junk in JUNK:
            shutil.rmtree(root / junk, ignore_errors=True)
        files = total = 0
        for dirpath, _dirs, names in os.walk(root):
            for n in names:
                files += 1
                total += os.lstat(os.path.join(dirpath, n)).st_size
        os.replace(root, dest)
        return Extracted(dest, files, total, stripped)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _extract_tar(archive: Path, tmp: Path) -> str | None:
    try:
        with tarfile.open(archive, "r:*") as tar:
            pairs = list(_tar_members(tar))  # reads headers only
            members = [m for m, _ in pairs]
            _validate(archive, members)
            tar.extractall(tmp, members=[i for _, i in pairs], filter="data")
    except (tarfile.TarError, EOFError, OSError, zipfile.BadZipFile) as exc:
        if isinstance(exc, tarfile.FilterError):
            raise UnsafeArchiveError(f"{archive}: {exc}; nothing was kept\n    fix: {FIX}") \
                from exc
        raise DataError(f"{archive}: cannot be read as a tar archive ({exc})\n"
                        "    fix: re-create or re-upload the archive") from exc
    return _single_top(members)


def _extract_zip(archive: Path, tmp: Path) -> str | None:
    try:
        with zipfile.ZipFile(archive) as zf:
            pairs = list(_zip_members(zf))
            members = [m for m, _ in pairs]
            _validate(archive, members)
            for m, info in pairs:
                if m.kind == "symlink":  # inside the archive: recreate it as a link
                    link = tmp / m.name
                    link.parent.mkdir(parents=True, exist_ok=True)
                    os.symlink(m.link, link)
                else:
                    zf.extract(info, tmp)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise DataError(f"{archive}: cannot be read as a zip archive ({exc})\n"
                        "    fix: re-create or re-upload the archive") from exc
    return _single_top(members)
