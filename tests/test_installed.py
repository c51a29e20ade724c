"""taomake as an installed tool: the wheel, installed into a fresh venv, used from a folder
outside the repository exactly as README says (`taomake init`, then `snakemake --cores all`
there), with the TAO test double (tests/fake_tao) as the runner's venv."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.helpers import REPO

pytestmark = [pytest.mark.slow]
FAKE_VENV = REPO / "tests" / "fake_tao"


def run(argv, cwd, timeout=900, env=None):
    proc = subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)
    assert proc.returncode == 0, (argv, proc.stdout[-3000:], proc.stderr[-3000:])
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv with only the built taomake wheel (and its dependencies) installed."""
    work = tmp_path_factory.mktemp("installed")
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", work / "dist", REPO],
        cwd=work)
    [wheel] = (work / "dist").glob("taomake-*.whl")
    venv.create(work / "venv", with_pip=True)
    bin_ = work / "venv" / "bin"
    run([bin_ / "pip", "install", "-q", wheel], cwd=work)
    return bin_


def test_wheel_holds_the_workflow_and_no_repository_paths(installed):
    out = run([installed / "taomake", "snakefile"], cwd=installed)
    snakefile = Path(out.strip())
    assert snakefile.is_file() and "site-packages" in str(snakefile), snakefile
    assert not str(snakefile).startswith(str(REPO))
    for profile in ("slurm", "workstation"):
        folder = Path(run([installed / "taomake", "snakefile", "--profile", profile],
                          cwd=installed).strip())
        assert (folder / "config.yaml").is_file() and "site-packages" in str(folder)


def test_init_then_snakemake_in_a_folder_outside_the_repository(installed, tmp_path):
    """README's "Use it in your own project": sample data, init, build, second build does
    nothing, report."""
    taomake, snakemake = installed / "taomake", installed / "snakemake"
    run([taomake, "sample-data", "data", "--train", "32", "--val", "8", "--test", "8",
         "--infer", "4"], cwd=tmp_path)
    out = run([taomake, "init", "data/train/annotations.json", "data/train/images", "-o",
               "proj/project.yaml"], cwd=tmp_path)
    assert "cd proj && snakemake --cores all" in out, out
    proj = tmp_path / "proj"
    assert (proj / "Snakefile").is_file() and (proj / "profiles/slurm/config.yaml").is_file()
    # CPU, the fake TAO, a tiny model (init writes a GPU/docker starter)
    text = (proj / "project.yaml").read_text()
    text = text.replace("gpus_per_node: 1 ", "gpus_per_node: 0 ").replace(
        "    kind: docker", f"    kind: local\n    local: {{venv: {FAKE_VENV}}}")
    text = text.replace("train:\n  epochs: 72", "train:\n  epochs: 2\nexport:\n  parity: false")
    (proj / "project.yaml").write_text(text)
    env = {**os.environ, "PATH": f"{installed}{os.pathsep}{os.environ['PATH']}"}
    env.pop("PYTHONPATH", None)
    run([taomake, "validate"], cwd=proj, env=env)
    out = run([snakemake, "--cores", "2"], cwd=proj, env=env)
    assert (proj / "results/base/train/model.pth").is_file(), out[-3000:]
    assert (proj / "results/base/export/model.onnx").is_file()
    assert (proj / "results/report/summary.md").is_file()
    out = run([snakemake, "--cores", "2"], cwd=proj, env=env)
    assert "Nothing to be done" in out, out[-2000:]
    # the report command Snakemake users expect
    run([snakemake, "--report", "report.html"], cwd=proj, env=env)
    assert (proj / "report.html").stat().st_size > 10_000
    shutil.rmtree(proj / "results")
