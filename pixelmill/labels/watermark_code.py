"""The watermark's payload and its error-correcting check (shared by both watermark versions).

Version 2 (``encode``/``decode``): 48 payload bits and 40 check bits. The check bits are a fixed random
linear function of the payload bits plus a fixed offset (an affine code over GF(2), the same for every
key), so flipping a bit of a received word changes its syndrome by a known 40-bit column and a whole
set of flips can be tested at once. Decoding is list decoding on the soft readings: the word as read, every
single flip, and sets of 2 to 5 flips among the least reliable bits (``LIST``) are tried, and of those
that make a valid word the one with the least total reliability flipped wins (the most likely one in
that list).

False positives: on an unmarked image the hard bits are as good as random, so each of the ``LIST_SIZE``
words tried is valid with probability 2^-40; an unmarked image passes one decoding with odds of at
most ``LIST_SIZE / 2^40`` (union bound), about 5.7e-8; with the short list (``short=True``: up to
``SHORT`` flips, ``SHORT_LIST_SIZE`` words) about 8.0e-9. The caller adds these up over the decodings it
makes per key.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from functools import lru_cache

import numpy as np

PAYLOAD_BYTES = 6
PAYLOAD_BITS = PAYLOAD_BYTES * 8
CHECK_BITS = 40
NBITS = PAYLOAD_BITS + CHECK_BITS
# list decoding tries flipping n bits among the m least reliable ones, for each (n, m) here: one error
# anywhere, two among the 56 weakest, ... five among the 23 weakest (more errors are likelier among the
# weak bits, and every extra word tried costs false-positive odds)
LIST = ((1, 88), (2, 56), (3, 36), (4, 28), (5, 23))
FLIPS = max(n for n, _ in LIST)
LIST_SIZE = 1 + sum(math.comb(m, n) for n, m in LIST)  # 62,893 words, counting the word as read
# the short list (up to three flips) for the many near-duplicate geometries a search tries around a likely
# one: there the bits are nearly right or nothing is, and each word tried costs false-positive odds
SHORT = 3
SHORT_LIST_SIZE = 1 + sum(math.comb(m, n) for n, m in LIST if n <= SHORT)  # 8,769 words


class WatermarkError(ValueError):
    """The image or payload cannot carry a watermark (the message says why)."""


def payload_bytes(payload: str | bytes) -> bytes:
    """The 6 bytes a payload string becomes (UTF-8, zero padded); longer payloads are an error."""
    raw = payload.encode("utf-8") if isinstance(payload, str) else bytes(payload)
    if len(raw) > PAYLOAD_BYTES:
        raise WatermarkError(
            f"watermark payload {payload!r} is {len(raw)} bytes; at most {PAYLOAD_BYTES} fit (e.g. 'AI-GEN')")
    return raw.ljust(PAYLOAD_BYTES, b"\0")


# ---- version 2: affine check, syndrome list decoding ----------------------------------------------------------

@lru_cache(maxsize=1)
def _code() -> tuple[np.ndarray, int, np.ndarray]:
    """(check matrix A: CHECK_BITS x PAYLOAD_BITS over GF(2), offset, syndrome column of every bit)."""
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(b"pixelmill-wm2-check").digest()[:8], "big"))
    a = rng.integers(0, 2, (CHECK_BITS, PAYLOAD_BITS), dtype=np.int64)
    offset = int(rng.integers(1, 2**40, dtype=np.int64))  # never zero: an all-zero word is not valid
    weights = np.array([1 << i for i in range(CHECK_BITS)], dtype=np.uint64)
    columns = np.concatenate([(a.astype(np.uint64) * weights[:, None]).sum(axis=0, dtype=np.uint64),
                              weights])  # a payload bit's column of A, a check bit's own position
    return a, offset, columns


def encode(data: bytes) -> np.ndarray:
    """The NBITS bits (0/1) that carry 6 payload bytes: payload bits, then check bits."""
    a, offset, _ = _code()
    bits = np.unpackbits(np.frombuffer(payload_bytes(data), dtype=np.uint8)).astype(np.int64)
    check = (a @ bits) % 2 ^ ((offset >> np.arange(CHECK_BITS)) & 1)
    return np.concatenate([bits, check])


def _syndrome(bits: np.ndarray) -> int:
    _, offset, columns = _code()
    return int(np.bitwise_xor.reduce(columns[bits.astype(bool)], initial=np.uint64(0))) ^ offset


@lru_cache(maxsize=2)
def _subsets(flips: int = FLIPS) -> np.ndarray:
    """Every set of up to ``flips`` flips in LIST, as rows of reliability ranks (0 = least reliable) padded
    with NBITS."""
    rows = [()] + [c for n, m in LIST if n <= flips for c in itertools.combinations(range(m), n)]
    return np.array([c + (NBITS,) * (FLIPS - len(c)) for c in rows], dtype=np.int64)


def decode(values: np.ndarray, short: bool = False) -> tuple[bool, bytes, np.ndarray, int]:
    """List-decode NBITS soft readings (sign = bit, size = reliability): (valid, payload, bits, flipped).
    ``short``: try only the SHORT_LIST_SIZE words with up to SHORT flips."""
    bits = (values > 0).astype(np.int64)
    s = _syndrome(bits)
    if s == 0:
        return True, np.packbits(bits[:PAYLOAD_BITS].astype(np.uint8)).tobytes(), bits, 0
    _, _, columns = _code()
    order = np.argsort(np.abs(values))
    cols = np.append(columns[order], np.uint64(0))
    costs = np.append(np.abs(values[order]), 0.0)
    subsets = _subsets(SHORT if short else FLIPS)
    hits = np.nonzero(np.bitwise_xor.reduce(cols[subsets], axis=1) == np.uint64(s))[0]
    if not len(hits):
        return False, b"", bits, 0
    best = subsets[hits[np.argmin(costs[subsets[hits]].sum(axis=1))]]
    flip = order[best[best < NBITS]]
    bits = bits.copy()
    bits[flip] ^= 1
    return True, np.packbits(bits[:PAYLOAD_BITS].astype(np.uint8)).tobytes(), bits, len(flip)
