"""The procedural "shapes" world the embedded models are trained on, and a deterministic pixel checker.

Every image is one flat shape (a colour, a class, a size, a free position) on a flat background, and
its caption is exactly its prompt: ``a small red circle on a blue background``. The checker reads an
image back into those four attributes without any learned model, so generated images can be scored.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

IMAGE_SIZE = 32

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "orange": (245, 140, 20),
    "yellow": (240, 225, 30),
    "green": (30, 170, 60),
    "blue": (30, 70, 225),
    "purple": (140, 50, 190),
    "white": (245, 245, 245),
    "black": (15, 15, 15),
}
SHAPES = ("circle", "square", "triangle", "cross")
SIZES = ("small", "large")
# extent (longest side in pixels at 32x32) drawn uniformly from these ranges
SIZE_RANGES = {"small": (11, 14), "large": (20, 26)}
SIZE_THRESHOLD = 17  # extents below are "small"

# (colour, shape, background) combinations never shown to the image generator; used to evaluate it.
N_HELD_OUT = 24


@dataclass(frozen=True)
class Spec:
    color: str
    shape: str
    background: str
    size: str

    @property
    def prompt(self) -> str:
        return f"a {self.size} {self.color} {self.shape} on a {self.background} background"


def all_triples() -> list[tuple[str, str, str]]:
    return [(c, s, b) for c, s, b in itertools.product(COLORS, SHAPES, COLORS) if c != b]


def held_out_triples() -> list[tuple[str, str, str]]:
    """A fixed set of triples: every colour, shape and background still appears in training elsewhere."""
    rng = np.random.RandomState(1234)
    triples = all_triples()
    order = rng.permutation(len(triples))
    chosen: list[tuple[str, str, str]] = []
    used_pairs: set = set()
    for i in order:
        c, s, b = triples[i]
        # at most one held-out triple per (colour, shape) and per (shape, background) pair
        keys = {("cs", c, s), ("sb", s, b), ("cb", c, b)}
        if keys & used_pairs:
            continue
        chosen.append(triples[i])
        used_pairs |= keys
        if len(chosen) == N_HELD_OUT:
            break
    return sorted(chosen)


def specs(triples) -> list[Spec]:
    return [Spec(c, s, b, z) for (c, s, b) in triples for z in SIZES]


def train_specs() -> list[Spec]:
    held = set(held_out_triples())
    return specs([t for t in all_triples() if t not in held])


def eval_specs() -> list[Spec]:
    return specs(held_out_triples())


def all_specs() -> list[Spec]:
    return specs(all_triples())


def _inside(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """u, v: coordinates normalised to [-1, 1] over the shape's bounding box (v grows downwards)."""
    if shape == "circle":
        return u * u + v * v <= 1.0
    if shape == "square":
        return (np.abs(u) <= 1.0) & (np.abs(v) <= 1.0)
    if shape == "triangle":
        return (v <= 1.0) & (v >= -1.0) & (np.abs(u) <= (v + 1.0) / 2.0)
    if shape == "cross":
        arm = 1.0 / 3.0
        return ((np.abs(u) <= arm) & (np.abs(v) <= 1.0)) | ((np.abs(v) <= arm) & (np.abs(u) <= 1.0))
    raise ValueError(f"unknown shape {shape!r}")


def coverage(shape: str, cx: float, cy: float, hx: float, hy: float, size: int = IMAGE_SIZE, ss: int = 4):
    """Fraction of each pixel covered by the shape (anti-aliased by ``ss`` x ``ss`` supersampling)."""
    grid = (np.arange(size * ss) + 0.5) / ss
    xs, ys = np.meshgrid(grid, grid)
    inside = _inside(shape, (xs - cx) / max(hx, 1e-6), (ys - cy) / max(hy, 1e-6)).astype(np.float32)
    return inside.reshape(size, ss, size, ss).mean(axis=(1, 3))


def render(spec: Spec, rng: np.random.RandomState, size: int = IMAGE_SIZE) -> np.ndarray:
    """An HxWx3 uint8 image of ``spec`` at a random position and extent."""
    lo, hi = SIZE_RANGES[spec.size]
    extent = rng.uniform(lo, hi + 1)
    half = extent / 2.0
    cx = rng.uniform(half + 1, size - half - 1)
    cy = rng.uniform(half + 1, size - half - 1)
    alpha = coverage(spec.shape, cx, cy, half, half, size)[..., None]
    fg = np.array(COLORS[spec.color], np.float32)
    bg = np.array(COLORS[spec.background], np.float32)
    img = alpha * fg + (1 - alpha) * bg
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def dataset(spec_list: list[Spec], n: int, seed: int) -> tuple[np.ndarray, list[Spec]]:
    """``n`` images cycling through a shuffled ``spec_list``: (n, H, W, 3) uint8 and their specs."""
    rng = np.random.RandomState(seed)
    out = np.empty((n, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    chosen = []
    order = []
    while len(order) < n:
        order.extend(rng.permutation(len(spec_list)).tolist())
    for i in range(n):
        spec = spec_list[order[i]]
        out[i] = render(spec, rng)
        chosen.append(spec)
    return out, chosen


# ---------------------------------------------------------------- checker

_PALETTE_NAMES = list(COLORS)
_PALETTE = np.array([COLORS[k] for k in _PALETTE_NAMES], np.float32)


def nearest_color(rgb) -> str:
    d = ((_PALETTE - np.asarray(rgb, np.float32)[None]) ** 2).sum(1)
    return _PALETTE_NAMES[int(d.argmin())]


@dataclass
class Reading:
    color: str | None
    shape: str | None
    background: str
    size: str | None
    extent: float = 0.0

    def matches(self, spec: Spec) -> dict[str, bool]:
        got = {
            "color": self.color == spec.color,
            "background": self.background == spec.background,
            "shape": self.shape == spec.shape,
            "size": self.size == spec.size,
        }
        got["all"] = all(got.values())
        return got

    @property
    def prompt(self) -> str | None:
        if None in (self.color, self.shape, self.size):
            return None
        return Spec(self.color, self.shape, self.background, self.size).prompt


def read_image(img) -> Reading:
    """Read (colour, shape, background, size) from an RGB image (array or PIL) with fixed rules.

    Background: the palette colour nearest the median border pixel. Shape pixels: those nearer to
    another palette colour than to the background (biggest such colour wins). Size: the longer side of
    their bounding box. Shape class: the template whose rendering in that box best overlaps them (IoU).
    """
    arr = np.asarray(img.convert("RGB") if hasattr(img, "convert") else img, np.float32)
    if arr.shape[0] != IMAGE_SIZE or arr.shape[1] != IMAGE_SIZE:
        from PIL import Image

        arr = np.asarray(Image.fromarray(arr.astype(np.uint8)).resize((IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR),
                         np.float32)
    border = np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]])
    background = nearest_color(np.median(border, axis=0))
    bg_idx = _PALETTE_NAMES.index(background)
    dist = ((arr[:, :, None, :] - _PALETTE[None, None]) ** 2).sum(-1)  # H, W, K
    labels = dist.argmin(-1)
    fg = labels != bg_idx
    if fg.sum() < 4:
        return Reading(None, None, background, None)
    counts = np.bincount(labels[fg], minlength=len(_PALETTE_NAMES))
    color_idx = int(counts.argmax())
    color = _PALETTE_NAMES[color_idx]
    mask = labels == color_idx
    ys, xs = np.nonzero(mask)
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    extent = float(max(x1 - x0, y1 - y0))
    size = "small" if extent < SIZE_THRESHOLD else "large"
    cx, cy, hx, hy = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
    best, best_iou = None, -1.0
    for shape in SHAPES:
        template = coverage(shape, cx, cy, hx, hy) >= 0.5
        inter = (template & mask).sum()
        union = (template | mask).sum()
        iou = inter / max(union, 1)
        if iou > best_iou:
            best, best_iou = shape, iou
    return Reading(color, best, background, size, extent)
