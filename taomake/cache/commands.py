"""`taomake cache ls` and `taomake cache gc --keep-days N`: what a team's cache holds, and
removing what nobody built from lately.

gc removes manifests published more than N days ago, then the blobs that no kept manifest
names and that are themselves older than N days (a blob sent by a publish still under way has
no manifest yet: its age keeps it).
"""

from __future__ import annotations

import argparse
import json
import posixpath
import time
from pathlib import Path

from taomake.compiler.errors import UsageError
from taomake.compiler.plan import load_plan

from . import cache_settings
from .store import ROOT, Listed, Store, age_days, open_store


def _store(project: Path) -> tuple[Store, bool]:
    plan = load_plan(project, write=False)
    settings = cache_settings(plan.cache)
    if settings is None:
        raise UsageError(f"{plan.project_file} has no cache (or it is off)\n"
                         "    fix: add `cache: {url: s3://bucket/prefix}` to project.yaml, or "
                         "set TAOMAKE_CACHE_URL")
    return open_store(settings.url, plan.storage), settings.writable


def _manifests(store: Store) -> list[tuple[Listed, dict]]:
    """Every manifest, parsed ({} when it does not parse)."""
    out = []
    for item in store.list(f"{ROOT}/manifests"):
        try:
            out.append((item, json.loads(store.get_bytes(item.name) or b"")))
        except ValueError:
            out.append((item, {}))
    return out


def cmd_ls(args: argparse.Namespace) -> int:
    store, _ = _store(Path(args.project))
    rows = _manifests(store)
    print(f"cache {store.url}: {len(rows)} entries")
    for item, m in sorted(rows, key=lambda r: -r[0].modified):
        files = m.get("files", {})
        size = sum(f.get("size", 0) for f in files.values() if isinstance(f, dict))
        pub = m.get("published", {})
        key = posixpath.basename(item.name).removesuffix(".json")
        print(f"  {m.get('action', '?'):20} {key[:12]}  {len(files):4} files "
              f"{size / 1e6:9.1f} MB  {pub.get('when', '?')}  {pub.get('by', '?')}  "
              f"{pub.get('job', '')}" + ("" if m else "  (unreadable manifest)"))
    return 0


def cmd_gc(args: argparse.Namespace) -> int:
    store, writable = _store(Path(args.project))
    if not writable:
        raise UsageError("the cache is read-only here (cache.mode / TAOMAKE_CACHE_MODE): gc "
                         "would write")
    now = time.time()
    kept: set[str] = set()
    removed = 0
    for item, m in _manifests(store):
        if age_days(item, now) > args.keep_days:
            store.delete(item.name)
            removed += 1
        else:
            kept |= {f["sha256"] for f in m.get("files", {}).values()
                     if isinstance(f, dict) and "sha256" in f}
    blobs = freed = 0
    for item in store.list(f"{ROOT}/blobs"):
        sha = posixpath.basename(item.name)
        if sha not in kept and age_days(item, now) > args.keep_days:
            store.delete(item.name)
            blobs += 1
            freed += item.size
    print(f"removed {removed} manifest(s) older than {args.keep_days} days and {blobs} "
          f"blob(s) no kept manifest names ({freed / 1e6:.1f} MB)")
    return 0


def add_parser(sub, add_project) -> None:
    p = sub.add_parser("cache", help="the team's build cache: list it, remove old entries",
                       description="The team's build cache (project.yaml `cache`).")
    cmds = p.add_subparsers(dest="cache_command", required=True, metavar="COMMAND")
    ls = cmds.add_parser("ls", help="every entry: action, key, files, size, when, who")
    add_project(ls)
    ls.set_defaults(func=cmd_ls)
    gc = cmds.add_parser("gc", help="remove entries older than --keep-days and the blobs "
                         "only they named")
    add_project(gc)
    gc.add_argument("--keep-days", type=float, required=True, help="keep entries published "
                    "within this many days")
    gc.set_defaults(func=cmd_gc)
