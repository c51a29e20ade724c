"""Named consistency checks of the compiled specs, after overrides (the escape hatch can break
what the project model guaranteed): what TAO would fail on, each located at the project.yaml
line that sets the key (compiler.keymap)."""

from __future__ import annotations

from typing import Any

from .context import CompileContext
from .errors import Location
from .keymap import err as _err
from .keymap import locate


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
