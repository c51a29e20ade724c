"""The team cache on the demo (issue 30): what a hit costs against the build it saves, what a
publish adds to each job, and what a re-publish of unchanged artifacts sends.

    bash scripts/services/s3.sh           # the local SeaweedFS server
    python benchmarks/cache.py [--project project.yaml] [--bucket NAME]

1. Clone A (a temp folder: project.yaml + data) builds the demo with real TAO on CPU and a
   read-write cache on S3; each TAO job publishes (its log says how long, how many bytes).
2. Clone B (another folder) builds the same project: every TAO job is a hit.
3. Every entry is published again from A's files (the library call a job makes): the bytes
   sent should be the manifests only.

Targets: a hit's fetch time (summed over B's TAO jobs) under 5 % of A's TAO time for the same
jobs; a re-publish sends nothing but manifests.  Exit 0 when both hold.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
ENV_FILE = Path(os.environ.get("TAOMAKE_S3_DIR", "/var/tmp/taomake-s3")) / "env"
TAO_ACTIONS = ("train", "evaluate", "export", "inference")
PUBLISHED = re.compile(r"published to the cache as \w+: (\d+) files, ([\d.]+) of ([\d.]+) MB "
                       r"sent in ([\d.]+) s")
FETCHED = re.compile(r"from cache \w+: (\d+) files, ([\d.]+) MB in ([\d.]+) s")


def s3_env() -> dict[str, str]:
    env = dict(os.environ)
    for line in ENV_FILE.read_text().splitlines() if ENV_FILE.exists() else ():
        key, _, value = line.partition("=")
        if key and value:
            env.setdefault(key.strip(), value.strip())
    return env


def clone(project: Path, folder: Path) -> None:
    folder.mkdir(parents=True)
    shutil.copy(project, folder / "project.yaml")
    (folder / "data").symlink_to(project.parent / "data")


def build(folder: Path, env: dict[str, str]) -> float:
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"),
                    "--cores", "all"], cwd=folder, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.monotonic() - started


def job_numbers(folder: Path) -> dict[str, dict[str, float]]:
    out = {}
    for action in TAO_ACTIONS:
        log = (folder / f"results/base/logs/{action}.log").read_text()
        run = json.loads((folder / f"results/base/{action}/.taomake/run-{action}.json")
                         .read_text())
        row: dict[str, float] = {"tao_s": run.get("tao_seconds") or 0.0}
        if m := PUBLISHED.search(log):
            row.update(files=int(m[1]), sent_mb=float(m[2]), mb=float(m[3]),
                       publish_s=float(m[4]))
        if m := FETCHED.search(log):
            row.update(files=int(m[1]), mb=float(m[2]), fetch_s=float(m[3]))
        out[action] = row
    return out


def republish(folder: Path, url: str) -> tuple[int, int]:
    """Publish every entry again from clone A's files: (bytes sent, manifest bytes)."""
    from taomake.compiler.actions import ACTIONS
    from taomake.compiler.plan import load_plan

    from taomake.cache import cache_settings
    from taomake.cache.entry import publish
    from taomake.cache.key import JobKey
    from taomake.cache.store import manifest_name, open_store

    plan = load_plan(folder / "project.yaml", write=False)
    store = open_store(cache_settings(plan.cache, {"TAOMAKE_CACHE_URL": url}).url,
                       plan.storage)
    exp = plan.experiments["base"]
    sent = manifests = 0
    for action in TAO_ACTIONS:
        record = json.loads((folder / exp.layout.provenance(action)).read_text())["cache"]
        manifest = json.loads(store.get_bytes(manifest_name(action, record["key"])))
        key = JobKey(action, manifest["parts"])
        assert key.digest == record["key"]
        done = publish(store, key, folder, exp.layout, ACTIONS[action],
                       exp.specs[action].data, {"job": f"{action} (benchmark)"})
        sent += done.sent
        manifests += len(store.get_bytes(manifest_name(action, key.digest)))
    return sent, manifests


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--project", type=Path, default=REPO / "project.yaml")
    ap.add_argument("--bucket", default=f"bench-cache-{uuid.uuid4().hex[:8]}")
    args = ap.parse_args(argv)
    env = s3_env()
    import boto3

    boto3.client("s3", endpoint_url=env.get("AWS_ENDPOINT_URL_S3"),
                 aws_access_key_id=env.get("AWS_ACCESS_KEY_ID"),
                 aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY"),
                 region_name="us-east-1").create_bucket(Bucket=args.bucket)
    url = f"s3://{args.bucket}/cache"
    env.update(TAOMAKE_CACHE_URL=url, TAOMAKE_CACHE_MODE="read-write")
    os.environ.update({k: v for k, v in env.items() if k.startswith("AWS_")})
    with tempfile.TemporaryDirectory(prefix="taomake-cache-bench-") as tmp:
        a, b = Path(tmp) / "a" / "demo", Path(tmp) / "b" / "demo"
        clone(args.project.resolve(), a)
        clone(args.project.resolve(), b)
        wall_a = build(a, env)
        wall_b = build(b, env)
        na, nb = job_numbers(a), job_numbers(b)
        sent, manifests = republish(a, url)
    shown = args.project.resolve()
    shown = shown.relative_to(REPO) if shown.is_relative_to(REPO) else shown
    print(f"demo ({shown}), cache {url} on {env.get('AWS_ENDPOINT_URL_S3')}")
    print(f"{'job':10} {'TAO s (A)':>10} {'publish s':>10} {'MB':>9} {'fetch s (B)':>12} "
          f"{'fetch/TAO':>10}")
    for action in TAO_ACTIONS:
        ra, rb = na[action], nb[action]
        ratio = rb.get("fetch_s", float("nan")) / ra["tao_s"] if ra["tao_s"] else float("nan")
        print(f"{action:10} {ra['tao_s']:10.1f} {ra.get('publish_s', float('nan')):10.1f} "
              f"{ra.get('mb', 0):9.1f} {rb.get('fetch_s', float('nan')):12.1f} "
              f"{ratio:10.1%}")
    tao = sum(na[x]["tao_s"] for x in TAO_ACTIONS)
    fetch = sum(nb[x].get("fetch_s", 0) for x in TAO_ACTIONS)
    publish_s = sum(na[x].get("publish_s", 0) for x in TAO_ACTIONS)
    print(f"{'all':10} {tao:10.1f} {publish_s:10.1f} "
          f"{sum(na[x].get('mb', 0) for x in TAO_ACTIONS):9.1f} {fetch:12.1f} "
          f"{fetch / tao:10.1%}")
    print(f"whole build: A {wall_a:.0f} s (TAO runs, publishes), B {wall_b:.0f} s (all hits; "
          "select, parity, detections and report still run)")
    print(f"re-publish of the 4 unchanged entries: {sent} bytes sent, manifests {manifests} "
          f"bytes ({'manifests only' if sent == manifests else 'MORE than manifests'})")
    hits = all("fetch_s" in nb[x] for x in TAO_ACTIONS)
    ok = hits and fetch / tao < 0.05 and sent == manifests
    print("targets met" if ok else "target MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
