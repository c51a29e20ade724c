"""Layout is closed: every file name taomake reads or writes in a build (its artifacts, TAO's
status.json, its records, the sweep's and the report's files) is named in
compiler/layout.py and nowhere else in compiler/, taomake/ or rules/."""

from __future__ import annotations

import fnmatch
import inspect
import re
from pathlib import Path

from taomake.compiler import layout as layout_module
from taomake.compiler.actions import ACTIONS
from taomake.compiler.layout import Layout, Shared

from tests.helpers import REPO

SAMPLE = {"action": "train", "source_action": "train", "name": "x", "rung": 0,
          "experiment": "e", "sweep": "s", "key": "k", "check": "c", "runtime": "r",
          "flavor": "pytorch", "backend": "torchao", "image_stem": "img", "kind": None,
          "precision": "fp16", "bmin": 1, "bopt": 2, "bmax": 4, "image": "nvcr.io/x:1",
          "profile": "1-2-4", "engine": "a/model.int8.b1.engine", "results_subdir": "train"}


def _call(function, owner):
    bound = getattr(owner, function.__name__)  # a static method takes no `self`
    args = [SAMPLE.get(p) for p in inspect.signature(bound).parameters]
    if None in args:
        return []
    try:
        out = bound(*args)
    except (KeyError, ValueError):
        return []
    return [out] if isinstance(out, str) else []


def vocabulary() -> set[str]:
    """The base names of every path Layout and Shared give, and of layout.py's constants."""
    names: set[str] = set()
    lay, shared = Layout("results", "e"), Shared("results")
    for owner in (lay, shared):
        for attr, value in vars(type(owner)).items():
            if attr.startswith("__"):
                continue
            if isinstance(value, property):
                out = getattr(owner, attr)
                names.update([out] if isinstance(out, str) else [])
            elif isinstance(value, staticmethod) or callable(value):
                names.update(_call(getattr(value, "__func__", value), owner))
    names.update(shared.report_tables())
    for action in ACTIONS:
        for fn in ("metrics", "inference_summary", "status", "tao_run", "provenance",
                   "built_record", "job_spec"):
            names.add(getattr(lay, fn)(action))
    for value in vars(layout_module).values():
        if isinstance(value, str) and "." in value and "/" not in value and len(value) < 40:
            names.add(value)
    return {Path(n).name for n in names if Path(n).suffix in EXTENSIONS}


# what a file of a build is named like (a literal with another suffix, like a module or a
# TAO key, is not one)
EXTENSIONS = {".json", ".jsonl", ".csv", ".pth", ".onnx", ".engine", ".yaml", ".txt", ".png",
              ".tsv", ".md", ".tex", ".ready", ".bin"}
# names a build's files share with other things: a user's COCO file (sample data), help
ELSEWHERE = {("taomake/sample_data.py", "annotations.json")}
LITERAL = re.compile(r"""(?<![\w])[rbf]?["']([^"'\n]{3,120})["']""")


def offenders() -> list[str]:
    """Literals outside layout.py that spell one of the vocabulary's names."""
    words = vocabulary()
    found = []
    for folder in ("compiler", "taomake", "rules"):
        for path in sorted((REPO / folder).rglob("*")):
            if path.suffix not in (".py", ".smk") or path.name == "layout.py" or \
                    "tao_cpu" in path.parts:
                continue
            for lineno, line in enumerate(path.read_text().splitlines(), 1):
                if line.lstrip().startswith("#"):
                    continue
                for literal in LITERAL.findall(line):
                    name = literal.rsplit("/", 1)[-1]
                    if " " in literal or (str(path.relative_to(REPO)), name) in ELSEWHERE:
                        continue  # a sentence (help text), or a name of something else
                    pattern = re.sub(r"\{[^}]*\}", "*", name)
                    if len(pattern.replace("*", "").split(".")[0]) < 3 or \
                            Path(pattern).suffix not in EXTENSIONS:
                        continue  # a glob, a suffix, a module: not a file's name
                    if any(fnmatch.fnmatchcase(word, pattern) for word in words):
                        found.append(f"{path.relative_to(REPO)}:{lineno}: {literal!r}")
    return found


def test_the_vocabulary_is_what_layout_names():
    words = vocabulary()
    assert {"metrics.json", "curve.csv", "status.json", "model.onnx", "run.json",
            "selection.json", "summary.json", "parity.json", "per_class.json", "best.json",
            "winner.json", "summary.md", "source.json", "staged.json", "built-train.yaml",
            ".lease"} <= words | {".lease"}, sorted(words)


def test_no_file_name_of_a_build_outside_layout():
    assert offenders() == []
