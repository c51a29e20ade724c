"""Every value of every compiled spec traces back to project.yaml, and error locations agree.

The project -> TAO key map is written once, in the templates; `keymap.SOURCE_OF` maps back by
hand (for error locations and `taomake explain`).  This test learns the forward map from the
compiler itself: it changes one project key at a time (every leaf of the typed project, set
or defaulted: numbers, booleans, choices, class names, the results folder, an extra class),
recompiles, and records which spec leaves moved.  Then:
* every spec leaf moved with some project key, or is TAO's own default for that key (its
  schema says so), or is one of the few constants below, each with its reason;
* for every leaf that moved, `project_location` (what error messages and `explain` point at)
  names one of the project keys that moved it (or a section containing it).
"""

from __future__ import annotations

import io
import json
import re
import typing
from functools import cache
from pathlib import Path

import pytest
from ruamel.yaml import YAML
from taomake.compiler import compile_project, load_project
from taomake.compiler.errors import TaomakeError
from taomake.compiler.keymap import ENTRIES_NAMED_BY, entry_location, project_location
from taomake.compiler.package_data import schemas_dir

from tests.helpers import make_project
from tests.unit.test_tao_acceptance import variant

# Spec values taomake writes on purpose that no project key changes and that differ from (or
# are absent in) TAO's defaults; anything else untraced fails the test.
CONSTANTS = {
    "dataset.dataset_type": "'serialized': one copy of the annotations for all workers",
    "dataset.remap_mscoco_category": "ids are the user's own, never COCO's 91",
    "dataset.pin_memory": "fixed: no effect on results",
    "model.feat_strides": "RT-DETR's three feature levels (fixed by the architecture)",
    "model.return_interm_indices": "the three backbone stages RT-DETR reads",
    "model.use_encoder_idx": "the encoder runs on the last level (RT-DETR)",
    "model.num_feature_levels": "three levels (RT-DETR)",
    "model.nheads": "8 attention heads: RT-DETR's, not offered",
    "model.enc_layers": "one encoder layer: RT-DETR's, not offered",
    "model.dropout_ratio": "0: RT-DETR's training recipe",
    "model.train_backbone": "the backbone trains (lr_backbone sets how fast)",
    "export.input_channel": "RGB",
    "export.serialize_nvdsinfer": "no DeepStream config files",
    "export.batch_size": "-1: a dynamic batch axis (the engine's profile sets the range)",
    "wandb.enable": "off unless the project configures wandb",
    "train.freeze": "nothing frozen: not offered",
    "train.ema.decay": "EMA's decay when ema.enabled; TAO's value",
    "train.optim.optimizer": "AdamW: RT-DETR's recipe, not offered",
    "inference.num_nodes": "inference runs on one node",
    "evaluate.num_nodes": "evaluation runs on one node",
    "gen_trt_engine.tensorrt.calibration.cal_cache_file": "named after the engine (a Layout path)",
    # set by the project, but validation accepts one value alone in these projects
    "distill.bindings[*].criterion": "IOU: the only criterion TAO 7.3.0's distiller hooks",
    "distill.bindings[*].student_module_name": "moves only with its teacher module (a pair)",
    "distill.bindings[*].teacher_module_name": "moves only with its student module (a pair)",
    "distill.teacher.hidden_dim": "an IOU binding needs the student's hidden_dim",
    "distill.teacher.feat_channels": "= the teacher's hidden_dim",
    "distill.teacher.pretrained_backbone_path": "none: the teacher checkpoint holds it",
    "distill.teacher.return_interm_indices": "RT-DETR's three backbone stages",
    "distill.teacher.use_encoder_idx": "RT-DETR's encoder level",
    "quantize.backend": "modelopt.pytorch accepts only static_ptq + max (others refused)",
    "quantize.mode": "modelopt.pytorch accepts only static_ptq",
    "quantize.algorithm": "modelopt.pytorch accepts only max",
    "evaluate.is_quantized": "true in the quantized model's specs, by construction",
    "inference.is_quantized": "true in the quantized model's specs, by construction",
}
# Paths made of data sources (checked by the data tests) are not perturbed here.
DATA_KEYS = ("image_dir", "json_file", "classmap", "cal_image_dir")


def flat(node, prefix=""):
    """Spec leaves as dotted keys (lists of numbers are one leaf)."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from flat(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(node, list) and node and not all(
            isinstance(x, (int, float)) and not isinstance(x, bool) for x in node):
        for i, v in enumerate(node):
            yield from flat(v, f"{prefix}[{i}]")
    else:
        yield prefix, node


def project_leaves(node, path=()):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from project_leaves(v, (*path, k))
    elif isinstance(node, list) and node and all(isinstance(x, (int, float)) for x in node):
        yield path, node
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from project_leaves(v, (*path, i))
    else:
        yield path, node


def _models_in(annotation):
    """The pydantic model classes an annotation holds (Optional[X], list[X], X | Y...)."""
    if hasattr(annotation, "model_fields"):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def choices(project, path) -> list:
    """The Literal options of the project field at `path` (read from the model's types, so
    sections the project leaves out count too)."""
    if path[:1] == ("experiments",):  # an experiment overlays the same project schema
        path = path[2:]
    annotations = [type(project)]
    for part in path:
        if isinstance(part, int):
            continue
        fields = [m.model_fields[part] for t in annotations for m in _models_in(t)
                  if part in m.model_fields]
        if not fields:
            return []
        annotations = [fields[0].annotation]
    found: list = []

    def walk(t):
        if typing.get_origin(t) is typing.Literal:
            found.extend(typing.get_args(t))
        for arg in typing.get_args(t):
            walk(arg)

    walk(annotations[0])
    return found


def candidates(project, path, value) -> list:
    if isinstance(value, bool):
        return [not value]
    if isinstance(value, int):
        return [value * 2, value + 1, value - 1] if value else [1, 2]
    if isinstance(value, float):
        return [value * 1.5, value / 2] if value else [0.1, 0.01]
    if isinstance(value, list):
        return [[v * 2 for v in value]]
    if path == ("results",):
        return ["out"]
    if path[-1] == "backbone":  # checked against TAO's registry, not a Literal
        return ["resnet_50", "resnet_34"]
    if len(path) == 3 and path[:2] == ("dataset", "classes"):
        return [f"{value}x"]
    return [c for c in choices(project, path) if c != value]


def sibling_swaps(tree) -> list:
    """For strings in lists of mappings (distillation bindings, quantized layers): the value
    of the same key in a sibling entry, a value the project accepts there."""
    out = []
    for path, value in project_leaves(tree):
        ints = [i for i, p in enumerate(path) if isinstance(p, int)]
        if not isinstance(value, str) or not ints:
            continue
        at = ints[-1]
        node = tree
        for part in path[:at]:
            node = node[part]
        for j, sibling in enumerate(node):
            if j != path[at] and isinstance(sibling, dict):
                other = sibling.get(path[-1]) if len(path) == at + 2 else None
                if isinstance(other, str) and other != value:
                    out.append((path, other))
    return out


def compiled_leaves(project_file: Path) -> dict[tuple[str, str, str], object]:
    out = {}
    for name, c in compile_project(load_project(project_file)).items():
        for action, spec in c.specs.items():
            for key, value in flat(spec.data):
                out[(name, action, key)] = value
    return out


def set_key(doc, path, value) -> None:
    node = doc
    for part in path[:-1]:
        if not isinstance(part, int) and node.get(part) is None:
            node[part] = {}
        node = node[part]
    node[path[-1]] = value


def trace(folder: Path, text: str):
    """{spec leaf: project keys whose change moved it}, the unperturbed leaves, the project."""
    project = make_project(folder, text)
    lp = load_project(project)
    base = compiled_leaves(project)
    yaml = YAML()
    full = lp.base.model_dump(mode="json", exclude={"experiments", "sweep", "overrides"})
    written = yaml.load(text)  # what the file sets, experiments included
    edits = [(path, c) for tree in (full, json.loads(json.dumps(written)))
             for path, value in project_leaves(tree)
             for c in candidates(lp.base, path, value)]
    ids = sorted(lp.base.dataset.classes)
    edits.append((("dataset", "classes", ids[-1] + 2), "extra"))
    edits += [(("inference", "colors", name), "white")  # in no default palette
              for name in lp.base.dataset.classes.values()]
    edits += sibling_swaps(json.loads(json.dumps(written)))
    moved: dict[tuple[str, str, str], set[str]] = {}
    done: set = set()
    for path, new in edits:
        if path in done:
            continue  # one working candidate per key is enough
        doc = yaml.load(text)
        try:
            set_key(doc, path, new)
        except (IndexError, KeyError, TypeError, AttributeError):
            continue
        buf = io.StringIO()
        yaml.dump(doc, buf)
        project.write_text(buf.getvalue())
        try:
            after = compiled_leaves(project)
        except TaomakeError:
            continue  # not a valid value for this key; the next candidate may be
        done.add(path)
        key = ".".join(map(str, path))
        for leaf in base.keys() & after.keys():  # (an action left out is not a value)
            if base[leaf] != after[leaf]:
                moved.setdefault(leaf, set()).add(key)
    project.write_text(text)
    return moved, base, lp


@cache
def schema(action: str) -> dict:
    return json.loads((schemas_dir() / f"{action}.schema.json").read_text())


def tao_default(action: str, dotted: str):
    root = schema(action)
    node = root
    for part in dotted.replace("[", ".").replace("]", "").split("."):
        if "$ref" in node:
            node = root["$defs"][node["$ref"].rsplit("/", 1)[1]]
        if part.isdigit():
            node = node.get("items", {})
            continue
        props = node.get("properties")
        if props is None or part not in props:
            return "<no default>"
        node = props[part]
    if "$ref" in node and "default" not in node:
        node = root["$defs"][node["$ref"].rsplit("/", 1)[1]]
    return node.get("default", "<no default>")


VARIANTS = ["cpu", "multi_gpu_fp16_engine", "int8_engine", "distill_and_quantize"]


@pytest.fixture(scope="module")
def traced(tmp_path_factory):
    """Each variant's trace; a spec key counts as traced when a project key moved it in any
    variant (fsdp's fp16, say, cannot move in the fsdp variant: fp32 is refused there)."""
    runs = {name: trace(tmp_path_factory.mktemp(name), variant(name)) for name in VARIANTS}
    # the same TAO key is written by the same template section in every action's spec
    keys = {_any_index(dotted) for moved, _, _ in runs.values() for _, _, dotted in moved}
    return runs, keys


def _any_index(dotted: str) -> str:
    import re

    return re.sub(r"\[\d+\]", "[*]", dotted)


@pytest.mark.parametrize("name", VARIANTS)
def test_every_spec_value_traces_to_a_project_key(name, traced):
    runs, keys = traced
    _, base, _ = runs[name]
    untraced = []
    for leaf, value in sorted(base.items(), key=str):
        _, action, dotted = leaf
        if _any_index(dotted) in keys or dotted.rsplit(".", 1)[-1].split("[")[0] in DATA_KEYS:
            continue
        plain = _any_index(dotted)
        if any(plain == c or plain.startswith((c + ".", c + "[")) for c in CONSTANTS):
            continue
        if tao_default(action, dotted) == value:
            continue  # TAO's own default, written out so the spec is complete
        untraced.append(f"{action}: {dotted} = {value!r}")
    assert untraced == [], "spec values no project key sets:\n" + "\n".join(untraced)


# Located at the key a user edits, which this test does not vary (a string naming something).
NOT_VARIED = {
    "distill.pretrained_teacher_model_path": "distill.teacher.checkpoint names the teacher",
}


def _as_located(key: str) -> str:
    """A moved project key in the form locations use: no `experiments.<name>.` prefix (an
    experiment's file positions are its own), list indices in brackets."""
    import re

    key = re.sub(r"^experiments\.[^.]+\.", "", key)
    return re.sub(r"\.(\d+)(?=\.|$)", r"[\1]", key)


@pytest.mark.parametrize("name", VARIANTS)
def test_error_locations_name_a_key_that_sets_the_value(name, traced):
    runs, _ = traced
    moved, base, lp = runs[name]
    wrong = []
    for (exp, action, dotted), keys in sorted(moved.items(), key=str):
        if (exp, action, dotted) not in base:
            continue
        at = project_location(lp, exp, action, dotted).key
        if dotted in NOT_VARIED and at == NOT_VARIED[dotted].split()[0]:
            continue
        # A data path is its source's folder under `results` (named by its place in the
        # project, not by its path): an error about it points at where the data is named.
        if re.sub(r"\[\d+\]", "", dotted).rsplit(".", 1)[-1] in DATA_KEYS \
                and at.startswith("dataset."):
            continue
        keys = {_as_located(k) for k in keys}
        if not any(k == at or k.startswith((f"{at}.", f"{at}[")) for k in keys):
            wrong.append(f"{action}: {dotted} located at {at!r}, set by {sorted(keys)}")
    assert wrong == [], "\n".join(wrong)


@pytest.mark.parametrize("name", VARIANTS)
def test_class_named_mappings_are_named_by_the_classes(name, traced):
    """ENTRIES_NAMED_BY's claim, checked: each such spec mapping has one entry per class, and
    an entry's location (what `taomake explain` shows when one appears or goes) is its
    class's line."""
    runs, _ = traced
    _, base, lp = runs[name]
    seen = 0
    for (exp, action, dotted), _value in sorted(base.items(), key=str):
        parent, _, entry = dotted.rpartition(".")
        if parent not in ENTRIES_NAMED_BY:
            continue
        seen += 1
        classes = lp.experiments[exp].project.dataset.classes
        assert entry in classes.values(), (action, dotted)
        cid = next(i for i, n in classes.items() if n == entry)
        assert entry_location(lp, exp, dotted).key == f"dataset.classes.{cid}"
    assert seen, "no class-named mapping in any spec"
    assert entry_location(lp, next(iter(lp.experiments)), "inference.color_map.gone").key \
        == "dataset.classes"
