"""A 1000-trial random sweep: `snakemake -n` DAG construction against a bare Snakefile with the
same jobs and the same inputs, outputs, logs and benchmarks per job (benchmarks/bare_mirror.py
reads them off taomake's own dry run), plus the compile.

    python benchmarks/sweep_scale.py [--trials 1000] [--repeat 3]

Target (issue 16): cached `snakemake -n` <= 1.2x the bare Snakefile, in CPU seconds.
"""

from __future__ import annotations

import argparse
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.bare_mirror import dry_run_jobs, mirror  # noqa: E402

SNAKEMAKE = [sys.executable, "-m", "snakemake"]

SWEEP = """
experiments:
  tuned:
    sweep:
      method: random
      trials: {trials}
      parameters:
        train.optim.lr: {{min: 0.00005, max: 0.001, log: true}}
        dataset.augmentation.distortion_prob: {{min: 0.1, max: 0.9}}
"""


def jobs_in(out: str) -> int:
    m = re.search(r"^total\s+(\d+)", out, re.M)
    return int(m.group(1)) if m else -1


def timed(cmd: list[str], cwd: Path, repeat: int) -> tuple[float, float, str]:
    """Median (cpu s, wall s) of `repeat` runs, and the last run's output."""
    cpus, walls, out = [], [], ""
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
        walls.append(time.perf_counter() - t)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        assert proc.returncode == 0, proc.stderr[-2000:]
        out = proc.stdout + proc.stderr
    return statistics.median(cpus), statistics.median(walls), out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    from tests.func.test_build import fake_project_text

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        proj, bare, shared = root / "proj", root / "bare", root / "shared"
        for folder in (proj, bare, shared):
            folder.mkdir()
        (proj / "data").symlink_to(REPO / "data")
        (proj / "project.yaml").write_text(fake_project_text() + SWEEP.format(
            trials=args.trials))

        ours = [*SNAKEMAKE, "-s", str(REPO / "Snakefile"), "-n", "--cores", "1"]
        first_cpu, first_wall, out = timed(ours, proj, 1)  # compiles, writes the specs
        jobs = dry_run_jobs(out)
        counts = mirror(jobs, bare)
        mirror(jobs, shared, shared_prefix=True)
        # interleaved, one run of each per round, so a machine whose speed drifts (a shared
        # VM) slows all three alike
        bare_cmd = [*SNAKEMAKE, "-n", "--cores", "1"]
        rounds = [(timed(ours, proj, 1), timed(bare_cmd, bare, 1), timed(bare_cmd, shared, 1))
                  for _ in range(args.repeat)]

        def medians(i: int) -> tuple[float, float, str]:
            """Median cpu and wall seconds of workflow `i` over the rounds, its last output."""
            runs = [r[i] for r in rounds]
            return (statistics.median(c for c, _, _ in runs),
                    statistics.median(w for _, w, _ in runs), runs[-1][2])

        ours_cpu, ours_wall, ours_out = medians(0)
        bare_cpu, bare_wall, bare_out = medians(1)
        shared_cpu, shared_wall, shared_out = medians(2)

    n_ours, n_bare = jobs_in(ours_out), jobs_in(bare_out)
    assert n_ours == n_bare == jobs_in(shared_out), (n_ours, n_bare, jobs_in(shared_out))
    inputs = sum(len(j.fields.get("input", [])) for j in jobs if j.rule != "all")
    ratio = ours_cpu / bare_cpu
    print(f"{args.trials}-trial random sweep (fake TAO venv; nothing runs: -n); "
          f"{n_ours} jobs, {inputs} inputs in both")
    print("jobs per rule: " + ", ".join(f"{r} {n}" for r, n in counts.items()))
    print(f"{'':44} {'cpu s':>7} {'wall s':>7}")
    print(f"{'first snakemake -n (compile + write specs)':44} {first_cpu:7.2f} {first_wall:7.2f}")
    print(f"{'snakemake -n, plan cached':44} {ours_cpu:7.2f} {ours_wall:7.2f}")
    print(f"{'bare Snakefile, same jobs and inputs, -n':44} {bare_cpu:7.2f} {bare_wall:7.2f}")
    print(f"{'bare, outputs under results/<wildcard>/ too':44} {shared_cpu:7.2f} "
          f"{shared_wall:7.2f}")
    print(f"DAG cost taomake/bare: {ratio:.2f} in CPU seconds (target <= 1.2), "
          f"{ours_wall / bare_wall:.2f} in wall seconds")
    print(f"taomake/bare with the same output path shape: {ours_cpu / shared_cpu:.2f} in CPU "
          "seconds (what taomake adds beyond its path layout)")
    return 0 if ratio <= 1.2 else 1


if __name__ == "__main__":
    sys.exit(main())
