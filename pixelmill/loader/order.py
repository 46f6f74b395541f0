"""The order steps run in: a dependency order (list order where free), and a dependency cycle reported
once, at the first step of the cycle."""

from __future__ import annotations

import heapq

from .check import Check


def dependency_order(check: Check, steps, deps, step_index) -> list[str]:
    """Kahn's algorithm with list order as tie-break (a heap: O(n log n)); report a real cycle once.

    Dependencies on steps that are not valid (reported elsewhere) do not hold anything back here.
    """
    position = {s.id: n for n, (_, s) in enumerate(steps)}
    ids = [s.id for _, s in steps]
    waiting = {sid: 0 for sid in position}
    dependents: dict[str, list[str]] = {sid: [] for sid in position}
    for sid in position:
        for dep in deps.get(sid, ()):
            if dep in position:
                waiting[sid] += 1
                dependents[dep].append(sid)
    heap = [position[sid] for sid in position if waiting[sid] == 0]
    heapq.heapify(heap)
    order: list[str] = []
    while heap:
        sid = ids[heapq.heappop(heap)]
        order.append(sid)
        for nxt in dependents[sid]:
            waiting[nxt] -= 1
            if waiting[nxt] == 0:
                heapq.heappush(heap, position[nxt])
    if len(order) < len(position):
        left = {sid for sid in position if waiting[sid] > 0}
        cycle = find_cycle({sid: {d for d in deps.get(sid, ()) if d in left} for sid in left})
        if cycle:
            first = min(cycle, key=position.get)
            k = cycle.index(first)
            cycle = cycle[k:] + cycle[:k]
            check.add(("steps", step_index[first], "id"), "dependency cycle: " + " -> ".join(cycle + [first]),
                      "remove one 'needs' or reference")
    return order


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """A cycle in ``graph`` (step -> steps it waits for), found by an iterative depth-first search."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    for start in graph:
        if state.get(start):
            continue
        path = [start]
        state[start] = 1
        iters = [iter(sorted(graph[start]))]
        while iters:
            nxt = next(iters[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                iters.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                iters.append(iter(sorted(graph[nxt])))
    return []
