# What each job asks for: CPU threads and, on a cluster, its SLURM resources (GPUs, CPUs,
# memory, wall time, partition, account), from project.yaml `hardware` via the plan.
import os

from taomake.compiler.actions import ACTIONS, TRAININGS


# Every core of this host: what a job that should run alone asks for (Snakemake lowers a
# rule's threads to `--cores` itself, so `--cores 1` still runs everything)
CORES = os.cpu_count() or 1


def tao_threads(action):
    """CPU threads of a TAO job.  Snakemake gives a job's shell OMP_NUM_THREADS = threads and
    `taomake run` passes it on to TAO on CPU (torch follows it), so jobs never share a core.
    On CPU, a project's only training takes every core `--cores` allows, up to
    `hardware.slurm.cpus_per_gpu` (the CPUs a job is given on CPU): it is the slowest step
    and runs alone.  Several trainings (seeds, sweeps, a teacher and its student) take one
    core each and run side by side: a short training is mostly TAO's single-threaded start-up,
    which would leave the other cores idle.  Every other action takes one core (mostly
    start-up too); on GPU, 1 (the GPU does the work)."""
    trainings = sum(1 for e in EXPS.values() for a in TRAININGS if a in e.specs)
    if not ACTIONS[action].trains or trainings > 1:
        return 1

    def of(exp):
        r = EXPS[exp].resources.get(action, {})
        return 1 if "gres" in r else max(1, min(CORES, r.get("cpus_per_task", 1)))

    values = {of(exp) for exp in EXPS}
    if len(values) == 1:
        return values.pop()
    return lambda w: of(w.exp)


def resources_for(action):
    """Snakemake resources of a TAO action, from project.yaml `hardware` (+ `hardware.slurm`)
    via the plan: used with `--profile profiles/slurm` (GPUs, CPUs, memory, wall time,
    partition, account, constraint, requeue).  Resources are not rerun triggers and do not
    touch specs.  A value every experiment shares is given as is; one that differs is a
    callable (Snakemake calls those per job, which costs time in large sweeps)."""
    neutral = {"gres": "", "slurm_partition": "", "slurm_account": "", "constraint": "",
               "slurm_extra": ""}  # absent (e.g. no GPU on CPU projects)
    # resources follow `hardware` alone: experiments with the same job settings (a sweep's
    # trials) have the same, so one of each is enough to tell whether they all agree
    kinds = list({e.settings: name for name, e in EXPS.items()}.values())
    keys = sorted({k for exp in kinds for k in EXPS[exp].resources.get(action, {})})

    def value_of(exp, key):
        value = EXPS[exp].resources.get(action, {}).get(key)
        return neutral.get(key, 0) if value is None else value

    def one(key):
        values = {repr(value_of(exp, key)) for exp in kinds}
        if len(values) == 1:
            return value_of(kinds[0], key)

        def get(wildcards, attempt=1):
            return value_of(wildcards.exp, key)

        return get

    return {key: one(key) for key in keys}
