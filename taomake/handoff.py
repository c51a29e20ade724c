"""Checkpoint handoff: choose the epoch that evaluate/export/inference use, and publish it at
a stable path (`<train>/model.pth`, a hard link) with `selection.json` saying why."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from taomake.compiler.files import atomic_write
from taomake.compiler.layout import CHECKPOINT_GLOB, CHECKPOINT_RE
from taomake.errors import RunError

from .tao_status import EpochRow


@dataclass(frozen=True)
class Selection:
    epoch: int
    policy: str  # "best", "last" or "epoch"
    metric: str | None
    value: float | None
    source: str  # checkpoint file name inside the train folder
    note: str = ""


def checkpoint_files(train_dir: Path) -> list[Path]:
    """Every checkpoint file TAO saved in a training's folder (EMA copies included)."""
    return list(train_dir.glob(CHECKPOINT_GLOB))


def checkpoints(train_dir: Path) -> dict[int, Path]:
    """The non-empty epoch checkpoints by epoch (not the EMA copies)."""
    out = {}
    for path in checkpoint_files(train_dir):
        m = CHECKPOINT_RE.match(path.name)
        if m and path.stat().st_size > 0:
            out[int(m.group(1))] = path
    return dict(sorted(out.items()))


def select(train_dir: Path, policy: str | int, metric: str,
           curve: list[EpochRow]) -> Selection:
    saved = checkpoints(train_dir)
    if not saved:
        raise RunError(f"{train_dir}: no model_epoch_*.pth checkpoint to select from")
    last = max(saved)
    if isinstance(policy, int):
        if policy not in saved:
            raise RunError(f"{train_dir}: epoch {policy} has no checkpoint (saved epochs: "
                           f"{', '.join(map(str, saved))}); change train.use_checkpoint")
        return Selection(policy, "epoch", None, None, saved[policy].name)
    if policy == "last":
        return Selection(last, "last", None, None, saved[last].name)
    scored = [(getattr(row, metric), row.epoch) for row in curve
              if row.epoch in saved and getattr(row, metric) is not None]
    if not scored:
        return Selection(last, "best", metric, None, saved[last].name,
                         note=f"no {metric} recorded for a saved epoch; used the last one")
    # highest metric; on a tie the later (longer trained) epoch
    value, epoch = max(scored)
    return Selection(epoch, "best", metric, value, saved[epoch].name)


def publish(train_dir: Path, selection: Selection, model: Path, record: Path) -> str:
    """Hard-link the chosen checkpoint to `model` (copy where links are impossible)."""
    src = train_dir / selection.source
    tmp = model.with_name(f".{model.name}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
        how = "hardlink"
    except OSError:  # other filesystem, or links not allowed
        shutil.copy2(src, tmp)
        how = "copy"
    os.replace(tmp, model)
    atomic_write(record, json.dumps({**asdict(selection), "published_as": how}, indent=2,
                                    sort_keys=True) + "\n")
    return how
