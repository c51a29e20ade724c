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

DEFAULT_PORT = 29500


def scontrol_hostnames(nodelist: str) -> list[str]:
    """Expand a SLURM node list ("node[01-02]") with `scontrol show hostnames`."""
    out = subprocess.run(["scontrol", "show", "hostnames", nodelist], check=True,
                         capture_output=True, text=True).stdout
    return [line.strip() for line in out.splitlines() if line.strip()]


def shared_env(environ: Mapping[str, str],
               expand: Callable[[str], list[str]] = scontrol_hostnames,
               gpus_per_node: int | None = None) -> dict[str, str]:
    """TAO's distributed variables that every node shares, from the allocation's SLURM
    environment (the batch step's, or one task's); `gpus_per_node` as the job asked, when
    known (the batch step may not see SLURM's GPU variables)."""
    nodelist = environ.get("SLURM_JOB_NODELIST") or environ.get("SLURM_NODELIST")
    if not nodelist:
        raise ValueError("SLURM_JOB_NODELIST is not set: multi-node training runs inside a "
                         "SLURM allocation (snakemake --profile profiles/slurm)")
    hosts = expand(nodelist)
    if not hosts:
        raise ValueError(f"empty node list {nodelist!r}")
    nodes = int(environ.get("SLURM_JOB_NUM_NODES") or environ.get("SLURM_NNODES") or len(hosts))
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
        "MASTER_PORT": str(environ.get("MASTER_PORT") or DEFAULT_PORT),
    }


def task_env(environ: Mapping[str, str],
             expand: Callable[[str], list[str]] = scontrol_hostnames) -> dict[str, str]:
    """TAO's distributed variables for ONE srun task, from that task's SLURM environment."""
    rank = environ.get("SLURM_PROCID")
    if rank is None:
        raise ValueError("SLURM_PROCID is not set: run this inside an srun task")
    return {**shared_env(environ, expand), "NODE_RANK": str(int(rank))}


# Runs in each srun task, inside the container too: NODE_RANK from the task's own SLURM_PROCID,
# then the command.  POSIX sh only (every TAO image has it).
RANK_FROM_PROCID = ["sh", "-c", 'export NODE_RANK="$SLURM_PROCID"; exec "$@"', "node-rank"]


def srun_prefix(nodes: int, gpus_per_node: int, *, cpus_per_task: int | None = None,
                extra: Sequence[str] = ()) -> list[str]:
    """srun options starting one task per node, as a step of the surrounding allocation.

    `cpus_per_task`: srun does not inherit sbatch's --cpus-per-task (SLURM >= 22.05), so the
    step states it.  (`--wait-all-nodes` is an sbatch option, not srun's; srun starts only when
    its whole allocation exists anyway.)"""
    argv = ["srun", f"--nodes={nodes}", f"--ntasks={nodes}", "--ntasks-per-node=1",
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
