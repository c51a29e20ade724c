"""Build-system overhead.

1. An up-to-date `snakemake -n` on the sample project vs. a bare Snakefile with the same jobs,
   inputs, outputs, logs and benchmarks (benchmarks/bare_mirror.py), CPU seconds (target ratio
   <= 1.2).
2. The demo pipeline with real TAO on CPU, built from scratch one job at a time: the sum of the
   TAO command times vs. the pipeline's wall time (target overhead <= 15%).

    python benchmarks/noop.py [--skip-tao] [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
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

def timed(cmd: list[str], cwd: Path, repeat: int) -> float:
    """Median CPU seconds (user + sys) of `repeat` runs."""
    cpus = []
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(cmd, cwd=cwd, check=True, capture_output=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return statistics.median(cpus)


def make_demo(folder: Path) -> None:
    shutil.copy(REPO / "tests" / "smoke_project.yaml", folder / "project.yaml")
    shutil.copytree(REPO / "data", folder / "data")


def noop(repeat: int) -> tuple[float, float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        bare, demo = tmp / "bare", tmp / "demo"
        bare.mkdir()
        demo.mkdir()
        make_demo(demo)
        ours = [*SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--cores", "1"]
        dry = subprocess.run([*ours, "-n"], cwd=demo, check=True, capture_output=True,
                             text=True)
        jobs = [j for j in dry_run_jobs(dry.stdout + dry.stderr) if j.rule != "all"]
        mirror(jobs, bare)  # the same jobs, inputs, outputs, logs and benchmarks
        subprocess.run([*SNAKEMAKE, "--cores", "1", "-q"], cwd=bare, check=True,
                       capture_output=True)
        # make every output up to date without running TAO: the question is DAG overhead
        subprocess.run([*ours, "--touch"], cwd=demo, check=True, capture_output=True)
        subprocess.run([*ours, "-n"], cwd=demo, check=True, capture_output=True)
        t_bare = timed([*SNAKEMAKE, "-n", "--cores", "1"], bare, repeat)
        t_ours = timed([*ours, "-n"], demo, repeat)
        return t_ours, t_bare, len(jobs)


def tao_overhead() -> tuple[float, dict[str, float]]:
    with tempfile.TemporaryDirectory() as tmp:
        demo = Path(tmp)
        make_demo(demo)
        start = time.perf_counter()
        subprocess.run([*SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--cores", "1"], cwd=demo,
                       check=True, capture_output=True)
        total = time.perf_counter() - start
        tao = {p.name[4:-5]: json.loads(p.read_text())["tao_seconds"]
               for p in demo.glob("results/*/*/.taomake/run-*.json")}
        return total, tao


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--skip-tao", action="store_true", help="only the no-op comparison")
    args = parser.parse_args()
    ok = True
    ours, bare, n_jobs = noop(args.repeat)
    ratio = ours / bare
    ok &= ratio <= 1.2
    print("up-to-date `snakemake -n`, CPU seconds (user + sys), median of", args.repeat)
    print(f"{'workflow':34} {'cpu s':>8}")
    print(f"{f'bare Snakefile ({n_jobs} touch jobs)':34} {bare:8.3f}")
    print(f"{f'taomake demo project ({n_jobs} jobs)':34} {ours:8.3f}")
    print(f"{'ratio (target <= 1.2)':34} {ratio:8.3f}  {'ok' if ratio <= 1.2 else 'OVER'}")
    if not args.skip_tao:
        total, tao = tao_overhead()
        spent = sum(tao.values())
        overhead = (total - spent) / total
        ok &= overhead <= 0.15
        print("\ndemo pipeline from scratch, real TAO on CPU, --cores 1")
        print(f"{'step':34} {'seconds':>8}")
        for action, seconds in sorted(tao.items()):
            print(f"{'TAO ' + action:34} {seconds:8.1f}")
        print(f"{'sum of TAO commands':34} {spent:8.1f}")
        print(f"{'pipeline wall time':34} {total:8.1f}")
        print(f"{'overhead (target <= 15%)':34} {overhead:8.1%}  "
              f"{'ok' if overhead <= 0.15 else 'OVER'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
