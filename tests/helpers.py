"""Shared test helpers (plain functions; fixtures live in conftest.py)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


SMOKE_PROJECT = REPO / "tests" / "smoke_project.yaml"  # the demo's shape, 2 epochs, data/shapes


def make_project(folder: Path, text: str | None = None, *, copy_data: bool = False) -> Path:
    """A project folder with the demo project.yaml (or `text`) and the bundled data."""
    folder.mkdir(parents=True, exist_ok=True)
    project = folder / "project.yaml"
    project.write_text(text if text is not None else SMOKE_PROJECT.read_text())
    data = folder / "data"
    if not data.exists():
        if copy_data:
            shutil.copytree(REPO / "data", data)
        else:
            data.symlink_to(REPO / "data")
    return project


def copy_build(source: Path, folder: Path) -> Path:
    """A built project folder copied for a test that changes it: checkpoints (`*.pth`, written
    once by TAO and only renamed or re-linked afterwards) are hard links, everything else is
    copied with its mtime (Snakemake and taomake see the copy as up to date: a test says so);
    symlinks (the bundled data) stay symlinks."""
    def link_or_copy(src: str, dst: str) -> None:
        if src.endswith(".pth"):
            os.link(src, dst)
        else:
            shutil.copy2(src, dst, follow_symlinks=False)

    shutil.copytree(source, folder, symlinks=True, copy_function=link_or_copy)
    return folder


def processes_matching(marker: str) -> list[str]:
    """Live (non-zombie) processes whose command line or working directory contains `marker`
    (a test's own folder: what it started, not another TAO run on a busy machine)."""
    alive = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0]
        except (OSError, IndexError):
            continue
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            cwd = ""
        if (marker in cmd or marker in cwd) and state != "Z":
            alive.append(f"{pid}: {cmd[:200]}")
    return alive


# Real-TAO builds off the suite's critical path train with one CPU thread (Snakemake's own
# override of the rules' `threads`): a project's only training otherwise takes every core
# `--cores` allows (rules/common.smk tao_threads), which on an idle 2-core machine saves ~7 %
# of its wall time for ~34 % more CPU (benchmarks/threads.py: 3 epochs of the demo, 59.0 s /
# 88.4 cpu-s with 2 threads, 62.9 s / 65.8 cpu-s with 1).  The suite runs four workers on two
# cores, bound by CPU.  Not the shared demo build, which the learned tests wait for
# (tests/learned_demo.py).
ONE_THREAD = ["--set-threads", "train=1", "distill=1"]


def work_budget(*, tao_jobs: int = 0, epochs: int = 0, fake_jobs: int = 0) -> float:
    """Seconds a test waits for the work it starts, sized from that work rather than guessed per
    call: a TAO job on this kind of machine (2 cores, CPU) takes up to a minute to start and
    finish, an epoch of the smoke or demo model up to a minute, a fake-TAO job a few seconds.
    Three times that, times how busy the machine is when the wait starts (load per core, at
    least 1): a timeout catches a hang; it must not fail a slow build that works."""
    busy = os.getloadavg()[0] / (os.cpu_count() or 1)
    work = 60 + 60 * tao_jobs + 60 * epochs + 10 * fake_jobs
    return 3 * work * max(1.0, busy)
