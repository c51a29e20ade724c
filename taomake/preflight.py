"""`taomake preflight`: can this machine run the project's jobs?  One line per check.

Checks what the chosen runner needs (local venv; docker daemon, image and NVIDIA runtime;
apptainer / srun with Pyxis and the converted image), the SLURM commands when the project names
a partition (or Snakemake runs with the slurm executor), free disk under the results folder and
the project's local data.  Failures are the user's to fix: each says how.  Exit 0 when nothing
failed (warnings allowed), 1 otherwise.  Snakemake runs it once before the first job
(rules/common.smk `onstart:`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

from taomake.compiler.files import nearest_existing
from taomake.errors import RunError

Level = Literal["PASS", "WARN", "FAIL"]
MIN_FREE_GB = 10.0


@dataclass(frozen=True)
class Check:
    level: Level
    what: str
    detail: str
    fix: str = ""

    def render(self) -> str:
        line = f"{self.level}  {self.what}: {self.detail}"
        return line + (f"\n      fix: {self.fix}" if self.fix and self.level != "PASS" else "")


def _ok(what: str, detail: str) -> Check:
    return Check("PASS", what, detail)


# --------------------------------------------------------------------------- runners


def check_local(p, root: Path) -> Iterator[Check]:
    from .runners.local import LocalRunner

    venv = LocalRunner.from_venv(p.hardware.runner.local.venv, root).venv
    rtdetr = venv / "bin" / "rtdetr"
    if not (rtdetr.is_file() and os.access(rtdetr, os.X_OK)):
        yield Check("FAIL", "local TAO", f"no executable {rtdetr}",
                    "run `taomake setup tao-cpu`, or set hardware.runner.local.venv to a venv "
                    "with nvidia-tao-pytorch")
        return
    yield _ok("local TAO", f"{rtdetr}")
    python = venv / "bin" / "python"
    if python.exists():  # a test double may have bin/rtdetr only
        try:
            out = subprocess.run([str(python), "-c", "import sys; print('%d.%d' % "
                                  "sys.version_info[:2])"], capture_output=True, text=True,
                                 timeout=30).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            out = "?"
        if out == "3.12":
            yield _ok("local Python", f"{python} is Python 3.12")
        else:
            yield Check("WARN", "local Python", f"{python} is Python {out}; TAO's wheels are "
                        "built for 3.12", "recreate the venv with Python 3.12 "
                        "(`taomake setup tao-cpu`)")


def _uid() -> int:
    return os.getuid()


def check_docker(p, images: list[str], client_factory: Callable | None = None
                 ) -> Iterator[Check]:
    if _uid() == 0 and not p.hardware.runner.docker.allow_root:
        # the runner refuses it at the first job (root-owned results); say so before the build
        yield Check("FAIL", "docker user", "running as root (uid 0): the docker runner would "
                    "run TAO as root with writable mounts and refuses to",
                    "run taomake as a normal user (in the docker group), or set "
                    "hardware.runner.docker.allow_root: true")
    try:
        import docker
        from docker.errors import DockerException, ImageNotFound
    except ImportError:
        yield Check("FAIL", "docker SDK", "the docker Python package is not installed",
                    "pip install docker")
        return
    try:
        client = (client_factory or docker.from_env)()
        client.ping()
        info = client.info()
    except DockerException as exc:
        yield Check("FAIL", "docker daemon", f"not reachable ({exc})",
                    "start dockerd, or point DOCKER_HOST at it; your user needs access to "
                    "its socket")
        return
    yield _ok("docker daemon", f"reachable (server {info.get('ServerVersion', '?')})")
    for ref in images:
        try:
            client.images.get(ref)
            yield _ok("docker image", f"{ref} present")
        except ImageNotFound:
            level: Level = "WARN" if p.hardware.runner.docker.pull else "FAIL"
            yield Check(level, "docker image", f"{ref} is not present locally"
                        + (" (hardware.runner.docker.pull will pull it)" if level == "WARN"
                           else ""),
                        f"docker login nvcr.io (user $oauthtoken, password $NGC_API_KEY), "
                        f"then docker pull {ref}")
        except DockerException as exc:
            yield Check("FAIL", "docker image", f"{ref}: {exc}", "check the docker daemon")
    if p.hardware.gpus_per_node:
        runtimes = sorted(info.get("Runtimes") or {})
        if "nvidia" in runtimes:
            yield _ok("NVIDIA runtime", "present")
        else:
            yield Check("FAIL", "NVIDIA runtime", f"docker has no nvidia runtime (has: "
                        f"{', '.join(runtimes) or 'none'}) but hardware.gpus_per_node is "
                        f"{p.hardware.gpus_per_node}",
                        "install nvidia-container-toolkit and run `nvidia-ctk runtime "
                        "configure --runtime=docker`, then restart dockerd")


def _which(name: str, what: str, fix: str) -> Check:
    path = shutil.which(name)
    return _ok(what, path) if path else Check("FAIL", what, f"{name} is not on PATH", fix)


def _apptainer_tools() -> Iterator[Check]:
    yield _which("apptainer", "apptainer", "install Apptainer or load its module (e.g. "
                 "`module load apptainer`)")


def _pyxis_tools() -> Iterator[Check]:
    srun = _which("srun", "srun", "run on a SLURM cluster with Pyxis, or use another "
                  "hardware.runner.kind")
    yield srun
    if srun.level == "PASS":
        try:
            text = subprocess.run(["srun", "--help"], capture_output=True, text=True,
                                  timeout=30).stdout
        except (OSError, subprocess.TimeoutExpired):
            text = ""
        yield (_ok("pyxis plugin", "srun --help lists --container-image")
               if "--container-image" in text else
               Check("FAIL", "pyxis plugin", "srun --help does not mention "
                     "--container-image", "ask the cluster admins for Pyxis "
                     "(github.com/NVIDIA/pyxis), or use hardware.runner.kind: apptainer"))


# the tools an image-file runner needs (RUNNERS' image_file), by kind
CONTAINER_TOOLS = {"apptainer": _apptainer_tools, "pyxis": _pyxis_tools}


def check_container(kind: str, root: Path, images: dict[str, str]) -> Iterator[Check]:
    """apptainer or pyxis: the program (and the Pyxis plugin), the converted images, and
    the converter that makes them (the runner's)."""
    from .runners.registry import runner_module

    yield from CONTAINER_TOOLS[kind]()
    converter = runner_module(kind).CONVERTER
    converter_ok = shutil.which(converter.split()[0]) is not None
    for rel, ref in sorted(images.items()):
        path = root / rel
        if path.is_file():
            yield _ok("image file", f"{rel} present")
        elif converter_ok:
            yield _ok("image file", f"{rel} missing; snakemake's rule container_image "
                      f"converts it from docker://{ref} before the first job")
        else:
            yield Check("FAIL", "image file", f"{rel} missing and {converter.split()[0]} is "
                        f"not on PATH to convert it",
                        f"convert it where {converter.split()[0]} exists: "
                        f"`{converter} ... docker://{ref}` into {rel}")


def check_slurm() -> Iterator[Check]:
    for name in ("sbatch", "squeue", "scontrol"):
        yield _which(name, "SLURM", "run from a SLURM login node (or drop "
                     "hardware.slurm.partition to build locally)")


def check_partition_nodes(lp) -> Iterator[Check]:
    """A job asking for more nodes than its partition has pends forever without a word."""
    if shutil.which("sinfo") is None:
        return  # check_slurm says what is missing
    wanted: dict[str, int] = {}
    for exp in lp.experiments.values():
        hw = exp.project.hardware
        if hw.slurm.partition:
            hosts = 1 if hw.pack_nodes else hw.nodes
            wanted[hw.slurm.partition] = max(wanted.get(hw.slurm.partition, 0), hosts)
    for partition, nodes in sorted(wanted.items()):
        try:
            out = subprocess.run(["sinfo", "-h", "-p", partition, "-o", "%D"],
                                 capture_output=True, text=True, timeout=20).stdout
        except (OSError, subprocess.SubprocessError) as exc:
            yield Check("WARN", "SLURM partition", f"sinfo failed for {partition}: {exc}")
            continue
        have = sum(int(n) for n in out.split() if n.isdigit())
        if not have:
            yield Check("FAIL", "SLURM partition", f"partition {partition!r} does not exist "
                        "(or has no nodes)", "check hardware.slurm.partition (`sinfo -s` "
                        "lists the partitions)")
        elif nodes > have:
            yield Check("FAIL", "SLURM partition", f"partition {partition!r} has {have} "
                        f"node{'s' if have != 1 else ''}, the training asks for {nodes}: the "
                        "job would pend forever", "lower hardware.nodes, or use a partition "
                        "with enough nodes")
        else:
            yield _ok("SLURM partition", f"{partition}: {have} node(s), {nodes} needed")


# --------------------------------------------------------------------------- host


def check_disk(folder: Path, min_gb: float = MIN_FREE_GB) -> Check:
    free = shutil.disk_usage(nearest_existing(folder)).free / 1e9
    if free < min_gb:
        return Check("WARN", "disk", f"{free:.1f} GB free under {folder} (< {min_gb:.0f} GB)",
                     "free space or set `results:` to a bigger disk; checkpoints and images "
                     "take several GB")
    return _ok("disk", f"{free:.0f} GB free under {folder}")


def check_data(lp) -> Iterator[Check]:
    from taomake.compiler.facts import input_paths

    seen: set[str] = set()
    bad = []
    for exp in lp.experiments.values():
        for key, path, _kind in input_paths(exp.project):
            if path.startswith("s3://") or path in seen:
                continue
            seen.add(path)
            full = lp.root / path
            mode = os.R_OK | (os.X_OK if full.is_dir() else 0)
            if not (full.exists() and os.access(full, mode)):
                bad.append(f"{key}: {path}")
    if bad:
        yield Check("FAIL", "data", "not readable: " + "; ".join(bad),
                    "fix the paths in project.yaml or the file permissions")
    else:
        yield _ok("data", f"{len(seen)} local path(s) readable")


def check_upload(lp) -> Iterator[Check]:
    """`upload.to` reachable and writable now, not after hours of training."""
    from taomake.errors import StorageError

    from .data.s3 import S3Settings, S3Store

    targets = sorted({e.project.upload.to for e in lp.experiments.values()
                      if e.project.upload is not None})
    if not targets:
        return
    from dataclasses import replace

    store = S3Store(replace(S3Settings.of(lp.base.storage), attempts=1))
    for to in targets:
        try:
            store.check_writable(to)
        except StorageError as exc:
            head, _, fix = exc.render().partition("\n    fix: ")
            yield Check("FAIL", "upload", head, fix or "check upload.to and the credentials")
        else:
            yield _ok("upload", f"{to} is writable")


# --------------------------------------------------------------------------- all


def _images(lp, kind: str) -> list[str]:
    """Image refs the experiments of this runner kind use (deploy only with GPUs)."""
    refs: list[str] = []
    for exp in lp.experiments.values():
        p = exp.project
        if p.hardware.runner.kind != kind:
            continue
        flavors = ("pytorch",) if p.hardware.cpu_only else ("pytorch", "deploy")
        wanted = list(p.tao.images(flavors).values())
        refs += [r for r in wanted if r not in refs]
    return refs


def check_multinode_executor(lp, executor: str | None) -> Iterator[Check]:
    """Multi-node training is a SLURM job (its nodes come from the allocation): another
    executor would start it and fail at once."""
    multi = sorted(name for name, e in lp.experiments.items() if e.project.hardware.nodes > 1)
    if not multi:
        return
    if executor == "slurm":
        yield _ok("multi-node", f"{', '.join(multi)}: trained as SLURM jobs")
    else:
        yield Check("FAIL", "multi-node", f"{', '.join(multi)} train on hardware.nodes > 1, "
                    f"which needs a SLURM allocation; this run's executor is "
                    f"{executor or 'local'}",
                    "run snakemake --profile profiles/slurm, or set hardware.nodes: 1")


def preflight(project_file: str | Path, *, slurm: bool | None = None,
              docker_client: Callable | None = None,
              executor: str | None = None) -> list[Check]:
    """Every check for the project's runner(s); `slurm` None: when a partition is set.
    `executor`: the build's Snakemake executor, when known (its onstart)."""
    from taomake.compiler import load_project
    from taomake.compiler.layout import image_file
    from taomake.compiler.runners import RUNNERS

    lp = load_project(project_file)
    checks: list[Check] = []
    by_kind = {}
    for exp in lp.experiments.values():
        by_kind.setdefault(exp.project.hardware.runner.kind, exp.project)
    for kind, p in by_kind.items():
        if RUNNERS[kind].image_file:  # apptainer, pyxis: the tool and the converted images
            image_dir = getattr(p.hardware.runner, kind).image_dir
            checks += check_container(kind, lp.root, {
                image_file(ref, image_dir, kind): ref for ref in _images(lp, kind)})
        elif RUNNERS[kind].containers:  # docker: the daemon and the images
            checks += check_docker(p, _images(lp, kind), docker_client)
        else:  # the host's TAO venv
            checks += check_local(p, lp.root)
    if slurm is None:
        slurm = any(e.project.hardware.slurm.partition for e in lp.experiments.values())
    if slurm:
        checks += check_slurm()
        checks += check_partition_nodes(lp)
    if executor is not None:
        checks += check_multinode_executor(lp, executor)
    checks.append(check_disk(lp.root / lp.base.results))
    checks += check_data(lp)
    checks += check_upload(lp)
    return checks


def report(checks: list[Check], out: IO[str]) -> int:
    for c in checks:
        print(c.render(), file=out)
    failed = sum(c.level == "FAIL" for c in checks)
    print(f"preflight: {len(checks) - failed} passed, {failed} failed", file=out)
    return 1 if failed else 0


def main(project_file: str | Path, slurm: bool | None = None) -> int:
    return report(preflight(project_file, slurm=slurm), sys.stdout)


def before_build(project_file: str | Path, executor: str | None = None) -> None:
    """Snakemake's onstart: print the checks; stop the run (message, exit 1) on a failure."""
    slurm = True if executor == "slurm" else None
    checks = preflight(project_file, slurm=slurm, executor=executor or "local")
    failed = [c for c in checks if c.level != "PASS"]
    for c in failed:
        print(f"taomake preflight: {c.render()}", file=sys.stderr)
    if any(c.level == "FAIL" for c in checks):
        raise RunError("preflight failed (see the FAIL lines above); nothing was run. "
                       "Fix them, or check again with `taomake preflight`")
