"""The watermark's analysis grid and geometry: band-pass, autocorrelation guesses, folding into one tile.

Everything here is key-independent; ``watermark`` builds the keyed patterns on top of it.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image

G = 256  # normalised analysis grid
K = 4  # tiles per side
T = G // K  # tile size on the grid
R_MIN, R_MAX = 3, 12  # band of the tile, in cycles per tile (x K = cycles per image)
SCALES = tuple(round(0.85 + 0.03 * i, 2) for i in range(11))  # searched stretch of each grid axis
ANGLES = (-2.25, -1.5, -0.75, 0.75, 1.5, 2.25)  # searched rotations, degrees
N_LATTICE = 2  # candidate lattice vectors per axis tried by the detector
WHITEN = 1.0  # detector weight grows as radius**WHITEN across the band
WEIGHT_RADIUS = 4  # local-energy window of the fold weights (grid pixels each side)
# fold weights go as local band energy ** -WEIGHT_POWER: above 1, strong edges (a black-and-white
# picture's blobs) count for less still against the calm areas between them, where the mark stands out
WEIGHT_POWER = 1.5
FLAT_STD = 0.5  # grid pixels whose neighbourhood varies less than this (grey levels) are flat fill
FLAT_RADIUS = 2  # that neighbourhood: 5 x 5 grid pixels
FLAT_RUN = 12  # ... in a straight run of at least 2 FLAT_RUN + 1 such pixels (a row or a column)


# ---- analysis grid -----------------------------------------------------------------------------------------

def _luma(rgb: np.ndarray) -> np.ndarray:
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def _resize_f(arr: np.ndarray, size: tuple[int, int], resample=Image.Resampling.BILINEAR) -> np.ndarray:
    return np.asarray(Image.fromarray(arr.astype(np.float32), "F").resize(size, resample), dtype=np.float64)


@lru_cache(maxsize=1)
def _band_mask() -> np.ndarray:
    """Band-pass of the mirrored 2G grid: flat over the mark's band, cosine tapers outside it (cycles/image)."""
    f = np.fft.fftfreq(2 * G, 1.0 / (2 * G)) / 2.0  # cycles per image
    r = np.hypot(f[:, None], f[None, :])
    lo0, lo1 = K * R_MIN * 0.55, K * R_MIN * 0.85
    hi0, hi1 = K * R_MAX * 1.15, K * R_MAX * 1.45
    mask = np.ones_like(r)
    mask[r <= lo0] = 0
    rise = (r > lo0) & (r < lo1)
    mask[rise] = 0.5 - 0.5 * np.cos(np.pi * (r[rise] - lo0) / (lo1 - lo0))
    mask[r >= hi1] = 0
    fall = (r > hi0) & (r < hi1)
    mask[fall] = 0.5 + 0.5 * np.cos(np.pi * (r[fall] - hi0) / (hi1 - hi0))
    # whitening: pictures are strongest at the low end of the band, so weight frequencies by radius
    return mask * (r / (K * (R_MIN + R_MAX) / 2.0)) ** WHITEN


def _grid(image: Image.Image) -> np.ndarray:
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
    return _resize_f(_luma(rgb), (G, G))


def _bandpass(y: np.ndarray) -> np.ndarray:
    """Band-passed grid (mirrored at the borders so edges add nothing), big outliers (edges of bars,
    stickers, borders) clipped to 3 robust standard deviations."""
    y = y - y.mean()
    m = np.concatenate([y, y[::-1]], axis=0)
    m = np.concatenate([m, m[:, ::-1]], axis=1)
    out = np.fft.ifft2(np.fft.fft2(m) * _band_mask()).real[:G, :G]
    limit = 3.0 * 1.4826 * float(np.median(np.abs(out))) + 1e-6
    return np.clip(out, -limit, limit)


def _open_box(a: np.ndarray, r: int, axes: tuple[int, ...] = (0, 1)) -> np.ndarray:
    """Box sum of size 2r+1 along ``axes``, zero outside the grid (not circular)."""
    for axis in axes:
        c = np.cumsum(np.pad(a, [(r + 1, r) if ax == axis else (0, 0) for ax in (0, 1)]), axis=axis)
        a = np.take(c, np.arange(2 * r + 1, c.shape[axis]), axis=axis) - np.take(c, np.arange(0, c.shape[axis] - 2 * r - 1), axis=axis)
    return a


def _unflat(y: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Flat areas (caption bars, stickers, screenshot frames, the empty corners a rotation leaves, where
    no pixel varies) carry no mark, and their edges against the picture are strong steps that ring through
    the band. They are filled with a smooth continuation of the picture around them (so the step
    disappears) and get no weight. Returns the filled grid and the mask of kept pixels (None: nothing
    flat, or almost everything flat, e.g. a blank picture: left as it is)."""
    r = FLAT_RADIUS
    n = _open_box(np.ones_like(y), r)
    mean = _open_box(y, r) / n
    still = (_open_box(y * y, r) / n - mean * mean < FLAT_STD**2).astype(np.float64)
    # only long runs count (bars, frames, stickers, corners): a mark clipped at black or white leaves
    # small still patches of its own, which are kept
    flat = np.zeros(y.shape, dtype=bool)
    for axis in (0, 1):
        run = _open_box(still, FLAT_RUN, (axis,)) > 2 * FLAT_RUN + 0.5  # a whole run of 2 FLAT_RUN + 1
        flat |= _open_box(run.astype(np.float64), FLAT_RUN, (axis,)) > 0.5
    if not flat.any():
        return y, None
    keep = _open_box(flat.astype(np.float64), r) < 0.5  # flat areas grown by r: their edge goes too
    if keep.mean() < 0.3:
        return y, None
    k = keep.astype(np.float64)
    num, den = _open_box(_open_box(y * k, 8), 8), _open_box(_open_box(k, 8), 8)
    fill = np.where(den > 1e-6, num / np.maximum(den, 1e-6), float(y[keep].mean()))
    return np.where(keep, y, fill), keep


def _analyse(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The band-passed grid and its fold weights (flat areas weigh nothing)."""
    y, keep = _unflat(y)
    yb = _bandpass(y)
    w = _weights(yb)
    return yb, (w if keep is None else w * keep)


def _weights(yb: np.ndarray) -> np.ndarray:
    """Per-pixel weights for folding: the inverse of the local band energy (to the power WEIGHT_POWER), so
    busy texture, edges, bars and stickers (where the picture drowns the mark) count less than calm areas
    (where the mark stands out)."""
    energy = _box(yb * yb, WEIGHT_RADIUS)
    return (1.0 / (energy + float(np.median(energy)) + 1e-9)) ** WEIGHT_POWER


# ---- geometry ------------------------------------------------------------------------------------------------

def _box(a: np.ndarray, r: int) -> np.ndarray:
    """Circular box mean of size 2r+1 along both axes."""
    out = a.copy()
    for s in range(1, r + 1):
        out += np.roll(a, s, 0) + np.roll(a, -s, 0)
    out2 = out.copy()
    for s in range(1, r + 1):
        out2 += np.roll(out, s, 1) + np.roll(out, -s, 1)
    return out2 / (2 * r + 1) ** 2


def _acf(yb: np.ndarray) -> np.ndarray:
    """Autocorrelation of the spectrally whitened band: peaks at the tile period show the mark's lattice."""
    power = np.abs(np.fft.fft2(yb)) ** 2
    white = power / (_box(power, 3) + 1e-9)
    f = np.fft.fftfreq(G, 1.0 / G)
    r = np.hypot(f[:, None], f[None, :])
    band = (r >= K * R_MIN * 0.7) & (r <= K * R_MAX * 1.3)
    white = np.where(band, white - white[band].mean(), 0.0)
    acf = np.fft.ifft2(white).real
    return acf / (acf.std() + 1e-12)


def _peaks(acf: np.ndarray, centre: tuple[float, float], span: tuple[int, int], n: int) -> list[np.ndarray]:
    """The ``n`` best lattice-vector candidates in a window around ``centre`` (dy, dx), sub-pixel.

    A candidate ``v`` scores ``acf(v) + acf(2v)``: the mark's repetition gives peaks at both, while a
    picture's own structure rarely does."""
    cy, cx = centre
    sy, sx = span
    ys = np.arange(int(cy - sy), int(cy + sy) + 1)
    xs = np.arange(int(cx - sx), int(cx + sx) + 1)
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    score = acf[yy % G, xx % G] + acf[(2 * yy) % G, (2 * xx) % G]
    found = []
    for idx in np.argsort(score, axis=None)[::-1][:300]:
        i, j = np.unravel_index(idx, score.shape)
        if 0 < i < score.shape[0] - 1 and 0 < j < score.shape[1] - 1:
            v = score[i, j]
            if v < score[i - 1:i + 2, j - 1:j + 2].max():
                continue
            di = _parabola(score[i - 1, j], v, score[i + 1, j])
            dj = _parabola(score[i, j - 1], v, score[i, j + 1])
            found.append(np.array([ys[i] + di, xs[j] + dj]))
            if len(found) == n:
                break
    return found


def _parabola(a: float, b: float, c: float) -> float:
    den = a - 2 * b + c
    return 0.0 if abs(den) < 1e-12 else float(np.clip(0.5 * (a - c) / den, -0.5, 0.5))


def _lattices(yb: np.ndarray, n: int = N_LATTICE) -> list[np.ndarray]:
    """Candidate 2x2 maps from tile coordinates to grid coordinates (columns: row step, column step)."""
    acf = _acf(yb)
    span = (int(T * 0.12), int(T * 0.3))
    rows = [p[::-1] for p in _peaks(acf.T, (0.0, T * 1.03), span, n)]  # lags along the rows
    cols = _peaks(acf, (0.0, T * 1.03), span, n)
    out = [np.eye(2)]
    for r in rows:
        for c in cols:
            a = np.column_stack([r, c]) / T
            if abs(np.linalg.det(a)) > 0.4:
                out.append(a)
    return out


def _fold(yb: np.ndarray, lattice: np.ndarray) -> np.ndarray:
    """Average every grid pixel into one tile, at the position the lattice gives it (bilinear splat)."""
    if np.allclose(lattice, np.eye(2)):
        return yb.reshape(K, T, K, T).mean(axis=(0, 2))
    if lattice[0, 1] == 0 and lattice[1, 0] == 0:  # axis-aligned: separable, much cheaper
        return _fold_rows(_fold_rows(yb, float(lattice[0, 0])).T, float(lattice[1, 1])).T
    inv = np.linalg.inv(lattice)
    qy = inv[0, 0] * _PY + inv[0, 1] * _PX
    qx = inv[1, 0] * _PY + inv[1, 1] * _PX
    y0, x0 = np.floor(qy), np.floor(qx)
    fy, fx = (qy - y0).ravel(), (qx - x0).ravel()
    y0 = y0.astype(np.int64).ravel() % T
    x0 = x0.astype(np.int64).ravel() % T
    y1, x1 = (y0 + 1) % T, (x0 + 1) % T
    vals = yb.ravel()
    num = np.zeros(T * T)
    den = np.zeros(T * T)
    for yy, xx, w in ((y0, x0, (1 - fy) * (1 - fx)), (y0, x1, (1 - fy) * fx), (y1, x0, fy * (1 - fx)),
                      (y1, x1, fy * fx)):
        idx = yy * T + xx
        num += np.bincount(idx, w * vals, T * T)
        den += np.bincount(idx, w, T * T)
    return (num / np.maximum(den, 1e-9)).reshape(T, T)


_PY, _PX = (a.astype(np.float64) for a in np.mgrid[0:G, 0:G])


def _rotation(degrees: float, aspect: float = 1.0) -> np.ndarray:
    """A rotation of the picture as seen on the grid. The grid squeezes a ``aspect`` = width / height
    picture into a square, so a rotation of its pixels is a rotation conjugated by that squeeze (a
    rotation and a shear) unless the picture is square."""
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    return np.array([[c, -s * aspect], [s / aspect, c]])


def _geometry(sy: float, sx: float, degrees: float = 0.0, aspect: float = 1.0) -> np.ndarray:
    return _rotation(degrees, aspect) @ np.diag([sy, sx])


def _searched(aspect: float = 1.0) -> list[np.ndarray]:
    """Rotations tried besides the scale grid and the autocorrelation's guesses."""
    return [_geometry(1.0, 1.0, d, aspect) for d in ANGLES]


@lru_cache(maxsize=256)
def _axis_fold(scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """How one grid axis stretched by ``scale`` folds into the tile: each pixel adds ``1 - frac`` of itself
    to bin ``lo`` and ``frac`` to the next. Returned as a sort order of the 2G contributions by bin, the
    segment starts, the bins present, the weights, and the total weight per bin."""
    q = np.arange(G) / scale
    lo = np.floor(q)
    frac = q - lo
    lo = lo.astype(int) % T
    bins = np.concatenate([lo, (lo + 1) % T])
    weights = np.concatenate([1 - frac, frac])
    order = np.argsort(bins, kind="stable")
    present, starts = np.unique(bins[order], return_index=True)
    total = np.bincount(bins, weights, T)
    return order, starts, present, weights, total


def _fold_rows(a: np.ndarray, scale: float) -> np.ndarray:
    order, starts, present, weights, total = _axis_fold(scale)
    rows = np.concatenate([a, a])[order] * weights[order][:, None]
    out = np.zeros((T, a.shape[1]))
    out[present] = np.add.reduceat(rows, starts, axis=0)
    return out / np.maximum(total, 1e-9)[:, None]

