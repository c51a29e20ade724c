"""The build plan Snakemake needs, cached between invocations.

Snakemake parses the Snakefile on every call (and in every cluster job), so the plan it needs
(paths, spec data, per-experiment settings) is cached as JSON under the results folder and
reused while nothing it was computed from changed.  "Changed" is answered by cheap predicates:
the project file's bytes, then the size+mtime of every other file the compile read (templates,
schemas, compiler sources, annotation files, data folders).  A hit imports no pydantic, Jinja or
jsonschema; a miss compiles for real (with full validation) and rewrites the cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from .actions import ACTIONS, STEPS
from .errors import UsageError
from .facts import (
    dataset_sources,
    input_paths,
    job_shape,
    min_train_images,
    splits,
)
from .files import atomic_write, link_local_source, untouched_since, write_if_changed
from .layout import DataSource, Layout, image_file
from .runners import RUNNERS
from .writer import settle_spec_times


class StalePlan(UsageError):
    """A job asked for a plan the build no longer has (exit 2: run snakemake again)."""


PLAN_FORMAT = 9  # 2: resources; 3: name; 4: data sources, upload; 5: seeds, sweeps; 6: images;
# 7: job settings; 8: data sources by their place in the project; 9: spec texts apart
CACHE_NAME = ".taomake-plan.json"
TEXTS_NAME = ".taomake-plan-specs.json"  # the specs' texts, beside it (SpecEntry)


@dataclass(frozen=True)
class JobSettings:
    """What a TAO job runs with besides its spec: the project's name, `hardware` (GPUs, nodes,
    runner) and `tao` (images), as the project's own models, so runners take their settings
    as they are."""

    name: str
    hardware: Any  # compiler.hardware.Hardware
    tao: Any  # compiler.hardware.Tao

    @staticmethod
    def dump(project) -> dict[str, Any]:
        return {"name": project.name, "hardware": project.hardware.model_dump(mode="json"),
                "tao": project.tao.model_dump(mode="json")}

    @classmethod
    def of(cls, raw: dict[str, Any]) -> JobSettings:
        from .hardware import Hardware, Tao

        return cls(raw["name"], Hardware.model_validate(raw["hardware"]),
                   Tao.model_validate(raw["tao"]))


@dataclass
class SpecEntry:
    """A rendered spec: where it is written, its data, and its text.  The plan cache keeps the
    texts in a file of their own, read only when one is asked for (a spec to put back, a
    job's own spec): a Snakemake parse of a cached 1000-trial sweep reads 5000 texts' worth
    of JSON for nothing otherwise."""

    path: str
    data: dict[str, Any]
    size: int  # bytes of the text (UTF-8): an untouched spec file is recognised by it
    _text: str | None = field(default=None, repr=False, compare=False)
    _texts: Callable[[], dict[str, str]] | None = field(default=None, repr=False,
                                                         compare=False)

    @classmethod
    def of(cls, path: str, text: str, data: dict[str, Any]) -> SpecEntry:
        return cls(path, data, len(text.encode()), text)

    @property
    def text(self) -> str:
        if self._text is None:
            assert self._texts is not None, f"{self.path}: a spec entry without its text"
            self._text = self._texts()[self.path]
        return self._text


@dataclass
class ExperimentPlan:
    name: str
    results: str
    source_action: str  # train or distill
    use_checkpoint: str  # "best", "last" or an epoch number as text
    best_metric: str
    specs: dict[str, SpecEntry]
    files: dict[str, str]  # classmaps
    skipped: dict[str, str]
    # per action: Snakemake/SLURM resources (gres, cpus_per_task, mem_mb, runtime, slurm_*)
    resources: dict[str, dict[str, Any]] = field(default_factory=dict)
    upload: dict[str, Any] | None = None  # project.yaml `upload` (to, artifacts)
    group: str = ""  # report row: the experiment a seed or trial belongs to
    seed: int | None = None
    trial: dict[str, Any] | None = None  # sweep trial: TAO key -> value
    halving: bool = False  # a successive-halving trial: its sweep decides what it trains
    parity: bool = True
    parity_tolerance: float = 0.02
    checks: dict[str, str] = field(default_factory=dict)  # split role -> dataset check key
    # class id (as text: JSON) -> the project's name; TAO reads a label made from it
    # (compiler.facts.tao_label), reports and plots show the name
    class_names: dict[str, str] = field(default_factory=dict)
    # apptainer/pyxis runners: flavor (pytorch, deploy) -> [converted image file, image ref]
    images: dict[str, list[str]] = field(default_factory=dict)
    settings: str = ""  # what its jobs run with: a key of BuildPlan.settings

    @property
    def layout(self) -> Layout:
        return Layout(self.results, self.name)

    @property
    def checkpoint_policy(self) -> str | int:
        """train.use_checkpoint as the project gives it: "best", "last" or an epoch."""
        return int(self.use_checkpoint) if self.use_checkpoint.isdigit() else \
            self.use_checkpoint

    def artifacts(self) -> dict[str, list[str]]:
        """Per built action, the files it produces that people look at (main one first):
        the build's default target, and what `taomake status` reports on.  A sweep trial
        only trains by default (its curve is what ranks it); the winner's checkpoint and
        other artifacts are requested by its sweep."""
        lay = self.layout
        if self.halving:
            return {}
        if self.trial is not None:
            return {self.source_action: [lay.curve(self.source_action)]}
        return self.all_artifacts()

    def all_artifacts(self) -> dict[str, list[str]]:
        """Per built action (ACTIONS) and step of taomake's own (STEPS), its artifacts, the
        main one first; a step shown with an action (the parity check with the export) is
        listed with it."""
        built = {name: ACTIONS[name].produces(self.layout, spec.data)
                 for name, spec in self.specs.items()}
        for name, step in STEPS.items():
            if all(a in built for a in step.needs) and (not step.switch
                                                        or getattr(self, step.switch)):
                paths = step.produces(self.layout)
                if step.shown_with:
                    built[step.shown_with] = built[step.shown_with] + paths
                else:
                    built[name] = paths
        return built

    def names(self) -> dict[int, str]:
        """Class id -> the project's class name (what reports and plots show)."""
        return {int(k): v for k, v in self.class_names.items()}

    def consumed(self, action: str) -> list[str]:
        """The built model an action starts from (ACTIONS `reads`), as paths."""
        reads, lay = ACTIONS[action].reads, self.layout
        if reads == "model":
            return [lay.model(self.source_action)]
        if reads == "quantized":
            return ACTIONS["quantize"].produces(lay, self.specs["quantize"].data)
        if reads in ("onnx", "engine"):
            source = {"onnx": "export", "engine": "gen_trt_engine"}[reads]
            return ACTIONS[source].produces(lay, self.specs[source].data)[:1]
        return []


@dataclass
class BuildPlan:
    root: str
    project_file: str  # name relative to root
    results: str
    experiments: dict[str, ExperimentPlan]
    deps: list[str] = field(default_factory=list)  # files the compile read, for the cache key
    name: str = ""  # project name
    sources: list[dict[str, str]] = field(default_factory=list)  # DataSource fields, all exps
    storage: dict[str, Any] = field(default_factory=dict)  # project.yaml `storage`
    cache: dict[str, Any] | None = None  # project.yaml `cache` (taomake.cache)
    sweeps: dict[str, dict[str, Any]] = field(default_factory=dict)  # compiler.load.SweepPlan
    # JobSettings fields, JSON: experiments with the same settings (a sweep's trials) share one
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)

    def job_settings(self, experiment: str) -> JobSettings:
        """What `experiment`'s TAO jobs run with besides their specs (the project's own
        models, validated again: the cache is a file anyone can edit)."""
        return JobSettings.of(self.settings[self.experiments[experiment].settings])

    def data_sources(self) -> list[DataSource]:
        return [DataSource(**s) for s in self.sources]

    def source_of(self) -> dict[str, DataSource]:
        """Path TAO reads (as in the specs) -> its source."""
        return {s.target(self.results): s for s in self.data_sources()}


def _stat_key(path: Path) -> list[Any]:
    try:
        st = path.stat()
        return [str(path), st.st_size, st.st_mtime_ns]
    except OSError:
        return [str(path), None, None]


def fingerprint(project: Path, deps: list[str]) -> str:
    h = hashlib.sha256(f"{PLAN_FORMAT}".encode())
    h.update(project.read_bytes())
    h.update(json.dumps([_stat_key(Path(d)) for d in deps]).encode())
    return h.hexdigest()


def _code_deps() -> list[str]:
    from .package_data import references_dir, schemas_dir

    here = Path(__file__).resolve().parent
    files = sorted(here.glob("*.py")) + sorted(references_dir().glob("*.j2")) \
        + sorted(schemas_dir().glob("*.json"))
    return [str(f) for f in files]


def _data_deps(lp) -> list[str]:
    return sorted({str(lp.root / path) for exp in lp.experiments.values()
                   for _key, path, _kind in input_paths(exp.project)
                   if not path.startswith("s3://")})


TAO_ACTIONS = tuple(ACTIONS)  # every action is one TAO job


def resources_of(hardware, actions: tuple[str, ...] = TAO_ACTIONS) -> dict[str, dict[str, Any]]:
    """Snakemake resources per TAO action from project.yaml `hardware` (+ `hardware.slurm`).

    Training/distillation get `nodes` x `gpus_per_node` GPUs and `time_minutes`; every other
    action (engine builds, evaluation, inference, export, quantization) runs on one node with
    one GPU (none on CPU) for `eval_time_minutes`.  Resources are never rerun triggers."""
    s = hardware.slurm
    out: dict[str, dict[str, Any]] = {}
    for action in actions:
        shape = job_shape(hardware, action)
        training, gpus, nodes = ACTIONS[action].trains, shape.gpus, shape.nodes
        per_task = max(gpus, 1)
        r: dict[str, Any] = {
            "nodes": shape.slurm_nodes,
            "cpus_per_task": s.cpus_per_gpu * per_task,
            "mem_mb": s.mem_mb_per_gpu * per_task * (nodes if hardware.pack_nodes else 1),
            "runtime": s.time_minutes if training else s.eval_time_minutes,
        }
        if gpus:
            r["gres"] = f"gpu:{gpus}"
        if nodes > 1:
            # one task per TAO node; `mpi` makes the SLURM plugin run the rule in the batch
            # step itself (no `srun -n1` wrapper holding the CPUs), so taomake's own srun is
            # a step of this allocation; tasks_per_gpu 0 keeps it from turning `tasks` into
            # --ntasks-per-gpu
            r.update(tasks=nodes, mpi="srun")
            if gpus:
                r["tasks_per_gpu"] = 0
        extra = ["--requeue" if s.requeue else "--no-requeue"]
        r["slurm_extra"] = " ".join(extra)
        for key, value in (("slurm_partition", s.partition), ("slurm_account", s.account),
                           ("constraint", s.constraint)):
            if value:
                r[key] = value
        out[action] = r
    return out


def check_keys(p, base) -> dict[str, str]:
    """Dataset check per split role, keyed by everything the check depends on, so that
    experiments, seeds and sweep trials reading the same data share one check job.  Data by
    its folder under `_data/` (whose stamp, an input of the check, is its content): a dataset
    moved elsewhere keeps its check."""
    ds = p.dataset
    sources = dataset_sources(p, base)
    by_role: dict[str, list] = {}
    for split in splits(ds):
        by_role.setdefault(split.role, []).append(
            [sources[f"{split.key}.{kind}"].key for kind in ("images", "annotations")])
    need = min_train_images(p)
    out = {}
    for role, sources in by_role.items():
        # class ids, not names: a renamed class (a warning at most) must not retrain
        basis = {"role": role, "sources": sources, "classes": sorted(ds.classes),
                 "results": p.results,
                 "need": need if role == "train" else None}
        digest = hashlib.sha256(json.dumps(basis, sort_keys=True, default=str).encode())
        out[role] = f"{role}-{digest.hexdigest()[:12]}"
    return out


def converted_images(p) -> dict[str, list[str]]:
    """The image files an apptainer/pyxis project runs from (rules/images.smk makes them)."""
    kind = p.hardware.runner.kind
    if not RUNNERS[kind].image_file:
        return {}
    image_dir = getattr(p.hardware.runner, kind).image_dir
    return {flavor: [image_file(ref, image_dir, kind), ref]
            for flavor, ref in p.tao.images().items()}


def experiment_key(lp, name: str, deps_key: str) -> str:
    """What one experiment's compile reads, as a digest: its project (base + its overrides,
    seed or trial values), its place in a sweep, its teacher's project for `experiment:`
    teachers, and the compiler, templates, schemas and data files (`deps_key`).  An edit
    that leaves it unchanged (a comment, another experiment) reuses its compiled plan."""
    e = lp.experiments[name]
    p = e.project
    basis: dict[str, Any] = {"project": p.model_dump(mode="json"), "group": e.group,
                             "seed": e.seed, "trial": e.trial, "deps": deps_key,
                             "named": lp.base.experiments is not None}
    if e.trial is not None and e.group in lp.sweeps:
        sweep = lp.sweeps[e.group]
        basis["sweep"] = [sweep.method, sweep.metric, sweep.rungs, sweep.eta]
    teacher = p.distill.teacher.checkpoint if p.distill else ""
    if teacher.startswith("experiment:"):
        other = lp.experiments.get(teacher.split(":", 1)[1])
        basis["teacher"] = other.project.model_dump(mode="json") if other else None
    return hashlib.sha256(json.dumps(basis, sort_keys=True, default=str).encode()).hexdigest()


def plan_from(lp, compiled, reused: BuildPlan | None = None,
              deps: list[str] | None = None) -> BuildPlan:
    """The plan of `lp`: experiments in `compiled` from their compile, the others from
    `reused` (a previous plan whose entries for them are current)."""
    experiments = {}
    settings: dict[str, dict[str, Any]] = {}
    for name in lp.experiments:
        if name not in compiled:
            old = reused.experiments[name]  # type: ignore[union-attr]
            experiments[name] = old
            settings[old.settings] = reused.settings[old.settings]  # type: ignore[union-attr]
            continue
        c = compiled[name]
        p = lp.experiments[name].project
        job = JobSettings.dump(p)
        settings_key = hashlib.sha256(json.dumps(job, sort_keys=True).encode()).hexdigest()[:12]
        settings[settings_key] = job
        experiments[name] = ExperimentPlan(
            name=name, results=p.results, source_action=c.source_action,
            use_checkpoint=str(p.train.use_checkpoint), best_metric=p.train.best_metric,
            specs={a: SpecEntry.of(s.path, s.text, s.data) for a, s in c.specs.items()},
            files=dict(c.files), skipped=dict(c.skipped),
            resources=resources_of(p.hardware),
            upload=p.upload.model_dump() if p.upload else None,
            group=lp.experiments[name].group or name, seed=lp.experiments[name].seed,
            trial=lp.experiments[name].trial, parity=p.export.parity,
            halving=bool(lp.experiments[name].trial is not None and lp.sweeps[
                lp.experiments[name].group].rungs),
            parity_tolerance=p.export.parity_tolerance,
            checks=check_keys(p, lp.base), images=converted_images(p), settings=settings_key,
            class_names={str(k): v for k, v in p.dataset.classes.items()})
    seen: dict[DataSource, None] = {}  # in order, once each (a thousand trials share them)
    for exp in lp.experiments.values():
        seen.update(dict.fromkeys(dataset_sources(exp.project, lp.base).values()))
    sources = [asdict(source) for source in seen]
    return BuildPlan(root=str(lp.root), project_file=lp.path.name, results=lp.base.results,
                     experiments=experiments, deps=deps if deps is not None else
                     _code_deps() + _data_deps(lp),
                     name=lp.base.name, sources=sources,
                     storage=lp.base.storage.model_dump(),
                     cache=lp.base.cache.model_dump() if lp.base.cache else None,
                     sweeps={n: asdict(sw) for n, sw in lp.sweeps.items()}, settings=settings)


def _deps_key(deps: list[str]) -> str:
    return hashlib.sha256(json.dumps([_stat_key(Path(d)) for d in deps]).encode()).hexdigest()


def _compile(project: Path, previous: dict[str, Any] | None) -> tuple[BuildPlan, dict[str, str]]:
    """Compile what changed: experiments whose key matches the previous plan's are reused."""
    from .compile import compile_project
    from .load import load_project

    lp = load_project(project)
    deps = _code_deps() + _data_deps(lp)
    deps_key = _deps_key(deps)
    keys = {name: experiment_key(lp, name, deps_key) for name in lp.experiments}
    old_plan, old_keys = None, {}
    if previous is not None:
        try:
            # read now: the new cache needs the reused experiments' texts, and a texts file
            # that is not trusted means compiling everything once, not twice
            texts = _read_texts(project, previous["texts"])
            if texts is not None:
                old_plan = _from_json(previous, lambda: texts)
                old_keys = previous.get("experiment_keys") or {}
        except (KeyError, TypeError, ValueError):
            old_plan, old_keys = None, {}
    fresh = [name for name in lp.experiments
             if old_plan is None or old_keys.get(name) != keys[name]
             or name not in old_plan.experiments]
    compiled = compile_project(lp, fresh) if fresh else {}
    return plan_from(lp, compiled, old_plan, deps), keys


def _from_json(raw: dict[str, Any], texts: Callable[[], dict[str, str]]) -> BuildPlan:
    exps = {}
    for name, e in raw["experiments"].items():
        e = dict(e)
        e["specs"] = {a: SpecEntry(s["path"], s["data"], s["size"], _texts=texts)
                      for a, s in e["specs"].items()}
        exps[name] = ExperimentPlan(**e)
    return BuildPlan(raw["root"], raw["project_file"], raw["results"], exps, raw["deps"],
                     raw["name"], raw["sources"], raw["storage"], raw.get("cache"),
                     raw["sweeps"], raw["settings"])


def _cache_path(project: Path) -> Path:
    return project.parent / ".snakemake" / CACHE_NAME


def build_in_progress(*folders: Path) -> bool:
    """A Snakemake build holds the lock of one of these working folders (or was killed
    holding it, until `snakemake --unlock`): Snakemake keeps its lock files in
    `.snakemake/locks` for as long as a build runs."""
    return any(next((folder / ".snakemake" / "locks").glob("*.lock"), None) is not None
               for folder in folders)


def _texts_path(project: Path) -> Path:
    return project.parent / ".snakemake" / TEXTS_NAME


def _read_texts(project: Path, digest: str) -> dict[str, str] | None:
    """The cached specs' texts (path -> text), or None for a texts file that is not the one
    the cache was written with (removed, edited, from another copy)."""
    try:
        blob = _texts_path(project).read_bytes()
        if hashlib.sha256(blob).hexdigest() == digest:
            return json.loads(blob)
    except (OSError, ValueError):
        pass
    return None


def _texts_loader(project: Path, digest: str) -> Callable[[], dict[str, str]]:
    """The cached specs' texts, read once, when first asked for; if the texts file is not
    trusted (`_read_texts`), the project is compiled again for them."""
    texts: dict[str, str] = {}

    def load() -> dict[str, str]:
        if not texts:
            read = _read_texts(project, digest)
            texts.update(read if read is not None else _spec_texts(_compile(project, None)[0]))
        return texts

    return load


def _spec_texts(plan: BuildPlan) -> dict[str, str]:
    return {s.path: s.text for e in plan.experiments.values() for s in e.specs.values()}


def _cached(project: Path) -> tuple[BuildPlan | None, dict[str, Any] | None, int | None]:
    """(the cached plan if it is current with project.yaml and what it read, the cache's
    record (also when stale: its experiments may be reused), when it was written)."""
    cache = _cache_path(project)
    try:
        raw = json.loads(cache.read_text())
        if raw.get("format") == PLAN_FORMAT and raw.get("root") == str(project.parent):
            if raw.get("key") == fingerprint(project, raw["deps"]):
                return (_from_json(raw, _texts_loader(project, raw["texts"])), raw,
                        cache.stat().st_mtime_ns)
            return None, raw, None
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None, None, None


def job_plan(project: Path) -> BuildPlan:
    """The plan a build's job runs with: the build's own, as its Snakemake's parse cached it.
    A job never compiles or writes a spec.  While the build runs, that plan stands even if
    project.yaml was edited since (nothing rewrites it then: rules/common.smk), so its jobs
    run what its DAG planned and the edit makes them stale afterwards; with no build running
    (a job run by hand), a plan that is not current with project.yaml is refused with what
    to run."""
    project = project.resolve()
    plan, raw, _ = _cached(project)
    if plan is None and raw is not None and build_in_progress(project.parent, Path.cwd()):
        plan = _from_json(raw, _texts_loader(project, raw["texts"]))
    if plan is None:
        raise StalePlan(f"the build plan of {project} is not current (project.yaml or a file "
                        "it reads changed since the build planned it, or no build planned it "
                        "yet): this job is not run; run `snakemake` (or `snakemake -n`) in "
                        f"{project.parent} to plan the build again")
    return plan


def load_plan(project: Path, *, write: bool = True) -> BuildPlan:
    """The build plan for `project`, written specs (and the links to local data they name)
    included; compiles only when needed.  What Snakemake's parse and the commands that plan
    (`taomake compile`, `status`, `explain`) use; jobs use `job_plan`.
    `write=False` (`snakemake --lint`, `status`) leaves the plan cache and the specs as they
    are.

    Raises the compiler's ProjectError (exit 2) for an invalid project."""
    project = project.resolve()
    cache = _cache_path(project)
    plan, previous, cached_at = _cached(project)
    keys = None
    if plan is None:
        plan, keys = _compile(project, previous)
    if not write:
        return plan
    root = Path(plan.root)
    for source in plan.data_sources():  # where the specs name local data: links to it
        if not source.staged:
            link_local_source(root, source.uri, source.target(plan.results))
    # On a cache hit a spec untouched since the cache was written is not read again (5000
    # reads in a 1000-trial sweep); the cache is written after the specs, so that holds.
    for e in plan.experiments.values():
        for spec in e.specs.values():
            if not untouched_since(root / spec.path, spec.size, cached_at):
                write_if_changed(root / spec.path, spec.text, durable=False)
        settle_spec_times(root, e.layout, e.specs)
        for rel, content in e.files.items():
            write_if_changed(root / rel, content, unchanged_since=cached_at, durable=False)
    if keys is not None:  # the texts first: the cache names them by their digest
        texts = json.dumps(_spec_texts(plan), sort_keys=True).encode()
        atomic_write(_texts_path(project), texts, durable=False)
        record = {"format": PLAN_FORMAT, "key": fingerprint(project, plan.deps),
                  "experiment_keys": keys, "texts": hashlib.sha256(texts).hexdigest(),
                  **_fields(plan)}
        atomic_write(cache, json.dumps(record, sort_keys=True, default=_fields) + "\n")
    return plan


def _fields(obj: Any) -> dict[str, Any]:
    """A dataclass's fields for json.dumps, without `asdict`'s deep copy of every spec's data
    (a fifth of writing a 200-experiment plan)."""
    if isinstance(obj, SpecEntry):  # its text goes to the texts file
        return {"path": obj.path, "data": obj.data, "size": obj.size}
    if not is_dataclass(obj) or isinstance(obj, type):
        raise TypeError(f"{type(obj).__name__} is not JSON serializable")
    return {f.name: getattr(obj, f.name) for f in fields(obj)}


if __name__ == "__main__":  # `python -m taomake.compiler.plan project.yaml`: print the plan summary
    p = load_plan(Path(sys.argv[1] if len(sys.argv) > 1 else "project.yaml"))
    for e in p.experiments.values():
        print(e.name, sorted(e.specs), os.path.join(p.root, e.layout.root))
