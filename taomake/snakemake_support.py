"""Glue that runs inside the Snakemake process (imported from rules/common.smk)."""

from __future__ import annotations

import signal


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
