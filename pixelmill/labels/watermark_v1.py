"""Version 1 of the invisible watermark (read-only support: `inspect` still recognises these marks).

Method (spread-transform dither modulation in the image's lowest DCT frequencies):

* The luminance of the whole image goes through a 2-D orthonormal DCT-II and the ``BAND x BAND``
  lowest frequencies (without DC) are kept. Frequency index ``(u, v)`` counts half-cycles across the
  whole image, so a resize keeps every coefficient where it was; dividing by ``sqrt(width * height)``
  also makes its size independent of the image size. These low frequencies are what JPEG keeps best.
* Each of the 64 bits (48 payload bits + CRC-16) owns one direction of a key-seeded random orthonormal
  basis of that band. The projection on that direction is moved to the nearest point of a dithered
  lattice of step ``DELTA`` whose parity encodes the bit (quantisation index modulation), so the host
  image does not interfere with decoding (unlike plain additive spread spectrum).
* Decoding projects again and reads the parity; each bit's distance to the lattice gives a reliability,
  and the CRC says whether a payload is really there (false-positive rate 2**-16 on unmarked images).

Its limits (measured by ``bench/watermark.py``): it needs room below white and above black to move
(a pure white or black image cannot carry it) and it does not survive cropping or rotation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from .watermark_code import PAYLOAD_BYTES, WatermarkError, payload_bytes  # noqa: F401 (shared with v2)
from .wm_grid import _luma

BAND = 12  # lowest BAND x BAND DCT frequencies (DC excluded) carry the mark
NBITS = PAYLOAD_BYTES * 8 + 16
DELTA = 1.2  # lattice step, in grey levels of the normalised projection (robustness vs visibility)
MIN_SIDE = 64  # smaller images are skipped: too few pixels to hide 64 bits reliably (see bench)
DEFAULT_KEY = 0x5049584D  # "PIXM"
CHASE_BITS = 8  # least reliable bits tried when the CRC fails
CHASE_MIN_CONFIDENCE = 0.75
DECODE_MAX_SIDE = 1024  # decoding works on at most this size (memory and time on huge images)


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


def _bits(data: bytes) -> np.ndarray:
    word = data + crc16(data).to_bytes(2, "big")
    return np.unpackbits(np.frombuffer(word, dtype=np.uint8)).astype(np.int64)


def _dct_rows(n: int, k: int) -> np.ndarray:
    """First ``k`` rows of the orthonormal DCT-II matrix of size ``n``."""
    i = np.arange(n)
    u = np.arange(k)[:, None]
    m = np.cos(np.pi * (2 * i + 1) * u / (2 * n)) * np.sqrt(2.0 / n)
    m[0] /= np.sqrt(2.0)
    return m


class _Basis:
    def __init__(self, key: int):
        rng = np.random.default_rng(key)
        mask = np.ones((BAND, BAND), dtype=bool)
        mask[0, 0] = False
        self.mask = mask
        dims = int(mask.sum())
        q, _ = np.linalg.qr(rng.standard_normal((dims, NBITS)))
        self.directions = q  # (dims, NBITS), orthonormal columns
        self.dither = rng.uniform(0, DELTA, NBITS)


_BASES: dict[int, _Basis] = {}


def _basis(key: int) -> _Basis:
    if key not in _BASES:
        _BASES[key] = _Basis(key)
    return _BASES[key]


def _band(y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    h, w = y.shape
    ch, cw = _dct_rows(h, BAND), _dct_rows(w, BAND)
    coef = ch @ y @ cw.T / np.sqrt(h * w)
    return coef, ch, cw


def _projections(y: np.ndarray, basis: _Basis) -> np.ndarray:
    coef, _, _ = _band(y)
    return coef[basis.mask] @ basis.directions


def _check_size(size: tuple[int, int], min_side: int) -> None:
    if min(size) < min_side:
        raise WatermarkError(
            f"image is {size[0]}x{size[1]}; the watermark needs at least {min_side} px on the short side "
            "to survive JPEG and resizing")


def embed(image: Image.Image, payload: str | bytes, *, key: int = DEFAULT_KEY, min_side: int = MIN_SIDE,
          passes: int = 4) -> Image.Image:
    """Return a copy of ``image`` (RGB or RGBA) carrying ``payload``; raises WatermarkError when it cannot."""
    _check_size(image.size, min_side)
    data = payload_bytes(payload)
    bits = _bits(data)
    basis = _basis(key)
    alpha = image.getchannel("A") if image.mode in ("RGBA", "LA") else None
    rgb = np.asarray(image.convert("RGB"), dtype=np.float64)
    h, w = rgb.shape[:2]
    out = rgb
    for _ in range(passes):  # repeat: clipping to 0..255 and rounding to integers undo part of a pass
        y = _luma(out)
        coef, ch, cw = _band(y)
        s = coef[basis.mask] @ basis.directions
        # nearest lattice point with the wanted parity: lattice DELTA*(k + bit/2) + dither
        shifted = (s - basis.dither) / DELTA - bits / 2.0
        target = (np.round(shifted) + bits / 2.0) * DELTA + basis.dither
        delta_band = np.zeros((BAND, BAND))
        delta_band[basis.mask] = basis.directions @ (target - s)
        delta_y = ch.T @ delta_band @ cw * np.sqrt(h * w)
        if np.abs(delta_y).max() < 0.05:
            break
        out = np.clip(np.rint(out + delta_y[..., None]), 0, 255)
    result = Image.fromarray(out.astype(np.uint8), "RGB")
    if alpha is not None:
        result.putalpha(alpha)
    return result


@dataclass
class Detection:
    payload: bytes
    crc_ok: bool
    confidence: float  # mean per-bit reliability: about 0.5 on unmarked images, near 1.0 on marked ones
    bits: list[int] = field(default_factory=list)
    corrected: int = 0  # bits fixed by Chase decoding

    @property
    def text(self) -> str:
        return self.payload.rstrip(b"\0").decode("utf-8", errors="replace")


def decode(image: Image.Image, *, key: int = DEFAULT_KEY) -> Detection:
    """Read the 64 bits back (whether or not a mark is there: ``crc_ok`` says if it is)."""
    if min(image.size) < 8:
        raise WatermarkError(f"image is {image.size[0]}x{image.size[1]}; too small to hold a watermark")
    basis = _basis(key)
    if max(image.size) > DECODE_MAX_SIDE:  # the mark lives in the lowest frequencies: a thumbnail keeps it
        scale = DECODE_MAX_SIDE / max(image.size)
        image = image.convert("RGB").resize((max(8, round(image.width * scale)), max(8, round(image.height * scale))),
                                            Image.Resampling.BOX)
    y = _luma(np.asarray(image.convert("RGB"), dtype=np.float64))
    s = _projections(y, basis)
    frac = np.mod((s - basis.dither) / DELTA, 1.0)  # 0 -> bit 0, 0.5 -> bit 1
    bits = ((frac > 0.25) & (frac < 0.75)).astype(np.int64)
    dist = np.abs(frac - bits / 2.0)
    dist = np.minimum(dist, 1.0 - dist)  # 0 .. 0.25
    reliability = 1.0 - 4.0 * dist
    confidence = float(reliability.mean())
    ok, data = _check(bits)
    corrected = 0
    if not ok and confidence >= CHASE_MIN_CONFIDENCE:
        # Chase decoding: flip up to 2 of the least reliable bits until the CRC checks. Only tried when
        # the bits sit clearly on the lattice (unmarked images average 0.5 with sd ~0.04), so the extra
        # tries do not raise the false-positive rate in practice.
        weakest = np.argsort(reliability)[:CHASE_BITS]
        for flips in [(i,) for i in weakest] + [(i, j) for n, i in enumerate(weakest) for j in weakest[n + 1:]]:
            trial = bits.copy()
            trial[list(flips)] ^= 1
            ok, data = _check(trial)
            if ok:
                bits, corrected = trial, len(flips)
                break
    return Detection(data, ok, confidence, bits.tolist(), corrected)


def _check(bits: np.ndarray) -> tuple[bool, bytes]:
    raw = np.packbits(bits.astype(np.uint8)).tobytes()
    data, crc = raw[:PAYLOAD_BYTES], int.from_bytes(raw[PAYLOAD_BYTES:], "big")
    return crc16(data) == crc, data


def bit_accuracy(image: Image.Image, payload: str | bytes, *, key: int = DEFAULT_KEY) -> float:
    """Fraction of the 64 embedded bits read back right before any correction (for measurements)."""
    want = _bits(payload_bytes(payload))
    basis = _basis(key)
    if max(image.size) > DECODE_MAX_SIDE:
        scale = DECODE_MAX_SIDE / max(image.size)
        image = image.convert("RGB").resize((round(image.width * scale), round(image.height * scale)),
                                            Image.Resampling.BOX)
    s = _projections(_luma(np.asarray(image.convert("RGB"), dtype=np.float64)), basis)
    frac = np.mod((s - basis.dither) / DELTA, 1.0)
    got = ((frac > 0.25) & (frac < 0.75)).astype(np.int64)
    return float((want == got).mean())
