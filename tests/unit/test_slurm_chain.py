"""The time-limit and preemption chain's policy and its words (taomake.slurm_chain); the real
cluster's TIMEOUT is in tests/func/test_slurm_faults.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from taomake.slurm_chain import Decision, Ended, Training, decide, describe, progress

TRAIN = Training("train (base)", resumable=True, resubmits=3, time_minutes=60)
EVALUATE = Training("evaluate (base)", resumable=False, resubmits=3, time_minutes=10)


@pytest.mark.parametrize(("ended", "training", "action", "why"), [
    (Ended("48", "TIMEOUT", "TIMEOUT", 0, True), TRAIN, "requeue", "attempt 2 of 4"),
    (Ended("48", "TIMEOUT", "TIMEOUT", 2, True), TRAIN, "requeue", "attempt 4 of 4"),
    (Ended("48", "TIMEOUT", "TIMEOUT", 3, True), TRAIN, "fail", "resubmitted 3 time(s)"),
    (Ended("48", "TIMEOUT", "TIMEOUT", 0, False), TRAIN, "fail", "--no-requeue"),
    (Ended("48", "TIMEOUT", "TIMEOUT", 0, True), EVALUATE, "fail", "starts over"),
    # preempted: SLURM requeued it itself (PreemptMode=REQUEUE): wait for it
    (Ended("48", "PREEMPTED", "PENDING", 1, True), TRAIN, "wait", "SLURM requeued it"),
    # preempted for good (PreemptMode=CANCEL): resubmitted, whatever the job
    (Ended("48", "PREEMPTED", "PREEMPTED", 0, True), EVALUATE, "requeue", "attempt 2 of 4"),
    (Ended("48", "PREEMPTED", "PREEMPTED", 0, True), None, "fail", "not a job of this build"),
    # sacct says TIMEOUT while its processes still end (KillWait): asked again later
    (Ended("48", "TIMEOUT", "COMPLETING", 0, True), TRAIN, "later", "still ending"),
])
def test_decide(ended, training, action, why):
    decision = decide(ended, training)
    assert decision.action == action and why in decision.reason, decision


def status_file(tmp_path: Path, per_epoch: str | None, epochs_done: int, total: int) -> Path:
    path = tmp_path / "status.json"
    lines = []
    for epoch in range(epochs_done):
        record = {"epoch": epoch, "max_epoch": total - 1, "date": "12/7/2026",
                  "time": f"6:{epoch * 2:02d}:00", "status": "RUNNING",
                  "message": "Training loop in progress"}
        if per_epoch:
            record["time_per_epoch"] = per_epoch
        lines.append(json.dumps(record))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_progress_from_tao_time_per_epoch_or_the_records_times(tmp_path):
    assert progress(status_file(tmp_path, "0:01:35.500000", 4, 30)) == (4, 30, 95.5)
    assert progress(status_file(tmp_path, None, 4, 30)) == (4, 30, 120.0)  # 2 min apart
    assert progress(tmp_path / "none.json") == (0, None, None)


def test_an_exhausted_chain_names_the_setting_the_epochs_and_their_time(tmp_path):
    training = Training("train (base)", True, 1, 60, status=status_file(
        tmp_path, "0:01:35", 12, 30))
    ended = Ended("48", "TIMEOUT", "TIMEOUT", 1, True)
    text = describe(ended, training, decide(ended, training))
    assert text.startswith("train (base): SLURM job 48 reached its time limit "
                           "(hardware.slurm.time_minutes: 60); 12 of 30 epochs done, one epoch "
                           "takes ~1 min 35 s; not resubmitted: resubmitted 1 time(s) already "
                           "(hardware.slurm.resubmits: 1); raise hardware.slurm.time_minutes "
                           "(the 18 epochs left need ~34 min) or hardware.slurm.resubmits"), text


def test_a_resubmission_says_which_attempt(tmp_path):
    training = Training("train (base)", True, 3, 1, status=status_file(tmp_path, None, 2, 4))
    ended = Ended("48", "TIMEOUT", "TIMEOUT", 0, True)
    text = describe(ended, training, Decision("requeue", "attempt 2 of 4"))
    assert text == ("train (base): SLURM job 48 reached its time limit (hardware.slurm."
                    "time_minutes: 1); 2 of 4 epochs done, one epoch takes ~2 min 00 s; "
                    "resubmitted (attempt 2 of 4), it resumes from its checkpoints")
