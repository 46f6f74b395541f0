"""Refresh the node registry from the ``pixelmill.nodes`` entry points on reload, so a node package
installed while the service runs is picked up. Code already imported cannot be swapped in a running
process: an upgraded package is reported as needing a restart."""

from __future__ import annotations

import importlib
import logging
from importlib.metadata import entry_points

from ..registry import GROUP, Registry

log = logging.getLogger(__name__)


def installed() -> dict[str, tuple[str, str]]:
    """Entry-point name -> (distribution, version) of every installed node entry point."""
    out = {}
    for ep in entry_points(group=GROUP):
        dist = ep.dist
        out[ep.name] = (dist.name if dist else "unknown", dist.version if dist else "?")
    return out


class NodeRefresher:
    def __init__(self):
        self.seen = installed()

    def refresh(self, current: Registry) -> tuple[Registry, list[str], list[str]]:
        """A registry with the node types installed now (and the hand-registered ones of ``current``);
        returns it, the new types, and the packages that need a restart to load their new code."""
        importlib.invalidate_caches()  # new folders in site-packages become importable
        now = installed()
        restart = sorted({f"{dist} {self.seen[name][1]} -> {ver}" for name, (dist, ver) in now.items()
                          if name in self.seen and self.seen[name] != (dist, ver)})
        fresh = Registry.from_entry_points()
        for info in current:
            if fresh.get(info.type) is None:
                fresh.register(info.cls, info.source)  # registered by hand (tests, embedding apps)
        added = sorted(set(fresh.types()) - set(current.types()))
        for name, (dist, ver) in now.items():
            if name not in self.seen:
                self.seen[name] = (dist, ver)
        if added:
            log.info("node types added from installed packages: %s", ", ".join(added))
        for item in restart:
            log.warning("node package upgraded (%s): its new code loads only after a restart of pixelmill serve",
                        item)
        return fresh, added, restart
