"""The docs stay true: the generated references are current (the project.yaml keys from the
model, the results layout from Layout), the module example is the Snakefile
tests/func/test_module.py runs, README stays a front door, and every link resolves."""

import re

from taomake.docs import main
from tests.helpers import REPO

DOCS = sorted((REPO / "docs").glob("*.md"))
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def test_generated_references_are_current():
    assert main(["--check"]) == 0, "run `python -m taomake.docs`"


def _examples(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_the_module_example_is_the_tested_snakefile():
    from tests.func.test_module import PLOT_SCRIPT, USER_SNAKEFILE

    assert _examples((REPO / "docs/module.md").read_text()) == [USER_SNAKEFILE, PLOT_SCRIPT]
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Use it as a Snakemake module", 1)[1].split("\n## ", 1)[0]
    assert _examples(section) == [USER_SNAKEFILE]


def test_readme_is_a_front_door():
    readme = (REPO / "README.md").read_text()
    assert readme.count("\n") <= 250
    for section in ("## Two commands", "## What the demo prints", "## Use it on your own data",
                    "## Use it as a Snakemake module", "## When a build is interrupted",
                    "## Share a cache with your team",
                    "## Read more"):
        assert section in readme, section
    linked = {m for m in LINK.findall(readme) if m.startswith("docs/") and m.endswith(".md")}
    assert {f"docs/{p.name}" for p in DOCS} <= linked, "a doc README does not point to"


def test_every_relative_link_resolves():
    broken = []
    for page in [REPO / "README.md", *DOCS]:
        for target in LINK.findall(page.read_text()):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            if not (page.parent / target).exists():
                broken.append(f"{page.relative_to(REPO)}: {target}")
    assert broken == []
