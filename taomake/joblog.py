"""What a job says: to the user (stderr, where Snakemake shows it) and to its log."""

from __future__ import annotations

import sys
from typing import IO

from taomake.compiler.errors import WriteError


def say(msg: str) -> None:
    print(f"taomake: {msg}", file=sys.stderr, flush=True)


def note(log: IO[bytes] | None, msg: str) -> None:
    """Said, and kept in the job's log (`[taomake] ...`) beside TAO's own lines."""
    if log is not None:
        try:
            log.write(f"[taomake] {msg}\n".encode())
            log.flush()
        except OSError as exc:
            if WriteError.caught(exc):
                raise WriteError(getattr(log, "name", "the job's log"), exc) from None
            raise
    say(msg)
