"""Glue that runs inside the Snakemake process (imported from rules/common.smk)."""

from __future__ import annotations

import signal
from collections.abc import Callable


def forward_sigterm_to_jobs() -> None:
    """Make SIGTERM stop running jobs now instead of waiting for them.

    Snakemake's own SIGTERM handler only stops scheduling and waits for running jobs — a
    training job could go on for hours.  Our rules `exec` `taomake run`, so each shell job's
    process *is* taomake, which stops TAO's whole process group on SIGTERM.  We forward the
    signal to those jobs, then let Snakemake's graceful shutdown proceed.
    """
    from snakemake.shell import shell

    previous = signal.getsignal(signal.SIGTERM)

    def handler(signum, frame):
        # Snakemake's own handler first: it stops scheduling, so a job that dies of the
        # forwarded signal is not followed by a new one (seen in CI: the job started again)
        if callable(previous):
            previous(signum, frame)
        with shell._lock:
            procs = list(shell._processes.values())
        for proc in procs:
            try:
                proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, handler)


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


def adapt_slurm_plugin() -> str | None:
    """Make the SLURM executor plugin see cancelled and non-requeued preempted jobs as
    failed.  Returns what was done, or None when the plugin is not the tested release (then
    nothing is patched: tests/test_slurm.py would show the hang again)."""
    import importlib.metadata

    import snakemake_executor_plugin_slurm as plugin

    version = importlib.metadata.version("snakemake-executor-plugin-slurm")
    if version != SLURM_PLUGIN_VERSION or getattr(plugin.query_job_status, "_taomake", False):
        return None
    original = plugin.query_job_status

    async def query_job_status(command, logger):
        states, duration = await original(command, logger)
        if states is not None:
            states = {job: normalize_state(state, lambda job=job: scontrol_requeueable(job))
                      for job, state in states.items()}
        return states, duration

    query_job_status._taomake = True
    plugin.query_job_status = query_job_status
    return f"snakemake-executor-plugin-slurm {version}: job states normalized"


def cancel_slurm_jobs_on_sigterm() -> None:
    """SIGTERM to Snakemake (a scheduler's or a user's `kill`) on the login node: cancel its
    SLURM jobs and stop, as Ctrl-C does.  Snakemake's own SIGTERM handler only stops
    scheduling and waits for running jobs, which on a cluster can run for hours after the
    pipeline that started them is gone.  A KeyboardInterrupt raised in the main thread takes
    Snakemake's Ctrl-C path: the executor's cancel (scancel of every active job), then exit."""
    import sys

    fired = []

    def handler(signum, frame):
        if fired:
            return  # cancelling already
        fired.append(signum)
        print("taomake: SIGTERM: cancelling this run's SLURM jobs (scancel), then stopping",
              file=sys.stderr, flush=True)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def install_signal_handling(executor: str | None) -> None:
    """What SIGTERM does, for the executor this run uses (Snakemake's onstart)."""
    if executor == "slurm":
        adapt_slurm_plugin()
        cancel_slurm_jobs_on_sigterm()
    else:
        forward_sigterm_to_jobs()
