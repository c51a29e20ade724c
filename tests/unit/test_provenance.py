"""Provenance records (taomake.provenance)."""

from __future__ import annotations


def test_engine_provenance_names_the_gpu(tmp_path, monkeypatch):
    """Which GPU built an engine goes into provenance (an engine runs only on that model)."""
    from taomake.provenance import gpu_models

    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho '0, NVIDIA A100-SXM4-80GB, 550.54.15'\n"
                    "echo '1, NVIDIA L4, 550.54.15'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    assert gpu_models((1,)) == ["NVIDIA L4 (driver 550.54.15)"]
    assert len(gpu_models()) == 2
    monkeypatch.setenv("PATH", "/nonexistent")
    assert gpu_models() == []
