"""Where the installed taomake keeps its Snakemake workflow and profiles, and what a user's
own workflow needs to use it.

A project folder made by `taomake init` has a two-line Snakefile that includes the installed
workflow (so `snakemake --cores all` works there as written), and copies of the profiles
(`--profile profiles/slurm`), which are the user's to edit.  A paper pipeline loads the
workflow as a Snakemake module (docs/module.md):

    module taomake:
        snakefile: taomake.workflow.snakefile()
        config: {"project": "detector/project.yaml"}
        prefix: "detector"

with `onstart: taomake.workflow.on_start(workflow, "detector/project.yaml")` (Snakemake runs
only the main Snakefile's onstart).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from taomake.compiler.files import atomic_write
from taomake.compiler.package_data import data_dir
from taomake.compiler.package_data import snakefile as _snakefile

PROFILES = ("workstation", "slurm")

PROJECT_SNAKEFILE = """\
# taomake's workflow, installed with the taomake package: `snakemake --cores all` builds
# everything {project} enables (`--profile profiles/slurm` on a SLURM cluster).
from taomake.workflow import snakefile

config.setdefault("project", {project_literal})


include: snakefile()


# an included file's default target does not carry over: build what taomake's `all` builds
rule build:
    default_target: True
    input:
        rules.all.input,
"""


def snakefile() -> str:
    """The installed workflow's Snakefile (a str: what Snakemake's include/module take)."""
    return str(_snakefile())


def module_prefix_error(root: str | Path, cwd: Path, prefix: str | None) -> str | None:
    """Why a module declaration cannot work, or None.  taomake's paths are relative to the
    project folder; inside a module Snakemake's working directory is the user's, so the
    module's `prefix:` must name the project folder relative to it (and nothing when the
    project is in that very folder)."""
    folder = os.path.relpath(root, cwd)
    have = (prefix or "").rstrip("/") or "."
    if folder.startswith(".."):
        return (f"module taomake: the project folder {root} is outside the workflow's working "
                f"directory {cwd}; move it inside (Snakemake's module prefix cannot go up)")
    if os.path.normpath(have) == folder:
        return None
    want = "no prefix:" if folder == "." else f'prefix: "{folder}"'
    return (f"module taomake: the project {root} is read from {folder}/ but the module's "
            f"prefix is {prefix!r}; declare `{want}` in the module (taomake's paths are "
            f"relative to the project folder)")


def on_start(workflow, project: str) -> None:
    """What taomake does before the first job (its Snakefile's `onstart`; a module user's
    Snakefile calls it from its own `onstart`): a stop (SIGTERM, SIGINT, SIGHUP) cancels
    every SLURM job of the run or stops the running jobs, then
    `taomake preflight`, whose failure stops the build (exit 1) before any job."""
    from taomake.compiler.errors import TaomakeError
    from taomake.preflight import before_build
    from taomake.snakemake_support import install_signal_handling

    executor = getattr(getattr(workflow, "executor_plugin", None), "name", None)
    install_signal_handling(executor, workflow, os.path.abspath(project))
    try:
        before_build(os.path.abspath(project), executor)
    except TaomakeError as exc:
        sys.stderr.write(f"error: {exc.render()}\n")
        sys.exit(exc.exit_code)


def profile(name: str) -> Path:
    """An installed profile folder (`workstation`, `slurm`)."""
    folder = data_dir("profiles") / name
    if not (folder / "config.yaml").is_file():
        raise FileNotFoundError(f"no profile {name!r} in {folder.parent} "
                                f"(have: {', '.join(PROFILES)})")
    return folder


def write_project_files(project: Path, *, force: bool = False) -> list[Path]:
    """The Snakefile and profiles/ the folder of `project` needs to build with the installed
    taomake; existing files are kept unless `force`.  Returns what was written."""
    import json

    folder = project.parent
    written = []
    target = folder / "Snakefile"
    if force or not target.exists():
        atomic_write(target, PROJECT_SNAKEFILE.format(
            project=project.name, project_literal=json.dumps(project.name)))
        written.append(target)
    for name in PROFILES:
        dest = folder / "profiles" / name / "config.yaml"
        if force or not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(dest, (profile(name) / "config.yaml").read_text(encoding="utf-8"))
            written.append(dest)
    return written


__all__ = ["PROFILES", "module_prefix_error", "on_start", "profile", "snakefile",
           "write_project_files"]
