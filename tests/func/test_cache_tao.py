"""The team cache's main path with the real TAO on CPU and a real S3 server (SeaweedFS): one
clone builds and publishes, another (another folder, user name and HOME) builds with no TAO
job at all and gets the same bytes and the same report; an inference edit there runs
inference only, and publishes it.  (The orchestration cases, with the fake TAO:
tests/func/test_cache.py, read-only on S3 included.)"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.func.test_e2e_tao import SNAKEMAKE, job_counts, project_text
from tests.helpers import make_project, work_budget

pytestmark = [pytest.mark.tao, pytest.mark.slow]

TAO_RULES = ("train", "evaluate", "export", "inference")
SHARED = ("train/model.pth", "train/curve.csv", "train/status.json", "export/model.onnx",
          "evaluate/metrics.json", "inference/summary.json")


def build(folder: Path, env: dict[str, str], user: str, tao_jobs: int = 4
          ) -> tuple[str, dict[str, int]]:
    home = folder.parent / f"home-{user}"
    home.mkdir(exist_ok=True)
    proc = subprocess.run([*SNAKEMAKE], cwd=folder, capture_output=True, text=True,
                          env={**os.environ, **env, "USER": user, "LOGNAME": user,
                               "HOME": str(home)},
                          timeout=work_budget(tao_jobs=tao_jobs, epochs=2))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    return out, job_counts(out)


def report_row(folder: Path) -> str:
    lines = (folder / "results/report/summary.md").read_text().splitlines()
    row = next(line for line in lines if line.startswith("| base "))
    cells = row.split("|")
    return "|".join(cells[:7])  # experiment .. epoch (not train minutes: not re-measured)


def test_a_second_clone_builds_from_the_first_ones_cache(tao_venv, s3_env, s3_bucket,
                                                         tmp_path):
    bucket, client = s3_bucket
    text = project_text(tao_venv) + f"\ncache:\n  url: s3://{bucket}/team-cache\n"
    first, second = tmp_path / "alice" / "paper", tmp_path / "bob" / "work" / "paper"
    make_project(first, text, copy_data=True)
    make_project(second, text, copy_data=True)

    out, counts = build(first, s3_env, "alice")
    assert all(counts.get(rule) == 1 for rule in TAO_RULES), counts
    assert out.count("published to the cache") == 4, out[-3000:]

    out, counts = build(second, s3_env, "bob")
    # each TAO rule's job ran `taomake run`, which fetched instead of starting TAO
    tao_logs = "".join((second / "results/base/logs" / f"{rule}.log").read_text()
                       for rule in TAO_RULES)
    assert "via the local runner" not in tao_logs, tao_logs[-2000:]
    assert tao_logs.count("from cache") == 4, tao_logs[-2000:]
    for rel in SHARED:
        assert (second / "results/base" / rel).read_bytes() == \
            (first / "results/base" / rel).read_bytes(), rel
    assert report_row(second) == report_row(first)
    record = json.loads((second / "results/base/train/.taomake/provenance-train.json")
                        .read_text())
    assert record["cache"]["state"] == "hit"
    assert record["cache"]["published"]["by"].startswith("alice@")
    assert "secret" not in json.dumps(record).lower()

    project = second / "project.yaml"
    project.write_text(project.read_text().replace("conf_threshold: 0.1",
                                                   "conf_threshold: 0.2"))
    out, counts = build(second, s3_env, "bob", tao_jobs=1)
    assert counts.get("inference") == 1 and not any(
        counts.get(rule) for rule in ("train", "evaluate", "export")), counts
    assert "inference (base): published to the cache" in out, out[-3000:]
    listed = client.list_objects_v2(Bucket=bucket, Prefix="team-cache/v1/manifests/inference/")
    assert listed["KeyCount"] == 2


def bucket_listing(client, bucket: str) -> dict[str, tuple[str, int]]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {o["Key"]: (o["ETag"], o["Size"]) for page in pages for o in page.get("Contents", [])}
