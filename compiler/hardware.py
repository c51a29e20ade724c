"""The project's `tao` and `hardware` sections: what a TAO job runs with besides its spec.

Part of the project model (`compiler.model` imports them into `Project`), kept in a module of
their own so a TAO job (`taomake run`, which rebuilds only these from the cached plan:
`compiler.plan.JobSettings`) does not create the other ~30 models (benchmarks/job_overhead.py).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    # defer_build: a model's validator is built when it first validates, not at import: a
    # TAO job validates only Hardware and Tao from the cached plan (benchmarks/job_overhead.py)
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True,
                              defer_build=True)



PosInt = Annotated[int, Field(ge=1)]


# --------------------------------------------------------------------------- tao


class Tao(Strict):
    """Which TAO release runs the jobs. Changing it makes every artifact stale."""

    version: str = Field("6.26.3", description="TAO Toolkit release; picks the default images.")
    pytorch_image: str | None = Field(
        None, description="Image for train/evaluate/inference/export/distill/quantize. "
        "Default: nvcr.io/nvidia/tao/tao-toolkit:<version>-pyt.")
    deploy_image: str | None = Field(
        None, description="Image for gen_trt_engine and TensorRT evaluate/inference. "
        "Default: nvcr.io/nvidia/tao/tao-toolkit:<version>-deploy.")

    @property
    def pytorch_image_ref(self) -> str:
        return self.pytorch_image or f"nvcr.io/nvidia/tao/tao-toolkit:{self.version}-pyt"

    @property
    def deploy_image_ref(self) -> str:
        return self.deploy_image or f"nvcr.io/nvidia/tao/tao-toolkit:{self.version}-deploy"

    def image(self, flavor: str) -> str:
        """The image of an action's flavor (compiler.actions: pytorch or deploy)."""
        return self.deploy_image_ref if flavor == "deploy" else self.pytorch_image_ref

    def images(self, flavors=("pytorch", "deploy")) -> dict[str, str]:
        return {flavor: self.image(flavor) for flavor in flavors}


# --------------------------------------------------------------------------- hardware


class LocalRunner(Strict):
    venv: str | None = Field(
        None, description="Python venv with nvidia-tao-pytorch (`rtdetr` on its PATH). "
        "Default: the one `taomake setup tao-cpu` creates ($TAOMAKE_TAO_VENV overrides).")


class DockerRunner(Strict):
    pull: bool = Field(False, description="Pull a missing image instead of failing.")
    ipc_host: bool = Field(False, description="Use --ipc=host instead of a sized /dev/shm.")
    ulimits: dict[str, int] = Field(
        default_factory=lambda: {"memlock": -1, "stack": 67108864},
        description="ulimit name -> value (soft = hard).")
    allow_root: bool = Field(False, description="Allow running as uid 0 with writable mounts.")
    stop_timeout: PosInt = Field(10, description="Seconds between SIGTERM and SIGKILL on stop.")
    mounts: list[Annotated[str, Field(pattern=r"^[/~][^:]*:/[^:]+(:ro)?$")]] = Field(
        default_factory=list, description="Extra read-only bind mounts `host:container[:ro]` "
        "(always mounted read-only; `~` is expanded), e.g. a TAO venv for a CPU test image.")
    tao_bin: str | None = Field(
        None, description="Folder holding `rtdetr` inside the image (put first on PATH); "
        "default: `rtdetr` from the image's PATH.")


class ApptainerRunner(Strict):
    image_dir: str = Field("images", description="Where converted .sif images are kept.")


class PyxisRunner(Strict):
    image_dir: str = Field("images", description="Where converted .sqsh images are kept.")


class Runner(Strict):
    kind: Literal["local", "docker", "apptainer", "pyxis"] = Field(
        "local", description="How TAO is started. Never changes a spec or reruns a job.")
    env: list[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]] = Field(
        default_factory=list, description="Names of environment variables passed to TAO "
        "(values are never written anywhere), e.g. WANDB_API_KEY.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="TAO's log level (TAO_LOGGING_LEVEL); never reruns anything.")
    retries: Annotated[int, Field(ge=0)] = Field(
        2, description="Reruns of a TAO job that failed from an infrastructure fault (node "
        "failure, preemption, GPU Xid/ECC, NCCL/InfiniBand transport error); training resumes "
        "from its last checkpoint. Program faults (CUDA out of memory, traceback, missing "
        "file, time limit) are never retried. Never reruns anything by itself.")
    local: LocalRunner = Field(LocalRunner(), description="Settings of the local runner.")
    docker: DockerRunner = Field(DockerRunner(), description="Settings of the docker runner.")
    apptainer: ApptainerRunner = Field(ApptainerRunner(),
                                       description="Settings of the apptainer runner.")
    pyxis: PyxisRunner = Field(PyxisRunner(), description="Settings of the pyxis runner.")


class Slurm(Strict):
    partition: str | None = Field(None, description="Partition for training jobs.")
    account: str | None = Field(None, description="Account to charge.")
    constraint: str | None = Field(None, description="Node feature constraint.")
    time_minutes: PosInt = Field(720, description="Wall time of a training job.")
    eval_time_minutes: PosInt = Field(60, description="Wall time of other jobs.")
    cpus_per_gpu: PosInt = Field(8, description="CPUs per GPU (or per job on CPU).")
    mem_mb_per_gpu: PosInt = Field(32000, description="Memory per GPU (or per job on CPU).")
    requeue: bool = Field(True, description="Let SLURM requeue preempted jobs.")
    resubmits: Annotated[int, Field(ge=0)] = Field(
        3, description="Times a training that reaches time_minutes, or a job preempted for "
        "good, is resubmitted (it resumes from its checkpoints); 0: never.")


class Hardware(Strict):
    gpus_per_node: Annotated[int, Field(ge=0)] = Field(
        0, description="GPUs per node; 0 runs on CPU (and leaves TensorRT actions out).")
    gpu_ids: list[Annotated[int, Field(ge=0)]] | None = Field(
        None, description="Physical GPU ids to use (docker --gpus device=...). Default 0..n-1. "
        "Inside the job TAO always sees 0..n-1.")
    nodes: PosInt = Field(1, description="Nodes for training (SLURM; one TAO node per "
                          "srun task, with its own NODE_RANK).")
    pack_nodes: bool = Field(False, description="Run the `nodes` TAO nodes as tasks on ONE "
                             "SLURM host: a test of the multi-node path on a one-node "
                             "cluster (real rendezvous and data sharding, no speed-up).")
    strategy: Literal["ddp", "fsdp"] = Field("ddp", description="Multi-GPU strategy.")
    precision: Literal["fp32", "fp16", "bf16"] = Field("fp32", description="Training precision.")
    shm_size: str = Field("16g", pattern=r"^[0-9]+[kmgKMG]?$",
                          description="Shared memory for the job (serialized datasets live there).")
    runner: Runner = Field(Runner(), description="How TAO is started.")
    slurm: Slurm = Field(Slurm(), description="SLURM resources (with `--profile profiles/slurm`).")

    @property
    def cpu_only(self) -> bool:
        """No GPU: TAO runs on CPU, TensorRT actions are left out."""
        return self.gpus_per_node == 0
