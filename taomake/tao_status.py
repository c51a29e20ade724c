"""Read TAO's status.json (JSON Lines, appended by every run; docs/tao-notes.md §3.3).

TAO exits 0 after an interruption and after some failures, so the status file (with the
expected output files) is what says whether an action really finished.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any


def read_status(path: Path) -> list[dict[str, Any]]:
    """All parseable records; a torn last line (a killed writer) is ignored."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    records = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict):
            records.append(rec)
    return records


def last_run(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records of the most recent run: status.json is appended across reruns/resumes."""
    return runs(records)[-1] if records else []


def runs(records: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """status.json split into its runs (TAO appends a run after each resume)."""
    starts = [i for i, rec in enumerate(records) if rec.get("status") == "STARTED" and str(
        rec.get("message", "")).startswith(("Starting", "Start")) and "Loop" not in str(
        rec.get("message", ""))] or [0]
    starts[0] = 0
    ends = [*starts[1:], len(records)]
    return [records[a:b] for a, b in zip(starts, ends, strict=True) if records[a:b]]


def _when(rec: dict[str, Any]) -> datetime | None:
    try:
        return datetime.strptime(f"{rec['date']} {rec['time']}", "%m/%d/%Y %H:%M:%S")
    except (KeyError, TypeError, ValueError):
        return None


def run_seconds(records: list[dict[str, Any]]) -> float | None:
    """Time TAO spent over all runs of status.json (first to last record of each run): a
    resumed training counts every run, not only the last."""
    total, seen = 0.0, False
    for run in runs(records):
        times = [t for t in map(_when, run) if t is not None]
        if len(times) >= 2:
            total += (max(times) - min(times)).total_seconds()
            seen = True
    return total if seen else None


@dataclass(frozen=True)
class Outcome:
    finished: bool
    reason: str  # why not, or the final message


def outcome(records: list[dict[str, Any]], final_message: str) -> Outcome:
    """Did the last run end with `<Action> finished successfully.`?"""
    run = last_run(records)
    if not run:
        return Outcome(False, "status.json is missing or empty: TAO did not start the action")
    failures = [r for r in run if r.get("status") == "FAILURE"]
    last = run[-1]
    msg = str(last.get("message", ""))
    if msg == final_message and last.get("status") in ("RUNNING", "SUCCESS"):
        return Outcome(True, msg)
    if failures:
        return Outcome(False, f"TAO reported FAILURE: {failures[-1].get('message', '')}")
    return Outcome(False, f"TAO stopped before finishing (last status: "
                          f"{last.get('status')} {msg!r})")


def error_lines(records: list[dict[str, Any]], n: int = 5) -> list[str]:
    return [str(r.get("message", "")) for r in last_run(records)
            if r.get("status") == "FAILURE" or r.get("verbosity") in ("ERROR", "CRITICAL")][-n:]


# --------------------------------------------------------------------------- training curve


@dataclass
class EpochRow:
    epoch: int
    train_loss: float | None = None
    val_loss: float | None = None
    val_mAP: float | None = None
    val_mAP50: float | None = None

    FIELDS = ("epoch", "train_loss", "val_loss", "val_mAP", "val_mAP50")


def _num(v: Any) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def training_curve(records: list[dict[str, Any]]) -> list[EpochRow]:
    """Per-epoch metrics from a train/distill status.json, across resumed runs.

    Per validated epoch TAO writes "Eval metrics generated." (val kpis, no epoch) and then
    "Training loop in progress" (epoch, sticky kpi) and "Train metrics generated."
    (train_loss).  We key everything on the epoch of the progress line; later runs of the same
    epoch (after a resume) replace earlier ones.
    """
    rows: dict[int, EpochRow] = {}
    pending_val: dict[str, Any] | None = None
    epoch: int | None = None
    for rec in records:
        msg = str(rec.get("message", ""))
        kpi = rec.get("kpi") if isinstance(rec.get("kpi"), dict) else {}
        if msg.startswith("Eval metrics generated"):
            pending_val = kpi
        elif msg.startswith("Training loop in progress") and "epoch" in rec:
            epoch = int(rec["epoch"])
            row = rows.setdefault(epoch, EpochRow(epoch))
            if pending_val is not None:
                row.val_loss = _num(pending_val.get("val_loss"))
                row.val_mAP = _num(pending_val.get("val_mAP"))
                row.val_mAP50 = _num(pending_val.get("val_mAP50"))
                pending_val = None
        elif msg.startswith(("Train metrics generated", "Train and Val metrics generated")):
            if epoch is not None and epoch in rows:
                rows[epoch].train_loss = _num(kpi.get("train_loss"))
                if "val_mAP" in kpi and rows[epoch].val_mAP is None:
                    rows[epoch].val_mAP = _num(kpi.get("val_mAP"))
                    rows[epoch].val_mAP50 = _num(kpi.get("val_mAP50"))
                    rows[epoch].val_loss = _num(kpi.get("val_loss"))
        elif msg.startswith("Starting"):
            pending_val, epoch = None, None
    return [rows[e] for e in sorted(rows)]


def evaluation_metrics(records: list[dict[str, Any]]) -> dict[str, float]:
    """test_mAP / test_mAP50 of the last evaluate run, as numbers (TAO writes strings)."""
    for rec in reversed(last_run(records)):
        kpi = rec.get("kpi")
        if isinstance(kpi, dict) and "test_mAP" in kpi:
            return {k: float(v) for k, v in kpi.items() if _num(v) is not None}
    return {}
