"""`taomake report` and the `report` rule: one table per project and the plots people look at.

Rows are experiments; seeds of one experiment are folded into mean ± std; a sweep appears as
its winning trial.  Every number is read from the files the build wrote (evaluate/metrics.json,
train/selection.json, benchmarks/train.tsv, export/model.onnx, export/parity.json,
trt_evaluate/metrics.json), so the report never disagrees with them.

Outputs (under `<results>/report/`): results.csv (one row per run, raw values), summary.csv,
summary.md and summary.tex (booktabs; mean ± std), curves.png (val_mAP and losses per epoch,
runs overlaid), accuracy_latency.png, and sweep_<experiment>.png per sweep.
"""

from __future__ import annotations

import csv
import io
import json
import math
import posixpath
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taomake.compiler.files import atomic_write
from taomake.compiler.layout import Layout, Shared
from taomake.compiler.plan import BuildPlan

from .tao_status import read_status, run_seconds

COLUMNS = [  # key, header, format
    ("test_mAP", "test mAP", "{:.4f}"),
    ("test_mAP50", "mAP50", "{:.4f}"),
    ("quantized_mAP50", "quantized mAP50", "{:.4f}"),  # the quantize: section's model
    ("epoch", "epoch", "{:.0f}"),
    ("train_minutes", "train min", "{:.1f}"),
    ("onnx_mb", "ONNX MB", "{:.1f}"),
    ("onnx_ms", "ONNX ms (p50)", "{:.1f}"),
    ("engine_ms", "engine ms", "{:.2f}"),
]


@dataclass
class Run:
    experiment: str  # the built experiment (a seed or sweep winner included)
    group: str  # report row
    seed: int | None
    values: dict[str, float | None] = field(default_factory=dict)
    curve: list[dict[str, float]] = field(default_factory=list)
    read: list[Path] = field(default_factory=list)  # the files its numbers come from
    cache: list[str] = field(default_factory=list)  # how the team cache served each TAO job


def _json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _curve(path: Path) -> list[dict[str, float]]:
    try:
        with path.open() as f:
            return [{k: float(v) if v not in ("", None) else math.nan for k, v in row.items()}
                    for row in csv.DictReader(f)]
    except OSError:
        return []


def collect(plan: BuildPlan) -> list[Run]:
    root = Path(plan.root)
    winners = {}
    for name in plan.sweeps:
        best = _json(root / Layout(plan.results, name).sweep_best)
        if best:
            winners[best["winner"]] = name
    runs = []
    for exp in plan.experiments.values():
        if exp.trial is not None and exp.name not in winners:
            continue
        lay, source = exp.layout, exp.source_action
        at = {name: root / path for name, path in (
            ("metrics", lay.metrics("evaluate")),
            ("quantized", lay.metrics("quantized_evaluate")),
            ("selection", lay.selection(source)),
            ("bench", lay.benchmark(source)),
            ("status", lay.status(source)),
            ("onnx", lay.onnx),
            ("parity", lay.parity),
            ("trt", lay.metrics("trt_evaluate")),
            ("curve", lay.curve(source)))}
        v: dict[str, float | None] = dict.fromkeys(k for k, _, _ in COLUMNS)
        metrics = _json(at["metrics"]) or {}
        v["test_mAP"] = metrics.get("test_mAP")
        v["test_mAP50"] = metrics.get("test_mAP50")
        v["quantized_mAP50"] = (_json(at["quantized"]) or {}).get("test_mAP50")
        v["epoch"] = (_json(at["selection"]) or {}).get("epoch")
        # every run of a resumed training (status.json); Snakemake's benchmark holds the last
        seconds = run_seconds(read_status(at["status"]))
        if seconds is None and at["bench"].exists():
            rows = list(csv.DictReader(at["bench"].open(), delimiter="\t"))
            seconds = float(rows[-1]["s"]) if rows else None
        v["train_minutes"] = seconds / 60 if seconds is not None else None
        v["onnx_mb"] = at["onnx"].stat().st_size / 1e6 if at["onnx"].exists() else None
        v["onnx_ms"] = (_json(at["parity"]) or {}).get("latency_ms_median")
        v["engine_ms"] = (_json(at["trt"]) or {}).get("latency_ms")
        group = winners.get(exp.name, exp.group or exp.name)
        curve = at["curve"]
        read = list(at.values())
        runs.append(Run(exp.name, group, exp.seed, v, _curve(curve),
                        [p for p in read if p.exists()], _cache_states(root, exp)))
    return runs


def _cache_states(root: Path, exp) -> list[str]:
    """Each TAO job's cache state from its provenance (taomake.cache): hit, published..."""
    out = []
    for action in exp.specs:
        record = (_json(root / exp.layout.provenance(action)) or {}).get("cache")
        if record and record.get("state"):
            out.append(record["state"])
    return out


CACHE_WORDS = {"hit": "from cache", "published": "published", "miss": "built here"}


def cache_cell(states: list[str]) -> str:
    """`4 from cache`, `3 from cache, 1 published`; "–" without a cache."""
    counts = {}
    for state in states:
        word = CACHE_WORDS.get(state, state)
        counts[word] = counts.get(word, 0) + 1
    return ", ".join(f"{n} {word}" for word, n in counts.items()) or "–"


def _mean_std(values: list[float]) -> tuple[float, float | None]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def summarize(runs: list[Run]) -> list[dict[str, Any]]:
    """One row per group: n runs, and (mean, std) per column (std None for one run)."""
    rows = []
    for group in dict.fromkeys(r.group for r in runs):
        members = [r for r in runs if r.group == group]
        row: dict[str, Any] = {"experiment": group, "runs": len(members),
                               "cache": cache_cell([s for r in members for s in r.cache])}
        for key, _, _ in COLUMNS:
            vals = [r.values[key] for r in members if r.values.get(key) is not None]
            row[key] = _mean_std(vals) if vals else None
        rows.append(row)
    return rows


def _cell(value: tuple[float, float | None] | None, fmt: str, pm: str) -> str:
    if value is None:
        return "–"
    mean, std = value
    return fmt.format(mean) + (f" {pm} " + fmt.format(std) if std is not None else "")


def markdown(summary: list[dict[str, Any]]) -> str:
    cached = any(row.get("cache", "–") != "–" for row in summary)  # a column with a cache
    head = ["experiment", "runs"] + [h for _, h, _ in COLUMNS] + (["cache"] if cached else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in summary:
        cells = [row["experiment"], str(row["runs"])] + [_cell(row[k], f, "±")
                                                          for k, _, f in COLUMNS]
        lines.append("| " + " | ".join(cells + ([row["cache"]] if cached else [])) + " |")
    return "\n".join(lines) + "\n"


def data_markdown(plan: BuildPlan) -> str:
    """What the data looked like to TAO (the data checks' summaries), one row per split."""
    root, shared = Path(plan.root), Shared(plan.results)
    rows = []
    for key in dict.fromkeys(k for e in plan.experiments.values() for k in e.checks.values()):
        for s in (_json(root / shared.data_check(key)) or {}).get("summary", []):
            px = s.get("box_px_p5_p50_p95")
            rows.append(f"| {s['split']} | {s['images']} | {s.get('boxes', '–')} | "
                        f"{s.get('without_boxes', '–')} | "
                        + (", ".join(f"{m} {n}" for m, n in s.get("modes", {}).items()) or "–")
                        + " | " + ("/".join(f"{v:.0f}" for v in px) if px else "–") + " |")
    if not rows:
        return ""
    return ("\n| split | images | boxes | without boxes | modes | box px at train_size "
            "(p5/p50/p95) |\n|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n")


def latex(summary: list[dict[str, Any]], project: str) -> str:
    def esc(s: str) -> str:
        return s.replace("\\", r"\textbackslash{}").replace("_", r"\_").replace("%", r"\%") \
            .replace("&", r"\&").replace("#", r"\#")

    head = ["experiment", "runs"] + [h for _, h, _ in COLUMNS]
    out = [r"\begin{table}[t]", r"\centering", r"\begin{tabular}{l" + "r" * (len(head) - 1)
           + "}", r"\toprule", " & ".join(esc(h) for h in head) + r" \\", r"\midrule"]
    for row in summary:
        cells = [esc(row["experiment"]), str(row["runs"])] + [
            _cell(row[k], f, r"$\pm$").replace("–", "--") for k, _, f in COLUMNS]
        out.append(" & ".join(cells) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}",
            rf"\caption{{{esc(project)}: test mAP and cost per experiment (mean $\pm$ std over "
            r"seeds).}}", r"\end{table}"]
    return "\n".join(out) + "\n"


def _csv(rows: list[dict[str, Any]], header: list[str]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=header, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: "" if r.get(k) is None else r[k] for k in header})
    return buf.getvalue()


def _png(fig, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    atomic_write(path, buf.getvalue())


def plot_curves(runs: list[Run], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 3, figsize=(15, 4), layout="constrained")
    for r in runs:
        if not r.curve:
            continue
        epochs = [row["epoch"] for row in r.curve]
        for ax, key in zip(axes, ("val_mAP", "train_loss", "val_loss"), strict=True):
            line, = ax.plot(epochs, [row.get(key, math.nan) for row in r.curve], marker="o",
                            markersize=3, label=r.experiment)
        chosen = r.values.get("epoch")
        picked = [row for row in r.curve if row["epoch"] == chosen]
        if picked:  # the checkpoint that was evaluated and exported
            axes[0].plot([chosen], [picked[0].get("val_mAP", math.nan)], marker="*",
                         markersize=14, color=line.get_color(), linestyle="none")
    for ax, title in zip(axes, ("validation mAP", "training loss", "validation loss"),
                         strict=True):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, title="★ selected epoch", title_fontsize=8)
    _png(fig, path)
    plt.close(fig)


def plot_accuracy_latency(summary: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for row in summary:
        if row["test_mAP"] is None or row["onnx_ms"] is None:
            continue
        (x, xs), (y, ys) = row["onnx_ms"], row["test_mAP"]
        ax.errorbar(x, y, xerr=xs or 0, yerr=ys or 0, fmt="o", capsize=3)
        ax.annotate(row["experiment"], (x, y), textcoords="offset points", xytext=(5, 5))
    ax.set_xlabel("ONNX Runtime latency, median ms (batch 1, this machine)")
    ax.set_ylabel("test mAP")
    ax.grid(alpha=0.3)
    _png(fig, path)
    plt.close(fig)


def plot_sweep(best: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    params = sorted({k for t in best["trials"] for k in t["values"]})
    fig, axes = plt.subplots(1, max(1, len(params)), figsize=(5 * max(1, len(params)), 4),
                             squeeze=False, layout="constrained")
    for ax, key in zip(axes[0], params, strict=False):
        xs = [t["values"][key] for t in best["trials"]]
        ys = [t["score"] for t in best["trials"]]
        ax.scatter(xs, ys)
        for t, x, y in zip(best["trials"], xs, ys, strict=True):
            ax.annotate(t["trial"].rsplit(".", 1)[-1], (x, y), fontsize=7,
                        textcoords="offset points", xytext=(3, 3))
        w = best["values"][key]
        ax.scatter([w], [best["score"]], marker="*", s=200, color="red", label="winner")
        if key.endswith(("lr", "lr_backbone", "weight_decay")) and min(xs) > 0:
            ax.set_xscale("log")
        ax.set_xlabel(key)
        ax.set_ylabel(best["metric"])
        ax.grid(alpha=0.3)
    axes[0][0].legend()
    fig.suptitle(f"sweep {best['sweep']}: {len(best['trials'])} trials ({best['method']})")
    _png(fig, path)
    plt.close(fig)


def plot_rungs(decisions: list[dict[str, Any]], path: Path) -> None:
    """Successive halving: each trial's score per rung (epochs), promoted ones continuing."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(6, 4))
    trials = dict.fromkeys(t for d in decisions for t in d["scores"])
    for trial in trials:
        pts = [(d["epochs"], d["scores"][trial]) for d in decisions if trial in d["scores"]]
        ax.plot([x for x, _ in pts], [y for _, y in pts], marker="o",
                label=trial.rsplit(".", 1)[-1])
    ax.set_xlabel("epochs (rung)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(decisions[0]["metric"])
    ax.set_title(f"sweep {decisions[0]['sweep']}: successive halving")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    _png(fig, path)
    plt.close(fig)


def write_report(plan: BuildPlan,
                 out_dir: Path | None = None) -> tuple[dict[str, Path], list[Path]]:
    """Write every report file; returns them (by their place under the project: Shared),
    and the files they were made from."""
    root = Path(plan.root)
    shared = Shared(plan.results)

    def at(rel: str) -> Path:  # a report file, in `out_dir` when given
        return out_dir / posixpath.basename(rel) if out_dir else root / rel

    runs = collect(plan)
    read = [p for r in runs for p in r.read]
    summary = summarize(runs)
    keys = [k for k, _, _ in COLUMNS]
    files = {rel: at(rel) for rel in (*shared.report_tables(), shared.report_curves,
                                      shared.report_accuracy_latency)}
    atomic_write(files[shared.report_results], _csv(
        [{"experiment": r.experiment, "group": r.group, "seed": r.seed, **r.values}
         for r in runs], ["experiment", "group", "seed", *keys]))
    flat = []
    for row in summary:
        f = {"experiment": row["experiment"], "runs": row["runs"]}
        for k in keys:
            f[f"{k}_mean"] = row[k][0] if row[k] else None
            f[f"{k}_std"] = row[k][1] if row[k] else None
        flat.append(f)
    atomic_write(files[shared.report_summary_csv], _csv(flat, ["experiment", "runs"] + [
        f"{k}_{s}" for k in keys for s in ("mean", "std")]))
    atomic_write(files[shared.report_summary], markdown(summary) + data_markdown(plan))
    atomic_write(files[shared.report_latex], latex(summary, plan.name or "project"))
    plot_curves(runs, files[shared.report_curves])
    plot_accuracy_latency(summary, files[shared.report_accuracy_latency])
    for name in plan.sweeps:
        best_file = root / Layout(plan.results, name).sweep_best
        best = _json(best_file)
        if best:
            read.append(best_file)
            files[shared.sweep_plot(name)] = at(shared.sweep_plot(name))
            plot_sweep(best, files[shared.sweep_plot(name)])
        decisions = [_json(root / Layout(plan.results, name).sweep_rung(r))
                     for r in range(max(0, len(plan.sweeps[name]["rungs"]) - 1))]
        if decisions and all(decisions):
            files[shared.rungs_plot(name)] = at(shared.rungs_plot(name))
            plot_rungs(decisions, files[shared.rungs_plot(name)])
    return files, read
