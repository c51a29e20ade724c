"""Where the knowledge lives (issue 29): measured on git revisions of this repository.

    python benchmarks/structure.py [REV ...]     # default: the session's start and HEAD

For each revision, read from git (no checkout):
* README lines;
* functions over 60 lines in compiler/ and taomake/ (and the largest five);
* artifact file names written outside compiler/layout.py: string literals in compiler/,
  taomake/ and rules/ that name a file taomake or TAO writes (`metrics.json`, `curve.csv`,
  `model.onnx`, `status.json`, `built-*.yaml` ...);
* branches on an action's or a runner's name outside their tables: comparisons such as
  `action == "train"`, `name in ("train", "distill")`, `runner.name == "docker"`.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ACTION_NAMES = {"train", "distill", "evaluate", "inference", "export", "quantize",
                "quantized_evaluate", "quantized_inference", "quantized_export",
                "gen_trt_engine", "trt_evaluate", "trt_inference"}
RUNNER_NAMES = {"local", "docker", "apptainer", "pyxis"}
# what a file name of taomake's or TAO's output looks like in a string literal
ARTIFACT_RE = re.compile(
    r"^[\w{}.*-]*\.(json|jsonl|csv|pth|onnx|engine|yaml|txt|png|tsv|md|tex|ready|sif|sqsh)$")
NOT_ARTIFACTS = {"project.yaml", "config.yaml", "annotations.json", "requirements.txt",
                 "pyproject.toml", "spec.yaml", "x.yaml",
                 "modelopt.onnx"}  # a quantize backend's name, not a file
# files of the repository itself (docs, schemas), not of a build
REPO_FILE_RE = re.compile(r"(\.schema\.json|\.md)$")
TABLES = {"compiler/layout.py", "compiler/actions.py", "compiler/runners.py",
          "taomake/runners/registry.py"}


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True,
                          check=True).stdout


def files_at(rev: str) -> list[str]:
    return [f for f in git("ls-tree", "-r", "--name-only", rev).splitlines()
            if f.startswith(("compiler/", "taomake/", "rules/"))
            and f.endswith((".py", ".smk")) and "/tao_cpu/compat/" not in f]


def source(rev: str, path: str) -> str:
    return git("show", f"{rev}:{path}")


def long_functions(tree: ast.AST, path: str, limit: int = 60) -> list[tuple[int, str]]:
    return [(n.end_lineno - n.lineno + 1, f"{path}:{n.name}") for n in ast.walk(tree)
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
            and n.end_lineno - n.lineno + 1 > limit]


def _names(node: ast.AST) -> set[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return {e.value for e in node.elts if isinstance(e, ast.Constant)
                and isinstance(e.value, str)}
    return set()


def name_branches(tree: ast.AST) -> int:
    """Comparisons of something with an action's or runner's name (== / != / in)."""
    count = 0
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            for right in node.comparators:
                # `split.role == "train"` names a data split, not an action
                if _names(right) & (ACTION_NAMES | RUNNER_NAMES) and not isinstance(
                        node.left, ast.Constant) and not ast.unparse(
                        node.left).endswith("role"):
                    count += 1
    return count


def artifact_literals(text: str) -> list[str]:
    found = []
    for literal in re.findall(r"""(?<![\w])f?["']([^"'\n]{3,80})["']""", text):
        name = literal.rsplit("/", 1)[-1]
        if (ARTIFACT_RE.match(name) and name not in NOT_ARTIFACTS
                and not REPO_FILE_RE.search(name) and not name.startswith(".")):
            found.append(name)
    return found


def measure(rev: str) -> dict[str, object]:
    longest: list[tuple[int, str]] = []
    artifacts: list[tuple[str, str]] = []
    branches = 0
    for path in files_at(rev):
        text = source(rev, path)
        if path.endswith(".py"):
            tree = ast.parse(text)
            longest += long_functions(tree, path)
            if path not in TABLES:
                branches += name_branches(tree)
        if path not in TABLES:
            artifacts += [(path, name) for name in artifact_literals(text)]
    readme = source(rev, "README.md").count("\n")
    return {"rev": git("rev-parse", "--short", rev).strip(), "readme": readme,
            "long": sorted(longest, reverse=True), "artifacts": artifacts,
            "branches": branches}


def main(argv: list[str]) -> None:
    revs = argv or ["2db663c", "HEAD"]
    rows = [measure(rev) for rev in revs]
    print("| revision | README lines | functions > 60 lines | artifact names outside "
          "Layout | branches on action/runner names |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['rev']} | {r['readme']} | {len(r['long'])} | {len(r['artifacts'])} | "
              f"{r['branches']} |")
    for r in rows:
        print(f"\n{r['rev']}: largest functions: "
              + ", ".join(f"{name} ({n})" for n, name in r["long"][:5]))
        files = sorted({p for p, _ in r["artifacts"]})
        print(f"{r['rev']}: artifact names outside Layout in {len(files)} files: "
              + ", ".join(files))


if __name__ == "__main__":
    main(sys.argv[1:])
