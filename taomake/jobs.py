"""One build job: run a TAO action on its compiled spec and judge the result.

Called by the Snakemake rules (`taomake run <action> -e <experiment>`).  TAO's exit code is
not trusted alone (it exits 0 after an interruption and after some failures, docs/tao-notes.md §0):
a job succeeded only if the exit code is 0, the status.json records *written by this run* end
with the action's "finished successfully" message, and the expected files exist, non-empty.
"""

from __future__ import annotations

import io
import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from taomake.compiler.actions import ACTIONS, Action
from taomake.compiler.errors import TaomakeError, UsageError
from taomake.compiler.facts import job_shape
from taomake.compiler.files import atomic_write, link_local_source
from taomake.compiler.layout import RECORDS_DIR
from taomake.compiler.plan import BuildPlan, ExperimentPlan, JobSettings, load_plan, resources_of
from taomake.errors import RunError

from .errors import Interrupted
from .failures import classify
from .joblog import note as _note
from .joblog import say as _say
from .judges import Produced, judge
from .lease import Lease, LeaseHeld, take
from .resume import guard_resume, repair_checkpoints
from .runners import TaoJob
from .runners.mounts import job_mounts
from .runners.registry import make_runner
from .tao_status import error_lines, outcome, read_status, training_curve

# --------------------------------------------------------------------------- results


def make_job(p: JobSettings, root: Path, compiled: ExperimentPlan, experiment: str,
             action: Action, spec: dict[str, Any], job_spec: Path,
             environ: Mapping[str, str] | None = None) -> TaoJob:
    """The runner-independent description of one TAO run (image, GPUs, mounts, env names)."""
    shape = job_shape(p.hardware, action.name)
    ids = tuple(p.hardware.gpu_ids or range(p.hardware.gpus_per_node))
    extra_env = {"TAO_LOGGING_LEVEL": p.hardware.runner.log_level}
    environ = os.environ if environ is None else environ
    if not shape.gpus:  # on GPU, TAO's own defaults
        if environ.get("OMP_NUM_THREADS", "").isdigit():
            # TAO (torch) uses the threads Snakemake gave the job (rules/common.smk
            # tao_threads), not every core of the host: jobs side by side never share a core
            threads = environ["OMP_NUM_THREADS"]
            extra_env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
        policy = environ.get("OMP_WAIT_POLICY", "").upper()
        if policy in ("ACTIVE", "PASSIVE"):
            # on a machine shared with other work, PASSIVE keeps torch's idle threads from
            # spinning on cores another process needs (measured: a 2-thread training step
            # beside two busy processes 745 ms ACTIVE, 312 ms PASSIVE; 99 and 124 ms alone)
            extra_env["OMP_WAIT_POLICY"] = policy
    results_dir = compiled.layout.action_dir(action.results_prefix) if action.results_prefix \
        else compiled.layout.root
    return TaoJob(action=action, spec=job_spec.resolve(), results_dir=results_dir,
                  workdir=root, image=(p.tao.deploy_image_ref if action.flavor == "deploy"
                                       else p.tao.pytorch_image_ref),
                  env_names=tuple(p.hardware.runner.env), gpus=shape.gpus,
                  gpu_ids=ids[:shape.gpus], nodes=shape.nodes, pack_nodes=shape.packed,
                  cpus_per_task=resources_of(p.hardware, (action.name,))[action.name][
                      "cpus_per_task"],
                  shm_size=p.hardware.shm_size,
                  extra_env=extra_env,
                  mounts=tuple(job_mounts(spec, root, compiled.layout.root, job_spec)),
                  label=f"{p.name}/{experiment}/{action.name}")


def _with_epochs(spec, epochs: int):
    """The spec with train.num_epochs replaced (a rung's job spec; the compiled one is kept)."""
    import copy

    from taomake.compiler.compile import dump_yaml
    from taomake.compiler.plan import SpecEntry

    data = copy.deepcopy(spec.data)
    data["train"]["num_epochs"] = epochs
    header = "".join(line for line in spec.text.splitlines(keepends=True)
                     if line.startswith("#"))
    return SpecEntry.of(spec.path, f"{header}# rung: num_epochs {epochs}\n" + dump_yaml(data),
                        data)


# --------------------------------------------------------------------------- entry point


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    return f"{seconds // 60} min {seconds % 60:02d} s"


class _Progress:
    """Print a line per finished epoch (train/distill) while TAO runs: the losses, the
    validation mAPs and, from the second epoch on, an ETA from the pace of the epochs since
    the first."""

    def __init__(self, status: Path, skip: int, label: str, epochs: int | None = None):
        self.status, self.skip, self.label, self.epochs = status, skip, label, epochs
        self.next_check, self.seen = 0.0, -1
        self.done_at: list[tuple[int, float]] = []  # (epoch, when its line was seen)

    def eta(self, epoch: int) -> str:
        if not self.epochs or epoch + 1 >= self.epochs:
            return ""
        if len(self.done_at) < 2:  # the first epoch also carries TAO's start-up
            return ""
        (first_epoch, first), (last_epoch, last) = self.done_at[0], self.done_at[-1]
        pace = (last - first) / max(1, last_epoch - first_epoch)
        return f", ETA {_duration(pace * (self.epochs - 1 - epoch))}"

    def __call__(self) -> None:
        now = time.monotonic()
        if now < self.next_check:
            return
        self.next_check = now + 2.0
        rows = training_curve(read_status(self.status)[self.skip:])
        for row in rows:
            if row.epoch > self.seen and row.train_loss is not None:
                self.seen = row.epoch
                self.done_at.append((row.epoch, now))
                extra = f", val_mAP {row.val_mAP:.4f}" if row.val_mAP is not None else ""
                if row.val_mAP50 is not None:
                    extra += f", val_mAP50 {row.val_mAP50:.4f}"
                of = f" ({row.epoch + 1}/{self.epochs})" if self.epochs else ""
                _say(f"{self.label}: epoch {row.epoch} done{of}, train_loss "
                     f"{row.train_loss:.4f}{extra}{self.eta(row.epoch)}")


def run_action(project: Path, experiment: str, action_name: str, log_path: Path, *,
               epochs: int | None = None, rung_out: Path | None = None) -> None:
    """Run one TAO action and judge it.  `epochs` (train only, with `rung_out`): a
    successive-halving rung, i.e. the same spec trained up to `epochs` (resuming the
    trial's checkpoints), its curve written to `rung_out` instead of the train outputs."""
    job_started = time.time_ns()  # before the spec is read: every output is newer
    project_mtime = project.stat().st_mtime_ns
    plan = load_plan(project, write=False)  # the cached plan: no compile while it is current
    if experiment not in plan.experiments:
        raise UsageError(f"unknown experiment {experiment!r}")
    compiled = plan.experiments[experiment]
    if action_name not in compiled.specs:
        raise UsageError(f"experiment {experiment!r} has no {action_name} action: "
                         f"{compiled.skipped.get(action_name, 'unknown action')}")
    spec = compiled.specs[action_name]
    action = ACTIONS[action_name]
    root = Path(plan.root)
    on_disk = root / spec.path
    if not on_disk.exists() or on_disk.read_text(encoding="utf-8") != spec.text:
        raise RunError(f"{spec.path}, the spec this build planned, is not what project.yaml "
                       "asks for now (edited while the build ran?): this job is not run; run "
                       "snakemake again once the build has ended")
    compiled_text = spec.text
    if epochs is not None:
        if action.name != "train" or rung_out is None:
            raise UsageError("--epochs is for a sweep rung: train with --rung-out")
        spec = _with_epochs(spec, epochs)
    p = plan.job_settings(experiment)
    for source in plan.data_sources():  # a job run by hand: the links to local data it reads
        if not source.staged:
            link_local_source(root, source.uri, source.target(plan.results))
    out_dir = root / compiled.layout.action_dir(action.results_subdir)
    # TAO may rewrite its spec in place (multi-node): every job gets its own copy
    job_spec = out_dir / RECORDS_DIR / f"job-{action.name}.yaml"
    runner = make_runner(p.hardware, root)
    job = make_job(p, root, compiled, experiment, action, spec.data, job_spec)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    status = out_dir / "status.json"
    label = f"{action.name} ({experiment})"
    with open(log_path, "ab") as log, \
            _lease(root, compiled.layout, action.name, label, log) as lease:
        _reclaim(runner, job, label, log)
        slurm = _slurm_attempt(root / compiled.layout.attempts_record(action.name), label, log)
        if action.name in ("train", "distill"):
            repair_checkpoints(out_dir, log)
            guard_resume(out_dir, spec.data, log, runner.runtime(job))
        atomic_write(job_spec, spec.text)
        for copy in job.node_specs():
            atomic_write(copy, spec.text)
        retries = p.hardware.runner.retries
        attempt = 0
        while True:
            if action.judged_as == "export":  # TAO asserts the ONNX is absent
                (root / spec.data["export"]["onnx_file"]).unlink(missing_ok=True)
            before = len(read_status(status))
            log.flush()
            log_start = log.tell()
            _note(log, f"{label}: {' '.join(job.tao_argv())} via the {runner.name} runner "
                       f"(cwd {root})" + (f", retry {attempt} of {retries}" if attempt else ""))
            started = time.monotonic()
            started_wall = time.time()
            try:
                rc = runner.run(job, log, on_tick=_Progress(
                    status, before, label, spec.data.get("train", {}).get("num_epochs"))
                    if action.name in ("train", "distill") else None, lease=lease)
            except Interrupted as exc:
                _note(log, f"{label}: {exc}; TAO stopped, no process left behind")
                raise
            records = read_status(status)[before:]
            verdict = outcome(records, action.final_message)
            problems = [] if rc == 0 else [f"TAO exited with code {rc}"]
            if not verdict.finished:
                problems.append(verdict.reason)
            if not problems:
                problems = judge(Produced(action, root, out_dir, records, spec.data,
                                          rung_out=rung_out))
            elapsed = time.monotonic() - started
            if not problems:
                break
            log.flush()
            failure = classify(_tail_from(log_path, log_start, 60), records[-20:])
            if failure.retryable and attempt < retries:
                attempt += 1
                _note(log, f"{label}: infrastructure fault ({failure.cause}: "
                           f"{failure.evidence_line}); retry {attempt} of {retries}, resuming "
                           "from the saved checkpoints where there are any")
                continue
            tail = error_lines(records)
            log_tail = _tail(log_path, 15)
            why = (f"{failure.kind} fault: {failure.cause}" if failure.kind != "unknown"
                   else "cause unknown")
            if failure.retryable:
                why += f", still failing after {retries} retries"
            _note(log, f"{label}: FAILED after {elapsed:.0f} s ({why}): " + "; ".join(problems))
            raise RunError(f"{label} failed ({why}): " + "; ".join(problems)
                           + (f"\n  evidence: {failure.evidence_line}"
                              if failure.evidence_line else "")
                           + ("\n  status.json errors:\n    " + "\n    ".join(tail) if tail
                              else "")
                           + f"\n  last lines of {log_path}:\n    " + "\n    ".join(log_tail))
        # what this artifact was built from (`taomake explain`, compiler.writer), dated when
        # the job started; and how long TAO took.  A rung builds its rung record only.
        if epochs is None:
            built = root / compiled.layout.built_record(action.name)
            atomic_write(built, spec.text)
            os.utime(built, ns=(job_started, job_started))
        atomic_write(out_dir / RECORDS_DIR / f"run-{action.name}.json", json.dumps(
            {"runner": runner.name, "tao_seconds": round(elapsed, 3),
             "argv": job.tao_argv()}, indent=2) + "\n")
        _record_provenance(root, plan, experiment, action, spec, runner, job, out_dir,
                           started_wall, rc, slurm)
        _note(log, f"{label}: finished in {elapsed:.0f} s")
        note_edited_project(project, project_mtime, experiment, action.name, compiled_text,
                            log, label)


def note_edited_project(project: Path, mtime_ns: int, experiment: str, action: str,
                        ran_with: str, log: io.BufferedWriter | None, label: str) -> None:
    """Say so when project.yaml, edited while the job ran, asks for another spec: what the
    job built is stale, and the next build reruns it (the running build keeps the spec it
    planned: rules/common.smk)."""
    try:
        if project.stat().st_mtime_ns == mtime_ns:
            return
        now = load_plan(project, write=False).experiments[experiment].specs[action].text
    except (OSError, KeyError, TaomakeError):
        return  # no longer compiles or has the job: the next build says why
    if now != ran_with:
        _note(log, f"{label}: project.yaml changed while this job ran and asks for another "
                   f"{action} spec: these results are stale, the next build reruns it")


def _lease(root: Path, layout, action: str, label: str, log: io.BufferedWriter | None
           ) -> Lease:
    """The lease on the action's folder for the whole job, or LeaseHeld (exit 1) naming the
    live job that holds it; a lease a dead holder left is taken over, and the log says so."""
    folder = layout.output(action, "").rstrip("/")
    try:
        lease = take(root / layout.lease(action), root / layout.lease_record(action), label,
                     folder)
    except LeaseHeld as exc:
        _note(log, f"{label}: not started: {exc}")
        raise
    if lease.taken_over is not None:
        _note(log, f"{label}: took over the lease of {folder} from "
                   f"{lease.taken_over.describe()}, which ended without releasing it")
    return lease


def _reclaim(runner, job: TaoJob, label: str, log) -> None:
    """What an earlier run of this job left running (its taomake killed hard) goes first."""
    for what in runner.reclaim(job):
        _note(log, f"{label}: removed {what}, left running by an earlier run of this job "
                   "whose taomake process had died")


def _slurm_attempt(record: Path, label: str, log) -> dict[str, Any] | None:
    """In a SLURM job: which attempt this is (the job requeued after a time limit or a
    preemption: taomake.slurm_chain), what became of the earlier ones (the log starts
    afresh with each attempt), for the log and provenance."""
    job_id = os.environ.get("SLURM_JOB_ID")
    if not job_id:
        return None
    from .slurm_chain import earlier_attempts, restarts_of

    restarts = restarts_of(job_id)
    earlier = earlier_attempts(record, job_id)
    for entry in earlier:
        _note(log, f"earlier attempt {entry.get('attempt')}: {entry.get('said')}")
    if restarts:
        _note(log, f"{label}: attempt {restarts + 1} of SLURM job {job_id} (requeued "
                   f"{restarts} time(s))")
    return {"job": job_id, "attempt": restarts + 1,
            "earlier": [{k: e.get(k) for k in ("attempt", "state", "then")} for e in earlier]}


def _record_provenance(root: Path, plan: BuildPlan, experiment: str, action: Action, spec,
                       runner, job: TaoJob, out_dir: Path, started: float, rc: int,
                       slurm: dict[str, Any] | None = None) -> None:
    from .provenance import image_digest, write_provenance

    compiled = plan.experiments[experiment]
    # TAO's files (taomake's own are hidden: the lease, the records folder)
    artifacts = sorted(str(f.relative_to(root)) for f in out_dir.iterdir()
                       if f.is_file() and f.name not in ("status.json", "experiment.yaml")
                       and f.name != "model.pth" and not f.name.startswith("."))
    if action.name == "gen_trt_engine":
        artifacts.append(spec.data["gen_trt_engine"]["trt_engine"])
    if action.name == "export":
        artifacts.append(compiled.layout.onnx)
    runtime: dict[str, Any] = {"runner": runner.name}
    if slurm:  # each attempt of a requeued job says which it is, and how the others ended
        runtime["slurm"] = slurm
    if runner.name == "local":
        runtime["venv"] = str(getattr(runner, "venv", "") or "")
    else:
        runtime["image"] = job.image
        runtime["digest"] = image_digest(job.image) if runner.name == "docker" else None
    if job.gpus:
        from .provenance import gpu_models

        runtime["gpus"] = gpu_models(job.gpu_ids)
    consumed = ([compiled.layout.model(compiled.source_action)]
                if action.name not in ("train", "distill") else [])
    write_provenance(out_dir, action.name, root=root, artifacts=sorted(set(artifacts)),
                     spec_text=spec.text, spec=spec.data, runtime=runtime,
                     sources=plan.data_sources(), results=compiled.results, consumed=consumed,
                     argv=job.tao_argv(), env_names=list(job.env_names),
                     started=started, ended=time.time(), exit_status=rc)


def _tail_from(path: Path, offset: int, n: int) -> list[str]:
    """The last n lines written to `path` after byte `offset` (this attempt's output)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except FileNotFoundError:
        return []
    return data.decode("utf-8", errors="replace").splitlines()[-n:]


def _tail(path: Path, n: int) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return []
    return [line[:300] for line in lines if line.strip()][-n:]


def select_checkpoint(project: Path, experiment: str) -> None:
    from .handoff import publish, select

    plan = load_plan(project, write=False)
    if experiment not in plan.experiments:
        raise UsageError(f"unknown experiment {experiment!r}")
    compiled = plan.experiments[experiment]
    root = Path(plan.root)
    source = compiled.source_action
    src_dir = root / compiled.layout.action_dir(source)
    # the training folder is read and written: never while a training runs in it
    with _lease(root, compiled.layout, source, f"select {source} ({experiment})", None):
        curve = training_curve(read_status(src_dir / "status.json"))
        sel = select(src_dir, compiled.checkpoint_policy, compiled.best_metric, curve)
        how = publish(src_dir, sel, root / compiled.layout.model(source),
                      src_dir / "selection.json")
        from .provenance import record_selection

        record_selection(root, src_dir, compiled.layout.model(source), source, sel.source,
                         how)
    _say(f"{compiled.source_action} ({experiment}): selected epoch {sel.epoch} "
         f"({sel.policy}{f', {sel.metric} {sel.value}' if sel.value is not None else ''}) "
         f"-> {compiled.layout.model(compiled.source_action)} [{how}]")
