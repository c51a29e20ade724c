"""Named consistency checks (docs/tao-notes.md §5 and §8): what TAO would fail on, late or silently.

Project checks look at project.yaml values and the local data files; spec checks look at the
compiled specs *after* overrides (the escape hatch can break what the project model
guaranteed).  Each problem is located at the project.yaml line a user has to change.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any

from .actions import ACTIONS
from .coco import compare_classes, read_coco_summary
from .context import CompileContext
from .errors import DataError, Location, Problem
from .facts import input_paths, min_train_images, num_classes, splits
from .layout import IMAGE_SUFFIXES, is_archive, is_remote
from .model import Calibration
from .package_data import action_schema
from .runners import RUNNERS, kinds_that, one_of
from .yamlsource import KeyPath

DEFAULT_CALIBRATION = Calibration()

# TAO spec key (prefix) -> the project.yaml key that produces it, for error locations and
# `taomake explain`; a pair is (the key, what it is derived from when the file leaves the key
# out).  tests/test_key_map.py checks every entry against what the compiler really does.
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


def _path(dotted: str) -> KeyPath:
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
    for part in _path(project_key):
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
    return smap.locate(_path(key), key=key)


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
    ids = [i for i, n in exp.project.dataset.classes.items() if n == name]
    key = (*_path(section), ids[0]) if ids else _path(section)
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


def _at(ctx: CompileContext, project_key: str) -> Location:
    return ctx.exp.smap.locate(_path(project_key), key=project_key)


def _err(ctx: CompileContext, where: Location, msg: str, hint: str, check: str) -> None:
    ctx.problems.append(Problem(where, msg, hint, check))


def _warn(ctx: CompileContext, where: Location, msg: str, hint: str, check: str) -> None:
    ctx.warnings.append(Problem(where, msg, hint, check))


# --------------------------------------------------------------------------- project checks


def project_checks(ctx: CompileContext) -> None:
    for check in (check_class_ids, check_hardware, check_intervals, check_sizes, check_export,
                  check_backbone, check_engine, check_distill, check_quantize, check_colors,
                  check_local_files, check_annotations):
        check(ctx)


def check_class_ids(ctx: CompileContext) -> None:
    classes = ctx.exp.project.dataset.classes
    seen: dict[str, int] = {}
    for cid, name in classes.items():
        where = ctx.exp.smap.locate(("dataset", "classes", cid), key=f"dataset.classes.{cid}")
        if cid < 1:
            _err(ctx, where, f"class id {cid} is not allowed: ids start at 1",
                 "renumber your classes from 1 (TAO reserves label 0 when ids are 1-based; "
                 "num_classes becomes max(id) + 1)", "class_ids")
        if not name.strip():
            _err(ctx, where, f"class {cid} has an empty name", "give every class a name",
                 "class_ids")
        elif any(c.isspace() for c in name):
            # TAO writes KITTI label lines "<name> 0.00 0 ...": a space splits the name into
            # two fields, so every downstream reader (and summary.json counts) gets it wrong
            _err(ctx, where, f"class {cid} name {name!r} contains whitespace, which breaks "
                 "TAO's KITTI label files (the name is the first space-separated field)",
                 f"use {'_'.join(name.split())!r} (underscores or hyphens instead of spaces)",
                 "class_ids")
        if name in seen:
            _err(ctx, where, f"class name {name!r} is used by ids {seen[name]} and {cid}",
                 "class names must be unique (inference maps names to labels)", "class_ids")
        seen.setdefault(name, cid)


def check_hardware(ctx: CompileContext) -> None:
    hw = ctx.exp.project.hardware
    if hw.gpu_ids is not None and len(hw.gpu_ids) != hw.gpus_per_node:
        _err(ctx, _at(ctx, "hardware.gpu_ids"),
             f"{len(hw.gpu_ids)} GPU ids for gpus_per_node {hw.gpus_per_node}",
             "list exactly gpus_per_node ids, or drop gpu_ids to use 0..n-1", "gpu_ids")
    if hw.gpu_ids is not None and len(set(hw.gpu_ids)) != len(hw.gpu_ids):
        _err(ctx, _at(ctx, "hardware.gpu_ids"), "GPU ids repeat", "list each GPU once",
             "gpu_ids")
    runner = RUNNERS[hw.runner.kind]
    if hw.cpu_only:
        if hw.nodes > 1 and not runner.nodes_on_cpu:
            _err(ctx, _at(ctx, "hardware.nodes"),
                 f"multi-node training on CPU runs only with the "
                 f"{one_of(kinds_that('nodes_on_cpu'))} runner (the TAO CPU venv), not "
                 f"{hw.runner.kind}",
                 f"set hardware.runner.kind: {kinds_that('nodes_on_cpu')[0]}, or gpus_per_node "
                 ">= 1, or nodes: 1", "cpu")
        if hw.precision == "fp16":
            _err(ctx, _at(ctx, "hardware.precision"), "fp16 training does not run on CPU",
                 "use fp32 (or bf16) when gpus_per_node is 0", "cpu")
    if hw.nodes > 1 and not runner.nodes_on_gpu:
        # refused now, not after an allocation
        _err(ctx, _at(ctx, "hardware.nodes"),
             f"the {hw.runner.kind} runner cannot train on {hw.nodes} nodes "
             f"({runner.single_host_why})", "on a SLURM cluster use hardware.runner.kind: "
             "pyxis (or local with TAO installed on every node), or set hardware.nodes: 1",
             "multinode")
    if hw.pack_nodes and hw.nodes == 1:
        _err(ctx, _at(ctx, "hardware.pack_nodes"), "pack_nodes needs hardware.nodes > 1",
             "set nodes: 2 (or more), or drop pack_nodes", "multinode")
    if hw.strategy == "fsdp" and hw.precision != "fp16" and hw.gpus_per_node > 1:
        # PT:cv/rtdetr/scripts/train.py: fsdp on several devices sets precision '16-mixed'
        _err(ctx, _at(ctx, "hardware.precision"),
             f"{hw.precision} is not what would train: TAO switches fsdp on several GPUs to "
             "16-bit mixed precision whatever the spec says",
             "set hardware.precision: fp16 with fsdp, or use hardware.strategy: ddp for "
             f"{hw.precision}", "fsdp")


def check_intervals(ctx: CompileContext) -> None:
    t = ctx.exp.project.train
    for key in ("checkpoint_interval", "validation_interval"):
        if getattr(t, key) > t.epochs:
            _err(ctx, _at(ctx, f"train.{key}"), f"{key} {getattr(t, key)} > epochs {t.epochs}",
                 f"TAO asserts {key} <= num_epochs: lower it or train longer", "intervals")
    if t.epochs % t.checkpoint_interval:
        _warn(ctx, _at(ctx, "train.checkpoint_interval"),
              f"the last epoch is not saved ({t.epochs} is not a multiple of "
              f"{t.checkpoint_interval})", "make epochs a multiple of checkpoint_interval",
              "intervals")
    if isinstance(t.use_checkpoint, int) and not isinstance(t.use_checkpoint, bool):
        if t.use_checkpoint >= t.epochs:
            _err(ctx, _at(ctx, "train.use_checkpoint"),
                 f"epoch {t.use_checkpoint} does not exist (epochs are 0..{t.epochs - 1})",
                 "use best, last or an epoch below train.epochs", "checkpoint_selection")
        elif (t.use_checkpoint + 1) % t.checkpoint_interval:
            _err(ctx, _at(ctx, "train.use_checkpoint"),
                 f"epoch {t.use_checkpoint} is not saved with checkpoint_interval "
                 f"{t.checkpoint_interval}", "pick an epoch e with (e+1) % interval == 0",
                 "checkpoint_selection")


def check_sizes(ctx: CompileContext) -> None:
    p = ctx.exp.project
    aug = p.dataset.augmentation
    for key, size in (("train_size", aug.train_size), ("eval_size", aug.eval_size)):
        if any(v % 32 for v in size):
            _err(ctx, _at(ctx, f"dataset.augmentation.{key}"),
                 f"{size} is not a multiple of 32", "RT-DETR's largest stride is 32: use "
                 "e.g. 640 or 512", "spatial_size")
    h, w = aug.train_size
    if h != w and aug.multi_scales != []:
        # PT:cv/rtdetr/model/pl_rtdetr_model.py training_step: F.interpolate(data, [sz, sz])
        scales = aug.multi_scales or f"default [{h}]"
        _err(ctx, _at(ctx, "dataset.augmentation.train_size"),
             f"train_size {aug.train_size} is not square, but multi-scale training resizes "
             f"every batch to a square [s, s] (s from multi_scales {scales}), so TAO would "
             "not train at this size",
             "make train_size square, or set dataset.augmentation.multi_scales: [] to train "
             "at train_size (eval_size may stay non-square)", "spatial_size")
    if p.export.size is not None and p.export.size != aug.eval_size:
        _err(ctx, _at(ctx, "export.size"),
             f"export size {p.export.size} differs from eval_size {aug.eval_size}",
             "the model's anchors are fixed to eval_size: drop export.size (it defaults to "
             "eval_size) or change dataset.augmentation.eval_size", "export_size")


def check_export(ctx: CompileContext) -> None:
    p = ctx.exp.project
    ids = sorted(p.dataset.classes)
    if p.export.serialize_nvdsinfer and ids != list(range(1, len(ids) + 1)):
        # PT:cv/rtdetr/scripts/export.py get_class_info asserts num_classes == len(names) + 1
        _err(ctx, _at(ctx, "export.serialize_nvdsinfer"),
             f"DeepStream files need class ids 1..{len(ids)} without gaps (TAO asserts "
             f"num_classes == number of classes + 1 when writing labels.txt); these are "
             f"{', '.join(map(str, ids))}, num_classes {ids[-1] + 1}",
             "renumber the classes 1..n in the annotations and dataset.classes, or set "
             "export.serialize_nvdsinfer: false", "nvdsinfer")


def _backbone_names() -> list[str]:
    schema = action_schema("train")
    node: Any = schema
    for part in ("properties", "model"):
        node = node[part]
    while "$ref" in node:
        node = schema["$defs"][node["$ref"].rsplit("/", 1)[-1]]
    return list(node["properties"]["backbone"].get("enum", []))


def _check_backbone_name(ctx: CompileContext, name: str, key: str) -> None:
    names = _backbone_names()
    if names and name not in names:
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
        _err(ctx, _at(ctx, key), f"backbone {name!r} is not in TAO's backbone registry",
             (f"did you mean {' or '.join(map(repr, close))}? " if close else "")
             + "see schemas/train.schema.json for the list", "backbone")


def check_backbone(ctx: CompileContext) -> None:
    p = ctx.exp.project
    _check_backbone_name(ctx, p.model.backbone, "model.backbone")
    if p.distill and "backbone" in p.distill.teacher.model:
        _check_backbone_name(ctx, str(p.distill.teacher.model["backbone"]),
                             "distill.teacher.model.backbone")


def check_engine(ctx: CompileContext) -> None:
    p = ctx.exp.project
    if p.hardware.cpu_only:
        return
    b = p.engine.batch
    if not b.min <= b.opt <= b.max:
        _err(ctx, _at(ctx, "engine.batch"), f"batch profile min {b.min} <= opt {b.opt} <= max "
             f"{b.max} does not hold", "order the batch sizes", "trt_batch_profile")
    if b.max < p.dataset.batch_size and (p.dataset.test or p.dataset.inference):
        _err(ctx, _at(ctx, "engine.batch.max"),
             f"engine max batch {b.max} < dataset.batch_size {p.dataset.batch_size}",
             "TensorRT evaluate/inference run at dataset.batch_size: raise engine.batch.max",
             "trt_batch_profile")
    if p.export.batch_size != -1 and not (b.min == b.opt == b.max == p.export.batch_size):
        _err(ctx, _at(ctx, "export.batch_size"),
             f"a static ONNX batch ({p.export.batch_size}) fixes the engine batch",
             "use export.batch_size: -1 or set engine.batch min/opt/max to it",
             "trt_batch_profile")
    if p.engine.workspace_mb % 1024:
        _err(ctx, _at(ctx, "engine.workspace_mb"), f"{p.engine.workspace_mb} MB is not a "
             "multiple of 1024", "TAO passes workspace_mb // 1024 GB to TensorRT", "workspace")
    if p.engine.precision == "INT8":
        # DP:cv/deformable_detr/engine_builder.py calibrates with ImageNet mean/std while
        # RT-DETR inference feeds 0..1 without normalisation (docs/tao-notes.md §8)
        _warn(ctx, _at(ctx, "engine.precision"), "TAO calibrates RT-DETR INT8 engines with "
              "the Deformable-DETR preprocessing (ImageNet mean/std), not RT-DETR's (0..1): "
              "the calibration ranges may not fit and accuracy can drop",
              "compare trt_evaluate's mAP with PyTorch evaluate's; FP16 is the safer choice",
              "int8_calibration")
        if p.dataset.calibration is None:
            _err(ctx, _at(ctx, "engine.precision"), "INT8 needs calibration images",
                 "add dataset.calibration.images (a few hundred representative images), "
                 "or use FP16", "int8_calibration")
        else:
            cal = p.engine.calibration or DEFAULT_CALIBRATION
            folder = _local_dir(ctx, p.dataset.calibration.images)
            if folder is not None and folder.is_dir():
                n = sum(1 for f in folder.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
                if n < cal.batches * cal.batch_size:
                    _err(ctx, _at(ctx, "engine.calibration"),
                         f"{n} calibration images < batches x batch_size = "
                         f"{cal.batches * cal.batch_size}",
                         "add images or lower engine.calibration.batches", "int8_calibration")


def check_distill(ctx: CompileContext) -> None:
    p = ctx.exp.project
    if not p.distill:
        return
    teacher_hidden = p.distill.teacher.model.get("hidden_dim", p.model.hidden_dim)
    for i, b in enumerate(p.distill.bindings):
        key = f"distill.bindings[{i}]"
        if b.criterion != "IOU":
            # PT:cv/rtdetr/distillation/distiller.py makes a CaptureModule per L1/L2/KL binding
            # but never attaches its hook (DINO's distiller enters them with an ExitStack): the
            # captured outputs stay None and the first training step fails (run here)
            _err(ctx, _at(ctx, f"{key}.criterion"), f"{b.criterion} bindings do not work in "
                 "TAO 7.3.0's RT-DETR distiller: it never hooks the modules, so the first "
                 "training step fails ('NoneType' object is not iterable)",
                 "use IOU bindings on srcs or dsrcs (student and teacher the same)",
                 "distill_bindings")
        if b.criterion == "IOU":
            if b.student not in ("srcs", "dsrcs"):
                _err(ctx, _at(ctx, f"{key}.student"), f"IOU binding on {b.student!r}",
                     "IOU compares feature maps: student must be srcs or dsrcs",
                     "distill_bindings")
            if b.student != b.teacher:
                _err(ctx, _at(ctx, f"{key}.teacher"), f"IOU binding pairs {b.student!r} with "
                     f"{b.teacher!r}", "IOU needs the same module name on both sides",
                     "distill_bindings")
            if teacher_hidden != p.model.hidden_dim:
                _err(ctx, _at(ctx, key), f"IOU binding with teacher hidden_dim {teacher_hidden}"
                     f" != student {p.model.hidden_dim}", "IOU multiplies the feature maps: "
                     "use equal hidden_dim or an L2 binding", "distill_bindings")
            # srcs: one map per backbone level; dsrcs: one per decoder feature level
            field = "return_interm_indices" if b.student == "srcs" else "num_feature_levels"
            mine = getattr(p.model, field)
            theirs = p.distill.teacher.model.get(field, mine)
            levels = (len(mine), len(theirs)) if field == "return_interm_indices" else \
                (mine, theirs)
            if levels[0] != levels[1]:
                _err(ctx, _at(ctx, key), f"IOU binding on {b.student!r} pairs the student's "
                     f"{levels[0]} feature levels with the teacher's {levels[1]} "
                     f"(model.{field})", "give teacher and student the same feature levels, "
                     "or use an L2 binding on a module both have", "distill_bindings")
    unknown = set(p.distill.teacher.model) - set(type(p.model).model_fields)
    for k in sorted(unknown):
        close = difflib.get_close_matches(k, list(p.model.model_fields), n=1)
        _err(ctx, _at(ctx, f"distill.teacher.model.{k}"), f"unknown model key {k!r}",
             f"did you mean {close[0]!r}?" if close else "use model keys", "distill_teacher")
    ref = p.distill.teacher.checkpoint
    if ref.startswith("experiment:"):
        name = ref.split(":", 1)[1]
        exps = ctx.lp.experiments
        if name not in exps:
            _err(ctx, _at(ctx, "distill.teacher.checkpoint"), f"no experiment named {name!r}",
                 f"use one of: {', '.join(exps)}", "distill_teacher")
        elif name == ctx.exp.name:
            _err(ctx, _at(ctx, "distill.teacher.checkpoint"), "an experiment cannot be its own "
                 "teacher", "point at another experiment or a .pth file", "distill_teacher")


# modelopt.pytorch: TAO's options list minmax/max/entropy, but nvidia-modelopt 0.47 registers
# only `max` of them ("Algorithm minmax not found in CalibrateModeRegistry!", a real run)
QUANT_ALGORITHMS = {"modelopt.pytorch": {"max"},
                    "modelopt.onnx": {"max", "entropy", "awq_clip", "awq_lite", "awq_full",
                                      "rtn_dq"}}


def check_quantize(ctx: CompileContext) -> None:
    p = ctx.exp.project
    q = p.quantize
    if not q:
        return
    if q.backend == "torchao":
        if q.mode != "weight_only_ptq":
            _err(ctx, _at(ctx, "quantize.mode"), "torchao does weight-only PTQ only",
                 "use mode: weight_only_ptq, or backend: modelopt.pytorch", "quantize_dtypes")
        for i, layer in enumerate(q.layers):
            if layer.activations not in (None, "native"):
                _err(ctx, _at(ctx, f"quantize.layers[{i}].activations"),
                     "torchao ignores activation dtypes", "drop activations, or use "
                     "backend: modelopt.pytorch with mode: static_ptq", "quantize_dtypes")
    if q.backend == "modelopt.onnx":
        # taomake hands every quantize job the selected .pth as model_path and expects
        # quantized_model_<backend>.pth; modelopt.onnx reads an ONNX and writes
        # quantized_model.onnx (PT:core/quantization): it could never succeed here
        _err(ctx, _at(ctx, "quantize.backend"), "modelopt.onnx is not wired up yet: it "
             "quantizes the exported ONNX (and writes quantized_model.onnx), while taomake's "
             "quantize step passes the PyTorch checkpoint", "use backend: torchao (weight-only "
             "PTQ, runs on CPU) or modelopt.pytorch", "quantize_backend")
        dtypes = {d for layer in q.layers for d in (layer.weights, layer.activations)
                  if d not in (None, "native")}
        if len(dtypes) > 1:
            _err(ctx, _at(ctx, "quantize.layers"), f"modelopt.onnx uses one dtype for the "
                 f"whole model; got {', '.join(sorted(dtypes))}", "use the same dtype in "
                 "every layer", "quantize_dtypes")
        if "fp8_e5m2" in dtypes:
            _err(ctx, _at(ctx, "quantize.layers"), "modelopt.onnx supports int8 or "
                 "fp8_e4m3fn", "use int8 or fp8_e4m3fn", "quantize_dtypes")
    if q.device == "trt" and q.backend != "modelopt.onnx":
        _err(ctx, _at(ctx, "quantize.device"), "device trt is only valid for modelopt.onnx",
             "use cuda or cpu", "quantize_dtypes")
    allowed = QUANT_ALGORITHMS.get(q.backend)
    if allowed and q.algorithm is not None and q.algorithm not in allowed:
        _err(ctx, _at(ctx, "quantize.algorithm"),
             f"{q.backend} does not support algorithm {q.algorithm!r}",
             f"use one of: {', '.join(sorted(allowed))}", "quantize_dtypes")
    if q.mode == "static_ptq" and p.dataset.calibration is None:
        _err(ctx, _at(ctx, "quantize.mode"), "static PTQ needs calibration images",
             "add dataset.calibration.images", "quantize_dtypes")
    elif q.mode == "static_ptq" and not p.dataset.calibration.annotations:
        # PT:cv/rtdetr/dataloader/pl_od_data_module.py builds the calibration set as a COCO
        # dataset: without a json_file it fails with "No such file or directory: ''"
        _err(ctx, _at(ctx, "dataset.calibration"), "static PTQ reads the calibration images "
             "through a COCO file (TAO's calibration loader)", "add "
             "dataset.calibration.annotations (e.g. the val split's images and annotations)",
             "quantize_dtypes")
    if q.backend == "modelopt.pytorch" and q.mode != "static_ptq":
        # TAO 7.3.0 (PT:core/quantization): "Unsupported mode 'weight_only_ptq' for backend
        # 'modelopt.pytorch'. Supported modes: ['static_ptq']" (seen on a real run)
        _err(ctx, _at(ctx, "quantize.mode"), "modelopt.pytorch does static PTQ only",
             "use mode: static_ptq (with dataset.calibration), or backend: torchao for "
             "weight-only PTQ", "quantize_dtypes")
    if not q.layers:
        _err(ctx, _at(ctx, "quantize.layers"), "no layers to quantize",
             "list at least one {module, weights} entry", "quantize_dtypes")


def check_colors(ctx: CompileContext) -> None:
    p = ctx.exp.project
    if p.inference.colors:
        names = set(p.dataset.classes.values())
        for name in p.inference.colors:
            if name not in names:
                close = difflib.get_close_matches(name, sorted(names), n=1)
                _err(ctx, ctx.exp.smap.locate(("inference", "colors", name),
                                              key=f"inference.colors.{name}"),
                     f"{name!r} is not a class name",
                     f"did you mean {close[0]!r}?" if close else "use dataset.classes names",
                     "colors")


def _local_dir(ctx: CompileContext, path: str) -> Path | None:
    if is_remote(path):
        return None
    return ctx.lp.root / path


def check_local_files(ctx: CompileContext) -> None:
    for key, path, kind in input_paths(ctx.exp.project):
        if is_remote(path):
            continue
        full = ctx.lp.root / path
        if kind == "images" and not is_archive(path):
            if not full.is_dir():
                _err(ctx, _at(ctx, key), f"image folder {path!r} does not exist"
                     if not full.exists() else f"{path!r} is not a folder",
                     "fix the path (relative to project.yaml) or create the folder",
                     "data_files")
        elif not full.is_file():
            _err(ctx, _at(ctx, key), f"file {path!r} does not exist",
                 "fix the path (relative to project.yaml)", "data_files")


def check_annotations(ctx: CompileContext) -> None:
    """Category ids in the annotations vs the declared classes and num_classes
    (docs/tao-notes.md §5)."""
    p = ctx.exp.project
    classes = p.dataset.classes
    n_classes = num_classes(p.dataset)
    train_images = 0
    for split in splits(p.dataset):
        key, s = split.key, split.source
        if is_remote(s.annotations):
            continue  # checked after staging
        path = ctx.lp.root / s.annotations
        if not path.is_file():
            continue  # reported by check_local_files
        try:
            summary = read_coco_summary(path)
        except DataError as exc:
            message, _, hint = str(exc).partition("\n    fix: ")
            _err(ctx, _at(ctx, f"{key}.annotations"), message, hint or "fix or replace the file",
                 "annotations")
            continue
        if split.role == "train":
            train_images += summary.n_images
        if summary.n_images == 0:
            _err(ctx, _at(ctx, f"{key}.annotations"), f"{s.annotations} has no images",
                 "point the split at a non-empty annotations file", "annotations")
        mismatch = compare_classes(summary, classes, n_classes)
        if mismatch.undeclared:
            names = ", ".join(f"{i} ({summary.categories.get(i, '?')}"
                              + (f", first in {summary.first_use[i]}" if i in summary.first_use
                                 else ", in categories") + ")" for i in mismatch.undeclared)
            over = [i for i in mismatch.undeclared if i in mismatch.out_of_range]
            _err(ctx, _at(ctx, f"{key}.annotations"),
                 f"{s.annotations} uses category ids not in dataset.classes: {names}"
                 + (f"; ids >= num_classes {n_classes} would crash TAO's matcher"
                    if over else ""),
                 "declare them in dataset.classes (num_classes follows as max id + 1)",
                 "annotation_category_ids")
        if mismatch.renamed:
            _warn(ctx, _at(ctx, f"{key}.annotations"), "class names differ from the file: " +
                  ", ".join(f"{i}: file {a!r} vs project {b!r}" for i, (a, b) in
                            mismatch.renamed.items()), "rename in dataset.classes if unintended",
                  "class_names")
    need = min_train_images(p)
    if train_images and train_images < need:
        _err(ctx, _at(ctx, "dataset.batch_size"),
             f"{train_images} training images < batch_size x GPUs x nodes = {need}",
             "TAO asserts one full batch per device: lower dataset.batch_size", "batch_size")


# --------------------------------------------------------------------------- spec checks


def spec_checks(ctx: CompileContext, specs: dict[str, dict[str, Any]], d: dict[str, Any]) -> None:
    for action, spec in specs.items():
        _no_missing(ctx, action, spec, "")
        model = spec.get("model")
        if model:
            _model_consistency(ctx, action, model, spec.get("dataset", {}).get("num_classes",
                                                                              d["num_classes"]))
        train = spec.get("train")
        if train:
            if train.get("num_gpus") != len(train.get("gpu_ids", [])):
                _err(ctx, locate(ctx, action, "train.num_gpus"),
                     f"num_gpus {train.get('num_gpus')} != len(gpu_ids) "
                     f"{len(train.get('gpu_ids', []))}", "keep them equal", "gpus")
            optimizer = train.get("optim", {}).get("optimizer", "AdamW")
            if optimizer != "AdamW":
                _err(ctx, locate(ctx, action, "train.optim.optimizer"),
                     f"optimizer {optimizer!r} is not implemented by RT-DETR",
                     "use AdamW (TAO raises NotImplementedError for SGD)", "optimizer")
        export = spec.get("export")
        aug = spec.get("dataset", {}).get("augmentation", {})
        if export and "eval_spatial_size" in aug:
            size = [export.get("input_height"), export.get("input_width")]
            if size != list(aug["eval_spatial_size"]):
                _err(ctx, locate(ctx, action, "export.input_height"),
                     f"export input {size} != eval_spatial_size {aug['eval_spatial_size']}",
                     "export at the evaluation size", "export_size")
            if any(isinstance(v, int) and v % 32 for v in size):
                _err(ctx, locate(ctx, action, "export.input_height"),
                     f"export input {size} is not a multiple of 32", "use multiples of 32",
                     "export_size")
    if "distill" in specs:
        teacher = specs["distill"].get("distill", {}).get("teacher")
        if teacher:
            _model_consistency(ctx, "distill", teacher, d["num_classes"], prefix="distill.teacher")


def _no_missing(ctx: CompileContext, action: str, node: Any, path: str) -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            _no_missing(ctx, action, v, f"{path}.{k}" if path else str(k))
    elif isinstance(node, list):
        for v in node:
            _no_missing(ctx, action, v, path)
    elif node == "???":
        _err(ctx, locate(ctx, action, path), f"{path} is left as ??? (required by TAO)",
             "give it a value", "no_missing")


def _model_consistency(ctx: CompileContext, action: str, m: dict[str, Any], num_classes: int,
                       prefix: str = "model") -> None:
    def at(key: str) -> Location:
        return locate(ctx, action, f"{prefix}.{key}")

    rii, strides, chans = (m.get("return_interm_indices", []), m.get("feat_strides", []),
                           m.get("feat_channels", []))
    levels = m.get("num_feature_levels", 3)
    if not len(rii) == len(strides) == len(chans):
        _err(ctx, at("feat_strides"), f"return_interm_indices ({len(rii)}), feat_strides "
             f"({len(strides)}) and feat_channels ({len(chans)}) must have the same length",
             "one entry per backbone feature map, e.g. [1,2,3] / [8,16,32]", "feature_levels")
    elif len(rii) > levels:
        _err(ctx, at("num_feature_levels"), f"{len(rii)} feature maps > num_feature_levels "
             f"{levels}", "set num_feature_levels to the number of feature maps",
             "feature_levels")
    hidden = m.get("hidden_dim", 256)
    if any(c != hidden for c in chans):
        _err(ctx, at("feat_channels"), f"feat_channels {chans} must all equal hidden_dim "
             f"{hidden}", "drop feat_channels (it defaults to hidden_dim per level)",
             "feat_channels_hidden_dim")
    for i in m.get("use_encoder_idx", []):
        if i >= len(rii):
            _err(ctx, at("use_encoder_idx"), f"use_encoder_idx {i} >= number of feature maps "
                 f"{len(rii)}", "use an index of return_interm_indices", "encoder_idx")
    nheads = m.get("nheads", 8)
    if hidden % 4 or hidden % nheads:
        _err(ctx, at("hidden_dim"), f"hidden_dim {hidden} must be divisible by 4 and by "
             f"nheads {nheads}", "use e.g. 64, 128 or 256", "hidden_dim")
    nq, ns = m.get("num_queries", 300), m.get("num_select", 300)
    if ns > nq * num_classes:
        _err(ctx, at("num_select"), f"num_select {ns} > num_queries x num_classes = "
             f"{nq} x {num_classes}", "lower num_select (top-k over all query/class scores)",
             "num_select")
