"""`taomake data ...`: stamp, stage, check and upload data sources and artifacts.

The build rules (rules/data.smk) call these; they work the same by hand.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from taomake.compiler.errors import DataError, UsageError
from taomake.compiler.layout import Shared
from taomake.compiler.plan import BuildPlan, job_plan, load_plan

if TYPE_CHECKING:
    from .s3 import S3Store


def store_of(plan: BuildPlan) -> S3Store:
    # imported here: `taomake run` builds this module's parser for every job
    from .s3 import S3Settings, S3Store

    return S3Store(S3Settings.of(plan.storage))


def _sources(plan: BuildPlan, keys: list[str] | None):
    sources = plan.data_sources()
    if not keys:
        return sources
    by_key = {s.key: s for s in sources}
    unknown = [k for k in keys if k not in by_key]
    if unknown:
        raise UsageError(f"unknown data source {', '.join(unknown)}; the project has: "
                         + ", ".join(by_key))
    return [by_key[k] for k in keys]


def cmd_refresh(plan: BuildPlan, args: argparse.Namespace) -> int:
    from .archive import Limits
    from .identity import refresh_stamps

    changed = refresh_stamps(Path(plan.root), plan.results, _sources(plan, args.key),
                             store_of(plan), Limits.of(plan.storage))
    for source in changed:
        print(f"changed: {source.uri}")
    return 0


def cmd_stage(plan: BuildPlan, args: argparse.Namespace) -> int:
    from .archive import Limits
    from .identity import refresh_stamps
    from .stage import Stager

    root = Path(plan.root)
    every = _sources(plan, args.key)
    sources = [s for s in every if s.staged]
    store = store_of(plan)
    if not args.from_stamp:  # by hand: look at the sources now (and link the local ones)
        refresh_stamps(root, plan.results, every, store, Limits.of(plan.storage))
    stager = Stager(root, plan.results, store, Limits.of(plan.storage))
    for source in sources:
        done = stager.stage(source)
        what = "up to date" if done.reused else f"{done.downloaded / 1e6:.1f} MB downloaded"
        print(f"staged {source.uri} -> {source.target(plan.results)} ({what}, "
              f"{done.seconds:.1f} s)", flush=True)
    return 0


def cmd_check(plan: BuildPlan, args: argparse.Namespace) -> int:
    from taomake.compiler import load_project

    from .check import ROLES, check_dataset, write_report
    from .decode import CachedDecoder

    lp = load_project(Path(plan.root) / plan.project_file)
    names = args.experiment or list(lp.experiments)
    unknown = [n for n in names if n not in lp.experiments]
    if unknown:
        raise UsageError(f"unknown experiment {unknown[0]!r}; the project has: "
                         + ", ".join(lp.experiments))
    if not args.from_stamp:  # by hand: make sure staged sources are there
        cmd_stage(plan, argparse.Namespace(key=None, from_stamp=False))
    failed = False
    decoder = CachedDecoder(Path(plan.root) / Shared(plan.results).checks_dir)
    for name in names:
        check = check_dataset(lp.experiments[name].project, name, Path(plan.root), lp.base,
                              roles=tuple(args.split or ROLES), open_images=not args.no_open,
                              decoder=decoder)
        print(check.render(), flush=True)
        if args.json:
            if not check.ok:
                Path(args.json).unlink(missing_ok=True)
            else:
                write_report(check, Path(args.json))
        failed |= not check.ok
    if failed:
        raise DataError("the dataset check failed (errors above)\n"
                        "    fix: correct the files named, then run the build again")
    return 0


def cmd_upload(plan: BuildPlan, args: argparse.Namespace) -> int:
    from .upload import upload_experiment

    exp = plan.experiments.get(args.experiment)
    if exp is None:
        raise UsageError(f"unknown experiment {args.experiment!r}")
    if not exp.upload:
        raise UsageError("project.yaml has no `upload:` section")
    upload_experiment(Path(plan.root), exp, store_of(plan), Path(args.receipt))
    return 0


def add_parser(sub, common) -> None:
    p = sub.add_parser("data", help="stage, check and upload data (what the build rules call)",
                       description="Data sources: stamps, staging (S3, archives), dataset "
                       "checks, artifact upload.")
    common(p)
    dsub = p.add_subparsers(dest="data_command", required=True, metavar="STEP")
    r = dsub.add_parser("refresh", help="record each source's identity (ETag, sha256); "
                        "a source whose identity changed makes its jobs stale")
    r.add_argument("-k", "--key", action="append", help="only this source key")
    r.set_defaults(data_func=cmd_refresh)
    s = dsub.add_parser("stage", help="download/extract s3:// and archived sources into "
                        "results/_data (nothing is fetched when unchanged)")
    s.add_argument("-k", "--key", action="append", help="only this source key")
    s.add_argument("--from-stamp", action="store_true",
                   help="stage the identity recorded at DAG time (build rules)")
    s.set_defaults(data_func=cmd_stage)
    c = dsub.add_parser("check", help="check annotations and images of every split the way "
                        "TAO reads them; counts per class and split")
    c.add_argument("-e", "--experiment", action="append", help="only this experiment")
    c.add_argument("-s", "--split", action="append", choices=["train", "val", "test"],
                   help="only splits of this role (repeatable; default: all)")
    c.add_argument("--json", help="write the report here (only when the check passes)")
    c.add_argument("--no-open", action="store_true", help="do not decode image files")
    c.add_argument("--from-stamp", action="store_true",
                   help="do not stage first (build rules: staging is its own job)")
    c.set_defaults(data_func=cmd_check)
    u = dsub.add_parser("upload", help="push an experiment's artifacts to `upload.to`")
    u.add_argument("-e", "--experiment", default="base", help="default: %(default)s")
    u.add_argument("--receipt", required=True, help="where to write the receipt JSON")
    u.set_defaults(data_func=cmd_upload)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # a rule's job (--from-stamp, upload) runs with the build's plan and never compiles; by
    # hand, the command plans as Snakemake would
    project = Path(args.project).resolve()
    plan = job_plan(project) if getattr(args, "from_stamp", False) or \
        args.data_func is cmd_upload else load_plan(project)
    if not Path(plan.root).is_dir():
        raise DataError(f"project folder {plan.root} is missing")
    return args.data_func(plan, args)

