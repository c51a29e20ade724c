"""Staging throughput from S3: taomake's download (temp name, IfMatch on the planned ETag, size
check, atomic rename, byte ledger) against a plain boto3 `download_file` of the same object,
plus the extraction time and the cache-hit time of a second `stage` (nothing fetched).

    bash scripts/services/s3.sh          # the local SeaweedFS server
    python benchmarks/staging.py [--mb 200] [--runs 3] [--extract-only]

Credentials and endpoint come from the server's env file (or the AWS_* environment).  Target:
taomake's download throughput >= 0.9 x boto3's.  First, the extraction comparison on local
archives (tar, tar.gz, zip of ~315 MB): taomake's checked, member-by-member extraction against
the reference it replaced (`tarfile` with the `data` filter, `zipfile.extractall`); target
<= 1.2 x.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import sys
import tarfile
import tempfile
import time
import uuid
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from taomake.compiler.layout import DataSource, Shared

from taomake.data.archive import extract_archive
from taomake.data.identity import refresh_stamps
from taomake.data.s3 import S3Settings, S3Store
from taomake.data.stage import Stager, downloaded_bytes

ENV_FILE = Path(os.environ.get("TAOMAKE_S3_DIR", "/var/tmp/taomake-s3")) / "env"


def load_env() -> None:
    if ENV_FILE.exists():
        for line in ENV_FILE.read_text().splitlines():
            key, _, value = line.partition("=")
            if key and value:
                os.environ.setdefault(key.strip(), value.strip())


def archive_bytes(mb: int) -> bytes:
    """An images.tar of ~mb MB of random (incompressible) 4 MB 'images'."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for i in range(max(1, mb // 4)):
            payload = os.urandom(4 * 1024 * 1024)
            info = tarfile.TarInfo(f"images/img_{i:04d}.bin")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return buf.getvalue()


def reference_extract(archive: Path, dest: Path) -> None:
    """What taomake did before it wrote members itself: read the member list, then Python's
    own extraction with the `data` filter (zip: `extractall`)."""
    if archive.name.endswith(".zip"):
        with zipfile.ZipFile(archive) as zf:
            zf.infolist()
            zf.extractall(dest)
    else:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            tar.extractall(dest, members=members, filter="data")


def extraction(mb: int, runs: int) -> list[tuple[str, float, float, float]]:
    """Local archives of ~mb MB (random 4 MB 'images', incompressible, like JPEGs):
    (format, reference seconds, taomake seconds, ratio), medians, interleaved."""
    rows = []
    body = archive_bytes(mb)
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR", "/var/tmp")) as tmp:
        root = Path(tmp)
        tar = root / "images.tar"
        tar.write_bytes(body)
        tgz = root / "images.tar.gz"
        with tarfile.open(tar) as src, tarfile.open(tgz, "w:gz", compresslevel=1) as dst:
            for info in src:
                dst.addfile(info, src.extractfile(info))
        zipped = root / "images.zip"
        with tarfile.open(tar) as src, zipfile.ZipFile(zipped, "w") as dst:
            for info in src:
                dst.writestr(info.name, src.extractfile(info).read())
        for archive in (tar, tgz, zipped):
            ref, ours = [], []
            for run in range(runs):
                order = ("ref", "ours") if run % 2 == 0 else ("ours", "ref")
                for who in order:
                    dest = root / f"out-{who}-{run}"
                    t = time.perf_counter()
                    if who == "ref":
                        reference_extract(archive, dest)
                        ref.append(time.perf_counter() - t)
                    else:
                        extract_archive(archive, dest)
                        ours.append(time.perf_counter() - t)
                    shutil.rmtree(dest)
            r, o = statistics.median(ref), statistics.median(ours)
            rows.append((archive.name, r, o, o / r))
    return rows


def print_extraction(mb: int, runs: int) -> bool:
    rows = extraction(mb, runs)
    print(f"extraction of a local ~{mb} MB archive, {runs} runs, median (target: taomake <= "
          "1.2 x the reference)")
    print(f"{'archive':16} {'reference s':>12} {'taomake s':>10} {'ratio':>7}")
    for name, r, o, ratio in rows:
        print(f"{name:16} {r:12.3f} {o:10.3f} {ratio:7.2f}")
    return all(ratio <= 1.2 for *_, ratio in rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--extract-mb", type=int, default=315,
                    help="size of the local archives of the extraction comparison")
    ap.add_argument("--extract-only", action="store_true",
                    help="only the extraction comparison (no S3 server needed)")
    args = ap.parse_args()
    extract_ok = print_extraction(args.extract_mb, min(args.runs, 5))
    if args.extract_only:
        return 0 if extract_ok else 1
    print()
    load_env()

    store = S3Store(S3Settings())
    client = store.client
    bucket = f"bench-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=bucket)
    uri = f"s3://{bucket}/ds/images.tar"
    body = archive_bytes(args.mb)
    client.put_object(Bucket=bucket, Key="ds/images.tar", Body=body)
    size_mb = len(body) / 1e6
    boto, ours, extract, hit = [], [], [], []
    try:
        with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR", "/var/tmp")) as tmp:
            root = Path(tmp)
            oid = store.head(uri)
            for run in range(args.runs):
                # alternate who goes first: the server shares this machine's 2 cores and cache
                order = ("boto3", "taomake") if run % 2 == 0 else ("taomake", "boto3")
                for who in order:
                    dest = root / f"{who}-{run}.tar"
                    t = time.perf_counter()
                    if who == "boto3":
                        client.download_file(bucket, "ds/images.tar", str(dest),
                                             Config=store.transfer_config)
                        boto.append(time.perf_counter() - t)
                    else:
                        store.download(uri, dest, oid)
                        ours.append(time.perf_counter() - t)
                    dest.unlink()

                proj = root / f"proj-{run}"
                source = DataSource(uri, "images")
                stager = Stager(proj, "results", store)
                t = time.perf_counter()
                # the build's first look downloads the object to learn its content (the
                # members' digest); staging extracts that download
                refresh_stamps(proj, "results", [source], store)
                first = stager.stage(source)
                extract.append(time.perf_counter() - t)
                assert not first.reused and first.downloaded == 0
                assert downloaded_bytes(proj / Shared("results").transfers) == len(body)
                t = time.perf_counter()
                refresh_stamps(proj, "results", [source], store)  # what a build does first
                second = stager.stage(source)
                hit.append(time.perf_counter() - t)
                assert second.reused and second.downloaded == 0
    finally:
        for o in client.list_objects_v2(Bucket=bucket).get("Contents", []):
            client.delete_object(Bucket=bucket, Key=o["Key"])
        client.delete_bucket(Bucket=bucket)

    def mbps(times: list[float]) -> float:
        return size_mb / statistics.median(times)

    rows = [("boto3 download_file", statistics.median(boto), mbps(boto)),
            ("taomake download", statistics.median(ours), mbps(ours)),
            ("taomake stamp+stage (download, digest, extract)", statistics.median(extract),
             mbps(extract)),
            ("taomake stage, unchanged (cache hit)", statistics.median(hit), float("nan"))]
    print(f"object: {size_mb:.0f} MB images.tar, {args.runs} runs, median; "
          f"endpoint {os.environ.get('AWS_ENDPOINT_URL_S3', 'AWS')}")
    print(f"{'':48} {'seconds':>9} {'MB/s':>9}")
    for name, secs, rate in rows:
        print(f"{name:48} {secs:9.3f} {rate:9.1f}")
    ratio = mbps(ours) / mbps(boto)
    print(f"throughput ratio taomake/boto3: {ratio:.2f} (target >= 0.9)")
    print(f"cache hit: {statistics.median(hit) * 1000:.1f} ms (a HEAD and a stamp compare)")
    return 0 if ratio >= 0.9 and extract_ok else 1


if __name__ == "__main__":
    sys.exit(main())
