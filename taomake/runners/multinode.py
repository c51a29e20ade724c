"""Multi-node TAO training under SLURM: per-task environment and the srun command line.

TAO's multi-node launcher reads WORLD_SIZE (= number of nodes), NUM_GPU_PER_NODE, MASTER_ADDR,
MASTER_PORT and NODE_RANK.  NODE_RANK differs per node, so it must be computed inside each srun
task from that task's own SLURM_PROCID (one task per node), never exported once by the batch
script.  `taomake node-env -- ARGV...` does that and execs ARGV.
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


def task_env(environ: Mapping[str, str],
             expand: Callable[[str], list[str]] = scontrol_hostnames) -> dict[str, str]:
    """TAO's distributed variables for ONE srun task, from that task's SLURM environment."""
    nodelist = environ.get("SLURM_JOB_NODELIST") or environ.get("SLURM_NODELIST")
    if not nodelist:
        raise ValueError("SLURM_JOB_NODELIST is not set: run this inside an srun task")
    hosts = expand(nodelist)
    if not hosts:
        raise ValueError(f"empty node list {nodelist!r}")
    nodes = int(environ.get("SLURM_JOB_NUM_NODES") or environ.get("SLURM_NNODES") or len(hosts))
    gpus = environ.get("NUM_GPU_PER_NODE") or environ.get("SLURM_GPUS_PER_NODE") \
        or environ.get("SLURM_GPUS_ON_NODE")
    if gpus is None:
        visible = environ.get("CUDA_VISIBLE_DEVICES", "")
        gpus = str(len([d for d in visible.split(",") if d.strip()]) or 1)
    gpus = gpus.split(":")[-1]  # "a100:4" -> "4"
    rank = environ.get("SLURM_PROCID")
    if rank is None:
        raise ValueError("SLURM_PROCID is not set: run this inside an srun task")
    return {
        "WORLD_SIZE": str(nodes),
        "NUM_GPU_PER_NODE": str(int(gpus)),
        "MASTER_ADDR": hosts[0],
        "MASTER_PORT": str(environ.get("MASTER_PORT") or DEFAULT_PORT),
        "NODE_RANK": str(int(rank)),
    }


def srun_prefix(nodes: int, gpus_per_node: int, *, cpus_per_task: int | None = None,
                extra: Sequence[str] = ()) -> list[str]:
    """srun argv starting one task per node that sets its own rank, then runs the command.

    (`--wait-all-nodes` is an sbatch option, not srun's; srun starts only when its whole
    allocation exists anyway.)"""
    argv = ["srun", f"--nodes={nodes}", f"--ntasks={nodes}", "--ntasks-per-node=1",
            "--kill-on-bad-exit=1"]
    if gpus_per_node:
        argv.append(f"--gpus-per-node={gpus_per_node}")
    if cpus_per_task:
        argv.append(f"--cpus-per-task={cpus_per_task}")
    argv += list(extra)
    return argv + ["taomake", "node-env", "--"]


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
