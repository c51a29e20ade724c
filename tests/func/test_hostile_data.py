"""Hostile data (corpus: tests/hostile_corpus.py, generated, never committed): every archive is
refused by `taomake data stage` with its exit code and a message that names the member and the
fix, nothing lands outside the results folder, project.yaml is unchanged, and a good archive
put in its place afterwards stages cleanly; from local files, from S3 (SeaweedFS) and in a
whole Snakemake build.  Plus disk-full, S3 layouts, annotation files TAO would choke on,
images that do not decode, in-place edits and symbolic-link loops."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import subprocess
import tarfile
import time
import zipfile
from pathlib import Path

import pytest
from taomake.compiler.coco import check_coco
from taomake.compiler.errors import DataError
from taomake.compiler.layout import DataSource

from taomake import cli
from taomake.data import archive as archive_mod
from taomake.data.archive import Limits, extract_archive
from taomake.data.identity import refresh_stamps
from taomake.data.s3 import S3Store
from taomake.errors import DiskSpaceError
from tests.func.test_build import calls, fake_project_text, snakemake
from tests.helpers import IN_CI, REPO, make_project
from tests.hostile_corpus import ARCHIVES, ESCAPE_NAME, deep_json

TRAIN = REPO / "data/shapes/train/images"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    """Every hostile archive, generated once."""
    folder = tmp_path_factory.mktemp("corpus")
    out = {}
    for i, (case, (name, build, _code, _rx)) in enumerate(ARCHIVES.items()):
        (folder / str(i)).mkdir()
        build(folder / str(i) / name)
        out[case] = folder / str(i) / name
    return out


def good_archive(path: Path) -> None:
    """The bundled training images in an archive of `path`'s kind, under a top folder."""
    if path.name.endswith(".zip"):
        with zipfile.ZipFile(path, "w") as zf:
            for f in sorted(TRAIN.iterdir()):
                zf.write(f, f"images/{f.name}")
    else:
        with tarfile.open(path, "w:gz" if path.name.endswith("gz") else "w") as tar:
            for f in sorted(TRAIN.iterdir()):
                tar.add(f, arcname=f"images/{f.name}")


def files_under(root: Path) -> set[str]:
    out = set()
    for dirpath, dirs, names in os.walk(root):  # does not follow links
        for n in dirs + names:
            out.add(os.path.relpath(os.path.join(dirpath, n), root))
    return out


def taomake(*args: str, capsys) -> tuple[int, str]:
    """`taomake ...` in-process (the CLI's own error handling and exit codes)."""
    rc = cli.main(list(args))
    cap = capsys.readouterr()
    return rc, cap.out + cap.err


STAGED_TRAIN = "results/_data/train-0-images/images"  # what TAO reads of dataset.train[0].images


def archive_project(folder: Path, uri: str, extra: str = "") -> Path:
    text = fake_project_text().replace("images: data/shapes/train/images", f"images: {uri}")
    assert uri in text
    return make_project(folder, text + extra)


def assert_contained(tmp_path: Path, before: set[str], proj: Path, project_yaml: bytes) -> None:
    assert (proj / "project.yaml").read_bytes() == project_yaml
    new = files_under(tmp_path) - before
    ours = [os.path.relpath(proj / d, tmp_path) for d in ("results", ".snakemake")]  # + plan
    assert all(any(p == o or p.startswith(o + "/") for o in ours) for p in new), sorted(new)
    assert not [p for p in new if "/v-" in p or ".tmp-" in p or p.endswith("/train-0-images/images")
                ], new
    assert not [p for p in files_under(tmp_path) if ESCAPE_NAME in p]
    assert not Path("/tmp", ESCAPE_NAME).exists()


def assert_stages_cleanly(proj: Path, uri: str, capsys) -> None:
    rc, out = taomake("data", "-p", str(proj / "project.yaml"), "stage", capsys=capsys)
    assert rc == 0, out
    staged = proj / STAGED_TRAIN
    assert sorted(os.listdir(staged)) == sorted(os.listdir(TRAIN))
    assert (staged / sorted(os.listdir(TRAIN))[0]).read_bytes() == \
        (TRAIN / sorted(os.listdir(TRAIN))[0]).read_bytes()


# --------------------------------------------------------------------------- local archives


@pytest.mark.parametrize("case", list(ARCHIVES))
def test_hostile_archive_is_refused_then_a_good_one_stages(case, corpus, tmp_path, capsys):
    name, _build, code, rx = ARCHIVES[case]
    proj = tmp_path / "outer" / "proj"
    uri = f"incoming/{name}"
    archive_project(proj, uri)
    (proj / "incoming").mkdir()
    shutil.copy(corpus[case], proj / uri)
    project_yaml = (proj / "project.yaml").read_bytes()
    before = files_under(tmp_path)

    rc, out = taomake("data", "-p", str(proj / "project.yaml"), "stage", capsys=capsys)
    assert rc == code, out
    assert re.search(rx, out, re.S), out
    assert "fix:" in out and "Traceback" not in out
    assert uri in out or name in out  # names the archive
    assert_contained(tmp_path, before, proj, project_yaml)

    good_archive(proj / uri)
    assert_stages_cleanly(proj, uri, capsys)


def test_symlink_chain_in_a_normal_build_fails_and_overwrites_nothing(corpus, tmp_path):
    """The report's case end to end: `snakemake` used to exit 0 with project.yaml replaced."""
    proj = tmp_path / "proj"
    uri = "incoming/train.zip"
    archive_project(proj, uri)
    (proj / "incoming").mkdir()
    shutil.copy(corpus["zip symlink chain (5 up: project.yaml)"], proj / uri)
    project_yaml = (proj / "project.yaml").read_bytes()
    proc = snakemake(proj, check=False)
    assert proc.returncode == 2
    # refused while Snakemake plans (the archive's identity is what it would extract)
    assert "written through the symbolic link 'images/s'" in proc.stderr, proc.stderr[-2000:]
    assert not (proj / STAGED_TRAIN).exists()
    assert (proj / "project.yaml").read_bytes() == project_yaml
    assert calls(proj) == []  # no TAO job ran on a half-staged dataset
    assert not list(tmp_path.rglob(ESCAPE_NAME))


# --------------------------------------------------------------------------- S3


@pytest.mark.s3
@pytest.mark.parametrize("case", list(ARCHIVES))
def test_hostile_archive_from_s3(case, corpus, tmp_path, capsys, monkeypatch, s3_env,
                                 s3_bucket):
    bucket, client = s3_bucket
    for k, v in s3_env.items():
        monkeypatch.setenv(k, v)
    name, _build, code, rx = ARCHIVES[case]
    uri = f"s3://{bucket}/incoming/{name}"
    client.put_object(Bucket=bucket, Key=f"incoming/{name}", Body=corpus[case].read_bytes())
    proj = tmp_path / "proj"
    archive_project(proj, uri)
    project_yaml = (proj / "project.yaml").read_bytes()
    before = files_under(tmp_path)
    rc, out = taomake("data", "-p", str(proj / "project.yaml"), "stage", capsys=capsys)
    assert rc == code, out
    assert re.search(rx, out, re.S) and "Traceback" not in out, out
    assert_contained(tmp_path, before, proj, project_yaml)

    good = tmp_path / name
    good_archive(good)
    client.put_object(Bucket=bucket, Key=f"incoming/{name}", Body=good.read_bytes())
    assert_stages_cleanly(proj, uri, capsys)


@pytest.mark.s3
def test_s3_prefix_with_a_file_and_a_folder_of_one_name(tmp_path, capsys, monkeypatch, s3_env,
                                                        s3_bucket):
    bucket, client = s3_bucket
    for k, v in s3_env.items():
        monkeypatch.setenv(k, v)
    png = sorted(TRAIN.iterdir())
    for f in png:
        client.put_object(Bucket=bucket, Key=f"imgs/{f.name}", Body=f.read_bytes())
    client.put_object(Bucket=bucket, Key=f"imgs/{png[0].name}/b.png", Body=b"x")
    proj = tmp_path / "proj"
    uri = f"s3://{bucket}/imgs"
    archive_project(proj, uri)
    before = files_under(tmp_path)
    rc, out = taomake("data", "-p", str(proj / "project.yaml"), "stage", capsys=capsys)
    assert rc == 2, out
    assert "Traceback" not in out and "fix:" in out
    assert f"object '{png[0].name}/b.png' would be written inside '{png[0].name}', which is " \
        "a file" in out, out  # (SeaweedFS refuses '..' in keys; AWS takes them: unit-tested)
    assert_contained(tmp_path, before, proj, (proj / "project.yaml").read_bytes())
    client.delete_object(Bucket=bucket, Key=f"imgs/{png[0].name}/b.png")
    assert_stages_cleanly(proj, uri, capsys)


# --------------------------------------------------------------------------- budgets, disk


def test_ratio_and_size_limits_come_from_project_yaml(tmp_path, capsys):
    """A genuine but very compressible archive passes once storage.archive_max_ratio says so;
    the absolute cap applies whatever the ratio."""
    proj = tmp_path / "proj"
    uri = "incoming/train.tar.gz"
    (proj / "incoming").mkdir(parents=True)
    with tarfile.open(proj / uri, "w:gz") as tar:
        for f in sorted(TRAIN.iterdir()):
            tar.add(f, arcname=f"images/{f.name}")
        blob = tarfile.TarInfo("images/padding.bin")
        blob.size = 300 * 1024 * 1024  # zeros: ratio ~1000, past the 128 MB floor
        tar.addfile(blob, _Zeros(blob.size))
    archive_project(proj, uri)
    rc, out = taomake("data", "-p", str(proj / "project.yaml"), "stage", capsys=capsys)
    assert rc == 2 and "storage.archive_max_ratio" in out, out
    archive_project(proj, uri, "\nstorage:\n  archive_max_ratio: 2000\n  archive_max_gb: 0.2\n")
    rc, out = taomake("data", "-p", str(proj / "project.yaml"), "stage", capsys=capsys)
    assert rc == 2 and "at most 200.0 MB" in out, out
    archive_project(proj, uri, "\nstorage:\n  archive_max_ratio: 2000\n")
    rc, out = taomake("data", "-p", str(proj / "project.yaml"), "stage", capsys=capsys)
    assert rc == 0, out
    assert (proj / STAGED_TRAIN / "padding.bin").stat().st_size \
        == 300 * 1024 * 1024


class _Zeros:
    def __init__(self, n: int) -> None:
        self.left = n

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        self.left -= n
        return bytes(n)


@pytest.fixture
def small_disk(tmp_path):
    """A 24 MB tmpfs (root only; skipped where mounting is not allowed)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        if IN_CI:
            pytest.fail(f"cannot mount a tmpfs in CI (runs as root): {proc.stderr}")
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def _random_tar(path: Path, mb: int) -> None:
    with tarfile.open(path, "w") as tar:
        for i in range(mb):
            info = tarfile.TarInfo(f"images/{i}.bin")
            data = os.urandom(1 << 20)
            info.size = len(data)
            tar.addfile(info, __import__("io").BytesIO(data))


def test_disk_full_names_the_disk_not_the_archive(small_disk, tmp_path, monkeypatch):
    archive = tmp_path / "big.tar"
    _random_tar(archive, 40)
    monkeypatch.setattr(archive_mod, "RESERVE", 0)
    with pytest.raises(DiskSpaceError) as err:  # the free-space check, before writing
        extract_archive(archive, small_disk / "out")
    assert err.value.exit_code == 1 and "not enough disk space" in str(err.value)
    assert str(small_disk) in str(err.value) and "fix:" in str(err.value)
    assert os.listdir(small_disk) == []

    # the disk fills up anyway (someone else wrote meanwhile): the kernel's ENOSPC
    real = shutil.disk_usage
    monkeypatch.setattr(archive_mod.shutil, "disk_usage",
                        lambda p: real(p)._replace(free=1 << 40))
    with pytest.raises(DiskSpaceError) as err:
        extract_archive(archive, small_disk / "out")
    assert err.value.exit_code == 1 and "disk filled up" in str(err.value)
    assert "re-create" not in str(err.value)
    assert os.listdir(small_disk) == []  # the partial extraction is gone
    assert errno.ENOSPC  # (the errno the message is about)


# --------------------------------------------------------------------------- Python versions


def test_extraction_does_not_need_tarfile_filters(corpus, tmp_path):
    """Debian 12's /usr/bin/python3.11 (3.11.2) has no `filter=`: extraction must work there
    (taomake writes members itself) and refuse the same archives."""
    system = Path("/usr/bin/python3.11")
    if not system.exists():
        pytest.skip("no /usr/bin/python3.11 (Debian's own Python) on this machine")
    good = tmp_path / "good.tar.gz"
    good_archive(good)
    script = (
        "import sys, tarfile\n"
        "assert not hasattr(tarfile, 'data_filter') or sys.version_info >= (3, 11, 4)\n"
        "from pathlib import Path\n"
        "from taomake.errors import UnsafeArchiveError\n"
        "from taomake.data.archive import extract_archive\n"
        "got = extract_archive(Path(sys.argv[1]), Path(sys.argv[2]))\n"
        "print('files', got.files)\n"
        "try:\n"
        "    extract_archive(Path(sys.argv[3]), Path(sys.argv[2] + '-bad'))\n"
        "except UnsafeArchiveError as e:\n"
        "    print('refused', e)\n")
    proc = subprocess.run(
        [str(system), "-c", script, str(good), str(tmp_path / "out"),
         str(corpus["tar realpath bypass with shorter names"])],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert f"files {len(os.listdir(TRAIN))}" in proc.stdout
    assert "refused" in proc.stdout and "written through the symbolic link" in proc.stdout
    assert not list(tmp_path.rglob(ESCAPE_NAME))


def test_a_link_out_of_the_stripped_top_folder_is_refused(tmp_path):
    with tarfile.open(tmp_path / "a.tar", "w") as tar:
        for name, data in (("images/a.png", b"a"), ("images/b.png", b"b")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, __import__("io").BytesIO(data))
        link = tarfile.TarInfo("images/c.png")
        link.type = tarfile.SYMTYPE
        link.linkname = "../images/a.png"  # inside the archive, outside once images/ is stripped
        tar.addfile(link)
    with pytest.raises(DataError, match="outside its top folder 'images'"):
        extract_archive(tmp_path / "a.tar", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_limits_defaults_are_what_readme_says():
    limits = Limits()
    assert limits.max_ratio == 100 and limits.max_bytes == 500 * 1000**3
    assert limits.allowed(1024**2) == 128 * 1024**2  # the floor
    assert limits.allowed(4 * 1024**2) == 400 * 1024**2  # 100 x
    assert limits.allowed(10 * 1000**3) == 500 * 1000**3  # the cap


# --------------------------------------------------------------------------- annotations


def _val_doc() -> dict:
    return json.loads((REPO / "data/shapes/val/annotations.json").read_text())


ENCODINGS = {
    "utf-8 BOM": (lambda t: b"\xef\xbb\xbf" + t.encode(), "UTF-8 byte-order mark"),
    "utf-16 with BOM": (lambda t: t.encode("utf-16"), "UTF-16"),
    "utf-16-le without BOM": (lambda t: t.encode("utf-16-le"), "UTF-16 or UTF-32"),
    "utf-32": (lambda t: t.encode("utf-32"), "UTF-32"),
    "latin-1": (lambda t: t.replace('"circle"', '"cërcle"').encode("latin-1"), "not UTF-8"),
}


@pytest.mark.parametrize("case", list(ENCODINGS))
def test_annotation_encodings_tao_cannot_read(case, tmp_path):
    encode, what = ENCODINGS[case]
    path = tmp_path / "annotations.json"
    path.write_bytes(encode(json.dumps(_val_doc())))
    report = check_coco(path, None)
    assert not report.ok
    text = str(report.errors[0])
    assert what in text and str(path) in text and "fix:" in text and "UTF-8" in text


def test_bom_annotations_fail_validation_with_the_project_line(tmp_path, capsys):
    proj = tmp_path / "proj"
    make_project(proj, fake_project_text().replace("data/shapes/val/annotations.json",
                                                   "val.json"))
    (proj / "val.json").write_bytes(b"\xef\xbb\xbf" + json.dumps(_val_doc()).encode())
    rc, out = taomake("validate", "-p", str(proj / "project.yaml"), capsys=capsys)
    assert rc == 2, out
    assert re.search(r"project\.yaml:\d+(:\d+)?: dataset\.val\.annotations", out), out
    assert "byte-order mark" in out and "fix:" in out and "Traceback" not in out


def test_deeply_nested_json_is_a_message_not_a_traceback(tmp_path):
    path = tmp_path / "deep.json"
    path.write_bytes(deep_json())
    report = check_coco(path, None)
    assert not report.ok and "nested too deeply" in str(report.errors[0])
    from taomake.compiler.coco import read_coco_summary
    with pytest.raises(DataError, match="nested too deeply"):
        read_coco_summary(path)


def test_iscrowd_and_out_of_folder_file_names_are_reported(tmp_path):
    doc = _val_doc()
    doc["annotations"][0]["iscrowd"] = 1
    doc["annotations"][1]["iscrowd"] = 1
    doc["images"][0]["file_name"] = "/etc/hostname"
    doc["images"][1]["file_name"] = "../train/images/" + doc["images"][1]["file_name"]
    path = tmp_path / "a.json"
    path.write_text(json.dumps(doc))
    report = check_coco(path, REPO / "data/shapes/val/images", open_images=False)
    codes = [f.code for f in report.errors]
    assert codes.count("image-outside-folder") == 2
    outside = [str(f) for f in report.errors if f.code == "image-outside-folder"]
    assert "absolute path" in outside[0] and "'..'" in outside[1]
    crowd = [f for f in report.warnings if f.code == "iscrowd"]
    assert len(crowd) == 1 and "2 annotations have iscrowd" in crowd[0].message


def test_a_truncated_image_fails_the_check(tmp_path):
    from PIL import Image

    folder = tmp_path / "images"
    shutil.copytree(REPO / "data/shapes/val/images", folder)
    doc = _val_doc()
    victim = folder / doc["images"][0]["file_name"]
    jpg = victim.with_suffix(".jpg")
    with Image.open(victim) as im:
        im.convert("RGB").save(jpg, quality=95)
    data = jpg.read_bytes()
    jpg.write_bytes(data[: len(data) * 2 // 3])  # header intact: verify() alone passes this
    with Image.open(jpg) as im:
        im.verify()
    doc["images"][0]["file_name"] = jpg.name
    path = tmp_path / "a.json"
    path.write_text(json.dumps(doc))
    report = check_coco(path, folder)
    bad = [f for f in report.errors if f.code == "image-unreadable"]
    assert len(bad) == 1 and jpg.name in str(bad[0]) and "truncated" in str(bad[0])


def test_decoded_verdicts_are_cached_by_file_version(tmp_path):
    from taomake.data.decode import CachedDecoder

    folder = tmp_path / "images"
    shutil.copytree(REPO / "data/shapes/val/images", folder)
    path = tmp_path / "a.json"
    path.write_text(json.dumps(_val_doc()))
    decoder = CachedDecoder(tmp_path / "cache")
    assert check_coco(path, folder, decoder=decoder).ok
    n = len(os.listdir(folder))
    assert decoder.decoded == n
    assert check_coco(path, folder, decoder=decoder).ok and decoder.decoded == n  # cached
    victim = folder / sorted(os.listdir(folder))[0]
    st = victim.stat()
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2] + bytes(len(data) - len(data) // 2))
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size, mtime restored
    report = check_coco(path, folder, decoder=decoder)
    assert decoder.decoded == n + 1 and not report.ok


# --------------------------------------------------------------------------- local folders


def test_in_place_edit_with_mtime_restored_is_noticed(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"a" * 100)
    sources = [DataSource("imgs", "images")]
    refresh_stamps(tmp_path, "results", sources, S3Store())
    st = (folder / "a.png").stat()
    time.sleep(0.01)
    (folder / "a.png").write_bytes(b"b" * 100)
    os.utime(folder / "a.png", ns=(st.st_atime_ns, st.st_mtime_ns))  # size and mtime as before
    assert refresh_stamps(tmp_path, "results", sources, S3Store()) == sources


def test_symlink_loop_in_a_local_image_folder(tmp_path, capsys):
    proj = tmp_path / "proj"
    images = proj / "imgs"
    shutil.copytree(TRAIN, images)
    os.symlink(".", images / "again")
    make_project(proj, fake_project_text().replace("images: data/shapes/train/images",
                                                   "images: imgs"))
    with pytest.raises(DataError, match="symbolic link loop"):
        refresh_stamps(proj, "results", [DataSource("imgs", "images")], S3Store())
    proc = snakemake(proj, "-n", check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "symbolic link loop" in proc.stderr and "Traceback" not in proc.stderr


def test_s3_listing_names_are_checked_before_download(tmp_path):
    from taomake.data.identity import check_listing
    from taomake.data.s3 import ObjectId

    for bad, why in (("../../x.png", "climbs out"), ("/abs.png", "absolute"),
                     ("a\\b.png", "backslash")):
        with pytest.raises(DataError, match=why):
            check_listing("s3://b/p", {"ok.png": ObjectId("e", 1), bad: ObjectId("e", 1)},
                          tmp_path, Limits())
    huge = {f"{i}.png": ObjectId("e", 10**9) for i in range(600)}
    with pytest.raises(DataError, match="archive_max_gb"):
        check_listing("s3://b/p", huge, tmp_path, Limits())


# --------------------------------------------------------------------------- uploads


@pytest.mark.s3
def test_upload_target_is_checked_before_the_first_job(tmp_path, capsys, monkeypatch, s3_env,
                                                       s3_bucket):
    import uuid

    bucket, _client = s3_bucket
    missing = f"no-such-{uuid.uuid4().hex[:10]}"
    for k, v in s3_env.items():
        monkeypatch.setenv(k, v)
    proj = tmp_path / "proj"
    make_project(proj, fake_project_text() + f"upload:\n  to: s3://{missing}/runs\n")
    rc, out = taomake("preflight", "-p", str(proj / "project.yaml"), capsys=capsys)
    assert rc == 1 and f"FAIL  upload: bucket {missing!r} does not exist" in out, out
    assert "fix: check the bucket name" in out

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret-5678")
    make_project(proj, fake_project_text() + f"upload:\n  to: s3://{bucket}/runs\n")
    rc, out = taomake("preflight", "-p", str(proj / "project.yaml"), capsys=capsys)
    assert rc == 1 and f"S3 refused access to bucket {bucket!r}" in out, out
    assert "wrong-secret-5678" not in out

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_env["AWS_SECRET_ACCESS_KEY"])
    rc, out = taomake("preflight", "-p", str(proj / "project.yaml"), capsys=capsys)
    assert rc == 0 and f"PASS  upload: s3://{bucket}/runs is writable" in out, out
    assert not _client.list_objects_v2(Bucket=bucket).get("Contents")  # the probe is gone

    # a whole build with a missing bucket stops before any TAO job
    make_project(proj, fake_project_text() + f"upload:\n  to: s3://{missing}/runs\n")
    proc = snakemake(proj, env=s3_env, check=False)
    assert proc.returncode != 0 and missing in proc.stderr, proc.stderr[-2000:]
    assert calls(proj) == []
