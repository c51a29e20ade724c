"""CPU threads and data-loader processes of a real TAO training on CPU (the demo's).

The demo project (root project.yaml, the TAO CPU venv of `taomake setup tao-cpu`) is prepared
up to its data checks; then `rtdetr train` of the compiled spec runs for a few epochs into a
scratch folder, alternating one thread (OMP_NUM_THREADS=1) and torch's default (one per core),
each with the data loaded in the training process (dataset.workers=0) and in two loader
processes (workers=2), and the medians of CPU seconds (user + sys, children included:
torchrun, the worker, its data loaders) and wall seconds are compared.  The thread comparison
for `rtdetr evaluate` of the trained model follows.

    python benchmarks/threads.py [--epochs 3] [--runs 2]

What it decides: the test suite's real-TAO builds, except the shared demo build that the
learned tests wait for, train with one thread (tests/helpers.py ONE_THREAD); taomake's own
default stays (a project's only CPU training takes every core `--cores` allows).  Results:
benchmarks/README.md, "threads.py".
"""

from __future__ import annotations

import argparse
import os
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


def timed(action: str, argv: list[str], cwd: Path, env: dict[str, str],
          out: Path) -> tuple[float, float]:
    """(cpu seconds, wall seconds) of one `rtdetr <action>` writing under `out`, its children
    included; exits unless TAO's status.json says the action finished (TAO exits 0 on some
    failures)."""
    from taomake.compiler.actions import ACTIONS

    from taomake.tao_status import outcome, read_status

    before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic()
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = outcome(read_status(out / ACTIONS[action].results_subdir / "status.json"),
                   ACTIONS[action].final_message)
    if proc.returncode != 0 or not done.finished:
        sys.exit(f"failed ({done.reason}): {' '.join(argv)}\n"
                 f"{(proc.stdout + proc.stderr)[-3000:]}")
    return after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime, wall


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--runs", type=int, default=2, help="runs of each setting (alternating)")
    args = ap.parse_args()
    from taomake.tao_cpu.setup import default_venv_path

    venv = default_venv_path()
    if not (venv / "bin/rtdetr").exists():
        sys.exit(f"no TAO CPU venv at {venv}: run `taomake setup tao-cpu`")
    base = {k: v for k, v in os.environ.items()
            if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY")}
    tao_env = {**base, "PATH": f"{venv / 'bin'}{os.pathsep}{base['PATH']}",
               "VIRTUAL_ENV": str(venv), "PYTHONUNBUFFERED": "1"}
    settings = {"1 thread": {"OMP_NUM_THREADS": "1"},
                f"default ({os.cpu_count()} threads)": {}}
    loaders = (0, 2)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "demo"
        folder.mkdir()
        (folder / "data").symlink_to(REPO / "data")
        shutil.copy(REPO / "project.yaml", folder / "project.yaml")
        subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"),
                        "--cores", "2", "--until", "data_check", "runtime_ready"], cwd=folder,
                       check=True, capture_output=True)
        rtdetr = str(venv / "bin/rtdetr")
        spec = "results/base/specs/train.yaml"
        times: dict[tuple[str, str], list[tuple[float, float]]] = {}
        trained = None
        for run in range(args.runs):
            for name, extra in settings.items():
                for workers in loaders:
                    out = Path(tmp) / f"train-{run}-{name.split()[0]}-{workers}"
                    cpu_wall = timed("train", [rtdetr, "train", "-e", spec,
                                               f"results_dir={out}",
                                               f"train.num_epochs={args.epochs}",
                                               f"dataset.workers={workers}"], folder,
                                     {**tao_env, **extra}, out)
                    times.setdefault((f"train, workers={workers}", name), []).append(cpu_wall)
                    print(f"train {args.epochs} epochs, workers={workers}, {name}: "
                          f"{cpu_wall[0]:.1f} cpu-s, {cpu_wall[1]:.1f} s", file=sys.stderr)
                    trained = out
        model = max((trained / "train").glob("model_epoch_*.pth"))
        for run in range(args.runs):
            for name, extra in settings.items():
                out = Path(tmp) / f"evaluate-{run}-{name.split()[0]}"
                cpu_wall = timed("evaluate", [rtdetr, "evaluate", "-e",
                                              "results/base/specs/evaluate.yaml",
                                              f"results_dir={out}", f"evaluate.checkpoint={model}"],
                                 folder, {**tao_env, **extra}, out)
                times.setdefault(("evaluate", name), []).append(cpu_wall)
    print(f"\n| job | threads | cpu-s (median of {args.runs}) | wall s (median) |")
    print("|---|---|---|---|")
    for (job, name), values in times.items():
        what = f"{job}, {args.epochs} epochs" if job.startswith("train") else job
        print(f"| {what} | {name} | {statistics.median(v[0] for v in values):.1f} | "
              f"{statistics.median(v[1] for v in values):.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
