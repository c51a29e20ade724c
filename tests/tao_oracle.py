"""The oracle for "TAO accepts this spec": load it exactly as TAO does at startup.

TAO's scripts are `@hydra_runner(..., schema=ExperimentConfig)` functions; the entrypoint runs
them with `--config-path <dir> --config-name <file>`.  `hydra_runner` registers ExperimentConfig
in Hydra's ConfigStore under the file name, and Hydra merges the YAML into it (unknown keys and
wrong types fail; `valid_options` are not checked).  This module calls *TAO's own* `hydra_runner`
from the unpacked wheel (PT: core/hydra/hydra_runner.py, DP: cv/common/hydra/hydra_runner.py;
both import with omegaconf + hydra-core only) around a task function that just captures the
config, in-process on the tool's Python.

What is not TAO's: `HYDRA_FULL_ERROR=1` during the call, so a rejection raises the original
exception instead of Hydra's print + `sys.exit(1)`; and the process-global state Hydra and the
runner touch (sys.argv, Hydra's version base, the ConfigStore entry, logging, warnings) is
reset before and restored after each call, so calls are independent (~0.25 s each, nearly
all of it Hydra composing twice).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any, Literal

from taomake.tao_wheels import DEFAULT_VERSION, ensure_tao_wheels, import_from

Flavor = Literal["pytorch", "deploy"]

# flavor -> (wheel key, module of hydra_runner, module of ExperimentConfig)
_MODULES: dict[str, tuple[str, str, str]] = {
    "pytorch": ("pytorch", "nvidia_tao_pytorch.core.hydra.hydra_runner",
                "nvidia_tao_pytorch.config.rtdetr.default_config"),
    "deploy": ("deploy", "nvidia_tao_deploy.cv.common.hydra.hydra_runner",
               "nvidia_tao_deploy.config.rtdetr.default_config"),
}


class TaoRejected(Exception):
    """TAO's config loading refused the spec (the message names the key and the reason)."""


@cache
def _tao(flavor: Flavor, version: str = DEFAULT_VERSION) -> tuple[Any, type]:
    key, runner_mod, config_mod = _MODULES[flavor]
    root = ensure_tao_wheels(version)[key]
    return (import_from(root, runner_mod).hydra_runner,
            import_from(root, config_mod).ExperimentConfig)


@contextlib.contextmanager
def _isolated(argv: list[str], name: str) -> Iterator[None]:
    """Run as a fresh `rtdetr <task>` process would, then put the global state back."""
    from hydra import version as hydra_version
    from hydra.core.config_store import ConfigStore
    from hydra.core.global_hydra import GlobalHydra

    saved_argv, saved_env = sys.argv, os.environ.get("HYDRA_FULL_ERROR")
    base = hydra_version.VersionBase.instance()
    saved_base = base.version_base
    root = logging.getLogger()
    saved_log = (root.level, root.handlers[:],
                 {n: (lg.level, lg.handlers[:], lg.disabled, lg.propagate)
                  for n, lg in logging.Logger.manager.loggerDict.items()
                  if isinstance(lg, logging.Logger)})
    repo = ConfigStore.instance().repo  # the runner stores the schema at repo[name]
    saved_node = repo.get(name)
    sys.argv = argv
    os.environ["HYDRA_FULL_ERROR"] = "1"
    # TAO never sets a version base, so Hydra runs with 1.1 semantics (schema matching by
    # file name).  Someone else in this process may have set one (hydra.main, initialize()).
    base.version_base = hydra_version._UNSPECIFIED_
    GlobalHydra.instance().clear()
    try:
        with warnings.catch_warnings():
            # The "validated against ConfigStore schema with the same name" deprecation and the
            # chdir notice: TAO prints them too; they are not findings.
            warnings.simplefilter("ignore")
            yield
    finally:
        GlobalHydra.instance().clear()
        if saved_node is None:
            repo.pop(name, None)
        else:
            repo[name] = saved_node
        base.version_base = saved_base
        sys.argv = saved_argv
        if saved_env is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = saved_env
        root.setLevel(saved_log[0])
        root.handlers[:] = saved_log[1]
        for logger_name, (level, handlers, disabled, propagate) in saved_log[2].items():
            lg = logging.getLogger(logger_name)
            lg.level, lg.handlers[:], lg.disabled, lg.propagate = (level, handlers, disabled,
                                                                   propagate)


def _reason(ex: BaseException) -> str:
    """The exception chain's messages (Hydra wraps the OmegaConf error that names the key)."""
    parts: list[str] = []
    cur: BaseException | None = ex
    while cur is not None and len(parts) < 5:
        text = str(cur).strip()
        if text and text not in parts:
            parts.append(text)
        cur = cur.__cause__ or cur.__context__
    return "\n".join(parts)


def load_with_tao(spec_path: Path, flavor: Flavor, *, version: str = DEFAULT_VERSION
                  ) -> dict[str, Any]:
    """Load `spec_path` the way `rtdetr <task> -e spec_path` does in the `flavor` image.

    Returns the merged config as a plain dict (interpolations unresolved, MISSING as '???').
    Raises TaoRejected if TAO's Hydra/OmegaConf merge refuses the spec.  The file name must end
    in `.yaml`: with any other name TAO skips the schema and accepts anything
    (docs/tao-notes.md §0.1), which would make this oracle say yes to everything.
    """
    from omegaconf import OmegaConf

    spec = Path(spec_path)
    if spec.suffix != ".yaml":
        raise ValueError(f"{spec}: TAO validates only *.yaml spec files (the name is the "
                         "ConfigStore key); rename it")
    if not spec.is_file():
        raise FileNotFoundError(spec)
    hydra_runner, experiment_config = _tao(flavor, version)
    # As PT:core/entrypoint.py builds it: --config-path <realpath(dir)> --config-name <file>.
    config_dir, name = os.path.split(os.path.realpath(spec))
    captured: dict[str, Any] = {}

    @hydra_runner(config_path=config_dir, config_name=name, schema=experiment_config)
    def task(cfg: Any) -> None:
        captured["cfg"] = OmegaConf.to_container(cfg, resolve=False)

    with _isolated(["rtdetr", "--config-path", config_dir, "--config-name", name], name):
        try:
            task()
        except SystemExit as ex:  # argparse / runner errors that bypass HYDRA_FULL_ERROR
            raise TaoRejected(f"{spec}: TAO exited with status {ex.code}") from ex
        except Exception as ex:
            raise TaoRejected(f"{spec}: {_reason(ex)}") from ex
    if "cfg" not in captured:
        raise TaoRejected(f"{spec}: TAO did not run the task")
    return captured["cfg"]
