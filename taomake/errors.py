"""Errors of running a build: TAO jobs, data staging and storage, setup, a stop request.

They extend the compiler's `TaomakeError` (taomake.compiler.errors, errors in the project or
the command line), so `taomake` prints every one the same way, `error: <message>` and its
exit code, without a traceback.  Exit codes: 1 the job or the machine failed (a rerun may
succeed), 2 the user can fix the input, 128+N stopped by signal N.
"""

from __future__ import annotations

import signal

from taomake.compiler.errors import DataError, TaomakeError


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


class SetupError(TaomakeError):
    """`taomake setup tao-cpu` failed (exit 1) or was given bad input (exit 2)."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


class Interrupted(TaomakeError):
    """We were asked to stop (SIGTERM, SIGINT, SIGHUP); the child tree has been stopped."""

    def __init__(self, signum: int):
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum
        self.exit_code = 128 + signum
