"""With the real TAO RT-DETR on CPU: an experiment × 2 seeds and a 3-trial successive-halving
sweep (a second experiment, its trials overriding training and augmentation keys) in one
project, end to end, with the report, ONNX parity, provenance and the sweep's rung decision
checked against the files TAO wrote.  (One build serves every test: a TAO job costs 15-20
CPU-seconds of start-up before it does anything, so no third experiment: that a model key
reaches TAO is tests/unit/test_tao_acceptance.py's, against TAO's own config classes.  An ONNX of
another checkpoint failing parity at the default tolerance needs models that learned:
tests/func/test_e2e_learning.py.)"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
from PIL import Image

from taomake.tao_status import read_status, run_seconds
from tests.func.test_e2e_tao import job_counts, project_text, snakemake
from tests.helpers import make_project

pytestmark = [pytest.mark.tao, pytest.mark.slow]

EXPERIMENTS = """
experiments:
  small: {seeds: [1, 2]}
  tuned:
    sweep:
      method: successive_halving
      trials: 3
      eta: 3
      min_epochs: 1
      parameters:
        train.optim.lr: {min: 0.00005, max: 0.001, log: true}
        dataset.augmentation.distortion_prob: [0.2, 0.5, 0.8]
"""


@pytest.fixture(scope="module")
def built(tao_venv, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("e2e-exps") / "proj"
    # no inference images: this run is about training, evaluation, export and the report
    text = project_text(tao_venv).replace("  inference:\n    images: data/shapes/infer/images\n",
                                          "")
    make_project(folder, text + EXPERIMENTS, copy_data=True)
    out, counts = snakemake(folder, tao_jobs=18, epochs=8)
    # small x 2 seeds, the sweep's winner continued past rung 0; its 3 rung trainings
    assert counts["train"] == 3 and counts["sweep_rung_train"] == 3, counts
    assert counts["evaluate"] == 3 and counts["export"] == 3, counts
    assert counts["onnx_parity"] == 3 and counts["report"] == 1 and counts["sweep_best"] == 1
    assert counts["sweep_rung"] == 1, counts
    (folder / "first-run.log").write_text(out)
    return folder


def test_report_equals_the_metrics_files(built):
    report = built / "results/report"
    best = json.loads((built / "results/tuned/sweep/best.json").read_text())
    runs = {r["experiment"]: r for r in csv.DictReader((report / "results.csv").open())}
    assert set(runs) == {"small-s1", "small-s2", best["winner"]}
    for name, row in runs.items():
        metrics = json.loads((built / f"results/{name}/evaluate/metrics.json").read_text())
        assert float(row["test_mAP"]) == metrics["test_mAP"]
        assert float(row["test_mAP50"]) == metrics["test_mAP50"]
        parity = json.loads((built / f"results/{name}/export/parity.json").read_text())
        assert float(row["onnx_ms"]) == parity["latency_ms_median"] > 0
        assert parity["ok"] and parity["pytorch_mAP"] == metrics["test_mAP"]
        # TAO's own time over every run of the training (status.json), within the job's wall
        # time (Snakemake's benchmark of the last job)
        job_s = float(next(csv.DictReader((built / f"results/{name}/benchmarks/train.tsv")
                                          .open(), delimiter="\t"))["s"])
        tao_s = run_seconds(read_status(built / f"results/{name}/train/status.json"))
        assert math.isclose(float(row["train_minutes"]), tao_s / 60)
        assert 0 < tao_s <= job_s + 1
    summary = {r["experiment"]: r for r in csv.DictReader((report / "summary.csv").open())}
    values = [float(runs[f"small-s{s}"]["test_mAP"]) for s in (1, 2)]
    assert float(summary["small"]["test_mAP_mean"]) == pytest.approx(sum(values) / 2)
    [tuned] = set(summary) - {"small"}  # the sweep's winner, one run
    assert summary["small"]["runs"] == "2" and summary[tuned]["runs"] == "1"
    # every trial's score is its curve's best val_mAP: the full curve of the trial that trained
    # to the end, the rung record's of a trial stopped at a rung
    for t in best["trials"]:
        train = built / f"results/{t['trial']}/train"
        if "stopped_at_rung" in t:
            rung = json.loads((train / f"rung{t['stopped_at_rung']}.json").read_text())
            curve = rung["curve"]
            assert not (train / "curve.csv").exists()
        else:
            curve = list(csv.DictReader((train / "curve.csv").open()))
        assert t["score"] == max(float(r["val_mAP"]) for r in curve)
    for png in ("curves.png", "accuracy_latency.png", "sweep_tuned.png"):
        with Image.open(report / png) as im:
            im.verify()


def test_second_run_builds_nothing(built):
    out, counts = snakemake(built)
    assert counts == {} and "Nothing to be done" in out


def test_provenance_of_the_sweep_winner(built):
    import subprocess
    import sys

    best = json.loads((built / "results/tuned/sweep/best.json").read_text())
    onnx = f"results/{best['winner']}/export/model.onnx"
    proc = subprocess.run([sys.executable, "-m", "taomake.cli", "provenance", onnx], cwd=built,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert record["artifacts"][onnx]["sha256"] and record["exit_status"] == 0
    assert record["consumed"][f"results/{best['winner']}/train/model.pth"]
    assert record["runtime"]["runner"] == "local" and record["runtime"]["venv"]
    parity = f"results/{best['winner']}/export/parity.json"
    proc = subprocess.run([sys.executable, "-m", "taomake.cli", "provenance", parity],
                          cwd=built, capture_output=True, text=True)
    record = json.loads(proc.stdout)
    assert record["action"] == "onnx_parity" and record["consumed"][onnx]


def test_job_counts_of_first_run(built):
    counts = job_counts((built / "first-run.log").read_text())
    # a checkpoint is selected for each seed and for the sweep's winner only; the trials
    # share one runtime marker
    assert counts["select_checkpoint"] == 3 and counts["data_check"] == 3
    assert counts["runtime_ready"] == 3 and counts["sweep_done"] == 1


def test_successive_halving_continues_promoted_trials(built):
    """Rung 0 trained 3 trials for 1 epoch; the best one continued to epoch 2 from its own
    checkpoint (TAO resumed), then was evaluated and exported."""
    sweep = built / "results/tuned/sweep"
    decision = json.loads((sweep / "rung0.json").read_text())
    assert len(decision["scores"]) == 3 and decision["next_epochs"] == 2
    [winner] = decision["promoted"]
    best = json.loads((sweep / "best.json").read_text())
    assert best["winner"] == winner and best["budget"] == {"train.num_epochs": 2}
    assert sum(1 for t in best["trials"] if "stopped_at_rung" in t) == 2
    train = built / f"results/{winner}/train"
    rung = json.loads((train / "rung0.json").read_text())
    assert [row["epoch"] for row in rung["curve"]] == [0]
    final = (built / f"results/{winner}/logs/train.log").read_text()
    # TAO itself resumed from the rung-0 checkpoint, which was not written again afterwards
    assert f"Setting resume checkpoint to {train / 'model_epoch_000.pth'}" in final
    decided = (sweep / "rung0.json").stat().st_mtime
    assert (train / "model_epoch_000.pth").stat().st_mtime < decided
    assert (train / "model_epoch_001.pth").stat().st_mtime > decided
    assert [r["epoch"] for r in csv.DictReader((train / "curve.csv").open())] == ["0", "1"]
    assert (built / f"results/{winner}/export/parity.json").exists()
