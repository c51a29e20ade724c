"""A 1000-trial random sweep: compile time for its specs, and `snakemake -n` DAG construction
against a bare Snakefile with the same number of jobs (touch rules, same shape: two dataset
checks and a runtime marker, a train job per trial, then the choice of the winner and the
report over all of them).

    python benchmarks/sweep_scale.py [--trials 1000] [--repeat 3]

Targets: DAG ratio <= 2; the compile is reported (and cached by the build plan after it).
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SNAKEMAKE = [sys.executable, "-m", "snakemake"]

SWEEP = """
sweep:
  method: random
  trials: {trials}
  parameters:
    train.optim.lr: {{min: 0.00005, max: 0.001, log: true}}
    dataset.augmentation.distortion_prob: {{min: 0.1, max: 0.9}}
"""

BARE = '''
N = {trials}
rule all:
    input: "out/winner.done", "out/report.done"

rule check:
    output: "out/check_{{role}}.done"
    shell: "touch {{output}}"

rule ready:
    output: "out/ready.done"
    shell: "touch {{output}}"

rule train:
    input: "out/ready.done", "out/check_train.done", "out/check_val.done"
    output: "out/train_{{i}}.done"
    shell: "touch {{output}}"

rule best:
    input: expand("out/train_{{i}}.done", i=range(N))
    output: "out/best.done"
    shell: "touch {{output}}"

rule done:
    input: "out/best.done"
    output: "out/winner.done"
    shell: "touch {{output}}"

rule report:
    input: expand("out/train_{{i}}.done", i=range(N)), "out/winner.done"
    output: "out/report.done"
    shell: "touch {{output}}"
'''


def jobs_in(out: str) -> int:
    m = re.search(r"^total\s+(\d+)", out, re.M)
    return int(m.group(1)) if m else -1


def timed(cmd: list[str], cwd: Path, repeat: int) -> tuple[float, str]:
    times, out = [], ""
    for _ in range(repeat):
        t = time.perf_counter()
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
        times.append(time.perf_counter() - t)
        assert proc.returncode == 0, proc.stderr[-2000:]
        out = proc.stdout
    return statistics.median(times), out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    from taomake.compiler import compile_project, load_project

    from tests.test_build import fake_project_text

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        proj, bare = root / "proj", root / "bare"
        proj.mkdir()
        bare.mkdir()
        (proj / "data").symlink_to(REPO / "data")
        # the sweep's trials only train until the winner is known: test/inference off keeps
        # the comparison to what the DAG holds before the checkpoint
        text = fake_project_text() + SWEEP.format(trials=args.trials)
        (proj / "project.yaml").write_text(text)

        t = time.perf_counter()
        lp = load_project(proj / "project.yaml")
        load_s = time.perf_counter() - t
        t = time.perf_counter()
        compiled = compile_project(lp)
        compile_s = time.perf_counter() - t
        n_specs = sum(len(c.specs) for c in compiled.values())
        train_specs = sum(1 for c in compiled.values() if "train" in c.specs)

        ours = [*SNAKEMAKE, "-s", str(REPO / "Snakefile"), "-n", "--cores", "1"]
        t = time.perf_counter()
        first = subprocess.run(ours, cwd=proj, capture_output=True, text=True)
        first_s = time.perf_counter() - t
        assert first.returncode == 0, first.stderr[-3000:]
        ours_s, ours_out = timed(ours, proj, args.repeat)

        (bare / "Snakefile").write_text(BARE.format(trials=args.trials))
        bare_s, bare_out = timed([*SNAKEMAKE, "-n", "--cores", "1"], bare, args.repeat)

    n_ours, n_bare = jobs_in(ours_out), jobs_in(bare_out)
    ratio = ours_s / bare_s
    print(f"{args.trials}-trial random sweep (fake TAO venv; nothing runs: -n)")
    print(f"{'':46} {'seconds':>8}")
    print(f"{'load + validate project.yaml (trials expanded)':46} {load_s:8.2f}")
    print(f"{f'compile {n_specs} specs ({train_specs} train)':46} {compile_s:8.2f}")
    print(f"{'first snakemake -n (compile + write specs)':46} {first_s:8.2f}")
    print(f"{f'snakemake -n, plan cached ({n_ours} jobs)':46} {ours_s:8.2f}")
    print(f"{f'bare Snakefile -n ({n_bare} jobs)':46} {bare_s:8.2f}")
    print(f"DAG ratio taomake/bare: {ratio:.2f} (target <= 2)")
    return 0 if ratio <= 2 else 1


if __name__ == "__main__":
    sys.exit(main())
