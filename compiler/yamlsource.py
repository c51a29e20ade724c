"""Load YAML into plain Python data while remembering where every key came from.

Validation errors must name `file:line:col` and the key path.  ruamel.yaml's round-trip loader
keeps positions; we copy them into a flat `SourceMap` and hand the rest of the compiler plain
dicts/lists/scalars (so nothing downstream depends on ruamel types).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError

from .errors import Location, Problem, ProjectError

KeyPath = tuple[str | int, ...]


def dotted(path: KeyPath) -> str:
    """('dataset', 'train', 0, 'images') -> 'dataset.train[0].images'."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


@dataclass
class SourceMap:
    """Positions (1-based line, col) of keys and values, by key path."""

    file: str
    keys: dict[KeyPath, tuple[int, int]] = field(default_factory=dict)
    values: dict[KeyPath, tuple[int, int]] = field(default_factory=dict)

    def locate(self, path: KeyPath, *, key: str | None = None) -> Location:
        """The closest known position for `path`: the key itself, else its nearest parent.

        A missing key (a required field left out) is reported at its parent mapping.
        """
        shown = key if key is not None else dotted(path)
        probe = tuple(path)
        while probe:
            pos = self.keys.get(probe) or self.values.get(probe)
            if pos:
                return Location(self.file, pos[0], pos[1], shown)
            probe = probe[:-1]
        return Location(self.file, 1, 1, shown)

    def override(self, path: KeyPath, at: tuple[int, int]) -> None:
        """Record that the value at `path` (and everything below) now comes from `at`."""
        for table in (self.keys, self.values):
            for p in [p for p in table if p[: len(path)] == path]:
                del table[p]
        self.keys[path] = at
        self.values[path] = at
        for i in range(1, len(path)):  # new parents (a typo'd section) point here too
            self.keys.setdefault(path[:i], at)


def _plain(node: Any, path: KeyPath, smap: SourceMap) -> Any:
    if isinstance(node, CommentedMap):
        out: dict[Any, Any] = {}
        for k, v in node.items():
            child = (*path, k)
            try:
                kl, kc = node.lc.key(k)
                smap.keys[child] = (kl + 1, kc + 1)
                vl, vc = node.lc.value(k)
                smap.values[child] = (vl + 1, vc + 1)
            except (KeyError, TypeError):  # merged keys (<<) carry no position of their own
                pass
            out[k] = _plain(v, child, smap)
        return out
    if isinstance(node, CommentedSeq):
        items = []
        for i, v in enumerate(node):
            child = (*path, i)
            try:
                il, ic = node.lc.item(i)
                smap.values[child] = (il + 1, ic + 1)
            except (KeyError, TypeError):
                pass
            items.append(_plain(v, child, smap))
        return items
    # ruamel scalar subclasses (ScalarFloat, ScalarBoolean, ...) -> builtins
    if isinstance(node, bool):
        return bool(node)
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, str):
        return str(node)
    return node


def load_yaml_text(text: str, file: str) -> tuple[Any, SourceMap]:
    """Parse YAML text; errors become a ProjectError naming file:line:col."""
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    smap = SourceMap(file)
    try:
        raw = yaml.load(text)
    except DuplicateKeyError as exc:
        mark = exc.problem_mark
        key = str(exc.problem).split('"')[1] if '"' in str(exc.problem) else ""
        raise ProjectError(
            [
                Problem(
                    Location(file, mark.line + 1, mark.column + 1, key),
                    "duplicate key: it is already defined earlier in the same mapping",
                    "keep one of the two entries (for dataset.classes every id must be unique)",
                )
            ]
        ) from None
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (None, None)
        message, hint = f"not valid YAML: {exc.problem or exc.context}", \
            "fix the YAML syntax at that position (indentation, a missing ':' or quote)"
        opened = exc.context_mark
        if exc.problem and opened is not None and opened.line + 1 != line:
            # the parser gives up where it noticed, often lines after the real mistake: an
            # unclosed quote or bracket opened where the construct it was parsing started
            message += (f" ({exc.context} that starts at line {opened.line + 1}, column "
                        f"{opened.column + 1})")
            hint = (f"look from line {opened.line + 1} to line {line}: an unclosed quote or "
                    "bracket, or wrong indentation, is usually there")
        raise ProjectError([Problem(Location(file, line, col), message, hint)]) from None
    return _plain(raw, (), smap), smap


def load_yaml(path: Path) -> tuple[Any, SourceMap]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProjectError(
            [Problem(Location(str(path)), "file not found",
                     "pass the path of your project file, or run `taomake init`")]
        ) from None
    except UnicodeDecodeError as exc:
        raise ProjectError(
            [Problem(Location(str(path)), f"not UTF-8 text ({exc.reason})", "save it as UTF-8")]
        ) from None
    return load_yaml_text(text, str(path))
