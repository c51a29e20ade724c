"""project.yaml -> validated `Project` per experiment, with errors at file:line:col."""

from __future__ import annotations

import copy
import difflib
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ValidationError

from .errors import Location, Problem, ProjectError
from .model import Project
from .urls import CREDENTIALS_ERROR, CREDENTIALS_HINT, redact
from .yamlsource import KeyPath, SourceMap, dotted, load_yaml, load_yaml_text

BASE_EXPERIMENT = "base"


@dataclass(frozen=True)
class Experiment:
    """One variant of the project: the base with its dotted overrides applied."""

    name: str
    project: Project
    smap: SourceMap  # positions; overridden keys point at the experiment's lines
    group: str = ""  # the experiment a seed or sweep trial belongs to (report rows)
    seed: int | None = None  # set when expanded from `seeds:`
    trial: dict[str, Any] | None = None  # sweep trial: TAO key -> value


@dataclass(frozen=True)
class SweepPlan:
    """A `sweep:` of one experiment: its trials (experiments) and how the winner is chosen."""

    name: str  # the experiment that was swept
    method: str
    metric: str
    trials: dict[str, dict[str, Any]]  # trial experiment name -> TAO key -> value
    rungs: list[int] = field(default_factory=list)  # successive halving: epochs per rung
    eta: int = 2


@dataclass(frozen=True)
class LoadedProject:
    path: Path  # project.yaml as given
    root: Path  # folder holding project.yaml: every relative path is relative to it
    text: str
    base: Project
    smap: SourceMap
    experiments: dict[str, Experiment]
    sweeps: dict[str, SweepPlan] = field(default_factory=dict)

    @cached_property
    def results_root(self) -> str:
        return self.base.results


# --------------------------------------------------------------------------- errors


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model class that owns the last element of `loc`."""
    current: Any = model
    for part in loc:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        if isinstance(part, int):
            continue
        field = current.model_fields.get(str(part))
        if field is None:
            return None
        current = _unwrap(field.annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(tp: Any) -> Any:
    """Optional[X] / list[X] / dict[K, X] -> X (the model we descend into)."""
    while get_origin(tp) is not None:
        args = [a for a in get_args(tp) if a is not type(None)]
        models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
        if models:
            return models[0]
        if not args:
            return tp
        tp = args[-1]
    return tp


# pydantic adds union-branch tags to locations ("constrained-int", "literal['a','b']", "str")
_BRANCH_TAG = re.compile(r"^(constrained-\w+|function-\w+.*|\w+\[.*\]|int|str|float|bool|"
                         r"dict|list|none)$")


def _clean_loc(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(p for p in loc if isinstance(p, int) or not _BRANCH_TAG.match(str(p)))


def _hint(err: dict[str, Any]) -> str:
    """How to fix a pydantic error, in project.yaml terms."""
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind == "literal_error":
        return f"use one of: {ctx.get('expected', '')}"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        bound = next(iter(ctx.values()), "")
        op = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=",
              "less_than": "<"}[kind]
        return f"use a value {op} {bound}"
    if kind.startswith("int_"):
        return "write a whole number, e.g. 4"
    if kind.startswith("float_"):
        return "write a number, e.g. 0.5"
    if kind.startswith("bool_"):
        return "write true or false"
    if kind.startswith(("string_", "str_")):
        return "write a string" if kind == "string_type" else "change the text as described"
    if kind in ("too_short", "too_long"):
        return "change the number of items as described"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return "write a mapping (key: value lines)"
    if kind == "list_type":
        return "write a list (`- item` lines or [a, b])"
    if kind == CREDENTIALS_ERROR:
        return CREDENTIALS_HINT
    return ""


def problems_from_validation(exc: ValidationError, smap: SourceMap,
                             prefix: KeyPath = ()) -> list[Problem]:
    problems: list[Problem] = []
    seen: set[tuple[Any, ...]] = set()
    for err in exc.errors(include_url=False):
        loc = _clean_loc(tuple(err["loc"]))
        if loc in seen:
            continue  # one message per key even when several union branches failed
        seen.add(loc)
        path = (*prefix, *loc)
        kind = err["type"]
        given = err.get("input")
        if kind == "extra_forbidden":
            owner = _model_at(Project, loc[:-1])
            valid = sorted(owner.model_fields) if owner else []
            close = difflib.get_close_matches(str(loc[-1]), valid, n=3, cutoff=0.5)
            hint = (f"did you mean {' or '.join(repr(c) for c in close)}?" if close
                    else "remove it")
            if valid:
                hint += f" Valid keys here: {', '.join(valid)}."
            problems.append(Problem(smap.locate(path), f"unknown key {str(loc[-1])!r}", hint))
        elif kind == "missing":
            problems.append(Problem(smap.locate(path), "required key is missing",
                                    f"add `{dotted(path)}` (see docs/reference.md)"))
        else:
            msg = err["msg"].removeprefix("Value error, ")
            shown = "" if isinstance(given, (dict, list)) else f" (got {redact(repr(given))})"
            problems.append(Problem(smap.locate(path), f"{msg}{shown}", _hint(err)))
    return problems


# --------------------------------------------------------------------------- experiments


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> KeyPath:
    """Apply `model.hidden_dim: 128` to nested plain data; returns the key path."""
    parts: list[str | int] = []
    for piece in key.split("."):
        # allow `train[0].images` for list items
        name, _, rest = piece.partition("[")
        if name:
            parts.append(name)
        while rest:
            idx, _, rest = rest.partition("]")
            parts.append(int(idx))
            rest = rest.removeprefix("[")
    node: Any = data
    for part in parts[:-1]:
        if isinstance(part, int):
            node = node[part]
        else:
            node = node.setdefault(part, {})
            if not isinstance(node, (dict, list)):
                raise KeyError(part)
    node[parts[-1]] = value
    return tuple(parts)


def _experiment_views(smap: SourceMap, names) -> dict[str, SourceMap]:
    """Each experiment's positions: the base project's and its own `experiments.<name>` lines,
    not the other experiments' (with a thousand experiments, copying and scanning every
    experiment's lines for each one would cost a million entries)."""
    common: list[dict] = [{}, {}]
    own: dict[str, list[dict]] = {name: [{}, {}] for name in names}
    for i, table in enumerate((smap.keys, smap.values)):
        for path, pos in table.items():
            if len(path) > 1 and path[0] == "experiments":
                if path[1] in own:
                    own[path[1]][i][path] = pos
            else:
                common[i][path] = pos
    return {name: SourceMap(smap.file, {**common[0], **own[name][0]},
                            {**common[1], **own[name][1]}) for name in names}


def _experiment_data(raw: dict[str, Any], name: str, overrides: dict[str, Any],
                     smap: SourceMap, view: SourceMap | None = None
                     ) -> tuple[dict[str, Any], SourceMap]:
    data = copy.deepcopy({k: v for k, v in raw.items() if k != "experiments"})
    view = view or smap
    esmap = SourceMap(smap.file, dict(view.keys), dict(view.values))
    problems: list[Problem] = []
    for key, value in (overrides or {}).items():
        here = smap.locate(("experiments", name, key), key=f"experiments.{name}.{key}")
        if not isinstance(key, str) or key.startswith(("experiments", "name")):
            problems.append(Problem(here, f"an experiment cannot override {key!r}",
                                    "override dataset/model/train/... keys only"))
            continue
        try:
            path = _set_dotted(data, key, copy.deepcopy(value))
        except (KeyError, IndexError, ValueError, TypeError):
            problems.append(Problem(here, f"cannot apply override {key!r}: the path does not "
                                    "exist in the base project", "check the dotted key"))
            continue
        esmap.override(path, (here.line or 1, here.col or 1))
    if problems:
        raise ProjectError(problems, context=f"experiment {name!r}")
    return data, esmap


# --------------------------------------------------------------------------- entry points


def _validate(data: Any, smap: SourceMap, context: str = "") -> Project:
    if not isinstance(data, dict):
        raise ProjectError([Problem(Location(smap.file, 1, 1), "the project must be a mapping "
                                    "of keys (name, dataset, ...)", "see docs/reference.md")])
    try:
        return Project.model_validate(data)
    except ValidationError as exc:
        raise ProjectError(problems_from_validation(exc, smap), context=context) from None


def load_project_text(text: str, file: str) -> LoadedProject:
    raw, smap = load_yaml_text(text, file)
    return _build(raw, smap, Path(file), text)


def load_project(path: str | Path) -> LoadedProject:
    path = Path(path)
    raw, smap = load_yaml(path)
    return _build(raw, smap, path, path.read_text(encoding="utf-8"))


def _build(raw: Any, smap: SourceMap, path: Path, text: str) -> LoadedProject:
    base = _validate(raw, smap)
    experiments: dict[str, Experiment] = {}
    if base.experiments is None:
        experiments[BASE_EXPERIMENT] = Experiment(BASE_EXPERIMENT,
                                                  base.model_copy(update={"experiments": None}),
                                                  smap)
    else:
        views = _experiment_views(smap, list(base.experiments))
        for name, overrides in base.experiments.items():
            data, esmap = _experiment_data(raw, name, overrides, smap, views[name])
            project = _validate(data, esmap, context=f"experiment {name!r}")
            experiments[name] = Experiment(name, project, esmap)
    experiments, sweeps = _expand(experiments)
    return LoadedProject(path=path, root=path.resolve().parent, text=text, base=base,
                         smap=smap, experiments=experiments, sweeps=sweeps)


def _expand(experiments: dict[str, Experiment]
            ) -> tuple[dict[str, Experiment], dict[str, SweepPlan]]:
    """Seeds and sweep trials become experiments of their own (independent DAG branches)."""
    from .trials import rung_epochs
    from .trials import trials as sweep_trials

    out: dict[str, Experiment] = {}
    sweeps: dict[str, SweepPlan] = {}
    problems: list[Problem] = []
    for name, exp in experiments.items():
        p = exp.project
        clean = {"seeds": None, "sweep": None}
        if p.sweep is not None:
            if p.seeds and len(p.seeds) > 1:
                problems.append(Problem(exp.smap.locate(("seeds",), key="seeds"),
                                        "seeds and sweep cannot be combined in one experiment",
                                        "sweep with one seed, then repeat the winner's "
                                        "settings as an experiment with seeds"))
                continue
            found, errors = sweep_trials(p.sweep)
            problems += [Problem(exp.smap.locate(("sweep", "parameters"),
                                                 key="sweep.parameters"), e,
                                 "see docs/tao-notes.md §12 / docs/experiments.md") for e in errors]
            plan_trials = {}
            for t in found:
                overrides = p.overrides.model_copy(update={"all": {**p.overrides.all,
                                                                   **t.values}})
                trial_name = f"{name}.{t.name}"
                out[trial_name] = Experiment(
                    trial_name, p.model_copy(update={**clean, "overrides": overrides}),
                    exp.smap, group=name, trial=dict(t.values))
                plan_trials[trial_name] = dict(t.values)
            rungs = (rung_epochs(p.sweep.min_epochs, p.sweep.eta, p.train.epochs)
                     if p.sweep.method == "successive_halving" else [])
            sweeps[name] = SweepPlan(name, p.sweep.method, p.sweep.metric, plan_trials, rungs,
                                     p.sweep.eta)
        elif p.seeds and len(p.seeds) > 1:
            for seed in p.seeds:
                seeded = p.model_copy(update={**clean, "train": p.train.model_copy(
                    update={"seed": seed})})
                out[f"{name}-s{seed}"] = Experiment(f"{name}-s{seed}", seeded, exp.smap,
                                                    group=name, seed=seed)
        else:
            if p.seeds:  # one seed: no suffix
                p = p.model_copy(update={"train": p.train.model_copy(
                    update={"seed": p.seeds[0]})})
            out[name] = Experiment(name, p.model_copy(update=clean), exp.smap, group=name,
                                   seed=p.train.seed)
    if problems:
        raise ProjectError(problems)
    return out, sweeps
