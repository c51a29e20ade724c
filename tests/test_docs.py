"""README's project.yaml reference is generated from the model and must not drift."""

from taomake.docs import main


def test_readme_reference_is_current():
    assert main(["--check"]) == 0, "run `python -m taomake.docs`"
