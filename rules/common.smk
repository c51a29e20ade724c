# Shared helpers.  The build plan (compiled specs, paths, per-experiment settings) comes from
# taomake.compiler.plan: compiled and validated when project.yaml or anything it reads changed, read
# from a small cache otherwise.  Specs are written only when their content changes, so file
# mtimes tell Snakemake the truth.
import gc
import os
import re
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

from taomake.compiler.actions import ACTIONS, REPORTED, TRAININGS
from taomake.compiler.errors import TaomakeError
from taomake.compiler.layout import NAME_RE, Layout, Shared, dataset_paths
from taomake.compiler.plan import build_in_progress, load_plan
from taomake.snakemake_support import forward_graceful_stop

# A graceful stop of this Snakemake (SIGTERM, here or in a cluster job's own Snakemake)
# stops its running jobs too
forward_graceful_stop()


# `snakemake --lint` reads the rules and builds no DAG (Snakemake makes its workflow with
# check_envvars=False for that alone) and `taomake status` only reads (it passes
# taomake_read_only): neither writes a file nor reaches a data source.
READ_ONLY = not workflow.check_envvars or bool(config.get("taomake_read_only"))
PROJECT_FILE = Path(config.get("project", "project.yaml")).resolve()
# A build holds this folder (Snakemake's lock): this parse (a dry run, a second build the lock
# will refuse, a cluster job's own Snakemake) must not rewrite the specs and data stamps that
# build is judged by, or the build's jobs would be recorded as built from edits made while
# they ran.  Edits of project.yaml take effect in the next build.
HELD = build_in_progress(Path.cwd(), PROJECT_FILE.parent)
if HELD and not READ_ONLY and not workflow.remote_exec:
    sys.stderr.write("taomake: a build is running in this folder (Snakemake's lock): specs "
                     "and data stamps stay as it planned them, edits of project.yaml take "
                     "effect in the next build (a build killed hard leaves the lock: "
                     "`snakemake --unlock`)\n")


def _load(project_file):
    try:
        return load_plan(project_file, write=not (READ_ONLY or HELD))
    except TaomakeError as exc:  # a user error: message, exit 2, no traceback
        sys.stderr.write(f"error: {exc.render()}\n")
        sys.exit(exc.exit_code)


PLAN = _load(PROJECT_FILE)
EXPS = PLAN.experiments
# Everything alive now (Snakemake's modules, the plan: a 1000-trial sweep's is ~10^6 objects)
# lives as long as this process: kept out of the cyclic garbage collector, which otherwise
# walks all of it on each of its many passes while Snakemake builds the DAG (a fifth of a
# cached 1000-trial `snakemake -n`: benchmarks/README.md, sweep_scale.py).
gc.freeze()

# Every path below is relative to the project folder.  Run on its own (or included), the
# workflow works there; loaded as a module of the user's workflow it must not move the
# user's rules, so the module's `prefix:` points Snakemake at the project folder instead.
if workflow.modifier.is_main_snakefile():

    workdir: PLAN.root

else:
    from taomake.workflow import module_prefix_error

    _problem = module_prefix_error(PLAN.root, Path.cwd(), workflow.modifier.path_modifier.prefix)
    if _problem:
        sys.stderr.write(f"error: {_problem}\n")
        sys.exit(2)
PREFIX = os.path.join(os.path.relpath(PLAN.root), "") if Path.cwd() != Path(PLAN.root) else ""

if all("gen_trt_engine" in e.skipped for e in EXPS.values()):
    sys.stderr.write("taomake: TensorRT targets left out: "
                     f"{next(iter(EXPS.values())).skipped['gen_trt_engine']}\n")

R = PLAN.results
L = Layout(R, "{exp}")  # every experiment's paths, as rule patterns (the `exp` wildcard)
S = Layout(R, "{sweep}")  # a sweep's own files (rules/sweep.smk)
SH = Shared(R)  # what experiments share: data, checks, runtime markers, the report
PROJECT = PREFIX + PLAN.project_file  # jobs run in Snakemake's working directory
SWEEPS = PLAN.sweeps  # swept experiment -> trials (experiments of their own), metric
DATA_SOURCE_OF = PLAN.source_of()  # path a spec reads -> its data source
STAGED_KEYS = sorted({s.key for s in DATA_SOURCE_OF.values() if s.staged})
# dataset check key -> (an experiment it checks for, split role): experiments, seeds and
# trials reading the same data with the same classes share one check
CHECKS = {key: (e.name, role) for e in reversed(list(EXPS.values()))
          for role, key in e.checks.items()}


def refresh_data_stamps():
    """Record each data source's content identity before the DAG is built (the plan, loaded
    above, already pointed the local sources' links at them); a stamp is rewritten only when
    the content changed, so jobs rerun exactly when their data did, wherever it lies now.
    Cluster jobs skip it: the main Snakemake process already looked; so do `--lint` and a
    parse beside a running build (HELD)."""
    if workflow.remote_exec or READ_ONLY or HELD:
        return
    from taomake.data.archive import Limits
    from taomake.data.commands import store_of
    from taomake.data.identity import refresh_stamps

    try:
        changed = refresh_stamps(Path(PLAN.root), R, PLAN.data_sources(), store_of(PLAN),
                                 Limits.of(PLAN.storage))
    except TaomakeError as exc:
        sys.stderr.write(f"error: {exc.render()}\n")
        sys.exit(exc.exit_code)
    for source in changed:
        sys.stderr.write(f"taomake: data source recorded: {source.uri}\n")


refresh_data_stamps()


envvars:
    "PATH",


# Jobs call the `taomake` installed next to this Python, whatever PATH the caller had.
os.environ.update(PATH=os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]]))


# `exp` is any experiment-shaped name, not the list of experiments: Snakemake copies a
# constraint into every output pattern and rescans it on each wildcard substitution, so a
# list of 10 000 trial names would make building the DAG quadratic in the trials.  Names
# starting with `_` or `.` (the shared data and records folders) never match.
EXP_NAME = NAME_RE.removeprefix("^").removesuffix("$")


wildcard_constraints:
    exp=EXP_NAME,
    source="train|distill",
    source_key="|".join(map(re.escape, STAGED_KEYS)) or "(?!)",  # (?!) matches nothing
    check="|".join(map(re.escape, CHECKS)) or "(?!)",
    sweep="|".join(map(re.escape, SWEEPS)) or "(?!)",
    rung=r"\d+",


def exps_with(action):
    """The `exp` wildcard of an action's rule: experiments that have the action, so a target
    of one without it (no test split: no evaluate) is "no rule to make it", not a crash.
    Written the short way round: any name (all have it), the names that have it, or any name
    but those that lack it (every path has a `/` after the experiment)."""
    having = [name for name, e in EXPS.items() if action in e.specs]
    lacking = [name for name, e in EXPS.items() if action not in e.specs]
    if not lacking:
        return EXP_NAME
    if len(having) <= len(lacking):
        return "|".join(map(re.escape, having)) or "(?!)"  # (?!) matches nothing
    return f"(?!(?:{'|'.join(map(re.escape, lacking))})/){EXP_NAME}"


def experiment(w):
    """The experiment a job's `exp` wildcard names; a target naming no experiment of the
    project (a typo on the command line) stops with the list of names."""
    exp = EXPS.get(w.exp)
    if exp is None:
        raise WorkflowError(f"{w.exp!r} is not an experiment of {PLAN.project_file}; "
                            f"experiments: {', '.join(sorted(EXPS)[:20])}"
                            + (" ..." if len(EXPS) > 20 else ""))
    return exp


def layout(exp):
    return EXPS[exp].layout


def model_of(exp):
    """The selected checkpoint evaluate/export/inference consume."""
    return layout(exp).model(EXPS[exp].source_action)


def data_paths(exp, action):
    """What an action's data is in the DAG: for each annotation file and image folder its
    spec reads, the source's stamp (local, content-hashed) or staging marker (S3, archives)."""
    paths = [DATA_SOURCE_OF[path].dependency(R) if path in DATA_SOURCE_OF else path
             for path in dataset_paths(EXPS[exp].specs[action].data)
             if path in DATA_SOURCE_OF or not os.path.isabs(path)]
    return sorted(set(paths))


def data_inputs(action):
    return lambda w: data_paths(w.exp, action)


def tao_inputs(action, checks=(), model=False, gate=None):
    """What each TAO job reads, for `unpack()`: its spec, the runtime marker, its data,
    the dataset checks of `checks` roles, the selected checkpoint (`model`) and the extra
    files `gate(w)` names.  A single function, not one per input, since Snakemake calls
    input functions per job, which counts in sweeps of a thousand trials."""
    flavor = ACTIONS[action].flavor

    def inputs(w):
        exp = experiment(w)
        marker = SH.runtime_marker(RUNTIME_OF[w.exp], flavor)
        named = {"spec": exp.specs[action].path, "image": ancient(marker),
                 "data": data_paths(w.exp, action)}
        if checks:
            named["checked"] = [SH.data_check(exp.checks[role]) for role in checks
                                if role in exp.checks]
        if model:
            named["model"] = model_of(w.exp)
        if gate:
            named["gate"] = gate(w)
        return named

    return inputs


def role_inputs(w):
    """Data of the split role a check covers (train/val: the training spec's, test: the
    evaluate spec's)."""
    exp, role = CHECKS[w.check]
    action = "evaluate" if role == "test" else EXPS[exp].source_action
    paths = dataset_paths(EXPS[exp].specs[action].data, role)
    return {"data": sorted({DATA_SOURCE_OF[p].dependency(R) for p in paths
                            if p in DATA_SOURCE_OF})}


def quantized_model(action):
    """The quantized checkpoint a quantized_* spec loads (quantize's output)."""

    def model(w):
        spec = EXPS[w.exp].specs[action]
        return spec.data[ACTIONS[action].subcommand]["checkpoint"]

    return model


def engine_of(w):
    return EXPS[w.exp].specs["gen_trt_engine"].data["gen_trt_engine"]["trt_engine"]


def teacher_inputs(w):
    ref = EXPS[w.exp].specs["distill"].data["distill"]["pretrained_teacher_model_path"]
    return [ref] if ref else []


def detections_inputs(w):
    """The inference labels and, when the export is checked, the ONNX per-class scores."""
    e = experiment(w)
    out = {"inference": e.layout.inference_summary("inference")}
    if "export" in e.specs and e.parity:
        out["parity"] = e.layout.parity
    return out


def upload_files(w):
    """The files an upload job pushes (the artifacts `upload.artifacts` names)."""
    from taomake.data.upload import artifact_files

    exp = experiment(w)
    return [p for files in artifact_files(exp, exp.upload["artifacts"]).values() for p in files]


def report_inputs():
    """What the report reads (training, evaluation, export, engines; not inference, so new
    detections never redraw it) and each sweep's winner."""
    out = [path for e in EXPS.values() for action, paths in e.artifacts().items()
           if action in REPORTED for path in paths]
    return out + [winner(name) for name in SWEEPS]


def winner(sweep):
    return Layout(R, sweep).sweep_winner


def all_targets():
    """Every artifact, each sweep's winner, upload receipts and the report: the default
    target."""
    out = [path for e in EXPS.values() for paths in e.artifacts().values() for path in paths]
    out += [winner(name) for name in SWEEPS]
    return out + [e.layout.upload_receipt for e in EXPS.values()
                  if e.upload] + [SH.report_summary]


# (a module's onstart is not run by Snakemake: README shows the line a user's Snakefile adds)
onstart:
    from taomake.workflow import on_start

    on_start(workflow, PROJECT)


# Container images (apptainer .sif / pyxis .sqsh), converted once by rules/images.smk before
# any TAO job; {} unless an experiment's runner is apptainer or pyxis.
# A runtime marker per experiment, shared by a sweep's trials (they differ in TAO keys only,
# never in runner or image): a thousand-trial sweep needs one marker job, not a thousand.
RUNTIME_OF = {name: (e.group if e.trial is not None else name) for name, e in EXPS.items()}
RUNTIME_IMAGES = {RUNTIME_OF[name]: e.images for name, e in EXPS.items() if e.images}


def runtime_image(w):
    """The converted image behind a runtime marker, or [] (local/docker runners)."""
    entry = RUNTIME_IMAGES.get(w.runtime, {}).get(w.flavor)
    return [entry[0]] if entry else []


IMAGE_FILES = {path: ref for images in RUNTIME_IMAGES.values()
               for path, ref in images.values()}


def image_conversion(w):
    """The runner's conversion of one image into <file>.part (apptainer build, enroot
    import: rules/images.smk)."""
    import shlex

    from taomake.runners.registry import kind_of_image_file, runner_module

    convert = runner_module(kind_of_image_file(w.image)).conversion_argv
    return shlex.join(convert(IMAGE_FILES[w.image], f"{PREFIX}{w.image}.part"))


# Every core of this host: what a job that should run alone asks for (Snakemake lowers a
# rule's threads to `--cores` itself, so `--cores 1` still runs everything)
CORES = os.cpu_count() or 1


def tao_threads(action):
    """CPU threads of a TAO job.  Snakemake gives a job's shell OMP_NUM_THREADS = threads and
    `taomake run` passes it on to TAO on CPU (torch follows it), so jobs never share a core.
    On CPU, a project's only training takes every core `--cores` allows, up to
    `hardware.slurm.cpus_per_gpu` (the CPUs a job is given on CPU): it is the slowest step
    and runs alone.  Several trainings (seeds, sweeps, a teacher and its student) take one
    core each and run side by side: a short training is mostly TAO's single-threaded start-up,
    which would leave the other cores idle.  Every other action takes one core (mostly
    start-up too); on GPU, 1 (the GPU does the work)."""
    trainings = sum(1 for e in EXPS.values() for a in TRAININGS if a in e.specs)
    if not ACTIONS[action].trains or trainings > 1:
        return 1

    def of(exp):
        r = EXPS[exp].resources.get(action, {})
        return 1 if "gres" in r else max(1, min(CORES, r.get("cpus_per_task", 1)))

    values = {of(exp) for exp in EXPS}
    if len(values) == 1:
        return values.pop()
    return lambda w: of(w.exp)


def resources_for(action):
    """Snakemake resources of a TAO action, from project.yaml `hardware` (+ `hardware.slurm`)
    via the plan: used with `--profile profiles/slurm` (GPUs, CPUs, memory, wall time,
    partition, account, constraint, requeue).  Resources are not rerun triggers and do not
    touch specs.  A value every experiment shares is given as is; one that differs is a
    callable (Snakemake calls those per job, which costs time in large sweeps)."""
    neutral = {"gres": "", "slurm_partition": "", "slurm_account": "", "constraint": "",
               "slurm_extra": ""}  # absent (e.g. no GPU on CPU projects)
    # resources follow `hardware` alone: experiments with the same job settings (a sweep's
    # trials) have the same, so one of each is enough to tell whether they all agree
    kinds = list({e.settings: name for name, e in EXPS.items()}.values())
    keys = sorted({k for exp in kinds for k in EXPS[exp].resources.get(action, {})})

    def value_of(exp, key):
        value = EXPS[exp].resources.get(action, {}).get(key)
        return neutral.get(key, 0) if value is None else value

    def one(key):
        values = {repr(value_of(exp, key)) for exp in kinds}
        if len(values) == 1:
            return value_of(kinds[0], key)

        def get(wildcards, attempt=1):
            return value_of(wildcards.exp, key)

        return get

    return {key: one(key) for key in keys}


# --------------------------------------------------------------------------- sweeps
def sweep_of(exp):
    return SWEEPS.get(EXPS[exp].group, {})

def rung_survivors(sweep, rung):
    """Trials that train in `rung`: all in rung 0, later those the previous decision kept."""
    import json

    if rung == 0:
        return list(SWEEPS[sweep]["trials"])
    with open(checkpoints.sweep_rung.get(sweep=sweep, rung=str(rung - 1)).output.decision) as f:
        return json.load(f)["promoted"]

def rung_inputs(w):
    """A rung (r > 0) of a trial waits for its own previous rung (so it resumes from those
    checkpoints) and for the decision that promoted it."""
    rung, group = int(w.rung), EXPS[w.exp].group
    if rung == 0:
        return []
    return [layout(w.exp).rung_record(rung - 1),
            Layout(R, group).sweep_rung(rung - 1)]

def sweep_finalists(w):
    """The training curves the winner is chosen from (a checkpoint is selected for the
    winner only, when its evaluation asks for it)."""
    sweep = SWEEPS[w.sweep]
    trials = (rung_survivors(w.sweep, len(sweep["rungs"]) - 1) if sweep["rungs"]
              else list(sweep["trials"]))
    return [layout(t).curve("train") for t in trials]

def halving_gate(w):
    """The full training of a successive-halving trial starts after the last decision
    (and resumes from the trial's last rung)."""
    sweep = sweep_of(w.exp)
    if not EXPS[w.exp].halving:
        return []
    last = len(sweep["rungs"]) - 2
    return [layout(w.exp).rung_record(last),
            Layout(R, EXPS[w.exp].group).sweep_rung(last)]

def winner_artifacts(w):
    """The winning trial's evaluation/export/inference (known once best.json exists)."""
    import json

    best = checkpoints.sweep_best.get(sweep=w.sweep).output.best
    with open(best) as f:
        winner = json.load(f)["winner"]
    return [p for paths in EXPS[winner].all_artifacts().values() for p in paths]
