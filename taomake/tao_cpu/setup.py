"""`taomake setup tao-cpu`: a Python 3.12 venv that runs NVIDIA TAO RT-DETR on CPU.

The venv holds the pinned packages of `requirements.txt` (torch 2.13.0 CUDA build, which runs
on CPU), `nvidia-tao-pytorch==7.3.0` installed with --no-deps (the wheel declares none), and
taomake's own small compatibility layer from `compat/` (an import-only `eff` stand-in and a
`.pth` hook that lets Lightning use the CPU when no CUDA device is present).  See
docs/tao-cpu.md and docs/tao-notes.md §9.

Idempotent: `<venv>/taomake-tao-cpu.json` records hashes of the requirements and of the
compat layer.  With both unchanged a rerun only runs the self-check; a changed compat layer
is re-copied without reinstalling anything; changed requirements (or --force) rebuild the
venv.  The marker is written last, only after the self-check passed, so an interrupted or
failed setup never looks complete (the next run starts that venv over).

Runs on the tool's own Python (3.11+); every command is an argv list, never a shell string.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from taomake.errors import SetupError

TAO_DIST = "nvidia-tao-pytorch"
TAO_VERSION = "7.3.0"
PYTHON_VERSION = (3, 12)
VENV_NAME = f"tao-pytorch-{TAO_VERSION}-cpu"
ENV_VENV = "TAOMAKE_TAO_VENV"

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "requirements.txt"
COMPAT = HERE / "compat"
MARKER = "taomake-tao-cpu.json"
LOG = "taomake-tao-cpu.log"
# Bump when the install recipe (commands, not the pins) changes: forces a rebuild.
RECIPE = 1
ENTRY_MODULE = "nvidia_tao_pytorch.cv.rtdetr.entrypoint.rtdetr"

Progress = Callable[[str], None]


# --- paths, hashes, marker ------------------------------------------------------------------

def default_venv_path() -> Path:
    """$TAOMAKE_TAO_VENV, else ${XDG_CACHE_HOME:-~/.cache}/taomake/venvs/tao-pytorch-7.3.0-cpu."""
    env = os.environ.get(ENV_VENV)
    if env:
        return Path(os.path.expanduser(env))
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "taomake" / "venvs" / VENV_NAME


def compat_files() -> list[Path]:
    """The compat layer's files (relative to compat/), sorted, without bytecode."""
    return sorted(p.relative_to(COMPAT) for p in COMPAT.rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc")


def requirements_hash() -> str:
    h = hashlib.sha256(f"recipe={RECIPE}\n{TAO_DIST}=={TAO_VERSION}\n".encode())
    h.update(REQUIREMENTS.read_bytes())
    return h.hexdigest()


def compat_hash() -> str:
    h = hashlib.sha256()
    for rel in compat_files():
        h.update(f"{rel.as_posix()}\0".encode())
        h.update((COMPAT / rel).read_bytes())
        h.update(b"\0")
    return h.hexdigest()


def read_marker(venv: Path) -> dict | None:
    try:
        data = json.loads((venv / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_marker(venv: Path, data: dict) -> None:
    tmp = venv / f".{MARKER}.tmp"
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, venv / MARKER)


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


# --- progress and commands ------------------------------------------------------------------

class _Steps:
    """Prints each step with its duration, and appends everything to the venv's log file."""

    def __init__(self, progress: Progress, log: Path | None = None):
        self.progress = progress
        self.log = log
        self.t0 = time.monotonic()

    def say(self, text: str) -> None:
        self.progress(f"[tao-cpu] {text}")
        self.write_log(text)

    def write_log(self, text: str) -> None:
        if self.log is None or not self.log.parent.is_dir():
            return
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        with self.log.open("a") as fh:
            for line in text.splitlines() or [""]:
                fh.write(f"{stamp} {line}\n")

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        self.say(f"{name} ...")
        start = time.monotonic()
        try:
            yield
        except BaseException:
            self.say(f"{name}: FAILED after {time.monotonic() - start:.1f}s")
            raise
        self.say(f"{name}: done in {time.monotonic() - start:.1f}s")

    def total(self) -> float:
        return time.monotonic() - self.t0


def _clean_env(venv: Path | None = None, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The caller's environment without what would leak the tool's Python into the venv's."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONEXECUTABLE",
                        "VIRTUAL_ENV", "__PYVENV_LAUNCHER__", "CONDA_PREFIX")}
    if venv is not None:
        env["PATH"] = os.pathsep.join([str(venv / "bin"), env.get("PATH", os.defpath)])
        env["VIRTUAL_ENV"] = str(venv)
    env.update(extra or {})
    return env


def _run(steps: _Steps, argv: Sequence[str], *, env: dict[str, str], what: str,
         cwd: Path | None = None, timeout: float | None = None) -> str:
    """Run argv; log its output; raise SetupError with the output's tail when it fails."""
    argv = [str(a) for a in argv]
    steps.write_log("$ " + " ".join(argv))
    try:
        proc = subprocess.run(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, check=False,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout if isinstance(exc.stdout, str) else (exc.stdout or b"").decode(
            errors="replace")
        steps.write_log(out)
        raise SetupError(f"{what}: timed out after {timeout:.0f}s: {' '.join(argv)}") from None
    except OSError as exc:
        raise SetupError(f"{what}: cannot run {argv[0]}: {exc}") from None
    steps.write_log(proc.stdout)
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.strip().splitlines()[-25:])
        raise SetupError(f"{what} failed (exit {proc.returncode}): {' '.join(argv)}\n{tail}")
    return proc.stdout


class PipProgress:
    """Turns pip's output into a progress line at most every `every` seconds: how many of
    the pinned requirements were collected, then that the install runs (the long silent
    part of a fresh setup: minutes of downloads, torch and the CUDA wheels first)."""

    def __init__(self, steps: _Steps, total: int, every: float = 10.0,
                 clock: Callable[[], float] = time.monotonic):
        self.steps, self.total, self.every, self.clock = steps, total, every, clock
        self.start = self.last = clock()
        self.collected: set[str] = set()
        self.current = ""
        self.installing = False

    def __call__(self, line: str) -> None:
        words = line.split()
        if len(words) >= 2 and words[0] in ("Collecting", "Processing"):
            # "Collecting torch==2.13.0 (...)", or from a local mirror "Processing
            # /mirror/torch-2.13.0-cp312-...whl"
            spec = words[1].rsplit("/", 1)[-1]
            name = re.split(r"[<>=!~;\[ ]", spec, maxsplit=1)[0]
            if words[0] == "Processing":
                name = name.split("-", 1)[0]
            self.current = name.lower().replace("_", "-")
            self.collected.add(self.current)
        elif line.startswith("Installing collected packages"):
            self.installing = True
            self.steps.say(f"  pip: {len(self.collected)} packages collected in "
                           f"{self.clock() - self.start:.0f}s; installing them ...")
            self.last = self.clock()
            return
        now = self.clock()
        if now - self.last >= self.every:
            self.last = now
            what = "installing" if self.installing else \
                f"{len(self.collected)} of ~{self.total} collected, now {self.current}"
            self.steps.say(f"  pip: {what} ({now - self.start:.0f}s)")


def _run_streaming(steps: _Steps, argv: Sequence[str], *, env: dict[str, str], what: str,
                   on_line: Callable[[str], None]) -> None:
    """Like _run, with each output line logged and handed to `on_line` as it comes."""
    argv = [str(a) for a in argv]
    steps.write_log("$ " + " ".join(argv))
    tail: list[str] = []
    try:
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    except OSError as exc:
        raise SetupError(f"{what}: cannot run {argv[0]}: {exc}") from None
    with proc:
        for line in proc.stdout:
            line = line.rstrip("\n")
            steps.write_log(line)
            tail = (tail + [line])[-25:]
            on_line(line)
    if proc.returncode != 0:
        raise SetupError(f"{what} failed (exit {proc.returncode}): {' '.join(argv)}\n"
                         + "\n".join(tail))


def requirement_count(path: Path) -> int:
    return sum(1 for line in path.read_text().splitlines()
               if line.strip() and not line.lstrip().startswith("#"))


# --- finding Python 3.12 --------------------------------------------------------------------

_PROBE = "import sys, venv, ensurepip; print(sys.version_info[0], sys.version_info[1]); " \
         "print(sys.executable)"


def _probe_python(candidate: str) -> tuple[tuple[int, int] | None, str, str]:
    """(version, real executable, problem) of a candidate interpreter."""
    try:
        proc = subprocess.run([candidate, "-c", _PROBE], stdin=subprocess.DEVNULL, check=False,
                              capture_output=True, text=True, timeout=60,
                              env=_clean_env())
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, "", str(exc)
    if proc.returncode != 0:
        err = (proc.stderr or proc.stdout).strip().splitlines()
        if err and "ensurepip" in err[-1]:
            return None, "", ("it has no venv/ensurepip module "
                              "(Debian: apt-get install python3.12-venv)")
        return None, "", err[-1] if err else f"exit {proc.returncode}"
    lines = proc.stdout.split()
    try:
        version = (int(lines[0]), int(lines[1]))
        exe = lines[2]
    except (IndexError, ValueError):
        return None, "", f"unexpected output {proc.stdout!r}"
    return version, exe, ""


def _version_key(path: str) -> tuple[int, ...]:
    m = re.search(r"3\.12\.(\d+)", path)
    return (int(m.group(1)),) if m else (-1,)


def python_candidates() -> list[str]:
    """Where Python 3.12 is looked for, in order (after --python)."""
    found: list[str] = []
    on_path = shutil.which("python3.12")
    if on_path:
        found.append(on_path)
    pyenv_root = os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv")
    found += sorted(glob.glob(os.path.join(pyenv_root, "versions", "3.12*", "bin", "python3.12")),
                    key=_version_key, reverse=True)
    uv_root = os.environ.get("UV_PYTHON_INSTALL_DIR") or os.path.join(
        os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share"), "uv", "python")
    found += sorted(glob.glob(os.path.join(uv_root, "cpython-3.12*", "bin", "python3.12")),
                    key=_version_key, reverse=True)
    return list(dict.fromkeys(found))


_HOW_TO_GET = (
    "nvidia-tao-pytorch 7.3.0 is published for CPython 3.12 only. Get one and rerun, e.g.\n"
    "  pyenv install 3.12          (then it is found under ~/.pyenv/versions/3.12*)\n"
    "  uv python install 3.12      (then pass --python \"$(uv python find 3.12)\")\n"
    "  or your distribution's python3.12 package (with its venv module),\n"
    "or point --python at a Python 3.12 interpreter.")


def find_python(python: str | None = None) -> str:
    """The real executable of a usable Python 3.12 (SetupError exit 2 if there is none)."""
    if python:
        version, exe, problem = _probe_python(python)
        if version is None:
            raise SetupError(f"--python {python}: cannot use it: {problem}\n{_HOW_TO_GET}", 2)
        if version != PYTHON_VERSION:
            raise SetupError(f"--python {python} is Python {version[0]}.{version[1]}, "
                             f"not 3.12.\n{_HOW_TO_GET}", 2)
        return exe
    tried = []
    for cand in python_candidates():
        version, exe, problem = _probe_python(cand)
        if version == PYTHON_VERSION:
            return exe
        tried.append(f"  {cand}: {problem or f'Python {version[0]}.{version[1]}'}")
    detail = ("tried:\n" + "\n".join(tried) + "\n") if tried else ""
    raise SetupError(f"no Python 3.12 found (python3.12 on PATH, ~/.pyenv/versions/3.12*, "
                     f"uv's pythons).\n{detail}{_HOW_TO_GET}", 2)


# --- install steps --------------------------------------------------------------------------

def _pip_env(venv: Path) -> dict[str, str]:
    # The machine's pip config may name a constraints file (here /etc/xdg/pip/pip.conf caps
    # torch).  An empty PIP_CONSTRAINT is ignored by pip and --isolated still reads the global
    # config, so the only reliable override is PIP_CONSTRAINT naming a file: our own pins.
    # Other settings (index, find-links, cert) are left as the machine configures them.
    return _clean_env(venv, {
        "PIP_CONSTRAINT": str(REQUIREMENTS),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_NO_INPUT": "1",
        "PIP_PROGRESS_BAR": "off",
        "PYTHONNOUSERSITE": "1",
    })


def _purelib(venv: Path, steps: _Steps) -> Path:
    out = _run(steps, [venv_python(venv), "-c",
                       "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
               env=_clean_env(venv), what="locating the venv's site-packages")
    return Path(out.strip().splitlines()[-1])


def _top_level_compat() -> list[str]:
    return sorted({rel.parts[0] for rel in compat_files()})


def install_compat(venv: Path, steps: _Steps) -> list[str]:
    """(Re)copy compat/ into the venv's site-packages; returns the top-level names copied."""
    site = _purelib(venv, steps)
    names = _top_level_compat()
    for name in names:
        target = site / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()
    stale = site / "__pycache__"
    for pyc in stale.glob("taomake_tao_cpu_compat.*.pyc") if stale.is_dir() else ():
        pyc.unlink()
    for rel in compat_files():
        dest = site / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(COMPAT / rel, dest)  # fresh mtime: stale bytecode is never reused
    return names


def self_check(venv: Path, steps: _Steps | None = None, progress: Progress = print) -> None:
    """Import the rtdetr entry module and run `rtdetr --help` in the venv; SetupError if not.

    Both run at once (each takes several seconds, mostly importing torch)."""
    steps = steps or _Steps(progress, venv / LOG)
    env = _clean_env(venv)
    py = venv_python(venv)
    rtdetr = venv / "bin" / "rtdetr"
    if not py.exists() or not rtdetr.exists():
        raise SetupError(f"{venv} is not a complete TAO CPU venv ({py.name} or bin/rtdetr "
                         f"missing); run `taomake setup tao-cpu`")
    torchrun = shutil.which("torchrun", path=env["PATH"])
    if not torchrun or Path(torchrun).parent != venv / "bin":
        raise SetupError(f"self-check: torchrun not found in {venv / 'bin'} (found: {torchrun})")
    code = ("import importlib, json, sys; importlib.import_module(sys.argv[1]); "
            "import torch, pytorch_lightning, eff, taomake_tao_cpu_compat as c; "
            "print(json.dumps({'python': sys.version.split()[0], 'torch': torch.__version__,"
            " 'lightning': pytorch_lightning.__version__, 'eff_stub': eff.IS_TAOMAKE_STUB,"
            " 'compat_hook': c.STATE['installed'], 'cuda': torch.cuda.is_available()}))")
    checks = {
        f"import {ENTRY_MODULE}": [py, "-c", code, ENTRY_MODULE],
        "rtdetr --help": [rtdetr, "--help"],
    }
    with steps.step("self-check: " + " and ".join(checks)):
        outs = _run_parallel(steps, checks, env=env, timeout=600)
    info = json.loads(outs[f"import {ENTRY_MODULE}"].strip().splitlines()[-1])
    steps.say("  " + ", ".join(f"{k}={v}" for k, v in info.items()))
    if info.get("eff_stub") is not True or info.get("compat_hook") is not True:
        raise SetupError(f"self-check: the compat layer is not active in {venv}: {info}")
    help_text = outs["rtdetr --help"]
    if "train" not in help_text or "export" not in help_text:
        raise SetupError(f"self-check: `rtdetr --help` does not list train/export:\n{help_text}")


def _run_parallel(steps: _Steps, commands: dict[str, Sequence], *, env: dict[str, str],
                  timeout: float) -> dict[str, str]:
    """Run several argv lists at once; their outputs by name; SetupError if any fails."""
    procs = {}
    for name, argv in commands.items():
        argv = [str(a) for a in argv]
        steps.write_log("$ " + " ".join(argv))
        try:
            procs[name] = (argv, subprocess.Popen(
                argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, text=True))
        except OSError as exc:
            raise SetupError(f"self-check ({name}): cannot run {argv[0]}: {exc}") from None
    outs, failures = {}, []
    deadline = time.monotonic() + timeout
    for name, (argv, proc) in procs.items():
        try:
            out, _ = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
            failures.append(f"self-check ({name}) timed out after {timeout:.0f}s")
        steps.write_log(out)
        outs[name] = out
        if proc.returncode:
            tail = "\n".join(out.strip().splitlines()[-25:])
            failures.append(f"self-check ({name}) failed (exit {proc.returncode}): "
                            f"{' '.join(argv)}\n{tail}")
    if failures:
        raise SetupError("\n".join(failures))
    return outs


def _safe_to_replace(venv: Path) -> bool:
    """Only ever delete a folder that is empty, ours, or looks like a venv."""
    if not venv.exists():
        return True
    if not venv.is_dir():
        return False
    return (not any(venv.iterdir()) or (venv / MARKER).exists()
            or (venv / "pyvenv.cfg").exists())


@contextlib.contextmanager
def _lock(venv: Path) -> Iterator[None]:
    venv.parent.mkdir(parents=True, exist_ok=True)
    lock_path = venv.parent / f".{venv.name}.lock"
    with lock_path.open("w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"[tao-cpu] waiting for another setup of {venv} to finish ...", flush=True)
            fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def _build(venv: Path, python: str | None, steps: _Steps) -> dict:
    if not _safe_to_replace(venv):
        raise SetupError(f"{venv} exists and is not a venv made by taomake; refusing to "
                         f"replace it (choose another --venv or remove it yourself)", 2)
    exe = find_python(python)
    if venv.exists():
        with steps.step(f"removing the old/incomplete venv {venv}"):
            with contextlib.suppress(FileNotFoundError):
                (venv / MARKER).unlink()
            shutil.rmtree(venv)
    with steps.step(f"creating the venv with {exe}"):
        _run(steps, [exe, "-m", "venv", venv], env=_clean_env(), what="python -m venv")
    steps.log = venv / LOG
    steps.write_log(f"taomake tao-cpu setup of {venv} (python {exe})")
    pip = [venv_python(venv), "-m", "pip"]
    env = _pip_env(venv)
    with steps.step(f"pip install -r {REQUIREMENTS.name} (torch, Lightning, ...; "
                    f"takes a few minutes)"):
        _run_streaming(steps, [*pip, "install", "--no-input", "-r", REQUIREMENTS], env=env,
                       what="installing the pinned requirements",
                       on_line=PipProgress(steps, requirement_count(REQUIREMENTS)))
    with steps.step(f"pip install --no-deps {TAO_DIST}=={TAO_VERSION}"):
        _run(steps, [*pip, "install", "--no-input", "--no-deps", f"{TAO_DIST}=={TAO_VERSION}"],
             env=env, what=f"installing {TAO_DIST}")
    with steps.step("pip check"):
        _run(steps, [*pip, "check"], env=env, what="pip check")
    return {"python": exe}


def setup_tao_cpu(venv: Path | None = None, python: str | None = None, force: bool = False,
                  progress: Progress = print) -> Path:
    """Create (or verify) the TAO CPU venv and return its path.  Raises SetupError."""
    venv = Path(venv) if venv is not None else default_venv_path()
    venv = Path(os.path.abspath(os.path.expanduser(venv)))
    steps = _Steps(progress)
    with _lock(venv):
        marker = read_marker(venv)
        want_req, want_compat = requirements_hash(), compat_hash()
        if marker and not force and marker.get("requirements_sha256") == want_req \
                and venv_python(venv).exists():
            steps.log = venv / LOG
            if marker.get("compat_sha256") == want_compat:
                steps.say(f"{venv} is up to date (requirements and compat layer unchanged); "
                          f"running the self-check only")
                self_check(venv, steps)
                return venv
            with steps.step("compat layer changed: re-copying it (no reinstall)"):
                names = install_compat(venv, steps)
            self_check(venv, steps)
            marker.update(compat_sha256=want_compat, compat_installed=names,
                          compat_updated=time.strftime("%Y-%m-%dT%H:%M:%S"))
            _write_marker(venv, marker)
            steps.say(f"ready: {venv} (compat layer updated in {steps.total():.1f}s)")
            return venv
        why = ("--force" if force else "no venv yet" if not venv.exists()
               else "incomplete (no marker)" if marker is None else "requirements changed")
        steps.say(f"building {venv} ({why})")
        info = _build(venv, python, steps)
        with steps.step("installing the compat layer (eff stand-in, CPU hook)"):
            names = install_compat(venv, steps)
        self_check(venv, steps)
        seconds = steps.total()
        _write_marker(venv, {
            "tao": f"{TAO_DIST}=={TAO_VERSION}",
            "python": info["python"],
            "requirements_sha256": want_req,
            "compat_sha256": want_compat,
            "compat_installed": names,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "setup_seconds": round(seconds, 1),
        })
        steps.say(f"ready: {venv} (built in {seconds:.0f}s)")
        return venv


def check_only(venv: Path | None = None, progress: Progress = print) -> None:
    """Verify without installing: marker present and current, then the self-check."""
    venv = Path(venv) if venv is not None else default_venv_path()
    steps = _Steps(progress, venv / LOG if venv.is_dir() else None)
    marker = read_marker(venv)
    if marker is None:
        raise SetupError(f"no complete TAO CPU venv at {venv}; run `taomake setup tao-cpu`")
    stale = [what for what, key, want in (
        ("requirements", "requirements_sha256", requirements_hash()),
        ("compat layer", "compat_sha256", compat_hash())) if marker.get(key) != want]
    if stale:
        raise SetupError(f"{venv} is out of date ({', '.join(stale)} changed); run "
                         f"`taomake setup tao-cpu`")
    self_check(venv, steps)
    steps.say(f"ok: {venv}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="taomake setup tao-cpu",
        description=f"Create a Python 3.12 venv that runs NVIDIA TAO RT-DETR "
                    f"({TAO_DIST}=={TAO_VERSION}) train/evaluate/inference/export on CPU.")
    parser.add_argument("--venv", type=Path, default=None,
                        help=f"where (default: ${ENV_VENV}, else "
                             f"${{XDG_CACHE_HOME:-~/.cache}}/taomake/venvs/{VENV_NAME}; "
                             f"here: {default_venv_path()})")
    parser.add_argument("--python", help="a Python 3.12 interpreter (default: python3.12 on "
                        "PATH, else ~/.pyenv/versions/3.12*/bin/python3.12)")
    parser.add_argument("--force", action="store_true", help="rebuild the venv from scratch")
    parser.add_argument("--check-only", action="store_true",
                        help="install nothing; exit 1 unless the venv is complete, current "
                             "and passes the self-check")
    args = parser.parse_args(argv)
    try:
        if args.check_only:
            check_only(args.venv)
        else:
            setup_tao_cpu(args.venv, args.python, args.force)
    except SetupError as exc:
        print(f"taomake setup tao-cpu: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("taomake setup tao-cpu: interrupted; an unfinished venv has no marker and is "
              "rebuilt by the next run", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
