"""Pick the runner project.yaml asks for.  Each runner module has `from_settings(runner, root)`,
given the project's `hardware.runner` settings (compiler.hardware.Runner) as they are."""

from __future__ import annotations

from importlib import import_module
from pathlib import Path

from taomake.compiler.errors import UsageError

MODULES = {"local": "local", "docker": "docker", "apptainer": "apptainer", "pyxis": "pyxis"}


def make_runner(hardware, root: Path):
    """The runner `hardware.runner` names, given its settings (compiler.hardware.Hardware)."""
    kind = hardware.runner.kind
    try:
        module = import_module(f"taomake.runners.{MODULES[kind]}")
    except ModuleNotFoundError:
        raise UsageError(f"runner {kind!r} is not available in this taomake installation; "
                         "use hardware.runner.kind: local") from None
    return module.from_settings(hardware.runner, root)


def runner_module(kind: str):
    """The module of a runner kind (its runner, and for image-file runners its converter)."""
    return import_module(f"taomake.runners.{MODULES[kind]}")


def kind_of_image_file(path: str) -> str:
    """The runner kind whose converted image file `path` is (RUNNERS' image_file)."""
    from taomake.compiler.runners import RUNNERS

    return next(kind for kind, r in RUNNERS.items() if r.image_file and path.endswith(
        r.image_file))
