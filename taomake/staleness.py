"""Is an artifact up to date, and if not, why: small predicates over what taomake itself
recorded when it built it, each returning typed reasons (turned into text only by
`taomake status` and `taomake explain`).

What an action's artifacts were built from is in its folder's records: the spec (built
record), the data identities and the files it consumed, by sha256 (provenance), the
checkpoint selection policy (selection.json), the parity tolerance (parity.json).  An
artifact is up to date when it exists and all of that still holds; it is stale when
anything it was built from changed, or when what it reads is itself stale (it will be
rebuilt first).  Nothing here writes a file or reaches a data source: data sources are
judged by their last recorded identity (their stamps).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from taomake.compiler.actions import ACTIONS, STEPS
from taomake.compiler.plan import BuildPlan, ExperimentPlan
from taomake.compiler.writer import changed_keys


@dataclass(frozen=True)
class Reason:
    """Why a group of artifacts (an action's, or a step's) must be built."""

    kind: str  # missing | never built | spec changed | settings changed | data changed |
    #            input changed | upstream stale
    what: str = ""  # the file, the keys, the data source, the upstream step

    def text(self) -> str:
        return f"{self.kind}: {self.what}" if self.what else self.kind


@dataclass(frozen=True)
class GroupState:
    """An experiment's artifacts of one action or step, and why they are stale (none: up to
    date)."""

    experiment: str
    name: str  # the action or step
    paths: tuple[str, ...]
    reasons: tuple[Reason, ...]

    @property
    def stale(self) -> bool:
        return bool(self.reasons)

    @property
    def missing(self) -> bool:
        return any(r.kind == "missing" for r in self.reasons)


def _json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _sha(path: Path) -> str | None:
    from .digests import artifact_sha256

    try:
        return artifact_sha256(path, remember=False)
    except OSError:
        return None


# --------------------------------------------------------------------------- predicates


def missing(root: Path, paths: list[str]) -> list[Reason]:
    return [Reason("missing", p) for p in paths if not (root / p).exists()]


def spec_changed(root: Path, e: ExperimentPlan, action: str) -> list[Reason]:
    """The spec project.yaml asks for now against the one the artifacts were built from."""
    try:
        built = (root / e.layout.built_record(action)).read_text(encoding="utf-8")
    except FileNotFoundError:
        return [Reason("never built")]
    spec = e.specs[action]
    if built == spec.text:
        return []
    from ruamel.yaml import YAML

    keys = changed_keys(YAML(typ="safe", pure=True).load(built), spec.data)
    return [Reason("spec changed", ", ".join(keys[:6]) + (" ..." if len(keys) > 6 else "")
                   if keys else "its header (the TAO image)")]


def data_changed(root: Path, plan: BuildPlan, e: ExperimentPlan, action: str,
                 record: dict[str, Any]) -> list[Reason]:
    """The identities of the data it read, as recorded then and as the stamps say now."""
    from .provenance import data_identities

    now = data_identities(root, e.results, e.specs[action].data, plan.data_sources())
    then = record.get("data") or {}
    return [Reason("data changed", now[path]["uri"]) for path in sorted(now)
            if path in then and then[path].get("identity") != now[path].get("identity")]


def input_changed(root: Path, record: dict[str, Any]) -> list[Reason]:
    """The built files it consumed (a checkpoint, a model, an engine), by sha256."""
    return [Reason("input changed", path) for path, sha in sorted(
        (record.get("consumed") or {}).items()) if _sha(root / path) != sha]


def selection_changed(root: Path, e: ExperimentPlan, action: str) -> list[Reason]:
    """A training's hand-off: the checkpoint policy it selected with."""
    sel = _json(root / e.layout.selection(action))
    if sel is None:
        return []
    policy = e.checkpoint_policy
    same = (sel.get("policy") == "epoch" and sel.get("epoch") == policy) if isinstance(
        policy, int) else (sel.get("policy") == policy and (
            policy != "best" or sel.get("metric") == e.best_metric))
    return [] if same else [Reason("settings changed", "train.use_checkpoint / best_metric")]


def parity_changed(root: Path, e: ExperimentPlan) -> list[Reason]:
    parity = _json(root / e.layout.parity)
    if parity is not None and parity.get("tolerance") not in (None, e.parity_tolerance):
        return [Reason("settings changed", "export.parity_tolerance")]
    return []


# --------------------------------------------------------------------------- groups


def upstream_of(e: ExperimentPlan, name: str) -> list[str]:
    """The groups whose artifacts a group reads (built first)."""
    if name in STEPS:
        return [a for a in STEPS[name].needs if a in e.specs]
    reads = ACTIONS[name].reads
    source = {"model": e.source_action, "quantized": "quantize", "onnx": "export",
              "engine": "gen_trt_engine"}.get(reads)
    return [source] if source in e.specs else []


def action_reasons(root: Path, plan: BuildPlan, e: ExperimentPlan, action: str,
                   paths: list[str]) -> list[Reason]:
    reasons = missing(root, paths) or spec_changed(root, e, action)
    if reasons:
        return reasons
    record = _json(root / e.layout.provenance(action)) or {}
    reasons = data_changed(root, plan, e, action, record) + input_changed(root, record)
    if ACTIONS[action].trains:
        reasons += selection_changed(root, e, action)
    parity = STEPS["parity"]  # shown with the export: its tolerance is the export's setting
    if parity.shown_with == action and getattr(e, parity.switch):
        reasons += parity_changed(root, e)
    return reasons


def step_reasons(root: Path, e: ExperimentPlan, step: str, paths: list[str]) -> list[Reason]:
    reasons = missing(root, paths)
    if reasons:
        return reasons
    from taomake.compiler.layout import provenance_record

    record = _json(root / provenance_record(str(Path(paths[0]).parent), step))
    return input_changed(root, record) if record else [Reason("never built")]


def experiment_states(root: Path, plan: BuildPlan, e: ExperimentPlan) -> list[GroupState]:
    """Each artifact group of an experiment, upstream ones first, with its reasons."""
    groups = e.artifacts()
    states: dict[str, GroupState] = {}
    order = sorted(groups, key=lambda n: _depth(e, n))
    for name in order:
        paths = groups[name]
        reasons = (step_reasons(root, e, name, paths) if name in STEPS
                   else action_reasons(root, plan, e, name, paths))
        for up in upstream_of(e, name):
            if up in states and states[up].stale and not any(
                    r.kind == "missing" for r in reasons):
                reasons.append(Reason("upstream stale", f"{up} ({e.name})"))
        states[name] = GroupState(e.name, name, tuple(paths), tuple(reasons))
    return [states[name] for name in groups]


def _depth(e: ExperimentPlan, name: str, seen: frozenset[str] = frozenset()) -> int:
    ups = [u for u in upstream_of(e, name) if u not in seen]
    return 1 + max((_depth(e, u, seen | {name}) for u in ups), default=0)


def plan_states(root: Path, plan: BuildPlan) -> list[GroupState]:
    return [s for e in plan.experiments.values() for s in experiment_states(root, plan, e)]


__all__ = ["GroupState", "Reason", "action_reasons", "data_changed", "experiment_states",
           "input_changed", "missing", "plan_states", "spec_changed", "step_reasons",
           "upstream_of"]
