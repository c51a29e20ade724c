"""What every container runner (docker, apptainer, pyxis) sets inside the container.

TAO's libraries write caches under $HOME and need USER/LOGNAME (torch calls getpwuid, which
fails for a uid the image does not know, docs/tao-notes.md §10): HOME and every cache folder
point into the job's writable results folder."""

from __future__ import annotations

import os
import pwd
from collections.abc import Mapping
from pathlib import Path

from taomake.compiler.layout import RECORDS_DIR

from . import TaoJob

# cache variable -> sub-folder of $HOME/.cache
CACHE_DIRS = {"XDG_CACHE_HOME": "", "HF_HOME": "huggingface", "TORCH_HOME": "torch",
              "TRITON_CACHE_DIR": "triton", "TORCHINDUCTOR_CACHE_DIR": "inductor",
              "MPLCONFIGDIR": "matplotlib"}


def user_name() -> str:
    """Name of the invoking uid (for USER/LOGNAME inside the container)."""
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return os.environ.get("USER") or f"uid{os.getuid()}"


def container_env(job: TaoJob, user: str | None = None) -> dict[str, str]:
    """Non-secret values the container gets: HOME/USER/LOGNAME, caches, job.extra_env."""
    user = user or user_name()
    home = (job.workdir / job.results_dir).resolve() / RECORDS_DIR / "container-home"
    env = {"HOME": str(home), "USER": user, "LOGNAME": user, "PYTHONUNBUFFERED": "1"}
    for var, sub in CACHE_DIRS.items():
        env[var] = str(home / ".cache" / sub) if sub else str(home / ".cache")
    env.update(job.extra_env)
    return env


def make_env_dirs(env: Mapping[str, str]) -> None:
    """Create HOME and the cache folders before the container starts (as the invoking user)."""
    for key in ("HOME", *CACHE_DIRS):
        if key in env:
            Path(env[key]).mkdir(parents=True, exist_ok=True)
