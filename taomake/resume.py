"""Before a training resumes: its checkpoints are whole and were made by a compatible spec.

TAO resumes by itself from `<action dir>/*_latest.pth` (docs/tao-notes.md §3.2), a link to the
newest `model_epoch_NNN.pth`.  Two things must hold first, or TAO fails (or, worse, trains on):

* `repair_checkpoints`: the newest checkpoints are complete.  A torch checkpoint is a zip
  archive; a node that died mid-write leaves one cut short (TAO: "PytorchStreamReader failed
  reading zip archive") or empty (TAO: EOFError), and every rerun would fail on it again.
  Damaged ones are moved to `.damaged/<time>/` with a WHY.txt and the latest link is pointed
  at the newest whole epoch, which then resumes.
* `guard_resume`: they were made with a spec that only differs in what may change between a
  run and its continuation (more epochs) and by the same TAO runtime; others are moved to
  `.stale/<time>/` and training starts from scratch.
"""

from __future__ import annotations

import io
import os
import shutil
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from taomake.compiler.files import atomic_write
from taomake.compiler.layout import (
    CHECKPOINT_GLOB,
    EPOCH_FILE_RE,
    LATEST_GLOB,
    LEASE_FILE,
    LEASE_RECORD,
    WHY_FILE,
    checkpoint_name,
)
from taomake.compiler.writer import changed_keys

from .handoff import checkpoint_files, checkpoints
from .joblog import note

# train-spec keys whose change still allows continuing from the saved checkpoints
RESUMABLE_CHANGES = {"train.num_epochs"}
RUNTIME_KEY = "taomake_runtime"  # in the checkpoint record, beside the spec's keys
STALE_DIR, DAMAGED_DIR = ".stale", ".damaged"
# what stays when checkpoints are moved aside: earlier moves, and the lease the job holds
KEPT_IN_PLACE = (STALE_DIR, DAMAGED_DIR, LEASE_FILE, LEASE_RECORD)


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


# --------------------------------------------------------------------------- whole checkpoints


def damage(path: Path) -> str | None:
    """Why a checkpoint cannot be loaded, or None when it is whole: a torch checkpoint is a
    zip archive whose central directory and every member's CRC must read."""
    try:
        if path.stat().st_size == 0:
            return "empty (0 bytes)"
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except zipfile.BadZipFile as exc:
        return f"not a complete checkpoint archive ({exc}): cut short while written?"
    except (OSError, EOFError, zipfile.LargeZipFile, ValueError) as exc:
        return f"unreadable ({exc})"
    return f"its member {bad} fails the CRC check" if bad else None


def _epoch_files(out_dir: Path) -> dict[int, list[Path]]:
    found: dict[int, list[Path]] = {}
    for path in out_dir.glob(CHECKPOINT_GLOB):
        m = EPOCH_FILE_RE.match(path.name)
        if m:
            found.setdefault(int(m.group(1)), []).append(path)
    return found


def repair_checkpoints(out_dir: Path, log: IO[bytes] | None) -> int | None:
    """Make TAO resume from the newest whole epoch: damaged newest checkpoints (and every
    file of those epochs) move to `.damaged/<time>/` with a WHY.txt, and the latest link
    points at the newest whole one (none whole: removed, training starts from scratch).
    Returns the epoch TAO resumes from, or None."""
    by_epoch = _epoch_files(out_dir)
    damaged: dict[Path, str] = {}
    good = None
    for epoch in sorted(by_epoch, reverse=True):
        main = out_dir / checkpoint_name(epoch)
        why = damage(main) if main in by_epoch[epoch] else "no model_epoch file (EMA only)"
        if why is None:
            good = epoch
            break
        damaged.update({p: why if p == main else f"of damaged epoch {epoch}"
                        for p in by_epoch[epoch]})
    target = checkpoint_name(good) if good is not None else None
    latest = sorted(out_dir.glob(LATEST_GLOB))
    relink = None
    for link in latest:
        if not link.is_symlink():  # a real file: TAO's first save, before any epoch file
            why = damage(link)
            if why:
                damaged[link] = why
        elif Path(os.readlink(link)).name != target:
            if target is None:
                damaged[link] = f"pointed at {os.readlink(link)}, damaged"
            else:
                relink = (link.name, os.readlink(link))
    if damaged:
        dest = out_dir / DAMAGED_DIR / _stamp()
        dest.mkdir(parents=True, exist_ok=True)
        for path in damaged:
            shutil.move(str(path), dest / path.name)
        (dest / WHY_FILE).write_text(
            "Moved aside by taomake before resuming: TAO would have resumed from these and "
            "failed.\n" + "".join(f"  {p.name}: {why}\n" for p, why in damaged.items()))
        cut = sorted(p.name for p, why in damaged.items()
                     if EPOCH_FILE_RE.match(p.name) and not why.startswith("of damaged"))
        resumes = (f"training resumes from epoch {good} ({target}), the newest whole "
                   "checkpoint" if good is not None else
                   "no whole checkpoint is left: training starts from scratch")
        note(log, f"damaged checkpoint(s) {', '.join(cut) or latest[0].name} moved to {dest} "
                  f"(WHY.txt says why); {resumes}")
    if relink:
        name, was = relink
        tmp = out_dir / f".{name}.tmp"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(target)
        os.replace(tmp, out_dir / name)
        if not damaged:
            note(log, f"{name} pointed at {was}; now at {target}, the newest whole checkpoint")
    return good


# --------------------------------------------------------------------------- compatible spec


def _yaml():
    from ruamel.yaml import YAML  # the resume guard's record only (train, distill)

    return YAML(typ="safe", pure=True)


def _dump(data: Any) -> str:
    buf = io.StringIO()
    _yaml().dump(data, buf)
    return buf.getvalue()


def guard_resume(out_dir: Path, spec: dict[str, Any], log: IO[bytes] | None,
                 runtime: str | None = None, *, record: Path) -> None:
    """Keep checkpoints only if they were made by a compatible spec and the same TAO runtime
    (`Runner.runtime`: a new image or TAO version trains from scratch); else move them
    aside.  `record`: what the checkpoints were made with (Layout.resume_record)."""
    saved = sorted(checkpoint_files(out_dir)) + sorted(out_dir.glob(LATEST_GLOB))
    spec = {**spec, RUNTIME_KEY: runtime} if runtime else spec
    if saved:
        old = _yaml().load(record.read_text(encoding="utf-8")) if record.exists() else None
        if isinstance(old, dict) and RUNTIME_KEY not in old and runtime:
            old = {**old, RUNTIME_KEY: runtime}  # recorded before runtimes were: same one
        diff = changed_keys(old, spec) if isinstance(old, dict) else ("(no record)",)
        last = max(checkpoints(out_dir), default=-1)
        resumable = set(diff) <= RESUMABLE_CHANGES and (
            "train.num_epochs" not in diff or spec["train"]["num_epochs"] > last)
        if resumable:
            note(log, f"resuming: checkpoints up to epoch {last} match this spec; TAO "
                      "continues from *_latest.pth")
        else:
            dest = out_dir / STALE_DIR / _stamp()
            dest.mkdir(parents=True)
            for entry in out_dir.iterdir():
                if entry.name not in KEPT_IN_PLACE:
                    shutil.move(str(entry), dest / entry.name)
            (dest / WHY_FILE).write_text(
                "These checkpoints were made with a different train spec; moved aside by "
                "taomake instead of being resumed with the new one.\nChanged keys:\n"
                + "".join(f"  {k}\n" for k in diff))
            what = ", ".join("the TAO runtime (image or venv's TAO)" if k == RUNTIME_KEY else k
                             for k in diff[:8])
            note(log, f"spec changed ({what}); previous checkpoints moved to "
                      f"{dest}; training starts from scratch")
    atomic_write(record, _dump(spec))


__all__ = ["RESUMABLE_CHANGES", "RUNTIME_KEY", "damage", "guard_resume", "repair_checkpoints"]
