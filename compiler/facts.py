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


SPLIT_ROLES = ("train", "val", "test")


@dataclass(frozen=True)
class Split:
    """One annotated split of `dataset` (train has one per source)."""

    role: str
    """train, val or test: what the split is for."""
    name: str
    """Its name under `dataset` in project.yaml: train[0], val, test."""
    source: object
    """The project's split (`images`, `annotations`)."""

    @property
    def key(self) -> str:
        """Its project.yaml key, e.g. `dataset.train[0]`."""
        return f"dataset.{self.name}"


def splits(dataset, roles: tuple[str, ...] = SPLIT_ROLES) -> list[Split]:
    """The dataset's annotated splits of `roles`, in project order (test only when given)."""
    out = []
    if "train" in roles:
        out += [Split("train", f"train[{i}]", s) for i, s in enumerate(dataset.train)]
    if "val" in roles:
        out.append(Split("val", "val", dataset.val))
    if "test" in roles and dataset.test:
        out.append(Split("test", "test", dataset.test))
    return out


def num_classes(dataset) -> int:
    """TAO's num_classes: the largest class id + 1 (ids may have gaps; docs/tao-notes.md §5)."""
    return max(dataset.classes) + 1


def min_train_images(project) -> int:
    """Images one training step needs: TAO drops incomplete batches and asserts a full batch
    per device (docs/tao-notes.md §5), so batch_size x GPUs per node x nodes."""
    hw = project.hardware
    return project.dataset.batch_size * max(1, hw.gpus_per_node) * hw.nodes
