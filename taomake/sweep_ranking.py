"""Choosing a sweep's winner: every trial's best validation score from its training curve,
the maximum wins (ties: the earlier trial), recorded in `results/<exp>/sweep/best.json`."""

from __future__ import annotations

import csv
import hashlib
import json
import math
from pathlib import Path
from typing import Any

from taomake.compiler.errors import UsageError
from taomake.compiler.files import atomic_write
from taomake.compiler.layout import Layout
from taomake.compiler.plan import BuildPlan
from taomake.errors import RunError


def trial_score(curve: Path, metric: str) -> tuple[float, int]:
    """(best value of `metric`, its epoch) over a training curve; NaN rows are skipped."""
    best, epoch = -math.inf, -1
    with curve.open() as f:
        for row in csv.DictReader(f):
            try:
                value = float(row[metric])
            except (KeyError, TypeError, ValueError):
                continue
            if not math.isnan(value) and value > best:
                best, epoch = value, int(row["epoch"])
    if epoch < 0:
        raise RunError(f"{curve} has no {metric} values: the trial never validated\n"
                       "    fix: check train.validation_interval (it must be <= the epochs)")
    return best, epoch


def _sweep(plan: BuildPlan, sweep: str) -> dict[str, Any]:
    info = plan.sweeps.get(sweep)
    if info is None:
        raise UsageError(f"no sweep named {sweep!r}; the project sweeps: "
                         + (", ".join(plan.sweeps) or "nothing"))
    return info


def rung_file(plan: BuildPlan, sweep: str, rung: int) -> Path:
    return Path(plan.root) / Layout(plan.results, sweep).sweep_rung(rung)


def survivors(plan: BuildPlan, sweep: str, rung: int) -> list[str]:
    """Trials that train in `rung` (all in rung 0, then each decision's promoted ones)."""
    info = _sweep(plan, sweep)
    if rung == 0:
        return list(info["trials"])
    return json.loads(rung_file(plan, sweep, rung - 1).read_text())["promoted"]


def decide_rung(plan: BuildPlan, sweep: str, rung: int,
                out: Path) -> tuple[dict[str, Any], list[Path]]:
    """Successive halving: rank a rung's trials, promote the best 1/eta to the next rung.
    Returns the decision and the files it was made from."""
    info = _sweep(plan, sweep)
    root, metric = Path(plan.root), info["metric"]
    scores, read = {}, []
    for trial in survivors(plan, sweep, rung):
        read.append(root / plan.experiments[trial].layout.rung_record(rung))
        record = json.loads(read[-1].read_text())
        values = [row[metric] for row in record["curve"] if row.get(metric) is not None]
        if not values:
            raise RunError(f"{trial} has no {metric} after rung {rung}: it never validated\n"
                           "    fix: validate every epoch (train.validation_interval: 1)")
        scores[trial] = max(values)
    keep = max(1, len(scores) // info["eta"])
    ranked = sorted(scores, key=lambda t: (-scores[t], list(info["trials"]).index(t)))
    record = {"sweep": sweep, "rung": rung, "epochs": info["rungs"][rung], "metric": metric,
              "scores": scores, "promoted": ranked[:keep],
              "next_epochs": info["rungs"][rung + 1]}
    atomic_write(out, json.dumps(record, indent=1, sort_keys=True) + "\n")
    print(f"sweep {sweep} rung {rung} ({record['epochs']} epochs): promoted "
          f"{', '.join(record['promoted'])} to {record['next_epochs']} epochs")
    return record, read


def choose_best(plan: BuildPlan, sweep: str, out: Path) -> tuple[dict[str, Any], list[Path]]:
    """The winner and every trial's score in best.json; returns it and the files read."""
    info = _sweep(plan, sweep)
    root, metric = Path(plan.root), info["metric"]
    finalists = (survivors(plan, sweep, len(info["rungs"]) - 1) if info["rungs"]
                 else list(info["trials"]))
    rows, read = [], []
    for trial in finalists:
        values = info["trials"][trial]
        exp = plan.experiments[trial]
        read.append(root / exp.layout.curve("train"))
        score, epoch = trial_score(read[-1], metric)
        spec = exp.specs["train"]
        rows.append({"trial": trial, "score": score, "epoch": epoch, "values": values,
                     "budget": {"train.num_epochs": spec.data["train"]["num_epochs"]},
                     "spec": spec.path,
                     "spec_sha256": hashlib.sha256(spec.text.encode()).hexdigest()})
    winner = max(rows, key=lambda r: r["score"])  # max() keeps the first of equal scores
    for rung in range(len(info["rungs"]) - 1):  # trials stopped early, with their last score
        read.append(rung_file(plan, sweep, rung))
        decision = json.loads(read[-1].read_text())
        for trial, score in decision["scores"].items():
            if trial not in decision["promoted"]:
                rows.append({"trial": trial, "score": score, "stopped_at_rung": rung,
                             "values": info["trials"][trial],
                             "budget": {"train.num_epochs": decision["epochs"]}})
    record = {"sweep": sweep, "method": info["method"], "metric": metric, "maximize": True,
              "winner": winner["trial"], "score": winner["score"], "epoch": winner["epoch"],
              "values": winner["values"], "budget": winner["budget"], "spec": winner["spec"],
              "spec_sha256": winner["spec_sha256"], "trials": rows}
    atomic_write(out, json.dumps(record, indent=1, sort_keys=True) + "\n")
    print(f"sweep {sweep}: {len(rows)} trials, winner {winner['trial']} {metric} "
          f"{winner['score']:.4f} (epoch {winner['epoch']}) with {winner['values']}")
    return record, read
