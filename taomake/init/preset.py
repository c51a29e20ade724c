"""The recipes `taomake init` writes: `cpu` (what learns on a CPU in a stated time) and `gpu`
(TAO's own recipe), sized from the data, each key with the reason it has its value.

The CPU recipe is the demo's (tests and benchmarks/README.md: a tiny RT-DETR from scratch,
learning rate 1e-3, light augmentation, no activation checkpointing), with the input size from
the images (their typical longer side, at most CPU_MAX_SIZE, a multiple of 32) and the epochs
from a time budget: an epoch's time is estimated from the demo's measured pace and scaled by
the pixels and the images per epoch.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
from dataclasses import dataclass
from typing import Literal

Preset = Literal["cpu", "gpu"]
CPU_MAX_SIZE = 320  # beyond this an epoch on a CPU takes minutes for a few hundred images
# the demo's measured pace on 2 cores: ~11 s per epoch of 96 training + 32 validation images
# at 128 x 128 (benchmarks/README.md), i.e. seconds per image-pass at 128 px on 2 cores
SECONDS_PER_IMAGE_128 = 11 / (96 + 32 * 0.5)
MIN_EPOCHS, MAX_EPOCHS = 10, 100


@dataclass(frozen=True)
class DataShape:
    """What the recipe is sized from (the COCO files' own fields; no image is opened)."""

    train_images: int
    val_images: int
    sizes: list[tuple[int, int]]  # (width, height) per training image, where given
    max_boxes: int  # most boxes on one image


def machine_preset() -> tuple[Preset, str]:
    """The default: `gpu` with an NVIDIA GPU and a docker daemon, else `cpu`; and why."""
    gpus = 0
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True,
                                 timeout=10).stdout
            gpus = sum(1 for line in out.splitlines() if line.startswith("GPU"))
        except (OSError, subprocess.SubprocessError):
            gpus = 0
    docker = shutil.which("docker") is not None and os.path.exists("/var/run/docker.sock")
    # on a cluster's login node the GPUs are on the nodes: say how to build there
    slurm = "; SLURM found: build with `snakemake --profile profiles/slurm`" \
        if shutil.which("sbatch") else ""
    if gpus and docker:
        return "gpu", f"{gpus} NVIDIA GPU(s) and docker found{slurm}"
    return "cpu", ("no NVIDIA GPU found" if not gpus else "no docker daemon found") + \
        f" (choose with --preset gpu){slurm}"


COMMENT_COLUMN = 31


def c(text: str, why: str = "") -> str:
    """A project.yaml line with its reason, the reasons aligned."""
    return f"{text:<{COMMENT_COLUMN - 1}} # {why}" if why else text


def _round32(v: float) -> int:
    return max(64, int(round(v / 32)) * 32)


def input_size(shape: DataShape, cap: int) -> int:
    """The typical image's longer side, capped, a multiple of 32 (square: TAO's multi-scale
    training resizes every batch to a square)."""
    longer = [max(w, h) for w, h in shape.sizes] or [640]
    return _round32(min(cap, statistics.median(longer)))


def cpu_epochs(shape: DataShape, size: int, budget_minutes: float,
               cores: int | None = None) -> tuple[int, float]:
    """(epochs, estimated seconds per epoch) for the CPU recipe to fit the budget."""
    cores = cores or os.cpu_count() or 2
    per_image = SECONDS_PER_IMAGE_128 * (size / 128) ** 2 * (2 / min(cores, 8))
    epoch = per_image * (shape.train_images + 0.5 * shape.val_images)
    epochs = int(budget_minutes * 60 // max(epoch, 1e-3))
    return max(MIN_EPOCHS, min(MAX_EPOCHS, epochs)), epoch


def queries(shape: DataShape) -> int:
    """RT-DETR finds at most num_queries objects per image: room for the busiest image."""
    return max(30, int(shape.max_boxes * 1.5 + 9) // 10 * 10)


def cpu_sections(shape: DataShape, budget_minutes: float) -> dict[str, list[str]]:
    """project.yaml lines per section of the CPU recipe (comments say why)."""
    size = input_size(shape, CPU_MAX_SIZE)
    epochs, epoch_s = cpu_epochs(shape, size, budget_minutes)
    step = max(1, round(epochs * 0.8))
    q = queries(shape)
    return {
        "dataset": [
            c("  batch_size: 4", "small batches: CPU memory and many steps per epoch"),
            c("  workers: 2", "data loading beside 2+ compute threads"),
            "  augmentation:",
            c(f"    train_size: [{size}, {size}]",
              f"typical image side, <= {CPU_MAX_SIZE} on CPU, a multiple of 32"),
            f"    eval_size: [{size}, {size}]",
            c(f"    multi_scales: [{size}]", "one scale: multi-scale costs time on a CPU"),
            c("    distortion_prob: 0.2", "light augmentation for short trainings"),
            "    iou_crop_prob: 0.2",
        ],
        "hardware": [
            c("  gpus_per_node: 0", "CPU: TAO runs in the venv `taomake setup tao-cpu` makes"),
            "  runner:",
            "    kind: local",
        ],
        "model": [
            c("  backbone: resnet_18", "the smallest backbone: fast on a CPU"),
            c("  hidden_dim: 64", "a tiny transformer (the demo's): ~11 M parameters"),
            c(f"  num_queries: {q}", f">= 1.5 x the busiest image's {shape.max_boxes} boxes"),
            f"  num_select: {q}",
            "  dec_layers: 2",
            "  dn_number: 10",
            "  dim_feedforward: 256",
        ],
        "train": [
            c(f"  epochs: {epochs}", f"~{epoch_s:.0f} s per epoch estimated: about "
              f"{budget_minutes:g} min (raise it while val_mAP still rises)"),
            c("  lr: 0.001", "from scratch (no pretrained weights): 10x TAO's default"),
            "  lr_backbone: 0.001",
            "  schedule:",
            c(f"    steps: [{step}]", "lr x 0.1 for the last fifth"),
            c("  activation_checkpoint: false", "recomputing activations only saves memory"),
            c("  use_checkpoint: best", "the best val_mAP epoch feeds evaluate/export"),
        ],
        "inference": [
            c("  conf_threshold: 0.3", "a short CPU training scores lower: TAO's 0.5 "
              "would hide many of its detections"),
        ],
    }


def gpu_sections(shape: DataShape, gpus: int = 1) -> dict[str, list[str]]:
    """project.yaml lines per section of TAO's own recipe (comments say why)."""
    q = max(300, queries(shape))
    return {
        "dataset": [
            c("  batch_size: 4", "per GPU, TAO's default"),
            c("  workers: 8", "per GPU"),
            "  augmentation:",
            c("    train_size: [640, 640]", "TAO's recipe (multi-scale 480..800 around it)"),
            "    eval_size: [640, 640]",
        ],
        "hardware": [
            c(f"  gpus_per_node: {gpus}", "the GPUs found on this machine"),
            "  runner:",
            c("    kind: docker", "NVIDIA's TAO image (docker login nvcr.io first)"),
        ],
        "model": [
            c("  backbone: resnet_50", "TAO's default RT-DETR backbone"),
            "  # pretrained_backbone: resnet50.pth   # ImageNet weights TAO offers on NGC "
            "(`ngc registry model download-version nvidia/tao/pretrained_backbones`): set "
            "it to train in far fewer epochs",
            c(f"  num_queries: {q}", "TAO's default, or more for busy images"),
            f"  num_select: {q}",
        ],
        "train": [
            c("  epochs: 72", "TAO's recipe"),
            c("  use_checkpoint: best", "the best val_mAP epoch feeds evaluate/export"),
        ],
    }


__all__ = ["CPU_MAX_SIZE", "DataShape", "Preset", "cpu_epochs", "cpu_sections", "gpu_sections",
           "input_size", "machine_preset", "queries"]
