"""What `taomake run` adds to a TAO job: its CPU time around the same TAO command run bare.

A demo project on the TAO test double (tests/fake_tao) is built once; then `taomake run
evaluate` (read the cached plan, check the spec, resume guard, run TAO, judge status.json and
the outputs, write provenance with the model's digest) and the bare command it runs (the same
argv, cwd and environment, taken from the job's own record) alternate, and the medians of
their CPU seconds (user + sys, children included) are compared.

    python benchmarks/job_overhead.py [--runs 7]

Target (issue 16): <= 0.3 cpu-s per job before and around TAO.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def cpu_of(argv: list[str], cwd: Path, env: dict[str, str]) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(argv, cwd=cwd, env=env, check=True, capture_output=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args()
    from tests.func.test_build import fake_project_text

    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "compiler"),
                    str(REPO / "taomake")], check=True, capture_output=True)

    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "data").symlink_to(REPO / "data")
        (folder / "project.yaml").write_text(fake_project_text())
        subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"),
                        "--cores", "1"], cwd=folder, env=env, check=True, capture_output=True)
        record = json.loads((folder / "results/base/evaluate/.taomake/run-evaluate.json")
                            .read_text())
        from taomake.runners.local import LocalRunner

        venv = Path(json.loads((folder / "results/base/evaluate/.taomake/"
                                "provenance-evaluate.json").read_text())["runtime"]["venv"])
        bare = [str(venv / "bin" / record["argv"][0]), *record["argv"][1:]]
        tao_env = {**env, **LocalRunner(venv).env(_job(folder, record), env)}
        ours = [sys.executable, "-m", "taomake.cli", "run", "evaluate", "-p", "project.yaml",
                "-e", "base", "--log", str(folder / "bench.log")]
        taomake_cpu, bare_cpu = [], []
        for _ in range(args.runs):
            taomake_cpu.append(cpu_of(ours, folder, env))
            bare_cpu.append(cpu_of(bare, folder, tao_env))
    t, b = statistics.median(taomake_cpu), statistics.median(bare_cpu)
    adds = statistics.median(x - y for x, y in zip(taomake_cpu, bare_cpu, strict=True))
    print(f"`taomake run evaluate` on the TAO test double, medians of {args.runs}")
    print(f"{'':38} {'cpu s':>7}")
    print(f"{'taomake run evaluate (TAO included)':38} {t:7.3f}")
    print(f"{'the same TAO command, bare':38} {b:7.3f}")
    print(f"{'taomake adds (median of the pairs)':38} {adds:7.3f}  target <= 0.3: "
          f"{'ok' if adds <= 0.3 else 'OVER'}")
    return 0 if adds <= 0.3 else 1


def _job(folder: Path, record: dict):
    """A stand-in TaoJob with what LocalRunner.env reads (one node, no GPU, no env names)."""
    from types import SimpleNamespace

    return SimpleNamespace(nodes=1, gpus=0, env_names=(), extra_env={}, workdir=folder)


if __name__ == "__main__":
    sys.exit(main())
