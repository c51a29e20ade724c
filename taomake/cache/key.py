"""A job's cache key: the same on every machine for the same work, different for any change
that could change what the job produces.

The key is the sha256 of its parts (canonical JSON), each kept with the published entry so a
miss can say which part differs from the nearest entry:

* `spec`: the spec as TAO reads it, its paths made location-independent (the experiment's
  folder becomes `@experiment`, the results folder `@results`), without the GPU ids (which
  of a node's GPUs ran it) and W&B (where it logged);
* `data`: the content identity of every data source the spec reads (taomake.data.identity:
  sha256 of the files, never a path or an ETag alone);
* `upstream`: the sha256 of every built artifact it consumes (the selected checkpoint, the
  ONNX...), so an upstream change misses downstream too;
* `runtime`: what runs TAO (`Runner.cache_runtime`: a container image's digest, or the local
  venv's TAO and torch versions and compat layer);
* `gpu` (TensorRT actions only): the GPU model and compute capability an engine is built for
  (precision and batch profile are in the spec).

Never in it: absolute paths, user or host names, times, runner or SLURM settings, log level.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from taomake.compiler.actions import Action
from taomake.compiler.layout import DataSource, Layout

KEY_FORMAT = "taomake-cache/1"  # a change in how keys or entries are made: a new namespace
# spec keys that do not change what TAO produces: which GPUs of the node, where W&B logs
IGNORED_SPEC_KEYS = ("gpu_ids", "wandb")


class NoKey(Exception):
    """The job cannot be keyed (an image without a digest, a data source without an
    identity): it runs, and is neither fetched nor published.  The text says why."""


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode()


def digest(value: Any) -> str:
    return hashlib.sha256(canonical(value)).hexdigest()


@dataclass(frozen=True)
class JobKey:
    action: str
    parts: dict[str, Any]

    @property
    def digest(self) -> str:
        return digest({"format": KEY_FORMAT, "action": self.action, "parts": self.parts})

    @property
    def short(self) -> str:
        return self.digest[:12]


def portable(value: Any, layout: Layout) -> Any:
    """`value` with every path into the results made location-independent."""
    if isinstance(value, dict):
        return {k: portable(v, layout) for k, v in value.items()
                if k not in IGNORED_SPEC_KEYS}
    if isinstance(value, list):
        return [portable(v, layout) for v in value]
    if isinstance(value, str):
        for prefix, name in ((layout.root, "@experiment"), (layout.results, "@results")):
            if value == prefix or value.startswith(prefix + "/"):
                return name + value[len(prefix):]
    return value


def data_part(root: Path, results: str, spec: dict[str, Any], sources: list[DataSource],
              layout: Layout) -> dict[str, Any]:
    """Each data path the spec reads -> its source's content identity."""
    from taomake.provenance import data_identities

    out = {}
    for path, entry in data_identities(root, results, spec, sources).items():
        if not entry.get("identity"):
            raise NoKey(f"{path} has no recorded identity yet (its data check has not run)")
        out[portable(path, layout)] = entry["identity"]
    return out


def upstream_part(root: Path, consumed: list[str], layout: Layout) -> dict[str, str]:
    from taomake.digests import artifact_sha256

    out = {}
    for path in consumed:
        if not (root / path).is_file():
            raise NoKey(f"{path}, which it reads, is missing")
        out[portable(path, layout)] = artifact_sha256(root / path)
    return out


def gpu_part() -> list[str]:
    """Model and compute capability of this machine's GPUs (`nvidia-smi`): a TensorRT engine
    runs only on the GPU kind it was built for."""
    import shutil

    if shutil.which("nvidia-smi") is None:
        raise NoKey("no nvidia-smi: the GPU an engine is built for is unknown")
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,compute_cap",
                              "--format=csv,noheader"], capture_output=True, text=True,
                             timeout=15).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise NoKey(f"nvidia-smi failed: {exc}") from exc
    gpus = sorted({line.strip() for line in out.splitlines() if line.strip()})
    if not gpus:
        raise NoKey("nvidia-smi lists no GPU")
    return gpus


def job_key(action: Action, spec: dict[str, Any], layout: Layout, *, root: Path,
            results: str, sources: list[DataSource], consumed: list[str],
            runtime: dict[str, Any] | None) -> JobKey:
    """The key of running `action` on `spec` here, or NoKey saying why there is none."""
    if not runtime:
        raise NoKey("the runner cannot identify its TAO runtime (no image digest)")
    parts: dict[str, Any] = {
        "spec": portable(spec, layout),
        "data": data_part(root, results, spec, sources, layout),
        "upstream": upstream_part(root, consumed, layout),
        "runtime": runtime,
    }
    if action.needs_gpu:
        parts["gpu"] = gpu_part()
    return JobKey(action.name, parts)


__all__ = ["IGNORED_SPEC_KEYS", "KEY_FORMAT", "JobKey", "NoKey", "canonical", "digest",
           "job_key", "portable"]
