"""A private SeaweedFS S3 server for fault tests (killed and restarted at will), apart from the
shared one scripts/services/s3.sh runs."""

from __future__ import annotations

import atexit
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ACCESS, SECRET = "private-ci", "private-ci-secret"


def find_weed() -> str | None:
    return shutil.which("weed") or next(
        (str(p) for p in [Path(sys.executable).parent / "weed"] if p.exists()), None)


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _free_ports(n: int) -> list[int]:
    """Ports p with p + 10000 free too: SeaweedFS puts each gRPC service there."""
    ports: list[int] = []
    while len(ports) < n:
        p = random.randrange(20000, 45000)
        if p not in ports and _free(p) and _free(p + 10000):
            ports.append(p)
    return ports


class SeaweedServer:
    def __init__(self, folder: Path, weed: str) -> None:
        self.folder, self.weed = folder, weed
        (folder / "data").mkdir(parents=True, exist_ok=True)
        self.s3_port, self.master, self.volume, self.filer = _free_ports(4)
        self.config = folder / "s3.json"
        self.config.write_text(json.dumps({"identities": [{
            "name": "ci", "credentials": [{"accessKey": ACCESS, "secretKey": SECRET}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
        self.proc: subprocess.Popen | None = None
        atexit.register(self.kill)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    @property
    def env(self) -> dict[str, str]:
        return {"AWS_ENDPOINT_URL_S3": self.endpoint, "AWS_ACCESS_KEY_ID": ACCESS,
                "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_DEFAULT_REGION": "us-east-1"}

    def client(self):
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=ACCESS,
                            aws_secret_access_key=SECRET, region_name="us-east-1",
                            config=Config(retries={"max_attempts": 1}, connect_timeout=2,
                                          read_timeout=10))

    def start(self, timeout: float = 60) -> float:
        """Start (or restart on the same data) and wait until S3 answers; returns seconds."""
        started = time.monotonic()
        log = open(self.folder / "weed.log", "ab")
        self.proc = subprocess.Popen(
            [self.weed, "server", f"-dir={self.folder / 'data'}", "-ip=127.0.0.1",
             "-ip.bind=127.0.0.1", f"-master.port={self.master}", "-master.telemetry=false",
             "-master.resumeState=false", "-master.volumeSizeLimitMB=256", "-volume.max=20",
             f"-volume.port={self.volume}", "-volume.preStopSeconds=1", "-filer",
             f"-filer.port={self.filer}", "-s3", f"-s3.port={self.s3_port}",
             "-s3.port.iceberg=0", "-s3.port.lance=0", f"-s3.config={self.config}"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
        log.close()
        while time.monotonic() - started < timeout:
            try:
                self.client().list_buckets()
                return time.monotonic() - started
            except Exception:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.3)
        tail = (self.folder / "weed.log").read_text(errors="replace")[-2000:]
        self.kill()
        raise RuntimeError(f"SeaweedFS did not start: {tail}")

    def wait_readable(self, bucket: str, key: str, timeout: float = 60) -> None:
        """After a restart S3 answers before the volume server has re-registered: wait until
        the object's bytes can be read again."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.client().get_object(Bucket=bucket, Key=key, Range="bytes=0-0")["Body"].read()
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)

    def kill(self) -> None:
        """SIGKILL the whole server (a graceful stop takes ~30 s)."""
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(10)
