"""A training that ends at its SLURM time limit (TIMEOUT) or is preempted without SLURM
bringing it back is resubmitted (`scontrol requeue`: the same job id, so the executor keeps
following it) and resumes from its checkpoints, up to `hardware.slurm.resubmits` times; when
they run out the error names `hardware.slurm.time_minutes` with the epochs done and the time an
epoch takes.

Runs in the main Snakemake process, inside the SLURM executor's status query
(taomake.snakemake_support); `decide` is the policy, the rest reads SLURM and the files.
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from taomake.compiler.actions import ACTIONS
from taomake.compiler.plan import resources_of

from .joblog import say
from .progress import duration

# The TAO action of a rule whose name is not the action's (rules/sweep.smk: a rung trains)
RULE_ACTIONS = {"sweep_rung_train": "train"}
# States in which SLURM itself still has the job (it requeued it, e.g. after a preemption)
STILL_SLURMS = {"PENDING", "RUNNING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "CONFIGURING",
                "RESIZING", "SUSPENDED"}
# Ended but its processes still winding down (KillWait): asked again at the next query
ENDING = {"COMPLETING"}
CHAINED = {"TIMEOUT", "PREEMPTED"}
EXPLAINED = {"OUT_OF_MEMORY"}  # failed for good; the message names the setting to change


@dataclass(frozen=True)
class Ended:
    """A SLURM job that sacct says ended in TIMEOUT or PREEMPTED, as scontrol sees it now."""

    job_id: str
    state: str  # TIMEOUT | PREEMPTED (sacct)
    job_state: str  # scontrol JobState now: PREEMPTED for good, or PENDING once requeued
    restarts: int  # how often it was requeued already (scontrol Restarts)
    requeueable: bool  # scontrol Requeue=1 (sbatch --requeue: hardware.slurm.requeue)


@dataclass(frozen=True)
class Training:
    """What taomake knows of the job: its label, whether it resumes, its settings, files."""

    label: str  # "train (base)"
    resumable: bool
    resubmits: int  # hardware.slurm.resubmits
    time_minutes: int  # hardware.slurm.time_minutes
    log: Path | None = None
    status: Path | None = None  # TAO's status.json of the action
    attempts: Path | None = None  # the action's record of ended attempts (JSON lines)
    memory_mb: int | None = None  # what the job asked for (hardware.slurm.mem_mb_per_gpu)


@dataclass(frozen=True)
class Decision:
    action: str  # "wait" (SLURM has it), "later" (still ending), "requeue", "fail"
    reason: str


def decide(ended: Ended, training: Training | None) -> Decision:
    """What to do with a job that sacct reports as TIMEOUT, PREEMPTED or OUT_OF_MEMORY."""
    if ended.state in EXPLAINED:
        return Decision("fail", "it would run out of memory again")
    if ended.job_state in ENDING:
        return Decision("later", "its processes are still ending")
    if ended.job_state in STILL_SLURMS:
        return Decision("wait", "SLURM requeued it itself")
    if training is None:
        return Decision("fail", "not a job of this build's trainings")
    if ended.state == "TIMEOUT" and not training.resumable:
        return Decision("fail", "it starts over when resubmitted, and would time out again")
    if ended.restarts >= training.resubmits:
        return Decision("fail", f"resubmitted {ended.restarts} time(s) already "
                                f"(hardware.slurm.resubmits: {training.resubmits})")
    if not ended.requeueable:
        return Decision("fail", "it was submitted with --no-requeue (hardware.slurm.requeue: "
                                "false), so it cannot be resubmitted")
    return Decision("requeue", f"attempt {ended.restarts + 2} of {training.resubmits + 1}")


# --------------------------------------------------------------------------- progress


def _when(record: dict[str, Any]) -> datetime | None:
    try:
        return datetime.strptime(f"{record['date']} {record['time']}", "%m/%d/%Y %H:%M:%S")
    except (KeyError, ValueError):
        return None


def _seconds(text: str) -> float | None:
    m = re.fullmatch(r"(\d+):(\d\d):(\d\d(?:\.\d+)?)", str(text))
    return int(m[1]) * 3600 + int(m[2]) * 60 + float(m[3]) if m else None


def progress(status: Path | None) -> tuple[int, int | None, float | None]:
    """(epochs done, epochs in all, seconds an epoch takes) from TAO's status.json."""
    from .tao_status import read_status

    records = [r for r in (read_status(status) if status else [])
               if isinstance(r.get("epoch"), int)]
    if not records:
        return 0, None, None
    done = max(r["epoch"] for r in records) + 1
    total = max((r["max_epoch"] for r in records if isinstance(r.get("max_epoch"), int)),
                default=None)
    per = [s for r in records if (s := _seconds(r.get("time_per_epoch", ""))) is not None]
    if not per:  # no time_per_epoch (the fake TAO): the time between epoch records
        times = [t for r in records if (t := _when(r)) is not None]
        per = [(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)
               if b > a]
    return done, (total + 1 if total is not None else None), (
        statistics.median(per) if per else None)


def describe(ended: Ended, training: Training, decision: Decision) -> str:
    if ended.state == "OUT_OF_MEMORY":
        asked = f" ({training.memory_mb} MB)" if training.memory_mb else ""
        return (f"{training.label}: SLURM job {ended.job_id} ran out of the memory it asked "
                f"for{asked}: raise hardware.slurm.mem_mb_per_gpu (per GPU, or for the whole "
                "job on CPU), or lower dataset.batch_size or dataset.workers, then run "
                "snakemake again (a training resumes from its checkpoints)")
    done, total, per = progress(training.status)
    what = ("reached its time limit (hardware.slurm.time_minutes: "
            f"{training.time_minutes})" if ended.state == "TIMEOUT" else "was preempted")
    epochs = f"{done} of {total} epochs done" if total else f"{done} epoch(s) done"
    pace = f", one epoch takes ~{duration(per)}" if per else ""
    head = f"{training.label}: SLURM job {ended.job_id} {what}; {epochs}{pace}"
    if decision.action == "requeue":
        return (f"{head}; resubmitted ({decision.reason}), it resumes from its checkpoints")
    fix = "raise hardware.slurm.time_minutes"
    if per and total and done < total:
        need = per * (total - done) / 60 + 5  # and TAO's start-up
        fix += f" (the {total - done} epochs left need ~{need:.0f} min)"
    if ended.state == "TIMEOUT":
        fix += " or hardware.slurm.resubmits"
    return f"{head}; not resubmitted: {decision.reason}; {fix}, then run snakemake again " \
           "(it resumes from the checkpoints)"


# --------------------------------------------------------------------------- SLURM


def scontrol_show(job_id: str) -> dict[str, str]:
    try:
        out = subprocess.run(["scontrol", "show", "job", "-o", job_id.split("_")[0]],
                             capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    return dict(item.split("=", 1) for item in out.split() if "=" in item)


def ended_job(job_id: str, state: str) -> Ended | None:
    show = scontrol_show(job_id)
    if not show:
        return None  # gone from slurmctld: nothing to requeue
    return Ended(job_id, state, show.get("JobState", ""),
                 int(show.get("Restarts", "0") or 0), show.get("Requeue") != "0")


def step_states(job_id: str) -> list[str]:
    """The states of a job's steps (sacct): a job whose batch script failed after a step ran
    out of memory says FAILED, its step OUT_OF_MEMORY."""
    try:
        out = subprocess.run(["sacct", "-n", "-P", "-j", job_id.split("_")[0], "-o", "State"],
                             capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.split(" ", 1)[0].rstrip("+") for line in out.split() if line]


def requeue(job_id: str) -> str | None:
    """Requeue a finished job under its id and let it start as soon as it may (SLURM holds a
    requeued job back for a while by default); None, or why it failed."""
    try:
        proc = subprocess.run(["scontrol", "requeue", job_id], capture_output=True, text=True,
                              timeout=30)
        if proc.returncode != 0:
            return proc.stderr.strip() or f"scontrol requeue exited {proc.returncode}"
        subprocess.run(["scontrol", "update", f"jobid={job_id}", "StartTime=now"],
                       capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        return str(exc)
    return None


def record_attempt(path: Path | None, ended: Ended, decision: Decision, text: str) -> None:
    """What became of an attempt, for the job's next attempt (its log starts afresh) and its
    provenance (taomake.jobs)."""
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"job": ended.job_id, "attempt": ended.restarts + 1,
                                 "state": ended.state, "then": decision.action,
                                 "said": text, "at": time.time()}) + "\n")
    except OSError:
        pass  # said on the console already


def earlier_attempts(path: Path, job_id: str) -> list[dict[str, Any]]:
    """The recorded attempts of SLURM job `job_id` (oldest first)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("job") == job_id:
            out.append(entry)
    return out


def restarts_of(job_id: str) -> int:
    """How often SLURM job `job_id` was requeued (0 when unknown)."""
    try:
        return int(scontrol_show(job_id).get("Restarts", "0") or 0)
    except ValueError:
        return 0


def training_of(plan, active: dict[str, Any]) -> Callable[[str], Training | None]:
    """What taomake knows of a SLURM job of this build, from the executor's job (its rule and
    experiment) and the plan (its settings and files)."""
    root = Path(plan.root)

    def training(job_id: str) -> Training | None:
        info = active.get(job_id)
        job = getattr(info, "job", None)
        exp = getattr(getattr(job, "wildcards", None), "exp", None)
        if job is None or exp not in plan.experiments:
            return None
        # the TAO action the rule runs (none: a step of taomake's own); a training resumes
        name = RULE_ACTIONS.get(job.name, job.name)
        action = ACTIONS.get(name)
        trains = action is not None and action.trains
        slurm = plan.job_settings(exp).hardware.slurm
        logs = list(getattr(job, "log", []) or [])
        layout = plan.experiments[exp].layout
        return Training(
            label=f"{job.name} ({exp})", resumable=trains, resubmits=slurm.resubmits,
            time_minutes=slurm.time_minutes if trains else slurm.eval_time_minutes,
            log=Path(logs[0]).resolve() if logs else None,
            status=root / layout.status(name) if trains else None,
            attempts=root / layout.attempts_record(name) if action else None,
            memory_mb=resources_of(plan.job_settings(exp).hardware, (name,))[name]["mem_mb"]
            if action else None)

    return training


class Chain:
    """Decides, once per job and attempt, what a TIMEOUT or PREEMPTED job becomes; `training`
    names what taomake knows of a SLURM job id (None: not one of this build's)."""

    def __init__(self, training: Callable[[str], Training | None]):
        self.training = training
        self.seen: dict[tuple[str, int], str] = {}

    def state(self, job_id: str, state: str) -> str:
        """The state the executor should see: the job resubmitted keeps it waiting."""
        if state == "FAILED" and "OUT_OF_MEMORY" in step_states(job_id):
            state = "OUT_OF_MEMORY"  # a step was killed for memory; the job failed after it
        if state not in CHAINED | EXPLAINED:
            return state
        ended = ended_job(job_id, state)
        if ended is None:
            return "FAILED" if state == "PREEMPTED" else state
        key = (job_id, ended.restarts)
        if key not in self.seen:
            training = self.training(job_id)
            decision = decide(ended, training)
            if decision.action in ("later", "wait"):  # asked again at the next query
                return "RUNNING" if decision.action == "later" else "PENDING"
            if decision.action == "requeue":
                problem = requeue(job_id)
                if problem:
                    decision = Decision("fail", f"scontrol requeue failed: {problem}")
            if training is not None:
                text = describe(ended, training, decision)
                say(text)
                record_attempt(training.attempts, ended, decision, text)
            self.seen[key] = "REQUEUED" if decision.action == "requeue" else (
                "FAILED" if state == "PREEMPTED" else state)
        return self.seen[key]


__all__ = ["Chain", "Decision", "Ended", "Training", "decide", "describe", "earlier_attempts",
           "progress", "restarts_of", "training_of"]
