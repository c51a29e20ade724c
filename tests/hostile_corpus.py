"""A corpus of hostile dataset archives and files, generated (never committed as binaries).

Each archive case is a function `build(path) -> None` writing one archive whose file name
ends in the right suffix; `ARCHIVES` maps a case name to (suffix, builder, expected exit code,
a regex the message must match).  The escaping cases aim at `ESCAPE_NAME` files: a test asserts
no such file appears anywhere (and that project.yaml is unchanged).

Run as a script to write the whole corpus into a folder:  python -m tests.hostile_corpus DIR
"""

from __future__ import annotations

import gzip
import io
import struct
import sys
import tarfile
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

ESCAPE_NAME = "escaped-by-archive"
GOOD_PNG = (Path(__file__).resolve().parent.parent / "data/shapes/train/images")


def _png_bytes() -> bytes:
    return sorted(GOOD_PNG.iterdir())[0].read_bytes()


# --------------------------------------------------------------------------- tar helpers


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]],
         mode: str | None = None) -> None:
    mode = mode or ("w:gz" if path.name.endswith(("gz", "tgz")) else "w")
    with tarfile.open(path, mode, format=tarfile.GNU_FORMAT) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)


def _file(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def _dir(name: str) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o777
    return info, None


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, None


def _zip_link(zf: zipfile.ZipFile, name: str, target: str) -> None:
    info = zipfile.ZipInfo(name)
    info.create_system = 3  # unix: external_attr holds the mode
    info.external_attr = (0o120777 << 16)
    zf.writestr(info, target)


# --------------------------------------------------------------------------- escapes


def zip_symlink_chain(path: Path, levels: int = 5) -> None:
    """The chain from the report: `images/s -> .`, `images/s/s/s/s/s/u -> ../..(levels)`,
    then a regular member written through `images/u/`."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("images/ok.png", _png_bytes())
        _zip_link(zf, "images/s", ".")
        _zip_link(zf, "images/s/s/s/s/s/u", "/".join([".."] * levels))
        zf.writestr("images/u/project.yaml", b"pwned: true\n")
        zf.writestr(f"images/u/{ESCAPE_NAME}", b"pwned\n")


def zip_symlink_chain_12(path: Path) -> None:
    zip_symlink_chain(path, levels=12)


def tar_realpath_bypass(path: Path, comp_len: int = 240) -> None:
    """The shape of CVE-2025-4517 (PATH_MAX `realpath` bypass of tarfile's `data` filter),
    its folders hidden under __MACOSX/: long folder names reached through one-letter links, so
    that the expanded path outgrows PATH_MAX and `realpath` stops resolving; a link from the
    deepest point back up; a top-level link through it; a file written through that.  With
    240-byte names, Python 3.11.7's `extractall(filter="data")` writes the file outside the
    destination (checked by hand on this machine); taomake refuses the names as too long."""
    top = "__MACOSX"
    comp = "d" * comp_len
    steps = "abcdefghijklmnop"
    members: list[tuple[tarfile.TarInfo, bytes | None]] = [_file("images/ok.png", _png_bytes())]
    here = top
    for step in steps:
        members.append(_dir(f"{here}/{comp}"))
        members.append(_link(f"{here}/{step}", comp))
        here = f"{here}/{comp}"
    linkpath = "/".join([top, *steps, "l" * 254])
    members.append(_link(linkpath, "/".join([".."] * len(steps))))
    members.append(_link("escape", f"{linkpath}/../.."))
    members.append(_file(f"escape/{ESCAPE_NAME}", b"pwned\n"))
    _tar(path, members)


def tar_realpath_bypass_short(path: Path) -> None:
    """The same chain with 180-byte names, which fit taomake's name limit: refused because
    members are written through links."""
    tar_realpath_bypass(path, comp_len=180)


def tar_hardlink_escape(path: Path) -> None:
    _tar(path, [_file("images/ok.png", _png_bytes()),
                _link("images/h", "../../../../../etc/hostname", tarfile.LNKTYPE)])


def tar_symlink_then_write(path: Path) -> None:
    _tar(path, [_file("images/ok.png", _png_bytes()), _link("images/up", "../.."),
                _file(f"images/up/{ESCAPE_NAME}", b"pwned\n")])


def tar_absolute(path: Path) -> None:
    _tar(path, [_file("images/ok.png", _png_bytes()), _file(f"/tmp/{ESCAPE_NAME}")])


def zip_dotdot(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("images/ok.png", _png_bytes())
        zf.writestr(f"../../{ESCAPE_NAME}", b"pwned")


# --------------------------------------------------------------------------- bombs


def _deflate(data: bytes, final: bool = False) -> bytes:
    """Raw deflate of `data`, full-flushed (the next piece starts afresh) or finished."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush(zlib.Z_FINISH if final else zlib.Z_FULL_FLUSH)


def _zeros(total: int, crc: int = 0) -> tuple[bytes, int]:
    """Raw deflate pieces for `total` zero bytes (one full-flushed 1 MiB piece repeated:
    compressing 4 GiB for real takes ~10 s) and the CRC-32 continued over them."""
    piece = 1 << 20
    assert total % piece == 0
    zeros = bytes(piece)
    for _ in range(total // piece):
        crc = zlib.crc32(zeros, crc)
    return _deflate(zeros) * (total // piece), crc


def tar_gz_bomb(path: Path, gib: int = 4) -> None:
    """A ~4 MB .tar.gz holding one member of `gib` GiB of zeros."""
    size = gib << 30
    info = tarfile.TarInfo("images/zeros.png")
    info.size = size
    header = info.tobuf(tarfile.GNU_FORMAT)
    tail = bytes(2 * 512)  # tar's end marker
    body, crc = _zeros(size, zlib.crc32(header))
    crc = zlib.crc32(tail, crc)
    isize = (len(header) + size + len(tail)) & 0xFFFFFFFF
    with open(path, "wb") as f:
        f.write(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff")  # gzip header
        f.write(_deflate(header) + body + _deflate(tail, final=True))
        f.write(struct.pack("<II", crc, isize))


def zip_bomb(path: Path, mib: int = 4095) -> None:
    """A ~4 MB .zip holding one deflated member of 4095 MiB of zeros (fits the classic zip
    size fields, so no zip64 is needed)."""
    size = mib << 20
    body, crc = _zeros(size)
    data = body + _deflate(b"", final=True)
    name = b"images/zeros.png"
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0, crc, len(data), size,
                        len(name), 0) + name
    central = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0, crc, len(data),
                          size, len(name), 0, 0, 0, 0, 0o644 << 16, 0) + name
    offset = len(local) + len(data)
    eocd = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central), offset, 0)
    with open(path, "wb") as f:
        f.write(local + data + central + eocd)


# --------------------------------------------------------------------------- corruption


def _images_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for f in sorted(GOOD_PNG.iterdir())[:4]:
            tar.add(f, arcname=f"images/{f.name}")
    return buf.getvalue()


def tar_gz_crc(path: Path) -> None:
    """gzip with stored (level 0) blocks and one byte of an image flipped: the deflate stream
    stays valid, so only the CRC at the very end tells."""
    raw = bytearray(gzip.compress(_images_tar(), compresslevel=0, mtime=0))
    raw[10 + 5 + 1000] ^= 0xFF  # gzip header, stored-block header, then inside image 0
    path.write_bytes(bytes(raw))


def tar_truncated_header(path: Path) -> None:
    """A plain tar whose second header is garbage: tarfile stops there quietly."""
    raw = bytearray(_images_tar())
    first = 512 + ((sorted(GOOD_PNG.iterdir())[0].stat().st_size + 511) // 512) * 512
    raw[first:first + 512] = b"\x7f" * 512
    path.write_bytes(bytes(raw))


def tar_duplicate(path: Path) -> None:
    _tar(path, [_file("images/a.png", _png_bytes()), _file("images/a.png", b"other")])


def zip_duplicate(path: Path) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns "Duplicate name": that is the case
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("images/a.png", _png_bytes())
            zf.writestr("images/a.png", b"other")


def tar_file_and_folder(path: Path) -> None:
    _tar(path, [_file("images/a.png", _png_bytes()), _file("images/a.png/b.png", b"x")])


def tar_hardlink_missing(path: Path) -> None:
    _tar(path, [_file("images/ok.png", _png_bytes()),
                _link("images/h.png", "images/nowhere.png", tarfile.LNKTYPE)])


def zip_corrupt_deflate(path: Path) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("images/a.txt", b"hello world " * 5000)
    raw = bytearray(path.read_bytes())
    for i in range(60, 120):  # inside the deflate data of the only member
        raw[i] ^= 0x55
    path.write_bytes(bytes(raw))


def zip_bad_crc(path: Path) -> None:
    """A stored (uncompressed) member with one byte flipped: only its CRC-32 tells."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("images/a.png", _png_bytes())
    raw = bytearray(path.read_bytes())
    raw[30 + len("images/a.png") + 100] ^= 0xFF  # local header, name, then the data
    path.write_bytes(bytes(raw))


def _patch_zip(path: Path, *, flag: int | None = None, method: int | None = None) -> None:
    raw = bytearray(path.read_bytes())
    for sig, flag_at, method_at in ((b"PK\x03\x04", 6, 8), (b"PK\x01\x02", 8, 10)):
        i = raw.find(sig)
        while i >= 0:
            if flag is not None:
                raw[i + flag_at:i + flag_at + 2] = struct.pack("<H", flag)
            if method is not None:
                raw[i + method_at:i + method_at + 2] = struct.pack("<H", method)
            i = raw.find(sig, i + 4)
    path.write_bytes(bytes(raw))


def zip_encrypted(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("images/a.png", _png_bytes())
    _patch_zip(path, flag=0x1)


def zip_unsupported_method(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("images/a.png", _png_bytes())
    _patch_zip(path, method=98)  # PPMd


def tar_fifo(path: Path) -> None:
    info = tarfile.TarInfo("images/pipe")
    info.type = tarfile.FIFOTYPE
    _tar(path, [_file("images/ok.png", _png_bytes()), (info, None)])


Builder = Callable[[Path], None]
# case -> (archive file name, builder, exit code, message regex)
ARCHIVES: dict[str, tuple[str, Builder, int, str]] = {
    "zip symlink chain (5 up: project.yaml)": (
        "train.zip", zip_symlink_chain, 2, r"written through the symbolic link 'images/s'"),
    "zip symlink chain (12 up)": (
        "train.zip", zip_symlink_chain_12, 2, r"written through the symbolic link"),
    "tar PATH_MAX realpath bypass (CVE-2025-4517) under __MACOSX": (
        "train.tar", tar_realpath_bypass, 2, r"is longer than 3072 bytes"),
    "tar realpath bypass with shorter names": (
        "train.tar", tar_realpath_bypass_short, 2,
        r"written through the symbolic link '__MACOSX/a'"),
    "tar hard link escaping": ("train.tar.gz", tar_hardlink_escape, 2, r"climbs out"),
    "tar symlink then write through it": (
        "train.tar.gz", tar_symlink_then_write, 2, r"written through the symbolic link"),
    "tar absolute name": ("train.tar.gz", tar_absolute, 2, r"is an absolute path"),
    "zip dotdot": ("train.zip", zip_dotdot, 2, r"climbs out of the folder"),
    "tar fifo": ("train.tar", tar_fifo, 2, r"is a FIFO"),
    "tar.gz bomb (4 GiB of zeros)": ("train.tar.gz", tar_gz_bomb, 2,
                                     r"expands to more than .*ratio.*archive_max_ratio"),
    "zip bomb (4 GiB of zeros)": ("train.zip", zip_bomb, 2,
                                  r"expands to more than .*archive_max_gb"),
    "tar.gz CRC error": ("train.tar.gz", tar_gz_crc, 2, r"cannot be read to its end.*CRC"),
    "tar damaged header": ("train.tar", tar_truncated_header, 2,
                           r"damaged header or a cut there"),
    "tar duplicate member": ("train.tar", tar_duplicate, 2, r"appears twice"),
    "zip duplicate member": ("train.zip", zip_duplicate, 2, r"appears twice"),
    "tar file and folder of one name": ("train.tar", tar_file_and_folder, 2,
                                        r"inside 'images/a.png', which is a file"),
    "tar hard link to a missing member": ("train.tar", tar_hardlink_missing, 2,
                                          r"not an earlier file of the archive"),
    "zip corrupt deflate data": ("train.zip", zip_corrupt_deflate, 2,
                                 r"cannot be read: member 'images/a.txt'"),
    "zip bad CRC": ("train.zip", zip_bad_crc, 2, r"member 'images/a.png'.*Bad CRC-32"),
    "zip encrypted member": ("train.zip", zip_encrypted, 2, r"is encrypted"),
    "zip unsupported method": ("train.zip", zip_unsupported_method, 2,
                               r"compression method 98"),
}


# --------------------------------------------------------------------------- annotation files


def deep_json(depth: int = 100_000) -> bytes:
    return b'{"images": ' + b"[" * depth + b"]" * depth + b"}"


def main(out: str) -> int:
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    for case, (name, build, _code, _msg) in ARCHIVES.items():
        slug = "".join(c if c.isalnum() else "-" for c in case).strip("-")
        build(folder / f"{slug}-{name}")
    (folder / "deep.json").write_bytes(deep_json())
    print(f"{len(ARCHIVES)} archives and deep.json written to {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "hostile-corpus"))

