"""Find the templates (`references/`) and TAO schemas (`schemas/`) shipped with taomake."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

_PKG = Path(__file__).resolve().parent
REPO_ROOT = _PKG.parent


def data_dir(name: str) -> Path:
    """A folder shipped with taomake (references, schemas, rules, profiles, ...).  A source
    checkout (editable install) has them at the top level; a wheel under compiler/_data/
    (looked at first: an installed wheel's parent is site-packages, where another
    distribution may well have put a `schemas/` or `rules/` folder)."""
    for candidate in (_PKG / "_data" / name, REPO_ROOT / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"taomake installation is incomplete: no {name}/ folder found")


def snakefile() -> Path:
    for candidate in (_PKG / "_data" / "Snakefile", REPO_ROOT / "Snakefile"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("taomake installation is incomplete: no Snakefile found")


def references_dir() -> Path:
    return data_dir("references")


def schemas_dir() -> Path:
    return data_dir("schemas")


@cache
def action_schema(action: str) -> dict[str, Any]:
    return json.loads((schemas_dir() / f"{action}.schema.json").read_text(encoding="utf-8"))
