"""Container mounts come from the spec: inputs read-only, the results folder read-write."""

from __future__ import annotations

import os

import pytest
from taomake.compiler import compile_project, load_project
from taomake.compiler.plan import load_plan

from taomake.errors import RunError
from taomake.runners.mounts import job_mounts, spec_paths
from tests.helpers import make_project


def test_mounts_cover_every_spec_path_and_nothing_else(tmp_path):
    lp = load_project(make_project(tmp_path))
    load_plan(lp.path)  # what the build does before any job: specs, and links to local data
    for action, spec in compile_project(lp)["base"].specs.items():
        copy = tmp_path / "results/base" / action / ".taomake/job.yaml"
        mounts = job_mounts(spec.data, lp.root, "results/base", copy)
        writable = [m for m in mounts if not m.read_only]
        assert [m.source for m in writable] == [str((tmp_path / "results/base").resolve())]
        for raw in spec_paths(spec.data):
            path = os.path.normpath(lp.root / raw)
            assert any(path == m.source or path.startswith(m.source + "/")
                       for m in mounts), (action, raw)
        assert all(m.source == m.target for m in mounts)


def test_missing_input_outside_results_is_a_clear_error(tmp_path):
    spec = {"results_dir": "results/base", "evaluate": {"checkpoint": "elsewhere/model.pth"}}
    with pytest.raises(RunError, match="elsewhere/model.pth"):
        job_mounts(spec, tmp_path, "results/base", tmp_path / "results/base/x.yaml")
