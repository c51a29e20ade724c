"""Run TAO on SLURM with Pyxis/Enroot: `srun --container-image=<image.sqsh> ...`.

Same rules as the docker runner: only `job.mounts` are mounted (same path inside), no home
folder, the project folder is the working directory, HOME/USER/LOGNAME and caches point into
the results folder.  Every variable is passed by *name*: `--export=NAME,...` in argv, the values
in the environment of the `srun` process (so secrets never appear in argv, logs or manifests).
`--container-env` lists the same names so that our values win over an ENV of the image; PATH
is not exported, so the image's own PATH is used.

Multi-node: `taomake.runners.multinode` provides the srun prefix and the in-container `sh -c`
wrapper; `pyxis_argv` takes them as `prefix` and `wrapper` instead of importing them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

from taomake.compiler.layout import image_file
from taomake.errors import RunError

from ..process import run_tree
from . import NothingToReclaim, TaoJob, held_by_tree, image_file_identity
from .apptainer import host_env
from .container_env import container_env, make_env_dirs
from .multinode import RANK_FROM_PROCID, shared_env, srun_prefix, step_cpus

if TYPE_CHECKING:
    from ..lease import Lease


def default_prefix(job: TaoJob) -> list[str]:
    """One task on one node, with the job's GPUs (a step of the surrounding allocation)."""
    argv = ["srun", "--nodes=1", "--ntasks=1"]
    if job.gpus:
        argv.append(f"--gpus-per-node={job.gpus}")
    return argv


def nested_prefix(job: TaoJob) -> list[str]:
    """The default step, inside a SLURM job whose rule already runs in a step: snakemake's
    SLURM plugin wraps each rule in `srun -n1`, which holds the job's CPUs and memory, so a
    plain nested srun waits forever ("Cancelled pending job step", seen on the real cluster);
    `--overlap --mem=0` makes it a step that shares them."""
    return [*default_prefix(job), "--overlap", "--mem=0"]


def pyxis_argv(job: TaoJob, image: str, *, env_names: list[str],
               prefix: list[str] | None = None, wrapper: list[str] | None = None) -> list[str]:
    """`srun` with Pyxis options for one job.  Pure.

    `env_names`: every variable the container gets (values come from srun's environment).
    `prefix` replaces the default `srun --nodes=1 --ntasks=1 [--gpus-per-node=G]` (multi-node);
    `wrapper` goes between the Pyxis options and `rtdetr` (multinode.RANK_FROM_PROCID)."""
    argv = list(prefix) if prefix else default_prefix(job)
    mounts = ",".join(f"{m.source}:{m.target}" + (":ro" if m.read_only else "")
                      for m in job.mounts)
    argv += [f"--container-image={image}", f"--container-mounts={mounts}",
             f"--container-workdir={job.workdir}", "--no-container-mount-home"]
    if env_names:
        names = ",".join(env_names)
        argv += [f"--container-env={names}", f"--export={names}"]
    else:
        argv.append("--export=NONE")
    return [*argv, *(wrapper or []), *job.tao_argv()]


def srun_env(job: TaoJob, values: Mapping[str, str]) -> dict[str, str]:
    """Environment of the srun process: host basics, SLURM_* of the allocation, our values,
    then the secrets by name."""
    env = host_env(())
    env.update({k: v for k, v in os.environ.items() if k.startswith("SLURM_")})
    env.update(values)
    for name in job.env_names:
        if name in os.environ:
            env[name] = os.environ[name]
    return env


def exported_names(job: TaoJob, values: Mapping[str, str]) -> list[str]:
    return [*values, *(n for n in job.env_names if n not in values)]


CONVERTER = "enroot import"  # what makes its image file (preflight names it)


def enroot_uri(image_ref: str) -> str:
    """enroot separates the registry with '#': docker://nvcr.io#nvidia/tao/tao-toolkit:TAG."""
    first, _, rest = image_ref.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return f"docker://{first}#{rest}"
    return f"docker://{image_ref}"


def conversion_argv(image_ref: str, output: str) -> list[str]:
    """The one-time import of the registry's image into a .sqsh (never inside a GPU job:
    rules/images.smk)."""
    return ["enroot", "import", "--output", output, enroot_uri(image_ref)]


@dataclass
class PyxisRunner(NothingToReclaim):
    image_dir: Path
    name: str = "pyxis"

    def image(self, job: TaoJob) -> str:
        return image_file(job.image, str(self.image_dir), "pyxis")

    def check(self, job: TaoJob) -> None:
        if not shutil.which("srun"):
            raise RunError("srun is not on PATH (pyxis needs SLURM); `taomake preflight` "
                           "checks this")
        if not Path(self.image(job)).is_file():
            raise RunError(f"{self.image(job)} is missing: build it with snakemake (rule "
                           f"container_image) or `enroot import` it from docker://{job.image}")

    def multinode(self, job: TaoJob, environ: Mapping[str, str] | None = None
                  ) -> tuple[list[str] | None, list[str] | None, dict[str, str]]:
        """(srun prefix, in-container wrapper, shared variables) for one task per node, each
        setting its own NODE_RANK from SLURM_PROCID; nothing for a single node."""
        if job.nodes <= 1:
            return None, None, {}
        environ = os.environ if environ is None else environ
        prefix = srun_prefix(job.nodes, job.gpus, pack=job.pack_nodes,
                             cpus_per_task=job.cpus_per_task or step_cpus(environ))
        return prefix, list(RANK_FROM_PROCID), shared_env(environ, nodes=job.nodes,
                                                          gpus_per_node=job.gpus)

    def runtime(self, job: TaoJob) -> str:
        return job.image

    def provenance(self, job: TaoJob) -> dict[str, str | None]:
        return {"runner": self.name, "image": job.image, "digest": None}

    def cache_runtime(self, job: TaoJob) -> dict[str, str] | None:
        return image_file_identity(Path(self.image(job)))

    def run(self, job: TaoJob, log: IO[bytes], on_tick: Callable[[], None] | None = None,
            lease: Lease | None = None) -> int:
        self.check(job)
        values = container_env(job)
        make_env_dirs(values)
        try:
            prefix, wrapper, shared = self.multinode(job)
        except ValueError as exc:
            raise RunError(f"multi-node training: {exc}") from None
        values.update(shared)
        if prefix is None and os.environ.get("SLURM_JOB_ID"):
            prefix = nested_prefix(job)
        argv = pyxis_argv(job, self.image(job), env_names=exported_names(job, values),
                          prefix=prefix, wrapper=wrapper)
        return run_tree(argv, cwd=job.workdir, env=srun_env(job, values), log=log,
                        on_tick=on_tick, **held_by_tree(lease))


def from_settings(runner, root: Path) -> PyxisRunner:
    folder = Path(os.path.expanduser(runner.pyxis.image_dir))
    return PyxisRunner(folder if folder.is_absolute() else root / folder)
