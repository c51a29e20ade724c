"""Compile speed: validate + compile every action of the sample project, and of a project with
200 experiments.  Targets: < 100 ms warm for the sample, < 5 s for 200 experiments.

    python benchmarks/compile.py [--repeat N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from taomake.compiler import compile_project, load_project  # noqa: E402


def project_with_experiments(folder: Path, n: int) -> Path:
    text = (REPO / "tests" / "smoke_project.yaml").read_text() + "experiments:\n"
    for i in range(n):
        text += (f"  e{i:03d}:\n    train.lr: {0.0001 + i * 1e-6:.7f}\n"
                 f"    model.num_queries: {20 + i % 20}\n")
    (folder / "data").symlink_to(REPO / "data")
    path = folder / "project.yaml"
    path.write_text(text)
    return path


def timed(path: Path, repeat: int) -> tuple[float, float, int]:
    """(first run s, median warm s, number of specs)."""
    times = []
    specs = 0
    for _ in range(repeat):
        start = time.perf_counter()
        compiled = compile_project(load_project(path))
        times.append(time.perf_counter() - start)
        specs = sum(len(c.specs) for c in compiled.values())
    return times[0], statistics.median(times[1:] or times), specs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        # the sample project beside the bundled data, as tests/helpers.make_project lays it out
        sample = Path(tmp) / "sample"
        sample.mkdir()
        (sample / "data").symlink_to(REPO / "data")
        (sample / "project.yaml").write_text((REPO / "tests" / "smoke_project.yaml").read_text())
        first, warm, specs = timed(sample / "project.yaml", args.repeat)
        rows.append(("sample project (1 experiment)", specs, first, warm, 0.100))
        big = project_with_experiments(Path(tmp), 200)
        first, warm, specs = timed(big, max(3, args.repeat // 2))
        rows.append(("200 experiments", specs, first, warm, 5.0))
    print(f"{'project':32} {'specs':>6} {'first (s)':>10} {'warm (s)':>10} {'target (s)':>11}  ok")
    ok = True
    for name, n, first, warm, target in rows:
        good = warm < target
        ok &= good
        verdict = "yes" if good else "NO"
        print(f"{name:32} {n:6d} {first:10.3f} {warm:10.3f} {target:11.3f}  {verdict}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
