"""TAO's config dataclasses -> standard JSON Schema (draft 2020-12).

PURE: no subprocess, no network.  The caller imports TAO's `ExperimentConfig` (see
`taomake.tao_wheels` / `taomake.schemas`) and passes the class in; the only files read here are
TAO sources parsed with `ast` for names that are only known to code needing torch to import.

What the schema states, and why (details in schemas/README.md):

* Types are what OmegaConf enforces at Hydra merge time, written canonically: int -> integer,
  float -> number (integers allowed), str -> string, bool -> boolean, Optional[X] -> anyOf with
  null, List[X] -> array, Dict[str, X] -> object.  OmegaConf also *coerces* ("5" -> 5,
  5 -> "5", "yes" -> true); the schema deliberately does not: a spec should say what it means.
* Every dataclass is an inline object with `additionalProperties: false` (Hydra rejects unknown
  keys).  Inline rather than `$defs`, because one class can carry different defaults at
  different places: `export` is `RTExportExpConfig(input_width=640, ...)` while the class says
  960, so defaults have to come from the default *instance* at each place.
* `default` is the runtime default OmegaConf uses (field default / default_factory, or the
  parent's default instance), never the UI metadata `default_value`; that one is kept as the
  annotation `x-ui-default` when it differs.  Objects carry no `default` (their properties do).
* `required` lists the fields whose default is MISSING (`???`).
* `enum` comes from the declared `valid_options` (which TAO does not enforce), except where a
  caller supplies the names the code really knows (`enums`, e.g. the backbone registry).
  `minimum`/`maximum` come from finite `valid_min`/`valid_max`, `pattern` from `regex`.
* Dict[str, scalar] fields (the `*_data_sources` mappings, `color_map`) also accept list and
  mapping values: OmegaConf does not check the element type of container values there, and TAO
  relies on it (`infer_data_sources.image_dir` is a list).  Inside a list
  (`train_data_sources: List[Dict[str, str]]`) OmegaConf does check, so the values are strings.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import math
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

DRAFT = "https://json-schema.org/draft/2020-12/schema"
OMEGA_MISSING = "???"  # omegaconf.MISSING; a literal so this module needs no omegaconf
_NO_DEFAULT = object()
_SCALARS: dict[type, str] = {bool: "boolean", int: "integer", float: "number", str: "string"}

Json = dict[str, Any]


# --------------------------------------------------------------------------- static parsing


def registry_names(package_dir: Path, registry: str) -> list[str]:
    """Names a fvcore-style registry holds once `package_dir` (a package) is imported.

    Only modules that the package's `__init__.py` imports register anything, so those are the
    ones scanned, for `@<registry>.register()` / `@<registry>.register` decorators and
    `<registry>.register(fn)` calls.  fvcore registers under the function's `__name__`.
    """
    init = ast.parse((package_dir / "__init__.py").read_text(encoding="utf-8"))
    imported = {n.module.rsplit(".", 1)[-1] for n in ast.walk(init)
                if isinstance(n, ast.ImportFrom) and n.module}
    names: set[str] = set()

    def is_register(node: ast.AST) -> bool:
        return (isinstance(node, ast.Attribute) and node.attr == "register"
                and isinstance(node.value, ast.Name) and node.value.id == registry)

    for mod in sorted(imported):
        path = package_dir / f"{mod}.py"
        if not path.is_file():
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.ClassDef):
                for dec in node.decorator_list:
                    if is_register(dec):
                        names.add(node.name)
                    elif isinstance(dec, ast.Call) and is_register(dec.func):
                        if dec.args or dec.keywords:
                            raise ValueError(f"{path}:{dec.lineno}: unsupported register(...) "
                                             "arguments; update registry_names()")
                        names.add(node.name)
            elif (isinstance(node, ast.Call) and is_register(node.func) and node.args
                  and isinstance(node.args[0], ast.Name)):
                names.add(node.args[0].id)
    if not names:
        raise ValueError(f"no {registry} registrations found under {package_dir}")
    return sorted(names)


def dict_literal_keys(path: Path, name: str) -> list[str]:
    """The string keys of the module-level dict literal `name = {...}` in `path`."""
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        target = node.target if isinstance(node, ast.AnnAssign) else (
            node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else None)
        if isinstance(target, ast.Name) and target.id == name and isinstance(node.value, ast.Dict):
            keys = [k.value for k in node.value.keys
                    if isinstance(k, ast.Constant) and isinstance(k.value, str)]
            if keys:
                return keys
    raise ValueError(f"{path}: no dict literal {name!r} with string keys")


# --------------------------------------------------------------------------- helpers


def _json(value: Any, where: str) -> Any:
    """A default as plain JSON (fails on anything JSON Schema cannot state)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where}: non-finite default {value!r} has no JSON form")
        return value
    if isinstance(value, list | tuple):
        return [_json(v, where) for v in value]
    if isinstance(value, dict):
        return {str(k): _json(v, where) for k, v in value.items()}
    raise TypeError(f"{where}: cannot write default {value!r} as JSON")


def _text(text: Any) -> str:
    """Docstring-style metadata -> lines without source indentation or runs of spaces."""
    if not isinstance(text, str):
        return ""
    lines = [" ".join(line.split()) for line in text.strip().splitlines()]
    return "\n".join(line for line in lines if line)


def _number(value: Any, integer: bool) -> int | float | None:
    """valid_min/valid_max -> a finite bound, or None ("", "inf", None)."""
    if isinstance(value, bool) or value in (None, ""):
        return None
    try:
        num = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(num):
        return None
    return int(num) if integer and num.is_integer() else num


def _options(meta: Mapping[str, Any], py: type) -> list[Any] | None:
    raw = meta.get("valid_options")
    if not isinstance(raw, str) or not raw.strip():
        return None
    opts = [o.strip() for o in raw.split(",") if o.strip()]
    return [py(o) for o in opts] if py in (int, float) else opts


def _field_default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return OMEGA_MISSING  # OmegaConf treats a field without default as MISSING


def _defaults_of(cls: type, source: Any) -> dict[str, Any]:
    """Per-field runtime defaults: from a default instance, else from the class' fields.

    A class (not an instance) as default — `model.frozen_fm` is `DATACLASS_FIELD(FrozenFMConfig)`
    — means the class' own defaults, which is also what OmegaConf makes of it.  The root class
    is read field by field and not instantiated: Hydra does the same (ExperimentConfig's
    __post_init__ never runs, so `model_name` stays null).
    """
    if dataclasses.is_dataclass(source) and not isinstance(source, type):
        return {f.name: getattr(source, f.name) for f in dataclasses.fields(source)}
    return {f.name: _field_default(f) for f in dataclasses.fields(cls)}


class _Gen:
    def __init__(self, enums: Mapping[str, Sequence[Any]]):
        self.enums = dict(enums)
        self.used: set[str] = set()

    # -- objects ----------------------------------------------------------------------------

    def obj(self, cls: type, source: Any, path: str) -> Json:
        hints = typing.get_type_hints(cls)
        defaults = _defaults_of(cls, source)
        props: Json = {}
        required: list[str] = []
        for f in dataclasses.fields(cls):
            default = defaults[f.name]
            if isinstance(default, str) and default == OMEGA_MISSING:
                required.append(f.name)
                default = _NO_DEFAULT
            props[f.name] = self.field(hints[f.name], default, f.metadata,
                                       f"{path}.{f.name}" if path else f.name)
        node: Json = {"type": "object", "title": cls.__name__, "properties": props,
                      "additionalProperties": False}
        if required:
            node["required"] = sorted(required)
        return node

    def field(self, tp: Any, default: Any, meta: Mapping[str, Any], path: str) -> Json:
        node = self.type_node(tp, default, meta, path)
        desc = _text(meta.get("description"))
        if desc:
            node["description"] = desc
        is_object = dataclasses.is_dataclass(default)  # instance or class: props carry defaults
        if default is not _NO_DEFAULT and not is_object:
            node["default"] = _json(default, path)
            ui = meta.get("default_value", "")
            if ui not in ("", None, {}) and ui != default and not isinstance(ui, type):
                node["x-ui-default"] = _json(ui, path)
        return node

    # -- types ------------------------------------------------------------------------------

    def type_node(self, tp: Any, default: Any, meta: Mapping[str, Any], path: str,
                  in_container: bool = False) -> Json:
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if origin in (typing.Union, types.UnionType):
            members = [a for a in args if a is not type(None)]
            if len(members) != 1:
                raise NotImplementedError(f"{path}: Union {tp!r} (only Optional[X] is handled)")
            inner = self.type_node(members[0], default, meta, path, in_container)
            return {"anyOf": [inner, {"type": "null"}]} if len(members) < len(args) else inner
        if tp is Any:
            return {}
        if dataclasses.is_dataclass(tp):
            return self.obj(tp, default if dataclasses.is_dataclass(default) else None, path)
        if origin is list or tp is list:
            item = args[0] if args else Any
            return {"type": "array", "items": self.type_node(item, _NO_DEFAULT, {}, f"{path}[]",
                                                             in_container=True)}
        if origin is dict or tp is dict:
            key, value = args if args else (str, Any)
            if key is not str:
                raise NotImplementedError(f"{path}: dict key type {key!r}")
            values = self.type_node(value, _NO_DEFAULT, {}, f"{path}{{}}", in_container=True)
            if value in _SCALARS and not in_container:
                # OmegaConf leaves container values unchecked in a field-level Dict[str, scalar]
                # (tested with TAO's hydra_runner); TAO relies on it for image_dir lists.
                values = {"anyOf": [values, {"type": "array"}, {"type": "object"}]}
            return {"type": "object", "additionalProperties": values}
        if tp in _SCALARS:
            return self.scalar(tp, meta, path)
        raise NotImplementedError(f"{path}: type {tp!r}")

    def scalar(self, tp: type, meta: Mapping[str, Any], path: str) -> Json:
        node: Json = {"type": _SCALARS[tp]}
        declared = _options(meta, tp)
        if path in self.enums:
            self.used.add(path)
            node["enum"] = list(self.enums[path])
            if declared is not None and declared != node["enum"]:
                node["x-tao-valid-options"] = declared  # what TAO's metadata claims
        elif declared is not None:
            node["enum"] = declared
        if tp in (int, float):
            for key, bound in (("minimum", "valid_min"), ("maximum", "valid_max")):
                num = _number(meta.get(bound), integer=tp is int)
                if num is not None:
                    node[key] = num
        regex = meta.get("regex")
        if tp is str and isinstance(regex, str) and regex:
            node["pattern"] = regex
        return node


# --------------------------------------------------------------------------- entry points


def tao_schema(experiment_cls: type, *, package: str, version: str,
               enums: Mapping[str, Sequence[Any]] | None = None) -> Json:
    """The full JSON Schema of one TAO `ExperimentConfig` class.

    `enums` replaces the declared options of the scalar fields at those dotted paths (e.g.
    `{"model.backbone": [...registry names...]}`); every path must exist.
    """
    gen = _Gen(enums or {})
    body = gen.obj(experiment_cls, None, "")
    unused = sorted(set(gen.enums) - gen.used)
    if unused:
        raise KeyError(f"enum override for unknown scalar field(s): {', '.join(unused)}")
    return {
        "$schema": DRAFT,
        "title": f"TAO RT-DETR experiment spec ({package} {version})",
        "description": (f"Generated by taomake from {experiment_cls.__module__}."
                        f"{experiment_cls.__qualname__} in {package} {version}."),
        "x-tao-package": package,
        "x-tao-version": version,
        **{k: v for k, v in body.items() if k != "title"},
    }


def action_schema(full_schema: Json, action: Any) -> Json:
    """The schema of one action's spec: only `action.sections` at the top, all required.

    `action` is a `taomake.compiler.actions.Action`; `full_schema` the `tao_schema()` of its flavor.
    """
    props = full_schema["properties"]
    missing = [s for s in action.sections if s not in props]
    if missing:
        raise KeyError(f"{action.name}: TAO's config has no section(s) {', '.join(missing)}")
    out = copy.deepcopy(full_schema)
    pkg, ver = full_schema["x-tao-package"], full_schema["x-tao-version"]
    out["title"] = f"TAO RT-DETR {action.name} spec ({pkg} {ver})"
    out["description"] = (f"The spec of `rtdetr {action.subcommand}` ({action.flavor} image), "
                          f"holding only the sections that action reads. "
                          f"{full_schema['description']}")
    out["properties"] = {s: copy.deepcopy(props[s]) for s in action.sections}
    out["required"] = sorted(action.sections)
    out["x-taomake-action"] = action.name
    return out
