"""Runners start one TAO action somewhere (host venv, docker, apptainer, pyxis).

A runner only decides *where and how* `rtdetr <action> -e <spec> results_dir=<dir>` runs.  It
never changes the spec, so switching runner never rebuilds anything.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

from taomake.compiler.actions import Action

from .mounts import Mount
from .multinode import marked_spec, node_spec

if TYPE_CHECKING:
    from ..lease import Lease


@dataclass(frozen=True)
class TaoJob:
    """Everything a runner needs to start one TAO action."""

    action: Action
    spec: Path  # absolute path of this job's own spec copy (ends in .yaml)
    results_dir: str  # relative to workdir, e.g. results/base
    workdir: Path  # the project folder; TAO runs with it as working directory
    image: str  # TAO image for this action's flavor
    env_names: tuple[str, ...] = ()  # passed through by name only
    gpus: int = 0  # GPUs per node (0 = CPU)
    gpu_ids: tuple[int, ...] = ()  # physical ids on the host
    nodes: int = 1
    pack_nodes: bool = False  # all nodes' tasks on one SLURM host (hardware.pack_nodes)
    cpus_per_task: int | None = None  # what the SLURM job asked for (each srun task states it)
    shm_size: str = "16g"
    extra_env: dict[str, str] = field(default_factory=dict)  # non-secret values we set
    mounts: tuple[Mount, ...] = ()  # what a container must see (see runners.mounts)
    label: str = ""  # "<project>/<experiment>/<action>", for container labels and job names

    def tao_argv(self) -> list[str]:
        # multi-node: each task puts its rank into the spec name (its own copy; see multinode)
        spec = marked_spec(self.spec) if self.nodes > 1 else self.spec
        return ["rtdetr", self.action.subcommand, "-e", str(spec),
                f"results_dir={self.results_dir}"]

    def node_specs(self) -> list[Path]:
        """The per-node spec copies a multi-node job needs next to `spec` (none otherwise)."""
        return [node_spec(self.spec, rank) for rank in range(self.nodes)] \
            if self.nodes > 1 else []


class Runner(Protocol):
    name: str

    def runtime(self, job: TaoJob) -> str:
        """What TAO this runner runs the job with (a container image, a venv's TAO version):
        checkpoints of another runtime are never resumed."""
        ...

    def provenance(self, job: TaoJob) -> dict[str, Any]:
        """What the job ran with, for its provenance record: the runner and its venv, or the
        image (and its digest where the runtime tells it)."""
        ...

    def cache_runtime(self, job: TaoJob) -> dict[str, Any] | None:
        """What identifies the TAO that runs the job, the same on every machine (taomake.cache
        keys on it): an image's content digest, a venv's TAO and torch versions and compat
        layer; None when it cannot be told (the job is then neither fetched nor published)."""
        ...

    def reclaim(self, job: TaoJob) -> list[str]:
        """Stop and remove what an earlier run of this job left running outside taomake's
        process tree (its `taomake run` was killed hard), before the job starts again; say
        what was removed.  Called with the folder's lease held: whatever is found is an
        orphan, never a live job's."""
        ...

    def run(self, job: TaoJob, log: IO[bytes], on_tick: Callable[[], None] | None = None,
            lease: Lease | None = None) -> int:
        """Run the job to completion, output appended to `log`; return its exit code.
        Raise `taomake.process.Interrupted` after cleaning up when asked to stop.  `lease`:
        the folder's lease, which TAO's processes must hold as long as they live."""
        ...


def image_file_identity(image: Path) -> dict[str, str] | None:
    """A converted image's cache identity (apptainer .sif, enroot .sqsh): the sha256 of its
    bytes, hashed once and remembered beside it (taomake.digests); None when it is missing."""
    from taomake.compiler.layout import RECORDS_DIR

    from ..digests import artifact_sha256

    if not image.is_file():
        return None
    try:
        (image.parent / RECORDS_DIR).mkdir(exist_ok=True)
    except OSError:
        pass  # a read-only image folder: hashed each time
    return {"image_file": artifact_sha256(image)}


def held_by_tree(lease: Lease | None) -> dict[str, Any]:
    """`run_tree` arguments that make TAO's process tree hold the job's lease (and put its
    process group in the lease's record)."""
    if lease is None:
        return {}
    return {"keep_fds": (lease.fd,), "on_start": lambda pgid: lease.note(tao_pgid=pgid)}


class NothingToReclaim:
    """For runners whose TAO is a child process tree: it holds the lease itself while it
    lives (taomake.lease), so nothing of an earlier run can be running once the lease is
    ours."""

    def reclaim(self, job: TaoJob) -> list[str]:
        return []
