"""Build-system overhead.

1. An up-to-date `snakemake -n` on the sample project vs. a bare Snakefile with the same number
   of jobs as touch-file rules (target ratio <= 1.2).
2. The demo pipeline with real TAO on CPU, built from scratch one job at a time: the sum of the
   TAO command times vs. the pipeline's wall time (target overhead <= 15%).

    python benchmarks/noop.py [--skip-tao] [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SNAKEMAKE = [sys.executable, "-m", "snakemake"]

BARE = '''
rule all:
    input: "out/inference.done", "out/evaluate.done", "out/export.done"

rule check:
    output: "out/check_{role}.done"
    shell: "touch {output}"

rule train:
    input: "out/check_train.done", "out/check_val.done"
    output: "out/train.done"
    shell: "touch {output}"

rule select:
    input: "out/train.done"
    output: "out/model.done"
    shell: "touch {output}"

rule evaluate:
    input: "out/model.done", "out/check_test.done"
    output: "out/evaluate.done"
    shell: "touch {output}"

rule export:
    input: "out/model.done"
    output: "out/export.done"
    shell: "touch {output}"

rule inference:
    input: "out/model.done"
    output: "out/inference.done"
    shell: "touch {output}"
'''


def timed(cmd: list[str], cwd: Path, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(cmd, cwd=cwd, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def make_demo(folder: Path) -> None:
    shutil.copy(REPO / "tests" / "smoke_project.yaml", folder / "project.yaml")
    shutil.copytree(REPO / "data", folder / "data")


def noop(repeat: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        bare, demo = tmp / "bare", tmp / "demo"
        bare.mkdir()
        demo.mkdir()
        (bare / "Snakefile").write_text(BARE)
        subprocess.run([*SNAKEMAKE, "--cores", "1", "-q"], cwd=bare, check=True,
                       capture_output=True)
        make_demo(demo)
        # make every output up to date without running TAO: the question is DAG overhead
        ours = [*SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--cores", "1"]
        subprocess.run([*ours, "--touch"], cwd=demo, check=True, capture_output=True)
        subprocess.run([*ours, "-n"], cwd=demo, check=True, capture_output=True)
        t_bare = timed([*SNAKEMAKE, "-n", "--cores", "1"], bare, repeat)
        t_ours = timed([*ours, "-n"], demo, repeat)
        return t_ours, t_bare


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
    ours, bare = noop(args.repeat)
    ratio = ours / bare
    ok &= ratio <= 1.2
    print("up-to-date `snakemake -n`, median of", args.repeat)
    print(f"{'workflow':34} {'seconds':>8}")
    print(f"{'bare Snakefile (8 touch jobs)':34} {bare:8.3f}")
    print(f"{'taomake demo project (8 jobs)':34} {ours:8.3f}")
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
