"""Project -> one TAO spec per (experiment, action): render, override, validate, check.

Pure: reads project-relative files (templates, schemas, annotation files for checks) and
returns data.  Writing is `taomake.compiler.writer`.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import jinja2
import jsonschema
from ruamel.yaml import YAML
from ruamel.yaml.resolver import Resolver

from .actions import ACTIONS
from .context import CompileContext
from .errors import Problem, ProjectError
from .facts import dataset_sources, num_classes, source_action, tao_label, tao_labels
from .keymap import locate, override_scope
from .layout import DataSource, Layout, is_archive
from .load import Experiment, LoadedProject
from .package_data import action_schema, references_dir
from .project_checks import DEFAULT_CALIBRATION, project_checks
from .runners import RUNNERS, kinds_that, one_of
from .spec_checks import spec_checks
from .writer import IMAGE_LINE
from .yamlsource import KeyPath

# TAO's defaults for 640-pixel training (docs/tao-notes.md §1 dataset.augmentation.multi_scales)
TAO_MULTI_SCALES_640 = [480, 512, 544, 576, 608, 640, 672, 704, 736, 768, 800]
# Named colors PIL understands; TAO draws boxes only for classes in color_map.
PALETTE = ["red", "lime", "blue", "yellow", "magenta", "cyan", "orange", "purple",
           "springgreen", "deeppink", "gold", "dodgerblue", "chocolate", "violet", "white"]


@dataclass(frozen=True)
class CompiledSpec:
    experiment: str
    action: str
    path: str  # relative to the project folder
    data: dict[str, Any]
    text: str  # what is written: header + canonical YAML
    sha256: str  # of the YAML body (what TAO reads)


@dataclass
class CompiledExperiment:
    name: str
    layout: Layout
    specs: dict[str, CompiledSpec]
    files: dict[str, str]  # other generated inputs (classmaps): path -> content
    source_action: str  # "train" or "distill": which action yields the experiment's model
    warnings: list[Problem] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # action -> why it is not built


# --------------------------------------------------------------------------- derived values


def _source_paths(results: str, sources: dict[str, DataSource], key: str) -> dict[str, str]:
    """Where TAO finds the split or image folder at project key `key`: in its source's folder
    under `<results>/_data/` (a link to local data, or the staged copy)."""
    out = {"image_dir": sources[f"{key}.images"].target(results)}
    if f"{key}.annotations" in sources:
        out["json_file"] = sources[f"{key}.annotations"].target(results)
    return out


def classmap_lines(classes: dict[int, str], *, deploy: bool) -> list[str]:
    """Line k names label k (PyTorch); deploy reads line k as label k-1 (docs/tao-notes.md §5).

    Gaps in the ids get unique placeholders because deploy turns names into dict keys."""
    labels, names = range(-1 if deploy else 0, max(classes) + 1), tao_labels(classes)
    return [names.get(i, f"__label_{i}__") for i in labels]


def color_map(classes: dict[int, str], colors: dict[str, str] | None) -> dict[str, str]:
    """A box color per class label: yours where `inference.colors` names the class, else
    picked by the class *id* (reordering or renaming classes leaves every other color, and so
    the inference spec, as it was)."""
    return {tao_label(name): (colors or {}).get(name, PALETTE[cid % len(PALETTE)])
            for cid, name in sorted(classes.items())}


def enabled_actions(p) -> tuple[list[str], dict[str, str]]:
    """Which actions an experiment builds (in ACTIONS' order), and a one-line reason for each
    left out: the action's own condition (ACTIONS), after the GPU and runner a TensorRT
    action needs (the runner's abilities: RUNNERS)."""
    actions, skipped = [], {}
    for name, action in ACTIONS.items():
        why = deploy_gate(p) if action.needs_gpu else None
        why = why or action.built_when(p)
        if why:
            skipped[name] = why
        else:
            actions.append(name)
    return actions, skipped


def deploy_gate(p) -> str | None:
    """Why this project cannot run TensorRT actions, or None."""
    if p.hardware.cpu_only:
        return "hardware.gpus_per_node is 0 (TensorRT needs a GPU)"
    runner = RUNNERS[p.hardware.runner.kind]
    if not runner.tensorrt:
        # TAO's TensorRT code lives in its deploy image; a local venv's `rtdetr evaluate` is
        # the PyTorch one and would quietly evaluate the checkpoint instead of the engine
        return (f"the {runner.kind} runner has no TensorRT (TAO deploy runs in its image: use "
                f"hardware.runner.kind {one_of(kinds_that('tensorrt'))})")
    return None


def _model_values(m, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    values = m.model_dump()
    values.update(overrides or {})
    if values.get("feat_channels") is None:
        values["feat_channels"] = [values["hidden_dim"]] * len(values["return_interm_indices"])
    return values


def derive(lp: LoadedProject, exp: Experiment) -> dict[str, Any]:
    """The values templates need that are not written verbatim in project.yaml."""
    p = exp.project
    lay = Layout(p.results, exp.name)
    cpu = p.hardware.cpu_only
    ngpu = max(1, p.hardware.gpus_per_node)
    aug = p.dataset.augmentation
    source = source_action(p)
    sources = dataset_sources(p, lp.base)
    d: dict[str, Any] = {
        "experiment": exp.name,
        "results_dir": lay.root,
        "num_classes": num_classes(p.dataset),
        "class_ids": sorted(p.dataset.classes),
        "cpu": cpu,
        "train_gpus": ngpu,
        # TAO wants 0..n-1 inside the job; physical ids are the runner's business.
        "train_gpu_ids": list(range(ngpu)),
        "model": _model_values(p.model),
        "multi_scales": (aug.multi_scales if aug.multi_scales is not None
                         else TAO_MULTI_SCALES_640 if aug.train_size == [640, 640]
                         else [aug.train_size[0]]),
        "train_sources": [_source_paths(p.results, sources, f"dataset.train[{i}]")
                          for i in range(len(p.dataset.train))],
        "val_source": _source_paths(p.results, sources, "dataset.val"),
        "checkpoint": lay.model(source),
        "onnx_file": lay.onnx,
        "export_gpu_id": -1 if cpu else 0,
        "export_size": p.export.size or aug.eval_size,
        "classmap": lay.classmap,
        "classmap_deploy": lay.classmap_deploy,
        "color_map": color_map(p.dataset.classes, p.inference.colors),
        "engine_file": lay.engine(p.engine.precision, p.engine.batch.min, p.engine.batch.opt,
                                  p.engine.batch.max, p.tao.deploy_image_ref),
        "calibration": p.engine.calibration or DEFAULT_CALIBRATION,
    }
    d["cal_cache_file"] = lay.calibration_cache(d["engine_file"])
    d.update(_optional_sources(p, sources))
    if p.distill:
        d.update(_teacher(lp, p))
    d["is_quantized"] = False
    if p.quantize:
        d["quantize_device"] = p.quantize.device if not (cpu and p.quantize.device == "cuda") \
            else "cpu"
        d["quantize_dir"] = lay.action_dir("quantize")
        d["quantize_algorithm"] = p.quantize.algorithm or (
            "max" if p.quantize.backend.startswith("modelopt") else "minmax")
        d["quantize_model_path"] = lay.model(source)
        # the quantized specs: the float ones with the quantized file as checkpoint, in a
        # folder of their own (TAO appends its subcommand to results_dir)
        d["as_quantized"] = {**d, "is_quantized": True,
                             "results_dir": lay.action_dir("quantized"),
                             "checkpoint": lay.quantized(p.quantize.backend),
                             "onnx_file": lay.quantized_onnx}
    return d


def _optional_sources(p, sources: dict[str, DataSource]) -> dict[str, Any]:
    """Where the test, inference and calibration data are, for the splits the project has."""
    d: dict[str, Any] = {}
    if p.dataset.test:
        d["test_source"] = _source_paths(p.results, sources, "dataset.test")
    if p.dataset.inference:
        d["infer_dirs"] = [_source_paths(p.results, sources, "dataset.inference")["image_dir"]]
    if p.dataset.calibration:
        cal = _source_paths(p.results, sources, "dataset.calibration")
        d["calibration_dir"] = cal["image_dir"]
        d["calibration_json"] = cal.get("json_file")
    return d


def _teacher(lp: LoadedProject, p) -> dict[str, Any]:
    """Distillation's teacher: its checkpoint (another experiment's model, or a file) and its
    model settings."""
    teacher = p.distill.teacher.checkpoint
    if teacher.startswith("experiment:"):
        other = teacher.split(":", 1)[1]
        tp = lp.experiments[other].project if other in lp.experiments else p
        return {"teacher_checkpoint": Layout(p.results, other).model(source_action(tp)),
                "teacher_model": _model_values(tp.model, p.distill.teacher.model)}
    return {"teacher_checkpoint": teacher,
            "teacher_model": _model_values(p.model, p.distill.teacher.model)}


# --------------------------------------------------------------------------- rendering


def _y(value: Any) -> str:
    """A value as YAML flow text; JSON is valid YAML and quotes strings safely."""
    return json.dumps(value, ensure_ascii=False)


@cache
def _jinja() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(references_dir())),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["y"] = _y
    return env


class _Yaml12Resolver(Resolver):
    """ruamel's YAML 1.2 tags without its per-scalar version lookup: the default
    VersionedResolver asks the document's YAML version for every scalar, a third of the time
    spent reading a rendered spec (200 experiments compile 800).  A rendered spec never has a
    `%YAML` directive, so its version is always 1.2 (tests/unit/test_compile.py compares both)."""

    processing_version = (1, 2)

    def __init__(self, version: Any = None, loader: Any = None, loadumper: Any = None):
        super().__init__(loader if loader is not None else loadumper)


@cache
def spec_reader() -> YAML:
    yaml = YAML(typ="safe")  # uses ruamel's C parser when ruamel.yaml.clib is installed
    yaml.Resolver = _Yaml12Resolver
    return yaml


def render(action: str, project, derived: dict[str, Any]) -> dict[str, Any]:
    text = _jinja().get_template(f"spec_template_{action}.yaml.j2").render(p=project, d=derived)
    data = spec_reader().load(text)
    return data or {}


_PLAIN = re.compile(r"^[A-Za-z_/][A-Za-z0-9_./-]*$")
_RESERVED = {"true", "false", "null", "yes", "no", "on", "off", "y", "n", "~"}


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"non-finite number {value} in a spec")
        return repr(value)
    text = str(value)
    if _PLAIN.match(text) and text.lower() not in _RESERVED:
        return text
    return json.dumps(text, ensure_ascii=False)  # JSON strings are valid YAML


def _emit(node: Any, indent: int, out: list[str]) -> None:
    pad = " " * indent
    for key, value in node.items():
        head = f"{pad}{_scalar(key)}:"
        if isinstance(value, dict) and value:
            out.append(head)
            _emit(value, indent + 2, out)
        elif isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
            out.append(head)
            for item in value:
                if isinstance(item, dict) and item:
                    sub: list[str] = []
                    _emit(item, indent + 4, sub)
                    out.append(f"{pad}  - {sub[0].lstrip()}")
                    out.extend(sub[1:])
                else:
                    out.append(f"{pad}  - {_flow_value(item)}")
        else:
            out.append(f"{head} {_flow_value(value)}")


def _flow_value(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_scalar(k)}: {_flow_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_flow_value(v) for v in value) + "]"
    return _scalar(value)


def dump_yaml(data: dict[str, Any]) -> str:
    """Canonical, deterministic YAML: block mappings, lists of scalars inline, strings quoted
    only when they must be."""
    out: list[str] = []
    _emit(data, 0, out)
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- overrides + schema


def _schema_node(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = schema["$defs"][node["$ref"].rsplit("/", 1)[-1]]
    for branch in node.get("anyOf", []):
        branch = _schema_node(schema, branch)
        if branch.get("type") in ("object", "array"):
            return branch
    return node


def schema_keys(schema: dict[str, Any], path: list[str]) -> tuple[bool, list[str]]:
    """Does `path` exist in the schema?  Else the valid keys where it stopped."""
    node = _schema_node(schema, schema)
    for part in path:
        props = node.get("properties")
        if props is None:
            extra = node.get("additionalProperties")
            if isinstance(extra, dict):  # free-form mapping (e.g. data sources)
                node = _schema_node(schema, extra)
                continue
            return False, []
        if part not in props:
            return False, sorted(props)
        node = _schema_node(schema, props[part])
    return True, []


def _set_path(data: dict[str, Any], path: list[str], value: Any) -> None:
    node = data
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value


def _apply_overrides(ctx: CompileContext, action: str, spec: dict[str, Any]) -> None:
    import difflib

    p = ctx.exp.project
    schema = action_schema(action)
    # the quantized model's specs take their float twin's overrides (overrides.evaluate...)
    own = override_scope(p, action)
    for scope in ("all", own):
        for key, value in getattr(p.overrides, scope).items():
            path = str(key).split(".")
            where: KeyPath = ("overrides", scope, key)
            if path[0] not in ACTIONS[action].sections:
                if scope == "all":
                    continue  # `all` only touches actions whose spec has that section
                ctx.problems.append(Problem(
                    ctx.exp.smap.locate(where, key=f"overrides.{scope}.{key}"),
                    f"the {action} spec has no section {path[0]!r}",
                    f"{action} reads only: {', '.join(ACTIONS[action].sections)}",
                    check="override_keys"))
                continue
            ok, valid = schema_keys(schema, path)
            if not ok:
                close = difflib.get_close_matches(path[-1], valid, n=3, cutoff=0.5)
                hint = f"did you mean {' or '.join(repr(c) for c in close)}?" if close else \
                    "check the key against TAO's schema (schemas/)"
                ctx.problems.append(Problem(
                    ctx.exp.smap.locate(where, key=f"overrides.{scope}.{key}"),
                    f"{key!r} is not a key of TAO's {action} config", hint,
                    check="override_keys"))
                continue
            _set_path(spec, path, value)
            ctx.overridden[(action, str(key))] = where


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _validate_schema(ctx: CompileContext, action: str, spec: dict[str, Any]) -> None:
    validator = jsonschema.Draft202012Validator(action_schema(action))
    for err in sorted(validator.iter_errors(spec), key=lambda e: list(map(str, e.path))):
        if err.context:  # anyOf (Optional): report the branch that came closest
            err = jsonschema.exceptions.best_match(err.context)
        tao_path = ".".join(str(x) for x in err.absolute_path)
        ctx.problems.append(Problem(
            locate(ctx, action, tao_path),
            f"TAO's {action} schema rejects {tao_path or 'the spec'}: {_short(err.message)}",
            "change the project value (or the override) that sets it", check="tao_schema"))


# --------------------------------------------------------------------------- entry points


def spec_header(p, exp: str, action: str, body_sha: str) -> str:
    image = p.tao.image(ACTIONS[action].flavor)
    # Only what determines the job goes here: the image (a new TAO reruns everything) and
    # the body hash. No taomake version, no project hash: comments/whitespace must not rebuild.
    return (f"# TAO RT-DETR {action} spec for experiment {exp!r} of project {p.name!r}.\n"
            "# Generated by taomake from project.yaml: edit that file, not this one.\n"
            f"{IMAGE_LINE}{image}\n"
            f"# body sha256: {body_sha}\n")


def _context(lp: LoadedProject, exp: Experiment) -> str:
    return "" if lp.base.experiments is None else f"experiment {exp.name!r}"


def compile_experiment(lp: LoadedProject, exp: Experiment) -> CompiledExperiment:
    p = exp.project
    ctx = CompileContext(lp, exp)
    project_checks(ctx)
    if ctx.problems:  # templates may rely on what these checks guarantee
        raise ProjectError(ctx.problems, context=_context(lp, exp))
    d = derive(lp, exp)
    actions, skipped = enabled_actions(p)
    raw: dict[str, dict[str, Any]] = {}
    for action in actions:
        spec = render(action, p, d)
        _apply_overrides(ctx, action, spec)
        raw[action] = spec
    for action, spec in raw.items():
        _validate_schema(ctx, action, spec)
    if not ctx.problems:  # the spec checks assume schema-valid types
        spec_checks(ctx, raw, d)
    if ctx.problems:
        raise ProjectError(ctx.problems, context=_context(lp, exp))
    lay = Layout(p.results, exp.name)
    specs: dict[str, CompiledSpec] = {}
    for action, spec in raw.items():
        body = dump_yaml(spec)
        sha = hashlib.sha256(body.encode()).hexdigest()
        specs[action] = CompiledSpec(exp.name, action, lay.spec(action), spec,
                                     spec_header(p, exp.name, action, sha) + body, sha)
    files = {lay.classmap: "\n".join(classmap_lines(p.dataset.classes, deploy=False)) + "\n"}
    if "trt_inference" in specs:
        files[lay.classmap_deploy] = "\n".join(classmap_lines(p.dataset.classes,
                                                              deploy=True)) + "\n"
    return CompiledExperiment(exp.name, lay, specs, files, source_action(p), ctx.warnings,
                              skipped)


def compile_project(lp: LoadedProject,
                    experiments: list[str] | None = None) -> dict[str, CompiledExperiment]:
    """Compile the named experiments (default all); every problem of all of them at once."""
    names = experiments or list(lp.experiments)
    out: dict[str, CompiledExperiment] = {}
    problems: list[Problem] = []
    for name in names:
        try:
            out[name] = compile_experiment(lp, lp.experiments[name])
        except ProjectError as exc:
            problems.extend(exc.problems if len(names) == 1 else
                            [Problem(pr.location, f"[{name}] {pr.message}", pr.hint, pr.check)
                             for pr in exc.problems])
    if problems:
        raise ProjectError(problems)
    return out


__all__ = ["CompiledExperiment", "CompiledSpec", "classmap_lines", "compile_experiment",
           "compile_project", "derive", "dump_yaml", "enabled_actions", "is_archive", "render",
           "spec_reader"]
