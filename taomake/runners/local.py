"""Run TAO from a Python environment on this host (the CPU venv by default)."""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

from taomake.compiler.errors import UsageError

from ..process import run_tree
from . import NothingToReclaim, TaoJob, held_by_tree
from .multinode import RANK_FROM_PROCID, allocation_env, shared_env, srun_prefix, step_cpus

if TYPE_CHECKING:
    from ..lease import Lease

# Host variables a Python program needs to behave; everything else must be asked for by name.
BASE_ENV = ("HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ", "TMPDIR")


def default_venv() -> Path:
    from ..tao_cpu.setup import default_venv_path

    return default_venv_path()


@dataclass
class LocalRunner(NothingToReclaim):
    """`rtdetr` from a venv's bin/, with that bin/ first on PATH (torchrun must be found)."""

    venv: Path
    name: str = "local"

    @classmethod
    def from_venv(cls, venv: str | None, project_root: Path) -> LocalRunner:
        if venv:
            path = Path(os.path.expanduser(venv))
            return cls(path if path.is_absolute() else project_root / path)
        return cls(default_venv())

    def srun(self, job: TaoJob, environ: Mapping[str, str] | None = None) -> list[str]:
        """The srun step of a multi-node job (inside its SLURM allocation: one task per TAO
        node), or [] for one node."""
        if job.nodes <= 1:
            return []
        environ = os.environ if environ is None else environ
        return srun_prefix(job.nodes, job.gpus, pack=job.pack_nodes,
                           cpus_per_task=job.cpus_per_task or step_cpus(environ))

    def argv(self, job: TaoJob, environ: Mapping[str, str] | None = None) -> list[str]:
        argv = job.tao_argv()
        argv = [str(self.venv / "bin" / argv[0]), *argv[1:]]
        if job.nodes > 1:  # each task sets its own NODE_RANK
            return [*self.srun(job, environ), *RANK_FROM_PROCID, *argv]
        return argv

    def env(self, job: TaoJob, environ: Mapping[str, str] | None = None) -> dict[str, str]:
        environ = os.environ if environ is None else environ
        env = {k: environ[k] for k in BASE_ENV if k in environ}
        if job.nodes > 1:
            # srun must be a step of this job's allocation (its SLURM_* variables), and every
            # node shares WORLD_SIZE, NUM_GPU_PER_NODE, MASTER_ADDR and MASTER_PORT
            env.update(allocation_env(environ))
            try:
                env.update(shared_env(environ, nodes=job.nodes, gpus_per_node=job.gpus))
            except ValueError as exc:
                raise UsageError(f"multi-node training: {exc}") from None
        env["PATH"] = os.pathsep.join([str(self.venv / "bin"), environ.get("PATH", "")])
        env["VIRTUAL_ENV"] = str(self.venv)
        env["PYTHONUNBUFFERED"] = "1"  # TAO's progress reaches the log as it happens
        for name in job.env_names:
            if name in environ:
                env[name] = environ[name]
        env.update(job.extra_env)
        if job.gpus:
            # TAO sets CUDA_VISIBLE_DEVICES itself from gpu_ids 0..n-1 (docs/tao-notes.md §2.2)
            env.pop("CUDA_VISIBLE_DEVICES", None)
        return env

    def runtime(self, job: TaoJob) -> str:
        """The venv's nvidia-tao-pytorch version: the local runner ignores tao.version (which
        names container images), so this is what decides whether checkpoints resume."""
        version = installed_version(self.venv, "nvidia_tao_pytorch")
        return f"nvidia-tao-pytorch {version}" if version else f"the TAO of {self.venv}"

    def provenance(self, job: TaoJob) -> dict[str, str]:
        return {"runner": self.name, "venv": str(self.venv)}

    def cache_runtime(self, job: TaoJob) -> dict[str, str | None] | None:
        return venv_identity(self.venv)

    def check(self) -> None:
        if not (self.venv / "bin" / "rtdetr").exists():
            raise UsageError(f"no TAO installation at {self.venv} (bin/rtdetr missing); "
                             "create it with `taomake setup tao-cpu`, or set "
                             "hardware.runner.local.venv to a venv with nvidia-tao-pytorch")

    def run(self, job: TaoJob, log: IO[bytes], on_tick: Callable[[], None] | None = None,
            lease: Lease | None = None) -> int:
        self.check()
        argv, env = self.argv(job), self.env(job)
        if job.nodes > 1:
            shared = " ".join(f"{k}={env[k]}" for k in ("WORLD_SIZE", "NUM_GPU_PER_NODE",
                                                        "MASTER_ADDR", "MASTER_PORT"))
            log.write(f"[taomake] multi-node: {shlex.join(self.srun(job))} "
                      f"(one TAO node per task; {shared}; SLURM job "
                      f"{env.get('SLURM_JOB_ID', '?')})\n".encode())
        return run_tree(argv, cwd=job.workdir, env=env, log=log, on_tick=on_tick,
                        **held_by_tree(lease))


def installed_version(venv: Path, dist: str) -> str | None:
    """The version of package `dist` (its dist-info name) installed in `venv`, or None."""
    found = sorted(venv.glob(f"lib/python*/site-packages/{dist}-*.dist-info"))
    return found[-1].name.removesuffix(".dist-info").split("-", 1)[1] if found else None


def venv_identity(venv: Path) -> dict[str, str | None] | None:
    """A venv's TAO and torch versions and, for taomake's CPU venv, its compat layer (the
    marker `taomake setup tao-cpu` writes): never its path.  None without both packages."""
    import json

    from ..tao_cpu.setup import MARKER

    versions = {dist: installed_version(venv, dist) for dist in ("nvidia_tao_pytorch", "torch")}
    if None in versions.values():
        return None
    try:
        compat = json.loads((venv / MARKER).read_text()).get("compat_sha256")
    except (OSError, ValueError):
        compat = None  # a venv of the user's own: its TAO and torch versions alone
    return {"tao": versions["nvidia_tao_pytorch"], "torch": versions["torch"], "compat": compat}


def from_settings(runner, root: Path) -> LocalRunner:
    return LocalRunner.from_venv(runner.local.venv, root)
