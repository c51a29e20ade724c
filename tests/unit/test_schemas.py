"""schemas/: generated from TAO's dataclasses, valid JSON Schema, and in agreement with TAO.

Tests marked by the `tao_roots` fixture need the TAO wheels (downloaded once into the user
cache by taomake.tao_wheels).  In CI they must be there: a failed download fails the run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from taomake.compiler.actions import ACTIONS

from taomake import schemas as schemas_mod
from tests.helpers import REPO

SCHEMAS = REPO / "schemas"
SCHEMA_FILES = sorted(SCHEMAS.glob("*.schema.json"))


def load(name: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / name).read_text(encoding="utf-8"))


def obj(node: dict[str, Any]) -> dict[str, Any]:
    """The object branch of a (possibly Optional) node."""
    if node.get("type") == "object":
        return node
    return next(b for b in node["anyOf"] if b.get("type") == "object")


def prop(schema: dict[str, Any], dotted: str) -> dict[str, Any]:
    node = schema
    for part in dotted.split("."):
        node = obj(node)["properties"][part]
    return node


# --------------------------------------------------------------------------- (a) drift


def test_committed_schemas_match_generator(tao_roots, tmp_path):
    assert schemas_mod.regenerate(tmp_path) != []
    fresh = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    committed = {p.name: p.read_bytes() for p in SCHEMAS.iterdir()
                 if p.name in fresh or p.name.endswith(".schema.json")}
    stale = sorted(n for n in set(fresh) | set(committed) if fresh.get(n) != committed.get(n))
    assert not stale, f"schemas/ is out of date ({', '.join(stale)}): run `taomake schemas`"
    assert schemas_mod.regenerate(tmp_path) == [], "regenerate must only write what changed"


# --------------------------------------------------------------------------- (b) validity


def test_one_schema_per_action_plus_full():
    names = {p.name for p in SCHEMA_FILES}
    assert names == {f"{a}.schema.json" for a in ACTIONS} | {
        "rtdetr-pytorch.schema.json", "rtdetr-deploy.schema.json"}


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: p.name)
def test_schema_is_standard_draft_2020_12(path):
    text = path.read_text(encoding="utf-8")
    assert "Infinity" not in text and "NaN" not in text
    schema = json.loads(text)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("action", ACTIONS.values(), ids=lambda a: a.name)
def test_action_schema_holds_its_sections_only(action):
    schema = load(f"{action.name}.schema.json")
    assert list(schema["properties"]) == sorted(action.sections)  # sort_keys
    assert sorted(schema["required"]) == sorted(action.sections)
    assert schema["additionalProperties"] is False
    pkg = "nvidia-tao-deploy" if action.flavor == "deploy" else "nvidia-tao-pytorch"
    assert action.name in schema["title"] and pkg in schema["title"]


# --------------------------------------------------------------------------- (c) spot checks


def test_backbone_enum_is_tao_registry():
    for schema, path in ((load("train.schema.json"), "model.backbone"),
                         (load("distill.schema.json"), "distill.teacher.backbone")):
        enum = prop(schema, path)["enum"]
        for name in ("resnet_18", "fan_tiny_8_p4_hybrid", "convnextv2_nano", "edgenext_small"):
            assert name in enum, (path, name)
        assert "fan_tiny" not in enum  # in TAO's metadata options, not in its registry
        assert "fan_tiny" in prop(schema, path)["x-tao-valid-options"]


def test_required_fields():
    export = prop(load("export.schema.json"), "export")
    assert sorted(export["required"]) == ["checkpoint", "onnx_file"]
    assert "checkpoint" in prop(load("evaluate.schema.json"), "evaluate")["required"]
    assert "checkpoint" in prop(load("inference.schema.json"), "inference")["required"]
    distill = obj(prop(load("distill.schema.json"), "distill"))
    assert distill["required"] == ["pretrained_teacher_model_path"]
    binding = distill["properties"]["bindings"]["items"]
    assert binding["required"] == ["criterion", "student_module_name", "teacher_module_name"]
    assert binding["additionalProperties"] is False
    gen = prop(load("gen_trt_engine.schema.json"), "gen_trt_engine")
    assert sorted(gen["required"]) == ["onnx_file", "trt_engine"]


def test_types_and_defaults():
    train = load("train.schema.json")
    num_classes = prop(train, "dataset.num_classes")
    assert (num_classes["type"], num_classes["default"], num_classes["minimum"]) == (
        "integer", 80, 1)
    assert prop(load("export.schema.json"), "export.input_width")["default"] == 640  # not 960
    assert prop(train, "train.optim.lr")["type"] == "number"
    assert prop(train, "train.optim.optimizer")["enum"] == ["AdamW", "SGD"]  # declared options
    eval_ids = prop(train, "dataset.eval_class_ids")
    assert eval_ids["default"] is None and eval_ids["x-ui-default"] == [1]
    assert prop(train, "model.frozen_fm.backbone")["default"] == "radio_v2-l"
    assert prop(load("quantize.schema.json"), "quantize.layers")["anyOf"][0]["items"][
        "title"] == "LayerQuantizationConfig"


def test_additional_properties_false_everywhere():
    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node:
                assert node.get("additionalProperties") is False, where
            for k, v in node.items():
                walk(v, f"{where}.{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{where}[{i}]")

    for path in SCHEMA_FILES:
        walk(json.loads(path.read_text(encoding="utf-8")), path.name)


def test_data_sources_shapes():
    train = load("train.schema.json")
    tds = prop(train, "dataset.train_data_sources")
    array = next(b for b in tds["anyOf"] if b.get("type") == "array")
    assert array["items"] == {"type": "object", "additionalProperties": {"type": "string"}}
    infer = obj(prop(train, "dataset.infer_data_sources"))["additionalProperties"]
    assert {"type": "array"} in infer["anyOf"]


# --------------------------------------------------------------------------- (d) TAO agreement

# docs/tao-notes.md Appendix A: a minimal spec TAO accepts.
MINIMAL = """
results_dir: /results/exp1
dataset:
  train_data_sources:
    - image_dir: /data/train
      json_file: /data/train.json
  val_data_sources: {image_dir: /data/val, json_file: /data/val.json}
  test_data_sources: {image_dir: /data/val, json_file: /data/val.json}
  infer_data_sources: {image_dir: [/data/infer], classmap: /data/classmap.txt}
  num_classes: 4
  batch_size: 4
model:
  backbone: resnet_50
train: {num_gpus: 1, gpu_ids: [0], num_nodes: 1, num_epochs: 72}
evaluate:
  checkpoint: /results/exp1/train/model_epoch_071.pth
export:
  checkpoint: /results/exp1/train/model_epoch_071.pth
  onnx_file: /results/exp1/export/rtdetr.onnx
  input_height: 640
  input_width: 640
gen_trt_engine:
  onnx_file: /results/exp1/export/rtdetr.onnx
  trt_engine: /results/exp1/gen_trt_engine/rtdetr.fp16.engine
  tensorrt: {data_type: FP16, workspace_size: 4096, min_batch_size: 1, opt_batch_size: 4,
             max_batch_size: 4}
"""
# What the other actions' sections need on top (for the per-action projections).
EXTRA = """
wandb: {enable: false}
inference: {checkpoint: /results/exp1/train/model_epoch_071.pth,
            trt_engine: /results/exp1/gen_trt_engine/rtdetr.fp16.engine}
evaluate: {checkpoint: /results/exp1/train/model_epoch_071.pth,
           trt_engine: /results/exp1/gen_trt_engine/rtdetr.fp16.engine}
distill:
  teacher: {backbone: resnet_101}
  pretrained_teacher_model_path: /teacher.pth
  bindings: [{student_module_name: srcs, teacher_module_name: srcs, criterion: IOU, weight: 2}]
quantize:
  model_path: /results/exp1/train/model_epoch_071.pth
  layers: [{module_name: "*", weights: {dtype: int8}}]
"""


def full_spec() -> dict[str, Any]:
    return {**yaml.safe_load(MINIMAL), **yaml.safe_load(EXTRA)}


def tao_accepts(tmp_path: Path, spec: Any, flavor: str) -> bool:
    from tests.tao_oracle import TaoRejected, load_with_tao

    path = tmp_path / "spec.yaml"
    path.write_text(spec if isinstance(spec, str) else yaml.safe_dump(spec), encoding="utf-8")
    try:
        load_with_tao(path, flavor)  # type: ignore[arg-type]
    except TaoRejected:
        return False
    return True


def schema_accepts(schema: dict[str, Any], spec: Any) -> bool:
    data = yaml.safe_load(spec) if isinstance(spec, str) else spec
    return jsonschema.Draft202012Validator(schema).is_valid(data or {})


def schema_defaults(node: dict[str, Any], required: bool = False) -> Any:
    if "default" in node:
        return node["default"]
    if required:
        return "???"
    o = obj(node)
    req = set(o.get("required", ()))
    return {k: schema_defaults(v, k in req) for k, v in o["properties"].items()}


@pytest.mark.parametrize("flavor", ["pytorch", "deploy"])
def test_schema_defaults_are_what_tao_loads(tao_roots, tmp_path, flavor):
    from tests.tao_oracle import load_with_tao

    (tmp_path / "empty.yaml").write_text("{}\n")
    loaded = load_with_tao(tmp_path / "empty.yaml", flavor)  # type: ignore[arg-type]
    assert loaded == schema_defaults(load(f"rtdetr-{flavor}.schema.json"))


def test_minimal_spec_accepted_by_tao_and_full_schemas(tao_roots, tmp_path):
    for flavor in ("pytorch", "deploy"):
        assert tao_accepts(tmp_path, MINIMAL, flavor)
        assert schema_accepts(load(f"rtdetr-{flavor}.schema.json"), MINIMAL)


@pytest.mark.parametrize("action", ACTIONS.values(), ids=lambda a: a.name)
def test_each_action_projection_accepted_by_both(tao_roots, tmp_path, action):
    spec = {k: v for k, v in full_spec().items() if k in action.sections}
    assert set(spec) == set(action.sections)
    assert tao_accepts(tmp_path, spec, action.flavor)
    errors = [e.message for e in jsonschema.Draft202012Validator(
        load(f"{action.name}.schema.json")).iter_errors(spec)]
    assert not errors


# (yaml, flavor, TAO accepts, schema accepts).  Rows where they differ are deliberate: the
# schema is stricter than TAO (declared enums/ranges, no scalar coercion).
CASES = {
    "unknown_key": ("model: {foo: 1}", "pytorch", False, False),
    "unknown_top_key": ("foo: 1", "deploy", False, False),
    "str_for_int": ("dataset: {num_classes: abc}", "pytorch", False, False),
    "bool_for_int": ("dataset: {num_classes: true}", "pytorch", False, False),
    "float_for_int": ("dataset: {num_classes: 5.5}", "pytorch", False, False),
    "null_for_int": ("train: {num_epochs: null}", "pytorch", False, False),
    "int_for_float": ("train: {optim: {lr: 1}}", "pytorch", True, True),
    "mapping_for_train_sources": (
        "dataset: {train_data_sources: {image_dir: /a, json_file: /b}}", "pytorch", False, False),
    "list_value_in_train_sources": (
        "dataset: {train_data_sources: [{image_dir: [/a]}]}", "pytorch", False, False),
    "list_value_in_infer_sources": (
        "dataset: {infer_data_sources: {image_dir: [/a, /b], classmap: /c}}", "deploy", True, True),
    "string_image_dir_infer": (
        "dataset: {infer_data_sources: {image_dir: /a, classmap: /c}}", "pytorch", True, True),
    "null_value_in_sources": ("dataset: {val_data_sources: {image_dir: null}}", "pytorch",
                              False, False),
    "null_optional_int": ("inference: {checkpoint: /m.pth, input_width: null}", "pytorch",
                          True, True),
    "distill_null": ("distill: null", "pytorch", True, True),
    "binding_unknown_key": (
        "distill: {pretrained_teacher_model_path: /t, bindings: [{foo: x}]}", "pytorch",
        False, False),
    "binding_bad_weight": (
        ("distill: {pretrained_teacher_model_path: /t, bindings: [{student_module_name: a, "
         "teacher_module_name: b, criterion: L1, weight: abc}]}"), "pytorch", False, False),
    "quant_layer_unknown_key": (
        "quantize: {layers: [{module_name: x, weights: {dtype: int8, foo: 1}}]}", "pytorch",
        False, False),
    "scalar_for_list": ("train: {gpu_ids: 0}", "pytorch", False, False),
    # stricter than TAO, on purpose:
    "missing_required": ("inference: {input_width: 640}", "pytorch", True, False),  # ??? is
    # only an error when TAO reads it
    "unknown_backbone": ("model: {backbone: fan_tiny}", "pytorch", True, False),
    "below_valid_min": ("dataset: {num_classes: 0}", "pytorch", True, False),
    "coerced_str_to_int": ("dataset: {num_classes: '5'}", "pytorch", True, False),
    "undeclared_precision": ("train: {precision: fp64}", "pytorch", True, False),
}


@pytest.mark.parametrize("name", CASES)
def test_tao_and_schema_agree(tao_roots, tmp_path, name):
    text, flavor, tao_ok, schema_ok = CASES[name]
    assert tao_accepts(tmp_path, text, flavor) is tao_ok, "TAO's verdict changed"
    assert schema_accepts(load(f"rtdetr-{flavor}.schema.json"), text) is schema_ok


def test_oracle_refuses_non_yaml_names(tao_roots, tmp_path):
    from tests.tao_oracle import load_with_tao

    (tmp_path / "spec.yml").write_text("foo: 1\n")
    with pytest.raises(ValueError, match="only \\*.yaml"):
        load_with_tao(tmp_path / "spec.yml", "pytorch")


def test_oracle_returns_merged_dict_with_missing(tao_roots, tmp_path):
    from tests.tao_oracle import TaoRejected, load_with_tao

    (tmp_path / "a.yaml").write_text("export: {checkpoint: /m.pth}\n")
    cfg = load_with_tao(tmp_path / "a.yaml", "pytorch")
    assert cfg["export"]["checkpoint"] == "/m.pth"
    assert cfg["export"]["onnx_file"] == "???"
    assert cfg["export"]["input_width"] == 640
    assert cfg["model_name"] is None  # ExperimentConfig.__post_init__ does not run under Hydra
    (tmp_path / "b.yaml").write_text("model: {num_queries: many}\n")
    with pytest.raises(TaoRejected, match="model.num_queries"):
        load_with_tao(tmp_path / "b.yaml", "deploy")
