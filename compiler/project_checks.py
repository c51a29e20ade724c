"""Named consistency checks of project.yaml values and the local data files (docs/tao-notes.md
§5 and §8): what TAO would fail on, late or silently, each located at the project.yaml line
a user has to change (compiler.keymap)."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from .coco import compare_classes, read_coco_summary
from .context import CompileContext
from .errors import DataError
from .facts import input_paths, min_train_images, num_classes, splits, tao_label
from .keymap import at as _at
from .keymap import err as _err
from .keymap import warn as _warn
from .layout import IMAGE_SUFFIXES, is_archive, is_remote
from .model import Calibration
from .package_data import action_schema
from .runners import RUNNERS, kinds_that, one_of

DEFAULT_CALIBRATION = Calibration()


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
        label = tao_label(name)  # what TAO writes: "traffic light" -> traffic_light
        if label in seen:
            other = classes[seen[label]]
            _err(ctx, where, f"class name {name!r} (id {cid}) is used by id {seen[label]}"
                 if other == name else f"classes {other!r} (id {seen[label]}) and {name!r} "
                 f"(id {cid}) both become TAO label {label!r}",
                 "class names must be unique, also once spaces and punctuation become `_` "
                 "(inference maps labels back to classes)", "class_ids")
        seen.setdefault(label, cid)


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
