"""The adapters taomake installs inside the Snakemake process (taomake.snakemake_support)."""

from __future__ import annotations

import pytest

from taomake.snakemake_support import SLURM_PLUGIN_VERSION, TERMINAL_FAILURES, normalize_state


@pytest.mark.parametrize(("raw", "requeueable", "state"), [
    ("CANCELLED by 0", True, "CANCELLED"),       # scancel: sacct names who cancelled
    ("CANCELLED by 1234", True, "CANCELLED"),
    ("CANCELLED+", True, "CANCELLED"),           # sacct's truncation mark
    ("COMPLETED", True, "COMPLETED"),
    ("RUNNING", True, "RUNNING"),
    ("PENDING", True, "PENDING"),
    ("REQUEUED", True, "REQUEUED"),              # SLURM runs it again under the same id
    ("PREEMPTED", True, "PREEMPTED"),            # will be requeued: keep waiting
    ("PREEMPTED", False, "FAILED"),              # --no-requeue: it never comes back
    ("TIMEOUT", True, "TIMEOUT"),
    (" OUT_OF_MEMORY ", True, "OUT_OF_MEMORY"),
])
def test_normalize_state(raw, requeueable, state):
    asked = []

    def ask():
        asked.append(1)
        return requeueable

    assert normalize_state(raw, ask) == state
    assert asked == ([1] if raw == "PREEMPTED" else [])  # scontrol only for a preemption


def test_terminal_states_are_the_plugins_failures():
    """Every state the plugin 2.8.0 fails a job on (its fail_stati) comes out unchanged."""
    import importlib.metadata
    import inspect

    import snakemake_executor_plugin_slurm as plugin

    assert importlib.metadata.version("snakemake-executor-plugin-slurm") == SLURM_PLUGIN_VERSION
    source = inspect.getsource(plugin.Executor.check_active_jobs)
    for state in TERMINAL_FAILURES - {"REVOKED"}:
        assert f'"{state}"' in source, state
        assert normalize_state(f"{state} by 0") == state
    # the adapter wraps the name check_active_jobs calls
    assert "await query_job_status(" in source
