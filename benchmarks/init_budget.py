"""`taomake init --preset cpu --budget-minutes B` on a user's own data (issue 31): does the first
build's training fit the stated budget, and does the model learn?

    python benchmarks/init_budget.py [--budget 2] [--train 64]

A dataset from tests/datagen.py (non-square images, grayscale/RGB/CMYK/RGBA/palette, PNG and
JPEG, names with spaces, Roboflow's layout) is init'd with no edit and built with the real TAO
on CPU.  Prints the epochs init chose, its estimated seconds per epoch against the measured
ones, the training's time against the budget, the whole build's time and the test mAP50.
Target: the training within 1.25 x the budget; exit 0 when met.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main(argv: list[str] | None = None) -> int:
    from tests.datagen import write_dataset

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--budget", type=float, default=2.0, help="--budget-minutes for init")
    ap.add_argument("--train", type=int, default=64, help="training images")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="taomake-init-bench-") as tmp:
        root = Path(tmp)
        files = write_dataset(root / "mydata", "roboflow", counts={
            "train": args.train, "valid": max(4, args.train // 4),
            "test": max(4, args.train // 4)})
        subprocess.run([sys.executable, "-m", "taomake.cli", "init", str(files["train"]),
                        "-o", "proj/project.yaml", "--preset", "cpu", "--budget-minutes",
                        f"{args.budget:g}"], cwd=root, check=True, capture_output=True)
        text = (root / "proj/project.yaml").read_text()
        epochs = int(re.search(r"\n  epochs: (\d+)", text)[1])
        estimate = float(re.search(r"~(\d+) s per epoch", text)[1])
        started = time.monotonic()
        subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"),
                        "--cores", "all"], cwd=root / "proj", check=True,
                       capture_output=True)
        build = time.monotonic() - started
        base = root / "proj/results/base"
        train_s = json.loads((base / "train/.taomake/run-train.json").read_text())[
            "tao_seconds"]
        map50 = json.loads((base / "evaluate/metrics.json").read_text())["test_mAP50"]
    budget = args.budget * 60
    print(f"{args.train} training images, budget {args.budget:g} min: init chose {epochs} "
          f"epochs at ~{estimate:g} s each (estimated)")
    print(f"{'':28} {'estimated':>10} {'measured':>10}")
    print(f"{'seconds per epoch':28} {estimate:10.1f} {train_s / epochs:10.1f}")
    print(f"{'training (s)':28} {budget:10.0f} {train_s:10.0f}")
    print(f"whole build {build:.0f} s; test mAP50 {map50:.3f}")
    ok = train_s <= 1.25 * budget
    print("target met (training within 1.25 x the budget)" if ok else "target MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
