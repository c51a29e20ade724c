"""Multi-node TAO training under SLURM: the shared environment and the srun command line.

TAO's multi-node launcher reads WORLD_SIZE (= number of nodes), NUM_GPU_PER_NODE, MASTER_ADDR,
MASTER_PORT and NODE_RANK.  All but NODE_RANK are the same on every node: taomake computes them
once, in the job's batch step (`shared_env`), and srun exports them.  NODE_RANK differs per
node, so each srun task sets it from its own SLURM_PROCID (one task per node) with a one-line
`sh -c` (`RANK_FROM_PROCID`): nothing of taomake's has to exist inside NVIDIA's image.
`taomake node-env -- ARGV...` still prints or applies the whole set inside one task, by hand.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from taomake.compiler.layout import node_spec_name

DEFAULT_PORT = 29500


def scontrol_hostnames(nodelist: str) -> list[str]:
    """Expand a SLURM node list ("node[01-02]") with `scontrol show hostnames`."""
    out = subprocess.run(["scontrol", "show", "hostnames", nodelist], check=True,
                         capture_output=True, text=True, timeout=30).stdout
    return [line.strip() for line in out.splitlines() if line.strip()]


def squeue_nodelist(job_id: str) -> str:
    """The node list of a running job (`squeue -h -j ID -o %N`).  snakemake's SLURM jobstep
    executor keeps only the job's identity (SLURM_JOB_ID, ...) in the rule's environment,
    not SLURM_JOB_NODELIST."""
    out = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%N"], check=True,
                         capture_output=True, text=True, timeout=30).stdout
    return out.strip()


def master_port(environ: Mapping[str, str]) -> int:
    """MASTER_PORT as set, else one derived from the job id (two multi-node jobs sharing a
    first host must not meet on one port), else TAO's default 29500."""
    if environ.get("MASTER_PORT"):
        return int(environ["MASTER_PORT"])
    job = environ.get("SLURM_JOB_ID") or environ.get("SLURM_JOBID") or ""
    return 20000 + int(job) % 20000 if job.isdigit() else DEFAULT_PORT


def shared_env(environ: Mapping[str, str], *, nodes: int | None = None,
               gpus_per_node: int | None = None,
               expand: Callable[[str], list[str]] = scontrol_hostnames,
               nodelist_of: Callable[[str], str] = squeue_nodelist) -> dict[str, str]:
    """TAO's distributed variables that every node shares, from the allocation's SLURM
    environment (the batch step's, or one task's).

    `nodes`: the TAO nodes (= srun tasks) of the training, as the project asks; TAO's
    WORLD_SIZE counts nodes, not processes (docs/tao-notes.md).  Default: the allocation's
    node count.  `gpus_per_node` as the job asked, when known (the batch step may not see
    SLURM's GPU variables); on CPU each node runs one process (NUM_GPU_PER_NODE=1)."""
    nodelist = environ.get("SLURM_JOB_NODELIST") or environ.get("SLURM_NODELIST")
    job = environ.get("SLURM_JOB_ID") or environ.get("SLURM_JOBID")
    if not nodelist and job:
        try:
            nodelist = nodelist_of(job)
        except (OSError, subprocess.SubprocessError) as exc:
            raise ValueError(f"cannot read the node list of SLURM job {job}: {exc}") from None
    if not nodelist:
        raise ValueError("not inside a SLURM allocation (no SLURM_JOB_ID or "
                         "SLURM_JOB_NODELIST): multi-node training runs as a SLURM job "
                         "(snakemake --profile profiles/slurm)")
    hosts = expand(nodelist)
    if not hosts:
        raise ValueError(f"empty node list {nodelist!r}")
    if nodes is None:
        nodes = int(environ.get("SLURM_JOB_NUM_NODES") or environ.get("SLURM_NNODES")
                    or len(hosts))
    gpus = (str(gpus_per_node) if gpus_per_node else None) or environ.get("NUM_GPU_PER_NODE") \
        or environ.get("SLURM_GPUS_PER_NODE") or environ.get("SLURM_GPUS_ON_NODE")
    if gpus is None:
        visible = environ.get("CUDA_VISIBLE_DEVICES", "")
        gpus = str(len([d for d in visible.split(",") if d.strip()]) or 1)
    gpus = gpus.split(":")[-1]  # "a100:4" -> "4"
    return {
        "WORLD_SIZE": str(nodes),
        "NUM_GPU_PER_NODE": str(int(gpus)),
        "MASTER_ADDR": hosts[0],
        "MASTER_PORT": str(master_port(environ)),
    }


def task_env(environ: Mapping[str, str],
             expand: Callable[[str], list[str]] = scontrol_hostnames) -> dict[str, str]:
    """TAO's distributed variables for ONE srun task, from that task's SLURM environment."""
    rank = environ.get("SLURM_PROCID")
    if rank is None:
        raise ValueError("SLURM_PROCID is not set: run this inside an srun task")
    nodes = environ.get("SLURM_NTASKS") or environ.get("SLURM_NPROCS")
    return {**shared_env(environ, nodes=int(nodes) if nodes else None, expand=expand),
            "NODE_RANK": str(int(rank))}


# TAO rewrites its spec file in place on every node (entrypoint.py, multi-node branch): nodes
# sharing one file could read it half-written.  Each node gets its own copy
# (`node_spec(spec, rank)`); the argv names `<stem>.node-RANK.yaml` and each task puts its
# rank in.
NODE_SPEC_MARK = ".node-RANK.yaml"


def node_spec(spec: Path, rank: int | str) -> Path:
    """Node `rank`'s own copy of a job spec (`job-train.yaml` -> `job-train.node1.yaml`)."""
    return spec.with_name(node_spec_name(spec.stem, rank))


def marked_spec(spec: Path) -> Path:
    """The spec argument every task receives, before it puts in its rank."""
    return spec.with_name(f"{spec.stem}{NODE_SPEC_MARK}")


# Runs in each srun task, inside the container too: NODE_RANK from the task's own SLURM_PROCID,
# the argument ending in NODE_SPEC_MARK turned into that node's spec copy, then the command.
# POSIX sh only (every TAO image has it; `${a%...}` and `for a do ... set --` are POSIX).
RANK_FROM_PROCID = [
    "sh", "-c",
    'export NODE_RANK="$SLURM_PROCID"; '
    'for a do shift; case "$a" in *' + NODE_SPEC_MARK + ') '
    'a="${a%' + NODE_SPEC_MARK + '}.node$NODE_RANK.yaml";; esac; set -- "$@" "$a"; done; '
    'exec "$@"',
    "node-rank"]


def srun_prefix(nodes: int, gpus_per_node: int, *, cpus_per_task: int | None = None,
                pack: bool = False, extra: Sequence[str] = ()) -> list[str]:
    """srun options starting one task per TAO node, as a step of the surrounding allocation.

    `pack`: all tasks on one host (hardware.pack_nodes: the multi-node path on a one-node
    cluster).  `cpus_per_task`: srun does not inherit sbatch's --cpus-per-task
    (SLURM >= 22.05), so the step states it.  (`--wait-all-nodes` is an sbatch option, not
    srun's; srun starts only when its whole allocation exists anyway.)"""
    hosts, per_host = (1, nodes) if pack else (nodes, 1)
    argv = ["srun", f"--nodes={hosts}", f"--ntasks={nodes}", f"--ntasks-per-node={per_host}",
            "--kill-on-bad-exit=1"]
    if gpus_per_node:
        argv.append(f"--gpus-per-node={gpus_per_node}")
    if cpus_per_task:
        argv.append(f"--cpus-per-task={cpus_per_task}")
    return argv + list(extra)


def step_cpus(environ: Mapping[str, str]) -> int | None:
    """The CPUs per task of the allocation (what the step asks for again)."""
    value = environ.get("SLURM_CPUS_PER_TASK")
    return int(value) if value and value.isdigit() else None


def allocation_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The SLURM_* variables that make a nested srun a step of this job's allocation instead
    of a request for a new one."""
    return {k: v for k, v in environ.items() if k.startswith("SLURM_")}


def exec_with_task_env(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> int:
    """Compute task_env from the real environment and exec argv (does not return on success)."""
    env = dict(os.environ if environ is None else environ)
    try:
        env.update(task_env(env))
    except (ValueError, subprocess.CalledProcessError, FileNotFoundError) as exc:
        print(f"error: node-env: {exc}", file=sys.stderr)
        return 2
    if not argv:
        for key in ("WORLD_SIZE", "NUM_GPU_PER_NODE", "MASTER_ADDR", "MASTER_PORT", "NODE_RANK"):
            print(f"{key}={env[key]}")
        return 0
    os.execvpe(argv[0], list(argv), env)
    return 127  # not reached
