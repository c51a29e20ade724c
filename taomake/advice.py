"""What to do next, for `taomake status`: small checks of what is built (the training curve,
the splits, what is stale), each returning advice or nothing, turned into text at the end."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from taomake.compiler.plan import BuildPlan, ExperimentPlan

RISING_WINDOW = 3  # epochs compared at the end of the curve
LEARNED_LITTLE = 0.05  # best val_mAP under this after a whole training


@dataclass(frozen=True)
class Advice:
    experiment: str
    kind: str  # "build", "still rising", "learned little", "no test split"
    text: str


def _curve(path: Path) -> list[float]:
    try:
        with path.open() as fh:
            return [float(r["val_mAP"]) for r in csv.DictReader(fh)
                    if r.get("val_mAP") not in (None, "")]
    except (OSError, ValueError, KeyError):
        return []


def still_rising(e: ExperimentPlan, root: Path) -> Advice | None:
    """The validation mAP was still climbing when training stopped."""
    scores = _curve(root / e.layout.curve(e.source_action))
    if len(scores) < 2 * RISING_WINDOW or max(scores) < LEARNED_LITTLE:
        return None
    last = scores[-RISING_WINDOW:]
    before = scores[-2 * RISING_WINDOW:-RISING_WINDOW]
    if max(scores) in last and sum(last) / len(last) > sum(before) / len(before) * 1.05:
        return Advice(e.name, "still rising", (
            f"val_mAP still rising at the last epoch ({before[0]:.3f} -> {last[-1]:.3f} over "
            f"the last {2 * RISING_WINDOW} epochs): raise train.epochs (the training resumes "
            "from its saved epochs)"))
    return None


def learned_little(e: ExperimentPlan, root: Path) -> Advice | None:
    scores = _curve(root / e.layout.curve(e.source_action))
    if scores and max(scores) < LEARNED_LITTLE:
        return Advice(e.name, "learned little", (
            f"the model learned little (best val_mAP {max(scores):.3f}): look at `taomake "
            "data check` (tiny boxes, rare classes), then raise train.epochs or train.lr"))
    return None


def no_test_split(e: ExperimentPlan, root: Path) -> Advice | None:
    if "evaluate" not in e.specs and "evaluate" in e.skipped:
        return Advice(e.name, "no test split", (
            f"no test score: {e.skipped['evaluate']} (add dataset.test, images the model "
            "never saw)"))
    return None


CHECKS = (still_rising, learned_little, no_test_split)


def advice(plan: BuildPlan, stale: int) -> list[Advice]:
    root = Path(plan.root)
    out = [Advice("", "build", f"{stale} artifact(s) to build: run `snakemake --cores "
                  "all`")] if stale else []
    for e in plan.experiments.values():
        if e.trial is not None:  # a sweep's trials are judged by the sweep
            continue
        out += [a for check in CHECKS if (a := check(e, root)) is not None]
    return out


__all__ = ["Advice", "advice"]
