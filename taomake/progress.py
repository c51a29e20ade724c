"""What a training says while TAO runs: a line per finished epoch, with its losses, the
validation mAPs and an ETA."""

from __future__ import annotations

import time
from pathlib import Path

from .joblog import say as _say
from .tao_status import read_status, training_curve


def duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    return f"{seconds // 60} min {seconds % 60:02d} s"


class Progress:
    """Print a line per finished epoch (train/distill) while TAO runs: the losses, the
    validation mAPs and, from the second epoch on, an ETA from the pace of the epochs since
    the first."""

    def __init__(self, status: Path, skip: int, label: str, epochs: int | None = None):
        self.status, self.skip, self.label, self.epochs = status, skip, label, epochs
        self.next_check, self.seen = 0.0, -1
        self.done_at: list[tuple[int, float]] = []  # (epoch, when its line was seen)

    def eta(self, epoch: int) -> str:
        if not self.epochs or epoch + 1 >= self.epochs:
            return ""
        if len(self.done_at) < 2:  # the first epoch also carries TAO's start-up
            return ""
        (first_epoch, first), (last_epoch, last) = self.done_at[0], self.done_at[-1]
        pace = (last - first) / max(1, last_epoch - first_epoch)
        return f", ETA {duration(pace * (self.epochs - 1 - epoch))}"

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
