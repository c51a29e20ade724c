"""A bare Snakefile with exactly the jobs of a taomake DAG: the like-for-like reference of the
DAG-cost benchmarks (noop.py, sweep_scale.py).

It is read off taomake's own dry run (`snakemake -n` prints each job's rule, inputs, outputs,
log and benchmark): one rule per taomake rule, one job per taomake job, each with the same
number of inputs, outputs, logs and benchmarks, the same edges between jobs, input functions
as taomake's rules use them (a job reading a checkpoint's output asks the checkpoint, as the
sweep winner's artifacts do), checkpoints where taomake has them, and `touch` as the command.
Inputs no job makes (specs, data stamps) become files that exist, as they do in the project.
What this leaves out is what taomake adds on top of Snakemake: its plan, its input functions'
bodies, its wildcard constraints and its onstart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

JOB = re.compile(r"^(?:local)?(rule|checkpoint) (\w+):\n((?:    .*\n)+)", re.M)


@dataclass
class Job:
    rule: str
    fields: dict[str, list[str]] = field(default_factory=dict)
    checkpoint: bool = False  # a Snakemake checkpoint: the DAG is re-evaluated after it


def dry_run_jobs(out: str) -> list[Job]:
    """The jobs of a `snakemake -n` log (the target rule `all` included)."""
    jobs = []
    for m in JOB.finditer(out if out.endswith("\n") else out + "\n"):
        job = Job(m.group(2), checkpoint=m.group(1) == "checkpoint")
        for line in m.group(3).splitlines():
            key, _, value = line.strip().partition(": ")
            if key in ("input", "output", "log", "benchmark"):
                job.fields[key] = [v for v in value.split(", ") if v]
        jobs.append(job)
    return jobs


def mirror(jobs: list[Job], folder: Path, *, shared_prefix: bool = False) -> dict[str, int]:
    """Write the bare workflow into `folder` (Snakefile + the source files); returns the
    job count per rule.

    Outputs are `b/<rule>/<j>.<k>`: each rule's own constant prefix, which Snakemake's output
    index uses to offer a file to one rule only.  `shared_prefix` writes them the way taomake's
    layout does (`results/<j>/<rule>.<k>`: every rule's outputs start with `results/` and a
    wildcard), so each file is offered to every rule: the same work for Snakemake as
    taomake's paths give it."""

    def out_path(rule: str, j: int | str, k: int) -> str:
        return f"results/{j}/{rule}.{k}" if shared_prefix else f"b/{rule}/{j}.{k}"

    produced: dict[str, str] = {}  # taomake output -> the bare job's output
    ids: dict[str, int] = {}
    outputs_of: dict[int, list[str]] = {}
    ids_of: dict[int, int] = {}
    for n, job in enumerate(jobs):
        if job.rule == "all":
            continue
        j = ids[job.rule] = ids.get(job.rule, -1) + 1
        outs = job.fields.get("output", [])
        bare = [out_path(job.rule, j, k) for k in range(len(outs))]
        outputs_of[n] = bare
        ids_of[n] = j
        produced.update(zip(outs, bare, strict=True))
    checkpoint_of = {out: (job.rule, ids_of[n]) for n, job in enumerate(jobs)
                     if job.checkpoint for out in outputs_of[n]}
    kinds = {job.rule: "checkpoint" if job.checkpoint else "rule" for job in jobs}
    sources: dict[str, str] = {}

    def bare_input(path: str) -> str:
        if path in produced:
            return produced[path]
        return sources.setdefault(path, f"src/{len(sources)}")

    inputs: dict[str, dict[int, list[str]]] = {}
    gates: dict[str, dict[int, tuple[str, int]]] = {}
    shape: dict[str, tuple[int, int, int]] = {}
    targets: list[str] = []
    counts: dict[str, int] = {}
    for n, job in enumerate(jobs):
        ins = [bare_input(p) for p in job.fields.get("input", [])]
        if job.rule == "all":
            targets = ins
            continue
        j = ids_of[n]
        inputs.setdefault(job.rule, {})[j] = ins
        # a job reading a checkpoint's output asks the checkpoint from its input function,
        # as taomake's rules do (the sweep winner's artifacts)
        gate = next((checkpoint_of[p] for p in ins if p in checkpoint_of), None)
        if gate:
            gates.setdefault(job.rule, {})[j] = gate
        shape[job.rule] = (len(job.fields.get("output", [])), len(job.fields.get("log", [])),
                           len(job.fields.get("benchmark", [])))
        counts[job.rule] = counts.get(job.rule, 0) + 1
    (folder / "src").mkdir(parents=True, exist_ok=True)
    for bare in sources.values():
        (folder / bare).touch()
    lines = [f"IN = {inputs!r}", f"GATES = {gates!r}", "",
             "def inputs(rule, j):",
             "    gate = GATES.get(rule, {}).get(j)",
             "    if gate:",
             "        getattr(checkpoints, gate[0]).get(j=str(gate[1]))",
             "    return IN[rule][j]", "",
             "rule all:", f"    input: {targets!r}", ""]
    for rule, (n_out, n_log, n_bench) in shape.items():
        lines += [f"{kinds[rule]} {rule}:",
                  f"    input: lambda w: inputs({rule!r}, int(w.j))",
                  "    output: " + ", ".join(f'"{out_path(rule, "{j}", k)}"'
                                        for k in range(n_out))]
        if n_log:
            lines.append("    log: " + ", ".join(f'"logs/{rule}/{{j}}.{k}"'
                                                 for k in range(n_log)))
        if n_bench:
            lines.append(f'    benchmark: "bench/{rule}/{{j}}.tsv"')
        lines += ['    shell: "touch {output}"', ""]
    (folder / "Snakefile").write_text("\n".join(lines))
    return counts
