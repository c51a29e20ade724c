"""Which host paths a containerised TAO job needs, derived from its spec.

Inside a container the project folder appears at the same absolute path and is the working
directory, so the spec's relative paths resolve exactly as on the host.  Only what the spec
names is mounted: its inputs read-only, the experiment's results folder read-write, and the
job's own spec copy.  Nothing else of the host is visible.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from taomake.errors import RunError

# spec keys whose string values are file system paths (docs/tao-notes.md §1)
PATH_KEYS = {"image_dir", "json_file", "classmap", "pretrained_backbone_path",
             "pretrained_model_path", "checkpoint", "onnx_file", "trt_engine", "model_path",
             "pretrained_teacher_model_path", "cal_image_dir", "cal_cache_file",
             "timing_cache", "results_dir"}


@dataclass(frozen=True, order=True)
class Mount:
    source: str  # absolute host path
    target: str  # absolute container path (== source: paths are the same inside)
    read_only: bool


def spec_paths(node: Any, key: str = "") -> list[str]:
    """Every path-valued string in a spec (lists included)."""
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in spec_paths(v, k)]
    if isinstance(node, list):
        return [p for v in node for p in spec_paths(v, key)]
    if key in PATH_KEYS and isinstance(node, str) and node:
        return [node]
    return []


def _within(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
        return True
    except ValueError:
        return False


def job_mounts(spec: dict[str, Any], workdir: Path, results_dir: str,
               spec_copy: Path) -> list[Mount]:
    """Read-only inputs, the read-write experiment results folder, and the spec copy.

    A path that does not exist yet (an output such as the ONNX file) must lie inside the
    results folder; existing inputs elsewhere are mounted read-only, file or folder."""
    workdir = workdir.resolve()
    rw = (workdir / results_dir).resolve()
    mounts = {str(rw): Mount(str(rw), str(rw), False)}
    for raw in spec_paths(spec):
        path = Path(os.path.normpath(workdir / raw))
        if _within(path, rw):
            continue
        if not path.exists():
            raise RunError(f"{raw}: named in the spec but missing on the host, and outside "
                           f"{results_dir} (the only writable mount); fix the path in "
                           "project.yaml or build what produces it first")
        mounts.setdefault(str(path), Mount(str(path), str(path), True))
    spec_copy = spec_copy.resolve()
    if not _within(spec_copy, rw):
        mounts[str(spec_copy)] = Mount(str(spec_copy), str(spec_copy), True)
    # drop read-only mounts already covered by another mount (parent folder)
    keep = []
    for m in sorted(mounts.values()):
        if not any(o is not m and _within(Path(m.source), Path(o.source)) and
                   (o.read_only or not m.read_only) for o in keep):
            keep.append(m)
    return keep
