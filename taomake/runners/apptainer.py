"""Run TAO from a converted Apptainer image (`.sif`), on a workstation or a SLURM node.

Same rules as the docker runner: only `job.mounts` are visible (inputs read-only, the results
folder read-write, each at the same path as on the host), the job runs as the invoking user with
HOME/USER/LOGNAME and the cache folders under the results folder, and the project folder is the
working directory.

Secrets with `--cleanenv`: `--cleanenv` drops the caller's environment, except variables named
`APPTAINERENV_<NAME>`, which Apptainer hands to the container as `<NAME>`.  So a secret named in
`hardware.runner.env` is passed by setting `APPTAINERENV_<NAME>` in the environment of the
`apptainer` process from the caller's value: the value never appears in argv (visible in `ps`),
in a log or in a manifest.  Only non-secret values (our HOME, caches, TAO_LOGGING_LEVEL) are
written as `--env NAME=value`.

The image is converted once, outside any GPU job, by rules/images.smk
(`apptainer build <sif> docker://<image>`); `image_file()` names it.
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
from .container_env import container_env, make_env_dirs

if TYPE_CHECKING:
    from ..lease import Lease

# environment of the container-starting process itself (PATH finds apptainer/srun)
HOST_ENV = ("PATH", "LANG", "LC_ALL", "TZ", "TMPDIR", "HOME", "USER", "LOGNAME")


# --------------------------------------------------------------------------- images


CONVERTER = "apptainer build"  # what makes its image file (preflight names it)


def conversion_argv(image_ref: str, output: str) -> list[str]:
    """The one-time conversion of the registry's image into a .sif (never inside a GPU job:
    rules/images.smk)."""
    return ["apptainer", "build", "--force", output, f"docker://{image_ref}"]


# --------------------------------------------------------------------------- environment


def host_env(secret_names: tuple[str, ...], prefix: str = "") -> dict[str, str]:
    """Environment of the apptainer/srun process: a few host variables plus the secrets
    (renamed with `prefix`), taken from our own environment, values never logged."""
    env = {k: os.environ[k] for k in HOST_ENV if k in os.environ}
    for name in secret_names:
        if name in os.environ:
            env[prefix + name] = os.environ[name]
    return env


# --------------------------------------------------------------------------- argv


def apptainer_argv(job: TaoJob, image: str, *, env: Mapping[str, str],
                   prefix: list[str] | None = None, wrapper: list[str] | None = None
                   ) -> list[str]:
    """`apptainer exec` for one job.  Pure: same job, image and env give the same argv.

    `env` holds non-secret values only (written as --env); secrets go by name through
    APPTAINERENV_<NAME> (see the module docstring).  `prefix` goes before `apptainer` (e.g.
    `srun ...` for multi-node), `wrapper` between the image and `rtdetr` (e.g.
    `taomake node-env --`)."""
    argv = [*(prefix or []), "apptainer", "exec"]
    if job.gpus:
        argv.append("--nv")
    # nothing of the host but the mounts: no $HOME, no current folder
    argv += ["--cleanenv", "--no-mount", "home,cwd", "--pwd", str(job.workdir)]
    for m in job.mounts:
        argv += ["-B", f"{m.source}:{m.target}" + (":ro" if m.read_only else "")]
    for name, value in env.items():
        argv += ["--env", f"{name}={value}"]
    return [*argv, image, *(wrapper or []), *job.tao_argv()]


@dataclass
class ApptainerRunner(NothingToReclaim):
    image_dir: Path
    name: str = "apptainer"

    def image(self, job: TaoJob) -> str:
        return str(Path(image_file(job.image, str(self.image_dir), "apptainer")))

    def check(self, job: TaoJob) -> None:
        if not shutil.which("apptainer"):
            raise RunError("apptainer is not on PATH (load its module, or use another "
                           "hardware.runner.kind); `taomake preflight` checks this")
        if not Path(self.image(job)).is_file():
            raise RunError(f"{self.image(job)} is missing: build it with snakemake (rule "
                           "container_image) or `apptainer build` it from "
                           f"docker://{job.image}")

    def runtime(self, job: TaoJob) -> str:
        return job.image

    def provenance(self, job: TaoJob) -> dict[str, str | None]:
        return {"runner": self.name, "image": job.image, "digest": None}

    def cache_runtime(self, job: TaoJob) -> dict[str, str] | None:
        return image_file_identity(Path(self.image(job)))

    def run(self, job: TaoJob, log: IO[bytes], on_tick: Callable[[], None] | None = None,
            lease: Lease | None = None) -> int:
        if job.nodes > 1:
            raise RunError("multi-node training with apptainer is not supported yet; use "
                           "hardware.runner.kind: pyxis")
        self.check(job)
        env = container_env(job)
        make_env_dirs(env)
        argv = apptainer_argv(job, self.image(job), env=env)
        return run_tree(argv, cwd=job.workdir,
                        env=host_env(job.env_names, prefix="APPTAINERENV_"), log=log,
                        on_tick=on_tick, **held_by_tree(lease))


def from_settings(runner, root: Path) -> ApptainerRunner:
    folder = Path(os.path.expanduser(runner.apptainer.image_dir))
    return ApptainerRunner(folder if folder.is_absolute() else root / folder)
