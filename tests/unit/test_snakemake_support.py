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


def test_status_checks_are_at_most_30_s_apart(monkeypatch):
    """The plugin backs off 10 s more after each check where nothing finished, up to 180 s:
    a job failing after an hour was noticed up to 3 min late.  The adapter caps the interval
    at MAX_STATUS_INTERVAL (30 s), so a failure is seen within a minute whatever its age."""
    import asyncio

    import snakemake_executor_plugin_slurm as plugin

    from taomake import snakemake_support as support

    async def backing_off(self, active_jobs):  # the plugin's check, as after an hour
        self.next_seconds_between_status_checks = 180
        for job in active_jobs:
            yield job

    async def query(command, logger):
        return {}, 0.0

    monkeypatch.setattr(plugin.Executor, "check_active_jobs", backing_off)
    monkeypatch.setattr(plugin, "query_job_status", query)  # not yet adapted
    assert support.adapt_slurm_plugin() is not None

    class Executor:
        next_seconds_between_status_checks = 5

    from types import SimpleNamespace

    job = SimpleNamespace(external_jobid="48")

    async def run():
        executor = Executor()
        kept = [j async for j in plugin.Executor.check_active_jobs(executor, [job])]
        return kept, executor.next_seconds_between_status_checks

    assert asyncio.run(run()) == ([job], support.MAX_STATUS_INTERVAL)
    assert support.MAX_STATUS_INTERVAL <= 30
