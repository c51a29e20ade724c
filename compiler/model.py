"""The typed project model: what a user writes in project.yaml.

Every model forbids unknown keys (typos are errors with a "did you mean").  Field descriptions
are the reference documentation: docs/reference.md (project.yaml's keys) is generated from them.
Values that users get wrong are *derived* (num_classes, feat_channels, export size, classmaps,
gpu ids inside the job) instead of asked for; see `taomake.compiler.compile`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator

from .hardware import Hardware, PosInt, Strict, Tao
from .layout import NAME_RE, SHARED_FOLDERS
from .urls import CACHE_URL, S3_URL, refuse_credentials

Prob = Annotated[float, Field(ge=0.0, le=1.0)]
Size2 = Annotated[list[Annotated[int, Field(ge=32)]], Field(min_length=2, max_length=2)]
# a path or URL taomake may show: never with credentials in it (compiler.urls)
PathOrUrl = Annotated[str, BeforeValidator(refuse_credentials)]


# --------------------------------------------------------------------------- dataset


class Split(Strict):
    """An annotated split: images plus a COCO annotations file."""

    images: PathOrUrl = Field(description="Image folder or images.tar.gz/.tar/.zip; local path "
                          "(relative to project.yaml) or s3:// URI.")
    annotations: PathOrUrl = Field(description="COCO detection annotations.json; local or s3://.")


class ImageSource(Strict):
    """Images only (inference, calibration)."""

    images: PathOrUrl = Field(description="Image folder or archive; local path or s3:// URI.")


class CalibrationSource(Strict):
    """Calibration images; static quantization also reads a COCO file listing them."""

    images: PathOrUrl = Field(description="Image folder or archive; local path or s3:// URI.")
    annotations: PathOrUrl | None = Field(
        None, description="COCO annotations.json of these images (boxes not needed): "
        "quantize's static_ptq builds its calibration loader from it (INT8 engines read "
        "the images only).")


class Augmentation(Strict):
    train_size: Size2 = Field([640, 640], description="[height, width] of training "
                              "images (multiple of 32).")
    eval_size: Size2 = Field([640, 640], description="[height, width] for evaluation, "
                             "inference and export (multiple of 32); the ONNX/engine input size.")
    multi_scales: list[Annotated[int, Field(ge=32)]] | None = Field(
        None, description="Square sizes for multi-scale training. Default: TAO's 480..800 list "
        "for 640 training, else [train height].")
    distortion_prob: Prob = Field(0.8, description="Photometric distortion probability.")
    iou_crop_prob: Prob = Field(0.8, description="IoU random crop probability.")
    preserve_aspect_ratio: bool = Field(False, description="Letterbox instead of stretching.")


class Dataset(Strict):
    classes: dict[int, str] = Field(
        description="Class id -> name, as in your annotations (ids >= 1, gaps allowed). "
        "TAO's num_classes is derived as max(id) + 1.")
    train: list[Split] = Field(min_length=1, description="One or more training splits.")
    val: Split = Field(description="Validation split (validated every validation_interval).")
    test: Split | None = Field(None, description="Test split for evaluate; none: no evaluate.")
    inference: ImageSource | None = Field(
        None, description="Images to run inference on; none: no inference.")
    calibration: CalibrationSource | None = Field(
        None, description="Calibration images for INT8 engines and static quantization.")
    batch_size: PosInt = Field(4, description="Images per batch per GPU (all actions).")
    workers: PosInt = Field(8, description="Data loader workers per GPU.")
    loader: Literal["serialized", "default"] = Field(
        "serialized", description="TAO dataset_type; serialized keeps annotations in shared "
        "memory (needs hardware.shm_size).")
    pin_memory: bool = Field(True, description="Pin host memory in data loaders.")
    augmentation: Augmentation = Field(Augmentation(), description="Image sizes and augmentation.")


# --------------------------------------------------------------------------- model


class Model(Strict):
    backbone: str = Field("resnet_50", description="Backbone name from TAO's registry "
                          "(resnet_18/34/50/101, convnextv2_*, edgenext_*, fan_*_p4_hybrid...).")
    pretrained_backbone: str | None = Field(None, description="Backbone weights (.pth).")
    train_backbone: bool = Field(True, description="Update backbone weights while training.")
    num_queries: PosInt = Field(300, description="Object queries of the decoder.")
    num_select: PosInt = Field(300, description="Top-k detections kept; <= num_queries * "
                               "num_classes.")
    num_feature_levels: Annotated[int, Field(ge=1, le=4)] = Field(
        3, description="Feature levels the decoder attends to (>= number of feature maps).")
    return_interm_indices: list[Annotated[int, Field(ge=0, le=3)]] = Field(
        [1, 2, 3], description="Backbone stages used as feature maps.")
    feat_strides: list[PosInt] = Field([8, 16, 32], description="Stride of each feature map.")
    feat_channels: list[PosInt] | None = Field(
        None, description="Default: hidden_dim for every level (TAO requires that).")
    hidden_dim: PosInt = Field(256, description="Transformer width (divisible by nheads and 4).")
    nheads: PosInt = Field(8, description="Attention heads.")
    enc_layers: PosInt = Field(1, description="Encoder layers.")
    dec_layers: PosInt = Field(6, description="Decoder layers.")
    dim_feedforward: PosInt = Field(1024, description="Feed-forward width.")
    dn_number: Annotated[int, Field(ge=0)] = Field(100, description="Denoising queries.")
    use_encoder_idx: list[Annotated[int, Field(ge=0)]] = Field(
        [2], description="Feature maps that go through the encoder (indexes into them).")
    dropout: Prob = Field(0.0, description="Transformer dropout.")


# --------------------------------------------------------------------------- actions


class Schedule(Strict):
    kind: Literal["MultiStep", "StepLR"] = Field("MultiStep", description="LR schedule.")
    steps: list[PosInt] = Field([1000], description="MultiStep: epochs at which lr decays.")
    step_size: PosInt = Field(1000, description="StepLR: epochs between decays.")
    decay: Annotated[float, Field(gt=0.0, le=1.0)] = Field(
        0.1, description="Factor applied to lr at each step.")


class Ema(Strict):
    enabled: bool = Field(False, description="Keep an exponential moving average of weights.")
    decay: Annotated[float, Field(gt=0.0, le=1.0)] = Field(0.999, description="EMA decay.")


class Train(Strict):
    epochs: PosInt = Field(10, description="Training epochs.")
    lr: Annotated[float, Field(gt=0.0, le=1.0)] = Field(1e-4, description="AdamW learning rate.")
    lr_backbone: Annotated[float, Field(gt=0.0, le=1.0)] = Field(
        1e-5, description="Learning rate of the backbone.")
    weight_decay: Annotated[float, Field(ge=0.0, le=1.0)] = Field(
        1e-4, description="AdamW weight decay.")
    schedule: Schedule = Field(Schedule(), description="Learning-rate schedule (steps in epochs).")
    checkpoint_interval: PosInt = Field(1, description="Save a checkpoint every N epochs.")
    validation_interval: PosInt = Field(1, description="Validate every N epochs.")
    ema: Ema = Field(Ema(), description="Exponential moving average of weights.")
    freeze: list[str] = Field(default_factory=list, description="Module names to freeze.")
    pretrained: str | None = Field(None, description="Start from these weights (.pth).")
    seed: int = Field(1234, description="Random seed.")
    clip_grad_norm: Annotated[float, Field(gt=0.0)] = Field(
        0.1, description="Gradient clipping norm.")
    activation_checkpoint: bool = Field(True, description="Recompute activations to save memory.")
    use_checkpoint: Literal["best", "last"] | Annotated[int, Field(ge=0)] = Field(
        "best", description="Checkpoint handed to evaluate/export/inference: best validation "
        "metric, last epoch, or an explicit 0-based epoch.")
    best_metric: Literal["val_mAP", "val_mAP50"] = Field(
        "val_mAP", description="Metric for use_checkpoint: best (maximized).")


class Evaluate(Strict):
    conf_threshold: Annotated[float, Field(ge=0.0, le=1.0)] = Field(
        0.0, description="Score threshold for evaluation (0 keeps all detections).")


class Inference(Strict):
    conf_threshold: Annotated[float, Field(ge=0.0, le=1.0)] = Field(
        0.5, description="Minimum score of a written detection.")
    colors: dict[str, str] | None = Field(
        None, description="Class name -> box color; classes left out get a color picked by "
        "their id (TAO's own default only knows COCO names and would draw no boxes).")


class Export(Strict):
    opset: Annotated[int, Field(ge=16, le=21)] = Field(17, description="ONNX opset.")
    batch_size: Annotated[int, Field(ge=-1)] = Field(
        -1, description="-1: dynamic batch axis (needed for engine batch profiles).")
    size: Size2 | None = Field(None, description="[height, width]; must equal "
                               "dataset.augmentation.eval_size (the default).")
    serialize_nvdsinfer: bool = Field(False, description="Also write DeepStream labels.txt "
                                      "and nvdsinfer_config.yaml.")
    parity: bool = Field(True, description="Check the ONNX against PyTorch with ONNX Runtime "
                         "on the test split (mAP gap, latency); needs dataset.test.")
    parity_tolerance: Annotated[float, Field(ge=0, le=1)] = Field(
        0.02, description="ONNX parity: largest |ONNX test mAP - PyTorch test mAP| accepted.")

    @field_validator("batch_size")
    @classmethod
    def _batch(cls, v: int) -> int:
        if v == 0:
            raise ValueError("batch_size 0 is not valid: use -1 (dynamic) or >= 1")
        return v


class BatchProfile(Strict):
    min: PosInt = Field(1, description="Smallest batch the engine accepts.")
    opt: PosInt = Field(1, description="Batch the engine is tuned for.")
    max: PosInt = Field(4, description="Largest batch (>= dataset.batch_size).")


class Calibration(Strict):
    batches: PosInt = Field(10, description="Calibration batches.")
    batch_size: PosInt = Field(1, description="Calibration batch size.")


class Engine(Strict):
    precision: Literal["FP32", "FP16", "INT8"] = Field("FP16", description="Engine precision.")
    batch: BatchProfile = Field(BatchProfile(), description="Optimization profile.")
    workspace_mb: PosInt = Field(4096, description="TensorRT workspace, MB (multiple of 1024).")
    calibration: Calibration | None = Field(
        None, description="INT8 only; images come from dataset.calibration.")
    layers_precision: list[str] = Field(default_factory=list, description='"layer:precision"')


class Teacher(Strict):
    checkpoint: str = Field(description="Teacher weights: a .pth path, or `experiment:<name>` "
                            "to use that experiment's selected checkpoint (builds it first).")
    model: dict[str, Any] = Field(default_factory=dict, description="Teacher architecture: "
                                  "model keys that differ from the student's.")


class Binding(Strict):
    student: str = Field(description="Student module name (srcs/dsrcs for IOU).")
    teacher: str = Field(description="Teacher module name.")
    criterion: Literal["L1", "L2", "KL", "IOU"] = Field(
        description="Distillation loss. TAO 7.3.0's RT-DETR distiller only runs IOU (on srcs "
        "or dsrcs); L1/L2/KL are refused at validate.")
    weight: Annotated[float, Field(ge=0.0)] = Field(1.0, description="Weight of this binding.")


class Distill(Strict):
    teacher: Teacher = Field(description="Teacher weights and architecture.")
    bindings: list[Binding] = Field(default_factory=list, description="Feature bindings.")
    loss_coef: Annotated[float, Field(ge=0.0)] = Field(1.0, description="Distillation loss weight.")
    load_teacher_enc_dec: bool = Field(
        False, description="Start the student from the teacher's encoder/decoder (same shapes).")


QuantDtype = Literal["int8", "fp8_e4m3fn", "fp8_e5m2", "native"]


class QuantLayer(Strict):
    module: str = Field(description="fnmatch pattern on the qualified module name or class.")
    weights: QuantDtype | None = Field(None, description="Weight dtype.")
    activations: QuantDtype | None = Field(None, description="Activation dtype (static PTQ).")


class Quantize(Strict):
    backend: Literal["torchao", "modelopt.pytorch", "modelopt.onnx"] = Field(
        "torchao", description="Quantization library: torchao (runs on CPU), modelopt.pytorch; "
        "modelopt.onnx is refused at validate (not wired up).")
    mode: Literal["weight_only_ptq", "static_ptq"] = Field(
        "weight_only_ptq", description="static_ptq calibrates on dataset.calibration.")
    algorithm: Literal["minmax", "max", "entropy", "awq_clip", "awq_lite", "awq_full",
                       "rtn_dq"] | None = Field(
        None, description="Calibration algorithm (modelopt backends; torchao ignores it). "
        "Default: max for modelopt, TAO's minmax otherwise.")
    layers: list[QuantLayer] = Field(
        default_factory=lambda: [QuantLayer(module="Linear", weights="int8")],
        description="Which modules to quantize, and to what.")
    skip: list[str] = Field(default_factory=list, description="Module patterns left as is.")
    device: Literal["cuda", "cpu", "trt"] = Field(
        "cuda", description="Where to quantize; cuda becomes cpu on CPU-only hardware.")


class Wandb(Strict):
    enable: bool = Field(False, description="Log to Weights & Biases (key from WANDB_API_KEY "
                         "passed via hardware.runner.env; never from this file).")
    project: str = Field("taomake", description="W&B project.")
    tags: list[str] = Field(default_factory=list, description="W&B tags.")


class Storage(Strict):
    """How taomake reaches s3:// sources and upload targets, and how much an archive or a
    remote folder may expand to.  Credentials always come from the
    standard AWS chain (AWS_* environment variables, ~/.aws files, instance roles): this file
    holds no secret."""

    endpoint_url: PathOrUrl | None = Field(
        None, pattern=r"^https?://", description="S3-compatible endpoint (MinIO, SeaweedFS, "
        "Ceph...). Default: AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, else AWS itself.")
    profile: str | None = Field(None, description="Profile in ~/.aws/credentials and "
                                "~/.aws/config. Default: AWS_PROFILE, else `default`.")
    region: str | None = Field(None, description="Region. Default: AWS_REGION / "
                               "AWS_DEFAULT_REGION / the profile's.")
    max_concurrency: PosInt = Field(8, description="Parallel parts per transfer (multipart "
                                    "download/upload) and parallel objects for folders.")
    attempts: PosInt = Field(5, description="Tries per transfer (backoff 1, 2, 4... s) before "
                             "the staging job fails.")
    archive_max_ratio: float = Field(
        100.0, ge=1, description="An archive source may expand to at most this many times "
        "its own size (checked past 128 MB written): a zip or tar.gz bomb stops there and is "
        "rejected.")
    archive_max_gb: float = Field(500.0, gt=0, description="An archive or S3 folder may "
                                  "expand to at most this many GB, whatever the ratio.")


class Upload(Strict):
    """Push built artifacts to object storage after they are built, with their checksums."""

    to: PathOrUrl = Field(pattern=rf"^{S3_URL}$",
                    description="Destination prefix; each experiment goes to <to>/<experiment>/.")
    artifacts: list[Literal["model", "onnx", "engine", "metrics", "report"]] = Field(
        default_factory=lambda: ["model", "onnx", "metrics"], min_length=1,
        description="Which artifacts to push (those an experiment does not build are skipped).")


class Cache(Strict):
    """A build cache shared by a team (taomake.cache, docs/cache.md): before a TAO job runs,
    an entry with the same key (the spec as TAO reads it, the data's content, the upstream
    artifacts, the TAO runtime) is fetched and verified instead; after a job succeeds, its
    artifacts are published.  Environment: TAOMAKE_CACHE_URL and TAOMAKE_CACHE_MODE override
    both keys (TAOMAKE_CACHE_MODE=off turns it off for one build)."""

    url: PathOrUrl = Field(
        pattern=CACHE_URL,
        description="s3://bucket/prefix (reached with `storage` and the standard AWS "
        "credential chain) or file:///shared/folder.")
    mode: Literal["read-write", "read-only", "off"] = Field(
        "read-write", description="read-write: fetch hits and publish what this machine "
        "builds; read-only: fetch hits, never write (CI, reviewers); off: neither.")


class SweepParameter(Strict):
    """One AutoML parameter: a list of values, or a range (default: TAO's bounds)."""

    values: list[float] | None = Field(None, description="Values to try (grid: all of them).")
    min: float | None = Field(None, description="Lower bound (default: TAO's minimum).")
    max: float | None = Field(None, description="Upper bound (default: TAO's maximum).")
    log: bool = Field(False, description="Sample the range log-uniformly (learning rates).")


class Sweep(Strict):
    """Hyper-parameter search over TAO's AutoML parameters, built like any other target.

    Each trial is an experiment `<experiment>.t<NNN>` that trains; the best by `metric` feeds
    evaluate, export and inference.  `results/<experiment>/sweep/best.json` records it."""

    method: Literal["grid", "random", "successive_halving"] = Field(
        "random", description="grid: every combination of `values`; random: `trials` draws, "
        "seeded, so adding trials keeps the old ones; successive_halving: random trials "
        "trained in rungs of growing epochs, the best 1/eta of each rung continuing from "
        "its checkpoint.")
    parameters: dict[str, SweepParameter | list[float]] = Field(
        min_length=1, description="TAO AutoML key (train.optim.lr, model.num_queries, "
        "dataset.augmentation.distortion_prob, ...) -> values or range.")
    trials: PosInt = Field(4, description="Number of trials (random).")
    seed: int = Field(0, description="Seed of the trial draws (not of training).")
    metric: Literal["val_mAP", "val_mAP50"] = Field(
        "val_mAP", description="What ranks trials (maximised; never a test metric).")
    min_epochs: PosInt = Field(1, description="successive_halving: epochs of the first rung.")
    eta: Annotated[int, Field(ge=2)] = Field(
        2, description="successive_halving: epochs grow and survivors shrink by this factor.")


TaoOverrides = Annotated[dict[str, Any], Field(description="Dotted TAO key -> value.")]


class Overrides(Strict):
    """Dotted TAO keys per action (`all`: every action whose spec has that section)."""

    all: TaoOverrides = Field(default_factory=dict)
    train: TaoOverrides = Field(default_factory=dict)
    distill: TaoOverrides = Field(default_factory=dict)
    evaluate: TaoOverrides = Field(default_factory=dict)
    inference: TaoOverrides = Field(default_factory=dict)
    export: TaoOverrides = Field(default_factory=dict)
    quantize: TaoOverrides = Field(default_factory=dict)
    gen_trt_engine: TaoOverrides = Field(default_factory=dict)
    trt_evaluate: TaoOverrides = Field(default_factory=dict)
    trt_inference: TaoOverrides = Field(default_factory=dict)


class Project(Strict):
    """project.yaml: one dataset, one hardware setup, one model, its actions and variants."""

    name: str = Field(pattern=NAME_RE, description="Project name (letters, digits, _ . -).")
    results: str = Field("results", description="Output folder (relative to project.yaml).")
    tao: Tao = Field(Tao(), description="Which TAO release (and images) runs the jobs.")
    dataset: Dataset = Field(description="Classes, splits and data loading.")
    hardware: Hardware = Field(Hardware(), description="GPUs, nodes, runner and cluster settings.")
    model: Model = Field(Model(), description="RT-DETR architecture (shared by every action).")
    train: Train = Field(Train(), description="Training loop and checkpoint handoff.")
    evaluate: Evaluate = Field(Evaluate(), description="PyTorch (and TensorRT) evaluation.")
    inference: Inference = Field(Inference(), description="Inference on dataset.inference.")
    export: Export = Field(Export(), description="ONNX export.")
    engine: Engine = Field(Engine(), description="TensorRT engine (GPU hardware only).")
    distill: Distill | None = Field(None, description="Distill a student instead of training.")
    quantize: Quantize | None = Field(None, description="Quantize the selected checkpoint.")
    wandb: Wandb = Field(Wandb(), description="Weights & Biases logging.")
    storage: Storage = Field(Storage(), description="S3 access for s3:// data and uploads; "
                               "how far archives may expand.")
    seeds: list[int] | None = Field(
        None, min_length=1, description="Train every experiment once per seed "
        "(`<experiment>-s<seed>`); reports give mean ± std over seeds. Default: train.seed.")
    sweep: Sweep | None = Field(None, description="Hyper-parameter sweep of the training.")
    upload: Upload | None = Field(None, description="Push artifacts to s3:// when built; "
                                  "none: nothing leaves the machine.")
    cache: Cache | None = Field(None, description="A team's shared build cache: identical "
                                "jobs are fetched, never redone. Default: none (off).")
    overrides: Overrides = Field(
        Overrides(), description="Escape hatch: action (or `all`) -> {dotted TAO key: "
        "value}, applied last and checked against TAO's schema.")
    experiments: dict[str, dict[str, Any]] | None = Field(
        None, description="Named variants: name -> {dotted project key: value}. Each is "
        "compiled and built on its own, in `results/<name>/` (a name: letters, digits, _ . -; "
        "not `logs`, `benchmarks` or `report`). Default: one experiment, `base`.")

    @field_validator("experiments")
    @classmethod
    def _experiments(cls, v: dict[str, dict[str, Any]] | None):
        if v is not None:
            if not v:
                raise ValueError("experiments is empty: list at least one, e.g. `base: {}`")
            for name in v:
                if not re.match(NAME_RE, str(name)):
                    raise ValueError(f"experiment name {name!r}: use letters, digits, _ . -")
                if name in SHARED_FOLDERS:
                    raise ValueError(f"experiment name {name!r} is the folder results/{name} "
                                     "that all experiments share: choose another name")
        return v
