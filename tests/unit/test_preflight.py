"""`taomake preflight`: one PASS/WARN/FAIL line per check, exit 1 only on a failure; the image
conversion rule in the DAG of apptainer/pyxis projects only; a failed preflight stops Snakemake."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from taomake import preflight as pf
from taomake.cli import main as cli_main
from tests.helpers import REPO, SMOKE_PROJECT, make_project

FAKE_VENV = REPO / "tests" / "fake_tao"


def project(tmp_path: Path, runner: str = "    kind: local") -> Path:
    text = SMOKE_PROJECT.read_text().replace("    kind: local", runner)
    return make_project(tmp_path / "proj", text)


def levels(checks) -> dict[str, str]:
    return {c.what: c.level for c in checks}


def test_local_fake_venv_passes(tmp_path, capsys):
    p = project(tmp_path, f"    kind: local\n    local: {{venv: {FAKE_VENV}}}")
    assert cli_main(["preflight", "-p", str(p)]) == 0
    out = capsys.readouterr().out
    assert f"PASS  local TAO: {FAKE_VENV}/bin/rtdetr" in out
    assert "PASS  data: 7 local path(s) readable" in out and "0 failed" in out


def test_local_missing_venv_fails_with_fix(tmp_path, capsys):
    p = project(tmp_path, f"    kind: local\n    local: {{venv: {tmp_path / 'none'}}}")
    assert cli_main(["preflight", "-p", str(p)]) == 1
    out = capsys.readouterr().out
    assert "FAIL  local TAO" in out and "fix: run `taomake setup tao-cpu`" in out


def test_unreadable_data_fails(tmp_path):
    p = project(tmp_path, f"    kind: local\n    local: {{venv: {FAKE_VENV}}}")
    (p.parent / "data").unlink()
    (p.parent / "data").symlink_to(tmp_path / "gone")
    checks = pf.preflight(p)
    data = next(c for c in checks if c.what == "data")
    assert data.level == "FAIL" and "dataset.val.images: data/shapes/val/images" in data.detail
    assert pf.report(checks, io.StringIO()) == 1


def test_apptainer_without_apptainer(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    p = project(tmp_path, "    kind: apptainer")
    checks = pf.preflight(p)
    assert levels(checks)["apptainer"] == "FAIL"
    assert levels(checks)["image file"] == "FAIL"
    sif = p.parent / "images" / "nvcr.io_nvidia_tao_tao-toolkit_6.26.3-pyt.sif"
    sif.parent.mkdir()
    sif.write_bytes(b"sif")
    assert levels(pf.preflight(p))["image file"] == "PASS"


def test_apptainer_present_and_image_to_be_converted(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("apptainer",):
        (bin_dir / name).write_text("#!/bin/sh\nexit 0\n")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    checks = pf.preflight(project(tmp_path, "    kind: apptainer"))
    assert all(c.level == "PASS" for c in checks), [c.render() for c in checks]
    assert any("rule container_image converts it" in c.detail for c in checks)


def test_pyxis_plugin_and_slurm_commands(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scripts = {"srun": "echo '  --container-image=[USER@][REGISTRY#]IMAGE[:TAG]|PATH'",
               "enroot": "true", "sbatch": "true", "squeue": "true", "scontrol": "true"}
    for name, body in scripts.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))  # only the stand-ins, whatever the host has
    p = project(tmp_path, "    kind: pyxis")
    p.write_text(p.read_text().replace("  shm_size: 2g",
                                       "  shm_size: 2g\n  slurm: {partition: gpu}"))
    checks = pf.preflight(p)
    assert levels(checks)["pyxis plugin"] == "PASS"
    assert [c.level for c in checks if c.what == "SLURM"] == ["PASS"] * 3
    (bin_dir / "srun").write_text("#!/bin/sh\necho usage\n")
    (bin_dir / "sbatch").unlink()
    checks = pf.preflight(p)
    assert levels(checks)["pyxis plugin"] == "FAIL"
    assert "FAIL" in [c.level for c in checks if c.what == "SLURM"]
    assert not [c for c in pf.preflight(p, slurm=False) if c.what == "SLURM"]


class _FakeImages:
    def __init__(self, present):
        self.present = present

    def get(self, ref):
        from docker.errors import ImageNotFound

        if ref not in self.present:
            raise ImageNotFound(ref)


class _FakeClient:
    def __init__(self, present=(), runtimes=("runc",)):
        self.images = _FakeImages(present)
        self.runtimes = runtimes

    def ping(self):
        return True

    def info(self):
        return {"ServerVersion": "20.10", "Runtimes": {r: {} for r in self.runtimes}}


def test_docker_image_and_nvidia_runtime(tmp_path, monkeypatch):
    pytest.importorskip("docker")
    monkeypatch.setattr(pf, "_uid", lambda: 1000)
    p = project(tmp_path, "    kind: docker")
    ref = "nvcr.io/nvidia/tao/tao-toolkit:6.26.3-pyt"
    checks = pf.preflight(p, docker_client=lambda: _FakeClient())
    assert levels(checks)["docker image"] == "FAIL"
    assert "docker pull " + ref in next(c.fix for c in checks if c.what == "docker image")
    checks = pf.preflight(p, docker_client=lambda: _FakeClient([ref]))
    assert levels(checks)["docker image"] == "PASS" and "NVIDIA runtime" not in levels(checks)
    p.write_text(p.read_text().replace("gpus_per_node: 0", "gpus_per_node: 1"))
    deploy = "nvcr.io/nvidia/tao/tao-toolkit:6.26.3-deploy"
    checks = pf.preflight(p, docker_client=lambda: _FakeClient([ref, deploy]))
    assert levels(checks)["NVIDIA runtime"] == "FAIL"
    checks = pf.preflight(p, docker_client=lambda: _FakeClient([ref, deploy],
                                                                ("runc", "nvidia")))
    assert all(c.level == "PASS" for c in checks), [c.render() for c in checks]


def test_docker_as_root_fails_unless_allowed(tmp_path, monkeypatch):
    pytest.importorskip("docker")
    monkeypatch.setattr(pf, "_uid", lambda: 0)
    ref = "nvcr.io/nvidia/tao/tao-toolkit:6.26.3-pyt"
    p = project(tmp_path, "    kind: docker")
    checks = pf.preflight(p, docker_client=lambda: _FakeClient([ref]))
    assert levels(checks)["docker user"] == "FAIL"
    assert "allow_root: true" in next(c.fix for c in checks if c.what == "docker user")
    p = project(tmp_path, "    kind: docker\n    docker: {allow_root: true}")
    checks = pf.preflight(p, docker_client=lambda: _FakeClient([ref]))
    assert "docker user" not in levels(checks)


def test_docker_daemon_unreachable(tmp_path):
    docker = pytest.importorskip("docker")

    def broken():
        raise docker.errors.DockerException("Error while fetching server API version")

    checks = pf.preflight(project(tmp_path, "    kind: docker"), docker_client=broken)
    assert levels(checks)["docker daemon"] == "FAIL"


def test_low_disk_warns(tmp_path):
    assert pf.check_disk(tmp_path / "results", min_gb=1e9).level == "WARN"
    assert pf.check_disk(tmp_path / "results" / "x", min_gb=0).level == "PASS"
    assert pf.report([pf.check_disk(tmp_path, min_gb=1e9)], io.StringIO()) == 0


SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--cores", "1"]


def _dag(folder: Path) -> list[str]:
    out = subprocess.run([*SNAKEMAKE, "-n", "--quiet", "rules"], cwd=folder,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout + out.stderr


def test_dag_converts_the_image_once_for_apptainer_only(tmp_path):
    app = project(tmp_path / "a", "    kind: apptainer").parent
    text = _dag(app)
    table = {line.split()[0]: line.split()[1] for line in text.splitlines()
             if len(line.split()) == 2 and line.split()[1].isdigit()}
    assert table["container_image"] == "1" and table["train"] == "1"
    # before the TAO jobs: they depend on the runtime marker, which depends on the image
    full = subprocess.run([*SNAKEMAKE, "-n", "-p"], cwd=app, capture_output=True, text=True,
                          timeout=300).stdout
    assert full.count("apptainer build --force images/nvcr.io_nvidia_tao_tao-toolkit_"
                      "6.26.3-pyt.sif.part docker://nvcr.io/nvidia/tao/tao-toolkit:"
                      "6.26.3-pyt") == 1
    train = full[full.index("rule train:"):]
    assert "results/.taomake/runtime/base.pytorch.ready" in train[:train.index("output:")]
    ready = full[full.index("rule runtime_ready:"):]
    assert "images/nvcr.io_nvidia_tao_tao-toolkit_6.26.3-pyt.sif" in \
        ready[:ready.index("output:")]
    local = project(tmp_path / "l").parent
    assert "container_image" not in _dag(local)


def test_failed_preflight_stops_snakemake_without_traceback(tmp_path):
    folder = project(tmp_path, f"    kind: local\n    local: {{venv: {tmp_path / 'none'}}}").parent
    env = {**os.environ}
    out = subprocess.run(SNAKEMAKE, cwd=folder, capture_output=True, text=True, timeout=300,
                         env=env)
    assert out.returncode != 0
    assert "FAIL  local TAO" in out.stderr and "preflight failed" in out.stderr
    assert "Traceback" not in out.stderr
    assert not (folder / "results/base/train/curve.csv").exists()
