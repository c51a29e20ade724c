"""The code and the workflow pass their linters (README: `make lint`), and no module imports a
top-level `compiler` (installed, the compiler is `taomake.compiler`; test_installed.py).

One Snakemake lint is accepted, for every rule: "Specify a conda environment or container".
taomake's rules run the `taomake` command of the environment Snakemake itself runs in
(rules/common.smk puts it first on PATH); a conda environment file for them could not be
created on this machine (no conda, no conda-forge), and one that never ran would be a claim
without proof, so there is none.  Any other lint fails this test."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.helpers import REPO

ACCEPTED = "Specify a conda environment or container for each rule."


def test_ruff_is_clean():
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "compiler", "taomake",
                           "tests", "benchmarks"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:]


def test_snakemake_lint_finds_nothing_else():
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--lint"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    titles = re.findall(r"^\s+\* (.+?):?$", out, flags=re.M)
    blocks = re.findall(r"^Lints for (rule \w+|snakefile .+?)[ :]", out, flags=re.M)
    assert blocks, out[-2000:]  # the lints were read (the format did not change)
    assert all(b.startswith("rule ") for b in blocks), blocks
    assert set(titles) == {ACCEPTED}, out[-3000:]
    assert len(titles) == len(blocks)


def test_no_module_imports_a_top_level_compiler():
    pattern = re.compile(r"^\s*(from|import)\s+compiler\b", flags=re.M)
    offenders = [str(path.relative_to(REPO)) for pattern_glob in
                 ("compiler/**/*.py", "taomake/**/*.py", "tests/**/*.py", "benchmarks/**/*.py",
                  "rules/*.smk", "Snakefile", "scripts/**/*.py")
                 for path in REPO.glob(pattern_glob) if pattern.search(path.read_text())]
    assert offenders == []
    assert Path(REPO / "compiler" / "__init__.py").is_file()


def _imports(path: Path, package: str) -> list[tuple[str, list[str], bool]]:
    """(imported module, imported names, at module level) of each import in `path`."""
    import ast

    tree = ast.parse(path.read_text())
    top = set(map(id, tree.body))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the file's package
                base = package.split(".")
                if path.name != "__init__.py" or node.level > 1:
                    base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            out.append((module, [a.name for a in node.names], id(node) in top))
        elif isinstance(node, ast.Import):
            out += [(a.name, [], id(node) in top) for a in node.names]
    return out


def _modules() -> dict[str, Path]:
    found = {}
    for root, name in ((REPO / "compiler", "taomake.compiler"), (REPO / "taomake", "taomake")):
        for path in root.rglob("*.py"):
            if "tao_cpu/compat" in str(path) or (root.name == "taomake" and
                                                 path.is_relative_to(REPO / "compiler")):
                continue
            rel = path.relative_to(root).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            found[".".join([name, *parts])] = path
    return found


def test_no_import_cycles_and_no_private_names_across_modules():
    modules = _modules()
    graph: dict[str, set[str]] = {}
    private = []
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for target, names, at_top in _imports(path, package):
            for name in names:
                full = f"{target}.{name}"
                if name.startswith("_") and not name.startswith("__") and full not in modules \
                        and target != module:
                    private.append(f"{module} imports {name} from {target}")
            if at_top:
                deps = {f"{target}.{n}" for n in names if f"{target}.{n}" in modules}
                deps |= {target} if target in modules else set()
                graph.setdefault(module, set()).update(deps - {module})
    assert private == []
    # module-level cycles (lazy imports inside functions are how a module breaks one)
    cycles = []

    def visit(node, stack, done):
        for dep in sorted(graph.get(node, ())):
            if dep in stack:
                cycles.append(stack[stack.index(dep):] + [dep])
            elif dep not in done:
                visit(dep, stack + [dep], done)
        done.add(node)

    done: set[str] = set()
    for module in sorted(graph):
        if module not in done:
            visit(module, [module], done)
    # a package's __init__ importing its own submodules is not a cycle of concern
    cycles = [c for c in cycles if not any(c[i + 1].startswith(c[i] + ".") or
                                           c[i].startswith(c[i + 1] + ".")
                                           for i in range(len(c) - 1))]
    assert cycles == []


def test_snakemake_lint_writes_nothing_and_reaches_no_data_source(tmp_path):
    """A new project whose data is in S3, with the S3 endpoint closed: `--lint` still passes
    (no request was made) and leaves the folder as it was (no specs, stamps or plan cache)."""
    from tests.func.test_data_s3 import s3_project_text
    from tests.helpers import make_project

    folder = tmp_path / "proj"
    make_project(folder, s3_project_text("no-such-bucket"))
    before = sorted(p.relative_to(folder) for p in folder.rglob("*"))
    env = {**__import__("os").environ, "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9",
           "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y"}
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"),
                           "--lint"], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=300)
    assert "Lints for rule" in proc.stdout + proc.stderr, proc.stderr[-2000:]
    assert "error" not in proc.stderr.lower(), proc.stderr[-2000:]
    after = sorted(p.relative_to(folder) for p in folder.rglob("*")
                   if ".snakemake" not in p.parts or p.name.endswith(".json"))
    assert after == before
    assert not (folder / "results").exists()
    # the same project with a dry run does contact the (closed) endpoint: the check can fail
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"),
                           "-n"], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode != 0 and "127.0.0.1:9" in proc.stderr, proc.stderr[-2000:]


def test_the_suite_starts_its_costliest_files_first():
    from types import SimpleNamespace

    from tests.conftest import costliest_files_first

    def item(path, *marks, fixtures=()):
        return SimpleNamespace(fspath=path, name=f"{path}{marks}", fixturenames=fixtures,
                               iter_markers=lambda: [SimpleNamespace(name=m) for m in marks])

    items = [item("a", "slow"), item("a"), item("b", "tao"), item("b"), item("c", "slurm"),
             item("c", "docker"), item("d")]
    order = [i.name for i in costliest_files_first(items)]
    # b: 4 (a real-TAO test), c: 2 + 2 (a tie: file order), a: 1, d: 0; tests keep their order
    assert order == [i.name for i in (items[2], items[3], items[4], items[5], items[0],
                                      items[1], items[6])]
    # files waiting for the shared demo build: the costliest (L) builds it first; the others
    # (Q, K) follow the last file that needs a service (S), before the files that need none
    shared = ("learned_demo",)
    items = [item("s", "tao"), item("a", "slow"), item("K", "tao", fixtures=shared),
             item("L", "tao", fixtures=shared), item("L", "tao", fixtures=shared),
             item("Q", "tao", fixtures=shared), item("Q", "slow", fixtures=shared),
             item("x", "slurm"), item("x", "docker"), item("x", "tao")]
    assert [i.fspath for i in costliest_files_first(items)] == list("LLxxxsQQKa")  # L, x: a tie
