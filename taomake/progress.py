"""What a training says while TAO runs: a line per finished epoch, with its losses, the
validation mAPs and an ETA."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from .joblog import say as _say
from .tao_status import read_status, training_curve


def duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    return f"{seconds // 60} min {seconds % 60:02d} s"


@dataclass(frozen=True)
class Downstream:
    """The TAO jobs of the experiment after its training (evaluate, export, inference...),
    for an ETA of the whole build: how many, and the images they read; and the images an
    epoch reads (training and validation)."""

    jobs: int
    images: int
    epoch_images: int

    # a forward pass costs about a third of a training step (forward + backward)
    INFER_COST = 1 / 3

    def seconds(self, startup: float, pace: float) -> float:
        """Each job starts TAO (as long as the training's start-up) and passes over its
        images at a third of the training's per-image pace."""
        per_image = pace / max(1, self.epoch_images)
        return self.jobs * startup + self.images * per_image * self.INFER_COST


def count_images(folders: list[str], root: Path) -> int:
    """Files in the image folders (one listing each; annotations files are skipped)."""
    total = 0
    for folder in folders:
        try:
            with os.scandir(root / folder) as it:
                total += sum(1 for e in it if e.is_file() and not e.name.startswith("."))
        except OSError:
            continue
    return total


class Progress:
    """Print a line per finished epoch (train/distill) while TAO runs: the losses, the
    validation mAPs and, from the second epoch on, an ETA from the pace of the epochs since
    the first, and of the whole build when the jobs after the training are known."""

    def __init__(self, status: Path, skip: int, label: str, epochs: int | None = None,
                 downstream: Downstream | None = None):
        self.status, self.skip, self.label, self.epochs = status, skip, label, epochs
        self.downstream = downstream
        self.started = time.monotonic()
        self.next_check, self.seen = 0.0, -1
        self.done_at: list[tuple[int, float]] = []  # (epoch, when its line was seen)

    def eta(self, epoch: int) -> str:
        if not self.epochs or epoch + 1 >= self.epochs:
            return ""
        if len(self.done_at) < 2:  # the first epoch also carries TAO's start-up
            return ""
        (first_epoch, first), (last_epoch, last) = self.done_at[0], self.done_at[-1]
        pace = (last - first) / max(1, last_epoch - first_epoch)
        left = pace * (self.epochs - 1 - epoch)
        text = f", ETA {duration(left)}"
        if self.downstream and self.downstream.jobs:
            startup = max(0.0, first - self.started - pace * (first_epoch + 1))
            rest = self.downstream.seconds(startup, pace)
            text += (f" (the whole build: ~{duration(left + rest)}, "
                     f"{self.downstream.jobs} more TAO jobs)")
        return text

    def __call__(self) -> None:
        now = time.monotonic()
        if now < self.next_check:
            return
        self.next_check = now + 2.0
        rows = training_curve(read_status(self.status)[self.skip:])
        for row in rows:
            if row.epoch > self.seen and row.train_loss is not None:
                self.seen = row.epoch
                self.done_at.append((row.epoch, now))
                extra = f", val_mAP {row.val_mAP:.4f}" if row.val_mAP is not None else ""
                if row.val_mAP50 is not None:
                    extra += f", val_mAP50 {row.val_mAP50:.4f}"
                of = f" ({row.epoch + 1}/{self.epochs})" if self.epochs else ""
                _say(f"{self.label}: epoch {row.epoch} done{of}, train_loss "
                     f"{row.train_loss:.4f}{extra}{self.eta(row.epoch)}")
