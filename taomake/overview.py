"""`taomake status` and `taomake explain`: what is built, what is stale, and why.

The reasons are typed, from what taomake recorded when it built each artifact
(taomake.staleness: the spec it was built from, the data identities and the files it
consumed, the selection policy); here they become text, with the artifacts' key numbers and,
for a changed spec, the project.yaml lines whose edit changed it.  Both only read: no spec,
stamp or record is written and no data source is reached.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ruamel.yaml import YAML

from taomake.compiler import load_project
from taomake.compiler.actions import ACTIONS, STEPS
from taomake.compiler.errors import UsageError
from taomake.compiler.keymap import entry_location, project_location
from taomake.compiler.layout import Layout, Shared
from taomake.compiler.plan import BuildPlan, ExperimentPlan, load_plan
from taomake.compiler.writer import changed_keys, spec_image

from .staleness import GroupState, plan_states


@dataclass
class Row:
    experiment: str
    artifact: str
    state: str
    detail: str
    cache: str = ""  # the team cache: "from cache", "published", "miss" ("": none)


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


# --------------------------------------------------------------------------- details

# what a row shows of its artifact, by how its action is judged (ACTIONS `judged_as`) or by
# its step: (project root, the experiment's layout, its action or step, main artifact) -> text
Detail = Callable[[Path, Layout, str, Path], str]


def _training(root: Path, lay: Layout, action: str, main: Path) -> str:
    if main.name == Path(lay.curve(action)).name:  # a sweep trial shows its curve
        rows = list(csv.DictReader(main.open()))
        scores = [float(r["val_mAP"]) for r in rows if r.get("val_mAP") not in (None, "")]
        return f"{len(rows)} epochs" + (f", best val_mAP={max(scores):.4f}" if scores else "")
    sel = _json(root / lay.selection(action))
    value = f" {sel.get('metric')}={sel['value']:.4f}" if sel.get("value") is not None else ""
    return f"epoch {sel.get('epoch')} ({sel.get('policy')}){value}"


def _metrics(root: Path, lay: Layout, action: str, main: Path) -> str:
    m = _json(main)
    return ", ".join(f"{k}={m[k]:.4f}" for k in ("test_mAP", "test_mAP50") if k in m)


def _summary(root: Path, lay: Layout, action: str, main: Path) -> str:
    s = _json(main)
    return f"{s.get('detections', 0)} detections on {s.get('images', 0)} images"


def _onnx(root: Path, lay: Layout, action: str, main: Path) -> str:
    # the ONNX checked against PyTorch's evaluation, when that step is shown with it
    parity = _json(root / lay.parity) if STEPS["parity"].shown_with == action else {}
    verdict = "ok" if parity.get("ok") else "FAILED"
    checked = (f", ONNX Runtime: mAP gap {parity['gap']:.4f} ({verdict}), "
               f"{parity['latency_ms_median']:.1f} ms median"
               if parity.get("gap") is not None else "")
    return f"{main.stat().st_size / 1e6:.1f} MB{checked}"


def _size(root: Path, lay: Layout, action: str, main: Path) -> str:
    return f"{main.stat().st_size / 1e6:.1f} MB"


def _detections(root: Path, lay: Layout, step: str, main: Path) -> str:
    t = _json(main)
    sides = [(label, t.get(key)) for label, key in (("PyTorch", "pytorch"), ("ONNX", "onnx"))
             if t.get(key)]
    if not sides:
        return ""
    label, side = sides[0]
    cells = ", ".join(f"{name} {c['AP50']:.2f}"
                      for name, c in sorted(side.items(), key=lambda kv: kv[1]["id"]))
    return f"AP50 per class ({label}): {cells}; grid: {t.get('grid', '')}"


DETAILS: dict[str, Detail] = {"training": _training, "evaluate": _metrics,
                              "inference": _summary, "export": _onnx, "quantize": _size,
                              "gen_trt_engine": _size, "detections": _detections}


def _detail(root: Path, e: ExperimentPlan, group: GroupState) -> str:
    main = root / group.paths[0]
    if not main.exists():
        return ""
    kind = group.name if group.name in STEPS else ACTIONS[group.name].judged_as
    return DETAILS[kind](root, e.layout, group.name, main) if kind in DETAILS else ""


# --------------------------------------------------------------------------- status


def _state(group: GroupState) -> str:
    if not group.stale:
        return "up to date"
    if group.missing:
        return "missing"
    return f"stale ({group.reasons[0].kind})"


CACHE_STATES = {"hit": "from cache", "published": "published", "miss": "miss",
                "publish failed": "miss (publish failed)", "not keyed": "not keyed"}


def cache_state(root: Path, e: ExperimentPlan, group: str) -> str:
    """How the team cache served the group's last build (its provenance), "" without one."""
    if group not in ACTIONS:
        return ""
    record = _json(root / e.layout.provenance(group)).get("cache") or {}
    return CACHE_STATES.get(record.get("state", ""), record.get("state", ""))


def status_rows(plan: BuildPlan) -> list[Row]:
    """Each artifact group's state (its main artifact's row), from taomake's records."""
    root = Path(plan.root)
    rows = []
    for g in plan_states(root, plan):
        e = plan.experiments[g.experiment]
        rows.append(Row(g.experiment, g.paths[0], _state(g), _detail(root, e, g),
                        cache_state(root, e, g.name) if not g.missing else ""))
    return rows


def print_status(project: Path) -> None:
    plan = load_plan(project, write=False)
    rows = status_rows(plan)
    width = max(len(r.artifact) for r in rows)
    cache_width = max(len(r.cache) for r in rows)
    print(f"project {plan.name} ({plan.project_file}); results under "
          f"{Path(plan.root) / plan.results}")
    for exp in dict.fromkeys(r.experiment for r in rows):
        print(f"\nexperiment {exp}")
        for r in (r for r in rows if r.experiment == exp):
            cache = f"{r.cache:{cache_width}}  " if cache_width else ""
            print(f"  {r.artifact:{width}}  {r.state:12}  {cache}{r.detail}")
    report = Path(plan.root) / Shared(plan.results).report_dir
    shown = [str(p.relative_to(plan.root)) for p in sorted(report.glob(Shared.PLOTS_GLOB))]
    if shown:
        print("\nplots: " + ", ".join(shown))
    from .advice import advice

    todo = advice(plan, sum(1 for r in rows if r.state != "up to date"))
    if todo:
        print("\nnext:")
        for a in todo:
            print(f"  {a.experiment + ': ' if a.experiment and len(plan.experiments) > 1 else ''}"
                  f"{a.text}")


# --------------------------------------------------------------------------- explain


def _group_of(plan: BuildPlan, target: str) -> tuple[ExperimentPlan, str]:
    """The experiment and artifact group a target file belongs to."""
    root = Path(plan.root)
    wanted = (root / target).resolve() if not Path(target).is_absolute() else Path(target)
    for e in plan.experiments.values():
        for name, paths in e.all_artifacts().items():
            if any((root / p).resolve() == wanted for p in paths):
                return e, name
    raise UsageError(f"{target} is not an artifact of {plan.project_file}; `taomake status` "
                     "lists them")


def explain(project: Path, target: str) -> list[str]:
    """Why `target` would be built again: each stale group it depends on (upstream first),
    its reasons and, for a changed spec, the project.yaml lines behind each changed key."""
    plan = load_plan(project, write=False)
    root = Path(plan.root)
    e, name = _group_of(plan, target)
    from .staleness import experiment_states, upstream_of

    states = {g.name: g for g in experiment_states(root, plan, e)}
    chain: list[str] = []

    def visit(group: str) -> None:
        for up in upstream_of(e, group):
            visit(up)
        if group in states and states[group].stale and group not in chain:
            chain.append(group)

    visit(name)
    lp = load_project(project)  # positions, for the project.yaml lines
    lines = [f"{target} is stale; {len(chain)} step(s) to build again:"] if chain else \
        [f"{target} is up to date: nothing would run"]
    for group in chain:
        reasons = "; ".join(r.text() for r in states[group].reasons)
        lines.append(f"  {group} ({e.name}): {reasons}")
        if any(r.kind == "spec changed" for r in states[group].reasons):
            lines += [f"      {d}" for d in _spec_changes(lp, e, group)]
    return lines + _cache_lines(lp, plan, e, name)


def _cache_lines(lp, plan: BuildPlan, e: ExperimentPlan, name: str) -> list[str]:
    """For the target and what it reads: how the team cache served their last build, and for
    a miss, what differs from the nearest published entry (spec keys with their project.yaml
    lines, data sources, upstream artifacts, runtime)."""
    from .cache import describe
    from .staleness import upstream_of

    order: list[str] = []

    def visit(group: str) -> None:
        for up in upstream_of(e, group):
            visit(up)
        if group in ACTIONS and group not in order:
            order.append(group)

    visit(name)
    out = []
    for group in order:
        record = _json(lp.root / e.layout.provenance(group)).get("cache")
        if not record:
            continue
        state = CACHE_STATES.get(record.get("state", ""), record.get("state", ""))
        if record.get("state") == "hit":
            pub = record.get("published", {})
            out.append(f"  {group} ({e.name}): from cache {record['key'][:12]}, published by "
                       f"{pub.get('by', '?')} on {pub.get('when', '?')} ({pub.get('job', '')})")
            continue
        near = record.get("nearest")
        line = f"  {group} ({e.name}): built here, cache {state}"
        if record.get("refused"):
            line += f" (entry refused: {record['refused']})"
        if near:
            line += (f"; the nearest entry {near['key'][:12]} (published by "
                     f"{near.get('published', {}).get('by', '?')}) differs in "
                     f"{describe(near['differs'])}")
        out.append(line)
        differs = (near or {}).get("differs", {})
        for key in differs.get("spec", []):
            out.append(f"      {key}  <- {project_location(lp, e.name, group, key)}")
        sources = plan.source_of()
        for path in differs.get("data", []):
            local = path.replace("@results/", f"{plan.results}/", 1)
            source = sources.get(local)
            out.append(f"      data {source.uri if source else local}: its content differs")
    return ["", "team cache:", *out] if out else []


def _spec_changes(lp, c: ExperimentPlan, action: str) -> list[str]:
    """Each key of the action's spec that differs from what it was built from, old -> new,
    with the project.yaml line that sets it."""
    spec = c.specs[action]
    old_text = (lp.root / c.layout.built_record(action)).read_text()
    old = YAML(typ="safe", pure=True).load(old_text)
    out = []
    old_image, new_image = spec_image(old_text), spec_image(spec.text)
    if old_image != new_image:
        out.append(f"TAO image {old_image} -> {new_image}  <- "
                   f"{lp.smap.locate(('tao',), key='tao')}")
    flat_old, flat_new = _flat(old), _flat(spec.data)
    for key in changed_keys(old, spec.data):
        loc = project_location(lp, c.name, action, key)
        if key not in flat_old or key not in flat_new:  # an entry that appeared or went
            loc = entry_location(lp, c.name, key) or loc
        out.append(f"{key}: {flat_old.get(key, '(absent)')!r} -> "
                   f"{flat_new.get(key, '(absent)')!r}  <- {loc}")
    return out


def _flat(node, prefix: str = "") -> dict:
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: node}
