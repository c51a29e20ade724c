"""A team's shared build cache: a TAO job whose key is published is fetched, not run; a job
that succeeds publishes its artifacts (docs/cache.md).

`JobCache` is what a job (taomake.jobs) asks: `lookup` before TAO runs (a hit places the
artifacts; a miss records the nearest entry and what differs), `publish` after it was judged
successful.  The cache never fails a job: an unreachable store, a bad entry or a failed
publish is a warning, and the job runs (or stays built) as without a cache.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from taomake.compiler.actions import Action
from taomake.compiler.errors import UsageError
from taomake.compiler.layout import DataSource, Layout
from taomake.compiler.urls import CACHE_URL, has_credentials, redact
from taomake.errors import StorageError

from ..joblog import note
from .entry import BadEntry, Fetched, Nearest, fetch, nearest, publish
from .key import JobKey, NoKey, digest, job_key
from .store import Store, open_store

ENV_URL, ENV_MODE = "TAOMAKE_CACHE_URL", "TAOMAKE_CACHE_MODE"
MODES = ("read-write", "read-only", "off")
URL_RE = re.compile(CACHE_URL)


@dataclass(frozen=True)
class CacheSettings:
    url: str
    mode: str

    @property
    def writable(self) -> bool:
        return self.mode == "read-write"


def cache_settings(configured: Mapping[str, Any] | None,
                   environ: Mapping[str, str] | None = None) -> CacheSettings | None:
    """project.yaml's `cache`, with TAOMAKE_CACHE_URL / TAOMAKE_CACHE_MODE over it; None
    when off.  A bad environment value is a UsageError naming the variable."""
    environ = os.environ if environ is None else environ
    configured = configured or {}
    url = environ.get(ENV_URL) or configured.get("url")
    mode = environ.get(ENV_MODE) or configured.get("mode") or "read-write"
    if mode not in MODES:
        raise UsageError(f"{ENV_MODE}={mode!r} is not a cache mode\n"
                         f"    fix: one of {', '.join(MODES)}")
    if environ.get(ENV_URL):
        if has_credentials(url):
            raise UsageError(f"{ENV_URL} has credentials in it ({redact(url)})\n"
                             "    fix: give the keys the standard AWS way (AWS_ACCESS_KEY_ID "
                             "/ AWS_SECRET_ACCESS_KEY or AWS_PROFILE)")
        if not URL_RE.match(url):
            raise UsageError(f"{ENV_URL}={redact(url)!r} is not a cache location\n"
                             "    fix: s3://bucket/prefix or file:///absolute/folder")
    if not url or mode == "off":
        return None
    return CacheSettings(url, mode)


@dataclass
class JobCache:
    """The cache as one job sees it: its store, and its key (None: not keyed, `why`)."""

    settings: CacheSettings
    store: Store
    key: JobKey | None
    why: str = ""
    record: dict[str, Any] = field(default_factory=dict)  # for provenance and `status`

    @property
    def where(self) -> str:
        return redact(self.settings.url)

    def lookup(self, root: Path, lay: Layout, log: IO[bytes] | None, label: str
               ) -> Fetched | None:
        """The job's entry placed (a hit), or None (it runs): no entry, or one refused."""
        if self.key is None:
            note(log, f"{label}: cache not used for this job: {self.why}")
            self.record = {"state": "not keyed", "why": self.why}
            return None
        try:
            return self._fetch(root, lay, log, label)
        finally:  # what the key is made of, part by part, kept with the artifact
            self.record["parts"] = {name: digest(part)
                                    for name, part in self.key.parts.items()}

    def _fetch(self, root: Path, lay: Layout, log: IO[bytes] | None, label: str
               ) -> Fetched | None:
        try:
            hit = fetch(self.store, self.key, root, lay)
        except BadEntry as exc:
            note(log, f"{label}: WARNING cache entry refused ({exc}); TAO runs instead")
            self.record = {"state": "miss", "key": self.key.digest, "refused": str(exc)}
            return None
        except (StorageError, OSError) as exc:
            note(log, f"{label}: WARNING cache at {self.where} unreachable "
                      f"({redact(str(exc)).splitlines()[0]}); TAO runs instead")
            self.record = {"state": "miss", "key": self.key.digest, "unreachable": True}
            return None
        if hit is None:
            self.record = {"state": "miss", "key": self.key.digest}
            self._nearest(log, label)
            return None
        by = hit.published
        note(log, f"{label}: from cache {self.key.short}: {hit.files} files, "
                  f"{hit.bytes / 1e6:.1f} MB in {hit.seconds:.1f} s (published by "
                  f"{by.get('by', '?')} on {by.get('when', '?')}, job {by.get('job', '?')})")
        self.record = {"state": "hit", "key": self.key.digest, "url": self.where,
                       "published": by, "seconds": round(hit.seconds, 3)}
        return hit

    def _nearest(self, log, label: str) -> None:
        try:
            near: Nearest | None = nearest(self.store, self.key)
        except (StorageError, OSError):
            near = None
        if near is None:
            note(log, f"{label}: cache miss {self.key.short}: no entry for this action yet")
            return
        self.record["nearest"] = {"key": near.key, "published": near.published,
                                  "differs": near.differs}
        note(log, f"{label}: cache miss {self.key.short}: the nearest entry {near.key[:12]} "
                  f"differs in {describe(near.differs)}")

    def publish(self, root: Path, lay: Layout, action: Action, spec: dict[str, Any],
                about: dict[str, Any], log, label: str) -> None:
        if self.key is None:
            return
        if not self.settings.writable:
            self.record.setdefault("state", "miss")
            self.record["published"] = False
            return
        try:
            done = publish(self.store, self.key, root, lay, action, spec, about)
        except (StorageError, OSError) as exc:
            note(log, f"{label}: WARNING not published to the cache at {self.where}: "
                      f"{redact(str(exc)).splitlines()[0]}")
            self.record.update(state="publish failed")
            return
        note(log, f"{label}: published to the cache as {self.key.short}: {done.files} files, "
                  f"{done.sent / 1e6:.1f} of {done.bytes / 1e6:.1f} MB sent in "
                  f"{done.seconds:.1f} s")
        self.record.update(state="published", key=self.key.digest, url=self.where,
                           sent=done.sent, seconds=round(done.seconds, 3))


def describe(differs: Mapping[str, list[str]]) -> str:
    """`spec (train.optim.lr), data (@results/_data/...)` in a line."""
    return "; ".join(f"{part} ({', '.join(items[:4])}{', ...' if len(items) > 4 else ''})"
                     for part, items in differs.items()) or "nothing (a concurrent publish?)"


def job_cache(configured: Mapping[str, Any] | None, storage: Mapping[str, Any], *,
              action: Action, spec: dict[str, Any], layout: Layout, root: Path, results: str,
              sources: list[DataSource], consumed: list[str],
              runtime: dict[str, Any] | None) -> JobCache | None:
    """The cache for one job, None when the project has none (or it is off)."""
    settings = cache_settings(configured)
    if settings is None:
        return None
    store = open_store(settings.url, dict(storage))
    try:
        key = job_key(action, spec, layout, root=root, results=results, sources=sources,
                      consumed=consumed, runtime=runtime)
    except NoKey as exc:
        return JobCache(settings, store, None, str(exc))
    return JobCache(settings, store, key)


__all__ = ["ENV_MODE", "ENV_URL", "MODES", "CacheSettings", "JobCache", "cache_settings",
           "describe", "job_cache"]
