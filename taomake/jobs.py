"""One build job: run a TAO action on its compiled spec and judge the result.

Called by the Snakemake rules (`taomake run <action> -e <experiment>`).  TAO's exit code is
not trusted alone (it exits 0 after an interruption and after some failures, docs/tao-notes.md §0):
a job succeeded only if the exit code is 0, the status.json records *written by this run* end
with the action's "finished successfully" message, and the expected files exist, non-empty.
The job holds its action folder's lease throughout (taomake.lease), gets its plan from the
build (compiler.plan.job_plan: it never compiles), and records what it built from.
"""

from __future__ import annotations

import io
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from taomake.compiler.actions import ACTIONS, Action
from taomake.compiler.errors import TaomakeError, UsageError
from taomake.compiler.facts import job_shape
from taomake.compiler.files import atomic_write, link_local_source
from taomake.compiler.plan import BuildPlan, ExperimentPlan, JobSettings, SpecEntry, job_plan
from taomake.errors import RunError

from .errors import Interrupted
from .failures import classify
from .joblog import note as _note
from .joblog import say as _say
from .judges import Produced, judge
from .lease import Lease, LeaseHeld, take
from .progress import Progress
from .resume import guard_resume, repair_checkpoints
from .runners import Runner, TaoJob
from .runners.mounts import job_mounts
from .runners.registry import make_runner
from .tao_status import error_lines, outcome, read_status, training_curve

# --------------------------------------------------------------------------- the job


def make_job(p: JobSettings, root: Path, compiled: ExperimentPlan, experiment: str,
             action: Action, spec: dict[str, Any], job_spec: Path,
             environ: Mapping[str, str] | None = None) -> TaoJob:
    """The runner-independent description of one TAO run (image, GPUs, mounts, env names)."""
    shape = job_shape(p.hardware, action.name)
    ids = tuple(p.hardware.gpu_ids or range(p.hardware.gpus_per_node))
    results_dir = compiled.layout.action_dir(action.results_prefix) if action.results_prefix \
        else compiled.layout.root
    return TaoJob(action=action, spec=job_spec.resolve(), results_dir=results_dir,
                  workdir=root, image=p.tao.image(action.flavor),
                  env_names=tuple(p.hardware.runner.env), gpus=shape.gpus,
                  gpu_ids=ids[:shape.gpus], nodes=shape.nodes, pack_nodes=shape.packed,
                  cpus_per_task=compiled.resources.get(action.name, {}).get("cpus_per_task"),
                  shm_size=p.hardware.shm_size,
                  extra_env=_tao_env(p, shape.gpus, os.environ if environ is None else environ),
                  mounts=tuple(job_mounts(spec, root, compiled.layout.root, job_spec)),
                  label=f"{p.name}/{experiment}/{action.name}")


def _tao_env(p: JobSettings, gpus: int, environ: Mapping[str, str]) -> dict[str, str]:
    """Variables taomake sets for TAO (never secrets)."""
    env = {"TAO_LOGGING_LEVEL": p.hardware.runner.log_level}
    if gpus:  # on GPU, TAO's own defaults
        return env
    if environ.get("OMP_NUM_THREADS", "").isdigit():
        # TAO (torch) uses the threads Snakemake gave the job (rules/resources.smk
        # tao_threads), not every core of the host: jobs side by side never share a core
        threads = environ["OMP_NUM_THREADS"]
        env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    policy = environ.get("OMP_WAIT_POLICY", "").upper()
    if policy in ("ACTIVE", "PASSIVE"):
        # on a machine shared with other work, PASSIVE keeps torch's idle threads from
        # spinning on cores another process needs (measured: a 2-thread training step
        # beside two busy processes 745 ms ACTIVE, 312 ms PASSIVE; 99 and 124 ms alone)
        env["OMP_WAIT_POLICY"] = policy
    return env


def _with_epochs(spec: SpecEntry, epochs: int) -> SpecEntry:
    """The spec with train.num_epochs replaced (a rung's job spec; the compiled one is kept)."""
    import copy

    from taomake.compiler.compile import dump_yaml

    data = copy.deepcopy(spec.data)
    data["train"]["num_epochs"] = epochs
    header = "".join(line for line in spec.text.splitlines(keepends=True)
                     if line.startswith("#"))
    return SpecEntry.of(spec.path, f"{header}# rung: num_epochs {epochs}\n" + dump_yaml(data),
                        data)


@dataclass
class JobRun:
    """Everything one `taomake run` works with, once it has checked it may run."""

    plan: BuildPlan
    experiment: str
    action: Action
    spec: SpecEntry  # what TAO runs (a rung's, with its epochs)
    compiled_text: str  # the spec as the build planned it
    runner: Runner
    job: TaoJob
    project_mtime: int

    @property
    def compiled(self) -> ExperimentPlan:
        return self.plan.experiments[self.experiment]

    @property
    def root(self) -> Path:
        return Path(self.plan.root)

    @property
    def layout(self):
        return self.compiled.layout

    @property
    def label(self) -> str:
        return f"{self.action.name} ({self.experiment})"

    def at(self, rel: str) -> Path:
        return self.root / rel


def prepare(project: Path, experiment: str, action_name: str, epochs: int | None,
            rung_out: Path | None) -> JobRun:
    """The job as the build planned it, or an error saying why it may not run."""
    project_mtime = project.stat().st_mtime_ns
    plan = job_plan(project)
    if experiment not in plan.experiments:
        raise UsageError(f"unknown experiment {experiment!r}")
    compiled = plan.experiments[experiment]
    if action_name not in compiled.specs:
        raise UsageError(f"experiment {experiment!r} has no {action_name} action: "
                         f"{compiled.skipped.get(action_name, 'unknown action')}")
    spec, action, root = compiled.specs[action_name], ACTIONS[action_name], Path(plan.root)
    on_disk = root / spec.path
    if not on_disk.exists() or on_disk.read_text(encoding="utf-8") != spec.text:
        raise RunError(f"{spec.path}, the spec this build planned, is not what project.yaml "
                       "asks for now (edited while the build ran?): this job is not run; run "
                       "snakemake again once the build has ended")
    compiled_text = spec.text
    if epochs is not None:
        if not action.trains or rung_out is None:
            raise UsageError("--epochs is for a sweep rung: train with --rung-out")
        spec = _with_epochs(spec, epochs)
    p = plan.job_settings(experiment)
    for source in plan.data_sources():  # a job run by hand: the links to local data it reads
        if not source.staged:
            link_local_source(root, source.uri, source.target(plan.results))
    # TAO may rewrite its spec in place (multi-node): every job gets its own copy
    job_spec = root / compiled.layout.job_spec(action_name)
    runner = make_runner(p.hardware, root)
    job = make_job(p, root, compiled, experiment, action, spec.data, job_spec)
    return JobRun(plan, experiment, action, spec, compiled_text, runner, job, project_mtime)


def run_action(project: Path, experiment: str, action_name: str, log_path: Path, *,
               epochs: int | None = None, rung_out: Path | None = None) -> None:
    """Run one TAO action and judge it.  `epochs` (train only, with `rung_out`): a
    successive-halving rung, i.e. the same spec trained up to `epochs` (resuming the
    trial's checkpoints), its curve written to `rung_out` instead of the train outputs."""
    job_started = time.time_ns()  # before the spec is read: every output is newer
    run = prepare(project, experiment, action_name, epochs, rung_out)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log, \
            _lease(run.root, run.layout, run.action.name, run.label, log) as lease:
        _reclaim(run.runner, run.job, run.label, log)
        slurm = _slurm_attempt(run.at(run.layout.attempts_record(run.action.name)),
                               run.label, log)
        if run.action.trains:
            out_dir = run.at(run.layout.folder(run.action.name))
            repair_checkpoints(out_dir, log)
            guard_resume(out_dir, run.spec.data, log, run.runner.runtime(run.job),
                         record=run.at(run.layout.resume_record(run.action.name)))
        cache = _job_cache(run) if epochs is None else None  # a rung is never shared
        hit = cache.lookup(run.root, run.layout, log, run.label) if cache else None
        if hit is not None:
            _record_hit(run, cache, hit, job_started, slurm)
            note_edited_project(project, run, log)
            return
        atomic_write(run.job.spec, run.spec.text)
        for copy in run.job.node_specs():
            atomic_write(copy, run.spec.text)
        rc, elapsed, started = _run_until_judged(run, log, log_path, lease, rung_out)
        if cache is not None:  # judged successful: only now may it be shared
            cache.publish(run.root, run.layout, run.action, run.spec.data, _about(run), log,
                          run.label)
        _record(run, rc, elapsed, started, job_started, slurm, rung=epochs is not None,
                cache=cache.record if cache is not None else None)
        _note(log, f"{run.label}: finished in {elapsed:.0f} s")
        note_edited_project(project, run, log)


def _run_until_judged(run: JobRun, log, log_path: Path, lease: Lease,
                      rung_out: Path | None) -> tuple[int, float, float]:
    """Run TAO (again on an infrastructure fault, up to hardware.runner.retries) until it
    succeeds; (exit code, TAO's seconds, its start), or RunError with the evidence."""
    action, status = run.action, run.at(run.layout.status(run.action.name))
    retries = run.plan.job_settings(run.experiment).hardware.runner.retries
    attempt = 0
    while True:
        if not action.overwrites:  # TAO refuses to write over them (export: its ONNX)
            for path in action.produces(run.layout, run.spec.data):
                run.at(path).unlink(missing_ok=True)
        before = len(read_status(status))
        log.flush()
        log_start = log.tell()
        _note(log, f"{run.label}: {' '.join(run.job.tao_argv())} via the {run.runner.name} "
                   f"runner (cwd {run.root})"
                   + (f", retry {attempt} of {retries}" if attempt else ""))
        started, started_wall = time.monotonic(), time.time()
        progress = Progress(status, before, run.label,
                            run.spec.data.get("train", {}).get("num_epochs"),
                            downstream(run)) if action.trains else None
        try:
            rc = run.runner.run(run.job, log, on_tick=progress, lease=lease)
        except Interrupted as exc:
            _note(log, f"{run.label}: {exc}; TAO stopped, no process left behind")
            raise
        records = read_status(status)[before:]
        verdict = outcome(records, action.final_message)
        problems = [] if rc == 0 else [f"TAO exited with code {rc}"]
        if not verdict.finished:
            problems.append(verdict.reason)
        if not problems:
            problems = judge(Produced(action, run.root, run.layout, records, run.spec.data,
                                      rung_out=rung_out))
        elapsed = time.monotonic() - started
        if not problems:
            return rc, elapsed, started_wall
        log.flush()
        failure = classify(_tail_from(log_path, log_start, 60), records[-20:])
        if failure.retryable and attempt < retries:
            attempt += 1
            _note(log, f"{run.label}: infrastructure fault ({failure.cause}: "
                       f"{failure.evidence_line}); retry {attempt} of {retries}, resuming "
                       "from the saved checkpoints where there are any")
            continue
        raise _failed(run, log, log_path, failure, problems, records, elapsed, retries)


def downstream(run: JobRun):
    """The experiment's TAO jobs after this training, and the images they and an epoch read
    (for the whole build's ETA: taomake.progress)."""
    from taomake.compiler.layout import dataset_paths

    from .progress import Downstream, count_images

    after = [a for a in run.compiled.specs if ACTIONS[a].reads]
    images = sum(count_images(dataset_paths(run.compiled.specs[a].data), run.root)
                 for a in after if ACTIONS[a].flavor == "pytorch")
    epoch = count_images(dataset_paths(run.spec.data), run.root)
    return Downstream(len(after), images, epoch)


def _failed(run: JobRun, log, log_path: Path, failure, problems: list[str],
            records: list[dict[str, Any]], elapsed: float, retries: int) -> RunError:
    """The job's failure, with its evidence: the cause, TAO's errors, the log's last lines."""
    tail, log_tail = error_lines(records), _tail(log_path, 15)
    why = (f"{failure.kind} fault: {failure.cause}" if failure.kind != "unknown"
           else "cause unknown")
    if failure.retryable:
        why += f", still failing after {retries} retries"
    _note(log, f"{run.label}: FAILED after {elapsed:.0f} s ({why}): " + "; ".join(problems))
    return RunError(f"{run.label} failed ({why}): " + "; ".join(problems)
                    + (f"\n  evidence: {failure.evidence_line}" if failure.evidence_line
                       else "")
                    + ("\n  status.json errors:\n    " + "\n    ".join(tail) if tail else "")
                    + f"\n  last lines of {log_path}:\n    " + "\n    ".join(log_tail))


def _record(run: JobRun, rc: int, elapsed: float, started: float, job_started: int,
            slurm: dict[str, Any] | None, *, rung: bool,
            cache: dict[str, Any] | None = None) -> None:
    """What this artifact was built from (`taomake explain`, compiler.writer), dated when the
    job started; how long TAO took; provenance.  A rung builds its rung record only."""
    name, lay = run.action.name, run.layout
    if not rung:
        _record_built(run, job_started)
    atomic_write(run.at(lay.tao_run(name)), json.dumps(
        {"runner": run.runner.name, "tao_seconds": round(elapsed, 3),
         "argv": run.job.tao_argv()}, indent=2) + "\n")
    _record_provenance(run, started, rc, slurm, cache)


def _record_built(run: JobRun, job_started: int) -> None:
    """The spec the action's artifacts were built from, dated when the job started (an edit
    of project.yaml made while it ran is newer: compiler.writer)."""
    built = run.at(run.layout.built_record(run.action.name))
    atomic_write(built, run.spec.text)
    os.utime(built, ns=(job_started, job_started))


def _job_cache(run: JobRun):
    """The team cache as this job sees it (taomake.cache), None without one."""
    from .cache import job_cache

    return job_cache(run.plan.cache, run.plan.storage, action=run.action,
                     spec=run.spec.data, layout=run.layout, root=run.root,
                     results=run.plan.results, sources=run.plan.data_sources(),
                     consumed=run.compiled.consumed(run.action.name),
                     runtime=run.runner.cache_runtime(run.job))


def _about(run: JobRun) -> dict[str, Any]:
    """What a published entry says of the job that made it (never a path or a secret)."""
    from .provenance import git_state

    return {"job": run.label, "project": run.plan.name, "experiment": run.experiment,
            "git": git_state(run.root).get("commit"),
            "runner": run.runner.name}


def _record_hit(run: JobRun, cache, hit, job_started: int,
                slurm: dict[str, Any] | None) -> None:
    """A job fetched from the cache is recorded as one built here: the spec it stands for,
    its provenance (from cache: key, publisher, when, which job)."""
    from .provenance import write_provenance

    name, lay = run.action.name, run.layout
    _record_built(run, job_started)
    atomic_write(run.at(lay.tao_run(name)), json.dumps(
        {"runner": "cache", "tao_seconds": 0, "cache_seconds": cache.record.get("seconds"),
         "argv": []}, indent=2) + "\n")
    runtime: dict[str, Any] = {"runner": run.runner.name,
                               "built_with": cache.key.parts["runtime"]}
    if slurm:
        runtime["slurm"] = slurm
    write_provenance(run.at(lay.provenance(name)), name, root=run.root,
                     artifacts=sorted(a for a in hit.placed if run.at(a).is_file()),
                     spec_text=run.spec.text, spec=run.spec.data, runtime=runtime,
                     sources=run.plan.data_sources(), results=run.compiled.results,
                     consumed=run.compiled.consumed(name), argv=[], env_names=[],
                     started=job_started / 1e9, ended=time.time(), exit_status=0,
                     cache=cache.record)


def note_edited_project(project: Path, run: JobRun, log: io.BufferedWriter | None) -> None:
    """Say so when project.yaml, edited while the job ran, asks for another spec: what the
    job built is stale, and the next build reruns it (the running build keeps the spec it
    planned: rules/common.smk)."""
    try:
        if project.stat().st_mtime_ns == run.project_mtime:
            return
        from taomake.compiler.plan import load_plan

        now = load_plan(project, write=False).experiments[run.experiment].specs[
            run.action.name].text
    except (OSError, KeyError, TaomakeError):
        return  # no longer compiles or has the job: the next build says why
    if now != run.compiled_text:
        _note(log, f"{run.label}: project.yaml changed while this job ran and asks for "
                   f"another {run.action.name} spec: these results are stale, the next build "
                   "reruns it")


# --------------------------------------------------------------------------- around the run


def _lease(root: Path, layout, action: str, label: str, log: io.BufferedWriter | None
           ) -> Lease:
    """The lease on the action's folder for the whole job, or LeaseHeld (exit 1) naming the
    live job that holds it; a lease a dead holder left is taken over, and the log says so."""
    folder = layout.folder(action)
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


def _record_provenance(run: JobRun, started: float, rc: int,
                       slurm: dict[str, Any] | None = None,
                       cache: dict[str, Any] | None = None) -> None:
    from .provenance import gpu_models, write_provenance

    lay, name, root = run.layout, run.action.name, run.root
    folder = run.at(lay.folder(name))
    # TAO's files in the folder (taomake's own are hidden: the lease, the records folder;
    # its status, config and the hand-off's link are not artifacts) and what it wrote
    # elsewhere (the ONNX, the engine)
    skip = {run.at(lay.status(name)), run.at(lay.tao_config(name))}
    if run.action.trains:
        skip.add(run.at(lay.model(name)))
    artifacts = {str(f.relative_to(root)) for f in folder.iterdir()
                 if f.is_file() and f not in skip and not f.name.startswith(".")}
    artifacts |= {a for a in run.action.produces(lay, run.spec.data)
                  if not (run.root / a).is_relative_to(folder)}
    runtime: dict[str, Any] = run.runner.provenance(run.job)
    if slurm:  # each attempt of a requeued job says which it is, and how the others ended
        runtime["slurm"] = slurm
    if run.job.gpus:
        runtime["gpus"] = gpu_models(run.job.gpu_ids)
    write_provenance(run.at(lay.provenance(name)), name, root=root,
                     artifacts=sorted(artifacts), spec_text=run.spec.text, spec=run.spec.data,
                     runtime=runtime, sources=run.plan.data_sources(),
                     results=run.compiled.results, consumed=run.compiled.consumed(name),
                     argv=run.job.tao_argv(), env_names=list(run.job.env_names),
                     started=started, ended=time.time(), exit_status=rc, cache=cache)


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


# --------------------------------------------------------------------------- hand-off


def select_checkpoint(project: Path, experiment: str) -> None:
    from .handoff import publish, select
    from .provenance import record_selection

    plan = job_plan(project)
    if experiment not in plan.experiments:
        raise UsageError(f"unknown experiment {experiment!r}")
    compiled = plan.experiments[experiment]
    root, lay, source = Path(plan.root), compiled.layout, compiled.source_action
    src_dir = root / lay.folder(source)
    # the training folder is read and written: never while a training runs in it
    with _lease(root, lay, source, f"select {source} ({experiment})", None):
        curve = training_curve(read_status(root / lay.status(source)))
        sel = select(src_dir, compiled.checkpoint_policy, compiled.best_metric, curve)
        how = publish(src_dir, sel, root / lay.model(source), root / lay.selection(source))
        record_selection(root, lay, source, sel.source, how)
    _say(f"{source} ({experiment}): selected epoch {sel.epoch} "
         f"({sel.policy}{f', {sel.metric} {sel.value}' if sel.value is not None else ''}) "
         f"-> {lay.model(source)} [{how}]")
