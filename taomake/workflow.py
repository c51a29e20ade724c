"""Where the installed taomake keeps its Snakemake workflow and profiles.

A project folder made by `taomake init` has a two-line Snakefile that includes the installed
workflow (so `snakemake --cores all` works there as written), and copies of the profiles
(`--profile profiles/slurm`), which are the user's to edit.  A paper pipeline can also load
the workflow as a Snakemake module: `module taomake: snakefile: taomake.workflow.snakefile()`.
"""

from __future__ import annotations

from pathlib import Path

from compiler.files import atomic_write
from compiler.resources import data_dir
from compiler.resources import snakefile as _snakefile

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


__all__ = ["PROFILES", "profile", "snakefile", "write_project_files"]
