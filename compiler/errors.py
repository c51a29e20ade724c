"""User-facing errors of the project, its data files and the command line: each carries enough
to print a one-paragraph message, and exits 2 (the user can fix it).

`TaomakeError` is the base of every error taomake reports; the errors of running a build
(a failed job, storage, setup, a stop request) extend it in taomake/errors.py.  Anything else
that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field

from .urls import redact


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
        return redact(head + (f"\n    fix: {self.hint}" if self.hint else ""))


class TaomakeError(Exception):
    """Base of every error taomake reports to a user (exit code 2, no traceback).  What it
    says has the credentials of any URL in it masked."""

    exit_code = 2

    def render(self) -> str:
        return redact(str(self))


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
        return redact(head + ":\n" + "\n".join(f"  {p}" for p in ordered))


class WriteError(TaomakeError):
    """A file taomake writes could not be written: disk full, over quota, read-only or not
    permitted (exit 1: the machine's problem, not the project's).  Names the path."""

    exit_code = 1
    ERRNOS = {errno.ENOSPC: "free space on that filesystem",
              errno.EDQUOT: "free space within your quota there",
              errno.EROFS: "the filesystem is read-only: put `results:` on a writable one",
              errno.EACCES: "check who owns the folder and its permissions",
              errno.EPERM: "check who owns the folder and its permissions"}

    def __init__(self, path: object, exc: OSError):
        self.path, self.errno = str(path), exc.errno
        name = errno.errorcode.get(exc.errno or 0, "?")
        super().__init__(f"cannot write {self.path}: {exc.strerror or exc} ({name}); fix: "
                         f"{self.ERRNOS.get(exc.errno, 'see the message')}, then run again")

    @classmethod
    def caught(cls, exc: BaseException) -> bool:
        return isinstance(exc, OSError) and exc.errno in cls.ERRNOS


class DataError(TaomakeError):
    """A dataset file is missing or malformed."""


class UsageError(TaomakeError):
    """Bad command-line use (unknown experiment, action or target)."""
