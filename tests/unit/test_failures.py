"""Failure classes (infrastructure: retried; program: never) and the retry loop of `taomake run`."""

from __future__ import annotations

import pytest
from taomake.compiler.plan import load_plan

from taomake.errors import RunError
from taomake.failures import classify
from taomake.jobs import run_action
from tests.helpers import REPO, SMOKE_PROJECT, make_project

TABLE = [
    # infrastructure
    ("slurmstepd: error: *** JOB 4242 ON gpu017 CANCELLED AT 2025-03-01T10:00:00 DUE TO NODE "
     "FAILURE, SEE SLURMCTLD LOG FOR DETAILS ***", "infrastructure", "node failure"),
    ("srun: error: Node failure on gpu017; job state NODE_FAIL", "infrastructure",
     "node failure"),
    ("slurmstepd: error: *** STEP 4242.0 ON gpu003 CANCELLED AT 2025-03-01T10:00:00 DUE TO "
     "PREEMPTION ***", "infrastructure", "preemption"),
    ("NVRM: Xid (PCI:0000:3b:00): 79, pid=1234, GPU has fallen off the bus.", "infrastructure",
     "GPU fell off the bus"),
    ("NVRM: Xid (PCI:0000:86:00): 48, pid=9, An uncorrectable double bit error (DBE) has been "
     "detected", "infrastructure", "GPU Xid error"),
    ("RuntimeError: CUDA error: uncorrectable ECC error encountered", "infrastructure",
     "GPU ECC error"),
    ("RuntimeError: The NVIDIA driver on your system is too old ... CUDA driver version is "
     "insufficient for CUDA runtime version", "infrastructure", "NVIDIA driver too old"),
    ("gpu01:2211:2290 [1] NCCL WARN NET/IB : Got completion from peer 10.1.1.2<4411> with "
     "status=IBV_WC_RETRY_EXC_ERR(12)", "infrastructure", "NCCL/network transport error"),
    ("torch.distributed.DistBackendError: NCCL error in: ProcessGroupNCCL.cpp:1970, unhandled "
     "system error, ncclSystemError: System call failed", "infrastructure",
     "NCCL/network transport error"),
    ("[W socket.cpp:464] [c10d] The server socket has failed to listen ... "
     "RuntimeError: [c10d] recvValue failed ... Connection reset by peer", "infrastructure",
     "NCCL/network transport error"),
    # program
    ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB", "program",
     "CUDA out of memory"),
    ("RuntimeError: CUDA error: device-side assert triggered", "program", "device-side assert"),
    ("slurmstepd: error: *** JOB 77 ON gpu01 CANCELLED AT 2025-03-01T10:00:00 DUE TO TIME "
     "LIMIT ***", "program", "time limit"),
    ("FileNotFoundError: [Errno 2] No such file or directory: '/data/train/annotations.json'",
     "program", "missing file"),
    ("KeyError: 'num_classes'", "program", "Python exception KeyError"),
    ("ValueError: too many values to unpack (expected 2)", "program",
     "Python exception ValueError"),
]


@pytest.mark.parametrize("line,kind,cause", TABLE, ids=[t[2] + ":" + t[0][:30] for t in TABLE])
def test_classify_table(line, kind, cause):
    f = classify(["epoch 3 done", line, "srun: error: task 0: Exited with exit code 1"], [])
    assert (f.kind, f.cause) == (kind, cause)
    assert f.evidence_line == line.strip()[:300]
    assert f.retryable == (kind == "infrastructure")


def test_traceback_alone_is_a_program_fault():
    f = classify(["Traceback (most recent call last):", '  File "x.py", line 1',
                  "AttributeError: 'NoneType' object has no attribute 'shape'"], [])
    assert (f.kind, f.cause) == ("program", "Python exception AttributeError")


def test_oom_beats_nccl_and_status_json_counts():
    f = classify(["NCCL WARN NET/IB : connection closed"],
                 [{"status": "FAILURE", "message": "CUDA out of memory. Tried to allocate"}])
    assert (f.kind, f.cause) == ("program", "CUDA out of memory")
    assert classify([], [{"status": "FAILURE", "message": "File system error: gone"}]).cause \
        == "missing file"


def test_nothing_known_is_unknown_and_not_retried():
    f = classify(["just some output"], [{"status": "RUNNING", "message": "ok"}])
    assert f.kind == "unknown" and not f.retryable


def _project(tmp_path):
    text = SMOKE_PROJECT.read_text().replace(
        "    kind: local",
        f"    kind: local\n    local: {{venv: {REPO / 'tests' / 'fake_tao'}}}\n"
        "    env: [FAKE_TAO_FAIL]")
    project = make_project(tmp_path / "proj", text)
    load_plan(project)  # planned as Snakemake's parse plans it: the job runs with this plan
    return project


def test_infra_fault_is_retried_once_then_succeeds(tmp_path, monkeypatch):
    project = _project(tmp_path)
    monkeypatch.setenv("FAKE_TAO_FAIL", "train:nccl_once")
    log = tmp_path / "proj/results/base/logs/train.log"
    run_action(project, "base", "train", log)
    text = log.read_text()
    assert text.count("NCCL WARN NET/IB") == 1
    assert text.count("infrastructure fault (NCCL/network transport error") == 1
    assert "retry 1 of 2" in text and "train (base): finished" in text
    assert (tmp_path / "proj/results/base/train/curve.csv").exists()


def test_program_fault_fails_at_once_with_its_cause(tmp_path, monkeypatch):
    project = _project(tmp_path)
    monkeypatch.setenv("FAKE_TAO_FAIL", "train:oom")
    log = tmp_path / "proj/results/base/logs/train.log"
    with pytest.raises(RunError, match=r"program fault: CUDA out of memory") as err:
        run_action(project, "base", "train", log)
    assert "CUDA out of memory. Tried to allocate 2.00 GiB" in str(err.value)
    assert log.read_text().count("fake rtdetr train") == 1  # no retry
    assert "retry" not in log.read_text()
