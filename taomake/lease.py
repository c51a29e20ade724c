"""One writer per action folder: the lease a job holds on its folder for its whole life.

A job (`taomake run`, `taomake select`) takes an exclusive `flock` on the folder's lease file
before it touches anything there and keeps it until it ends; TAO's processes inherit the lock's
file descriptor, so a trainer that outlives its `taomake run` (kill -9, the OOM killer) still
holds it.  Beside the lock, a small record says who holds it: host, pid, SLURM job, container.

* A second job for the same folder finds the lock taken and refuses at once (exit 1), naming
  the holder from its record and the command that stops it (`scancel 48`, `docker stop ...`).
* A lock that is free while the record says "held" belonged to a holder that died without
  ending cleanly: the new job takes the lease over, says so, and the runner removes what the
  dead holder left running outside its process tree (a container: taomake.runners.docker).
* The kernel releases the lock when the last process holding it ends, whatever the way: a
  lease is never left held after a normal end, a failure, a signal or a crash.

What it relies on: `flock(2)` on the results folder's filesystem.  Local filesystems have it;
on NFS, Linux emulates flock with byte-range locks the server arbitrates (NFSv4, or NFSv3 with
lockd: not a `nolock` mount), so jobs on different nodes exclude each other, and the server
frees the lock of a node that died once its lease times out (NFSv4: 90 s by default).  Lustre
needs `-o flock` (`localflock` only excludes jobs on one node); a filesystem without locks
makes taomake refuse to run with that fix (docs/cluster.md).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from taomake.compiler.files import atomic_write
from taomake.errors import RunError

# how long a job waits for a lease whose holder's `taomake run` died on this host, while that
# holder's TAO processes (told to stop by the kernel: PR_SET_PDEATHSIG) wind down
ORPHAN_GRACE_SECONDS = 30.0


@dataclass(frozen=True)
class Holder:
    """Who holds (or last held) a lease, as its record says."""

    job: str  # "train (base)"
    host: str
    pid: int
    since: float  # epoch seconds
    slurm_job: str = ""
    container: str = ""  # the docker container's name, once it exists
    tao_pgid: int = 0  # the local TAO process group, once started
    released: bool = False  # the holder ended and let go (a record left by a dead one: False)

    @classmethod
    def me(cls, job: str) -> Holder:
        return cls(job=job, host=socket.gethostname(), pid=os.getpid(), since=time.time(),
                   slurm_job=os.environ.get("SLURM_JOB_ID", ""))

    @property
    def local(self) -> bool:
        return self.host == socket.gethostname()

    def alive(self) -> bool | None:
        """Whether the holder's `taomake` process lives (None: on another host, unknown)."""
        if not self.local:
            return None
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def stop_command(self) -> str:
        """What stops this holder for good (its whole job, not only taomake)."""
        if self.slurm_job:
            return f"scancel {self.slurm_job}"
        if self.container:
            return f"docker stop {self.container}"
        prefix = "" if self.local else f"ssh {self.host} "
        if self.tao_pgid and self.alive() is False:
            return f"{prefix}kill -- -{self.tao_pgid}"
        return f"{prefix}kill {self.pid}"

    def describe(self) -> str:
        where = [f"SLURM job {self.slurm_job}"] if self.slurm_job else []
        where += [f"host {self.host}", f"pid {self.pid}"]
        if self.container:
            where.append(f"container {self.container}")
        since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.since))
        return f"{self.job} ({', '.join(where)}, since {since})"


class LeaseHeld(RunError):
    """Another live job writes this folder (exit 1: wait for it or stop it, then rerun)."""


class NoLocks(RunError):
    """The results folder's filesystem cannot lock files (exit 1: a mount option fixes it)."""


@dataclass
class Lease:
    """A held lease: `fd` is the locked file (pass it to the job's child processes so that
    they hold the lease as long as they live); `taken_over` is the record of a holder that
    died holding it, if any."""

    folder: str  # for messages, relative to the project folder
    record_path: Path
    fd: int
    holder: Holder
    taken_over: Holder | None = None
    _closed: bool = field(default=False, repr=False)

    def note(self, **fields) -> None:
        """Add to the record what the job learns as it goes (container name, TAO's process
        group), so a second job can name it."""
        self.holder = replace(self.holder, **fields)
        _write_record(self.record_path, self.holder)

    def release(self) -> None:
        """Mark the lease released and close the lock.  The lock itself goes when the last
        process holding it ends: TAO processes that outlived their stop keep it."""
        if self._closed:
            return
        self._closed = True
        try:
            _write_record(self.record_path, replace(self.holder, released=True))
        finally:
            os.close(self.fd)

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def read_record(path: Path) -> Holder | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Holder(**{k: data[k] for k in Holder.__dataclass_fields__ if k in data})
    except (OSError, ValueError, TypeError, KeyError):
        return None


def _write_record(path: Path, holder: Holder) -> None:
    atomic_write(path, json.dumps(asdict(holder), indent=2, sort_keys=True) + "\n")


def _try_lock(fd: int, lock_path: Path) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    except OSError as exc:
        if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            os.close(fd)
            raise NoLocks(
                f"cannot lock {lock_path}: the filesystem refuses file locks "
                f"({os.strerror(exc.errno)}); taomake needs them to keep two jobs out of one "
                "folder: mount NFS with locking (not `nolock`), Lustre with `-o flock`, or "
                "put `results:` on a filesystem that locks") from None
        raise


def take(lock_path: Path, record_path: Path, job: str, folder: str, *,
         grace: float = ORPHAN_GRACE_SECONDS) -> Lease:
    """Take the lease on an action folder, or raise LeaseHeld naming its live holder."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    deadline = time.monotonic() + grace
    while not _try_lock(fd, lock_path):
        held = read_record(record_path)
        # the holder's taomake died here and the kernel told its TAO to stop: give the
        # processes a moment to end (they write their last records) before refusing
        if held is not None and held.alive() is False and time.monotonic() < deadline:
            time.sleep(0.5)
            continue
        os.close(fd)
        raise LeaseHeld(_held_message(folder, held))
    previous = read_record(record_path)
    me = Holder.me(job)
    try:
        _write_record(record_path, me)
    except BaseException:
        os.close(fd)
        raise
    dead = previous if previous is not None and not previous.released else None
    return Lease(folder, record_path, fd, me, taken_over=dead)


def _held_message(folder: str, held: Holder | None) -> str:
    if held is None:
        return (f"{folder} is in use by another job (its lease is locked, with no record of "
                "who holds it); wait for it to end, then run again")
    head = f"{folder} is in use by {held.describe()}"
    if held.alive() is False:
        head += (f"; that taomake process is gone but its TAO processes (process group "
                 f"{held.tao_pgid or '?'}) still run")
    return (f"{head}.  Two jobs must never write one folder: wait for it to end, or stop it "
            f"with `{held.stop_command()}`, then run again")


__all__ = ["Holder", "Lease", "LeaseHeld", "NoLocks", "read_record", "take"]
