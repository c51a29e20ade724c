"""Write compiled specs atomically, and only when their content changed.

An unchanged spec keeps its mtime, so Snakemake sees nothing new: that is what makes an
edit to a comment, or to one action's settings, rebuild nothing (or only that action).

An edit reverted rebuilds nothing either (`settle_spec_times`).  While a build runs, nothing
rewrites its specs (rules/common.smk: a dry run or a second build leaves them as the running
build planned them), so what a job built from is what the DAG judged it by.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .files import write_if_changed

if TYPE_CHECKING:  # jobs use changed_keys without loading the compiler (Jinja, jsonschema)
    from .compile import CompiledExperiment
    from .layout import Layout


IMAGE_LINE = "# tao image: "  # the spec header's line naming the TAO image (compile.spec_header)


def spec_image(text: str) -> str | None:
    """The TAO image a spec's header names (None: no such line)."""
    return next((line.removeprefix(IMAGE_LINE) for line in text.splitlines()
                 if line.startswith(IMAGE_LINE)), None)


def settle_spec_times(root: Path, layout: Layout, actions: Iterable[str]) -> None:
    """A spec written back to exactly what its action was last built from (an edit
    reverted) gets that build's start time as its mtime (the built record's), older than
    every output: nothing reruns, with or without Snakemake's records.  Costs two stats a
    spec; a spec is read only when it is newer than its last build's start."""
    for action in actions:
        spec, built = root / layout.spec(action), root / layout.built_record(action)
        try:
            spec_ns, built_ns = spec.stat().st_mtime_ns, built.stat().st_mtime_ns
            if spec_ns > built_ns and spec.read_bytes() == built.read_bytes():
                os.utime(spec, ns=(built_ns, built_ns))
        except FileNotFoundError:
            continue  # never built (or no spec): the spec's own time is right


def outputs(compiled: CompiledExperiment) -> dict[str, str]:
    """Every generated file of an experiment: relative path -> content."""
    files = {spec.path: spec.text for spec in compiled.specs.values()}
    files.update(compiled.files)
    return files


def write_experiment(root: Path, compiled: CompiledExperiment) -> list[str]:
    """Write an experiment's specs and classmaps; returns the paths that changed."""
    written = [rel for rel, content in outputs(compiled).items()
               if write_if_changed(root / rel, content)]
    settle_spec_times(root, compiled.layout, compiled.specs)
    return written


# --------------------------------------------------------------------------- diff


@dataclass(frozen=True)
class FileDiff:
    path: str
    status: str  # "new", "changed", "unchanged"
    keys: tuple[str, ...] = ()  # dotted keys whose value differs (specs only)


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for k, v in node.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out or {prefix: {}}
    return {prefix: node}


def changed_keys(old: dict[str, Any] | None, new: dict[str, Any]) -> tuple[str, ...]:
    a, b = _flatten(old or {}), _flatten(new)
    return tuple(sorted(k for k in a.keys() | b.keys() if a.get(k, ...) != b.get(k, ...)))


def diff_experiment(root: Path, compiled: CompiledExperiment) -> list[FileDiff]:
    out: list[FileDiff] = []
    data_of = {spec.path: spec.data for spec in compiled.specs.values()}
    for rel, content in outputs(compiled).items():
        path = root / rel
        if not path.exists():
            out.append(FileDiff(rel, "new"))
            continue
        old_text = path.read_text(encoding="utf-8", errors="replace")
        if old_text == content:
            out.append(FileDiff(rel, "unchanged"))
            continue
        keys: tuple[str, ...] = ()
        if rel in data_of:
            from ruamel.yaml import YAML  # here: jobs import this module for changed_keys

            try:
                old = YAML(typ="safe", pure=True).load(old_text)
            except Exception:  # a hand-mangled spec: report it changed, without keys
                old = None
            keys = changed_keys(old if isinstance(old, dict) else None, data_of[rel])
            if not keys:
                keys = ("(header: tao image)",)
        out.append(FileDiff(rel, "changed", keys))
    return out
