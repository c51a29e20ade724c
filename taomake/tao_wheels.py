"""Fetch NVIDIA's TAO wheels and unpack them, so their config dataclasses can be imported.

Execution-side helper (uses pip and the network).  The TAO config layer (dataclasses + Hydra)
imports with only omegaconf and hydra-core, so an *unpacked* wheel on `sys.path` is enough to
load TAO's own `ExperimentConfig` on the tool's Python (3.11) even though nvidia-tao-pytorch is
published for cp312 only.  Nothing is installed: the wheels are only downloaded and unzipped.

Layout: `${XDG_CACHE_HOME:-~/.cache}/taomake/tao-wheels/<version>/{pytorch,deploy,core}/`, each
folder an import root (it holds `nvidia_tao_<name>/`).  A version folder appears complete or not
at all: it is built in a temporary sibling and renamed into place after its marker is written.
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

DEFAULT_VERSION = "7.3.0"

# key -> PyPI distribution.  Keys are also the folder names under the version folder.
PACKAGES: dict[str, str] = {
    "pytorch": "nvidia-tao-pytorch",
    "deploy": "nvidia-tao-deploy",
    "core": "nvidia-tao-core",
}
# The import package each unpacked root provides (used to verify an unpack).
IMPORT_NAMES: dict[str, str] = {k: v.replace("-", "_") for k, v in PACKAGES.items()}

_MARKER = ".complete"


def cache_root(cache_dir: Path | None = None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "taomake" / "tao-wheels"


def _roots(folder: Path) -> dict[str, Path]:
    return {key: folder / key for key in PACKAGES}


def _download(version: str, dest: Path) -> None:
    # nvidia-tao-pytorch exists only as a cp312 manylinux wheel: ask pip for exactly that
    # target whatever the tool's own Python/OS, so 3.11 (and macOS) hosts can fetch it too.
    # --no-deps: the wheels are only read, never installed.
    cmd = [
        sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
        "--no-deps", "--only-binary=:all:", "--python-version", "3.12",
        "--implementation", "cp", "--abi", "cp312", "--abi", "none",
        "--platform", "manylinux1_x86_64", "--platform", "any",
        "--dest", str(dest),
        *(f"{dist}=={version}" for dist in PACKAGES.values()),
    ]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(
            f"could not download the TAO {version} wheels ({' '.join(PACKAGES.values())}): "
            f"`{' '.join(cmd)}` failed:\n{proc.stderr.strip() or proc.stdout.strip()}")


def _wheel_for(wheels: Path, dist: str, version: str) -> Path:
    prefix = f"{dist.replace('-', '_')}-{version}-"
    found = sorted(p for p in wheels.glob("*.whl") if p.name.startswith(prefix))
    if len(found) != 1:
        raise RuntimeError(f"expected one {dist} {version} wheel in {wheels}, found "
                           f"{[p.name for p in found]}")
    return found[0]


def _build(version: str, tmp: Path) -> None:
    wheels = tmp / "wheels"
    wheels.mkdir()
    _download(version, wheels)
    for key, dist in PACKAGES.items():
        with zipfile.ZipFile(_wheel_for(wheels, dist, version)) as zf:
            zf.extractall(tmp / key)
        if not (tmp / key / IMPORT_NAMES[key] / "__init__.py").is_file():
            raise RuntimeError(f"{dist} {version}: the wheel has no {IMPORT_NAMES[key]}/ package")
    shutil.rmtree(wheels)  # the unpacked trees are what we use; pip keeps its own cache
    (tmp / _MARKER).write_text(f"{version}\n")


def ensure_tao_wheels(version: str = DEFAULT_VERSION,
                      cache_dir: Path | None = None) -> dict[str, Path]:
    """Download + unpack the three TAO wheels once; return the import roots by key.

    Idempotent and safe against concurrent callers (e.g. pytest-xdist workers): each builds in
    its own temporary folder and the first rename wins; the others discard their copy.
    """
    root = cache_root(cache_dir)
    final = root / version
    if (final / _MARKER).is_file():
        return _roots(final)
    root.mkdir(parents=True, exist_ok=True)
    if final.exists():  # a folder without marker is not ours to trust (e.g. manual copy)
        shutil.rmtree(final)
    tmp = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=root))
    try:
        _build(version, tmp)
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache is a plain shared folder
        try:
            tmp.rename(final)
        except OSError:
            if not (final / _MARKER).is_file():  # lost the race to something incomplete?
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return _roots(final)


@contextmanager
def tao_on_path(root: Path) -> Iterator[None]:
    """Put one unpacked wheel root first on `sys.path` for the duration of the block.

    Imported modules stay in `sys.modules` afterwards (their classes keep working); only the
    search path is restored.
    """
    entry = str(root)
    sys.path.insert(0, entry)
    try:
        yield
    finally:
        try:
            sys.path.remove(entry)
        except ValueError:
            pass


def import_from(root: Path, module: str) -> ModuleType:
    """Import `module` from the unpacked wheel at `root`, refusing a copy found elsewhere.

    A module already imported from another root (another TAO version, another unpack) would be
    returned silently by the import cache, so mixing versions fails loudly instead.
    """
    with tao_on_path(root):
        mod = importlib.import_module(module)
    origin = Path(mod.__file__ or "").resolve()
    if not origin.is_relative_to(Path(root).resolve()):
        raise RuntimeError(f"{module} is already imported from {origin}, not from {root}; "
                           "use a fresh process to load another TAO version")
    return mod
