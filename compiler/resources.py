"""Find the templates (`references/`) and TAO schemas (`schemas/`) shipped with taomake."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

_PKG = Path(__file__).resolve().parent
REPO_ROOT = _PKG.parent


def _find(name: str) -> Path:
    # A source checkout (editable install) has them at the top level; a wheel under _data/.
    for candidate in (REPO_ROOT / name, _PKG / "_data" / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"taomake installation is incomplete: no {name}/ folder found")


def snakefile() -> Path:
    for candidate in (REPO_ROOT / "Snakefile", _PKG / "_data" / "Snakefile"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("taomake installation is incomplete: no Snakefile found")


def references_dir() -> Path:
    return _find("references")


def schemas_dir() -> Path:
    return _find("schemas")


@cache
def action_schema(action: str) -> dict[str, Any]:
    return json.loads((schemas_dir() / f"{action}.schema.json").read_text(encoding="utf-8"))
