"""taomake as a Snakemake module inside a user's own workflow (docs/module.md): the user's
Snakefile loads the installed workflow with `module taomake:` and a `prefix:` naming the
project folder, adds a rule of its own that plots
`results/<exp>/evaluate/metrics.json`, and one `snakemake --cores` builds both.  Staleness,
failure judging and resume must behave as in a project folder of its own (test_build.py),
with the test double of TAO (tests/fake_tao)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.func.test_build import calls as build_calls
from tests.func.test_build import fake_project_text
from tests.helpers import make_project, processes_matching

pytestmark = [pytest.mark.slow]

# The user's Snakefile, as README and docs/module.md show it (tests/unit/test_docs.py checks).
USER_SNAKEFILE = '''\
from taomake.workflow import on_start, snakefile


module taomake:
    snakefile:
        snakefile()
    config:
        {"project": "detector/project.yaml"}
    prefix:
        "detector"


use rule * from taomake as taomake_*


rule map_figure:
    input:
        "detector/results/base/evaluate/metrics.json",
    output:
        "figures/map.png",
    log:
        "logs/map_figure.log",
    script:
        "scripts/plot_map.py"


rule all:
    default_target: True
    input:
        rules.taomake_all.input,
        "figures/map.png",


onstart:
    on_start(workflow, "detector/project.yaml")
'''

PLOT_SCRIPT = '''\
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

metrics = json.load(open(snakemake.input[0]))
names = sorted(k for k, v in metrics.items() if isinstance(v, (int, float)))
fig, ax = plt.subplots(figsize=(4, 3))
ax.bar(names, [metrics[k] for k in names])
ax.set_ylabel("value")
fig.autofmt_xdate()
fig.savefig(snakemake.output[0])
with open(snakemake.log[0], "w") as log:
    log.write(json.dumps({k: metrics[k] for k in names}))
'''


def write_paper(folder: Path, project_text: str | None = None) -> Path:
    """A paper workflow: its Snakefile and plot script, the taomake project in detector/."""
    make_project(folder / "detector", project_text or fake_project_text())
    (folder / "Snakefile").write_text(USER_SNAKEFILE)
    (folder / "scripts").mkdir(exist_ok=True)
    (folder / "scripts" / "plot_map.py").write_text(PLOT_SCRIPT)
    return folder


def snakemake(folder: Path, *args: str, env: dict[str, str] | None = None,
              check: bool = True) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "FAKE_TAO_CALLS": str(folder / "calls.txt"), **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", *args],
                          cwd=folder, env=full_env, capture_output=True, text=True,
                          timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def calls(folder: Path) -> list[str]:
    """The TAO actions the test double ran since the last look."""
    return [call[0] for call in build_calls(folder)]


@pytest.fixture(scope="module")
def paper(tmp_path_factory) -> Path:
    folder = write_paper(tmp_path_factory.mktemp("module") / "paper")
    snakemake(folder)
    assert set(calls(folder)) == {"train", "evaluate", "export", "inference"}
    return folder


@pytest.fixture
def copy(paper, tmp_path) -> Path:
    dest = tmp_path / "paper"
    shutil.copytree(paper, dest, symlinks=True)  # copy2 keeps mtimes
    return dest


def test_one_build_makes_taomake_artifacts_and_the_users_figure(paper):
    results = paper / "detector" / "results" / "base"
    for artifact in ("train/model.pth", "evaluate/metrics.json", "export/model.onnx",
                     "inference/summary.json"):
        assert (results / artifact).is_file(), artifact
    assert (paper / "detector/results/report/summary.md").is_file()
    figure = paper / "figures" / "map.png"
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "test_mAP" in (paper / "logs/map_figure.log").read_text()
    # taomake wrote nothing into the user's own folder (its paths are the project's)
    assert not (paper / "results").exists()
    assert sorted(p.name for p in paper.iterdir() if not p.name.startswith(".")) == [
        "Snakefile", "detector", "figures", "logs", "scripts"]


def test_second_build_does_nothing(copy):
    out = snakemake(copy)
    assert "Nothing to be done" in out.stdout + out.stderr
    assert calls(copy) == []


def edit(folder: Path, old: str, new: str) -> None:
    project = folder / "detector" / "project.yaml"
    text = project.read_text()
    assert text.count(old) == 1, old
    project.write_text(text.replace(old, new))


def test_an_edit_reruns_only_what_it_touches(copy):
    edit(copy, "  conf_threshold: 0.1", "  conf_threshold: 0.3")
    before = (copy / "figures/map.png").stat().st_mtime_ns
    out = snakemake(copy)
    assert calls(copy) == ["inference"], out.stderr[-2000:]
    assert (copy / "figures/map.png").stat().st_mtime_ns == before  # not the metrics' reader

    edit(copy, "images: data/shapes/test/images\n    annotations: data/shapes/test/",
         "images: data/shapes/val/images\n    annotations: data/shapes/val/")
    out = snakemake(copy)
    assert calls(copy) == ["evaluate"], out.stderr[-2000:]
    assert "rule map_figure" in out.stdout + out.stderr  # new metrics: the user's figure too
    assert "Nothing to be done" in snakemake(copy, "-n").stdout


def test_a_failed_tao_job_is_not_taken_for_a_good_one(copy):
    metrics = copy / "detector/results/base/evaluate/metrics.json"
    metrics.unlink()
    out = snakemake(copy, env={"FAKE_TAO_FAIL": "evaluate:failure_exit0"}, check=False)
    assert out.returncode != 0
    assert not metrics.exists()
    assert "taomake_evaluate" in out.stderr
    log = (copy / "detector/results/base/logs/evaluate.log").read_text()
    assert "FAILURE" in log or "failed" in log


def test_interrupted_training_resumes_inside_the_module(tmp_path):
    folder = write_paper(tmp_path / "paper",
                         fake_project_text().replace("  epochs: 2", "  epochs: 4"))
    env = {**os.environ, "FAKE_TAO_EPOCH_SECONDS": "1.5"}
    proc = subprocess.Popen([sys.executable, "-m", "snakemake", "--cores", "2"], cwd=folder,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    first = folder / "detector/results/base/train/model_epoch_000.pth"
    deadline = time.monotonic() + 120
    while not first.exists():
        assert time.monotonic() < deadline and proc.poll() is None, f"{first} never appeared"
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0, out
    time.sleep(0.5)
    assert processes_matching(str(folder)) == []
    snakemake(folder, "detector/results/base/train/model.pth",
              env={"FAKE_TAO_EPOCH_SECONDS": "0"})
    log = (folder / "detector/results/base/logs/train.log").read_text()
    assert "resuming: checkpoints up to epoch" in log
    assert "epoch 0 done" not in log and "epoch 3 done" in log


def test_a_wrong_prefix_is_refused_with_the_fix(tmp_path):
    folder = write_paper(tmp_path / "paper")
    snakefile = folder / "Snakefile"
    snakefile.write_text(snakefile.read_text().replace('        "detector"\n', '        "det"\n'))
    out = snakemake(folder, "-n", check=False)
    assert out.returncode != 0
    assert 'declare `prefix: "detector"` in the module' in out.stderr, out.stderr[-2000:]
    assert "Traceback" not in out.stderr


def test_the_team_cache_serves_a_second_paper(tmp_path):
    """taomake as a module with a team cache: a second paper's build fetches every TAO job
    the first one published and runs none."""
    from tests.func.test_cache import cached_project, fake_venv

    venv, cache = fake_venv(tmp_path / "venv"), tmp_path / "cache"
    papers = []
    for name in ("first", "second"):
        folder = write_paper(tmp_path / name / "paper")
        cached_project(folder / "detector", venv, cache)
        snakemake(folder)
        papers.append(folder)
    first, second = papers
    assert set(calls(first)) == {"train", "evaluate", "export", "inference"}
    assert calls(second) == []
    assert (second / "figures/map.png").is_file()
    assert (second / "detector/results/base/export/model.onnx").read_bytes() == \
        (first / "detector/results/base/export/model.onnx").read_bytes()
