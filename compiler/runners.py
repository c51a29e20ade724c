"""What each runner can do: one table, `RUNNERS`, read by the checks, the compiler, the plan,
preflight and the jobs.  How a runner starts TAO is its module's (taomake.runners.<kind>);
what it is able to do is here, so a new runner is a row and a module."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RunnerAbilities:
    kind: str
    """`hardware.runner.kind`."""
    containers: bool
    """TAO runs in NVIDIA's images (`tao.version` / `tao.*_image` pick them), not in a venv
    on the host: checkpoints resume only under the same image."""
    tensorrt: bool
    """It can run the TensorRT actions: TAO's TensorRT code lives in its deploy image."""
    nodes_on_gpu: bool
    """It trains on several nodes with GPUs (one srun task per node in a SLURM allocation)."""
    nodes_on_cpu: bool
    """... and on CPU: only the TAO CPU venv carries the compat layer that lets TAO's
    multi-node launcher and all_gather run without CUDA."""
    image_file: str = ""
    """It runs a converted image file with this extension (.sif, .sqsh), built once by the
    `container_image` rule before any GPU job; "" if none."""
    single_host_why: str = ""
    """Why it cannot train on several nodes, when it cannot."""


RUNNERS: dict[str, RunnerAbilities] = {r.kind: r for r in (
    RunnerAbilities("local", containers=False, tensorrt=False, nodes_on_gpu=True,
                    nodes_on_cpu=True),
    RunnerAbilities("docker", containers=True, tensorrt=True, nodes_on_gpu=False,
                    nodes_on_cpu=False, single_host_why="it starts TAO on one machine"),
    RunnerAbilities("apptainer", containers=True, tensorrt=True, nodes_on_gpu=False,
                    nodes_on_cpu=False, image_file=".sif",
                    single_host_why="it starts TAO on one machine"),
    RunnerAbilities("pyxis", containers=True, tensorrt=True, nodes_on_gpu=True,
                    nodes_on_cpu=False, image_file=".sqsh"),
)}


def kinds_that(ability: str) -> list[str]:
    """The runner kinds with an ability, in table order."""
    return [kind for kind, r in RUNNERS.items() if getattr(r, ability)]


def one_of(kinds: list[str]) -> str:
    """`a, b or c`."""
    return kinds[0] if len(kinds) == 1 else f"{', '.join(kinds[:-1])} or {kinds[-1]}"


__all__ = ["RUNNERS", "RunnerAbilities", "kinds_that", "one_of"]
