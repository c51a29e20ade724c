"""Facts derived from a project that several stages need (compile, plan, checks, jobs): one
definition each, so the spec, the SLURM request and the job never disagree."""

from __future__ import annotations

from dataclasses import dataclass

TRAINING_ACTIONS = ("train", "distill")


def source_action(project) -> str:
    """The action whose checkpoint evaluate/export/inference use: distill replaces train."""
    return "distill" if project.distill else "train"


@dataclass(frozen=True)
class JobShape:
    """How big one TAO job of an action is (docs/tao-notes.md §2.4): only training spans every
    GPU and node; every other action runs on one node with one GPU (none on CPU)."""

    gpus: int
    """GPUs per node the job uses."""
    nodes: int
    """TAO nodes (one task each)."""
    packed: bool
    """The nodes run as tasks on one host (`hardware.pack_nodes`)."""

    @property
    def slurm_nodes(self) -> int:
        return 1 if self.packed else self.nodes


def job_shape(hardware, action: str) -> JobShape:
    training = action in TRAINING_ACTIONS
    return JobShape(gpus=hardware.gpus_per_node if training else min(hardware.gpus_per_node, 1),
                    nodes=hardware.nodes if training else 1, packed=hardware.pack_nodes)
