"""Run TAO in a Docker container through the Docker SDK (docs/tao-notes.md §10).

The container sees exactly the job's mounts (inputs read-only, the experiment's results folder
read-write, the spec copy) at the same paths as on the host, runs as the invoking user, has no
network, and never outlives this process: a signal or an error stops and removes it.
Secret environment variables are passed by name: their values go to the Docker daemon only,
never into a log, a spec or a label.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from taomake.compiler.errors import UsageError
from taomake.compiler.hardware import DockerRunner as DockerSettings
from taomake.errors import RunError

from ..errors import Interrupted
from ..process import FORWARDED, die_with_parent
from . import TaoJob
from .container_env import container_env, make_env_dirs, user_name

if TYPE_CHECKING:
    from ..lease import Lease

SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NO_GPU_RUNTIME = "could not select device driver"


@dataclass(frozen=True)
class User:
    """Who the container runs as (the invoking user, by default)."""

    uid: int
    gid: int
    groups: tuple[int, ...] = ()
    name: str = "taomake"

    @classmethod
    def current(cls) -> User:
        uid, gid = os.getuid(), os.getgid()
        return cls(uid, gid, tuple(g for g in os.getgroups() if g != gid), user_name())


def parse_mount(text: str) -> tuple[str, str]:
    """'host:container[:ro]' -> (host, container); extra mounts are always read-only."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "ro") or \
            not all(p.startswith("/") for p in parts[:2]):
        raise UsageError(f"hardware.runner.docker.mounts: {text!r} is not "
                         "'/host/path:/container/path[:ro]'")
    return parts[0], parts[1]


@dataclass
class DockerRunner:
    """The docker runner: project.yaml's `hardware.runner.docker` settings as validated (their
    help is in `compiler.hardware.DockerRunner`), plus what tests may change."""

    settings: DockerSettings = field(default_factory=DockerSettings)
    network: bool = field(default=False, metadata={
        "help": "give the container the default bridge network (off: network_mode=none)"})
    name: str = "docker"

    # ------------------------------------------------------------------ pure parts

    def command(self, job: TaoJob) -> list[str]:
        argv = job.tao_argv()
        if self.settings.tao_bin:
            argv[0] = f"{self.settings.tao_bin.rstrip('/')}/{argv[0]}"
        return argv

    def environment(self, job: TaoJob, user: User, environ: Mapping[str, str]) -> dict[str, str]:
        env = container_env(job, user.name)
        if self.settings.tao_bin:
            env["PATH"] = f"{self.settings.tao_bin.rstrip('/')}:{SYSTEM_PATH}"
        for name in job.env_names:  # by name: the value goes to the daemon only
            if name in environ:
                env[name] = environ[name]
        return env

    def volumes(self, job: TaoJob) -> dict[str, dict[str, str]]:
        vols = {m.source: {"bind": m.target, "mode": "ro" if m.read_only else "rw"}
                for m in job.mounts}
        for text in self.settings.mounts:
            host, target = parse_mount(os.path.expanduser(text))
            vols.setdefault(host, {"bind": target, "mode": "ro"})
        return vols

    def create_kwargs(self, job: TaoJob, user: User,
                      environ: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Everything passed to `client.containers.create` (no daemon needed)."""
        from docker.types import DeviceRequest, Ulimit

        kwargs: dict[str, Any] = {
            "image": job.image,
            "command": self.command(job),
            "working_dir": str(job.workdir),
            "user": f"{user.uid}:{user.gid}",
            "group_add": [str(g) for g in user.groups],
            "environment": self.environment(job, user, os.environ if environ is None
                                            else environ),
            "volumes": self.volumes(job),
            # which build a container belongs to: `docker ps --filter
            # label=taomake.project=<project folder>` lists one project's jobs
            "labels": {**self.job_labels(job), "taomake.runner": self.name},
            "ulimits": [Ulimit(name=k, soft=v, hard=v) for k, v in self.settings.ulimits.items()],
            "network_mode": "bridge" if self.network else "none",
            # an init as PID 1 passes `docker stop`'s SIGTERM on to rtdetr/torchrun: as PID 1
            # itself TAO would ignore it, train on until the SIGKILL and keep writing
            "init": True,
            "detach": True,
        }
        if not self.network:
            # without a network /etc/hosts lacks the container's own name, and torchrun's
            # rendezvous hangs resolving it: name the container and map that name to loopback
            kwargs["hostname"] = "taomake-job"
            kwargs["extra_hosts"] = {"taomake-job": "127.0.0.1"}
        if self.settings.ipc_host:
            kwargs["ipc_mode"] = "host"
        else:
            kwargs["shm_size"] = job.shm_size
        if job.gpus > 0:
            ids = [str(i) for i in job.gpu_ids] or [str(i) for i in range(job.gpus)]
            kwargs["device_requests"] = [DeviceRequest(device_ids=ids, capabilities=[["gpu"]])]
        return kwargs

    def describe(self, job: TaoJob, kwargs: Mapping[str, Any]) -> str:
        """One log line about the container: names of passed variables, never their values."""
        mounts = ", ".join(f"{s}:{v['bind']}:{v['mode']}" for s, v in kwargs["volumes"].items())
        passed = sorted(n for n in job.env_names if n in kwargs["environment"])
        gpus = ""
        if "device_requests" in kwargs:
            gpus = f", gpus device={','.join(kwargs['device_requests'][0]['DeviceIDs'])}"
        return (f"docker: image {kwargs['image']}, user {kwargs['user']}, network "
                f"{kwargs['network_mode']}{gpus}, mounts [{mounts}], environment passed by "
                f"name: {', '.join(passed) or '-'}")

    def check_user(self, job: TaoJob, user: User) -> None:
        writable = any(not m.read_only for m in job.mounts)
        if user.uid == 0 and not self.settings.allow_root and writable:
            raise UsageError("the docker runner would run TAO as root (uid 0) with writable "
                             "mounts, leaving root-owned results; run taomake as a normal "
                             "user, or set hardware.runner.docker.allow_root: true")

    # ------------------------------------------------------------------ daemon parts

    def client(self):
        import docker

        try:
            client = docker.from_env()
            client.ping()
        except Exception as ex:
            raise RunError(f"cannot reach the Docker daemon ({ex}); start it (e.g. "
                           "scripts/services/docker.sh) or use hardware.runner.kind: local") \
                from None
        return client

    def ensure_image(self, client, image: str, log: IO[bytes]) -> None:
        import docker

        try:
            client.images.get(image)
            return
        except docker.errors.ImageNotFound:
            pass
        if not self.settings.pull:
            raise UsageError(f"docker image {image} is not on this machine: run "
                             f"`docker pull {image}` (or set hardware.runner.docker.pull: true)")
        from docker.utils import parse_repository_tag

        repo, tag = parse_repository_tag(image)
        _write(log, f"docker: pulling {image}\n")
        try:
            for event in client.api.pull(repo, tag=tag or "latest", stream=True, decode=True):
                if "error" in event:
                    raise RunError(f"docker pull {image} failed: {event['error']}")
                status = " ".join(str(event[k]) for k in ("id", "status", "progress")
                                  if event.get(k))
                if status:
                    _write(log, status + "\n")
        except docker.errors.APIError as ex:
            raise RunError(f"docker pull {image} failed: {ex.explanation or ex}") from None

    def runtime(self, job: TaoJob) -> str:
        return job.image

    def provenance(self, job: TaoJob) -> dict[str, str | None]:
        from ..provenance import image_digest

        return {"runner": self.name, "image": job.image, "digest": image_digest(job.image)}

    def cache_runtime(self, job: TaoJob) -> dict[str, str] | None:
        """The image's content digest (a tag can move), and the TAO mounted into it
        (`docker.tao_bin`: a venv's bin/) when there is one."""
        from ..provenance import image_digest
        from .local import venv_identity

        found = image_digest(job.image)
        if not found:
            return None
        runtime: dict[str, Any] = {"image": found.rsplit("@", 1)[-1]}
        if self.settings.tao_bin:
            mounted = venv_identity(Path(self.settings.tao_bin).parent)
            if mounted is None:
                return None
            runtime["tao_bin"] = mounted
        return runtime

    @staticmethod
    def job_labels(job: TaoJob) -> dict[str, str]:
        """The labels that name a job's containers (`create_kwargs`), as list filters."""
        return {"taomake.job": job.label, "taomake.project": str(job.workdir)}

    def reclaim(self, job: TaoJob) -> list[str]:
        """Containers of this job whose `taomake run` died without removing them (kill -9,
        the OOM killer): still training into the folder.  Stopped and removed."""
        import docker

        api = self.client().api
        # one list request (the high-level list inspects each container again: one removed
        # meanwhile answers 404)
        found = api.containers(all=True, filters={
            "label": [f"{k}={v}" for k, v in self.job_labels(job).items()]})
        removed = []
        for entry in found:
            name = (entry.get("Names") or ["?"])[0].lstrip("/")
            try:
                if entry.get("State") in ("running", "restarting", "paused"):
                    api.stop(entry["Id"], timeout=self.settings.stop_timeout)
                api.remove_container(entry["Id"], force=True)
            except docker.errors.NotFound:
                pass  # gone meanwhile
            except docker.errors.APIError as ex:  # never start a second one beside it
                raise RunError(f"container {name} of an earlier run of {job.label} is still "
                               f"there and could not be removed ({ex.explanation or ex}); "
                               f"remove it with `docker rm -f {name}`, then run again") from None
            removed.append(f"container {name} ({entry['Id'][:12]}, {entry.get('State')})")
        return removed

    def run(self, job: TaoJob, log: IO[bytes], on_tick: Callable[[], None] | None = None,
            lease: Lease | None = None) -> int:
        import docker

        user = User.current()
        self.check_user(job, user)
        client = self.client()
        self.ensure_image(client, job.image, log)
        kwargs = self.create_kwargs(job, user)
        make_env_dirs(kwargs["environment"])
        _write(log, self.describe(job, kwargs) + "\n")

        die_with_parent()
        received: list[int] = []

        def handler(signum, _frame):
            received.append(signum)

        previous = {sig: signal.signal(sig, handler) for sig in FORWARDED}
        container = None
        exited = False
        try:
            try:
                container = client.containers.create(**kwargs)
            except docker.errors.APIError as ex:
                raise RunError(f"docker could not create a container from {job.image}: "
                               f"{ex.explanation or ex}") from None
            if lease is not None:  # a second job names it; the next run removes it if orphaned
                lease.note(container=container.name)
            try:
                container.start()
            except docker.errors.APIError as ex:
                raise self._start_error(job, str(ex.explanation or ex)) from None
            streamer = threading.Thread(target=_stream, args=(container, log), daemon=True)
            streamer.start()
            result: dict[str, Any] = {}
            waiter = threading.Thread(target=_wait, args=(container, result), daemon=True)
            waiter.start()
            while waiter.is_alive():
                if on_tick:
                    on_tick()
                if received:
                    raise Interrupted(received[0])
                waiter.join(0.2)
            streamer.join(10)
            exited = "status" in result
            if "error" in result:
                raise RunError(f"lost the container of {job.label}: {result['error']}")
            return int(result["status"].get("StatusCode", 1))
        finally:  # remove first: a second signal during the stop must not leave it behind
            if container is not None:
                _remove(container, self.settings.stop_timeout, running=not exited)
            for sig, old in previous.items():
                signal.signal(sig, old)


    def _start_error(self, job: TaoJob, text: str) -> RunError:
        """Why Docker would not start the container, and the fix."""
        if NO_GPU_RUNTIME in text or "nvidia" in text.lower():
            return RunError(
                f"no NVIDIA container runtime: this job asks for GPUs {list(job.gpu_ids)} but "
                f"Docker cannot give them ({text}); install nvidia-container-toolkit and run "
                "`nvidia-ctk runtime configure --runtime=docker`, then restart dockerd (or set "
                "hardware.gpus_per_node: 0)")
        if "rlimit" in text:
            return RunError(f"docker could not apply hardware.runner.docker.ulimits "
                            f"{self.settings.ulimits} on this host ({text}); lower them or set "
                            "`ulimits: {}`")
        return RunError(f"docker could not start {job.image}: {text}")


def _write(log: IO[bytes], text: str) -> None:
    log.write(text.encode())
    log.flush()


def _stream(container, log: IO[bytes]) -> None:
    try:
        for chunk in container.logs(stream=True, follow=True, stdout=True, stderr=True):
            log.write(chunk)
            log.flush()
    except Exception:  # the container went away (stopped on a signal): nothing more to read
        pass


def _wait(container, result: dict[str, Any]) -> None:
    try:
        result["status"] = container.wait()
    except Exception as ex:
        result["error"] = ex


def _remove(container, stop_timeout: int, running: bool = True) -> None:
    """Stop (SIGTERM, then SIGKILL after stop_timeout) and remove; never raises."""
    try:
        if running:
            container.reload()
            if container.status in ("running", "restarting", "paused"):
                container.stop(timeout=stop_timeout)
    except Exception:
        pass
    try:
        container.remove(force=True)
    except Exception:
        pass


def from_settings(runner, root: Path) -> DockerRunner:
    return DockerRunner(runner.docker)
