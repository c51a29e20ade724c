"""Every action of the ACTIONS table has what it takes to be built: a spec template, a
generated schema, a rule that runs it, artifacts from Layout and a judge; and no code outside
the tables branches on an action's or a runner's name."""

from __future__ import annotations

import ast
import re

import pytest
from taomake.compiler.actions import ACTIONS, STEPS
from taomake.compiler.layout import Layout
from taomake.compiler.runners import RUNNERS

from taomake.judges import JUDGES
from tests.helpers import REPO

RULES = "".join(p.read_text() for p in sorted((REPO / "rules").glob("*.smk")))


def spec_of(action: str) -> dict:
    """A spec with what `produces` reads (the engine's path and type, quantize's backend)."""
    return {"gen_trt_engine": {"trt_engine": "results/e/gen_trt_engine/model.fp16.engine",
                               "tensorrt": {"data_type": "fp16"}},
            "quantize": {"backend": "torchao"}}


@pytest.mark.parametrize("name", list(ACTIONS))
def test_every_action_has_a_template_schema_rule_artifacts_and_judge(name):
    action = ACTIONS[name]
    assert (REPO / f"references/spec_template_{name}.yaml.j2").is_file()
    assert (REPO / f"schemas/{name}.schema.json").is_file()
    assert re.search(rf"\btaomake run {name} ", RULES), f"no rule runs `taomake run {name}`"
    produced = action.produces(Layout("results", "e"), spec_of(name))
    assert produced and all(p.startswith("results/e/") for p in produced), produced
    assert action.judged_as in JUDGES
    assert action.built_when.__name__  # a condition (or always)


def test_every_step_has_artifacts_and_needs_actions():
    for step in STEPS.values():
        assert set(step.needs) <= set(ACTIONS)
        assert step.produces(Layout("results", "e"))


def test_every_runner_has_a_module():
    from taomake.runners.registry import MODULES

    assert set(RUNNERS) == set(MODULES)


NAMES = set(ACTIONS) | set(STEPS) | set(RUNNERS)
TABLES = {"compiler/actions.py", "compiler/runners.py", "taomake/runners/registry.py"}


def name_branches() -> list[str]:
    """`x == "train"`, `x in ("train", "distill")`, `runner.name == "docker"` outside the
    tables: a fact of an action or runner that the table should own."""
    found = []
    for folder in ("compiler", "taomake"):
        for path in sorted((REPO / folder).rglob("*.py")):
            rel = str(path.relative_to(REPO))
            if rel in TABLES or "tao_cpu" in path.parts:
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if not isinstance(node, ast.Compare):
                    continue
                for op, right in zip(node.ops, node.comparators, strict=True):
                    values = {e.value for e in getattr(right, "elts", [right])
                              if isinstance(e, ast.Constant)}
                    left = ast.unparse(node.left)
                    if isinstance(op, (ast.Eq, ast.NotEq, ast.In, ast.NotIn)) and \
                            values & NAMES and not isinstance(node.left, ast.Constant) and \
                            not left.endswith("role"):  # a data split's role (train, val)
                        found.append(f"{rel}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_no_code_outside_the_tables_branches_on_an_action_or_runner_name():
    assert name_branches() == []
