"""``for_each`` on a step: the item list, running items with a parallelism cap, collecting outputs.

Each item is recorded as its own step row ``<id>[<index>]`` (events carry ``item_of`` and ``index``);
the step's own row holds the collected outputs: every output becomes a list in item order, with
``null`` for an item that failed (``on_item_error: continue``) or never started. After a crash,
items that had finished are kept and only the others run again.
"""

from __future__ import annotations

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from .model import MAX_ITEMS
from .status import StepStatus

_ITEM_ID = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\[(\d+)\]$")


class ItemsError(ValueError):
    pass


def label(step_id: str, index: int) -> str:
    """The step id under which one item is recorded."""
    return f"{step_id}[{index}]"


def check_items(value) -> list:
    """The rendered ``for_each`` value as a list; ``ItemsError`` if it is not one."""
    if isinstance(value, tuple):
        value = list(value)
    if not isinstance(value, list):
        shown = repr(value)
        shown = shown if len(shown) <= 80 else shown[:80] + "..."
        kind = next((t.__name__ for t in (bool, int, float, str, dict) if isinstance(value, t)), type(value).__name__)
        raise ItemsError(f"for_each must give a list, it gave a {kind}: {shown}")
    if len(value) > MAX_ITEMS:
        raise ItemsError(f"for_each gave {len(value):,} items, more than the {MAX_ITEMS:,} one step may run")
    return value


def finished_items(finished: dict[str, dict], step_ids, whole: dict) -> dict[str, dict[int, dict]]:
    """Stored item rows of for_each steps that had not finished as a whole: ``{step_id: {index: row}}``."""
    out: dict[str, dict[int, dict]] = {}
    for sid, row in finished.items():
        m = _ITEM_ID.match(sid)
        if m and m.group(1) in step_ids and m.group(1) not in whole:
            out.setdefault(m.group(1), {})[int(m.group(2))] = row
    return out


class Progress:
    """Counts finished items; reports at most 20 times a second, and always the last one (thread-safe).

    Every item also has its own ``step.finished``/``step.failed`` event, so nothing is lost by the throttle.
    """

    def __init__(self, total: int, report, every_s: float = 0.05):
        self.total = total
        self.done = 0
        self._report = report
        self._every = every_s
        self._last = 0.0
        self._lock = threading.Lock()

    def add(self, index: int, status: str) -> None:
        with self._lock:
            self.done += 1
            value, now = self.done, time.monotonic()
            if value < self.total and now - self._last < self._every:
                return
            self._last = now
        self._report(value, index, status)


def fan_out(n: int, max_parallel: int, one) -> list:
    """``[one(0), ..., one(n - 1)]`` with at most ``max_parallel`` running at once; results in item order."""
    workers = min(max_parallel, n)
    if workers <= 1:
        return [one(i) for i in range(n)]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pixelmill-item") as pool:
        return list(pool.map(one, range(n)))


def collect(results, fields) -> dict[str, list]:
    """Each output as a list in item order; ``None`` where an item has no outputs."""
    return {name: [(r.outputs or {}).get(name) if r.status.ok else None for r in results] for name in fields}


_SEVERITY = (StepStatus.BLOCKED, StepStatus.CANCELLED, StepStatus.FAILED)


def verdict(results, policy: str) -> tuple[str, str] | None:
    """``(status, message)`` when the step fails as a whole, else None.

    A blocked item blocks the step whatever the policy (a policy decision is never skipped over); with
    ``stop`` any failed item fails the step; with ``continue`` the step fails only if no item succeeded.
    """
    n = len(results)
    bad = [(i, r) for i, r in enumerate(results) if r.status in _SEVERITY]
    if not bad:
        return None
    blocked = [(i, r) for i, r in bad if r.status is StepStatus.BLOCKED]
    if blocked:
        i, r = blocked[0]
    elif policy == "continue" and any(r.status.ok for r in results):
        return None
    else:
        i, r = bad[0]
    cause = (r.error or {}).get("message", r.status.value)
    return r.status.value, f"item {i} of {n} {r.status.value} ({len(bad)} of {n} items did not succeed): {cause}"
