"""Overhead of taomake's docker runner against a plain `docker run --rm` (SDK
`containers.run(remove=True)`) of the same trivial command in the same image.

    python benchmarks/runner_overhead.py [--runs 10] [--image taomake/tao-cpu-test:1]

Prints the median wall time of each and their ratio (target: <= 1.1).
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from taomake.compiler.actions import ACTIONS

from taomake.runners import TaoJob
from taomake.runners.docker import DockerRunner
from taomake.runners.mounts import Mount


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--image", default="taomake/tao-cpu-test:1")
    args = ap.parse_args()

    import docker

    client = docker.from_env()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        bindir = root / "bin"
        bindir.mkdir()
        (bindir / "rtdetr").write_text("#!/bin/sh\necho ok\n")
        (bindir / "rtdetr").chmod(0o755)
        results = root / "results/base"
        (results / "train/.taomake").mkdir(parents=True)
        job = TaoJob(action=ACTIONS["train"], spec=results / "train/.taomake/job-train.yaml",
                     results_dir="results/base", workdir=root, image=args.image,
                     shm_size="64m", mounts=(Mount(str(results), str(results), False),),
                     label="benchmark/runner_overhead")
        runner = DockerRunner(mounts=(f"{bindir}:{bindir}",), tao_bin=str(bindir),
                              allow_root=True, ulimits={})
        volumes = {str(bindir): {"bind": str(bindir), "mode": "ro"},
                   str(results): {"bind": str(results), "mode": "rw"}}

        def with_runner() -> None:
            log = io.BytesIO()
            assert runner.run(job, log) == 0 and b"ok" in log.getvalue()

        def plain() -> None:
            out = client.containers.run(args.image, [str(bindir / "rtdetr")], remove=True,
                                        volumes=volumes, working_dir=str(root),
                                        network_mode="none")
            assert b"ok" in out

        times: dict[str, list[float]] = {"taomake docker runner": [], "docker run --rm": []}
        for fn in (with_runner, plain):  # warm-up
            fn()
        for _ in range(args.runs):  # interleaved, so drift hits both alike
            for name, fn in (("taomake docker runner", with_runner), ("docker run --rm", plain)):
                t = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t)

    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = med["taomake docker runner"] / med["docker run --rm"]
    print(f"| {'what':<22} | median s | min s  | max s  |")
    print(f"|{'-' * 24}|----------|--------|--------|")
    for k, v in times.items():
        print(f"| {k:<22} | {med[k]:8.3f} | {min(v):6.3f} | {max(v):6.3f} |")
    print(f"\nratio runner / docker run --rm: {ratio:.2f} (target <= 1.1, {args.runs} runs each)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
