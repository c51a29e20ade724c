"""Judging TAO runs from what they leave behind, table-driven on status.json files recorded
from the real TAO on CPU (tests/data/tao_runs): did the run finish, its curve and metrics, and
each action's judge (taomake/judges.py) on good, missing and empty outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from taomake.compiler.actions import ACTIONS
from taomake.compiler.layout import Layout

from taomake.judges import JUDGES, Produced, judge
from taomake.tao_status import evaluation_metrics, outcome, read_status, training_curve
from tests.helpers import REPO

RUNS = REPO / "tests" / "data" / "tao_runs"
BASE = Layout("results", "base")


def recorded(action: str) -> list[dict]:
    return read_status(RUNS / f"demo-{action}.status.json")


def test_every_action_has_a_judge():
    assert {a.judged_as for a in ACTIONS.values()} <= set(JUDGES)


# --------------------------------------------------------------------------- status.json


def _cut_after(records, message):
    index = max(i for i, r in enumerate(records) if str(r.get("message")).startswith(message))
    return records[:index + 1]


def _interrupted(records):
    """What TAO appends when SIGTERM stops a run: a FAILURE record, and it exits 0."""
    return [*records[:30], {"status": "FAILURE", "verbosity": "INFO",
                            "message": "Training was interrupted"}]


def _resumed(records):
    """An interrupted run, then a resumed one that finished (status.json is appended)."""
    return [*_interrupted(records), *records]


STATUS_CASES = [
    # (name, action, transform of the recorded records, finished?, reason contains)
    ("train as recorded", "train", lambda r: r, True, "Train finished successfully."),
    ("evaluate as recorded", "evaluate", lambda r: r, True, "Evaluate finished"),
    ("export as recorded", "export", lambda r: r, True, "Export finished"),
    ("inference as recorded", "inference", lambda r: r, True, "Inference finished"),
    ("no records", "train", lambda r: [], False, "TAO did not start"),
    ("stopped mid-training", "train", lambda r: r[:50], False, "stopped before finishing"),
    ("interrupted (exit 0, FAILURE record)", "train", _interrupted, False,
     "FAILURE: Training was interrupted"),
    ("interrupted, then resumed to the end", "train", _resumed, True, "Train finished"),
    ("evaluate without its final line", "evaluate",
     lambda r: _cut_after(r, "Test metrics generated"), False, "stopped before finishing"),
    ("another action's final message", "export", lambda r: recorded("evaluate"), False,
     "stopped before finishing"),
]


@pytest.mark.parametrize("name,action,transform,finished,reason", STATUS_CASES,
                         ids=[c[0] for c in STATUS_CASES])
def test_outcome(name, action, transform, finished, reason):
    verdict = outcome(transform(recorded(action)), ACTIONS[action].final_message)
    assert verdict.finished is finished
    assert reason in verdict.reason


def test_training_curve_of_the_recorded_run():
    curve = training_curve(recorded("train"))
    assert [row.epoch for row in curve] == list(range(40))
    assert all(row.train_loss is not None and row.val_mAP is not None for row in curve)
    assert curve[-1].val_mAP50 > 0.5 > curve[0].val_mAP50  # the demo learned
    # a resumed run's epochs replace the interrupted run's: still one row per epoch
    assert [row.epoch for row in training_curve(_resumed(recorded("train")))] == list(range(40))


def test_evaluation_metrics_are_numbers():
    metrics = evaluation_metrics(recorded("evaluate"))
    assert metrics == {"test_mAP": pytest.approx(0.57787608),
                       "test_mAP50": pytest.approx(0.69868126)}
    assert evaluation_metrics(_cut_after(recorded("evaluate"), "Loading checkpoint")) == {}


# --------------------------------------------------------------------------- the judges


def _spec(tmp: Path) -> dict:
    return {"train": {"num_epochs": 40},
            "export": {"onnx_file": "results/base/export/model.onnx"},
            "gen_trt_engine": {"trt_engine": "results/base/gen_trt_engine/model.fp16.engine"},
            "quantize": {"backend": "torchao"},
            "dataset": {"infer_data_sources": {"image_dir": ["images"]}}}


def _write(path: Path, data: bytes = b"x") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _checkpoints(size):
    def make(run):
        for epoch in range(2):
            _write(run.out_dir / f"model_epoch_{epoch:03d}.pth", b"w" * size)
        (run.out_dir / "status.json").write_text(
            (RUNS / "demo-train.status.json").read_text())
    return make


def _labels(count):
    def make(run):
        for i in range(3):
            _write(run.root / "images" / f"{i}.png")
        for i in range(count):
            _write(run.out_dir / "labels" / f"{i}.txt", b"circle 0 0 0 0 0 0 0 0.9\n")
    return make


JUDGE_CASES = [
    # (name, action, setup(run), problems contain (None: no problem), result file written)
    ("checkpoints and a curve", "train", _checkpoints(10), None, "run.json"),
    ("no checkpoint", "train", lambda run: None, "no non-empty model_epoch_*.pth", None),
    ("an empty checkpoint", "train", _checkpoints(0), "no non-empty model_epoch_*.pth", None),
    ("distill is judged like train", "distill", _checkpoints(10), None, "curve.csv"),
    ("test metrics", "evaluate", lambda run: None, None, "metrics.json"),
    ("the ONNX file", "export",
     lambda run: _write(run.root / "results/base/export/model.onnx"), None, None),
    ("no ONNX file", "export", lambda run: None, "model.onnx is missing or empty", None),
    ("an empty ONNX file", "export",
     lambda run: _write(run.root / "results/base/export/model.onnx", b""), "missing or empty",
     None),
    ("a label file per image", "inference", _labels(3), None, "summary.json"),
    ("a label file missing", "inference", _labels(2), "no label file for 1 of 3 images", None),
    ("torchao's quantized model", "quantize",
     lambda run: _write(run.out_dir / "quantized_model_torchao.pth"), None, None),
    ("no quantized model", "quantize", lambda run: None, "quantized_model_torchao.pth", None),
    ("the engine", "gen_trt_engine",
     lambda run: _write(run.root / "results/base/gen_trt_engine/model.fp16.engine"), None,
     None),
    ("no engine", "gen_trt_engine", lambda run: None, "model.fp16.engine is missing", None),
    ("the quantized model's evaluation", "quantized_evaluate", lambda run: None, None,
     "metrics.json"),
    ("TensorRT's results.json", "trt_evaluate",
     lambda run: _write(run.out_dir / "results.json", b'{"AP": 0.5, "AP50": 0.7}'), None,
     "metrics.json"),
    ("no TensorRT results", "trt_evaluate", lambda run: None, "no test_mAP", None),
]


@pytest.mark.parametrize("name,action,setup,problem,written", JUDGE_CASES,
                         ids=[c[0] for c in JUDGE_CASES])
def test_judge(tmp_path, name, action, setup, problem, written):
    out_dir = tmp_path / "results/base" / ACTIONS[action].results_subdir
    out_dir.mkdir(parents=True)
    records = recorded("evaluate") if ACTIONS[action].judged_as == "evaluate" else []
    run = Produced(ACTIONS[action], tmp_path, BASE, records, _spec(tmp_path))
    assert run.out_dir == out_dir
    setup(run)
    problems = judge(run)
    if problem is None:
        assert problems == []
    else:
        assert len(problems) == 1 and problem in problems[0], problems
    if written:
        assert (out_dir / written).is_file()
    if problem is not None:  # nothing of taomake's is written for a bad run
        assert not {"run.json", "curve.csv", "metrics.json", "summary.json"} & {
            p.name for p in out_dir.iterdir()}


def test_evaluation_without_metrics_is_a_problem(tmp_path):
    run = Produced(ACTIONS["evaluate"], tmp_path, BASE, recorded("evaluate")[:2], {})
    assert judge(run) == ["no test_mAP in the evaluation results"]
    assert not (tmp_path / BASE.metrics("evaluate")).exists()


def test_a_sweep_rung_writes_its_own_record_only(tmp_path):
    out_dir = tmp_path / "results/t0/train"
    out_dir.mkdir(parents=True)
    run = Produced(ACTIONS["train"], tmp_path, Layout("results", "t0"), [], _spec(tmp_path),
                   rung_out=tmp_path / "rung0.json")
    _checkpoints(10)(run)
    assert judge(run) == []
    rung = json.loads((tmp_path / "rung0.json").read_text())
    assert rung["epochs"] == 40 and len(rung["curve"]) == 40
    assert not (out_dir / "run.json").exists() and not (out_dir / "curve.csv").exists()


def test_time_spent_sums_every_run_of_a_resumed_training():
    from taomake.tao_status import run_seconds, runs

    recorded_train = recorded("train")
    one = run_seconds(recorded_train)
    assert one is not None and 200 < one < 600  # the demo's 40 epochs took ~5 min
    resumed = _resumed(recorded_train)
    assert len(runs(resumed)) == 2
    first = run_seconds(_interrupted(recorded_train))
    assert run_seconds(resumed) == pytest.approx(one + first)
    assert run_seconds([]) is None
