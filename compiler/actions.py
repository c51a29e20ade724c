"""The TAO RT-DETR actions taomake builds: one table, `ACTIONS`, owns what each one is.

Every other part asks it rather than naming actions: which sections its spec holds (the
projection of docs/tao-notes.md §1 "actions required per section": an edit to one action's
settings never changes another's spec), whether it trains, what built model it reads, when a
project builds it (and why not), which files it produces (from Layout), how its result is
judged and whether the report reads it.  Adding an action is a row here, a template
(references/spec_template_<name>.yaml.j2), a rule (rules/*.smk) and its generated schema
(tests/unit/test_actions.py checks every row has them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

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
    produces: Callable[[Any, dict[str, Any]], list[str]] = field(compare=False, repr=False,
                                                                 default=lambda lay, spec: [])
    """Its artifacts, the main one first: (the experiment's Layout, its spec data) -> paths.
    What the build targets by default, `taomake status` shows and the report reads."""
    built_when: Callable[[Any], str | None] = field(compare=False, repr=False,
                                                    default=lambda project: None)
    """(the project) -> None when the project builds it, else the one-line reason it does not
    (the GPU and TensorRT gates of `needs_gpu` actions come on top: compiler.compile)."""
    judge: str = ""
    """How taomake checks and records what the action produced (taomake.judges.JUDGES);
    default: the action's name."""
    trains: bool = False
    """A training: it saves checkpoints and resumes from them (resume guard, damaged-checkpoint
    repair, epoch progress, resubmitted at a SLURM time limit), spans every GPU and node, and
    its checkpoint is handed to the others (`taomake select`)."""
    reads: Literal["", "model", "quantized", "onnx", "engine"] = ""
    """The built model it starts from: the selected checkpoint, quantize's model, the ONNX,
    the TensorRT engine; "" for a training."""
    reported: bool = False
    """The report reads its artifacts (so a new inference never redraws it)."""
    upload_as: Literal["", "model", "onnx", "engine", "metrics"] = ""
    """Which of `upload.artifacts` its artifacts are pushed as ("": never); a training's is
    its selected checkpoint only."""
    needs_gpu: bool = False
    """Deploy actions need TensorRT, i.e. a GPU and a runner with TAO's deploy image."""
    overwrites: bool = True
    """TAO writes over what an earlier run left; False: it refuses (export asserts its ONNX
    is absent), so the job removes its artifacts first."""
    results_prefix: str = ""
    """Folder under the experiment's results that TAO gets as `results_dir` (TAO adds its
    subcommand): the quantized model's evaluate/export/inference write beside the float
    model's, not over them."""

    @property
    def judged_as(self) -> str:
        return self.judge or self.name


# --------------------------------------------------------------------------- what each produces


def _training(name: str):
    return lambda lay, spec: [lay.model(name), lay.curve(name)]


def _metrics(name: str):
    return lambda lay, spec: [lay.metrics(name)]


def _summary(name: str):
    return lambda lay, spec: [lay.inference_summary(name)]


def _onnx(name: str):
    return lambda lay, spec: [lay.onnx_of(name)]


def _quantized(lay, spec: dict[str, Any]) -> list[str]:
    return [lay.quantized(spec["quantize"]["backend"])]


def _engine(lay, spec: dict[str, Any]) -> list[str]:
    """The engine the spec names (keyed by precision, batch profile and image), and an INT8
    engine's calibration cache."""
    gen = spec["gen_trt_engine"]
    out = [gen["trt_engine"]]
    if gen["tensorrt"]["data_type"].lower() == "int8":
        out.append(gen["tensorrt"]["calibration"]["cal_cache_file"])
    return out


# ------------------------------------------------------------------ when a project builds it


def _unless(*needs: tuple[Callable[[Any], Any], str]) -> Callable[[Any], str | None]:
    """Built when every `(test, reason)` holds; else the first failing reason."""
    def when(p) -> str | None:
        return next((why for test, why in needs if not test(p)), None)

    return when


TEST = (lambda p: p.dataset.test, "no dataset.test split")
INFERENCE = (lambda p: p.dataset.inference, "no dataset.inference images")
QUANTIZE = (lambda p: p.quantize, "no `quantize:` section")
DISTILL = (lambda p: p.distill, "no `distill:` section")
# a real run: TAO 7.3.0's export rebuilds the model with BatchNorm folded and cannot load the
# quantizer state ("Unmatched keys in quantizer state_dict")
EXPORTABLE_QUANTIZED = (
    lambda p: p.quantize.backend != "modelopt.pytorch",
    "TAO 7.3.0 cannot export a modelopt.pytorch checkpoint (unmatched quantizer keys); "
    "evaluate and inference of it run")

PYTORCH_COMMON = ("results_dir", "wandb", "dataset", "model")

# In the order the build plans them: the training first (train or distill), then what reads
# its checkpoint, then quantization, then TensorRT.
ACTIONS: dict[str, Action] = {
    a.name: a
    for a in (
        Action("train", "pytorch", "train", "train", "Train finished successfully.",
               (*PYTORCH_COMMON, "train"), _training("train"),
               lambda p: "distill replaces train" if p.distill else None, trains=True,
               judge="training", reported=True, upload_as="model"),
        Action("distill", "pytorch", "distill", "distill", "Distill finished successfully.",
               (*PYTORCH_COMMON, "train", "distill"), _training("distill"), _unless(DISTILL),
               trains=True, judge="training", reported=True, upload_as="model"),
        Action("export", "pytorch", "export", "export", "Export finished successfully.",
               (*PYTORCH_COMMON, "export"), _onnx("export"), reads="model", reported=True,
               upload_as="onnx", overwrites=False),
        Action("evaluate", "pytorch", "evaluate", "evaluate", "Evaluate finished successfully.",
               (*PYTORCH_COMMON, "evaluate"), _metrics("evaluate"), _unless(TEST),
               reads="model", reported=True, upload_as="metrics"),
        Action("inference", "pytorch", "inference", "inference",
               "Inference finished successfully.", (*PYTORCH_COMMON, "inference"),
               _summary("inference"), _unless(INFERENCE), reads="model"),
        Action("quantize", "pytorch", "quantize", "quantize", "Quantize finished successfully.",
               (*PYTORCH_COMMON, "quantize"), _quantized, _unless(QUANTIZE), reads="model"),
        # the quantized checkpoint (quantize's output), used as docs/tao-notes.md §7 says:
        # `is_quantized: true` and the same `quantize:` section
        Action("quantized_evaluate", "pytorch", "evaluate", "quantized/evaluate",
               "Evaluate finished successfully.", (*PYTORCH_COMMON, "evaluate", "quantize"),
               _metrics("quantized_evaluate"), _unless(QUANTIZE, TEST), judge="evaluate",
               reads="quantized", reported=True, results_prefix="quantized"),
        Action("quantized_inference", "pytorch", "inference", "quantized/inference",
               "Inference finished successfully.", (*PYTORCH_COMMON, "inference", "quantize"),
               _summary("quantized_inference"), _unless(QUANTIZE, INFERENCE),
               judge="inference", reads="quantized", results_prefix="quantized"),
        Action("quantized_export", "pytorch", "export", "quantized/export",
               "Export finished successfully.", (*PYTORCH_COMMON, "export", "quantize"),
               _onnx("quantized_export"), _unless(QUANTIZE, EXPORTABLE_QUANTIZED),
               judge="export", reads="quantized", results_prefix="quantized", overwrites=False),
        Action("gen_trt_engine", "deploy", "gen_trt_engine", "gen_trt_engine",
               "Gen_trt_engine finished successfully.", ("results_dir", "gen_trt_engine"),
               _engine, reads="onnx", reported=True, upload_as="engine", needs_gpu=True),
        Action("trt_evaluate", "deploy", "evaluate", "trt_evaluate",
               "Trt_evaluate finished successfully.",
               ("results_dir", "dataset", "model", "evaluate"), _metrics("trt_evaluate"),
               _unless(TEST), judge="evaluate", reads="engine", reported=True,
               upload_as="metrics", needs_gpu=True),
        Action("trt_inference", "deploy", "inference", "trt_inference",
               "Trt_inference finished successfully.",
               ("results_dir", "dataset", "model", "inference"), _summary("trt_inference"),
               _unless(INFERENCE), judge="inference", reads="engine", needs_gpu=True),
    )
}

TRAININGS = tuple(n for n, a in ACTIONS.items() if a.trains)
QUANTIZED_ACTIONS = tuple(n for n, a in ACTIONS.items() if a.results_prefix == "quantized")
PYTORCH_ACTIONS = tuple(n for n, a in ACTIONS.items() if a.flavor == "pytorch")
DEPLOY_ACTIONS = tuple(n for n, a in ACTIONS.items() if a.flavor == "deploy")
REPORTED = tuple(n for n, a in ACTIONS.items() if a.reported)


@dataclass(frozen=True)
class Step:
    """A step of taomake's own that reads built artifacts (not a TAO action)."""

    name: str
    needs: tuple[str, ...]
    """The actions whose results it reads: it exists when all of them are built, and a
    changed spec of one makes it stale."""
    produces: Callable[[Any], list[str]] = field(compare=False, repr=False)
    """(the experiment's Layout) -> its artifacts."""
    shown_with: str = ""
    """The action whose artifacts it is listed with ("": a row of its own)."""
    switch: str = ""
    """The experiment setting that turns it off (ExperimentPlan attribute), if any."""


# taomake's own steps that are artifacts of an experiment (ExperimentPlan.all_artifacts)
STEPS: dict[str, Step] = {s.name: s for s in (
    # per-class scores under the class names, and the test-image grid
    Step("detections", ("evaluate", "inference"),
         lambda lay: [lay.per_class, lay.test_grid]),
    # the ONNX checked against PyTorch's evaluation (and its latency), shown with the export
    Step("parity", ("evaluate", "export"), lambda lay: [lay.parity], shown_with="export",
         switch="parity"),
)}
DERIVED_FROM: dict[str, tuple[str, ...]] = {name: s.needs for name, s in STEPS.items()
                                            if not s.shown_with}
