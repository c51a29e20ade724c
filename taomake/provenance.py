"""Provenance: what every built artifact was made from, written next to it when its job
succeeds (`<action dir>/.taomake/provenance-<action>.json`) and printed by
`taomake provenance <artifact>`.

Recorded: the artifact's sha256 and size, the spec's body hash, the image (and its digest when
the runtime reports one) or the local venv, the identity of every data source the spec reads
(ETag / sha256 from the stamps), the checkpoint it consumed, taomake's version, the project's
git commit and dirty flag, the TAO command line, host, start/end time and exit status.  Only
names of environment variables are ever recorded, never values.
"""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

from taomake.compiler.errors import UsageError
from taomake.compiler.files import atomic_write
from taomake.compiler.layout import (
    PROVENANCE_GLOB,
    RECORDS_DIR,
    DataSource,
    Layout,
    dataset_paths,
    provenance_record,
)

from . import __version__
from .digests import artifact_sha256


def gpu_models(ids: list[int] | tuple[int, ...] = ()) -> list[str]:
    """Name and driver of the GPUs a job used (`nvidia-smi`; [] without one).  A TensorRT
    engine only runs on the GPU model and TensorRT it was built with: provenance says which."""
    import shutil

    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index,name,driver_version",
                              "--format=csv,noheader"], capture_output=True, text=True,
                             timeout=15).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    rows = [[c.strip() for c in line.split(",")] for line in out.splitlines() if line.strip()]
    return [f"{name} (driver {driver})" for index, name, driver, *_ in
            (r for r in rows if len(r) >= 3) if not ids or int(index) in ids]

def git_state(folder: Path) -> dict[str, Any]:
    """Commit and dirty flag of the git work tree holding `folder` (None outside git)."""
    try:
        commit = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"],
                                capture_output=True, text=True, timeout=10)
        if commit.returncode != 0:
            return {"commit": None, "dirty": None}
        status = subprocess.run(["git", "-C", str(folder), "status", "--porcelain",
                                 "--untracked-files=no"], capture_output=True, text=True,
                                timeout=30)
        return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}
    except (OSError, subprocess.TimeoutExpired):
        return {"commit": None, "dirty": None}


def data_identities(root: Path, results: str, spec: dict[str, Any],
                    sources: list[DataSource]) -> dict[str, Any]:
    """Path the spec reads -> the source's URI and recorded identity (its stamp)."""
    by_target = {s.target(results): s for s in sources}
    out: dict[str, Any] = {}
    for path in dataset_paths(spec):
        s = by_target.get(path)
        if s is None:
            continue
        try:
            stamp = json.loads((root / s.stamp(results)).read_text())["identity"]
        except (OSError, ValueError, KeyError):
            stamp = None
        out[path] = {"uri": s.uri, "identity": stamp}
    return out


def image_digest(ref: str) -> str | None:
    try:
        import docker

        image = docker.from_env(timeout=5).images.get(ref)
        return (image.attrs.get("RepoDigests") or [image.id])[0]
    except Exception:  # no daemon, image not local: the reference alone is recorded
        return None


def write_provenance(path: Path, action: str, *, root: Path, artifacts: list[str],
                     spec_text: str, spec: dict[str, Any], runtime: dict[str, Any],
                     sources: list[DataSource], results: str, consumed: list[str],
                     argv: list[str], env_names: list[str], started: float, ended: float,
                     exit_status: int, cache: dict[str, Any] | None = None) -> dict[str, Any]:
    body = spec_text.split("\n", 1)
    record = {
        "action": action,
        "artifacts": {a: {"sha256": artifact_sha256(root / a), "size": (root / a).stat().st_size}
                      for a in artifacts if (root / a).is_file()},
        "spec": {"sha256": hashlib.sha256(spec_text.encode()).hexdigest(),
                 "header": body[0] if body[0].startswith("#") else ""},
        "runtime": runtime,
        "data": data_identities(root, results, spec, sources),
        "consumed": {c: artifact_sha256(root / c) for c in consumed if (root / c).is_file()},
        "taomake": __version__,
        "git": git_state(root),
        "command": argv,
        "env_names": sorted(env_names),  # names only: values may be secrets
        "host": platform.node(),
        "start": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "end": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(ended)),
        "seconds": round(ended - started, 3),
        "exit_status": exit_status,
    }
    if cache:  # fetched from (or published to) the team cache: key, publisher, when
        record["cache"] = cache
    atomic_write(path, json.dumps(record, indent=1, sort_keys=True) + "\n")
    return record


def record_derived(root: Path, step: str, out_dir: Path, artifacts: list[Path],
                   consumed: list[Path], command: list[str], started: float) -> dict[str, Any]:
    """Provenance of an artifact taomake itself computes from built ones (ONNX parity, a sweep
    decision, the report): what it read, by hash, and the command that made it."""

    def rel(path: Path) -> str:
        path = path if path.is_absolute() else Path.cwd() / path
        try:
            return str(path.resolve().relative_to(root.resolve()))
        except ValueError:
            return str(path)

    record = {
        "action": step,
        "artifacts": {rel(a): {"sha256": artifact_sha256(a), "size": a.stat().st_size}
                      for a in artifacts if a.is_file()},
        "consumed": {rel(c): artifact_sha256(c) for c in sorted(set(consumed)) if c.is_file()},
        "taomake": __version__,
        "git": git_state(root),
        "command": command,
        "host": platform.node(),
        "start": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "end": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "exit_status": 0,
    }
    atomic_write(out_dir / provenance_record("", step),
                 json.dumps(record, indent=1, sort_keys=True) + "\n")
    return record


def record_selection(root: Path, layout: Layout, action: str, source: str, how: str) -> None:
    """model.pth: which checkpoint it is, and the training run that produced it."""
    try:
        built = json.loads((root / layout.provenance(action)).read_text())
    except (OSError, ValueError):
        built = None
    model = layout.model(action)
    record = {"action": "select_checkpoint",
              "artifacts": {model: {"sha256": artifact_sha256(root / model),
                                    "size": (root / model).stat().st_size}},
              "checkpoint": layout.checkpoint_file(action, source), "published_as": how,
              "selection": layout.selection(action),
              "taomake": __version__, "host": platform.node(),
              "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "trained_by": built}
    atomic_write(root / provenance_record(layout.folder(action), "select"),
                 json.dumps(record, indent=1, sort_keys=True) + "\n")


def find_provenance(root: Path, artifact: str) -> dict[str, Any]:
    """The provenance record whose artifacts include `artifact` (a path under results/)."""
    target = Path(artifact)
    target = (target if target.is_absolute() else Path.cwd() / target).resolve()
    folder, top = target.parent, root.resolve()
    while folder != folder.parent and (folder == top or top in folder.parents):
        for record_file in sorted((folder / RECORDS_DIR).glob(PROVENANCE_GLOB)):
            record = json.loads(record_file.read_text())
            for name in record["artifacts"]:
                if (root / name).resolve() == target:
                    return record
        folder = folder.parent
    raise UsageError(f"no provenance recorded for {artifact}: it is not an artifact taomake "
                     "built (model.pth, model.onnx, metrics.json, ...) or it was built before "
                     "provenance was recorded")
