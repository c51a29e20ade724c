"""The demo pipeline built once per test session with the real TAO RT-DETR on CPU (the root
project.yaml on the bundled demo data, as `make demo` builds it), for the tests that need a
model that learned: tests/test_e2e_learning*.py.

The build takes minutes (30 epochs), so it is shared: the first pytest-xdist worker that asks
builds it while the others wait on a lock, and nobody changes it afterwards: each test file
works on its own copy (`tests.helpers.copy_build`, checkpoints hard-linked), so the files run
side by side on different workers.  A failed build is recorded, and every file that needs it
fails with its log instead of building again."""

from __future__ import annotations

import fcntl
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import REPO, copy_build, make_project, work_budget

# As `make demo` builds it: its training takes both cores.  It is the suite's critical path, and
# with one thread (tests/helpers.py ONE_THREAD) it trained 886 s instead of 763 beside the
# other workers (ci16 vs ci13, benchmarks/README.md).
SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--cores", "2"]
CLASSES = {"circle": 1, "triangle": 3, "square": 4}
# Priority of the shared build over the rest of the suite (nice -5; root only): every test of
# the e2e_learning files waits for it, so it is the suite's critical path.  (Little effect
# where the kernel groups processes by session (autogroup): each TAO worker starts a session
# of its own, and nice only orders processes within one.  Measured on the 2-core test
# machine: a one-thread training of the build got ~0.4-0.5 of a core at -5 and at -15 alike.)
BUILD_NICE = -5


def build(folder: Path, *targets: str) -> str:
    """snakemake on `folder` (the targets, or everything); its output; asserts success."""
    proc = subprocess.run([*SNAKEMAKE, *targets], cwd=folder, capture_output=True, text=True,
                          timeout=work_budget(tao_jobs=12, epochs=_epochs(folder)))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    return out


def _epochs(folder: Path) -> int:
    return int(re.search(r"epochs: (\d+)", (folder / "project.yaml").read_text())[1])


@dataclass(frozen=True)
class LearnedDemo:
    folder: Path  # the shared build: read it, never change it (copy it: `copy`)
    out: str  # Snakemake's output of the build

    def copy(self, folder: Path) -> Path:
        return copy_build(self.folder, folder)


def shared_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's temporary folder every xdist worker sees (each worker's own basetemp is
    a subfolder of it); without xdist, the session's basetemp."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def learned_demo(tao_venv: Path, tmp_path_factory: pytest.TempPathFactory) -> LearnedDemo:
    root = shared_root(tmp_path_factory) / "learned-demo"
    root.mkdir(exist_ok=True)
    folder, log, failed = root / "demo", root / "build.log", root / "FAILED"
    with (root / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if failed.exists():
            pytest.fail(f"the shared demo build failed (in another worker):\n{failed.read_text()}")
        if not log.exists():
            rc, out = _build_first(folder, tao_venv)
            if rc != 0:
                failed.write_text(out[-4000:])
                pytest.fail(f"the shared demo build failed:\n{out[-4000:]}")
            log.write_text(out)
    return LearnedDemo(folder, log.read_text())


def _build_first(folder: Path, tao_venv: Path) -> tuple[int, str]:
    """The demo project in `folder`, built at BUILD_NICE: (exit code, Snakemake's output)."""
    text = (REPO / "project.yaml").read_text().replace(
        "    kind: local", f"    kind: local\n    local: {{venv: {tao_venv}}}")
    make_project(folder, text)
    proc = subprocess.Popen(SNAKEMAKE, cwd=folder, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:  # before Snakemake starts a job (children inherit the priority when they start)
        os.setpriority(os.PRIO_PROCESS, proc.pid, BUILD_NICE)
    except OSError:  # not root: the same build, sharing the CPU evenly
        pass
    try:
        out, _ = proc.communicate(timeout=work_budget(tao_jobs=12, epochs=_epochs(folder)))
    except subprocess.TimeoutExpired:
        proc.kill()
        out = proc.communicate()[0] + "\n(timed out)"
    return proc.returncode, out
