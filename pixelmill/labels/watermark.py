"""Invisible watermark, version 2: keyed, and readable after everyday edits (numpy only).

Layout. The image's luminance is looked at on a normalised ``G x G`` grid (any size or aspect ratio maps
onto it, so a resize changes nothing). On that grid the mark is a ``T x T`` tile repeated ``K x K``
times. The tile is band-limited to spatial frequencies of ``R_MIN..R_MAX`` cycles per tile, i.e.
``K*R_MIN..K*R_MAX`` cycles per image: low enough to survive JPEG and a resize to 25 %, high enough that
the picture itself (strong at the lowest frequencies) interferes little. In that band, a key-seeded
random orthonormal basis gives one direction to a sync pattern and one to each of the 80 bits (48 payload
bits + CRC-32).

Embedding is informed: the detector's own statistic is measured on the image and the mark is chosen so
that each bit's projection lands at ``+A`` or ``-A`` whatever the picture contributes (the picture's
interference is cancelled, not just outweighed); a few passes absorb clipping and rounding.

Detection finds the geometry first. Repetition makes the mark's power spectrum a lattice, so the
autocorrelation of the whitened band-passed image has peaks one tile apart: their positions give the
scale and rotation (a crop, a resize, a rotation of a few degrees, a screenshot with a border). Every
pixel is then folded into one tile, which averages the picture away and keeps the mark; a circular
cross-correlation with the sync pattern (and with its mirror image, for a flipped copy) gives the shift
and a z-score; the bits are projections of the aligned tile. A payload counts as found when the sync
z-score clears ``Z_MIN`` and the CRC checks (after flipping at most 3 of the 14 weakest bits: at most
470 tries against a 32-bit check).

Keys are secrets (bytes). ``DEMO_KEY`` is public: a mark made with it proves nothing, anyone can forge or
overwrite it. See ``pixelmill.labels.wmkeys`` for where the real key comes from.
"""

from __future__ import annotations

import hashlib
import itertools
import zlib
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from PIL import Image

G = 256  # normalised analysis grid
K = 4  # tiles per side
T = G // K  # tile size on the grid
R_MIN, R_MAX = 3, 12  # band of the tile, in cycles per tile (x K = cycles per image)
PAYLOAD_BYTES = 6
NBITS = PAYLOAD_BYTES * 8 + 32  # payload + CRC-32
RMS = 3.0  # mark strength in grey levels (about 38.6 dB PSNR; see PSNR_MIN)
SYNC_SHARE = 0.40  # part of the energy given to the sync pattern
Z_MIN = 4.5  # sync z-score a detection needs (unmarked images reach ~4-5.5: the CRC-32 decides)
MIN_SIDE = 128
CHASE_BITS = 14
CHASE_FLIPS = 3  # Chase decoding tries flipping up to this many of the CHASE_BITS weakest bits
DEMO_KEY = b"pixelmill public demo key"  # public: marks made with it are forgeable
SCHEME = "pixelmill-wm2"
PASSES = 4
PSNR_MIN = 38.3  # the change is scaled back when it would cost more than this (dB, RGB)
SCALES = tuple(round(0.85 + 0.03 * i, 2) for i in range(11))  # searched stretch of each grid axis
ANGLES = (-2.25, -1.5, -0.75, 0.75, 1.5, 2.25)  # searched rotations, degrees
N_LATTICE = 2  # candidate lattice vectors per axis tried by the detector
WHITEN = 1.0  # detector weight grows as radius**WHITEN across the band


class WatermarkError(ValueError):
    """The image or payload cannot carry a watermark (the message says why)."""


# ---- payload ---------------------------------------------------------------------------------------------

def payload_bytes(payload: str | bytes) -> bytes:
    """The 6 bytes a payload string becomes (UTF-8, zero padded); longer payloads are an error."""
    raw = payload.encode("utf-8") if isinstance(payload, str) else bytes(payload)
    if len(raw) > PAYLOAD_BYTES:
        raise WatermarkError(
            f"watermark payload {payload!r} is {len(raw)} bytes; at most {PAYLOAD_BYTES} fit (e.g. 'AI-GEN')")
    return raw.ljust(PAYLOAD_BYTES, b"\0")


def _crc(data: bytes) -> int:
    return zlib.crc32(b"pixelmill-wm2" + data)


def _bits(data: bytes) -> np.ndarray:
    word = data + _crc(data).to_bytes(4, "big")
    return np.unpackbits(np.frombuffer(word, dtype=np.uint8)).astype(np.int64)


def _check(bits: np.ndarray) -> tuple[bool, bytes]:
    raw = np.packbits(bits.astype(np.uint8)).tobytes()
    data, crc = raw[:PAYLOAD_BYTES], int.from_bytes(raw[PAYLOAD_BYTES:], "big")
    return _crc(data) == crc, data


def key_id(key: bytes) -> str:
    """A short public fingerprint of a key (safe to print and store; the key cannot be derived from it)."""
    return hashlib.sha256(b"pixelmill-wm2-id:" + key).hexdigest()[:12]


# ---- the band and the keyed basis ----------------------------------------------------------------------------

def _band_points() -> tuple[np.ndarray, np.ndarray]:
    fy = np.fft.fftfreq(T, 1.0 / T).astype(int)[:, None]
    fx = np.fft.fftfreq(T, 1.0 / T).astype(int)[None, :]
    radius = np.hypot(fy, fx)
    half = (fx > 0) | ((fx == 0) & (fy > 0))  # one of each conjugate pair
    iy, ix = np.nonzero(half & (radius >= R_MIN) & (radius <= R_MAX))
    return iy, ix


_IY, _IX = _band_points()
DIMS = 2 * len(_IY)


def _to_vec(tile: np.ndarray) -> np.ndarray:
    """Orthonormal coordinates of a tile's band (the rest of the tile is ignored)."""
    spec = np.fft.fft2(tile)[_IY, _IX] * (np.sqrt(2.0) / T)
    return np.concatenate([spec.real, spec.imag])


def _from_vec(vec: np.ndarray) -> np.ndarray:
    n = len(_IY)
    spec = np.zeros((T, T), dtype=complex)
    values = (vec[:n] + 1j * vec[n:]) * (T / np.sqrt(2.0))
    spec[_IY, _IX] = values
    spec[(-_IY) % T, (-_IX) % T] = np.conj(values)
    return np.fft.ifft2(spec).real


@dataclass(frozen=True)
class _Basis:
    directions: np.ndarray  # (DIMS, 1 + NBITS): column 0 is the sync pattern
    sync_tile: np.ndarray
    sync_spec: np.ndarray


@lru_cache(maxsize=16)
def _basis(key: bytes) -> _Basis:
    seed = int.from_bytes(hashlib.sha256(b"pixelmill-wm2:" + key).digest(), "big")
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((DIMS, 1 + NBITS)))
    sync = _from_vec(q[:, 0])
    return _Basis(q, sync, np.conj(np.fft.fft2(sync)))


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


def _geometry(sy: float, sx: float, degrees: float = 0.0) -> np.ndarray:
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    return np.array([[c, -s], [s, c]]) @ np.diag([sy, sx])


def _searched() -> list[np.ndarray]:
    """Rotations tried besides the scale grid and the autocorrelation's guesses."""
    return [_geometry(1.0, 1.0, d) for d in ANGLES]


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


def _scale_grid(yb: np.ndarray, basis: _Basis) -> list[tuple[tuple[float, bool, np.ndarray], np.ndarray]]:
    """Sync scores over every (row, column) stretch in SCALES: axis-aligned folds are separable, so each
    costs two sparse sums (a crop stretches one or two axes, a border shrinks both)."""
    out = []
    for sy in SCALES:
        rows = _fold_rows(yb, sy).T  # (G columns, T)
        tiles = np.stack([_fold_rows(rows, sx).T for sx in SCALES])
        out += zip(_sync_many(tiles, basis), [_geometry(sy, sx) for sx in SCALES])
    return out


# ---- detection -----------------------------------------------------------------------------------------------

@dataclass
class Detection:
    found: bool
    payload: bytes
    key_id: str | None  # fingerprint of the key that verified (None when nothing did)
    z: float  # sync z-score: ~3-4 on unmarked images, far higher on marked ones
    confidence: float  # mean per-bit reliability 0..1
    flipped: bool = False
    corrected: int = 0  # bits fixed by Chase decoding
    bits: list[int] = field(default_factory=list)
    raw_bits: list[int] = field(default_factory=list)  # hard decisions before correction

    @property
    def crc_ok(self) -> bool:
        return self.found

    @property
    def text(self) -> str:
        return self.payload.rstrip(b"\0").decode("utf-8", errors="replace")


def _sync_many(tiles: np.ndarray, basis: _Basis) -> list[tuple]:
    """Sync z-score over all circular shifts of each tile and of its mirror image: per tile (z, flipped,
    the spectrum of the tile as read, sub-pixel shift y, x). Batched: one FFT call for all."""
    n = len(tiles)
    t = tiles - tiles.mean(axis=(1, 2), keepdims=True)
    spec = np.fft.fft2(np.concatenate([t, t[:, :, ::-1]]))
    corr = np.fft.ifft2(spec * basis.sync_spec).real
    flat = corr.reshape(2 * n, -1)
    idx = flat.argmax(axis=1)
    z = (flat[np.arange(2 * n), idx] - flat.mean(axis=1)) / (flat.std(axis=1) + 1e-12)
    out = []
    for k in range(n):
        m = k if z[k] >= z[k + n] else k + n
        i, j = divmod(int(idx[m]), T)
        c = corr[m]
        di = _parabola(c[i - 1, j], c[i, j], c[(i + 1) % T, j])
        dj = _parabola(c[i, j - 1], c[i, j], c[i, (j + 1) % T])
        out.append((float(z[m]), m >= n, spec[m], i + di, j + dj))
    return out


def _sync(tile: np.ndarray, basis: _Basis) -> tuple:
    return _sync_many(tile[None], basis)[0]


def _project(sync: tuple, basis: _Basis) -> tuple[float, bool, np.ndarray]:
    """(z, flipped, the 1 + NBITS projections of the tile shifted into place)."""
    z, flipped, spec, sy, sx = sync
    f = np.fft.fftfreq(T)
    ramp = np.exp(2j * np.pi * (f[:, None] * sy + f[None, :] * sx))
    aligned = np.fft.ifft2(spec * ramp).real
    return z, flipped, basis.directions.T @ _to_vec(aligned)


def _soft(tile: np.ndarray, basis: _Basis) -> tuple[float, bool, np.ndarray]:
    return _project(_sync(tile, basis), basis)


def _decode_soft(soft: np.ndarray) -> tuple[bool, bytes, np.ndarray, float, int]:
    values = soft[1:]
    scale = float(np.median(np.abs(values))) + 1e-12
    bits = (values > 0).astype(np.int64)
    reliability = np.clip(np.abs(values) / scale, 0, 2) / 2
    ok, data = _check(bits)
    corrected = 0
    if not ok:
        weakest = np.argsort(np.abs(values))[:CHASE_BITS]
        tries = (c for n in range(1, CHASE_FLIPS + 1) for c in itertools.combinations(weakest, n))
        for flips in tries:
            trial = bits.copy()
            trial[list(flips)] ^= 1
            ok, data = _check(trial)
            if ok:
                bits, corrected = trial, len(flips)
                break
    return ok, data, bits, float(reliability.mean()), corrected


def _prepare(image: Image.Image) -> tuple[np.ndarray, list[np.ndarray]]:
    if min(image.size) < 16:
        raise WatermarkError(f"image is {image.size[0]}x{image.size[1]}; too small to hold a watermark")
    yb = _bandpass(_grid(image))
    return yb, _lattices(yb) + _SEARCHED


def _candidates(yb: np.ndarray, lattices: list[np.ndarray], basis: _Basis) -> list[tuple[float, bool, np.ndarray]]:
    """(z, flipped, projections) at the three geometries the sync likes best, at the original one and at the best one refined by
    a finer search around it, best z first. Several are kept because the embedding cancelled the picture's
    interference at the original geometry exactly: a neighbour with a marginally higher sync score can
    read worse bits."""
    scored = [(_sync(_fold(yb, lat), basis), lat) for lat in lattices] + _scale_grid(yb, basis)
    identity = scored[0][0]  # the embedding's own geometry
    scored.sort(key=lambda r: -r[0][0])
    best, lat = scored[0]
    refined = best
    rotated = not (lat[0, 1] == 0 and lat[1, 0] == 0)
    for step in (0.015, 0.0075, 0.00375):  # coordinate search: row stretch, column stretch, angle
        moves = [(step, 0, 0), (-step, 0, 0), (0, step, 0), (0, -step, 0)]
        if rotated:
            moves += [(0, 0, step * 25), (0, 0, -step * 25)]
        for dy, dx, da in moves:
            cand = lat @ _geometry(1 + dy, 1 + dx, da) if rotated else np.diag(np.diag(lat) * (1 + np.array([dy, dx])))
            r = _sync(_fold(yb, cand), basis)
            if r[0] > refined[0]:
                refined, lat = r, cand
    out = [r for r, _ in scored[:3]]
    if all(identity is not r for r in out):
        out.append(identity)
    if refined is not best:
        out.append(refined)
    return [_project(r, basis) for r in sorted(out, key=lambda r: -r[0])]


def detect(image: Image.Image, keys: list[bytes] | tuple[bytes, ...] = (DEMO_KEY,)) -> Detection:
    """Look for a mark made with any of ``keys``; the result names the key that verified (by fingerprint)."""
    yb, lattices = _prepare(image)
    best: Detection | None = None
    for key in keys:
        for z, flipped, soft in _candidates(yb, lattices, _basis(bytes(key))):
            ok, data, bits, conf, corrected = _decode_soft(soft)
            found = ok and z >= Z_MIN and soft[0] > 0
            det = Detection(found, data if found else b"", key_id(key) if found else None, z, conf,
                            flipped, corrected, bits.tolist(), (soft[1:] > 0).astype(int).tolist())
            if found:
                return det
            if best is None or det.z > best.z:
                best = det
    assert best is not None
    return best


def bit_accuracy(image: Image.Image, payload: str | bytes, *, key: bytes = DEMO_KEY) -> float:
    """Fraction of the 64 embedded bits read back right (no correction), at the best sync hypothesis."""
    want = _bits(payload_bytes(payload))
    yb, lattices = _prepare(image)
    return max(float((want == (soft[1:] > 0)).mean()) for _, _, soft in _candidates(yb, lattices, _basis(bytes(key))))


# ---- embedding -----------------------------------------------------------------------------------------------

def _measure(y: np.ndarray, basis: _Basis) -> np.ndarray:
    """The detector's projections at the embedding geometry (no flip, no shift)."""
    tile = _fold(_bandpass(_resize_f(y, (G, G))), np.eye(2))
    return basis.directions.T @ _to_vec(tile - tile.mean())


def embed(image: Image.Image, payload: str | bytes, *, key: bytes = DEMO_KEY, min_side: int = MIN_SIDE,
          rms: float = RMS) -> Image.Image:
    """Return a copy of ``image`` (RGB or RGBA) carrying ``payload`` under ``key``."""
    if min(image.size) < min_side:
        raise WatermarkError(
            f"image is {image.size[0]}x{image.size[1]}; the watermark needs at least {min_side} px on the "
            "short side to survive JPEG, resizing and cropping")
    signs = 2.0 * _bits(payload_bytes(payload)) - 1.0
    basis = _basis(bytes(key))
    alpha = image.getchannel("A") if image.mode in ("RGBA", "LA") else None
    rgb = np.asarray(image.convert("RGB"), dtype=np.float64)
    h, w = rgb.shape[:2]
    y0 = _luma(rgb)
    host = _measure(y0, basis)
    # sync gets SYNC_SHARE of the energy. Each bit's projection must end at least ``amp`` on its side: where
    # the picture already puts it there nothing is spent, elsewhere the picture's part is cancelled; ``amp``
    # is the largest margin the rest of the energy buys (bisection)
    energy = (rms * T) ** 2
    sync_amp = np.sqrt(SYNC_SHARE * energy)
    bit_energy = (1 - SYNC_SHARE) * energy
    along = signs * host[1:]
    lo, hi = 0.0, np.sqrt(bit_energy)
    for _ in range(40):
        amp = (lo + hi) / 2
        lo, hi = (amp, hi) if float((np.maximum(amp - along, 0) ** 2).sum()) <= bit_energy else (lo, amp)
    goal = np.concatenate([[sync_amp + host[0]], signs * np.maximum(lo, along)])
    coef = goal - host
    out = rgb
    for _ in range(PASSES):
        tile = _from_vec(basis.directions @ coef)
        pattern = _resize_f(np.tile(tile, (K, K)), (w, h), Image.Resampling.BICUBIC)
        out = np.clip(np.rint(rgb + pattern[..., None]), 0, 255)
        got = _measure(_luma(out), basis)
        coef = coef + (goal - got)
    # the corrections can overspend: scale the (unrounded) change back until the PSNR is PSNR_MIN
    change = np.clip(rgb + pattern[..., None], 0, 255) - rgb
    budget = 255.0**2 / 10 ** (PSNR_MIN / 10)
    factor = 1.0
    for _ in range(8):
        mse = float(((out - rgb) ** 2).mean())
        if mse <= budget:
            break
        factor *= np.sqrt(budget / mse) * 0.995
        out = np.clip(np.rint(rgb + change * factor), 0, 255)
    result = Image.fromarray(out.astype(np.uint8), "RGB")
    if alpha is not None:
        result.putalpha(alpha)
    return result


_SEARCHED = _searched()
