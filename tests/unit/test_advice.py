"""`taomake status`'s "next:" lines: from what is built, what a user should do now."""

from __future__ import annotations

from taomake.compiler.plan import load_plan

from taomake.advice import advice
from tests.helpers import make_project


def curve(plan, scores: list[float]) -> None:
    from pathlib import Path

    path = Path(plan.root) / plan.experiments["base"].layout.curve("train")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("epoch,train_loss,val_mAP\n" + "".join(
        f"{i},1.0,{s}\n" for i, s in enumerate(scores)))


def kinds(plan, stale: int = 0) -> list[str]:
    return [a.kind for a in advice(plan, stale)]


def test_advice_from_the_curve_and_the_splits(tmp_path):
    plan = load_plan(make_project(tmp_path))
    assert kinds(plan) == []
    assert kinds(plan, stale=3) == ["build"]
    curve(plan, [0.1, 0.2, 0.25, 0.3, 0.35, 0.42, 0.47])
    assert kinds(plan) == ["still rising"]
    assert "raise train.epochs" in advice(plan, 0)[0].text
    curve(plan, [0.1, 0.3, 0.5, 0.5, 0.49, 0.5, 0.5, 0.5, 0.49])  # a plateau: enough epochs
    assert kinds(plan) == []
    curve(plan, [0.0, 0.01, 0.0, 0.02, 0.01, 0.01])
    assert kinds(plan) == ["learned little"]
    project = tmp_path / "project.yaml"
    text = project.read_text()
    start = text.index("  test:")
    end = text.index("  inference:")
    project.write_text(text[:start] + text[end:])
    assert "no test split" in kinds(load_plan(project))
