"""User-facing errors.  Each carries enough to print a one-paragraph message and exit 2.

Everything a user can fix by editing project.yaml, a data file or the command line is a
`UserError` (exit 2).  Anything else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Location:
    """Where in which file a problem is: `file:line:col` plus the dotted key path."""

    file: str
    line: int | None = None  # 1-based
    col: int | None = None  # 1-based
    key: str = ""

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.col is not None:
                where += f":{self.col}"
        return f"{where}: {self.key}" if self.key else where


@dataclass
class Problem:
    """One thing wrong, with where it is and how to fix it."""

    location: Location
    message: str
    hint: str = ""
    check: str = ""  # name of the consistency check that found it, if any

    def __str__(self) -> str:
        head = f"{self.location}: {self.message}"
        if self.check:
            head += f" [{self.check}]"
        return head + (f"\n    fix: {self.hint}" if self.hint else "")


class TaomakeError(Exception):
    """Base of every error taomake reports to a user (exit code 2, no traceback)."""

    exit_code = 2

    def render(self) -> str:
        return str(self)


@dataclass
class ProjectError(TaomakeError):
    """project.yaml (or an experiment of it) is invalid; lists every problem found."""

    problems: list[Problem] = field(default_factory=list)
    context: str = ""  # e.g. "experiment 'big'"

    def __post_init__(self) -> None:
        super().__init__(self.render())

    def render(self) -> str:
        n = len(self.problems)
        head = f"{n} problem{'s' if n != 1 else ''} in the project"
        if self.context:
            head += f" ({self.context})"
        ordered = sorted(self.problems, key=lambda p: (p.location.file, p.location.line or 0))
        return head + ":\n" + "\n".join(f"  {p}" for p in ordered)


class DataError(TaomakeError):
    """A dataset file is missing or malformed."""


class UsageError(TaomakeError):
    """Bad command-line use (unknown experiment, action or target)."""


class RunError(TaomakeError):
    """A TAO job failed or produced no valid outputs (exit 1 for the job, reported plainly)."""

    exit_code = 1


class UnsafeArchiveError(DataError):
    """An archive member would land outside the extraction folder (or is a device/fifo)."""


class StorageError(TaomakeError):
    """Object storage (S3) refused or failed a transfer; names the bucket or URI, never a key."""

    exit_code = 1


class StorageAccessError(StorageError):
    """Credentials rejected, bucket or object missing: fixable by the user (exit 2)."""

    exit_code = 2


class DiskSpaceError(TaomakeError):
    """The disk is full or would be: the machine's problem, not the input's (exit 1)."""

    exit_code = 1
