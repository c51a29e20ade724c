"""`taomake status` and `taomake explain`: what is built, what is stale, and why.

Staleness comes from Snakemake itself (`--summary`, dry-run reasons), so it can never disagree
with what `snakemake` would do; taomake adds the metrics and, for a changed spec, the
project.yaml lines whose edit changed it (against the spec the artifact was last built from).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ruamel.yaml import YAML

from taomake.compiler import load_project
from taomake.compiler.actions import ACTIONS, DERIVED_FROM
from taomake.compiler.checks import entry_location, project_location
from taomake.compiler.errors import UsageError
from taomake.compiler.layout import Shared
from taomake.compiler.package_data import snakefile
from taomake.compiler.plan import BuildPlan, load_plan
from taomake.compiler.writer import changed_keys


def _snakemake(root: Path, project_file: str, *args: str, read_only: bool = False) -> str:
    config = [f"project={root / project_file}"] + (["taomake_read_only=1"] if read_only else [])
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(snakefile()), "--config", *config, *args],
        cwd=root, capture_output=True, text=True)
    if proc.returncode != 0:
        raise UsageError("snakemake could not plan the build:\n" + proc.stderr[-2000:])
    return proc.stdout


@dataclass
class Row:
    experiment: str
    artifact: str
    state: str
    detail: str


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _detail(root: Path, path: str) -> str:
    p = root / path
    if not p.exists():
        return ""
    if path.endswith("model.pth"):
        sel = _json(p.parent / "selection.json")
        value = f" {sel.get('metric')}={sel['value']:.4f}" if sel.get("value") is not None else ""
        return f"epoch {sel.get('epoch')} ({sel.get('policy')}){value}"
    if path.endswith("metrics.json"):
        m = _json(p)
        return ", ".join(f"{k}={m[k]:.4f}" for k in ("test_mAP", "test_mAP50") if k in m)
    if path.endswith("per_class.json"):
        t = _json(p)
        sides = [(label, t.get(key)) for label, key in (("PyTorch", "pytorch"), ("ONNX", "onnx"))
                 if t.get(key)]
        if not sides:
            return ""
        label, side = sides[0]
        cells = ", ".join(f"{name} {c['AP50']:.2f}"
                          for name, c in sorted(side.items(), key=lambda kv: kv[1]["id"]))
        return f"AP50 per class ({label}): {cells}; grid: {t.get('grid', '')}"
    if path.endswith("summary.json"):
        s = _json(p)
        return f"{s.get('detections', 0)} detections on {s.get('images', 0)} images"
    if path.endswith(".onnx"):
        parity = _json(p.parent / "parity.json")
        verdict = "ok" if parity.get("ok") else "FAILED"
        checked = (f", ONNX Runtime: mAP gap {parity['gap']:.4f} ({verdict}), "
                   f"{parity['latency_ms_median']:.1f} ms median"
                   if parity.get("gap") is not None else "")
        return f"{p.stat().st_size / 1e6:.1f} MB{checked}"
    if path.endswith((".engine", ".pth")):
        return f"{p.stat().st_size / 1e6:.1f} MB"
    if path.endswith("curve.csv"):  # a sweep trial
        import csv

        rows = list(csv.DictReader(p.open()))
        scores = [float(r["val_mAP"]) for r in rows if r.get("val_mAP") not in (None, "")]
        return f"{len(rows)} epochs" + (f", best val_mAP={max(scores):.4f}" if scores else "")
    return ""


def _changed_specs(plan: BuildPlan) -> dict[str, set[str]]:
    """Per experiment, the actions whose spec, as project.yaml says now, differs from the
    one their artifacts were built from (the job's built record; never built: the spec on
    disk).  Neither mtimes nor the specs on disk decide: status writes no spec, and a spec
    rewritten while a job ran is not what that job built from."""
    root = Path(plan.root)
    changed: dict[str, set[str]] = {}
    for name, e in plan.experiments.items():
        for action, spec in e.specs.items():
            for record in (e.layout.built_record(action), spec.path):
                try:
                    built = (root / record).read_text(encoding="utf-8")
                    break
                except FileNotFoundError:
                    built = None
            if built != spec.text:
                changed.setdefault(name, set()).add(action)
    return changed


def status_rows(plan: BuildPlan) -> list[Row]:
    """Each artifact's state, from Snakemake's `--summary` of the files as they are (read
    only: no spec or data stamp is written, no data source contacted; data sources are
    judged by their last recorded identity) and the specs project.yaml would write now."""
    root = Path(plan.root)
    # --mode subprocess: Snakemake writes no log file of its own (status writes nothing)
    summary = _snakemake(root, plan.project_file, "--summary", "--mode", "subprocess",
                         read_only=True)
    changed = _changed_specs(plan)
    todo: dict[str, tuple[str, str]] = {}
    for line in summary.splitlines()[1:]:
        cols = line.split("\t")
        if len(cols) >= 6:
            todo[cols[0]] = (cols[4], cols[5])
    rows = []
    for name, e in plan.experiments.items():
        edited = changed.get(name, set())
        for action, paths in e.artifacts().items():
            path = paths[0]
            status, pending = todo.get(path, ("missing", "update pending"))
            # a changed source (train/distill) spec makes everything after it stale too
            upstream = {action, e.source_action, *DERIVED_FROM.get(action, ())}
            spec_changed = bool(edited & upstream)
            if status == "missing":
                state = "missing"
            elif spec_changed:
                state = "stale (spec changed)"
            else:
                state = "up to date" if pending == "no update" else f"stale ({status})"
            rows.append(Row(name, path, state, _detail(root, path)))
    return rows


def print_status(project: Path) -> None:
    plan = load_plan(project, write=False)
    rows = status_rows(plan)
    width = max(len(r.artifact) for r in rows)
    print(f"project {plan.name} ({plan.project_file}); results under "
          f"{Path(plan.root) / plan.results}")
    for exp in dict.fromkeys(r.experiment for r in rows):
        print(f"\nexperiment {exp}")
        for r in (r for r in rows if r.experiment == exp):
            print(f"  {r.artifact:{width}}  {r.state:12}  {r.detail}")
    report = Path(plan.root) / Shared(plan.results).report_dir
    shown = [str(p.relative_to(plan.root)) for p in sorted(report.glob("*.png"))]
    if shown:
        print("\nplots: " + ", ".join(shown))


# --------------------------------------------------------------------------- explain


_JOB = re.compile(r"^rule (\w+):$")


def _dry_run_jobs(lp, target: str) -> list[dict[str, str]]:
    out = _snakemake(lp.root, lp.path.name, "-n", target)
    jobs: list[dict[str, str]] = []
    for line in out.splitlines():
        m = _JOB.match(line.strip())
        if m:
            jobs.append({"rule": m.group(1)})
        elif jobs and ":" in line and line.startswith("    "):
            key, _, value = line.strip().partition(": ")
            jobs[-1][key] = value
    return [j for j in jobs if j["rule"] != "all"]


def explain(project: Path, target: str) -> list[str]:
    compiled = load_plan(project).experiments
    lp = load_project(project)  # positions, for the project.yaml lines
    jobs = _dry_run_jobs(lp, target)
    if not jobs:
        return [f"{target} is up to date: nothing would run"]
    lines = [f"{target} is stale; snakemake would run {len(jobs)} job(s):"]
    for job in jobs:
        rule = job["rule"]
        exp = (re.search(r"exp=([^,\s]+)", job.get("wildcards", "")) or [None, None])[1]
        lines.append(f"  {rule}" + (f" ({exp})" if exp else "") + f": {job.get('reason', '')}")
        if rule in ACTIONS and exp in compiled and rule in compiled[exp].specs:
            lines += [f"      {d}" for d in _spec_changes(lp, compiled[exp], rule)]
    return lines


def _spec_changes(lp, c, action: str) -> list[str]:
    spec = c.specs[action]
    built = lp.root / c.layout.built_record(action)
    if not built.exists():
        return ["never built successfully with taomake"]
    old_text = built.read_text()
    if old_text == spec.text:
        return ["its spec is unchanged since the last build (an input it consumes changed)"]
    old = YAML(typ="safe", pure=True).load(old_text)
    out = []
    old_image = next((ln for ln in old_text.splitlines() if ln.startswith("# tao image:")), "")
    new_image = next((ln for ln in spec.text.splitlines() if ln.startswith("# tao image:")), "")
    if old_image != new_image:
        loc = lp.smap.locate(("tao",), key="tao")
        out.append(f"TAO image {old_image[13:]} -> {new_image[13:]}  <- {loc}")
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
