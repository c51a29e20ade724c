"""The compiler: derived values, per-action projection, determinism, location independence."""

from __future__ import annotations

import os
import shutil
import time

import pytest
from taomake.compiler import compile_project, load_project, load_project_text, write_experiment
from taomake.compiler.actions import ACTIONS
from taomake.compiler.compile import classmap_lines

from taomake.cli import main as cli
from tests.helpers import REPO, SMOKE_PROJECT, make_project

DEMO = SMOKE_PROJECT.read_text()
GPU = DEMO.replace("  gpus_per_node: 0             # CPU: TAO runs in the venv made by `taomake "
                   "setup tao-cpu`", "  gpus_per_node: 2").replace("    kind: local",
                                                                    "    kind: docker")


def compiled(text: str, tmp_path, exp: str = "base"):
    project = make_project(tmp_path, text)
    return compile_project(load_project(project))[exp]


def specs_of(text: str, tmp_path) -> dict[str, str]:
    return {a: s.text for a, s in compiled(text, tmp_path).specs.items()}


# --------------------------------------------------------------------------- derived values


def test_demo_derived_values(tmp_path):
    c = compiled(DEMO, tmp_path)
    assert set(c.specs) == {"train", "evaluate", "inference", "export"}
    assert set(c.skipped) >= {"gen_trt_engine", "distill", "quantize"}
    train = c.specs["train"].data
    assert train["dataset"]["num_classes"] == 5  # ids 1, 3, 4 -> max + 1
    assert train["wandb"]["enable"] is False
    assert train["model"]["feat_channels"] == [64, 64, 64]
    assert train["train"]["num_gpus"] == 1 and train["train"]["gpu_ids"] == [0]
    assert train["results_dir"] == "results/base"
    export = c.specs["export"].data["export"]
    assert export["gpu_id"] == -1 and export["on_cpu"] is True
    assert [export["input_height"], export["input_width"]] == [128, 128]
    assert export["checkpoint"] == "results/base/train/model.pth"
    assert export["onnx_file"] == "results/base/export/model.onnx"
    inf = c.specs["inference"].data
    # a link to data/shapes/infer/images, named by its place in the project
    assert inf["dataset"]["infer_data_sources"]["image_dir"] == [
        "results/_data/inference-images/images"]
    assert set(inf["inference"]["color_map"]) == {"circle", "triangle", "square"}


def test_specs_read_as_ruamel_reads_yaml_1_2(tmp_path):
    """The compiler reads each rendered spec with a resolver fixed at YAML 1.2 (faster);
    every spec of a project with every action, and scalars YAML 1.1 and 1.2 read apart,
    come out as ruamel's default safe loader reads them."""
    from ruamel.yaml import YAML
    from taomake.compiler.compile import spec_reader

    default = YAML(typ="safe")
    texts = [s.text for s in compiled(GPU, tmp_path).specs.values()]
    texts.append("a: yes\nb: 010\nc: 1e-05\nd: 0o10\ne: .inf\nf: ~\ng: 0x1F\nh: '1.0'\n"
                 "i: 1:20\nj: [1, 2.5, true, False, NULL, -.5, +1, 1.5e+3, on, 2001-12-14]\n")
    assert len(texts) >= 8  # 7 actions (deploy included) and the scalars
    for text in texts:
        assert spec_reader().load(text) == default.load(text), text


def test_classmaps_offset_by_one_line():
    classes = {1: "circle", 3: "triangle", 4: "square"}
    torch_lines = classmap_lines(classes, deploy=False)
    deploy_lines = classmap_lines(classes, deploy=True)
    assert torch_lines[1] == "circle" and torch_lines[3] == "triangle"
    assert deploy_lines[1:] == torch_lines  # deploy line k is label k-1
    assert len(set(deploy_lines)) == len(deploy_lines)  # deploy uses names as dict keys


def test_gpu_project_has_deploy_chain(tmp_path):
    c = compiled(GPU, tmp_path)
    assert {"gen_trt_engine", "trt_evaluate", "trt_inference"} <= set(c.specs)
    train = c.specs["train"].data["train"]
    assert train["num_gpus"] == 2 and train["gpu_ids"] == [0, 1] and train["num_nodes"] == 1
    assert c.specs["export"].data["export"]["gpu_id"] == 0
    trt_eval = c.specs["trt_evaluate"].data
    assert trt_eval["dataset"]["eval_class_ids"] == [1, 3, 4]
    assert trt_eval["evaluate"]["trt_engine"] == c.specs["gen_trt_engine"].data[
        "gen_trt_engine"]["trt_engine"]
    trt_inf = c.specs["trt_inference"].data["dataset"]["infer_data_sources"]
    assert trt_inf["classmap"].endswith("classmap_deploy.txt")
    assert isinstance(trt_inf["image_dir"], list)


def test_specs_hold_only_their_sections(tmp_path):
    c = compiled(GPU, tmp_path)
    for action, spec in c.specs.items():
        assert set(spec.data) <= set(ACTIONS[action].sections), action
    assert "test_data_sources" not in c.specs["train"].data["dataset"]
    assert "train_data_sources" not in c.specs["evaluate"].data["dataset"]


# --------------------------------------------------------------------------- projection


@pytest.mark.parametrize("old,new,changed", [
    ("  conf_threshold: 0.1", "  conf_threshold: 0.3", {"inference"}),
    ("  opset: 17", "  opset: 18", {"export"}),
    ("data/shapes/test/annotations.json", "data/shapes/val/annotations.json", {"evaluate"}),
    ("  epochs: 2", "  epochs: 4", {"train"}),
    ("  hidden_dim: 64", "  hidden_dim: 128", {"train", "evaluate", "inference", "export"}),
    ("    3: triangle", "    3: tri", {"inference"}),
    ("    kind: local", "    kind: docker", set()),
    ("# The tests' smoke project", "# a different comment", set()),
])
def test_edit_changes_only_its_specs(tmp_path, old, new, changed):
    assert DEMO.count(old) == 1
    before = specs_of(DEMO, tmp_path / "a")
    after = specs_of(DEMO.replace(old, new), tmp_path / "b")
    assert {a for a in before if before[a] != after.get(a)} == changed


def test_tao_image_changes_every_spec(tmp_path):
    before = specs_of(DEMO, tmp_path / "a")
    after = specs_of(DEMO.replace('version: "6.26.3"', 'version: "6.27.0"'), tmp_path / "b")
    assert all(before[a] != after[a] for a in before)


# --------------------------------------------------------------------------- writing


def test_compile_twice_is_byte_identical_and_keeps_mtimes(tmp_path):
    project = make_project(tmp_path)
    assert cli(["compile", "-p", str(project)]) == 0
    files = sorted((tmp_path / "results").rglob("*"))
    snap = {f: (f.read_bytes(), f.stat().st_mtime_ns) for f in files if f.is_file()}
    assert any(f.name == "train.yaml" for f in snap)
    time.sleep(0.01)
    assert cli(["compile", "-p", str(project)]) == 0
    again = {f: (f.read_bytes(), f.stat().st_mtime_ns) for f in snap}
    assert again == snap


def test_spec_files_end_in_yaml_and_say_where_from(tmp_path):
    c = compiled(DEMO, tmp_path)
    for spec in c.specs.values():
        assert spec.path.endswith(".yaml")
        assert spec.text.startswith("# TAO RT-DETR")
        assert f"body sha256: {spec.sha256}" in spec.text
        assert "nvcr.io/nvidia/tao/tao-toolkit:6.26.3-" in spec.text


def test_moving_the_project_keeps_specs(tmp_path):
    project = make_project(tmp_path / "here", copy_data=True)
    assert cli(["compile", "-p", str(project)]) == 0
    shutil.move(tmp_path / "here", tmp_path / "there")
    moved = tmp_path / "there"
    before = {f: f.stat().st_mtime_ns for f in (moved / "results").rglob("*.yaml")}
    assert cli(["compile", "-p", str(moved / "project.yaml")]) == 0
    assert {f: f.stat().st_mtime_ns for f in before} == before
    for f in before:
        assert str(tmp_path) not in f.read_text()


def test_no_absolute_paths_in_specs(tmp_path):
    for spec in compiled(GPU, tmp_path).specs.values():
        assert str(tmp_path) not in spec.text and str(REPO) not in spec.text


def test_write_is_atomic_on_crash(tmp_path, monkeypatch):
    project = make_project(tmp_path)
    lp = load_project(project)
    c = compile_project(lp)["base"]

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError):
        write_experiment(lp.root, c)
    leftovers = [p for p in (tmp_path / "results").rglob("*") if p.is_file()]
    assert leftovers == []


# --------------------------------------------------------------------------- experiments


def test_experiments_compile_on_their_own(tmp_path):
    text = DEMO + "experiments:\n  base: {}\n  wide:\n    model.hidden_dim: 128\n" \
                  "    train.epochs: 4\n"
    lp = load_project(make_project(tmp_path, text))
    out = compile_project(lp)
    assert set(out) == {"base", "wide"}
    assert out["wide"].specs["train"].data["model"]["hidden_dim"] == 128
    assert out["wide"].specs["train"].data["results_dir"] == "results/wide"
    assert out["base"].specs["train"].data["model"]["hidden_dim"] == 64
    assert out["base"].specs["export"].text == compiled(DEMO, tmp_path / "x").specs[
        "export"].text.replace("'base'", "'base'")


def test_overrides_apply_to_their_action_only(tmp_path):
    text = DEMO + "overrides:\n  train:\n    train.optim.momentum: 0.8\n  all:\n" \
                  "    model.aux_loss: false\n"
    c = compiled(text, tmp_path)
    assert c.specs["train"].data["train"]["optim"]["momentum"] == 0.8
    assert all(s.data["model"]["aux_loss"] is False for s in c.specs.values())


def test_load_from_text_names_the_file():
    with pytest.raises(Exception) as exc:
        load_project_text("name: x\n", "inline.yaml")
    assert "inline.yaml:1" in str(exc.value)


# --------------------------------------------------------------------------- CLI


def test_cli_show_and_diff(tmp_path, capsys):
    project = make_project(tmp_path)
    assert cli(["show", "export", "-p", str(project)]) == 0
    out = capsys.readouterr().out
    assert "onnx_file: results/base/export/model.onnx" in out
    assert cli(["diff", "-p", str(project)]) == 0
    assert "new" in capsys.readouterr().out
    assert cli(["compile", "-p", str(project)]) == 0
    capsys.readouterr()
    assert cli(["diff", "-p", str(project), "--exit-code"]) == 0
    assert "no spec would change" in capsys.readouterr().out
    project.write_text(project.read_text().replace("  opset: 17", "  opset: 18"))
    assert cli(["diff", "-p", str(project), "--exit-code"]) == 1
    out = capsys.readouterr().out
    assert "results/base/specs/export.yaml" in out and "export.opset_version" in out
    assert "train.yaml" not in out


def test_cli_unknown_experiment_is_usage_error(tmp_path, capsys):
    project = make_project(tmp_path)
    assert cli(["show", "train", "-p", str(project), "-e", "nope"]) == 2
    assert "unknown experiment 'nope'" in capsys.readouterr().err


def test_cli_init_reads_classes(tmp_path):
    out = tmp_path / "p" / "project.yaml"
    out.parent.mkdir()
    ann = REPO / "data/shapes/train/annotations.json"
    assert cli(["init", str(ann), "-o", str(out)]) == 0
    lp = load_project(out)
    assert lp.base.dataset.classes == {1: "circle", 3: "triangle", 4: "square"}
    assert cli(["init", str(ann), "-o", str(out)]) == 2  # refuses to overwrite


def test_every_command_has_help(capsys):
    for cmd in ("validate", "compile", "show", "diff", "init"):
        with pytest.raises(SystemExit) as exc:
            cli([cmd, "--help"])
        assert exc.value.code == 0
        assert "usage: taomake" in capsys.readouterr().out


def test_emitter_round_trips_every_spec(tmp_path):
    from ruamel.yaml import YAML
    from taomake.compiler.compile import dump_yaml

    for spec in compiled(GPU, tmp_path).specs.values():
        assert YAML(typ="safe", pure=True).load(dump_yaml(spec.data)) == spec.data
    tricky = {"a": ["yes", "no", "1e-05", "null", "x: y", " pad", "#c", "", "ü"],
              "b": {"on": 1.5e-07, "k": [{"x": None, "y": [True, -1]}]}, "c": {}, "d": []}
    assert YAML(typ="safe", pure=True).load(dump_yaml(tricky)) == tricky


def test_local_runner_on_gpus_leaves_the_tensorrt_chain_out(tmp_path):
    """A local venv's `rtdetr evaluate` is PyTorch's: TensorRT jobs need the deploy image."""
    c = compiled(GPU.replace("    kind: docker", "    kind: local"), tmp_path)
    assert not {"gen_trt_engine", "trt_evaluate", "trt_inference"} & set(c.specs)
    assert "local runner has no TensorRT" in c.skipped["trt_evaluate"]
    assert {"train", "evaluate", "export", "inference"} <= set(c.specs)


def test_int8_warns_about_the_calibration_preprocessing(tmp_path):
    text = GPU.replace("  inference:\n    images: data/shapes/infer/images",
                       "  inference:\n    images: data/shapes/infer/images\n"
                       "  calibration:\n    images: data/shapes/train/images") + (
        "engine:\n  precision: INT8\n  calibration: {batches: 8, batch_size: 4}\n")
    c = compiled(text, tmp_path)
    [w] = [w for w in c.warnings if w.check == "int8_calibration"]
    assert "ImageNet mean/std" in w.message and w.location.key == "engine.precision"
    assert not [w for w in compiled(GPU, tmp_path / "fp16").warnings
                if w.check == "int8_calibration"]


def test_box_colors_follow_class_ids_not_lines(tmp_path):
    """Reordering the classes' lines changes no spec; renaming one class changes its own
    entry only; a color you give overrides that class alone."""
    base = specs_of(SMOKE_PROJECT.read_text(), tmp_path / "a")
    reordered = SMOKE_PROJECT.read_text().replace(
        "    1: circle\n    3: triangle\n    4: square\n",
        "    4: square\n    1: circle\n    3: triangle\n")
    assert reordered != SMOKE_PROJECT.read_text()
    assert specs_of(reordered, tmp_path / "b") == base

    def colors(text, where):
        return compiled(text, where).specs["inference"].data["inference"]["color_map"]

    before = colors(SMOKE_PROJECT.read_text(), tmp_path / "c")
    renamed = colors(SMOKE_PROJECT.read_text().replace("    3: triangle", "    3: tri"),
                     tmp_path / "d")
    assert renamed == {("tri" if k == "triangle" else k): v for k, v in before.items()}
    given = colors(SMOKE_PROJECT.read_text().replace(
        "  conf_threshold: 0.1", "  conf_threshold: 0.1\n  colors: {square: white}"),
        tmp_path / "e")
    assert given == {**before, "square": "white"}
