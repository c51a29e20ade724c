"""Sweeps (TAO's AutoML done as a build): the trial set as a pure function of project.yaml.

Parameters are TAO's AutoML search space for RT-DETR (docs/tao-notes.md §12); a range defaults
to the bounds TAO's schema gives the field and must lie inside them.  Trial i of a `random` sweep is
drawn from its own generator seeded by (sweep.seed, i, key), so adding trials keeps every old
trial (same values, same spec, nothing rebuilt) and only the new ones train.
"""

from __future__ import annotations

import itertools
import json
import math
import random
from dataclasses import dataclass
from typing import Any

from .package_data import schemas_dir

# TAO's `automl_default_parameters` for RT-DETR (nvidia-tao-pytorch 7.3.0 experiment schema).
AUTOML_PARAMETERS = (
    "train.optim.lr", "train.optim.lr_backbone", "train.optim.momentum",
    "train.optim.weight_decay", "train.optim.lr_decay", "train.optim.lr_step_size",
    "train.ema.decay", "dataset.batch_size", "dataset.workers", "model.num_queries",
    "model.num_select", "model.enc_layers", "model.dec_layers",
    "dataset.augmentation.distortion_prob", "dataset.augmentation.iou_crop_prob",
)


@dataclass(frozen=True)
class Trial:
    name: str  # "t000"
    index: int
    values: dict[str, Any]  # TAO key -> value


def _schema_field(key: str) -> dict[str, Any]:
    node = json.loads((schemas_dir() / "train.schema.json").read_text())
    for part in key.split("."):
        node = node["properties"][part]
    return node


def domain(key: str, spec: Any) -> tuple[dict[str, Any], str | None]:
    """Normalised domain {values} or {min, max, log, integer} of one parameter, or a problem."""
    if key not in AUTOML_PARAMETERS:
        return {}, (f"{key!r} is not one of TAO's AutoML parameters for RT-DETR: "
                    + ", ".join(AUTOML_PARAMETERS))
    field = _schema_field(key)
    integer = field.get("type") == "integer"
    lo, hi = field.get("minimum"), field.get("maximum")
    spec = {"values": spec} if isinstance(spec, list) else dict(spec or {})
    if "values" in spec:
        values = spec["values"]
        if not values:
            return {}, f"{key}: `values` is empty"
        for v in values:
            if not isinstance(v, (int, float)) or isinstance(v, bool) or \
                    (lo is not None and v < lo) or (hi is not None and v > hi):
                return {}, f"{key}: value {v!r} is outside TAO's bounds [{lo}, {hi}]"
            if integer and not float(v).is_integer():
                return {}, f"{key}: value {v!r} is not a whole number (TAO's {key} is an int)"
        # the type TAO's schema gives the key: TAO's loader refuses 2.0 for an int field
        return {"values": [int(v) if integer else float(v) for v in values]}, None
    lo_user, hi_user = spec.get("min", lo), spec.get("max", hi)
    if lo_user is None or hi_user is None:
        return {}, f"{key}: TAO's schema gives no bounds; set min and max (or values)"
    if (lo is not None and lo_user < lo) or (hi is not None and hi_user > hi) or \
            lo_user > hi_user:
        return {}, f"{key}: range [{lo_user}, {hi_user}] is outside TAO's bounds [{lo}, {hi}]"
    log = bool(spec.get("log", False))
    if log and lo_user <= 0:
        return {}, f"{key}: a log range needs min > 0"
    return {"min": lo_user, "max": hi_user, "log": log, "integer": integer}, None


def _draw(d: dict[str, Any], rng: random.Random) -> Any:
    if "values" in d:
        return rng.choice(d["values"])
    lo, hi = d["min"], d["max"]
    x = math.exp(rng.uniform(math.log(lo), math.log(hi))) if d["log"] else rng.uniform(lo, hi)
    return int(round(x)) if d["integer"] else float(f"{x:.6g}")


def trials(sweep) -> tuple[list[Trial], list[str]]:
    """The trials of a `sweep:` section (a compiler.model.Sweep) and any problems found."""
    problems: list[str] = []
    domains: dict[str, dict[str, Any]] = {}
    for key, spec in sweep.parameters.items():
        d, problem = domain(key, spec.model_dump(exclude_none=True) if hasattr(
            spec, "model_dump") else spec)
        if problem:
            problems.append(problem)
        else:
            domains[key] = d
    if problems:
        return [], problems
    keys = sorted(domains)
    out: list[Trial] = []
    if sweep.method == "grid":
        missing = [k for k in keys if "values" not in domains[k]]
        if missing:
            return [], [f"grid sweep: give `values` for {', '.join(missing)}"]
        for i, combo in enumerate(itertools.product(*(domains[k]["values"] for k in keys))):
            out.append(Trial(f"t{i:03d}", i, dict(zip(keys, combo, strict=True))))
    else:  # random and successive_halving: independent draws per trial
        for i in range(sweep.trials):
            values = {k: _draw(domains[k], random.Random(f"{sweep.seed}:{i}:{k}")) for k in keys}
            out.append(Trial(f"t{i:03d}", i, values))
    return out, []


def rung_epochs(min_epochs: int, eta: int, max_epochs: int) -> list[int]:
    """Successive halving: epochs per rung, growing by eta up to the full training."""
    rungs, e = [], min_epochs
    while e < max_epochs:
        rungs.append(e)
        e *= eta
    return rungs + [max_epochs]
