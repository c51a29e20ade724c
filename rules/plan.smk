# The build's plan and what Snakemake's parse does with it: the plan (compiled specs, paths,
# per-experiment settings) from taomake.compiler.plan, compiled and validated when project.yaml
# or anything it reads changed, read from a small cache otherwise; specs written only when
# their content changes (so mtimes tell Snakemake the truth) and never beside a running build;
# the data sources' identities recorded; the names every other rule file uses.
import gc
import os
import re
import sys
from pathlib import Path

from taomake.compiler.actions import ACTIONS, TRAININGS
from taomake.compiler.errors import TaomakeError
from taomake.compiler.layout import NAME_RE, Layout, Shared
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

# what needs a GPU is left out everywhere (a CPU project): said once, with the reason
_GPU_ONLY = [name for name, a in ACTIONS.items() if a.needs_gpu]
if all(_GPU_ONLY[0] in e.skipped for e in EXPS.values()):
    sys.stderr.write("taomake: TensorRT targets left out: "
                     f"{next(iter(EXPS.values())).skipped[_GPU_ONLY[0]]}\n")

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
    source="|".join(TRAININGS),
    source_key="|".join(map(re.escape, STAGED_KEYS)) or "(?!)",  # (?!) matches nothing
    check="|".join(map(re.escape, CHECKS)) or "(?!)",
    sweep="|".join(map(re.escape, SWEEPS)) or "(?!)",
    rung=r"\d+",


# Container images (apptainer .sif / pyxis .sqsh), converted once by rules/images.smk before
# any TAO job; {} unless an experiment's runner is apptainer or pyxis.
# A runtime marker per experiment, shared by a sweep's trials (they differ in TAO keys only,
# never in runner or image): a thousand-trial sweep needs one marker job, not a thousand.
RUNTIME_OF = {name: (e.group if e.trial is not None else name) for name, e in EXPS.items()}
RUNTIME_IMAGES = {RUNTIME_OF[name]: e.images for name, e in EXPS.items() if e.images}


# (a module's onstart is not run by Snakemake: README shows the line a user's Snakefile adds)
onstart:
    from taomake.workflow import on_start

    on_start(workflow, PROJECT)
