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
