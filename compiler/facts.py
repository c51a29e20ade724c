"""Facts derived from a project that several stages need (compile, plan, checks, jobs): one
definition each, so the spec, the SLURM request and the job never disagree."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .actions import ACTIONS, TRAININGS
from .layout import DataSource, source_slot


def source_action(project) -> str:
    """The training whose checkpoint the others read: the one the project builds (distill
    replaces train)."""
    return next(name for name in TRAININGS if ACTIONS[name].built_when(project) is None)


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
    training = ACTIONS[action].trains
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


# What a class is called inside TAO: its KITTI label files are space-separated (`<name> 0.00 0
# ...`) and DeepStream's labels file is one name per line, so a name carries letters, digits,
# `_ - .` only.  A name with anything else ("traffic light", COCO's own) gets a label with `_`
# for each run of other characters; the name itself stays for reports, plots and tables.
_NOT_IN_LABEL = re.compile(r"[^A-Za-z0-9_.-]+")


def tao_label(name: str) -> str:
    """The TAO-safe label of a class name ("traffic light" -> "traffic_light")."""
    return _NOT_IN_LABEL.sub("_", name.strip()).strip("_") or "class"


def tao_labels(classes: dict[int, str]) -> dict[int, str]:
    """Class id -> the label TAO writes and reads for it."""
    return {cid: tao_label(name) for cid, name in classes.items()}


def num_classes(dataset) -> int:
    """TAO's num_classes: the largest class id + 1 (ids may have gaps; docs/tao-notes.md §5)."""
    return max(dataset.classes) + 1


def min_train_images(project) -> int:
    """Images one training step needs: TAO drops incomplete batches and asserts a full batch
    per device (docs/tao-notes.md §5), so batch_size x GPUs per node x nodes."""
    hw = project.hardware
    return project.dataset.batch_size * max(1, hw.gpus_per_node) * hw.nodes


def input_paths(p):
    """(project key, path, kind) of every input the project names: local paths relative to
    project.yaml, and s3:// URIs.  kind is "images" (a folder or archive) or "file"."""
    ds = p.dataset
    for split in splits(ds):
        yield f"{split.key}.images", split.source.images, "images"
        yield f"{split.key}.annotations", split.source.annotations, "file"
    for key, src in (("dataset.inference", ds.inference),
                     ("dataset.calibration", ds.calibration)):
        if src:
            yield f"{key}.images", src.images, "images"
            if getattr(src, "annotations", None):
                yield f"{key}.annotations", src.annotations, "file"
    for key, value in (("model.pretrained_backbone", p.model.pretrained_backbone),
                       ("train.pretrained", p.train.pretrained)):
        if value:
            yield key, value, "file"
    if p.distill and not p.distill.teacher.checkpoint.startswith("experiment:"):
        yield "distill.teacher.checkpoint", p.distill.teacher.checkpoint, "file"


def dataset_sources(project, base=None) -> dict[str, DataSource]:
    """The dataset inputs of a project (splits, inference and calibration images) by their
    project.yaml key, in order.  Each names the folder it gets under `<results>/_data/` by its
    place in the project (`source_slot`); a path given twice (test images used for inference)
    is one source, under its first key.  An experiment's own data (a path at a key where the
    `base` project has another) gets a folder of its own."""
    base_paths = {k: path for k, path, _ in input_paths(base)} if base is not None else {}
    out: dict[str, DataSource] = {}
    by_uri: dict[tuple[str, str], DataSource] = {}
    for key, path, kind in input_paths(project):
        if not key.startswith("dataset."):
            continue
        source = by_uri.get((path, kind))
        if source is None:
            own = base is not None and base_paths.get(key) != path
            source = DataSource(path, kind, source_slot(key, path, base=not own))
            by_uri[(path, kind)] = source
        out[key] = source
    return out
