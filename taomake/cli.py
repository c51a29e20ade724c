"""`taomake` command line.  Exit codes: 0 ok, 1 a job/check failed, 2 bad input."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from taomake.compiler.actions import ACTIONS
from taomake.compiler.errors import TaomakeError, UsageError, WriteError

from . import __version__

DEFAULT_PROJECT = "project.yaml"


def _experiments(lp, wanted: Sequence[str] | None) -> list[str] | None:
    for name in wanted or ():
        if name not in lp.experiments:
            raise UsageError(f"unknown experiment {name!r}; the project has: "
                             + ", ".join(lp.experiments))
    return list(wanted) if wanted else None


def _print_warnings(compiled) -> None:
    for c in compiled.values():
        for w in c.warnings:
            print(f"warning: {w}", file=sys.stderr)


def cmd_validate(args: argparse.Namespace) -> int:
    from taomake.compiler import compile_project, load_project

    lp = load_project(args.project)
    compiled = compile_project(lp, _experiments(lp, args.experiment))
    _print_warnings(compiled)
    n = sum(len(c.specs) for c in compiled.values())
    print(f"{args.project}: valid ({len(compiled)} experiment(s), {n} specs)")
    return 0


def cmd_compile(args: argparse.Namespace) -> int:
    from taomake.compiler import compile_project, load_project, write_experiment

    lp = load_project(args.project)
    compiled = compile_project(lp, _experiments(lp, args.experiment))
    _print_warnings(compiled)
    for name, c in compiled.items():
        changed = write_experiment(lp.root, c)
        total = len(c.specs) + len(c.files)
        print(f"{name}: {len(changed)} of {total} files written "
              f"({total - len(changed)} unchanged) under {c.layout.root}/specs")
        for rel in changed:
            print(f"  wrote {rel}")
        for action, why in c.skipped.items():
            if args.verbose:
                print(f"  not built: {action} ({why})")
    if not args.experiment:  # the build's plan too, as Snakemake's parse writes it: jobs run
        from taomake.compiler.plan import load_plan  # by hand then find it

        load_plan(Path(args.project).resolve(), write=True)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from taomake.compiler import compile_project, load_project

    lp = load_project(args.project)
    exp = args.experiment or next(iter(lp.experiments))
    compiled = compile_project(lp, _experiments(lp, [exp]))[exp]
    if args.action not in compiled.specs:
        why = compiled.skipped.get(args.action, "unknown action")
        raise UsageError(f"experiment {exp!r} has no {args.action} spec: {why}")
    sys.stdout.write(compiled.specs[args.action].text)
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    from taomake.compiler import compile_project, diff_experiment, load_project

    lp = load_project(args.project)
    compiled = compile_project(lp, _experiments(lp, args.experiment))
    changes = 0
    for c in compiled.values():
        for fd in diff_experiment(lp.root, c):
            if fd.status == "unchanged":
                continue
            changes += 1
            print(f"{fd.status:9} {fd.path}")
            for key in fd.keys:
                print(f"            {key}")
    if not changes:
        print("no spec would change")
    return 1 if (changes and args.exit_code) else 0


def cmd_schemas(args: argparse.Namespace) -> int:
    from .schemas import main as schemas_main

    return schemas_main(args.rest)


def cmd_init(args: argparse.Namespace) -> int:
    import os

    from .init import init_project
    from .workflow import write_project_files

    done = init_project(Path(args.annotations), Path(args.images) if args.images else None,
                        Path(args.output), force=args.force, preset=args.preset,
                        val_fraction=args.val_fraction, budget_minutes=args.budget_minutes)
    out = done.path
    extra = [] if args.no_snakefile else write_project_files(out, force=args.force)
    print(f"wrote {out}" + "".join(f", {p}" for p in extra))
    print(f"preset {done.preset}: {done.why_preset}")
    for note in done.notes:
        print(f"  {note}")
    folder = out.resolve().parent
    where = "" if folder == Path.cwd().resolve() else f"cd {os.path.relpath(folder)} && "
    if (folder / "Snakefile").is_file():
        print(f"check it with `taomake validate -p {out}`, then build with "
              f"`{where}snakemake --cores all`")
    else:  # --no-snakefile: the user's own workflow loads taomake (docs/module.md)
        rel = os.path.relpath(folder)
        print(f"check it with `taomake validate -p {out}`, then load it in your Snakefile as "
              f"a module (snakefile: taomake.workflow.snakefile(), config: {{\"project\": "
              f"\"{os.path.relpath(out)}\"}}, prefix: \"{rel}\"; docs/module.md)")
    return 0


def cmd_snakefile(args: argparse.Namespace) -> int:
    from .workflow import profile, snakefile

    print(profile(args.profile) if args.profile else snakefile())
    return 0


def cmd_setup(args: argparse.Namespace) -> int:
    if args.what != "tao-cpu":
        raise UsageError(f"unknown setup target {args.what!r}; available: tao-cpu")
    from .tao_cpu.setup import main as setup_main

    return setup_main(args.rest)


def cmd_sample_data(args: argparse.Namespace) -> int:
    from .sample_data import main as sample_main

    return sample_main(args.rest)


def cmd_run(args: argparse.Namespace) -> int:
    from .errors import Interrupted
    from .jobs import run_action

    try:
        run_action(Path(args.project), args.experiment, args.action, Path(args.log),
                   epochs=args.epochs, rung_out=Path(args.rung_out) if args.rung_out else None)
    except Interrupted as exc:
        print(f"taomake: {exc}", file=sys.stderr)
        return 128 + exc.signum
    return 0


def cmd_select(args: argparse.Namespace) -> int:
    from .jobs import select_checkpoint

    select_checkpoint(Path(args.project), args.experiment)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from .overview import print_status

    print_status(Path(args.project))
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from .overview import explain

    print("\n".join(explain(Path(args.project), args.target)))
    return 0


def cmd_preflight(args: argparse.Namespace) -> int:
    from .preflight import main as preflight_main

    return preflight_main(args.project, slurm=args.slurm)


def _plan(args: argparse.Namespace):
    """A job's plan: the build's (compiler.plan.job_plan: refused when stale)."""
    from taomake.compiler.plan import job_plan

    return job_plan(Path(args.project).resolve())


def cmd_parity(args: argparse.Namespace) -> int:
    from .parity import run_parity

    plan = _plan(args)
    exp = plan.experiments.get(args.experiment)
    if exp is None or "evaluate" not in exp.specs or "export" not in exp.specs:
        raise UsageError(f"experiment {args.experiment!r} does not both evaluate and export")
    started, root, out = time.time(), Path(plan.root), Path(args.out)
    onnx = Path(args.onnx).resolve() if args.onnx else root / exp.layout.onnx
    run_parity(root, exp, out, onnx=onnx, tolerance=args.tolerance)
    _record_derived(plan, "onnx_parity", out.parent, [out],
                    [onnx, root / exp.layout.metrics("evaluate")], args, started)
    return 0


def cmd_detections(args: argparse.Namespace) -> int:
    from .detections import markdown, run_detections

    started, plan = time.time(), _plan(args)
    exp = plan.experiments.get(args.experiment)
    if exp is None or not {"evaluate", "inference"} <= set(exp.specs):
        raise UsageError(f"experiment {args.experiment!r} does not both evaluate and infer")
    root, lay = Path(plan.root), exp.layout
    table = run_detections(root, exp)
    print(markdown(table), end="")
    out = root / lay.detections
    files = [root / lay.per_class, root / lay.per_class_table, root / lay.test_grid]
    consumed = [root / exp.layout.inference_summary("inference"), root / exp.layout.parity]
    _record_derived(plan, "detections", out, files, [p for p in consumed if p.exists()], args,
                    started)
    return 0


def _record_derived(plan, step: str, out_dir: Path, artifacts: list[Path],
                    consumed: list[Path], args: argparse.Namespace, started: float) -> None:
    from .provenance import record_derived

    record_derived(Path(plan.root), step, out_dir, artifacts, consumed, args.argv, started)


def cmd_sweep_best(args: argparse.Namespace) -> int:
    from .sweep_ranking import choose_best

    started, plan, out = time.time(), _plan(args), Path(args.out)
    _, read = choose_best(plan, args.sweep, out)
    _record_derived(plan, "sweep_best", out.parent, [out], read, args, started)
    return 0


def cmd_sweep_rung(args: argparse.Namespace) -> int:
    from .sweep_ranking import decide_rung

    started, plan, out = time.time(), _plan(args), Path(args.out)
    _, read = decide_rung(plan, args.sweep, args.rung, out)
    _record_derived(plan, f"sweep_rung{args.rung}", out.parent, [out], read, args, started)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from taomake.compiler.layout import Shared

    from .report import write_report

    started, plan = time.time(), _plan(args)
    files, consumed = write_report(plan, Path(args.out) if args.out else None)
    summary = files[Shared(plan.results).report_summary]
    _record_derived(plan, "report", summary.parent, list(files.values()), consumed, args,
                    started)
    print(summary.read_text(), end="")
    for path in files.values():
        print(f"wrote {path}")
    return 0


def cmd_provenance(args: argparse.Namespace) -> int:
    import json

    from .provenance import find_provenance

    plan = _plan(args)
    print(json.dumps(find_provenance(Path(plan.root), args.artifact), indent=1,
                     sort_keys=True))
    return 0


def cmd_node_env(args: argparse.Namespace) -> int:
    from .runners.multinode import exec_with_task_env

    argv = list(args.rest)
    if argv[:1] == ["--"]:
        argv = argv[1:]
    return exec_with_task_env(argv)


Adder = Callable[..., argparse.ArgumentParser]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="taomake", description="Compile project.yaml into TAO RT-DETR specs and build "
        "them with Snakemake.")
    parser.add_argument("--version", action="version", version=f"taomake {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Callable[[argparse.Namespace], int], help: str,
            project: bool = True, experiments: bool = False) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        if project:
            p.add_argument("-p", "--project", default=DEFAULT_PROJECT,
                           help="project file (default: %(default)s)")
        if experiments:
            p.add_argument("-e", "--experiment", action="append",
                           help="only this experiment (repeatable; default: all)")
        p.set_defaults(func=func)
        return p

    _spec_commands(add)
    _build_commands(add)
    _step_commands(add)
    from .data.commands import add_parser as add_data_parser

    add_data_parser(sub, lambda p: p.add_argument(
        "-p", "--project", default=DEFAULT_PROJECT, help="project file (default: %(default)s)"))
    from .cache.commands import add_parser as add_cache_parser

    add_cache_parser(sub, lambda p: p.add_argument(
        "-p", "--project", default=DEFAULT_PROJECT, help="project file (default: %(default)s)"))
    _tool_commands(add)
    return parser


def _spec_commands(add: Adder) -> None:
    """What project.yaml compiles to."""
    add("validate", cmd_validate, "check project.yaml and every spec it compiles to",
        experiments=True)
    p = add("compile", cmd_compile, "write the specs (only files whose content changed)",
            experiments=True)
    p.add_argument("-v", "--verbose", action="store_true", help="also list skipped actions")
    p = add("show", cmd_show, "print one compiled spec")
    p.add_argument("action", choices=list(ACTIONS), help="which spec")
    p.add_argument("-e", "--experiment", help="experiment (default: the first)")
    p = add("diff", cmd_diff, "list specs that would change, with the differing keys",
            experiments=True)
    p.add_argument("--exit-code", action="store_true", help="exit 1 when something changes")


def _build_commands(add: Adder) -> None:
    """A build's jobs and what people ask of a build."""
    p = add("run", cmd_run, "run one TAO action of one experiment and judge its outputs "
            "(what the build rules call)")
    p.add_argument("action", choices=list(ACTIONS))
    p.add_argument("-e", "--experiment", default="base", help="default: %(default)s")
    p.add_argument("--log", required=True, help="file TAO's output is appended to")
    p.add_argument("--epochs", type=int, help="successive-halving rung: train up to this "
                   "many epochs (resuming), with --rung-out")
    p.add_argument("--rung-out", help="where a rung's curve is written")
    p = add("select", cmd_select, "publish the chosen checkpoint as <train>/model.pth "
            "(train.use_checkpoint)")
    p.add_argument("-e", "--experiment", default="base", help="default: %(default)s")
    add("status", cmd_status, "per experiment: each artifact, up to date or not, key metric")
    p = add("explain", cmd_explain, "why a target is stale, down to the project.yaml keys")
    p.add_argument("target", help="a file under results/, e.g. results/base/export/model.onnx")
    p = add("preflight", cmd_preflight, "check that this machine can run the project's jobs "
            "(runner, images, SLURM, disk, data); exit 1 on a failure")
    p.add_argument("--slurm", action=argparse.BooleanOptionalAction, default=None,
                   help="check the SLURM commands (default: when hardware.slurm.partition "
                   "is set)")
    p = add("provenance", cmd_provenance, "what an artifact was built from: spec hash, image, "
            "data identities, git commit, command, host, times")
    p.add_argument("artifact", help="e.g. results/base/export/model.onnx")


def _step_commands(add: Adder) -> None:
    """taomake's own steps (each a rule's job)."""
    p = add("report", cmd_report, "tables (CSV, Markdown, LaTeX) and plots of every "
            "experiment's results (also the `report` rule)")
    p.add_argument("--out", help="folder (default: <results>/report)")
    p = add("parity", cmd_parity, "ONNX Runtime vs PyTorch test mAP, and ONNX latency "
            "(the `onnx_parity` rule)")
    p.add_argument("-e", "--experiment", default="base", help="default: %(default)s")
    p.add_argument("--out", required=True, help="parity.json to write when within tolerance")
    p.add_argument("--onnx", help="check this ONNX file instead of the experiment's export")
    p.add_argument("--tolerance", type=float,
                   help="largest accepted mAP gap (default: export.parity_tolerance)")
    p = add("detections", cmd_detections, "per-class AP under the class names (PyTorch "
            "inference labels, ONNX Runtime) and a grid of test images (the `detections` rule)")
    p.add_argument("-e", "--experiment", default="base", help="default: %(default)s")
    p = add("sweep-best", cmd_sweep_best, "choose a sweep's winner (the `sweep_best` rule)")
    p.add_argument("--sweep", required=True, help="the swept experiment")
    p.add_argument("--out", required=True, help="best.json to write")
    p = add("sweep-rung", cmd_sweep_rung, "successive halving: promote a rung's best trials "
            "(the `sweep_rung` rule)")
    p.add_argument("--sweep", required=True, help="the swept experiment")
    p.add_argument("--rung", type=int, required=True, help="0, 1, ...")
    p.add_argument("--out", required=True, help="rung decision JSON to write")


def _tool_commands(add: Adder) -> None:
    """Set-up and tools around a project."""
    p = add("schemas", cmd_schemas, "regenerate schemas/ from TAO's config dataclasses",
            project=False)
    p.add_argument("rest", nargs=argparse.REMAINDER, help="options of the generator (--help)")
    p = add("init", cmd_init, "write a starter project.yaml from a COCO annotations file",
            project=False)
    p.add_argument("annotations", help="COCO annotations.json")
    p.add_argument("images", nargs="?", help="image folder (default: images/ beside it)")
    p.add_argument("-o", "--output", default=DEFAULT_PROJECT, help="default: %(default)s")
    p.add_argument("--force", action="store_true", help="overwrite existing files")
    p.add_argument("--preset", choices=["cpu", "gpu"], help="cpu: a tiny model that learns "
                   "on a CPU within --budget-minutes; gpu: TAO's recipe on docker (default: "
                   "gpu when this machine has an NVIDIA GPU and docker, else cpu)")
    p.add_argument("--val-fraction", type=float, default=0.1, help="without a validation "
                   "split beside the training one: this share of the training images, by a "
                   "hash of their id (default: %(default)s)")
    p.add_argument("--budget-minutes", type=float, default=20, help="cpu preset: the "
                   "training's time on this machine, which sets the epochs (default: "
                   "%(default)s)")
    p.add_argument("--no-snakefile", action="store_true",
                   help="write project.yaml only (no Snakefile, no profiles/)")
    p = add("snakefile", cmd_snakefile, "print the installed workflow's Snakefile (for "
            "`snakemake -s` or a `module`), or with --profile a profile folder",
            project=False)
    p.add_argument("--profile", choices=["workstation", "slurm"],
                   help="print this profile's folder instead")
    p = add("setup", cmd_setup, "install a runtime: `taomake setup tao-cpu` makes the CPU "
            "TAO venv", project=False)
    p.add_argument("what", help="tao-cpu")
    p.add_argument("rest", nargs=argparse.REMAINDER, help="options (--help)")
    p = add("sample-data", cmd_sample_data, "generate the synthetic shapes dataset",
            project=False)
    p.add_argument("rest", nargs=argparse.REMAINDER, help="options (--help)")
    p = add("node-env", cmd_node_env, "inside one srun task: set WORLD_SIZE, NUM_GPU_PER_NODE, "
            "MASTER_ADDR/PORT and this task's NODE_RANK, then exec the command after --",
            project=False)
    p.add_argument("rest", nargs=argparse.REMAINDER, help="-- COMMAND ARGS...")


# their options belong to the sub-tool
PASS_THROUGH = {"schemas", "setup", "sample-data", "node-env"}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in PASS_THROUGH and not {"-h", "--help"} & set(argv[1:2]):
        args, rest = parser.parse_known_args(argv[:2] if argv[0] == "setup" else argv[:1])
        args.rest = argv[2:] if argv[0] == "setup" else argv[1:]
    else:
        args = parser.parse_args(argv)
    args.argv = ["taomake", *argv]  # recorded in provenance
    try:
        return args.func(args)
    except TaomakeError as exc:
        print(f"error: {exc.render()}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:  # a write of taomake's own that no WriteError named yet
        if not WriteError.caught(exc):
            raise
        error = WriteError(exc.filename or "a file", exc)
        print(f"error: {error.render()}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
