"""The cached build plan: reused only while nothing the compile read has changed."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from taomake.compiler.errors import ProjectError
from taomake.compiler.plan import load_plan

from tests.helpers import make_project
from tests.unit.test_tao_acceptance import VARIANTS, variant


def test_plan_cache_hit_imports_no_heavy_modules(tmp_path):
    project = make_project(tmp_path)
    load_plan(project)  # fills the cache
    code = ("import sys; from pathlib import Path; from taomake.compiler.plan import load_plan; "
            f"p = load_plan(Path({str(project)!r})); "
            "print(sorted(m for m in ('pydantic', 'jinja2', 'jsonschema') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_plan_follows_project_and_data_changes(tmp_path):
    project = make_project(tmp_path, copy_data=True)
    plan = load_plan(project)
    assert plan.experiments["base"].specs["export"].data["export"]["opset_version"] == 17
    project.write_text(project.read_text().replace("  opset: 17", "  opset: 18"))
    plan = load_plan(project)
    assert plan.experiments["base"].specs["export"].data["export"]["opset_version"] == 18
    spec = tmp_path / "results/base/specs/export.yaml"
    assert "opset_version: 18" in spec.read_text()
    # a data file the checks read changes: the cache must not hide the new problem
    ann = tmp_path / "data/shapes/val/annotations.json"
    doc = json.loads(ann.read_text())
    doc["annotations"][0]["category_id"] = 9
    ann.write_text(json.dumps(doc))
    os.utime(ann, ns=(1, 1))
    with pytest.raises(ProjectError, match="category ids not in dataset.classes"):
        load_plan(project)


def test_deleted_spec_is_rewritten_from_the_cache(tmp_path):
    project = make_project(tmp_path)
    load_plan(project)
    spec = tmp_path / "results/base/specs/train.yaml"
    text = spec.read_text()
    spec.unlink()
    load_plan(project)
    assert spec.read_text() == text


def test_a_spec_edited_by_hand_is_put_back_and_untouched_specs_are_not_read(tmp_path,
                                                                            monkeypatch):
    project = make_project(tmp_path)
    load_plan(project)
    load_plan(project)  # a cache hit
    spec = tmp_path / "results/base/specs/train.yaml"
    text = spec.read_text()
    edited = text.replace("num_epochs: 2", "num_epochs: 3")  # same size: only the time tells
    assert edited != text and len(edited) == len(text)
    spec.write_text(edited)
    read = []
    real_read = type(spec).read_text
    monkeypatch.setattr(type(spec), "read_text",
                        lambda self, *a, **k: read.append(self.name) or real_read(self, *a, **k))
    load_plan(project)
    assert spec.read_text() == text
    assert read.count("train.yaml") == 2  # the check, then the assertion above
    assert {"evaluate.yaml", "export.yaml", "inference.yaml"}.isdisjoint(read)


@pytest.mark.parametrize("name", VARIANTS)
def test_jobs_run_with_the_projects_own_settings_from_the_plan(tmp_path, name):
    """Jobs read hardware/tao from the cached plan (no compile): the same settings the
    project has, through a JSON round trip and a fresh process."""
    from taomake.compiler import load_project

    project = make_project(tmp_path, variant(name))
    load_plan(project)
    lp = load_project(project)
    cached = load_plan(project, write=False)
    for exp, e in lp.experiments.items():
        settings = cached.job_settings(exp)
        assert settings.hardware == e.project.hardware
        assert settings.tao == e.project.tao and settings.name == e.project.name
    # a sweep's trials share one settings entry
    assert len(cached.settings) <= len(cached.experiments)


EXPERIMENTS = """experiments:
  small: {model.dim_feedforward: 512}
  wide: {model.dim_feedforward: 2048}
  student:
    distill:
      teacher: {checkpoint: 'experiment:small'}
      bindings:
        - {student: srcs, teacher: srcs, criterion: IOU}
"""


def compiled_names(monkeypatch) -> list[str]:
    import taomake.compiler.compile as compile_module

    names: list[str] = []
    real = compile_module.compile_experiment

    def spy(lp, exp):
        names.append(exp.name)
        return real(lp, exp)

    monkeypatch.setattr(compile_module, "compile_experiment", spy)
    return names


@pytest.mark.parametrize("edit,recompiled", [
    (("# The tests' smoke project", "# The tests' smoke project, a comment edited"), []),
    (("  wide: {model.dim_feedforward: 2048}", "  wide: {model.dim_feedforward: 1024}"),
     ["wide"]),
    (("  small: {model.dim_feedforward: 512}", "  small: {model.dim_feedforward: 256}"),
     ["small", "student"]),  # the student's spec names its teacher's model
    (("  conf_threshold: 0.1", "  conf_threshold: 0.2"), ["small", "wide", "student"]),
])
def test_an_edit_recompiles_only_the_experiments_it_touches(tmp_path, monkeypatch, edit,
                                                            recompiled):
    project = make_project(tmp_path)
    project.write_text(project.read_text() + EXPERIMENTS)
    load_plan(project)
    names = compiled_names(monkeypatch)
    project.write_text(project.read_text().replace(*edit))
    plan = load_plan(project)
    assert sorted(names) == sorted(recompiled)
    # the same plan a compile from scratch makes
    (tmp_path / ".snakemake/.taomake-plan.json").unlink()
    fresh = load_plan(project)
    assert fresh == plan and spec_texts(fresh) == spec_texts(plan)


def spec_texts(plan) -> dict[str, str]:
    return {s.path: s.text for e in plan.experiments.values() for s in e.specs.values()}


def test_a_cached_parse_reads_no_spec_text_unless_a_spec_must_be_put_back(tmp_path,
                                                                         monkeypatch):
    """The specs' texts live beside the plan cache and are read only for a spec to write
    back; a texts file that is not the cache's own (removed, edited) is not trusted."""
    project = make_project(tmp_path)
    project.write_text(project.read_text() + EXPERIMENTS)
    first = spec_texts(load_plan(project))
    texts = tmp_path / ".snakemake/.taomake-plan-specs.json"
    assert json.loads(texts.read_text()) == first
    names = compiled_names(monkeypatch)
    texts.write_text("not the texts")  # a parse with every spec in place never opens it
    plan = load_plan(project)
    assert all(s._text is None for e in plan.experiments.values() for s in e.specs.values())
    path = plan.experiments["wide"].specs["evaluate"].path
    (tmp_path / path).unlink()  # put back from a compile: the texts file is not the cache's
    assert spec_texts(load_plan(project)) == first and (tmp_path / path).read_text() == first[path]
    assert names, "the damaged texts file was used"
    names.clear()
    texts.write_text(json.dumps(first, sort_keys=True))  # the cache's own again
    (tmp_path / path).write_text("edited by hand\n")
    assert spec_texts(load_plan(project)) == first and (tmp_path / path).read_text() == first[path]
    assert names == []
    # an edit with an untrusted texts file: every experiment compiled again, once
    texts.write_text("not the texts")
    project.write_text(project.read_text().replace("  wide: {model.dim_feedforward: 2048}",
                                                   "  wide: {model.dim_feedforward: 1024}"))
    edited = spec_texts(load_plan(project))
    assert sorted(names) == sorted(plan.experiments)
    assert {p: t for p, t in edited.items() if "/wide/" not in p} == \
        {p: t for p, t in first.items() if "/wide/" not in p}


def test_a_changed_data_file_recompiles_what_reads_it(tmp_path, monkeypatch):
    project = make_project(tmp_path, copy_data=True)
    project.write_text(project.read_text() + EXPERIMENTS)
    load_plan(project)
    names = compiled_names(monkeypatch)
    ann = tmp_path / "data/shapes/val/annotations.json"
    ann.write_text(ann.read_text() + "\n")
    load_plan(project)
    assert sorted(names) == ["small", "student", "wide"]
