"""Glue that runs inside the Snakemake process (imported from rules/common.smk)."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

# What stops a build: a scheduler's or a user's `kill` (SIGTERM), Ctrl-C (SIGINT), the
# terminal closing (SIGHUP).  Each must stop the jobs too, not only Snakemake.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def _say(text: str) -> None:
    """To stderr, never failing: after SIGHUP the terminal may be gone."""
    import sys

    try:
        print(text, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def _signal_shell_jobs(signum: int) -> None:
    """Send `signum` to the shell jobs this Snakemake process runs (each one's process is
    `taomake run`: the rules `exec` it), which stop TAO's whole process group."""
    from snakemake.shell import shell

    with shell._lock:
        procs = list(shell._processes.values())
    for proc in procs:
        try:
            proc.send_signal(signum)
        except ProcessLookupError:
            pass


def forward_graceful_stop() -> None:
    """Make Snakemake's graceful stop (its SIGTERM handler) stop the running jobs too.

    Snakemake's own handler only stops scheduling and waits for running jobs: a training could
    go on for hours.  This holds in every Snakemake process that parses taomake's workflow
    (rules/common.smk), also where no onstart runs: the Snakemake a SLURM job runs its rule
    in, which is the process SLURM signals at a time limit or a scancel (with
    proctrack/cgroup SLURM signals a step's tasks only, and SIGKILLs the rest after KillWait:
    `taomake run` was never told, and TAO was killed mid-write).  Patched on the scheduler's
    class, so the handler it installs itself carries it."""
    from snakemake.scheduling.job_scheduler import JobScheduler

    original = JobScheduler.exit_gracefully
    if getattr(original, "_taomake", False):
        return

    def exit_gracefully(self, *args):
        # Snakemake's own handler first: it stops scheduling, so a job that dies of the
        # forwarded signal is not followed by a new one (seen in CI: the job started again)
        original(self, *args)
        _signal_shell_jobs(signal.SIGTERM)

    exit_gracefully._taomake = True
    JobScheduler.exit_gracefully = exit_gracefully


def forward_stop_to_jobs() -> None:
    """The terminal closed (SIGHUP) stops the build as SIGTERM does (the running jobs get
    SIGTERM, Snakemake ends its own way and releases its lock) instead of killing Snakemake
    outright.  Ctrl-C reaches the jobs by itself (the terminal signals the process group)."""
    graceful = signal.getsignal(signal.SIGTERM)  # the scheduler's (forward_graceful_stop)
    if callable(graceful):
        signal.signal(signal.SIGHUP, lambda signum, frame: graceful(signal.SIGTERM, frame))


# --------------------------------------------------------------------------- SLURM executor

# The snakemake-executor-plugin-slurm release these adapters were written against and tested
# on (pyproject pins it): its check_active_jobs compares job states by exact string, and reads
# them through the module-level name `query_job_status`.
SLURM_PLUGIN_VERSION = "2.8.0"

# States after which a SLURM job never runs again (a job requeued by SLURM passes through
# REQUEUED/PENDING with the same id and is followed as before).
TERMINAL_FAILURES = frozenset({"BOOT_FAIL", "CANCELLED", "DEADLINE", "FAILED", "NODE_FAIL",
                               "OUT_OF_MEMORY", "TIMEOUT", "REVOKED"})


def normalize_state(raw: str, requeueable: Callable[[], bool] = lambda: True) -> str:
    """A SLURM job state as the plugin's table spells it.

    sacct says `CANCELLED by 0` for a scancel (the plugin then takes the job for running and
    waits forever); `PREEMPTED` ends a job for good unless SLURM requeues it (`requeueable`
    is asked only then: the plugin would wait forever for a job that never comes back)."""
    state = raw.strip().split(" ", 1)[0].rstrip("+")  # "CANCELLED by 0", "CANCELLED+"
    if state == "PREEMPTED" and not requeueable():
        return "FAILED"
    return state


def scontrol_requeueable(job_id: str) -> bool:
    """Whether SLURM will requeue this job (`scontrol show job`: Requeue=1); True when
    unknown, so that an unreadable answer never fails a job SLURM might still run."""
    import subprocess

    try:
        out = subprocess.run(["scontrol", "show", "job", "-o", job_id.split("_")[0]],
                             capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return True
    return "Requeue=0" not in out.split()


# At most this long between two status queries of the executor (the plugin's backoff grows
# to 180 s while nothing finishes): a failed job is noticed within a minute, whatever its age.
MAX_STATUS_INTERVAL = 30
_CHAIN = None  # the time-limit chain of this run (taomake.slurm_chain.Chain)
_ACTIVE: dict[str, object] = {}  # SLURM job id -> the executor's SubmittedJobInfo, this query


def adapt_slurm_plugin(chain=None) -> str | None:
    """Make the SLURM executor plugin see cancelled and non-requeued preempted jobs as
    failed, resubmit trainings that reach their time limit (`chain`:
    taomake.slurm_chain.Chain), and query at least every MAX_STATUS_INTERVAL seconds.
    Returns what was done, or None when the plugin is not the tested release (then nothing
    is patched: tests/test_slurm*.py would show the hang again)."""
    import importlib.metadata

    import snakemake_executor_plugin_slurm as plugin

    global _CHAIN
    version = importlib.metadata.version("snakemake-executor-plugin-slurm")
    if version != SLURM_PLUGIN_VERSION:
        return None
    _CHAIN = chain
    if getattr(plugin.query_job_status, "_taomake", False):
        return None
    original = plugin.query_job_status

    def state_of(job: str, raw: str) -> str:
        if _CHAIN is not None and job in _ACTIVE:  # one the executor still follows
            from taomake.slurm_chain import CHAINED, EXPLAINED

            state = normalize_state(raw, lambda: True)
            if state in CHAINED | EXPLAINED | {"FAILED"}:
                return _CHAIN.state(job, state)
        return normalize_state(raw, lambda: scontrol_requeueable(job))

    async def query_job_status(command, logger):
        states, duration = await original(command, logger)
        if states is not None:
            states = {job: state_of(job, state) for job, state in states.items()}
        return states, duration

    query_job_status._taomake = True
    plugin.query_job_status = query_job_status

    original_check = plugin.Executor.check_active_jobs

    async def check_active_jobs(self, active_jobs):
        _ACTIVE.clear()
        _ACTIVE.update({j.external_jobid: j for j in active_jobs})
        async for job in original_check(self, active_jobs):
            yield job
        self.next_seconds_between_status_checks = min(
            self.next_seconds_between_status_checks, MAX_STATUS_INTERVAL)

    plugin.Executor.check_active_jobs = check_active_jobs
    return f"snakemake-executor-plugin-slurm {version}: job states normalized"


def slurm_chain(project: str):
    """The time-limit chain of a build of `project` (None when its plan cannot be read)."""
    from taomake.compiler.errors import TaomakeError
    from taomake.compiler.plan import load_plan
    from taomake.slurm_chain import Chain, training_of

    try:
        plan = load_plan(Path(project), write=False)
    except (TaomakeError, OSError):
        return None
    return Chain(training_of(plan, _ACTIVE))


def slurm_run_name(workflow) -> str | None:
    """The SLURM job name every job of this run is submitted under: the executor plugin's
    run id (`sbatch --job-name`), or None when the plugin keeps it elsewhere."""
    executor = getattr(getattr(workflow, "scheduler", None), "_executor", None)
    name = getattr(executor, "run_uuid", None)
    return name if isinstance(name, str) and name else None


def scancel_run(name: str) -> str:
    """Cancel every SLURM job of this user named `name` (queued or running); what was done."""
    import subprocess

    argv = ["scancel", f"--name={name}", f"--user={_user()}"]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{' '.join(argv)} failed: {exc}"
    if proc.returncode != 0:
        return f"{' '.join(argv)} failed: {proc.stderr.strip()[:300]}"
    return " ".join(argv)


def _user() -> str:
    import getpass

    return getpass.getuser()


def cancel_slurm_jobs_on_stop(run_name: str | None) -> None:
    """SIGTERM, SIGINT or SIGHUP to Snakemake on the login node: cancel every SLURM job of
    this run, then stop as Ctrl-C does (Snakemake's cancel, its lock released, exit).

    The jobs are found by the name this run submits them under (`scancel --name`), not
    from the executor's list of active jobs: the executor library empties that list while a
    status query runs (seconds on a busy slurmdbd), and a stop then cancelled nothing.  A
    second `scancel` at exit catches a job whose `sbatch` was under way at the signal."""
    import atexit

    fired: list[int] = []

    def cancel(when: str) -> None:
        if run_name:
            _say(f"taomake: {when}: {scancel_run(run_name)}")

    def handler(signum, frame):
        if fired:
            return  # stopping already
        fired.append(signum)
        name = signal.Signals(signum).name
        _say(f"taomake: {name}: cancelling this run's SLURM jobs (scancel), then stopping")
        cancel(name)
        atexit.register(cancel, "at exit")
        raise KeyboardInterrupt

    for sig in STOP_SIGNALS:
        signal.signal(sig, handler)


def install_signal_handling(executor: str | None, workflow=None,
                            project: str | None = None) -> None:
    """What stopping the build does, for the executor this run uses (Snakemake's onstart);
    on SLURM also the plugin's adapters and the time-limit chain of `project`."""
    if executor == "slurm":
        adapt_slurm_plugin(slurm_chain(project) if project else None)
        name = slurm_run_name(workflow)
        if name is None:
            _say("taomake: warning: this SLURM executor plugin does not say its run's job "
                 "name; a stop cancels only the jobs it lists as active")
        cancel_slurm_jobs_on_stop(name)
    else:
        forward_stop_to_jobs()
