"""Shared fixtures.  Services a test needs (TAO wheels, the TAO venv, docker, SLURM, S3) are
skipped with a reason when missing locally, and fail the test in CI (CI=true)."""

from __future__ import annotations

from pathlib import Path

import pytest

from taomake.tao_wheels import ensure_tao_wheels
from tests.helpers import IN_CI


@pytest.fixture(scope="session")
def tao_roots() -> dict[str, Path]:
    try:
        return ensure_tao_wheels()
    except Exception as ex:  # network, index, disk
        if IN_CI:
            raise
        pytest.skip(f"TAO wheels could not be downloaded, so TAO itself cannot be asked: {ex}")


@pytest.fixture(scope="session")
def tao_venv() -> Path:
    """The TAO CPU venv that `taomake setup tao-cpu` builds ($TAOMAKE_TAO_VENV or the cache).

    Missing or built from other requirements: skipped locally, a failure in CI."""
    from taomake.tao_cpu.setup import default_venv_path, read_marker, requirements_hash

    venv = default_venv_path()
    marker = read_marker(venv)
    problem = None
    if marker is None or not (venv / "bin" / "python").exists():
        problem = f"TAO CPU venv missing: run `taomake setup tao-cpu` (looked at {venv})"
    elif marker.get("requirements_sha256") != requirements_hash():
        problem = (f"TAO CPU venv at {venv} was built from other requirements: "
                   f"run `taomake setup tao-cpu`")
    if problem:
        if IN_CI:
            pytest.fail(problem)
        pytest.skip(problem)
    return venv


@pytest.fixture(scope="session")
def docker_client():
    """A client of the local Docker engine (scripts/services/docker.sh starts one).

    Unreachable: skipped locally with the fix, a failure in CI."""
    try:
        import docker

        client = docker.from_env()
        client.ping()
    except Exception as ex:
        problem = (f"Docker engine unreachable ({ex}): run `bash scripts/services/docker.sh` "
                   "(as root) and `bash scripts/services/tao-cpu-image.sh`")
        if IN_CI:
            pytest.fail(problem)
        pytest.skip(problem)
    return client


@pytest.fixture(scope="session")
def slurm_cluster() -> str:
    """The local SLURM cluster with accounting (scripts/services/slurm.sh starts one).

    `sinfo` or `sacct` unusable: skipped locally with the fix, a failure in CI.  Returns the
    account jobs are charged to."""
    import os
    import shutil
    import subprocess

    problem = None
    for cmd in (["sinfo", "-h", "-o", "%T"], ["sacct", "-n", "-X", "-S", "now-1minutes"]):
        if shutil.which(cmd[0]) is None:
            problem = f"`{cmd[0]}` not installed"
            break
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
        except subprocess.TimeoutExpired:
            problem = f"`{' '.join(cmd)}` timed out"
            break
        if proc.returncode != 0:
            problem = f"`{' '.join(cmd)}` failed: {proc.stderr.strip()[:300]}"
            break
        if cmd[0] == "sinfo" and not {"idle", "mixed", "allocated"} & set(proc.stdout.split()):
            problem = f"no usable SLURM node (sinfo: {proc.stdout.split()})"
            break
    if problem:
        problem = f"SLURM unusable ({problem}): run `bash scripts/services/slurm.sh` (as root)"
        if IN_CI:
            pytest.fail(problem)
        pytest.skip(problem)
    return os.environ.get("SLURM_ACCOUNT_NAME", "taomake")
