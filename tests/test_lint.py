"""The code and the workflow pass their linters (README: `make lint`), and no module imports a
top-level `compiler` (installed, the compiler is `taomake.compiler`; test_installed.py).

One Snakemake lint is accepted, for every rule: "Specify a conda environment or container".
taomake's rules run the `taomake` command of the environment Snakemake itself runs in
(rules/common.smk puts it first on PATH); a conda environment file for them could not be
created on this machine (no conda, no conda-forge), and one that never ran would be a claim
without proof, so there is none.  Any other lint fails this test."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.helpers import REPO

ACCEPTED = "Specify a conda environment or container for each rule."


def test_ruff_is_clean():
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "compiler", "taomake",
                           "tests", "benchmarks"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:]


def test_snakemake_lint_finds_nothing_else():
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--lint"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    titles = re.findall(r"^\s+\* (.+?):?$", out, flags=re.M)
    blocks = re.findall(r"^Lints for (rule \w+|snakefile .+?)[ :]", out, flags=re.M)
    assert blocks, out[-2000:]  # the lints were read (the format did not change)
    assert all(b.startswith("rule ") for b in blocks), blocks
    assert set(titles) == {ACCEPTED}, out[-3000:]
    assert len(titles) == len(blocks)


def test_no_module_imports_a_top_level_compiler():
    pattern = re.compile(r"^\s*(from|import)\s+compiler\b", flags=re.M)
    offenders = [str(path.relative_to(REPO)) for pattern_glob in
                 ("compiler/**/*.py", "taomake/**/*.py", "tests/**/*.py", "benchmarks/**/*.py",
                  "rules/*.smk", "Snakefile", "scripts/**/*.py")
                 for path in REPO.glob(pattern_glob) if pattern.search(path.read_text())]
    assert offenders == []
    assert Path(REPO / "compiler" / "__init__.py").is_file()
