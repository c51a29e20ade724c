"""Apptainer and Pyxis command lines (golden), image file names, and mount coverage.

Neither Apptainer nor enroot/Pyxis can be installed here (INFRA-FACTS): the command lines are
checked exactly, not run."""

from __future__ import annotations

import os
from pathlib import Path
from unittest.mock import patch

from taomake.compiler import compile_project, load_project
from taomake.compiler.actions import ACTIONS
from taomake.compiler.layout import image_file
from taomake.compiler.plan import load_plan

from taomake.runners import TaoJob, apptainer, pyxis
from taomake.runners.apptainer import apptainer_argv, host_env
from taomake.runners.container_env import container_env
from taomake.runners.mounts import Mount, job_mounts, spec_paths
from taomake.runners.pyxis import exported_names, pyxis_argv, srun_env
from tests.helpers import make_project

W = Path("/p")
RES = "/p/results/base"
MOUNTS = (Mount("/p/data/shapes/train", "/p/data/shapes/train", True),
          Mount(RES, RES, False))
SPEC = f"{RES}/train/.taomake/job-train.yaml"
TAO = ["rtdetr", "train", "-e", SPEC, "results_dir=results/base"]
SIF = "/p/images/nvcr.io_nvidia_tao_tao-toolkit_6.26.3-pyt.sif"
SQSH = "/p/images/nvcr.io_nvidia_tao_tao-toolkit_6.26.3-pyt.sqsh"
H = f"{RES}/.taomake/container-home"
ENV = [f"HOME={H}", "USER=alice", "LOGNAME=alice", "PYTHONUNBUFFERED=1",
       f"XDG_CACHE_HOME={H}/.cache", f"HF_HOME={H}/.cache/huggingface",
       f"TORCH_HOME={H}/.cache/torch", f"TRITON_CACHE_DIR={H}/.cache/triton",
       f"TORCHINDUCTOR_CACHE_DIR={H}/.cache/inductor", f"MPLCONFIGDIR={H}/.cache/matplotlib",
       "TAO_LOGGING_LEVEL=INFO"]
NAMES = ("HOME,USER,LOGNAME,PYTHONUNBUFFERED,XDG_CACHE_HOME,HF_HOME,TORCH_HOME,"
         "TRITON_CACHE_DIR,TORCHINDUCTOR_CACHE_DIR,MPLCONFIGDIR,TAO_LOGGING_LEVEL,WANDB_API_KEY")


def job(gpus: int) -> TaoJob:
    return TaoJob(action=ACTIONS["train"], spec=Path(SPEC), results_dir="results/base",
                  workdir=W, image="nvcr.io/nvidia/tao/tao-toolkit:6.26.3-pyt",
                  env_names=("WANDB_API_KEY",), gpus=gpus, gpu_ids=tuple(range(gpus)),
                  extra_env={"TAO_LOGGING_LEVEL": "INFO"}, mounts=MOUNTS)


def env_args() -> list[str]:
    return [a for e in ENV for a in ("--env", e)]


def test_apptainer_cpu_golden():
    j = job(0)
    assert apptainer_argv(j, SIF, env=container_env(j, "alice")) == [
        "apptainer", "exec", "--cleanenv", "--no-mount", "home,cwd", "--pwd", "/p",
        "-B", "/p/data/shapes/train:/p/data/shapes/train:ro",
        "-B", "/p/results/base:/p/results/base",
        *env_args(), SIF, *TAO]


def test_apptainer_two_gpu_golden():
    j = job(2)
    assert apptainer_argv(j, SIF, env=container_env(j, "alice")) == [
        "apptainer", "exec", "--nv", "--cleanenv", "--no-mount", "home,cwd", "--pwd", "/p",
        "-B", "/p/data/shapes/train:/p/data/shapes/train:ro",
        "-B", "/p/results/base:/p/results/base",
        *env_args(), SIF, *TAO]


def test_pyxis_cpu_golden():
    j = job(0)
    names = exported_names(j, container_env(j, "alice"))
    assert pyxis_argv(j, SQSH, env_names=names) == [
        "srun", "--nodes=1", "--ntasks=1", f"--container-image={SQSH}",
        "--container-mounts=/p/data/shapes/train:/p/data/shapes/train:ro,"
        "/p/results/base:/p/results/base",
        "--container-workdir=/p", "--no-container-mount-home",
        f"--container-env={NAMES}", f"--export={NAMES}", *TAO]


def test_pyxis_two_gpu_golden():
    j = job(2)
    names = exported_names(j, container_env(j, "alice"))
    assert pyxis_argv(j, SQSH, env_names=names) == [
        "srun", "--nodes=1", "--ntasks=1", "--gpus-per-node=2", f"--container-image={SQSH}",
        "--container-mounts=/p/data/shapes/train:/p/data/shapes/train:ro,"
        "/p/results/base:/p/results/base",
        "--container-workdir=/p", "--no-container-mount-home",
        f"--container-env={NAMES}", f"--export={NAMES}", *TAO]


def test_prefix_and_wrapper_for_multinode():
    j = job(2)
    prefix = ["srun", "--nodes=2", "--ntasks-per-node=1", "--gpus-per-node=2"]
    argv = pyxis_argv(j, SQSH, env_names=["HOME"], prefix=prefix,
                      wrapper=["sh", "-c", "x", "y"])
    assert argv[:4] == prefix and argv[-9:-5] == ["sh", "-c", "x", "y"]
    assert argv[-5:] == TAO
    a = apptainer_argv(j, SIF, env={}, prefix=prefix, wrapper=["w", "--"])
    assert a[:5] == [*prefix, "apptainer"] and a[-7:] == ["w", "--", *TAO]


def test_secrets_by_name_only(monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "s3cr3t")
    j = job(2)
    values = container_env(j, "alice")
    argvs = [apptainer_argv(j, SIF, env=values),
             pyxis_argv(j, SQSH, env_names=exported_names(j, values))]
    assert not any("s3cr3t" in a for argv in argvs for a in argv)
    assert host_env(j.env_names, prefix="APPTAINERENV_")["APPTAINERENV_WANDB_API_KEY"] == "s3cr3t"
    assert "WANDB_API_KEY" not in host_env(j.env_names, prefix="APPTAINERENV_")
    assert srun_env(j, values)["WANDB_API_KEY"] == "s3cr3t"


def test_image_files_and_conversion():
    ref = "nvcr.io/nvidia/tao/tao-toolkit:6.26.3-pyt"
    assert image_file(ref, "/p/images", "apptainer") == SIF
    assert image_file(ref, "images", "pyxis") == \
        "images/nvcr.io_nvidia_tao_tao-toolkit_6.26.3-pyt.sqsh"
    assert image_file("repo/img@sha256:ab12", "i", "apptainer") == "i/repo_img_sha256_ab12.sif"
    assert apptainer.conversion_argv(ref, "x.sif") == [
        "apptainer", "build", "--force", "x.sif", f"docker://{ref}"]
    assert pyxis.conversion_argv(ref, "x.sqsh") == [
        "enroot", "import", "--output", "x.sqsh",
        "docker://nvcr.io#nvidia/tao/tao-toolkit:6.26.3-pyt"]
    assert pyxis.conversion_argv("ubuntu:22.04", "u.sqsh")[-1] == "docker://ubuntu:22.04"


def test_mounts_cover_every_spec_path(tmp_path):
    """Every path of every compiled demo spec resolves inside a -B / --container-mounts entry."""
    lp = load_project(make_project(tmp_path))
    load_plan(lp.path)  # writes the specs and the links to local data they name
    for action, spec in compile_project(lp)["base"].specs.items():
        copy = (tmp_path / "results/base" / action / ".taomake" / f"job-{action}.yaml")
        mounts = tuple(job_mounts(spec.data, lp.root, "results/base", copy))
        j = TaoJob(action=ACTIONS[action], spec=copy, results_dir="results/base",
                   workdir=lp.root, image="img", gpus=1, mounts=mounts)
        argv = apptainer_argv(j, "x.sif", env={})
        binds = [argv[i + 1] for i, a in enumerate(argv) if a == "-B"]
        srun = pyxis_argv(j, "x.sqsh", env_names=[])
        pyx = next(a for a in srun if a.startswith("--container-mounts="))
        assert pyx.split("=", 1)[1].split(",") == binds
        sources = [b.split(":")[0] for b in binds]
        for raw in [*spec_paths(spec.data), str(copy)]:
            path = os.path.normpath(lp.root / raw)
            assert any(path == s or path.startswith(s + "/") for s in sources), (action, raw)


def test_pyxis_runner_uses_the_multinode_prefix_for_two_nodes():
    from dataclasses import replace

    from taomake.runners.pyxis import PyxisRunner

    allocation = {"SLURM_JOB_NODELIST": "gpu[07-08]", "SLURM_JOB_NUM_NODES": "2",
                  "SLURM_CPUS_PER_TASK": "32", "SLURM_JOB_ID": "42"}
    runner = PyxisRunner(Path("/images"))
    with patch("taomake.runners.multinode.scontrol_hostnames",
               lambda nodes: ["gpu07", "gpu08"]):
        prefix, wrapper, shared = runner.multinode(replace(job(4), nodes=2), allocation)
    assert prefix == ["srun", "--nodes=2", "--ntasks=2", "--ntasks-per-node=1",
                      "--kill-on-bad-exit=1", "--gpus-per-node=4", "--cpus-per-task=32"]
    # nothing of taomake's inside NVIDIA's image: POSIX sh sets the rank per task
    # (tests/unit/test_multinode.py runs that one-liner under sh, dash and bash)
    from taomake.runners.multinode import RANK_FROM_PROCID

    assert wrapper == RANK_FROM_PROCID and wrapper[:2] == ["sh", "-c"]
    assert shared == {"WORLD_SIZE": "2", "NUM_GPU_PER_NODE": "4", "MASTER_ADDR": "gpu07",
                      "MASTER_PORT": "20042"}  # from the job id
    argv = pyxis_argv(replace(job(4), nodes=2), SQSH, env_names=["HOME", *shared],
                      prefix=prefix, wrapper=wrapper)
    # srun's options, then Pyxis's, then the wrapper, then rtdetr: the order srun parses
    assert argv.index("--cpus-per-task=32") < argv.index(f"--container-image={SQSH}") < \
        argv.index("sh") < argv.index("rtdetr")
    assert f"--export=HOME,{','.join(shared)}" in argv
    assert runner.multinode(job(4), allocation) == (None, None, {})
