"""The docker runner: the container it asks for (no daemon), and real runs on the local engine
(scripts/services/docker.sh + scripts/services/tao-cpu-image.sh)."""

from __future__ import annotations

import io
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
from taomake.compiler.actions import ACTIONS
from taomake.compiler.errors import UsageError
from taomake.compiler.hardware import DockerRunner as DockerSettings

from taomake.errors import RunError
from taomake.runners import TaoJob
from taomake.runners.docker import DockerRunner, User
from taomake.runners.mounts import Mount
from tests.helpers import IN_CI, ONE_THREAD, REPO, SMOKE_PROJECT, make_project, work_budget

IMAGE = os.environ.get("TAO_CPU_IMAGE", "taomake/tao-cpu-test:1")
SECRET = "s3cr3t-value-never-logged"


def gpu_job(tmp_path: Path) -> TaoJob:
    spec = tmp_path / "results/base/train/.taomake/job-train.yaml"
    return TaoJob(action=ACTIONS["train"], spec=spec, results_dir="results/base",
                  workdir=tmp_path, image="nvcr.io/nvidia/tao/tao-toolkit:6.26.3-pyt",
                  env_names=("WANDB_API_KEY", "NOT_SET_ANYWHERE"), gpus=2, gpu_ids=(2, 3),
                  shm_size="8g", extra_env={"TAO_LOGGING_LEVEL": "INFO"},
                  mounts=(Mount(str(tmp_path / "data"), str(tmp_path / "data"), True),
                          Mount(str(tmp_path / "results/base"), str(tmp_path / "results/base"),
                                False)),
                  label="demo/base/train")


def test_container_config_for_a_gpu_job(tmp_path):
    runner = DockerRunner(DockerSettings(mounts=["/opt/venv:/opt/venv"]))
    job = gpu_job(tmp_path)
    user = User(1000, 1000, (44, 105), "alice")
    kw = runner.create_kwargs(job, user, {"WANDB_API_KEY": SECRET, "OTHER": "x"})
    assert kw["image"] == job.image
    assert kw["command"] == ["rtdetr", "train", "-e", str(job.spec), "results_dir=results/base"]
    [request] = kw["device_requests"]
    assert request["DeviceIDs"] == ["2", "3"] and request["Capabilities"] == [["gpu"]]
    assert "Count" not in request or request["Count"] in (None, 0)
    assert kw["volumes"] == {
        str(tmp_path / "data"): {"bind": str(tmp_path / "data"), "mode": "ro"},
        str(tmp_path / "results/base"): {"bind": str(tmp_path / "results/base"), "mode": "rw"},
        "/opt/venv": {"bind": "/opt/venv", "mode": "ro"}}
    assert kw["user"] == "1000:1000" and kw["group_add"] == ["44", "105"]
    assert kw["working_dir"] == str(tmp_path)
    env = kw["environment"]
    assert env["USER"] == env["LOGNAME"] == "alice"
    home = tmp_path / "results/base/.taomake/container-home"
    assert env["HOME"] == str(home)
    for var in ("XDG_CACHE_HOME", "HF_HOME", "TORCH_HOME", "TRITON_CACHE_DIR",
                "TORCHINDUCTOR_CACHE_DIR", "MPLCONFIGDIR"):
        assert env[var].startswith(str(home))
    assert env["WANDB_API_KEY"] == SECRET and "OTHER" not in env
    assert "NOT_SET_ANYWHERE" not in env and env["TAO_LOGGING_LEVEL"] == "INFO"
    assert kw["labels"]["taomake.job"] == "demo/base/train"
    assert kw["labels"]["taomake.project"] == str(tmp_path)
    assert kw["network_mode"] == "none" and kw["shm_size"] == "8g" and kw["init"] is True
    assert kw["extra_hosts"] == {kw["hostname"]: "127.0.0.1"}  # torchrun resolves its name
    assert {u["Name"]: u["Soft"] for u in kw["ulimits"]} == {"memlock": -1, "stack": 67108864}
    line = runner.describe(job, kw)
    assert SECRET not in line and "WANDB_API_KEY" in line and "device=2,3" in line
    assert SECRET not in repr(kw["labels"])


def test_cpu_job_has_no_gpu_request_and_tao_bin(tmp_path):
    job = gpu_job(tmp_path)
    job = TaoJob(**{**job.__dict__, "gpus": 0, "gpu_ids": ()})
    runner = DockerRunner(DockerSettings(tao_bin="/venv/bin", ipc_host=True))
    kw = runner.create_kwargs(job, User(1, 1), {})
    assert "device_requests" not in kw
    assert kw["ipc_mode"] == "host" and "shm_size" not in kw
    assert kw["command"][0] == "/venv/bin/rtdetr"
    assert kw["environment"]["PATH"].startswith("/venv/bin:")


def test_root_with_writable_mounts_is_refused(tmp_path):
    job = gpu_job(tmp_path)
    with pytest.raises(UsageError, match="allow_root"):
        DockerRunner().check_user(job, User(0, 0))
    DockerRunner(DockerSettings(allow_root=True)).check_user(job, User(0, 0))
    DockerRunner().check_user(job, User(1000, 1000))


def test_bad_extra_mount_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="host/path"):
        # (project.yaml's schema refuses it first; the runner checks again)
        DockerRunner(DockerSettings.model_construct(mounts=["relative:/x"])).create_kwargs(
            gpu_job(tmp_path), User(1, 1), {})


# --------------------------------------------------------------------------- real daemon

FAKE_RTDETR = """#!/bin/sh
echo "fake rtdetr $*"
echo "user $(id -u):$(id -g) home $HOME secret-set=${WANDB_API_KEY:+yes}"
echo to-stderr >&2
touch "$HOME/../written-by-container"
sleep "${FAKE_SLEEP:-0}" &
wait $!
exit "${FAKE_EXIT:-0}"
"""


@pytest.fixture
def test_image(docker_client):
    import docker

    try:
        docker_client.images.get(IMAGE)
    except docker.errors.ImageNotFound:
        pytest.fail(f"{IMAGE} missing: run `bash scripts/services/tao-cpu-image.sh`")
    return IMAGE


def fake_job(tmp_path: Path, image: str, gpus: int = 0, label: str = "",
             stop_timeout: int = 2, **env) -> tuple[DockerRunner, TaoJob]:
    bindir = tmp_path / "fakebin"
    bindir.mkdir(exist_ok=True)
    (bindir / "rtdetr").write_text(FAKE_RTDETR)
    (bindir / "rtdetr").chmod(0o755)
    results = tmp_path / "results/base"
    (results / "train/.taomake").mkdir(parents=True, exist_ok=True)
    tag = label or f"test/{tmp_path.name}/{time.monotonic_ns()}"
    job = TaoJob(action=ACTIONS["train"], spec=results / "train/.taomake/job-train.yaml",
                 results_dir="results/base", workdir=tmp_path, image=image,
                 env_names=("WANDB_API_KEY",), gpus=gpus, gpu_ids=tuple(range(gpus)),
                 shm_size="64m", extra_env={k: str(v) for k, v in env.items()},
                 mounts=(Mount(str(results), str(results), False),), label=tag)
    runner = DockerRunner(DockerSettings(mounts=[f"{bindir}:{bindir}"], tao_bin=str(bindir),
                                         allow_root=True, stop_timeout=stop_timeout,
                                         ulimits={}))
    return runner, job


def containers_of(client, job: TaoJob) -> list[str]:
    """The states ("created", "running", "exited", ...) of the job's containers."""
    return container_states(client, f"taomake.job={job.label}")


def container_states(client, label: str, all: bool = True) -> list[str]:
    """The states of the containers carrying `label`, from one list request.  (The high-level
    `containers.list` inspects each listed container in a second request, which fails with
    404 when the daemon lists a container it cannot inspect yet or any more: one being
    created or removed.)"""
    return [c["State"] for c in client.api.containers(all=all, filters={"label": label})]


@pytest.mark.docker
@pytest.mark.parametrize("code", [0, 3])
def test_real_run_streams_logs_and_returns_exit_code(docker_client, test_image, tmp_path,
                                                     monkeypatch, code):
    monkeypatch.setenv("WANDB_API_KEY", SECRET)
    runner, job = fake_job(tmp_path, test_image, FAKE_EXIT=code)
    log = io.BytesIO()
    ticks = []
    assert runner.run(job, log, on_tick=lambda: ticks.append(1)) == code
    text = log.getvalue().decode()
    assert f"fake rtdetr train -e {job.spec} results_dir=results/base" in text
    assert "to-stderr" in text and "secret-set=yes" in text and SECRET not in text
    assert f"user {os.getuid()}:{os.getgid()}" in text
    assert ticks and containers_of(docker_client, job) == []
    assert (tmp_path / "results/base/.taomake/written-by-container").stat().st_uid == os.getuid()


@pytest.mark.docker
def test_missing_image_is_a_clear_error_without_pull(docker_client, tmp_path, monkeypatch):
    image = "taomake/never-built:0"
    runner, job = fake_job(tmp_path, image)
    pulls = []
    monkeypatch.setattr(docker_client.api, "pull", lambda *a, **k: pulls.append(a))
    monkeypatch.setattr(docker_client.images, "pull", lambda *a, **k: pulls.append(a))
    monkeypatch.setattr(DockerRunner, "client", lambda self: docker_client)
    with pytest.raises(UsageError, match=f"docker pull {image}"):
        runner.run(job, io.BytesIO())
    assert pulls == [] and containers_of(docker_client, job) == []


@pytest.mark.docker
def test_gpu_request_without_nvidia_runtime(docker_client, test_image, tmp_path):
    if "nvidia" in (docker_client.info().get("Runtimes") or {}):
        pytest.skip("this host has the NVIDIA runtime")
    runner, job = fake_job(tmp_path, test_image, gpus=1)
    with pytest.raises(RunError, match="no NVIDIA container runtime.*nvidia-container-toolkit"):
        runner.run(job, io.BytesIO())
    assert containers_of(docker_client, job) == []


@pytest.mark.docker
def test_sigterm_stops_and_removes_the_container(docker_client, test_image, tmp_path):
    label = f"test/sigterm/{time.monotonic_ns()}"
    # the fake rtdetr has no SIGTERM handler, like TAO: as PID 1 it would ignore `docker
    # stop`'s SIGTERM until the SIGKILL 20 s later; under an init it stops at once
    runner, job = fake_job(tmp_path, test_image, label=label, stop_timeout=20, FAKE_SLEEP=300)
    script = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from taomake.errors import Interrupted
        from tests.func.test_docker_runner import fake_job
        runner, job = fake_job(Path({str(tmp_path)!r}), {test_image!r}, label={label!r},
                               stop_timeout=20, FAKE_SLEEP=300)
        try:
            with open({str(tmp_path / 'log')!r}, 'ab') as log:
                runner.run(job, log)
        except Interrupted as ex:
            print('interrupted', ex.signum)
            sys.exit(130)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + work_budget(fake_jobs=1)
    try:
        while "running" not in containers_of(docker_client, job):
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "container never started"
            time.sleep(0.2)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=runner.settings.stop_timeout + 30)
    finally:  # a failed check must not leave the runner (and its 300-s container) behind
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=runner.settings.stop_timeout + 30)
    assert proc.returncode == 130, out
    assert time.monotonic() - started < runner.settings.stop_timeout / 2, out  # not the SIGKILL
    assert containers_of(docker_client, job) == []


# --------------------------------------------------------------------------- end to end


def docker_project_text(venv: Path, base: Path, allow_root: bool) -> str:
    text = SMOKE_PROJECT.read_text()
    text = text.replace('  version: "6.26.3"', f'  version: "6.26.3"\n  pytorch_image: {IMAGE}')
    settings = (f"    docker:\n      tao_bin: {venv}/bin\n      stop_timeout: 5\n"
                f"      allow_root: {str(allow_root).lower()}\n      ulimits: {{}}\n"
                f"      mounts: [\"{venv}:{venv}:ro\", \"{base}:{base}:ro\"]\n")
    return text.replace("    kind: local\n", "    kind: docker\n" + settings)


def ci_user():
    """The non-root user the end-to-end run uses when we are root (tao-cpu-image.sh makes it);
    None: run as ourselves (already non-root, or root with allow_root when it is missing)."""
    if os.getuid() != 0:
        return None
    name = os.environ.get("TAOMAKE_CI_USER", "taomake-ci")
    try:
        return pwd.getpwnam(name)
    except KeyError:
        if IN_CI:
            pytest.fail(f"user {name} missing: run `bash scripts/services/tao-cpu-image.sh`")
        return None


@pytest.mark.docker
@pytest.mark.tao
@pytest.mark.slow
def test_demo_pipeline_in_docker(docker_client, test_image, tao_venv, tmp_path):
    base = Path(os.path.realpath(tao_venv / "bin/python")).parent.parent
    user = ci_user()
    top = Path(tempfile.mkdtemp(prefix="taomake-docker-e2e-")) if user else tmp_path
    folder = top / "demo"
    text = docker_project_text(tao_venv, base, allow_root=os.getuid() == 0 and user is None)
    # a team cache: keyed by the image's digest and the TAO mounted into it
    make_project(folder, text + f"\ncache:\n  url: file://{top}/cache\n", copy_data=True)
    argv = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), *ONE_THREAD,
            "--cores", "2"]
    uid = os.getuid()
    if user:  # the project belongs to that user; the venv is only mounted
        uid = user.pw_uid
        for path in [top, *top.rglob("*")]:
            os.chown(path, user.pw_uid, user.pw_gid, follow_symlinks=False)
        argv = ["runuser", "-u", user.pw_name, "--", "env", f"HOME={user.pw_dir}",
                f"USER={user.pw_name}", f"LOGNAME={user.pw_name}", *argv]
    try:
        proc = subprocess.run(argv, cwd=folder, capture_output=True, text=True,
                              timeout=work_budget(tao_jobs=6, epochs=2))
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, out[-4000:]
        results = folder / "results/base"
        for path in ("train/model.pth", "evaluate/metrics.json", "export/model.onnx",
                     "inference/labels", ".taomake/container-home/.cache/torch"):
            assert (results / path).stat().st_uid == uid, path
        assert sorted((results / "inference/labels").glob("*.txt"))
        log = (results / "logs/train.log").read_text()
        assert "via the docker runner" in log and f"image {IMAGE}" in log
        assert f"user {uid}:" in log
        assert out.count("published to the cache") == 4, out[-3000:]
        record = json.loads((results / "train/.taomake/provenance-train.json").read_text())
        assert record["cache"]["state"] == "published"
        manifest = next((top / "cache/v1/manifests/train").glob("*.json"))
        runtime = json.loads(manifest.read_text())["parts"]["runtime"]
        assert runtime["image"].startswith("sha256:") and runtime["tao_bin"]["tao"]
        assert container_states(docker_client, f"taomake.project={folder}") == []
    finally:
        if user:
            shutil.rmtree(top, ignore_errors=True)


def fake_project(folder: Path) -> Path:
    """The demo project on the docker runner with the fake `rtdetr` (FAKE_EXIT / FAKE_SLEEP
    reach it by name through hardware.runner.env)."""
    bindir = folder.parent / "fakebin"
    bindir.mkdir(parents=True, exist_ok=True)
    (bindir / "rtdetr").write_text(FAKE_RTDETR)
    (bindir / "rtdetr").chmod(0o755)
    text = SMOKE_PROJECT.read_text()
    text = text.replace('  version: "6.26.3"', f'  version: "6.26.3"\n  pytorch_image: {IMAGE}')
    text = text.replace("    kind: local\n", (
        "    kind: docker\n    retries: 0\n    env: [FAKE_EXIT, FAKE_SLEEP]\n"
        f"    docker:\n      tao_bin: {bindir}\n      stop_timeout: 3\n      ulimits: {{}}\n"
        f"      allow_root: true\n      mounts: [\"{bindir}:{bindir}\"]\n"))
    return make_project(folder, text, copy_data=True)


SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--cores", "1",
             "results/base/train/curve.csv"]


@pytest.mark.docker
def test_nonzero_exit_fails_the_job_through_snakemake(docker_client, test_image, tmp_path):
    folder = tmp_path / "demo"
    fake_project(folder)
    proc = subprocess.run(SNAKEMAKE, cwd=folder, capture_output=True, text=True,
                          timeout=work_budget(fake_jobs=3),
                          env={**os.environ, "FAKE_EXIT": "3"})
    assert proc.returncode != 0
    log = (folder / "results/base/logs/train.log").read_text()
    assert "fake rtdetr train" in log and "TAO exited with code 3" in log, log[-2000:]
    assert "FAKE_EXIT" in log  # named, and its value never matters to the log
    assert container_states(docker_client, f"taomake.project={folder}") == []


@pytest.mark.docker
def test_sigterm_to_snakemake_removes_the_container(docker_client, test_image, tmp_path):
    folder = tmp_path / "demo"
    fake_project(folder)
    proc = subprocess.Popen(SNAKEMAKE, cwd=folder, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True,
                            env={**os.environ, "FAKE_SLEEP": "300"})
    deadline = time.monotonic() + work_budget(fake_jobs=2)
    try:
        # this build's containers (another test may run one of its own meanwhile)
        while not container_states(docker_client, f"taomake.project={folder}", all=False):
            assert proc.poll() is None and time.monotonic() < deadline, "no container started"
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=60) != 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    # removal finishes asynchronously in the daemon (and on a loaded machine a job that was
    # being started as the signal came is stopped a moment later): wait for it, bounded
    deadline = time.monotonic() + work_budget(fake_jobs=1)
    while container_states(docker_client, f"taomake.project={folder}"):
        assert time.monotonic() < deadline, "a container outlived the build"
        time.sleep(0.5)
    log = (folder / "results/base/logs/train.log").read_text()
    assert "interrupted by SIGTERM" in log


@pytest.mark.docker
def test_a_container_whose_taomake_died_is_removed_by_the_next_run(docker_client, test_image,
                                                                   tmp_path):
    """kill -9 of `taomake run` (the OOM killer) leaves its container training: nothing of
    taomake's is left to stop it.  The next run of the job finds it by its labels and stops
    and removes it before it starts its own (before: a second container trained beside it)."""
    from tests.helpers import processes_matching

    folder = tmp_path / "demo"
    fake_project(folder)
    proc = subprocess.Popen(SNAKEMAKE, cwd=folder, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True,
                            env={**os.environ, "FAKE_SLEEP": "300"})
    label = f"taomake.project={folder}"
    deadline = time.monotonic() + work_budget(fake_jobs=2)
    try:
        while not container_states(docker_client, label, all=False):
            assert proc.poll() is None and time.monotonic() < deadline, "no container started"
            time.sleep(0.2)
        [runner] = [int(p.split(":")[0]) for p in processes_matching(str(folder))
                    if " run train " in p]
        os.kill(runner, signal.SIGKILL)
        assert proc.wait(timeout=60) != 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    time.sleep(2)
    assert container_states(docker_client, label) == ["running"]  # orphaned, still training
    rerun = subprocess.run(SNAKEMAKE, cwd=folder, capture_output=True, text=True,
                           timeout=work_budget(fake_jobs=3), env={**os.environ, "FAKE_SLEEP": "0"})
    log = (folder / "results/base/logs/train.log").read_text()
    assert "took over the lease of results/base/train" in log, rerun.stderr[-3000:]
    removal = log.index(", left running by an earlier run of this job")
    # (Snakemake starts the rerun's log afresh: this is the rerun's alone)
    assert "removed container " in log[:removal] and log.count("fake rtdetr train") == 1
    assert log.index("fake rtdetr train") > removal  # the new one started after the removal
    assert container_states(docker_client, label) == []
