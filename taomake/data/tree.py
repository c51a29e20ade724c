"""The names of an archive's members (or of the objects under an S3 prefix), checked as one tree
before anything is written to disk.

Containment by construction: a name is normalised as text (no absolute paths, no `..`, no
backslashes or NUL bytes), and every folder on its way must be a folder *of this tree*: a member
that would be written through a symbolic link, or inside something that is a file, is refused,
and so is a second member with the same name.  Symbolic links are resolved inside the tree
itself (never with `os.path.realpath` on the disk, which is what the PATH_MAX bypass of
CVE-2025-4517 fools) and must end at a member of the tree.  Nothing here touches the disk.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

MAX_COMPONENT = 255  # bytes: the limit of ext4, xfs, btrfs...
MAX_PATH = 3072  # bytes: PATH_MAX is 4096, and the results folder comes in front
MAX_LINK_HOPS = 40  # like the kernel's ELOOP limit
JUNK = ("__MACOSX",)  # macOS resource forks: never a dataset's "top folder", never written


class NameProblem(Exception):
    """Why one member cannot be extracted (the caller adds the archive and the fix)."""

    def __init__(self, name: str, why: str) -> None:
        super().__init__(f"{name!r} {why}")
        self.name = name
        self.why = why


@dataclass
class Node:
    kind: str  # dir, file, symlink, hardlink
    name: str  # the member's name as written in the archive ("" for implied folders)
    link: str = ""  # symlink text, or the normalised path a hard link points at


def is_junk(path: str) -> bool:
    first = path.split("/", 1)[0]
    base = path.rsplit("/", 1)[-1]
    return first in JUNK or base.startswith("._") or base == ".DS_Store"


def normalise(name: str) -> list[str]:
    """A member name as path components; raises NameProblem for names that are not plain
    relative paths.  "./a//b/" -> ["a", "b"]; "." -> []."""
    if "\x00" in name:
        raise NameProblem(name, "contains a NUL byte")
    if "\\" in name:
        raise NameProblem(name, "contains a backslash (a Windows path?)")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise NameProblem(name, "is an absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise NameProblem(name, "climbs out of the folder with '..'")
    if len(name.encode(errors="surrogateescape")) > MAX_PATH:
        raise NameProblem(name[:80] + "...", f"is longer than {MAX_PATH} bytes")
    for p in parts:
        if len(p.encode(errors="surrogateescape")) > MAX_COMPONENT:
            raise NameProblem(name[:80] + "...", f"has a component longer than "
                              f"{MAX_COMPONENT} bytes")
    return parts


class Tree:
    """Members added in archive order; `add` refuses what could escape or collide."""

    def __init__(self) -> None:
        self.nodes: dict[str, Node] = {}

    def add(self, name: str, kind: str, link: str = "") -> str | None:
        """Record a member; returns its normalised path (None for the root folder itself).

        `kind` is dir, file, symlink or hardlink (`link`: the symlink text, or the hard link's
        target name, relative to the archive root as tar stores it)."""
        parts = normalise(name)
        if not parts:
            if kind == "dir":
                return None
            raise NameProblem(name, "has an empty name")
        self._parents(name, parts)
        path = "/".join(parts)
        old = self.nodes.get(path)
        if old is not None:
            if old.kind == "dir" and kind == "dir":
                return path  # the same folder listed twice: harmless
            if old.kind == "dir" and not old.name:
                raise NameProblem(name, f"is a {_kind(kind)}, but other members are inside "
                                  "it as a folder")
            raise NameProblem(name, f"appears twice in the archive (as a {_kind(old.kind)} "
                              f"and as a {_kind(kind)}); one would overwrite the other")
        if kind == "hardlink":
            link = self._hardlink_target(name, link)
        self.nodes[path] = Node(kind, name, link)
        return path

    def _parents(self, name: str, parts: list[str]) -> None:
        for i in range(1, len(parts)):
            prefix = "/".join(parts[:i])
            node = self.nodes.get(prefix)
            if node is None:
                self.nodes[prefix] = Node("dir", "")
            elif node.kind == "symlink":
                raise NameProblem(name, f"would be written through the symbolic link "
                                  f"{node.name!r}")
            elif node.kind != "dir":
                raise NameProblem(name, f"would be written inside {node.name!r}, which is a "
                                  "file")

    def _hardlink_target(self, name: str, link: str) -> str:
        try:
            parts = normalise(link)
        except NameProblem as p:
            raise NameProblem(name, f"is a hard link to {link!r}, which {p.why}") from None
        target = self.nodes.get("/".join(parts))
        if target is None or target.kind not in ("file", "hardlink"):
            raise NameProblem(name, f"is a hard link to {link!r}, which is not an earlier "
                              "file of the archive")
        self._parents(name, parts)  # the target must not be reached through a link either
        return target.link if target.kind == "hardlink" else "/".join(parts)

    # ------------------------------------------------------------------ symbolic links

    def resolve(self, path: str, top: str | None = None) -> str:
        """Where the symbolic link at `path` ends, resolved inside the tree; raises
        NameProblem when it leaves the tree (or the `top` folder that will be stripped: a
        `..` out of it would leave the result), loops, or ends at nothing."""
        floor = 1 if top else 0
        node = self.nodes[path]
        queue = posixpath.dirname(path).split("/") + node.link.split("/")
        if node.link.startswith("/") or "\x00" in node.link or "\\" in node.link:
            raise NameProblem(node.name, f"is a symbolic link to {node.link!r}, outside the "
                              "archive")
        out: list[str] = []
        hops = 0
        while queue:
            c = queue.pop(0)
            if c in ("", "."):
                continue
            if c == "..":
                if len(out) <= floor:
                    raise NameProblem(node.name, f"is a symbolic link to {node.link!r}, "
                                      "outside the archive")
                out.pop()
                continue
            out.append(c)
            hit = self.nodes.get("/".join(out))
            if hit is not None and hit.kind == "symlink":
                hops += 1
                if hops > MAX_LINK_HOPS or hit.link.startswith("/"):
                    raise NameProblem(node.name, f"is a symbolic link to {node.link!r}, "
                                      "which loops or leaves the archive")
                out.pop()
                queue = hit.link.split("/") + queue
        end = "/".join(out)
        target = self.nodes.get(end)
        if target is None or is_junk(end):
            raise NameProblem(node.name, f"is a symbolic link to {node.link!r}, which is not "
                              "a member of the archive")
        return end

    def links(self) -> list[str]:
        return [p for p, n in self.nodes.items() if n.kind == "symlink"]

    def single_top(self) -> str | None:
        """The one top-level folder every (non-junk) member is in, if there is one."""
        tops = {p.split("/", 1)[0] for p in self.nodes if not is_junk(p)}
        if len(tops) != 1:
            return None
        top = tops.pop()
        node = self.nodes[top]
        nested = any(p.startswith(top + "/") for p in self.nodes)
        return top if node.kind == "dir" and nested else None


def _kind(kind: str) -> str:
    return {"dir": "folder", "symlink": "symbolic link", "hardlink": "hard link"}.get(kind,
                                                                                      kind)
