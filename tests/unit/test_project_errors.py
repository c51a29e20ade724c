"""A corpus of broken project files: each must exit 2 with file:line, the key, no traceback,
and nothing written.  The cases run `taomake compile` in-process (an unexpected exception
fails the test); one runs it as a command, as users do."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass

import pytest

from tests.helpers import SMOKE_PROJECT, make_project


@dataclass
class Case:
    name: str
    edits: list[tuple[str, str]]  # (old, new) text replacements on the demo project.yaml
    marker: str  # a unique substring of the line the message must point at
    key: str  # must appear in the message
    also: str = ""  # another substring the message must contain


GPU = ("  gpus_per_node: 0             # CPU: TAO runs in the venv made by `taomake setup "
       "tao-cpu`", "  gpus_per_node: 1")
DISTILL = ("train:\n  epochs: 2", "distill:\n  teacher:\n    checkpoint: teacher.pth\n"
           "  bindings:\n    - {student: model.encoder, teacher: model.encoder, criterion: IOU}\n"
           "train:\n  epochs: 2")

CASES = [
    Case("wrong type", [("  batch_size: 4", "  batch_size: four")], "batch_size: four",
         "dataset.batch_size", "whole number"),
    Case("typo in model key", [("  hidden_dim: 64", "  hiden_dim: 64")], "hiden_dim",
         "model.hiden_dim", "did you mean 'hidden_dim'"),
    Case("typo in section", [("\ninference:\n", "\ninferense:\n")], "inferense:", "inferense",
         "did you mean 'inference'"),
    Case("duplicate class id", [("    3: triangle", "    3: triangle\n    3: square2")],
         "3: square2", "3", "duplicate key"),
    Case("class id 0", [("    1: circle", "    0: circle")], "0: circle", "dataset.classes.0",
         "ids start at 1"),
    Case("empty class name", [("    3: triangle", '    3: ""')], '3: ""',
         "dataset.classes.3", "empty name"),
    Case("duplicate class name", [("    4: square", "    4: circle")], "4: circle",
         "dataset.classes.4", "unique"),
    Case("DeepStream files with class id gaps", [("  opset: 17", "  opset: 17\n"
                                                  "  serialize_nvdsinfer: true")],
         "serialize_nvdsinfer: true", "export.serialize_nvdsinfer", "ids 1..3 without gaps"),
    Case("non-square train size with multi-scale", [
        ("    train_size: [128, 128]", "    train_size: [128, 160]")], "train_size: [128, 160]",
        "dataset.augmentation.train_size", "resizes every batch to a square"),
    Case("bf16 under fsdp", [(GPU[0], "  gpus_per_node: 2\n  strategy: fsdp\n"
                                      "  precision: bf16")], "precision: bf16",
         "hardware.precision", "16-bit mixed precision"),
    Case("multi-node with docker", [(GPU[0], "  gpus_per_node: 1\n  nodes: 2"),
                                     ("    kind: local", "    kind: docker")], "nodes: 2",
         "hardware.nodes", "docker runner cannot train on 2 nodes"),
    Case("multi-node on CPU in NVIDIA's image", [(GPU[0], "  gpus_per_node: 0\n  nodes: 2"),
                                                ("    kind: local", "    kind: pyxis")],
         "nodes: 2", "hardware.nodes", "only with the local runner"),
    Case("modelopt.pytorch in weight-only mode", [("  opset: 17", "  opset: 17\nquantize:\n"
                                                   "  backend: modelopt.pytorch")],
         "quantize:", "quantize.mode", "static PTQ only"),
    Case("modelopt.pytorch with the minmax algorithm", [(
        "  opset: 17", "  opset: 17\nquantize:\n  backend: modelopt.pytorch\n"
        "  mode: static_ptq\n  algorithm: minmax")], "algorithm: minmax",
        "quantize.algorithm", "use one of: max"),
    Case("static PTQ without a COCO file for the calibration images", [
        ("  opset: 17", "  opset: 17\nquantize:\n  backend: modelopt.pytorch\n"
                        "  mode: static_ptq"),
        ("  batch_size: 4", "  calibration:\n    images: data/shapes/val/images\n"
                            "  batch_size: 4")],
        "calibration:", "dataset.calibration", "add dataset.calibration.annotations"),
    Case("pack_nodes on one node", [(GPU[0], "  gpus_per_node: 0\n  pack_nodes: true")],
         "pack_nodes: true", "hardware.pack_nodes", "needs hardware.nodes > 1"),
    Case("IOU binding across 4 and 3 feature levels", [DISTILL, (
        "    checkpoint: teacher.pth\n", "    checkpoint: teacher.pth\n    model:\n"
        "      return_interm_indices: [0, 1, 2, 3]\n      feat_strides: [4, 8, 16, 32]\n"
        "      num_feature_levels: 4\n"), ("student: model.encoder, teacher: model.encoder",
                                          "student: srcs, teacher: srcs")],
        "- {student: srcs", "distill.bindings[0]",
        "student's 3 feature levels with the teacher's 4"),
    Case("L2 distillation binding", [DISTILL, ("student: model.encoder, teacher: model.encoder,"
                                              " criterion: IOU", "student: model.encoder, "
                                              "teacher: model.encoder, criterion: L2")],
         "criterion: L2", "distill.bindings[0].criterion", "never hooks the modules"),
    Case("quantize with modelopt.onnx", [("  opset: 17", "  opset: 17\nquantize:\n"
                                         "  backend: modelopt.onnx\n  algorithm: max\n")],
         "backend: modelopt.onnx", "quantize.backend", "not wired up yet"),
    # a space is fine ("red triangle" reaches TAO as red_triangle); two names with one label
    # are not
    Case("class names with one TAO label", [("    3: triangle", "    3: circle!")],
         "3: circle!", "dataset.classes.3", "both become TAO label 'circle'"),
    Case("name missing", [("name: shapes-demo\n", "")], "# The tests' smoke project", "name",
         "required"),
    Case("bad project name", [("name: shapes-demo", "name: shapes demo!")], "name: shapes",
         "name", "pattern"),
    Case("zero epochs", [("  epochs: 2", "  epochs: 0")], "epochs: 0", "train.epochs", ">= 1"),
    Case("lr out of range", [("  lr: 0.0002", "  lr: 3.0")], "lr: 3.0", "train.lr", "<= 1"),
    Case("probability out of range", [("    multi_scales: [128]",
                                       "    multi_scales: [128]\n    distortion_prob: 1.5")],
         "distortion_prob", "dataset.augmentation.distortion_prob"),
    Case("inconsistent feature levels", [("  hidden_dim: 64", "  hidden_dim: 64\n"
                                          "  feat_strides: [8, 16]")], "feat_strides",
         "model.feat_strides", "same length"),
    Case("feat_channels vs hidden_dim", [("  hidden_dim: 64", "  hidden_dim: 64\n"
                                          "  feat_channels: [256, 256, 256]")],
         "feat_channels", "model.feat_channels", "hidden_dim"),
    Case("num_select too large", [("  num_select: 30", "  num_select: 200")],
         "num_select: 200", "model.num_select", "num_queries x num_classes"),
    Case("960x544 export", [("  opset: 17", "  opset: 17\n  size: [544, 960]")], "size: [544",
         "export.size", "eval_size"),
    Case("eval size not multiple of 32", [("    eval_size: [128, 128]",
                                           "    eval_size: [100, 100]")], "eval_size: [100",
         "dataset.augmentation.eval_size", "multiple of 32"),
    Case("INT8 without calibration", [GPU, ("  opset: 17", "  opset: 17\nengine:\n"
                                            "  precision: INT8\n  batch: {max: 4}")],
         "precision: INT8", "engine.precision", "calibration"),
    Case("bad IOU binding", [DISTILL], "criterion: IOU", "distill.bindings[0].student",
         "srcs or dsrcs"),
    Case("bad quantize dtype", [("  opset: 17", "  opset: 17\nquantize:\n  layers:\n"
                                 "    - {module: Linear, weights: int4}")], "weights: int4",
         "quantize.layers[0].weights", "int8"),
    Case("torchao activations", [("  opset: 17", "  opset: 17\nquantize:\n  layers:\n"
                                  "    - {module: Linear, weights: int8, activations: int8}")],
         "activations: int8", "quantize.layers[0].activations", "torchao"),
    Case("missing annotations file", [("data/shapes/val/annotations.json",
                                       "data/shapes/val/missing.json")], "missing.json",
         "dataset.val.annotations", "does not exist"),
    Case("missing image folder", [("data/shapes/train/images", "data/shapes/trian/images")],
         "trian/images", "dataset.train[0].images", "does not exist"),
    Case("undeclared category", [("    4: square\n", "")],
         "annotations: data/shapes/train/annotations.json", "dataset.train[0].annotations",
         "not in dataset.classes"),
    Case("checkpoint interval > epochs", [("  lr: 0.0002", "  lr: 0.0002\n"
                                           "  checkpoint_interval: 5")],
         "checkpoint_interval: 5", "train.checkpoint_interval", "epochs"),
    Case("gpu ids vs gpus", [("  shm_size: 2g", "  shm_size: 2g\n  gpu_ids: [0, 1]")],
         "gpu_ids: [0, 1]", "hardware.gpu_ids", "gpus_per_node"),
    Case("unknown runner", [("    kind: local", "    kind: kubernetes")], "kind: kubernetes",
         "hardware.runner.kind", "docker"),
    Case("backbone typo", [("  backbone: resnet_18", "  backbone: resnet18")],
         "backbone: resnet18", "model.backbone", "resnet_18"),
    Case("override unknown TAO key", [("  opset: 17", "  opset: 17\noverrides:\n  train:\n"
                                       "    train.optim.momentom: 0.8")], "momentom",
         "overrides.train.train.optim.momentom", "momentum"),
    Case("override wrong type", [("  opset: 17", "  opset: 17\noverrides:\n  train:\n"
                                  "    train.num_epochs: abc")], "num_epochs: abc",
         "train.num_epochs", "integer"),
    Case("override SGD", [("  opset: 17", "  opset: 17\noverrides:\n  train:\n"
                           "    train.optim.optimizer: SGD")], "optimizer: SGD",
         "train.optim.optimizer", "AdamW"),
    Case("override section the action lacks", [("  opset: 17", "  opset: 17\noverrides:\n"
                                                "  export:\n    train.num_epochs: 3")],
         "train.num_epochs: 3", "overrides.export.train.num_epochs", "no section"),
    Case("experiment breaks hidden_dim", [("  opset: 17", "  opset: 17\nexperiments:\n"
                                           "  base: {}\n  odd:\n    model.hidden_dim: 60")],
         "model.hidden_dim: 60", "model.hidden_dim", "divisible"),
    Case("experiment typo section", [("  opset: 17", "  opset: 17\nexperiments:\n"
                                      "  x:\n    modle.hidden_dim: 128")],
         "modle.hidden_dim", "modle", "did you mean 'model'"),
    Case("bad experiment name", [("  opset: 17", "  opset: 17\nexperiments:\n"
                                  "  'bad name!': {}")], "experiments:", "experiments",
         "bad name"),
    Case("experiment named like a shared folder",
         [("  opset: 17", "  opset: 17\nexperiments:\n  report: {}")], "experiments:",
         "experiments", "results/report that all experiments share"),
    Case("yaml syntax", [("  batch_size: 4", "  batch_size: [4")], "workers: 2", "",
         "not valid YAML"),
    # an unclosed quote: the parser gives up lines later; the message names where it started
    Case("unclosed quote", [("name: shapes-demo", 'name: "shapes-demo')], "  version:", "",
         "block mapping that starts at line"),
    Case("color for unknown class", [("  conf_threshold: 0.1", "  conf_threshold: 0.1\n"
                                      "  colors: {hexagon: red}")], "colors:",
         "inference.colors.hexagon", "not a class name"),
    Case("checkpoint epoch out of range", [("  use_checkpoint: best ", "  use_checkpoint: 7 ")],
         "use_checkpoint: 7", "train.use_checkpoint", "does not exist"),
    Case("teacher experiment unknown", [("  opset: 17", "  opset: 17\ndistill:\n  teacher:\n"
                                         "    checkpoint: 'experiment:big'")],
         "experiment:big", "distill.teacher.checkpoint", "no experiment"),
    Case("engine batch order", [GPU, ("  opset: 17", "  opset: 17\nengine:\n"
                                      "  batch: {min: 4, opt: 2, max: 8}")],
         "batch: {min: 4", "engine.batch", "min"),
    Case("engine max below batch size", [GPU, ("  opset: 17", "  opset: 17\nengine:\n"
                                               "  batch: {min: 1, opt: 1, max: 2}")],
         "batch: {min: 1", "engine.batch.max", "dataset.batch_size"),
    Case("fp16 on cpu", [("  shm_size: 2g", "  shm_size: 2g\n  precision: fp16")],
         "precision: fp16", "hardware.precision", "CPU"),
    Case("unknown overrides action", [("  opset: 17", "  opset: 17\noverrides:\n  trainn: {}")],
         "trainn", "overrides.trainn", "did you mean 'train'"),
    Case("batch larger than dataset", [("  batch_size: 4", "  batch_size: 64")],
         "batch_size: 64", "dataset.batch_size", "training images"),
]

# credentials in a URL: refused like any other error, and the secret is never printed
SECRET = "wJalrXUtnFEMI-K7MDENG"
CREDENTIALS = [
    Case("credentials in the endpoint URL", [("  opset: 17", "  opset: 17\nstorage:\n"
                                              f"  endpoint_url: http://AKIA1234:{SECRET}"
                                              "@127.0.0.1:9000")], "endpoint_url:",
         "storage.endpoint_url", "AWS_ACCESS_KEY_ID"),
    Case("credentials in an S3 data URI", [("images: data/shapes/val/images",
                                           f"images: s3://AKIA1234:{SECRET}@bucket/val.tar")],
         "s3://AKIA1234", "dataset.val.images", "credentials in it"),
    Case("credentials in the upload target", [("  opset: 17", "  opset: 17\nupload:\n"
                                               f"  to: s3://AKIA1234:{SECRET}@bucket/runs")],
         "to: s3://AKIA1234", "upload.to", "project.yaml holds no secret"),
]
CASES += CREDENTIALS


def _line_of(text: str, marker: str) -> int:
    hits = [i for i, line in enumerate(text.splitlines(), 1) if marker in line]
    assert len(hits) == 1, f"marker {marker!r} must match one line, matched {hits}"
    return hits[0]


def _broken(case: Case, tmp_path):
    text = SMOKE_PROJECT.read_text()
    for old, new in case.edits:
        assert text.count(old) == 1, f"edit anchor {old!r} not unique in project.yaml"
        text = text.replace(old, new)
    return text, make_project(tmp_path, text)


def _check(case: Case, text: str, project, rc: int, err: str, tmp_path) -> None:
    assert rc == 2, err
    assert "Traceback" not in err
    assert f"{project}:{_line_of(text, case.marker)}:" in err, err
    assert case.key in err, err
    assert case.also.lower() in err.lower(), err
    assert not (tmp_path / "results").exists(), "nothing may be written on error"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_broken_project(case: Case, tmp_path, capsys, monkeypatch):
    from taomake.cli import main

    text, project = _broken(case, tmp_path)
    monkeypatch.chdir(tmp_path)
    rc = main(["compile", "-p", str(project)])
    _check(case, text, project, rc, capsys.readouterr().err, tmp_path)


def test_broken_project_as_a_command(tmp_path):
    case = CASES[0]
    text, project = _broken(case, tmp_path)
    proc = subprocess.run([sys.executable, "-m", "taomake.cli", "compile", "-p", str(project)],
                          capture_output=True, text=True, cwd=tmp_path)
    _check(case, text, project, proc.returncode, proc.stderr, tmp_path)


@pytest.mark.parametrize("case", CREDENTIALS, ids=[c.name for c in CREDENTIALS])
def test_credentials_in_a_url_are_never_printed(case: Case, tmp_path):
    """`taomake validate` (as a command) refuses them with the line and the fix, and shows
    the URL masked (before: validate passed, the plan cache stored the URL and "cannot reach
    S3 at http://KEY:SECRET@..." printed it)."""
    text, project = _broken(case, tmp_path)
    proc = subprocess.run([sys.executable, "-m", "taomake.cli", "validate", "-p",
                           str(project)], capture_output=True, text=True, cwd=tmp_path)
    _check(case, text, project, proc.returncode, proc.stderr, tmp_path)
    assert SECRET not in proc.stderr + proc.stdout and "://***@" in proc.stderr, proc.stderr
    assert not (tmp_path / ".snakemake").exists()  # no plan cache holds it


def test_an_endpoint_with_credentials_from_the_environment_is_masked(monkeypatch):
    """AWS_ENDPOINT_URL_S3 (not project.yaml's to check) is shown masked when S3 cannot be
    reached."""
    from botocore.exceptions import EndpointConnectionError

    from taomake.data.s3 import S3Store

    endpoint = f"http://AKIA1234:{SECRET}@127.0.0.1:9"
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", endpoint)
    err = S3Store()._translate(EndpointConnectionError(endpoint_url=endpoint),
                               "s3://bucket/key", "reading")
    assert "cannot reach S3 at http://***@127.0.0.1:9" in err.render()
    assert SECRET not in err.render()


def test_corpus_is_large_enough():
    assert len(CASES) >= 30
