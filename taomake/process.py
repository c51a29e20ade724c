"""Run one child process tree so that it never outlives us.

The child gets its own session (process group), so we can stop all of it (torchrun and its
workers) at once.  SIGTERM/SIGINT/SIGHUP to us are forwarded to the group; if our parent dies
(Snakemake killed hard) the kernel sends us SIGTERM (PR_SET_PDEATHSIG) and the same cleanup runs.
If we die without cleaning up (kill -9, the OOM killer), the kernel sends the child's leader
SIGTERM the same way, and the child keeps the folder's lease (taomake.lease) while it winds
down, so no second job starts writing beside it.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

from taomake.errors import Interrupted

PR_SET_PDEATHSIG = 1
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def _libc():
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return None


def die_with_parent(libc=None) -> None:
    """Ask the kernel to SIGTERM us when our parent exits (Linux only; best effort)."""
    libc = libc or _libc()
    if libc is not None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _child_setup():
    """What the child runs between fork and exec: SIGTERM when taomake dies (libc loaded
    before the fork: nothing is imported or opened in the child)."""
    libc = _libc()
    return lambda: die_with_parent(libc)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def stop_group(pgid: int, grace: float = 15.0) -> None:
    """SIGTERM the whole group, then SIGKILL what is left after `grace` seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:  # reap our direct child if it is done, so the group can empty
                os.waitpid(-pgid, os.WNOHANG)
            except ChildProcessError:
                pass
            if not _group_alive(pgid):
                return
            time.sleep(0.1)


def run_tree(argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], log: IO[bytes],
             grace: float = 15.0, on_tick: Callable[[], None] | None = None,
             keep_fds: Sequence[int] = (), on_start: Callable[[int], None] | None = None) -> int:
    """Run argv (a list, never a shell string) with output appended to `log`.  `keep_fds`:
    descriptors the tree inherits (the folder's lease); `on_start(pgid)` once it runs.

    Returns the exit code; raises Interrupted after stopping the tree on a signal."""
    die_with_parent()
    received: list[int] = []

    def handler(signum, _frame):
        received.append(signum)

    previous = {sig: signal.signal(sig, handler) for sig in FORWARDED}
    try:
        proc = subprocess.Popen(list(argv), cwd=cwd, env=dict(env), stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, pass_fds=tuple(keep_fds),
                                preexec_fn=_child_setup())
        if on_start:
            try:
                on_start(proc.pid)
            except BaseException:
                stop_group(proc.pid, grace)
                proc.wait()
                raise
        while True:
            if on_tick:
                on_tick()
            if received:
                stop_group(proc.pid, grace)
                proc.wait()
                raise Interrupted(received[0])
            try:
                rc = proc.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                continue
            # the leader exited; stragglers in its group (dataloader workers) go too
            if _group_alive(proc.pid):
                stop_group(proc.pid, grace=5.0)
            if received:
                # the same signal reached TAO directly (SLURM's scancel signals every process
                # of the step) and it exited first: still an interruption, not a TAO failure
                raise Interrupted(received[0])
            return rc
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
