"""Invisible watermark, version 2: keyed, and readable after everyday edits (numpy only).

Layout. The image's luminance is looked at on a normalised ``G x G`` grid (any size or aspect ratio maps
onto it, so a resize changes nothing). On that grid the mark is a ``T x T`` tile repeated ``K x K``
times. The tile is band-limited to spatial frequencies of ``R_MIN..R_MAX`` cycles per tile, i.e.
``K*R_MIN..K*R_MAX`` cycles per image: low enough to survive JPEG and a resize to 25 %, high enough that
the picture itself (strong at the lowest frequencies) interferes little. In that band, a key-seeded
random orthonormal basis gives one direction to a sync pattern and one to each of the 88 bits (48 payload
bits + 40 check bits, see ``watermark_code``).

Embedding is informed: the detector's own statistic is measured on the picture, as it is and after each
crop in ``CROPS`` (10 % of each side, 5 % of all sides: a crop takes away part of the picture's
interference, so what the picture reads there differs), and energy goes only to bits the picture does
not already push at least ``A`` to the right side in every one of those cases (the mark makes up for the
worst case; ``A`` is the largest margin the energy buys). A few passes absorb clipping and rounding, and
the change is scaled to just over ``PSNR_MIN`` (down when the passes overspend, up by at most ``UPSCALE``
when clipping leaves budget unspent). The change of luminance is spread over R, G and B in proportion to
the luminance weights (``CHANNELS``): PSNR counts the three alike, and that spread moves luminance 1.16
times as far per unit of RMS error as the same change on all three.

Detection searches the geometry. Flat areas (caption bars, stickers, screenshot frames, a rotation's
empty corners) are first filled with a smooth continuation of the picture and weighted zero, so their
edges do not ring through the band. The band-passed grid is folded into one tile (which averages the
picture away and keeps the mark) under every stretch of the two axes in ``SCALES`` (a crop stretches one
or two axes, a screenshot border shrinks both; axis-aligned folds are separable and cheap), under small
rotations of the picture's pixels (``ANGLES``; on the square grid a non-square picture's rotation is a
rotation and a shear) and under two guesses from the autocorrelation of the whitened spectrum (the
repeated tile makes a lattice there). A circular cross-correlation of each folded tile with the sync
pattern and with its mirror image (a flipped copy) gives a shift and a z-score. The ``TRIED`` best
geometries, each also refined by a finer search around it (for the highest sync reading), and the
original geometry are decoded in turn (bits are projections of the tile shifted into place) until one
checks: a weak mark's true geometry is not always the top sync score but nearly always among the first
few. On busy pictures the picture pulls the sync's peak up to about 1 % of stretch away from the mark's
geometry, where several bits are already wrong, so the 8 stretches around the first ``NEIGHBOURED``
refined geometries are decoded too, and so are the 24 shifts around the sync's shift there (up to 0.8 grid
pixels: the picture pulls the sync's peak that far). The original geometry at shift zero, and its mirror image, are tried
without any search: a picture whose own structure outscores the sync everywhere still has its mark there
after JPEG, a resize, colour changes or a flip. A payload counts as found when the sync z-score clears
``Z_MIN`` (``Z_ORIGIN`` at shift zero) and list decoding finds a valid word (at most ``DECODINGS`` = 15
decodings of 62,893 words and ``SHORT_DECODINGS`` = 96 of the neighbours with the short list of 8,769
words, ``WORDS`` = 1,785,219 words tried against a 40-bit check per key, so an unmarked image passes with
odds of at most 1,785,219 / 2^40, about 1.6e-6, per key tried; the z gates only add to that).

Keys are secrets (bytes). ``DEMO_KEY`` is public: a mark made with it proves nothing, anyone can forge or
overwrite it. See ``pixelmill.labels.wmkeys`` for where the real key comes from.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from PIL import Image

from . import watermark_code as code
from . import wm_grid
from .watermark_code import PAYLOAD_BYTES, WatermarkError, payload_bytes  # noqa: F401 (public API)
from .wm_grid import (  # noqa: F401 (G: layout)
    R_MAX,
    R_MIN,
    SCALES,
    G,
    K,
    T,
    _analyse,
    _bandpass,
    _fold,
    _fold_rows,
    _geometry,
    _grid,
    _lattices,
    _luma,
    _parabola,
    _resize_f,
    _rotation,
    _searched,
    _weights,
)

NBITS = code.NBITS  # 48 payload bits + 40 check bits
RMS = 3.5  # mark strength in grey levels of luminance before the PSNR scaling (see PSNR_MIN)
UPSCALE = 1.5  # the change is scaled up by at most this much when it leaves PSNR budget unspent
# how a change of luminance is spread over R, G and B: in proportion to the luminance weights, the change
# that moves luminance most per unit of squared error (PSNR is measured on RGB); the same change on all three
# channels costs 1 / 0.746 as much squared error for the same luminance change
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114])
CHANNELS = LUMA_WEIGHTS / float(LUMA_WEIGHTS @ LUMA_WEIGHTS)
SYNC_SHARE = 0.30  # part of the energy given to the sync pattern
Z_MIN = 4.0  # sync z-score a detection needs (unmarked images reach ~4-6: the check bits decide)
Z_ORIGIN = 1.0  # the same at shift zero of the original geometry (or its mirror), tried without a search
MIN_SIDE = 128
TRIED = 6  # geometries decoded per key (each also refined): see _candidates
REFINE_STEPS = (0.015, 0.0075, 0.00375, 0.001875)  # relative stretch steps of the refinement (x 25 = degrees)
NEIGHBOURED = 3  # the first NEIGHBOURED geometries also decode the 8 stretches around their refinement ...
NEIGHBOUR_STEP = 0.006  # ... this far apart (relative)
SHIFT_STEP = 0.4  # ... and the 24 shifts around the sync's shift there, up to 2 steps away (grid pixels)
NUDGES = sorted(((dy * SHIFT_STEP, dx * SHIFT_STEP) for dy in range(-2, 3) for dx in range(-2, 3) if dy or dx),
                key=lambda d: np.hypot(*d))  # nearest first
DECODINGS = 2 * TRIED + 3  # full decodings per key (see _candidates): 15
SHORT_DECODINGS = (8 + len(NUDGES)) * NEIGHBOURED  # decodings with the short list (the neighbours): 96
# words tried against the check per key: 15 x 62,893 + 96 x 8,769 = 1,785,219
WORDS = DECODINGS * code.LIST_SIZE + SHORT_DECODINGS * code.SHORT_LIST_SIZE
DEMO_KEY = b"pixelmill public demo key"  # public: marks made with it are forgeable
SCHEME = "pixelmill-wm2"
PASSES = 4
# crops (top, left, bottom, right fractions) the embedder plans for, besides the picture as it is
CROPS = ((0.1, 0, 0, 0), (0, 0.1, 0, 0), (0, 0, 0.1, 0), (0, 0, 0, 0.1), (0.05, 0.05, 0.05, 0.05))
PSNR_MIN = 38.1  # the change is scaled back when it would cost more than this (dB, RGB)


# ---- payload ---------------------------------------------------------------------------------------------

def _bits(data: bytes) -> np.ndarray:
    return code.encode(data)


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
    response: np.ndarray  # (1 + NBITS, 1 + NBITS): what the detector reads per unit of each coefficient


@lru_cache(maxsize=16)
def _basis(key: bytes) -> _Basis:
    seed = int.from_bytes(hashlib.sha256(b"pixelmill-wm2:" + key).digest(), "big")
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((DIMS, 1 + NBITS)))
    sync = _from_vec(q[:, 0])
    # the detector weights each frequency (band-pass and whitening), so coefficients and readings differ
    r = np.hypot(np.where(_IY > T // 2, _IY - T, _IY), _IX) * K
    gain = np.tile((r / (K * (R_MIN + R_MAX) / 2.0)) ** wm_grid.WHITEN, 2)
    return _Basis(q, sync, np.conj(np.fft.fft2(sync)), q.T @ (gain[:, None] * q))


# ---- detection -----------------------------------------------------------------------------------------------

def _scale_grid(yw: np.ndarray, w: np.ndarray, basis: _Basis) -> list[tuple[tuple[float, bool, np.ndarray], np.ndarray]]:
    """Sync scores over every (row, column) stretch in SCALES: axis-aligned folds are separable, so each
    costs two sparse sums (a crop stretches one or two axes, a border shrinks both)."""
    out = []
    for sy in SCALES:
        rows, wrows = _fold_rows(yw, sy).T, _fold_rows(w, sy).T  # (G columns, T)
        tiles = np.stack([_fold_rows(rows, sx).T / np.maximum(_fold_rows(wrows, sx).T, 1e-12) for sx in SCALES])
        out += zip(_sync_many(tiles, basis), [_geometry(sy, sx) for sx in SCALES])
    return out


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


def _at_origin(tile: np.ndarray, basis: _Basis, flipped: bool) -> tuple:
    """The sync reading of a tile (or of its mirror image) at shift zero, as a z-score over all shifts:
    where an unattacked (or only re-coloured, re-compressed, resized or flipped) picture has its mark, even
    when the picture's own structure puts a higher correlation peak elsewhere."""
    t = tile - tile.mean()
    spec = np.fft.fft2(t[:, ::-1] if flipped else t)
    corr = np.fft.ifft2(spec * basis.sync_spec).real
    return float((corr[0, 0] - corr.mean()) / (corr.std() + 1e-12)), flipped, spec, 0.0, 0.0


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


def _decode_soft(soft: np.ndarray, short: bool = False) -> tuple[bool, bytes, np.ndarray, float, int]:
    values = soft[1:]
    scale = float(np.median(np.abs(values))) + 1e-12
    reliability = np.clip(np.abs(values) / scale, 0, 2) / 2
    ok, data, bits, corrected = code.decode(values, short)
    return ok, data, bits, float(reliability.mean()), corrected


def _wfold(yw: np.ndarray, w: np.ndarray, lattice: np.ndarray) -> np.ndarray:
    """Weighted fold: sum of weight x value over sum of weight, per tile position."""
    return _fold(yw, lattice) / np.maximum(_fold(w, lattice), 1e-12)


def _prepare(image: Image.Image) -> tuple[tuple[np.ndarray, np.ndarray, float], list[np.ndarray]]:
    if min(image.size) < 16:
        raise WatermarkError(f"image is {image.size[0]}x{image.size[1]}; too small to hold a watermark")
    yb, w = _analyse(_grid(image))
    aspect = image.size[0] / image.size[1]
    return (yb * w, w, aspect), _lattices(yb) + _searched(aspect)


def _refine(yw: np.ndarray, w: np.ndarray, aspect: float, basis: _Basis, best: tuple, lat: np.ndarray) -> tuple:
    """Coordinate search around one geometry: row stretch, column stretch and (for a rotated one) angle,
    in halving steps, for the highest sync reading at the sync's best shift; returns the best sync found
    (``best`` itself when nothing beats it) and its geometry. The reading itself, not its z-score: this
    close to the mark's geometry the z-score is nearly flat (over +-1 % of stretch on busy pictures),
    while the reading falls off as soon as the tile is misplaced."""
    rotated = not (lat[0, 1] == 0 and lat[1, 0] == 0)
    top = _project(best, basis)[2][0]
    for step in REFINE_STEPS:
        moves = [(step, 0, 0), (-step, 0, 0), (0, step, 0), (0, -step, 0)]
        if rotated:
            moves += [(0, 0, step * 25), (0, 0, -step * 25)]
        for dy, dx, da in moves:
            stretch = np.diag(1 + np.array([dy, dx]))
            cand = _rotation(da, aspect) @ lat @ stretch if rotated else lat @ stretch
            r = _sync(_wfold(yw, w, cand), basis)
            reading = _project(r, basis)[2][0]
            if reading > top:
                best, lat, top = r, cand, reading
    return best, lat


def _around(yw: np.ndarray, w: np.ndarray, basis: _Basis, lat: np.ndarray):
    """The sync at the 8 stretches around a refined geometry (NEIGHBOUR_STEP apart on each axis). On busy
    pictures the picture pulls the sync's peak up to about 1 % of stretch away from the mark's true
    geometry, where several bits are already wrong; the sync barely tells these stretches apart, but the
    check does (each one is a decoding, counted in the false-positive bound)."""
    for dy, dx in itertools.product((-NEIGHBOUR_STEP, 0.0, NEIGHBOUR_STEP), repeat=2):
        if dy or dx:
            yield _sync(_wfold(yw, w, lat @ np.diag([1 + dy, 1 + dx])), basis)


def _nudged(sync: tuple):
    """The 24 shifts up to two SHIFT_STEPs around a sync's shift, nearest first. On busy texture the picture
    pulls the sync's peak up to about 0.8 grid pixels away from the mark, and the bits, which the embedder
    made right at the exact place, are wrong there by the dozen (grass after a crop of 5 % of each side: 0
    wrong bits at the mark's shift, 3 to 9 half a pixel away, 12 to 15 a pixel away). The sync cannot tell
    these shifts apart (the picture is what moved it); the check can."""
    z, flipped, spec, sy, sx = sync
    for dy, dx in NUDGES:
        yield z, flipped, spec, sy + dy, sx + dx


def _candidates(pair: tuple[np.ndarray, np.ndarray, float], lattices: list[np.ndarray], basis: _Basis):
    """(z, flipped, projections) at the geometries worth decoding, most likely first (a generator: the
    caller stops at the first one that decodes). The ``TRIED`` geometries the sync likes best are each
    tried as found and refined by a finer search around them, and the original geometry is always tried:
    the embedding cancelled the picture's interference there exactly. A weak mark's true geometry is often
    not the top sync score (an unmarked picture's best of some 150 geometries reaches z ~5-6), but it is
    nearly always among the first few (or next to one of them: ``_around``), and the check bits tell
    which one is right. Each item also carries its z gate and whether it is decoded with the short list;
    at most ``DECODINGS`` full and ``SHORT_DECODINGS`` short ones are yielded."""
    yw, w, aspect = pair
    scored = [(_sync(_wfold(yw, w, lat), basis), lat) for lat in lattices] + _scale_grid(yw, w, basis)
    identity = scored[0][0]  # the embedding's own geometry
    origin = _wfold(yw, w, lattices[0])
    scored.sort(key=lambda r: -r[0][0])
    kept: list[np.ndarray] = []
    for r, lat in scored:
        if len(kept) == TRIED:
            break
        if any(np.abs(lat - k).max() < 0.02 for k in kept):  # a neighbour of one already kept
            continue
        kept.append(lat)
        yield _project(r, basis) + (Z_MIN, False)
        refined, at = _refine(yw, w, aspect, basis, r, lat)
        if refined is not r:
            yield _project(refined, basis) + (Z_MIN, False)
        if len(kept) == 1:
            if identity is not r:
                yield _project(identity, basis) + (Z_MIN, False)
            for flipped in (False, True):
                yield _project(_at_origin(origin, basis, flipped), basis) + (Z_ORIGIN, False)
        if len(kept) <= NEIGHBOURED:
            for near in itertools.chain(_nudged(refined), _around(yw, w, basis, at)):
                yield _project(near, basis) + (Z_MIN, True)


def detect(image: Image.Image, keys: list[bytes] | tuple[bytes, ...] = (DEMO_KEY,)) -> Detection:
    """Look for a mark made with any of ``keys``; the result names the key that verified (by fingerprint)."""
    pair, lattices = _prepare(image)
    best: Detection | None = None
    for key in keys:
        for z, flipped, soft, z_min, short in _candidates(pair, lattices, _basis(bytes(key))):
            ok, data, bits, conf, corrected = _decode_soft(soft, short)
            found = ok and z >= z_min and soft[0] > 0
            det = Detection(found, data if found else b"", key_id(key) if found else None, z, conf,
                            flipped, corrected, bits.tolist(), (soft[1:] > 0).astype(int).tolist())
            if found:
                return det
            if best is None or det.z > best.z:
                best = det
    assert best is not None
    return best


def bit_accuracy(image: Image.Image, payload: str | bytes, *, key: bytes = DEMO_KEY) -> float:
    """Fraction of the NBITS embedded bits read back right (no correction), at the best sync hypothesis."""
    want = _bits(payload_bytes(payload))
    pair, lattices = _prepare(image)
    return max(float((want == (soft[1:] > 0)).mean()) for _, _, soft, _, _ in _candidates(pair, lattices, _basis(bytes(key))))


# ---- embedding -----------------------------------------------------------------------------------------------

def _measure(y: np.ndarray, basis: _Basis) -> np.ndarray:
    """The detector's projections at the embedding geometry (no flip, no shift)."""
    yb, w = _analyse(_resize_f(y, (G, G)))
    tile = _wfold(yb * w, w, np.eye(2))
    return basis.directions.T @ _to_vec(tile - tile.mean())


def _measure_cropped(y: np.ndarray, basis: _Basis, crops=CROPS) -> list[np.ndarray]:
    """The detector's projections of the picture after each crop in ``CROPS``, at the geometry a detector
    resynchronised on the mark would use there (the stretch and shift the crop causes are known here)."""
    height, width = y.shape
    out = []
    for top, left, bottom, right in crops:
        y0, x0 = round(height * top), round(width * left)
        y1, x1 = height - round(height * bottom), width - round(width * right)
        yb, w = _analyse(_resize_f(y[y0:y1, x0:x1], (G, G)))
        tile = _wfold(yb * w, w, np.diag([height / (y1 - y0), width / (x1 - x0)]))
        spec = np.fft.fft2(tile - tile.mean())
        out.append(_project((0.0, False, spec, -y0 * G / height, -x0 * G / width), basis)[2])
    return out


def embed(image: Image.Image, payload: str | bytes, *, key: bytes = DEMO_KEY, min_side: int = MIN_SIDE,
          rms: float = RMS, crops: tuple[tuple[float, float, float, float], ...] = CROPS,
          channels: np.ndarray = CHANNELS) -> Image.Image:
    """Return a copy of ``image`` (RGB or RGBA) carrying ``payload`` under ``key``, planned to read right
    after each of ``crops`` too (top, left, bottom, right fractions)."""
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
    # sync gets SYNC_SHARE of the energy. Each bit's reading must end at least ``amp`` on its side, here
    # and after each crop in CROPS (the picture's part of a reading changes when a part of the picture
    # goes; the mark's part does not): where the picture already puts it there in every case nothing is
    # spent, elsewhere the mark makes up for the worst case; ``amp`` is the largest margin the rest of the
    # energy buys (bisection). Coefficients follow from the readings through the detector's response matrix.
    energy = (rms * T) ** 2
    sync_coef = np.sqrt(SYNC_SHARE * energy)
    bit_energy = (1 - SYNC_SHARE) * energy
    resp_bb = basis.response[1:, 1:]
    from_sync = basis.response[1:, 0] * sync_coef
    worst = np.min([signs * h[1:] for h in [host] + _measure_cropped(y0, basis, crops)], axis=0)

    def needed(amp: float) -> np.ndarray:  # the mark's reading per bit, towards its side
        return np.maximum(amp - worst, 0.0)

    def bit_coefs(amp: float) -> np.ndarray:
        return np.linalg.solve(resp_bb, signs * needed(amp) - from_sync)

    lo, hi = 0.0, 4 * np.sqrt(bit_energy)
    for _ in range(30):
        amp = (lo + hi) / 2
        lo, hi = (amp, hi) if float(bit_coefs(amp) @ bit_coefs(amp)) <= bit_energy else (lo, amp)
    goal = host[1:] + signs * needed(lo)
    coef = np.concatenate([[sync_coef], bit_coefs(lo)])
    out = rgb
    for _ in range(PASSES):
        tile = _from_vec(basis.directions @ coef)
        pattern = _resize_f(np.tile(tile, (K, K)), (w, h), Image.Resampling.BICUBIC)
        out = np.clip(np.rint(rgb + pattern[..., None] * channels), 0, 255)
        got = _measure(_luma(out), basis)
        coef[1:] += np.linalg.solve(resp_bb, goal - got[1:])
    # the corrections can overspend, and clipping can leave budget unspent: scale the (unrounded) change
    # until the PSNR is just over PSNR_MIN (up by at most UPSCALE)
    change = np.clip(rgb + pattern[..., None] * channels, 0, 255) - rgb
    budget = 255.0**2 / 10 ** (PSNR_MIN / 10)
    factor = 1.0
    for _ in range(8):
        mse = float(((out - rgb) ** 2).mean())
        if 0.97 * budget <= mse <= budget or (mse < budget and factor >= UPSCALE) or mse == 0:
            break
        factor = min(factor * np.sqrt(budget / mse) * 0.99, UPSCALE)
        out = np.clip(np.rint(rgb + change * factor), 0, 255)
    while float(((out - rgb) ** 2).mean()) > budget:  # rounding: step down until it fits
        factor *= 0.98
        out = np.clip(np.rint(rgb + change * factor), 0, 255)
    result = Image.fromarray(out.astype(np.uint8), "RGB")
    if alpha is not None:
        result.putalpha(alpha)
    return result


