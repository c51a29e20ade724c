"""Incremental compile: what an edit to project.yaml costs before Snakemake starts.

The plan cache keeps a key per experiment (compiler/plan.py `experiment_key`), so an edit
recompiles only the experiments it touches.  Each row is one `load_plan` in a fresh Python
(what every `snakemake` call pays at parse time), CPU seconds (user + sys) and wall seconds,
against the same edit compiled from scratch (no cache: what an edit cost before).

    python benchmarks/incremental.py [--trials 1000] [--experiments 200]

Targets (issue 16): a comment on the 1000-trial sweep <= 2 s; one experiment's value changed
<= 3 s; 200 experiments cold <= 3 cpu-s.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.sweep_scale import SWEEP  # noqa: E402  (the same 1000-trial sweep)

LOAD = ("import sys; from pathlib import Path; from taomake.compiler.plan import load_plan; "
        "p = load_plan(Path(sys.argv[1])); print(len(p.experiments))")



def experiments(n: int) -> str:
    return "experiments:\n" + "".join(
        f"  e{i:04d}:\n    train.lr: {0.0001 + i * 1e-7:.8f}\n"
        f"    model.num_queries: {20 + i % 20}\n" for i in range(n))


def load_plan_cost(project: Path) -> tuple[float, float, int]:
    """(cpu s, wall s, experiments) of one load_plan in a fresh Python."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", LOAD, str(project)], capture_output=True,
                          text=True, cwd=REPO)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert proc.returncode == 0, proc.stderr[-3000:]
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall, int(proc.stdout.split()[-1])


def project(folder: Path, text: str) -> Path:
    from tests.func.test_build import fake_project_text

    folder.mkdir(parents=True)
    (folder / "data").symlink_to(REPO / "data")
    path = folder / "project.yaml"
    path.write_text(fake_project_text() + text)
    return path


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def forget(path: Path) -> None:
    shutil.rmtree(path.parent / ".snakemake", ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument("--experiments", type=int, default=200)
    args = ap.parse_args()
    rows: list[tuple[str, float, float, int, str]] = []
    ok = True

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        # 1. comment edit on an N-trial sweep
        sweep = project(root / "sweep", SWEEP.format(trials=args.trials))
        cpu, wall, n = load_plan_cost(sweep)
        rows.append((f"{args.trials}-trial sweep, cold (compile all)", cpu, wall, n, ""))
        cpu, wall, n = load_plan_cost(sweep)
        rows.append(("  unchanged (cache hit)", cpu, wall, n, ""))
        edit(sweep, "# The tests' smoke project", "# The tests' smoke project (comment)")
        cpu, wall, n = load_plan_cost(sweep)
        ok &= wall <= 2.0
        rows.append(("  a comment edited", cpu, wall, n, "<= 2 s wall"))
        edit(sweep, "# The tests' smoke project (comment)", "# The tests' smoke project (2)")
        forget(sweep)
        cpu, wall, n = load_plan_cost(sweep)
        rows.append(("  a comment edited, no per-experiment reuse", cpu, wall, n, "before"))

        # 2. one experiment's value changed among N explicit experiments
        many = project(root / "many", experiments(args.trials))
        load_plan_cost(many)
        edit(many, "  e0007:\n    train.lr: ", "  e0007:\n    train.lr: 0.0002 # was ")
        cpu, wall, n = load_plan_cost(many)
        ok &= wall <= 3.0
        rows.append((f"{args.trials} experiments, one value changed", cpu, wall, n,
                     "<= 3 s wall"))

        # 3. 200 experiments cold
        cold = project(root / "cold", experiments(args.experiments))
        cpu, wall, n = load_plan_cost(cold)
        ok &= cpu <= 3.0
        rows.append((f"{args.experiments} experiments, cold", cpu, wall, n, "<= 3 cpu-s"))

    print(f"{'load_plan in a fresh Python (before Snakemake starts)':50} {'cpu s':>6} "
          f"{'wall s':>7} {'exps':>5}  target")
    for name, cpu, wall, n, target in rows:
        print(f"{name:50} {cpu:6.2f} {wall:7.2f} {n:5d}  {target}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
