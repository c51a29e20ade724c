"""The per-experiment state a compile shares with its checks and key locators."""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import Problem
from .load import Experiment, LoadedProject
from .yamlsource import KeyPath


@dataclass
class CompileContext:
    """One experiment being compiled: its project, the override keys that replaced a TAO key
    (action, dotted TAO key) -> project.yaml key path, and the problems found so far."""

    lp: LoadedProject
    exp: Experiment
    overridden: dict[tuple[str, str], KeyPath] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
