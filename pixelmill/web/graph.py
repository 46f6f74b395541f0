"""A workflow's steps as a layered graph, laid out here and drawn as SVG by the template.

Each step sits in the layer one below its deepest dependency; edges run from a step to the steps that wait
for it. Layers stack top to bottom, so a long workflow stays readable at phone width.
"""

from __future__ import annotations

from dataclasses import dataclass

BOX_W, BOX_H, GAP_X, GAP_Y, PAD = 168, 46, 24, 40, 8


@dataclass
class Box:
    id: str
    node: str
    x: int
    y: int
    gpu: bool = False


@dataclass
class Edge:
    src: str
    dst: str
    path: str


def layout(order: list[str], deps: dict[str, set[str]], nodes: dict[str, tuple[str, bool]]):
    """Boxes and edges for steps in dependency ``order``; ``nodes`` maps step id to (node type, uses GPU)."""
    depth: dict[str, int] = {}
    for sid in order:
        depth[sid] = 1 + max((depth[d] for d in deps.get(sid, ()) if d in depth), default=-1)
    layers: dict[int, list[str]] = {}
    for sid in order:
        layers.setdefault(depth[sid], []).append(sid)
    widest = max((len(v) for v in layers.values()), default=1)
    width = PAD * 2 + widest * BOX_W + (widest - 1) * GAP_X
    boxes: dict[str, Box] = {}
    for level, ids in layers.items():
        row_w = len(ids) * BOX_W + (len(ids) - 1) * GAP_X
        x0 = (width - row_w) // 2
        for i, sid in enumerate(ids):
            node, gpu = nodes.get(sid, ("?", False))
            boxes[sid] = Box(sid, node, x0 + i * (BOX_W + GAP_X), PAD + level * (BOX_H + GAP_Y), gpu)
    edges = []
    for sid in order:
        b = boxes[sid]
        for d in sorted(deps.get(sid, ())):
            if d not in boxes:
                continue
            a = boxes[d]
            x1, y1 = a.x + BOX_W // 2, a.y + BOX_H
            x2, y2 = b.x + BOX_W // 2, b.y
            mid = (y1 + y2) // 2
            edges.append(Edge(d, sid, f"M{x1},{y1} C{x1},{mid} {x2},{mid} {x2},{y2 - 4}"))
    height = PAD * 2 + (len(layers) or 1) * BOX_H + max(0, len(layers) - 1) * GAP_Y
    return {"boxes": list(boxes.values()), "edges": edges, "width": width, "height": height,
            "box_w": BOX_W, "box_h": BOX_H}
