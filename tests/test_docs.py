"""README's project.yaml reference is generated from the model and must not drift; the module
example README shows is the Snakefile tests/test_module.py runs."""

import re

from taomake.docs import main
from tests.helpers import REPO


def test_readme_reference_is_current():
    assert main(["--check"]) == 0, "run `python -m taomake.docs`"


def test_readme_module_example_is_the_tested_snakefile():
    from tests.test_module import PLOT_SCRIPT, USER_SNAKEFILE

    readme = (REPO / "README.md").read_text()
    section = readme.split("### As a Snakemake module of your paper pipeline", 1)[1]
    examples = re.findall(r"```python\n(.*?)```", section.split("\n## ", 1)[0], flags=re.S)
    assert examples == [USER_SNAKEFILE, PLOT_SCRIPT]
