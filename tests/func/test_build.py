"""The build: which jobs run after which edit, failure detection, interruption and resume.

These drive real Snakemake on the real Snakefile with a fast test double of `rtdetr`
(tests/fake_tao); the same properties are checked with real TAO in test_e2e_learning.py.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import REPO, SMOKE_PROJECT, make_project, processes_matching

FAKE_VENV = REPO / "tests" / "fake_tao"
SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--cores", "2"]
ALL = {"train", "evaluate", "export", "inference"}


def fake_project_text(extra_env: str = "") -> str:
    """The demo project on the fake TAO (whose ONNX is not a model: no parity check)."""
    text = SMOKE_PROJECT.read_text().replace("  opset: 17\n",
                                                       "  opset: 17\n  parity: false\n")
    assert "parity: false" in text
    return text.replace(
        "    kind: local",
        f"    kind: local\n    local: {{venv: {FAKE_VENV}}}\n"
        f"    env: [FAKE_TAO_CALLS, FAKE_TAO_FAIL, FAKE_TAO_EPOCH_SECONDS{extra_env}]")


def snakemake(folder: Path, *args: str, env: dict[str, str] | None = None,
              check: bool = True) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "FAKE_TAO_CALLS": str(folder / "calls.txt"), **(env or {})}
    proc = subprocess.run([*SNAKEMAKE, *args], cwd=folder, env=full_env, capture_output=True,
                          text=True, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def calls(folder: Path) -> list[tuple[str, str]]:
    path = folder / "calls.txt"
    if not path.exists():
        return []
    out = [tuple(line.split()) for line in path.read_text().splitlines()]
    path.unlink()
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """The demo project, fully built once with the test double."""
    folder = tmp_path_factory.mktemp("built") / "proj"
    make_project(folder, fake_project_text(), copy_data=True)
    snakemake(folder)
    assert {c[0] for c in calls(folder)} == ALL
    return folder


@pytest.fixture
def copy(built, tmp_path) -> Path:
    dest = tmp_path / "proj"
    shutil.copytree(built, dest, symlinks=True)  # copy2 keeps mtimes
    return dest


def edit(folder: Path, old: str, new: str) -> None:
    project = folder / "project.yaml"
    text = project.read_text()
    assert text.count(old) == 1, old
    project.write_text(text.replace(old, new))


MATRIX = [
    ("comment and whitespace", "# The tests' smoke", "#   The tests' smoke  ", set()),
    ("inference threshold", "  conf_threshold: 0.1", "  conf_threshold: 0.3", {"inference"}),
    ("export opset", "  opset: 17", "  opset: 18", {"export"}),
    ("test split", "images: data/shapes/test/images\n    annotations: data/shapes/test/",
     "images: data/shapes/val/images\n    annotations: data/shapes/val/", {"evaluate"}),
    ("train epochs", "  epochs: 2", "  epochs: 3", ALL),
    ("learning rate", "  lr: 0.0002", "  lr: 0.0003", ALL),
    ("class names only", "    3: triangle", "    3: tri", {"inference"}),
    ("TAO image tag", 'version: "6.26.3"', 'version: "6.27.0"', ALL),
    ("runner, partition, log settings", "  shm_size: 2g",
     "  shm_size: 2g\n  slurm: {partition: gpu, account: lab}", set()),
    ("runner kind", "    kind: local", "    kind: docker", set()),
    ("log level", "    kind: local", "    log_level: DEBUG\n    kind: local", set()),
]


@pytest.mark.parametrize("name,old,new,expected", MATRIX, ids=[m[0] for m in MATRIX])
def test_rebuild_matrix(copy, name, old, new, expected):
    """Each edit reruns exactly what it must; `taomake status`, from taomake's own records,
    calls stale exactly what the build then reruns."""
    edit(copy, old, new)
    assert stale_actions(copy) == expected
    snakemake(copy)
    assert {c[0] for c in calls(copy)} == expected
    assert stale_actions(copy) == set()


def stale_actions(folder: Path) -> set[str]:
    """The TAO actions whose artifacts `taomake status` calls stale or missing."""
    from taomake.compiler.plan import load_plan

    from taomake.staleness import plan_states

    plan = load_plan(folder / "project.yaml", write=False)
    return {g.name for g in plan_states(folder, plan) if g.stale and g.name in ALL}


def test_touching_project_yaml_rebuilds_nothing(copy):
    os.utime(copy / "project.yaml")
    snakemake(copy)
    assert calls(copy) == []


def test_new_experiment_runs_only_its_jobs(copy):
    (copy / "project.yaml").write_text((copy / "project.yaml").read_text()
                                       + "experiments:\n  base: {}\n  wide:\n"
                                         "    model.hidden_dim: 128\n")
    snakemake(copy)
    ran = calls(copy)
    assert {c[0] for c in ran} == ALL
    assert {c[1] for c in ran} == {"results/wide"}


def test_moving_the_project_rebuilds_nothing(built, tmp_path):
    dest = tmp_path / "moved" / "elsewhere"
    shutil.copytree(built, dest, symlinks=True)
    snakemake(dest)
    assert calls(dest) == []


def test_deleting_the_onnx_reruns_export_only(copy):
    (copy / "results/base/export/model.onnx").unlink()
    snakemake(copy)
    assert {c[0] for c in calls(copy)} == {"export"}


def test_second_run_does_nothing(copy):
    proc = snakemake(copy)
    assert "Nothing to be done" in proc.stdout + proc.stderr
    assert calls(copy) == []


def test_one_artifact_target(tmp_path):
    make_project(tmp_path, fake_project_text())
    snakemake(tmp_path, "results/base/export/model.onnx")
    assert {c[0] for c in calls(tmp_path)} == {"train", "export"}
    assert not (tmp_path / "results/base/evaluate/metrics.json").exists()


def test_a_target_of_no_experiment_or_of_an_action_it_lacks_is_refused(tmp_path):
    """The `exp` wildcard accepts any experiment-shaped name (a list of every name would make
    large sweeps quadratic): a typo is stopped by name, an action the experiment does not have
    (no quantize section: no quantized model) has no rule, and nothing runs.  Two of three
    experiments quantize, so quantize's gate is "any name but base"; the gate "any name"
    (every experiment has the action) is every other build's."""
    make_project(tmp_path, fake_project_text() + (
        "experiments:\n  base: {}\n  q1:\n    quantize: {backend: torchao}\n"
        "  q2:\n    quantize: {backend: torchao}\n"))
    typo = snakemake(tmp_path, "-n", "results/bsae/export/model.onnx", check=False)
    assert typo.returncode != 0
    assert "'bsae' is not an experiment of project.yaml; experiments: base, q1, q2" \
        in typo.stdout + typo.stderr
    typo = snakemake(tmp_path, "-n", "results/bsae/detections/per_class.json", check=False)
    assert "'bsae' is not an experiment" in typo.stdout + typo.stderr
    lacking = snakemake(tmp_path, "-n", "results/base/quantize/quantized_model_torchao.pth",
                        check=False)
    assert lacking.returncode != 0
    assert "MissingRuleException" in lacking.stdout + lacking.stderr
    dry = snakemake(tmp_path, "-n", "results/q2/quantize/quantized_model_torchao.pth")
    assert "rule quantize:" in dry.stdout and "exp=q2" in dry.stdout
    assert calls(tmp_path) == []


# --------------------------------------------------------------------------- outputs


def test_handoff_and_metrics_files(built):
    import json

    sel = json.loads((built / "results/base/train/selection.json").read_text())
    # the double reports val_mAP 0.1 at epoch 0 and 0.05 at epoch 1: best is epoch 0
    assert sel["epoch"] == 0 and sel["policy"] == "best" and sel["value"] == 0.1
    model = built / "results/base/train/model.pth"
    assert model.stat().st_ino == (built / "results/base/train/model_epoch_000.pth").stat().st_ino
    metrics = json.loads((built / "results/base/evaluate/metrics.json").read_text())
    assert metrics == {"test_mAP": 0.25, "test_mAP50": 0.5}
    curve = (built / "results/base/train/curve.csv").read_text().splitlines()
    assert curve[0] == "epoch,train_loss,val_loss,val_mAP,val_mAP50"
    assert len(curve) == 3


def test_use_checkpoint_last_reselects_without_training(copy):
    edit(copy, "  use_checkpoint: best ", "  use_checkpoint: last ")
    snakemake(copy)
    assert {c[0] for c in calls(copy)} == {"evaluate", "export", "inference"}
    assert (copy / "results/base/train/model.pth").stat().st_ino == \
        (copy / "results/base/train/model_epoch_001.pth").stat().st_ino


# --------------------------------------------------------------------------- failures


@pytest.mark.parametrize("fail,expect", [
    ("evaluate:failure_exit0", "TAO reported FAILURE: File system error"),
    ("export:no_outputs", "model.onnx is missing or empty"),
    ("inference:exit1", "TAO exited with code 1"),
])
def test_failures_are_detected(copy, fail, expect):
    target = {"evaluate": "results/base/evaluate/metrics.json",
              "export": "results/base/export/model.onnx",
              "inference": "results/base/inference/summary.json"}[fail.split(":")[0]]
    (copy / target).unlink()
    proc = snakemake(copy, env={"FAKE_TAO_FAIL": fail}, check=False)
    assert proc.returncode != 0
    assert expect in proc.stderr
    assert not (copy / target).exists()
    # and the failure is not remembered as a success: the next run retries the job
    proc = snakemake(copy, "-n", check=False)
    assert fail.split(":")[0] in proc.stdout


# --------------------------------------------------------------------------- interruption


def _start(folder: Path, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([*SNAKEMAKE, "results/base/train/model.pth"], cwd=folder,
                            env={**os.environ, "FAKE_TAO_CALLS": str(folder / "calls.txt"),
                                 **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)


def interrupted_training(tmp_path: Path, env: dict[str, str]) -> Path:
    """A 4-epoch training stopped by SIGTERM to snakemake after its first checkpoint."""
    folder = tmp_path / "proj"
    make_project(folder, fake_project_text().replace("  epochs: 2", "  epochs: 4"))
    proc = _start(folder, env)
    first = folder / "results/base/train/model_epoch_000.pth"
    deadline = time.monotonic() + 60
    while not first.exists():
        assert time.monotonic() < deadline, f"{first} never appeared"
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGTERM)  # snakemake only, as a scheduler or `kill` would
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode != 0, out
    return folder


def test_sigterm_stops_training_and_rerun_resumes(tmp_path):
    env = {"FAKE_TAO_EPOCH_SECONDS": "1.5"}
    folder = interrupted_training(tmp_path, env)
    time.sleep(0.5)
    assert processes_matching(str(folder)) == []
    assert not (folder / "results/base/train/run.json").exists()
    saved = sorted(p.name for p in (folder / "results/base/train").glob("model_epoch_*.pth"))
    assert saved and "model_epoch_003.pth" not in saved

    snakemake(folder, "results/base/train/model.pth", env=env)
    log = (folder / "results/base/logs/train.log").read_text()
    assert "resuming: checkpoints up to epoch" in log
    assert "Resuming training from checkpoint" in log
    assert (folder / "results/base/train/model_epoch_003.pth").exists()
    # the rerun's log (Snakemake starts a fresh one) trains only the missing epochs
    assert "epoch 0 done" not in log and "epoch 3 done" in log


def test_changed_spec_does_not_resume(tmp_path):
    folder = interrupted_training(tmp_path, {"FAKE_TAO_EPOCH_SECONDS": "1.5"})
    edit(folder, "  lr: 0.0002", "  lr: 0.0005")
    snakemake(folder, "results/base/train/model.pth", env={"FAKE_TAO_EPOCH_SECONDS": "0"})
    log = (folder / "results/base/logs/train.log").read_text()
    assert "previous checkpoints moved to" in log and "train.optim.lr" in log
    stale = list((folder / "results/base/train/.stale").glob("*/model_epoch_000.pth"))
    assert stale, "old checkpoints must be kept aside, not deleted"
    assert "Resuming training" not in log.split("previous checkpoints moved to")[1]


# --------------------------------------------------------------------------- status / explain


def test_status_and_explain(copy):
    def taomake(*args: str) -> str:
        return subprocess.run([sys.executable, "-m", "taomake.cli", *args], cwd=copy,
                              capture_output=True, text=True, check=True).stdout

    out = taomake("status")
    assert "results/base/export/model.onnx" in out and "up to date" in out
    assert "test_mAP=0.2500" in out and "epoch 0 (best)" in out
    assert taomake("explain", "results/base/export/model.onnx").startswith(
        "results/base/export/model.onnx is up to date")
    edit(copy, "  opset: 17", "  opset: 18")
    edit(copy, "  hidden_dim: 64", "  hidden_dim: 96")
    assert "stale" in taomake("status")
    out = taomake("explain", "results/base/export/model.onnx")
    lines = (copy / "project.yaml").read_text().splitlines()
    opset_line = next(i for i, x in enumerate(lines, 1) if "opset: 18" in x)
    hidden_line = next(i for i, x in enumerate(lines, 1) if "hidden_dim: 96" in x)
    assert f"export.opset_version: 17 -> 18  <- project.yaml:{opset_line}" in out
    assert f"model.hidden_dim: 64 -> 96  <- project.yaml:{hidden_line}" in out
    assert "train (base)" in out  # the upstream retraining is part of the answer


def test_switching_to_a_container_runner_rebuilds_nothing(copy):
    # the runtime marker changes its own inputs (the image); TAO jobs see the same input list
    edit(copy, "    kind: local", "    kind: apptainer")
    proc = snakemake(copy, "-n", check=False)
    planned = proc.stdout
    assert "rule train:" not in planned and "rule export:" not in planned
    assert "rule container_image:" in planned and "rule runtime_ready:" in planned


def _tree(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.stat().st_size)
            for p in folder.rglob("*") if p.is_file() and p.name != "calls.txt"}


def test_status_writes_nothing_and_sees_a_changed_spec(copy):
    """`taomake status` only reads: after an edit it reports the artifacts the edit makes
    stale, while no spec, stamp, plan cache or Snakemake record is written."""
    edit(copy, "  opset: 17", "  opset: 18")
    before = _tree(copy)
    out = subprocess.run([sys.executable, "-m", "taomake.cli", "status"], cwd=copy,
                         capture_output=True, text=True, check=True).stdout
    line = next(x for x in out.splitlines() if "results/base/export/model.onnx" in x)
    assert "stale (spec changed)" in line, out
    assert "up to date" in next(x for x in out.splitlines()
                                if "results/base/evaluate/metrics.json" in x), out
    assert _tree(copy) == before
    snakemake(copy)  # the build sees the same thing
    assert [c[0] for c in calls(copy)] == ["export"]


def test_status_reaches_no_data_source(tmp_path):
    """A project whose data is in S3, the endpoint closed: status still answers (every
    artifact missing) and writes nothing."""
    from tests.func.test_data_s3 import s3_project_text

    folder = tmp_path / "proj"
    make_project(folder, s3_project_text("no-such-bucket"))
    before = _tree(folder)
    env = {**os.environ, "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9", "AWS_ACCESS_KEY_ID": "x",
           "AWS_SECRET_ACCESS_KEY": "y"}
    proc = subprocess.run([sys.executable, "-m", "taomake.cli", "status"], cwd=folder,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "results/base/train/model.pth" in proc.stdout and "missing" in proc.stdout
    assert _tree(folder) == before


def test_explain_points_a_class_rename_at_the_edited_line(copy):
    edit(copy, "    3: triangle", "    3: tri")
    out = subprocess.run([sys.executable, "-m", "taomake.cli", "explain",
                          "results/base/inference/summary.json"], cwd=copy,
                         capture_output=True, text=True, check=True).stdout
    line = next(i for i, x in enumerate((copy / "project.yaml").read_text().splitlines(), 1)
                if x == "    3: tri")
    assert "inference.color_map.tri: '(absent)' -> " in out, out
    assert f"<- project.yaml:{line}:5: dataset.classes.3" in out, out
    assert "inference.colors" not in out  # not a key the file has
