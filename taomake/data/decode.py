"""Decode every image of a split, in parallel, once per file version.

The data check decodes every pixel (a truncated JPEG passes `Image.verify()` and then fails
inside TAO's loader).  That is the slow part of a check, so the verdict of each good image is
kept in `<results>/_data/checks/decoded-<folder>.json`, keyed by what changes with its content
(size, mtime, ctime, inode, device: ctime catches an in-place edit that restored the mtime);
a failed image is decoded again next time.  Pillow releases the GIL while decoding, so threads
use every core.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from taomake.compiler.coco import Verdict, decode_image
from taomake.compiler.files import atomic_write


class CachedDecoder:
    def __init__(self, cache_dir: Path, workers: int | None = None) -> None:
        self.cache_dir = Path(cache_dir)
        self.workers = workers or min(8, os.cpu_count() or 1)
        self.decoded = 0  # images decoded (not cached) by this object

    def _cache_file(self, paths: list[str]) -> Path:
        folder = os.path.commonpath([os.path.abspath(p) for p in paths])
        return self.cache_dir / f"decoded-{hashlib.sha256(folder.encode()).hexdigest()[:12]}.json"

    def __call__(self, paths: list[str]) -> dict[str, Verdict]:
        if not paths:
            return {}
        cache_file = self._cache_file(paths)
        try:
            cache: dict[str, list] = json.loads(cache_file.read_text())
        except (OSError, ValueError):
            cache = {}
        out: dict[str, Verdict] = {}
        todo: list[tuple[str, list]] = []
        for p in paths:
            try:
                st = os.stat(p)
            except OSError as e:
                out[p] = (None, f"cannot be read: {e.strerror}")
                continue
            key = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]
            hit = cache.get(os.path.abspath(p))
            if hit and hit[:5] == key:
                out[p] = ((hit[5], hit[6]), None)
            else:
                todo.append((p, key))
        fresh = dict(cache)
        with ThreadPoolExecutor(self.workers) as pool:
            for (p, key), verdict in zip(todo, pool.map(decode_image, [p for p, _ in todo]),
                                         strict=True):
                out[p] = verdict
                if verdict[1] is None and verdict[0] is not None:
                    fresh[os.path.abspath(p)] = key + list(verdict[0])
                else:
                    fresh.pop(os.path.abspath(p), None)
        self.decoded += len(todo)
        if fresh != cache:
            atomic_write(cache_file, json.dumps(fresh, sort_keys=True))
        return out
