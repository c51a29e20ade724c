"""The TAO RT-DETR actions taomake compiles specs for, and what each one reads.

One table, used by the templates' tests, the schema generator (per-action schemas) and the
build rules.  The section lists are the projection of TAO-FACTS §1 "actions required per
section": a spec holds only what its action reads, so an edit to one action's settings never
changes another action's spec (and never triggers its rebuild).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Flavor = Literal["pytorch", "deploy"]


@dataclass(frozen=True)
class Action:
    name: str
    """taomake's name for the action; also the spec file stem (`specs/<name>.yaml`)."""
    flavor: Flavor
    """Which TAO package runs it: `pytorch` (nvidia-tao-pytorch) or `deploy` (TensorRT)."""
    subcommand: str
    """`rtdetr <subcommand>` inside the image."""
    results_subdir: str
    """Folder TAO writes under `results_dir` (deploy renames evaluate/inference)."""
    final_message: str
    """Last status.json message of a successful run (TAO-FACTS §3.3)."""
    sections: tuple[str, ...]
    """Top-level spec keys the action reads; nothing else is written into its spec."""
    needs_gpu: bool = False
    """Deploy actions need TensorRT, i.e. a GPU; they are left out on CPU-only hardware."""


PYTORCH_COMMON = ("results_dir", "wandb", "dataset", "model")

ACTIONS: dict[str, Action] = {
    a.name: a
    for a in (
        Action("train", "pytorch", "train", "train", "Train finished successfully.",
               (*PYTORCH_COMMON, "train")),
        Action("distill", "pytorch", "distill", "distill", "Distill finished successfully.",
               (*PYTORCH_COMMON, "train", "distill")),
        Action("evaluate", "pytorch", "evaluate", "evaluate", "Evaluate finished successfully.",
               (*PYTORCH_COMMON, "evaluate")),
        Action("inference", "pytorch", "inference", "inference",
               "Inference finished successfully.", (*PYTORCH_COMMON, "inference")),
        Action("export", "pytorch", "export", "export", "Export finished successfully.",
               (*PYTORCH_COMMON, "export")),
        Action("quantize", "pytorch", "quantize", "quantize", "Quantize finished successfully.",
               (*PYTORCH_COMMON, "quantize")),
        Action("gen_trt_engine", "deploy", "gen_trt_engine", "gen_trt_engine",
               "Gen_trt_engine finished successfully.", ("results_dir", "gen_trt_engine"),
               needs_gpu=True),
        Action("trt_evaluate", "deploy", "evaluate", "trt_evaluate",
               "Trt_evaluate finished successfully.",
               ("results_dir", "dataset", "model", "evaluate"), needs_gpu=True),
        Action("trt_inference", "deploy", "inference", "trt_inference",
               "Trt_inference finished successfully.",
               ("results_dir", "dataset", "model", "inference"), needs_gpu=True),
    )
}

PYTORCH_ACTIONS = tuple(n for n, a in ACTIONS.items() if a.flavor == "pytorch")
DEPLOY_ACTIONS = tuple(n for n, a in ACTIONS.items() if a.flavor == "deploy")
