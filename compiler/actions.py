"""The TAO RT-DETR actions taomake compiles specs for, and what each one reads.

One table, used by the templates' tests, the schema generator (per-action schemas) and the
build rules.  The section lists are the projection of docs/tao-notes.md §1 "actions required per
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
    """Last status.json message of a successful run (docs/tao-notes.md §3.3)."""
    sections: tuple[str, ...]
    """Top-level spec keys the action reads; nothing else is written into its spec."""
    needs_gpu: bool = False
    """Deploy actions need TensorRT, i.e. a GPU; they are left out on CPU-only hardware."""
    results_prefix: str = ""
    """Folder under the experiment's results that TAO gets as `results_dir` (TAO adds its
    subcommand): the quantized model's evaluate/export/inference write beside the float
    model's, not over them."""
    judge: str = ""
    """How taomake checks and records what the action produced (taomake.jobs.JUDGES);
    default: the action's name."""

    @property
    def judged_as(self) -> str:
        return self.judge or self.name


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
        # the quantized checkpoint (quantize's output), used as docs/tao-notes.md §7 says:
        # `is_quantized: true` and the same `quantize:` section
        Action("quantized_evaluate", "pytorch", "evaluate", "quantized/evaluate",
               "Evaluate finished successfully.", (*PYTORCH_COMMON, "evaluate", "quantize"),
               results_prefix="quantized", judge="evaluate"),
        Action("quantized_inference", "pytorch", "inference", "quantized/inference",
               "Inference finished successfully.", (*PYTORCH_COMMON, "inference", "quantize"),
               results_prefix="quantized", judge="inference"),
        Action("quantized_export", "pytorch", "export", "quantized/export",
               "Export finished successfully.", (*PYTORCH_COMMON, "export", "quantize"),
               results_prefix="quantized", judge="export"),
        Action("gen_trt_engine", "deploy", "gen_trt_engine", "gen_trt_engine",
               "Gen_trt_engine finished successfully.", ("results_dir", "gen_trt_engine"),
               needs_gpu=True),
        Action("trt_evaluate", "deploy", "evaluate", "trt_evaluate",
               "Trt_evaluate finished successfully.",
               ("results_dir", "dataset", "model", "evaluate"), needs_gpu=True,
               judge="evaluate"),
        Action("trt_inference", "deploy", "inference", "trt_inference",
               "Trt_inference finished successfully.",
               ("results_dir", "dataset", "model", "inference"), needs_gpu=True,
               judge="inference"),
    )
}

QUANTIZED_ACTIONS = tuple(n for n, a in ACTIONS.items() if a.results_prefix == "quantized")
PYTORCH_ACTIONS = tuple(n for n, a in ACTIONS.items() if a.flavor == "pytorch")
DEPLOY_ACTIONS = tuple(n for n, a in ACTIONS.items() if a.flavor == "deploy")


# taomake's own steps that are artifacts of an experiment (ExperimentPlan.all_artifacts),
# and the TAO actions whose results they read: a changed spec of one makes the step stale
DERIVED_FROM: dict[str, tuple[str, ...]] = {"detections": ("evaluate", "inference")}
