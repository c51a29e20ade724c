"""Safe extraction: good archives land whole and atomically; a malicious corpus is rejected
with nothing written anywhere."""

from __future__ import annotations

import io
import os
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest
from taomake.compiler.errors import DataError

from taomake.data.archive import extract_archive
from taomake.errors import UnsafeArchiveError


def make_tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    mode = "w:gz" if path.name.endswith("gz") else "w"
    with tarfile.open(path, mode) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def file(name: str, data: bytes = b"img") -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def special(name: str, kind: bytes, link: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info, None


def everything_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    return tmp_path


@pytest.mark.parametrize("suffix", ["images.tar.gz", "images.tgz", "images.tar"])
def test_tar_with_a_single_top_folder(sandbox, suffix):
    archive = make_tar(sandbox / "in" / suffix, [file("images/a.jpg", b"A"),
                                                 file("images/sub/b.jpg", b"B")])
    got = extract_archive(archive, sandbox / "out/images")
    assert got.stripped == "images" and got.files == 2 and got.bytes == 2
    assert (sandbox / "out/images/a.jpg").read_bytes() == b"A"
    assert (sandbox / "out/images/sub/b.jpg").read_bytes() == b"B"
    assert everything_under(sandbox / "out") == {"images", "images/a.jpg", "images/sub",
                                                 "images/sub/b.jpg"}


def test_two_top_folders_are_kept(sandbox):
    archive = make_tar(sandbox / "in/x.tar", [file("a/1.jpg"), file("b/2.jpg")])
    got = extract_archive(archive, sandbox / "out/images")
    assert got.stripped is None
    assert (sandbox / "out/images/a/1.jpg").exists() and (sandbox / "out/images/b/2.jpg").exists()


def test_zip_with_macos_junk_still_strips_the_top_folder(sandbox):
    archive = sandbox / "in/images.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("photos/a.jpg", b"A")
        zf.writestr("__MACOSX/photos/._a.jpg", b"junk")
    got = extract_archive(archive, sandbox / "out/images")
    assert got.stripped == "photos" and got.files == 1
    assert everything_under(sandbox / "out") == {"images", "images/a.jpg"}


def test_symlink_inside_the_archive_is_fine(sandbox):
    archive = make_tar(sandbox / "in/x.tar", [file("a/1.jpg", b"1"),
                                              special("a/link.jpg", tarfile.SYMTYPE, "1.jpg")])
    extract_archive(archive, sandbox / "out/images")
    assert (sandbox / "out/images/link.jpg").read_bytes() == b"1"


MALICIOUS_TAR = {
    "absolute path": [file("/tmp/escaped-abs.jpg")],
    "dotdot escape": [file("../escaped")],
    "nested dotdot": [file("a/../../escaped")],
    "symlink to /etc/passwd": [special("images/passwd", tarfile.SYMTYPE, "/etc/passwd")],
    "symlink escaping with ..": [special("images/up", tarfile.SYMTYPE, "../../escaped")],
    "symlink then write through it": [special("images/dir", tarfile.SYMTYPE, "../.."),
                                      file("images/dir/escaped")],
    "hard link to an absolute path": [special("images/h", tarfile.LNKTYPE, "/etc/passwd")],
    "hard link escaping": [special("images/h", tarfile.LNKTYPE, "../escaped")],
    "character device": [special("images/null", tarfile.CHRTYPE)],
    "block device": [special("images/sda", tarfile.BLKTYPE)],
    "fifo": [special("images/pipe", tarfile.FIFOTYPE)],
}


@pytest.mark.parametrize("case", list(MALICIOUS_TAR))
def test_malicious_tar_is_rejected_and_writes_nothing(sandbox, case):
    members = [file("images/ok.jpg")] + MALICIOUS_TAR[case]
    archive = make_tar(sandbox / "in/images.tar.gz", members)
    before = everything_under(sandbox)
    with pytest.raises(UnsafeArchiveError) as err:
        extract_archive(archive, sandbox / "out/images")
    name = MALICIOUS_TAR[case][0][0].name
    assert repr(name) in str(err.value) and str(archive) in str(err.value)
    assert "fix:" in str(err.value)
    assert everything_under(sandbox) == before  # nothing new anywhere, no temp folder left
    assert not Path("/tmp/escaped-abs.jpg").exists()


def zip_with(path: Path, name: str, data: bytes = b"x", mode: int | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("images/ok.jpg", b"ok")
        info = zipfile.ZipInfo(name)
        if mode is not None:
            info.external_attr = mode << 16
        zf.writestr(info, data)
    return path


@pytest.mark.parametrize("name,data,mode", [
    ("../escaped", b"x", None),
    ("/tmp/escaped-zip-abs", b"x", None),
    ("images/link", b"../../escaped", stat.S_IFLNK | 0o777),
    ("images/fifo", b"", stat.S_IFIFO | 0o644),
], ids=["dotdot", "absolute", "symlink escape", "fifo"])
def test_malicious_zip_is_rejected(sandbox, name, data, mode):
    archive = zip_with(sandbox / "in/images.zip", name, data, mode)
    before = everything_under(sandbox)
    with pytest.raises(UnsafeArchiveError, match=repr(name).replace(".", r"\.")):
        extract_archive(archive, sandbox / "out/images")
    assert everything_under(sandbox) == before
    assert not Path("/tmp/escaped-zip-abs").exists()


def test_corrupt_archives_are_data_errors(sandbox):
    good = make_tar(sandbox / "in/images.tar.gz", [file(f"images/{i}.jpg", os.urandom(5000))
                                                   for i in range(20)])
    truncated = sandbox / "in/truncated.tar.gz"
    truncated.write_bytes(good.read_bytes()[:600])
    not_an_archive = sandbox / "in/fake.zip"
    not_an_archive.write_text("hello")
    before = everything_under(sandbox)
    for bad in (truncated, not_an_archive):
        with pytest.raises(DataError) as err:
            extract_archive(bad, sandbox / "out/images")
        assert not isinstance(err.value, UnsafeArchiveError) and str(bad) in str(err.value)
    assert everything_under(sandbox) == before


def test_existing_destination_is_refused(sandbox):
    archive = make_tar(sandbox / "in/x.tar", [file("a.jpg")])
    (sandbox / "out/images").mkdir()
    with pytest.raises(FileExistsError):
        extract_archive(archive, sandbox / "out/images")
