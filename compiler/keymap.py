"""Where in project.yaml a TAO spec key comes from: the map back from the compiled specs to
the project (`SOURCE_OF`), which every check's error, every warning and `taomake explain`
point with (file:line:col and the key).  Also the recording of a located problem."""

from __future__ import annotations

import re
from typing import Any

from .actions import ACTIONS
from .context import CompileContext
from .errors import Location, Problem
from .yamlsource import KeyPath

# TAO spec key (prefix) -> the project.yaml key that produces it, for error locations and
# `taomake explain`; a pair is (the key, what it is derived from when the file leaves the key
# out).  tests/unit/test_key_map.py checks every entry against what the compiler really does.
SOURCE_OF: dict[str, str | tuple[str, str]] = {
    "results_dir": "results",
    "wandb": "wandb",
    "dataset.train_data_sources": "dataset.train",
    "dataset.val_data_sources": "dataset.val",
    "dataset.test_data_sources": "dataset.test",
    "dataset.infer_data_sources.classmap": "results",  # written by taomake from the classes
    "dataset.infer_data_sources": "dataset.inference",
    "dataset.quant_calibration_data_sources": "dataset.calibration",
    "dataset.num_classes": "dataset.classes",
    "dataset.eval_class_ids": "dataset.classes",
    "dataset.dataset_type": "dataset.loader",
    "dataset.augmentation.train_spatial_size": "dataset.augmentation.train_size",
    "dataset.augmentation.eval_spatial_size": "dataset.augmentation.eval_size",
    "dataset": "dataset",
    "model.pretrained_backbone_path": "model.pretrained_backbone",
    "model.feat_channels": ("model.feat_channels", "model.hidden_dim"),
    "model.dropout_ratio": "model.dropout",
    "model.load_teacher_enc_dec": "distill.load_teacher_enc_dec",
    "model.distillation_loss_coef": "distill.loss_coef",
    "model": "model",
    "train.num_gpus": "hardware.gpus_per_node",
    "train.gpu_ids": ("hardware.gpu_ids", "hardware.gpus_per_node"),
    "train.num_nodes": "hardware.nodes",
    "train.num_epochs": "train.epochs",
    "train.pretrained_model_path": "train.pretrained",
    "train.enable_ema": "train.ema.enabled",
    "train.optim.lr_scheduler": "train.schedule.kind",
    "train.optim.lr_steps": "train.schedule.steps",
    "train.optim.lr_step_size": "train.schedule.step_size",
    "train.optim.lr_decay": "train.schedule.decay",
    "train.optim": "train",
    "train.precision": "hardware.precision",
    "train.distributed_strategy": "hardware.strategy",
    "train": "train",
    "evaluate.is_quantized": "quantize",
    "evaluate.checkpoint": "results",  # the selected checkpoint's Layout path
    "evaluate.trt_engine": "engine",
    "evaluate": "evaluate",
    "inference.color_map": "inference.colors",
    "inference.trt_engine": "engine",
    "inference.checkpoint": "results",
    "inference.is_quantized": "quantize",
    "inference": "inference",
    "export.input_height": ("export.size", "dataset.augmentation.eval_size"),
    "export.input_width": ("export.size", "dataset.augmentation.eval_size"),
    "export.checkpoint": "results",
    "export.onnx_file": "results",
    "export.opset_version": "export.opset",
    "export.gpu_id": "hardware.gpus_per_node",
    "export.on_cpu": "hardware.gpus_per_node",
    "export.is_quantized": "quantize",
    "export": "export",
    "gen_trt_engine.tensorrt.data_type": "engine.precision",
    "gen_trt_engine.tensorrt.workspace_size": "engine.workspace_mb",
    "gen_trt_engine.tensorrt.min_batch_size": "engine.batch.min",
    "gen_trt_engine.tensorrt.opt_batch_size": "engine.batch.opt",
    "gen_trt_engine.tensorrt.max_batch_size": "engine.batch.max",
    "gen_trt_engine.tensorrt.calibration.cal_batch_size": "engine.calibration.batch_size",
    "gen_trt_engine.tensorrt.calibration.cal_batches": "engine.calibration.batches",
    "gen_trt_engine.tensorrt.calibration.cal_cache_file": "engine",  # named after the engine
    "gen_trt_engine.tensorrt.calibration.cal_image_dir[*]": "dataset.calibration.images",
    "gen_trt_engine.tensorrt.calibration": "engine.calibration",
    "gen_trt_engine.batch_size": "export.batch_size",
    "gen_trt_engine.onnx_file": "results",
    "gen_trt_engine.trt_engine": "engine",  # named after precision, batch profile and image
    "gen_trt_engine": "engine",
    "distill.teacher": ("distill.teacher.model", "tao:model"),  # else the student's model
    "distill.pretrained_teacher_model_path": "distill.teacher.checkpoint",
    "distill.bindings[*].student_module_name": "distill.bindings[*].student",
    "distill.bindings[*].teacher_module_name": "distill.bindings[*].teacher",
    "distill": "distill",
    "quantize.skip_names": "quantize.skip",
    "quantize.layers[*].module_name": "quantize.layers[*].module",
    "quantize.layers[*].weights.dtype": "quantize.layers[*].weights",
    "quantize.layers[*].activations.dtype": "quantize.layers[*].activations",
    "quantize.device": "hardware.gpus_per_node",
    "quantize.model_path": "results",  # the selected checkpoint
    "quantize.results_dir": "results",
    "quantize": "quantize",
}


def key_path(dotted: str) -> KeyPath:
    out: list[str | int] = []
    for piece in dotted.split("."):
        name, _, rest = piece.partition("[")
        out.append(name)
        if rest:
            out.append(int(rest.rstrip("]")))
    return tuple(out)


def _written(project, project_key: str) -> bool:
    """Does the experiment's project set `project_key` itself (not by default)?"""
    node: Any = project
    for part in key_path(project_key):
        if hasattr(type(node), "model_fields"):
            if part not in node.model_fields_set:
                return False
            node = getattr(node, part)
        elif isinstance(node, (list, tuple)) and isinstance(part, int) and part < len(node):
            node = node[part]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return False
    return True


def locate(ctx: CompileContext, action: str, tao_path: str) -> Location:
    """The project.yaml position responsible for a TAO spec key."""
    smap = ctx.exp.smap
    for key, where in ctx.overridden.items():
        if key[0] == action and (tao_path == key[1] or tao_path.startswith(key[1] + ".")):
            return smap.locate(where, key=f"{'.'.join(map(str, where))} (sets {tao_path})")
    key = source_key(tao_path, lambda k: _written(ctx.exp.project, k))
    return smap.locate(key_path(key), key=key)


# Spec mappings whose entries are named after the classes (the value of an entry is set by its
# SOURCE_OF key): an entry that appears or goes, a class renamed, added or removed, comes from
# that class's line in the mapping named here.
ENTRIES_NAMED_BY = {"inference.color_map": "dataset.classes"}


def entry_location(lp, experiment: str, tao_path: str) -> Location | None:
    """Where an entry of a class-named spec mapping that appeared or went comes from: the line
    of the class of that name (for a name that went, the classes themselves); None for a key
    of any other mapping."""
    parent, _, name = tao_path.rpartition(".")
    section = ENTRIES_NAMED_BY.get(parent)
    if section is None:
        return None
    exp = lp.experiments[experiment]
    from .facts import tao_label

    ids = [i for i, n in exp.project.dataset.classes.items() if tao_label(n) == name]
    key = (*key_path(section), ids[0]) if ids else key_path(section)
    return exp.smap.locate(key, key=".".join(map(str, key)))


def _with_indices(key: str, indices: list[str]) -> str:
    for index in indices:
        key = key.replace("[*]", f"[{index}]", 1)
    return key


def source_key(tao_path: str, written=lambda key: True) -> str:
    """The project.yaml key of a TAO spec key, by SOURCE_OF's longest prefix (list indices
    kept; a pair falls back to what the value is derived from when `written(key)` is false;
    a `tao:` fallback is that TAO key's own source)."""
    indices = re.findall(r"\[(\d+)\]", tao_path)
    generic = re.sub(r"\[\d+\]", "[*]", tao_path)
    prefix = generic
    while prefix:
        if prefix in SOURCE_OF:
            source = SOURCE_OF[prefix]
            key, fallback = source if isinstance(source, tuple) else (source, None)
            # same name below the mapped prefix (model.hidden_dim -> model.hidden_dim)
            rest = generic[len(prefix):].lstrip(".")
            key = _with_indices(f"{key}.{rest}" if rest else key, indices)
            if fallback and not written(key):
                if fallback.startswith("tao:"):
                    return source_key(_with_indices(
                        fallback[4:] + (f".{rest}" if rest else ""), indices), written)
                return fallback
            return key
        prefix = prefix.rpartition(".")[0]
    return tao_path


def override_scope(project, action: str) -> str:
    """The `overrides:` section of an action: its own, or its float twin's for the quantized
    model's specs (overrides.evaluate applies to quantized_evaluate)."""
    return action if action in type(project.overrides).model_fields \
        else ACTIONS[action].judged_as


def project_location(lp, experiment: str, action: str, tao_path: str) -> Location:
    """Which project.yaml line sets a TAO spec key (for `taomake explain`)."""
    exp = lp.experiments[experiment]
    ctx = CompileContext(lp, exp)
    for scope in ("all", override_scope(exp.project, action)):
        for key in getattr(exp.project.overrides, scope):
            ctx.overridden[(action, str(key))] = ("overrides", scope, key)
    return locate(ctx, action, tao_path)


def at(ctx: CompileContext, project_key: str) -> Location:
    return ctx.exp.smap.locate(key_path(project_key), key=project_key)


def err(ctx: CompileContext, where: Location, msg: str, hint: str, check: str) -> None:
    ctx.problems.append(Problem(where, msg, hint, check))


def warn(ctx: CompileContext, where: Location, msg: str, hint: str, check: str) -> None:
    ctx.warnings.append(Problem(where, msg, hint, check))
