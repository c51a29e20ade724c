"""What a training says while TAO runs (taomake.progress)."""

from __future__ import annotations

import json

from taomake.progress import Progress, duration


def test_progress_line_has_scores_and_eta(tmp_path, capsys, monkeypatch):
    status = tmp_path / "status.json"
    lines = []
    clock = [100.0]
    monkeypatch.setattr("taomake.progress.time.monotonic", lambda: clock[0])
    progress = Progress(status, 0, "train (base)", epochs=10)
    for epoch, now in ((0, 130.0), (1, 140.0), (2, 150.0)):
        # the records TAO 7.3.0 writes per epoch (taken from a real train/status.json)
        lines.append({"message": "Eval metrics generated.", "status": "RUNNING",
                      "kpi": {"val_mAP": "0.25", "val_mAP50": "0.5", "val_loss": 1.0}})
        lines.append({"epoch": epoch, "max_epoch": 9, "message": "Training loop in progress",
                      "status": "RUNNING"})
        lines.append({"message": "Train metrics generated.", "status": "RUNNING",
                      "kpi": {"train_loss": 3.0}})
        status.write_text("".join(json.dumps(x) + "\n" for x in lines))
        clock[0] = now
        progress()
    err = capsys.readouterr().err
    assert "epoch 0 done (1/10), train_loss 3.0000, val_mAP 0.2500, val_mAP50 0.5000\n" in err
    assert "epoch 1 done (2/10), train_loss 3.0000, val_mAP 0.2500, val_mAP50 0.5000, " \
           "ETA 1 min 20 s" in err  # 10 s per epoch since the first, 8 to go
    assert "epoch 2 done (3/10)" in err and "ETA 1 min 10 s" in err
    assert duration(59.6) == "1 min 00 s" and duration(5) == "5 s"
