"""Push an experiment's built artifacts to `upload.to/<experiment>/...` with their sha256.

An object that already holds the same bytes is not sent again: same size and the same ETag,
which S3 computes from the bytes it stored (the sha256 in the object's metadata is ours, written
by us, and proves nothing about the content: it is recorded, never trusted).  Re-running the
upload rule after an unrelated rebuild costs one HEAD per file.  `taomake preflight` (before
the first job) checks that the bucket exists and the credentials may write there.  The
receipt (`<results>/<exp>/upload.json`, the rule's output) lists URI, sha256, size and ETag.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from taomake.compiler.actions import ACTIONS
from taomake.compiler.files import atomic_write
from taomake.compiler.layout import Shared
from taomake.digests import artifact_sha256
from taomake.errors import RunError

from .s3 import S3Store


def artifact_files(exp, artifacts: list[str]) -> dict[str, list[str]]:
    """Upload name -> files (relative to the project) an experiment builds, for `artifacts`."""
    wanted: dict[str, list[str]] = {
        # the project's report (shared by experiments; unchanged files are not re-sent)
        "report": Shared(exp.results).report_tables()}
    for action, paths in exp.artifacts().items():
        kind = ACTIONS[action].upload_as if action in ACTIONS else ""
        if kind:  # a training's: its selected checkpoint
            wanted.setdefault(kind, []).extend(
                [exp.layout.model(action)] if ACTIONS[action].trains else paths)
    return {name: wanted[name] for name in artifacts if wanted.get(name)}


def upload_experiment(root: Path, exp, store: S3Store, receipt: Path) -> dict[str, Any]:
    base = exp.upload["to"].rstrip("/")
    to = f"{base}/{exp.name}"
    entries = []
    for name, files in artifact_files(exp, exp.upload["artifacts"]).items():
        for rel in files:
            path = root / rel
            if not path.is_file():
                raise RunError(f"cannot upload {rel}: it was not built")
            digest, size = artifact_sha256(path), path.stat().st_size
            # keep the path below the experiment folder: results/<exp>/export/model.onnx ->
            # <to>/<exp>/export/model.onnx
            inside = Path(rel).is_relative_to(exp.layout.root)
            uri = (f"{to}/{Path(rel).relative_to(exp.layout.root).as_posix()}" if inside
                   else f"{base}/{Path(rel).relative_to(exp.results).as_posix()}")
            existing = store.metadata(uri)
            if existing and existing[0].size == size and \
                    existing[0].etag == store.expected_etag(path):
                oid, sent = existing[0], False
            else:
                oid, sent = store.upload(path, uri, {"sha256": digest}), True
            entries.append({"artifact": name, "file": rel, "uri": uri, "sha256": digest,
                            "size": size, "etag": oid.etag, "sent": sent})
            print(f"taomake: {'uploaded' if sent else 'already there'}: {rel} -> {uri}",
                  flush=True)
    record = {"experiment": exp.name, "to": to, "files": entries}
    atomic_write(receipt, json.dumps(record, indent=1, sort_keys=True) + "\n")
    return record
