"""taomake: build NVIDIA TAO RT-DETR pipelines from one project.yaml.

The pure compiler (project.yaml -> specs) is `taomake.compiler`.  The wheel installs it there
(pyproject.toml maps the repository's top-level `compiler/` folder to `taomake/compiler/`), so
an installed taomake owns one top-level import name; a source checkout registers the same name
for its `compiler/` folder below.  Nothing imports a top-level `compiler` (another project's
may be installed next to taomake; tests/func/test_installed.py checks both).
"""

import sys as _sys
from importlib import util as _util
from pathlib import Path as _Path

__version__ = "0.1.0"

_here = _Path(__file__).resolve().parent
if not (_here / "compiler").is_dir() and (_here.parent / "compiler" / "__init__.py").is_file():
    _spec = _util.spec_from_file_location(
        "taomake.compiler", _here.parent / "compiler" / "__init__.py",
        submodule_search_locations=[str(_here.parent / "compiler")])
    compiler = _util.module_from_spec(_spec)
    _sys.modules[_spec.name] = compiler
    _spec.loader.exec_module(compiler)
