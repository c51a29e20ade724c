"""The TAO CPU venv (`taomake setup tao-cpu`) and taomake's compat layer inside it.

Tests marked `tao` use the real venv (fixture `tao_venv`: skipped locally when it is missing,
a failure in CI).  The others check the setup logic without it.  No training here: the
end-to-end tests of the pipeline do that.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from taomake.tao_cpu import setup as tc

TIMEOUT = 300


def venv_run(venv: Path, code: str, env: dict[str, str] | None = None) -> str:
    """Run `code` with the venv's python; return stdout (assert exit 0)."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    full_env.update(env or {})
    proc = subprocess.run([str(venv / "bin" / "python"), "-c", textwrap.dedent(code)],
                          capture_output=True, text=True, env=full_env, timeout=TIMEOUT,
                          check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


# --- with the real venv -------------------------------------------------------------------

@pytest.mark.tao
def test_setup_is_idempotent_and_self_check_passes(tao_venv: Path) -> None:
    marker_before = tc.read_marker(tao_venv)
    log = tao_venv / tc.LOG
    pip_runs_before = log.read_text().count(" -m pip install ")
    messages: list[str] = []

    assert tc.setup_tao_cpu(tao_venv, progress=messages.append) == tao_venv

    text = "\n".join(messages)
    assert "is up to date" in text
    assert f"self-check: import {tc.ENTRY_MODULE} and rtdetr --help: done" in text
    assert "pip install" not in text and "building" not in text
    assert log.read_text().count(" -m pip install ") == pip_runs_before
    marker_after = tc.read_marker(tao_venv)
    assert marker_after["requirements_sha256"] == marker_before["requirements_sha256"]
    assert marker_after["created"] == marker_before["created"]
    assert marker_after["compat_sha256"] == tc.compat_hash()


@pytest.mark.tao
def test_compat_hook_is_lazy_in_the_venv(tao_venv: Path) -> None:
    out = venv_run(tao_venv, """
        import sys, json, taomake_tao_cpu_compat as c
        print(json.dumps({"torch": "torch" in sys.modules,
                          "lightning": "pytorch_lightning" in sys.modules,
                          "installed": c.STATE["installed"], "patched": c.STATE["patched"]}))
    """)
    assert last_json(out) == {"torch": False, "lightning": False, "installed": True,
                              "patched": []}
    # what the brief asks literally: a plain interpreter start does not import torch
    plain = venv_run(tao_venv, 'import sys; print("torch" in sys.modules)')
    assert plain.strip() == "False"
    # and the switch turns the hook off entirely
    off = venv_run(tao_venv, 'import sys, taomake_tao_cpu_compat as c; '
                             'print(c.STATE["installed"])', env={"TAOMAKE_TAO_CPU_COMPAT": "0"})
    assert off.strip() == "False"


@pytest.mark.tao
def test_compat_hook_switches_trainer_to_cpu_and_tolerates_msda(tao_venv: Path) -> None:
    out = venv_run(tao_venv, """
        import json, os, torch
        import taomake_tao_cpu_compat as c
        from pytorch_lightning import Trainer
        from pytorch_lightning.accelerators import CPUAccelerator
        from nvidia_tao_pytorch.cv.deformable_detr.model.ops import modules
        res = {"cuda": torch.cuda.is_available()}
        t = Trainer(accelerator="gpu", devices=[0], logger=False, enable_checkpointing=False,
                    enable_progress_bar=False, enable_model_summary=False)
        res["cpu_accelerator"] = isinstance(t.accelerator, CPUAccelerator)
        res["num_devices"] = t.num_devices
        modules.MSDeformAttn(64, 3, 8, 4)  # loads TAO's CUDA-only .so: tolerated without CUDA
        res["msda_skipped"] = c.STATE["msda_load_skipped"]
        try:  # any other library still fails as before
            torch.ops.load_library(os.path.join(os.path.dirname(modules.__file__), "other.so"))
            res["other_raised"] = False
        except OSError:
            res["other_raised"] = True
        res["patched"] = sorted(c.STATE["patched"])
        print(json.dumps(res))
    """)
    res = last_json(out)
    if res["cuda"]:
        pytest.skip("a CUDA device is present: the hook leaves everything as it is")
    assert res == {"cuda": False, "cpu_accelerator": True, "num_devices": 1,
                   "msda_skipped": 1, "other_raised": True,
                   "patched": ["pytorch_lightning.trainer.trainer.Trainer.__init__",
                               "torch.ops.load_library"]}



@pytest.mark.tao
def test_entrypoint_lists_the_actions_without_running_their_scripts(tao_venv: Path) -> None:
    """`rtdetr <action>` lists the actions first; TAO imports every action's script for that
    (Lightning, modelopt, transformers: ~11 CPU-s per job).  With the hook it finds the same
    files without running them, and TAO's own listing (called after) gives the same table."""
    out = venv_run(tao_venv, """
        import json, sys
        import taomake_tao_cpu_compat as c
        from nvidia_tao_pytorch.cv.rtdetr.entrypoint import rtdetr
        located = rtdetr.get_subtask_list()
        scripts = sorted(m for m in sys.modules if m.startswith(rtdetr.scripts.__name__ + "."))
        heavy = sorted(m for m in ("pytorch_lightning", "modelopt", "transformers")
                       if m in sys.modules)
        original = rtdetr.get_subtasks.__wrapped__(rtdetr.scripts)  # imports every script
        print(json.dumps({"located": located, "original": original, "scripts": scripts,
                          "heavy": heavy, "count": c.STATE["scripts_located"]}))
    """)
    res = last_json(out)
    assert res["located"] == res["original"], res
    assert {"train", "evaluate", "export", "inference", "distill", "quantize",
            "default_specs"} <= set(res["located"])
    assert res["scripts"] == [] and res["heavy"] == [], res
    assert res["count"] == len(res["located"]) - 1  # every script but default_specs (TAO's own)


QUANT_REGISTRY = """
    import json, sys
    # what each RT-DETR script imports (scripts/evaluate.py, export.py, inference.py)
    from nvidia_tao_pytorch.core.quantization.utils import create_quantized_model_from_config
    early = sorted(m for m in ("modelopt", "nvidia_tao_pytorch.core.quantization.backends")
                   if m in sys.modules)
    from nvidia_tao_pytorch.core.quantization import ModelQuantizer, registry
    manager = registry.get_registry_manager()
    print(json.dumps({"early": early, "backends": sorted(registry.get_available_backends()),
                      "modelopt": manager.get_backend("modelopt.pytorch").__name__,
                      "registered": manager.is_backend_registered("torchao"),
                      "quantizer": ModelQuantizer.__module__}))
"""


@pytest.mark.tao
def test_quantization_backends_load_when_the_registry_is_first_read(tao_venv: Path) -> None:
    """Every RT-DETR script imports TAO's quantization package, which imports its backends
    (ModelOpt, torchao, ModelOpt ONNX) to register them (~2 CPU-s per job).  With the hook a job
    that never reads the registry never imports them, and the first read sees the same
    backends as TAO without the hook."""
    hooked = last_json(venv_run(tao_venv, QUANT_REGISTRY))
    plain = last_json(venv_run(tao_venv, QUANT_REGISTRY, env={"TAOMAKE_TAO_CPU_COMPAT": "0"}))
    assert hooked["early"] == [], hooked
    assert plain["early"] == ["modelopt", "nvidia_tao_pytorch.core.quantization.backends"], \
        plain  # the cost the hook puts off
    assert {**hooked, "early": None} == {**plain, "early": None}
    assert {"modelopt.pytorch", "torchao"} <= set(hooked["backends"]), hooked


@pytest.mark.tao
def test_eff_stand_in_raises_a_clear_error(tao_venv: Path) -> None:
    out = venv_run(tao_venv, """
        import json, operator
        import eff
        from eff.validator.conditions import Expression
        from eff.core import Archive
        from nvidia_tao_pytorch.core.checkpoint_encryption import encrypt_checkpoint
        Expression(operator.eq, 1)  # built at import time by TAO: must work
        res = {"stub": eff.IS_TAOMAKE_STUB}
        for name, call in (("encrypt", lambda: encrypt_checkpoint({"state_dict": {}}, "k")),
                           ("archive", lambda: Archive.create(save_path="x.tlt"))):
            try:
                call()
                res[name] = None
            except NotImplementedError as exc:
                res[name] = [type(exc).__name__, str(exc)]
        print(json.dumps(res))
    """)
    res = last_json(out)
    assert res["stub"] is True
    for name in ("encrypt", "archive"):
        kind, message = res[name]
        assert kind == "EffUnavailableError"
        assert "encrypted models (.tlt files, an encryption_key" in message
        assert "use plain .pth checkpoints" in message


# --- without the venv ---------------------------------------------------------------------

def test_compat_hook_is_inactive_in_the_tools_python() -> None:
    assert importlib.util.find_spec("taomake_tao_cpu_compat") is None
    assert not any(type(f).__module__ == "taomake_tao_cpu_compat" for f in sys.meta_path)
    spec = importlib.util.find_spec("eff")
    assert spec is None or "taomake" not in (spec.origin or "")


def test_default_venv_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("TAOMAKE_TAO_VENV", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert tc.default_venv_path() == tmp_path / "taomake/venvs/tao-pytorch-7.3.0-cpu"
    monkeypatch.setenv("TAOMAKE_TAO_VENV", str(tmp_path / "elsewhere"))
    assert tc.default_venv_path() == tmp_path / "elsewhere"


def test_requirements_are_exact_pins() -> None:
    pins = [ln.strip() for ln in tc.REQUIREMENTS.read_text().splitlines()
            if ln.strip() and not ln.startswith("#")]
    assert pins and all("==" in p and not p.startswith("-") for p in pins)
    names = {p.split("==")[0].lower() for p in pins}
    assert {"torch", "torchvision", "pytorch-lightning", "hydra-core", "omegaconf"} <= names
    assert "nvidia-tao-pytorch" not in names  # installed on its own with --no-deps
    assert "torch==2.13.0" in pins and "torchvision==0.28.0" in pins


def test_no_python312_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "no-pyenv"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "no-data"))
    monkeypatch.delenv("UV_PYTHON_INSTALL_DIR", raising=False)
    assert tc.main(["--venv", str(tmp_path / "v")]) == 2
    err = capsys.readouterr().err
    assert "no Python 3.12 found" in err and "pyenv install 3.12" in err
    assert "Traceback" not in err
    assert not (tmp_path / "v").exists()


def test_wrong_python_version_is_rejected(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    if sys.version_info[:2] == (3, 12):
        pytest.skip("the tool's own Python is 3.12")
    assert tc.main(["--venv", str(tmp_path / "v"), "--python", sys.executable]) == 2
    assert "not 3.12" in capsys.readouterr().err


def test_refuses_to_replace_a_folder_that_is_not_a_venv(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "precious"
    target.mkdir()
    (target / "thesis.tex").write_text("do not delete")
    assert tc.main(["--venv", str(target)]) == 2
    assert "refusing to replace" in capsys.readouterr().err
    assert (target / "thesis.tex").read_text() == "do not delete"


def _fake_venv(tmp_path: Path, marker: dict | None) -> Path:
    """A real (tiny) venv of the tool's Python standing in for the TAO venv."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    if marker is not None:
        (venv / tc.MARKER).write_text(json.dumps(marker))
    return venv


def test_changed_compat_layer_is_recopied_without_reinstall(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    venv = _fake_venv(tmp_path, {"requirements_sha256": tc.requirements_hash(),
                                 "compat_sha256": "old", "created": "then"})
    checks: list[Path] = []
    monkeypatch.setattr(tc, "self_check", lambda v, steps=None, progress=print: checks.append(v))

    def no_build(*_a, **_k):
        raise AssertionError("must not rebuild")

    monkeypatch.setattr(tc, "_build", no_build)
    messages: list[str] = []
    tc.setup_tao_cpu(venv, progress=messages.append)

    site = next((venv / "lib").glob("python3.*/site-packages"))
    assert (site / "taomake_tao_cpu_compat.pth").read_text().strip() == \
        "import taomake_tao_cpu_compat"
    assert (site / "eff" / "codec.py").is_file()
    marker = tc.read_marker(venv)
    assert marker["compat_sha256"] == tc.compat_hash() and marker["created"] == "then"
    assert checks == [venv]
    assert any("re-copying" in m for m in messages)
    # nothing changed now: a rerun only checks
    messages.clear()
    tc.setup_tao_cpu(venv, progress=messages.append)
    assert any("is up to date" in m for m in messages) and checks == [venv, venv]


def test_incomplete_venv_is_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    venv = _fake_venv(tmp_path, marker=None)  # e.g. an interrupted setup: no marker
    calls: list[Path] = []

    def fake_build(v, python, steps):
        calls.append(v)
        raise tc.SetupError("stop here")

    monkeypatch.setattr(tc, "_build", fake_build)
    with pytest.raises(tc.SetupError, match="stop here"):
        tc.setup_tao_cpu(venv, progress=lambda _m: None)
    assert calls == [venv]
    assert tc.main(["--check-only", "--venv", str(venv)]) == 1


def test_pip_progress_reports_collected_requirements_then_the_install():
    """The long pip install of a fresh setup shows progress (at most every 10 s)."""
    from taomake.tao_cpu.setup import PipProgress, _Steps

    said: list[str] = []
    now = [0.0]
    progress = PipProgress(_Steps(said.append), total=140, clock=lambda: now[0])
    for t, line in [(1, "Collecting torch==2.13.0 (from -r requirements.txt (line 15))"),
                    (5, "  Downloading torch-2.13.0-cp312-...whl (900 MB)"),
                    (11, "Collecting pytorch-lightning==2.6.6"),
                    (12, "Collecting Pillow[extra]==13.0.0"),
                    (13, "Processing /mirror/simple/nvidia_cudnn_cu13-9.1-py3-none-any.whl"),
                    (30, "Installing collected packages: torch, pillow, pytorch-lightning"),
                    (45, "some other line")]:
        now[0] = t
        progress(line)
    assert said == [
        "[tao-cpu]   pip: 2 of ~140 collected, now pytorch-lightning (11s)",
        "[tao-cpu]   pip: 4 packages collected in 30s; installing them ...",
        "[tao-cpu]   pip: installing (45s)"], said
