"""Every write taomake makes, on a full disk: `error:` naming the path, exit 1, no traceback,
nothing half-written (a small tmpfs, mounted as root; CI is root)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.func.test_build import fake_project_text
from tests.helpers import IN_CI, REPO, make_project

pytestmark = pytest.mark.slow


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MB tmpfs at tmp_path/disk."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.getuid() != 0:
        if IN_CI:
            pytest.fail("mounting a tmpfs needs root (CI runs as root)")
        pytest.skip("mounting a tmpfs needs root")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)], check=True)
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(disk: Path) -> None:
    with open(disk / "filler", "ab", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * (1 << 16))
        except OSError:
            pass


def taomake(folder: Path, *args: str, env: dict[str, str] | None = None):
    return subprocess.run([sys.executable, "-m", "taomake.cli", *args], cwd=folder,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def test_a_full_disk_while_a_job_records_its_results(small_disk):
    """TAO succeeded, then the disk filled up: taomake's own writes (the curve, the run and
    built records) fail with `error:` naming the file, exit 1 (before: a raw traceback)."""
    folder = small_disk / "proj"
    make_project(folder, fake_project_text(", FAKE_TAO_FILL_DISK"))
    compiled = taomake(folder, "compile")
    assert compiled.returncode == 0, compiled.stderr
    proc = taomake(folder, "run", "train", "-e", "base", "--log",
                   str(folder / "results/base/logs/train.log"),
                   env={"FAKE_TAO_FILL_DISK": "1"})
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "error: cannot write " in proc.stderr and "No space left on device (ENOSPC)" in \
        proc.stderr, proc.stderr
    assert "fix: free space on that filesystem" in proc.stderr
    train = folder / "results/base/train"
    assert not list(train.rglob("*.tmp")), "a temp file was left"
    assert not (train / ".taomake/built-train.yaml").exists()  # never recorded as built


def test_a_full_disk_while_specs_are_written(small_disk):
    """`taomake compile` and Snakemake's parse write the specs: a full disk is `error:` with
    the spec's path, exit 1, and no spec half-written."""
    folder = small_disk / "proj"
    make_project(folder, fake_project_text())
    fill(small_disk)
    proc = taomake(folder, "compile")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "error: cannot write " in proc.stderr and "(ENOSPC)" in proc.stderr, proc.stderr
    snake = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"),
                            "--cores", "1", "-n"], cwd=folder, capture_output=True, text=True,
                           timeout=300)
    assert snake.returncode == 1, snake.stderr[-3000:]
    assert "error: cannot write " in snake.stderr and "Traceback" not in snake.stderr, \
        snake.stderr[-3000:]
    assert not list(folder.rglob("*.tmp"))


def test_a_read_only_results_folder(tmp_path):
    """EACCES (a folder the user may not write): `error:` naming it, exit 1."""
    if os.getuid() == 0:  # root writes anywhere: a read-only bind mount does the same
        folder = tmp_path / "proj"
        make_project(folder, fake_project_text())
        (folder / "results").mkdir()
        subprocess.run(["mount", "--bind", "-o", "ro", str(folder / "results"),
                        str(folder / "results")], check=True)
        subprocess.run(["mount", "-o", "remount,bind,ro", str(folder / "results")], check=True)
        try:
            proc = taomake(folder, "compile")
        finally:
            subprocess.run(["umount", "-l", str(folder / "results")], check=False)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert "error: cannot write " in proc.stderr and "(EROFS)" in proc.stderr, proc.stderr
        assert "put `results:` on a writable one" in proc.stderr
    else:
        folder = tmp_path / "proj"
        make_project(folder, fake_project_text())
        (folder / "results").mkdir(mode=0o555)
        proc = taomake(folder, "compile")
        assert proc.returncode == 1 and "(EACCES)" in proc.stderr, proc.stderr
