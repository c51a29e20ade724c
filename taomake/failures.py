"""Why a TAO job failed: an infrastructure fault (worth retrying) or a program fault (never).

docs/tao-notes.md §11: node failures, preemption, GPU Xid/ECC errors, a GPU that fell off the bus, a
too-old driver and NCCL/InfiniBand/RDMA transport errors are infrastructure; CUDA out of memory,
a device-side assert, a missing file, a Python traceback and a time limit are the program's (or
the user's) and would fail the same way again.  Program patterns are checked first: a
traceback caused by an NCCL error is still an infrastructure fault, but "CUDA out of memory"
anywhere means the job does not fit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["infrastructure", "program", "unknown"]

# (cause, pattern); first match wins within a class
PROGRAM: list[tuple[str, re.Pattern[str]]] = [(c, re.compile(p, re.I)) for c, p in [
    ("CUDA out of memory", r"CUDA out of memory|OutOfMemoryError|CUBLAS_STATUS_ALLOC_FAILED"),
    ("device-side assert", r"device-side assert"),
    ("time limit", r"DUE TO TIME LIMIT"),
    ("missing file", r"FileNotFoundError|No such file or directory|File system error"),
]]
INFRA: list[tuple[str, re.Pattern[str]]] = [(c, re.compile(p, re.I)) for c, p in [
    ("node failure", r"\bNODE_FAIL\b|DUE TO NODE FAIL|\bBOOT_FAIL\b"),
    ("preemption", r"DUE TO PREEMPTION|\bPREEMPTED\b"),
    ("GPU fell off the bus", r"fallen off the bus"),
    ("GPU Xid error", r"\bXid\b"),
    ("GPU ECC error", r"uncorrectable ECC|\bECC error"),
    ("NVIDIA driver too old", r"driver version is insufficient"),
    ("NCCL/network transport error", r"NCCL WARN NET/|ncclSystemError|ncclRemoteError|"
                                     r"NCCL error.*(unhandled system error|remote process)|"
                                     r"\bIBV?_?WC_|ibv_\w+ failed|RDMA|"
                                     r"Connection reset by peer|c10d.*(timed out|closed)"),
]]
# a Python exception line ("ValueError: ...", "torch.AcceleratorError: ...")
EXCEPTION = re.compile(r"^\s*(?:[A-Za-z_][\w.]*\.)?([A-Z]\w*(?:Error|Exception))\b:?(.*)$")


@dataclass(frozen=True)
class Failure:
    kind: Kind
    cause: str
    evidence_line: str

    @property
    def retryable(self) -> bool:
        return self.kind == "infrastructure"


def _lines(log_tail: list[str], status_tail: list[dict[str, Any]]) -> list[str]:
    lines = list(log_tail)
    for rec in status_tail:
        if isinstance(rec, dict) and rec.get("status") in ("FAILURE", "FAILED", "ERROR"):
            lines.append(str(rec.get("message", "")))
    return lines


def classify(log_tail: list[str], status_tail: list[dict[str, Any]]) -> Failure:
    """Classify a failed job from the last lines of its log and its status.json records."""
    lines = _lines(log_tail, status_tail)
    for table, kind in ((PROGRAM, "program"), (INFRA, "infrastructure")):
        for cause, pattern in table:
            for line in reversed(lines):
                if pattern.search(line):
                    return Failure(kind, cause, line.strip()[:300])  # type: ignore[arg-type]
    traceback = any(line.startswith("Traceback (most recent call last)") for line in lines)
    for line in reversed(lines):
        m = EXCEPTION.match(line)
        if m and (traceback or m.group(1).endswith("Error")):
            return Failure("program", f"Python exception {m.group(1)}", line.strip()[:300])
    if traceback:
        return Failure("program", "Python traceback", "Traceback (most recent call last):")
    return Failure("unknown", "no known failure pattern", lines[-1].strip()[:300] if lines
                   else "")
