"""Watermark payload coding: 48 payload bits + 40 check bits, list decoding on soft readings, and the
count behind the false-positive bound."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from pixelmill.labels import watermark as wm
from pixelmill.labels import watermark_code as code
from pixelmill.labels import watermark_v1


def _soft(bits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Readings of a clean word: right sign, reliability 1..3."""
    return (2.0 * bits - 1.0) * rng.uniform(1.0, 3.0, len(bits))


def test_round_trip_and_layout():
    bits = code.encode(b"AI-GEN")
    assert len(bits) == code.NBITS == 88 == wm.NBITS
    assert np.array_equal(bits[:48], np.unpackbits(np.frombuffer(b"AI-GEN", np.uint8)))
    ok, data, got, flipped = code.decode(2.0 * bits - 1.0)
    assert ok and data == b"AI-GEN" and flipped == 0 and np.array_equal(got, bits)
    assert code.decode(2.0 * code.encode(b"x") - 1.0)[1] == b"x\0\0\0\0\0"


def test_all_zero_and_all_one_words_are_not_valid():
    """A blank picture reads every bit the same way: that must not be a codeword."""
    for word in (np.zeros(code.NBITS), np.ones(code.NBITS)):
        assert code._syndrome(word.astype(np.int64)) != 0


def test_one_error_anywhere_and_two_among_many_are_corrected():
    rng = np.random.default_rng(2)
    bits = code.encode(b"AI-GEN")
    values = _soft(bits, rng)
    values[7] = -values[7] * 5  # the surest bit of all, wrong
    assert code.decode(values)[:2] == (True, b"AI-GEN")
    values = _soft(bits, rng)
    order = np.argsort(np.abs(values))
    values[order[[30, 50]]] *= -1  # two wrong bits, ranks 30 and 50 by reliability
    assert code.decode(values)[:2] == (True, b"AI-GEN")


def test_corrects_up_to_five_weak_errors_and_picks_the_likeliest():
    rng = np.random.default_rng(3)
    bits = code.encode(b"AI-GEN")
    for n in range(1, code.FLIPS + 1):
        values = _soft(bits, rng)
        wrong = rng.choice(code.NBITS, n, replace=False)
        values[wrong] = -np.sign(values[wrong]) * rng.uniform(0.01, 0.2, n)  # wrong, but unsure
        ok, data, got, flipped = code.decode(values)
        assert ok and data == b"AI-GEN" and flipped == n and np.array_equal(got, bits)


def test_confident_errors_are_not_corrected():
    """Errors among the surest bits are beyond the list: the word is rejected."""
    rng = np.random.default_rng(4)
    values = _soft(code.encode(b"AI-GEN"), rng)
    values[:2] = -values[:2] * 2  # two wrong bits, surer than any other
    assert not code.decode(values)[0]


def test_list_size_and_false_positive_bound():
    assert code.LIST_SIZE == 1 + sum(math.comb(m, n) for n, m in code.LIST) == 62893
    assert len(code._subsets()) == code.LIST_SIZE
    # no two subsets name the same set of bits (each is one distinct word tried)
    assert len({frozenset(r[r < code.NBITS].tolist()) for r in code._subsets()}) == code.LIST_SIZE
    assert code.SHORT_LIST_SIZE == 1 + 88 + math.comb(56, 2) + math.comb(36, 3) == 8769
    assert len(code._subsets(code.SHORT)) == code.SHORT_LIST_SIZE
    assert wm.WORDS == wm.DECODINGS * code.LIST_SIZE + wm.SHORT_DECODINGS * code.SHORT_LIST_SIZE == 1785219
    per_key = wm.WORDS / 2.0**code.CHECK_BITS
    assert per_key <= 39 * 62893 / 2.0**40  # not above the bound of the previous search (2.2e-6): 1.6e-6


def test_short_list_corrects_up_to_three_flips_only():
    rng = np.random.default_rng(7)
    bits = code.encode(b"AI-GEN")
    values = _soft(bits, rng)
    weakest = np.argsort(np.abs(values))
    three, four = values.copy(), values.copy()
    three[weakest[:3]] *= -1
    four[weakest[:4]] *= -1
    assert code.decode(three, short=True)[:2] == (True, b"AI-GEN")
    assert code.decode(four)[:2] == (True, b"AI-GEN")
    assert not code.decode(four, short=True)[0]


def test_random_readings_are_rejected():
    """Readings of an unmarked picture are as good as random: none of 3000 passes (bound: 3000 x 5e-8)."""
    rng = np.random.default_rng(5)
    assert not any(code.decode(rng.normal(0, 1, code.NBITS))[0] for _ in range(3000))


def test_check_is_affine():
    """The syndrome of a word with flipped bits is the XOR of the columns flipped: what list decoding relies on."""
    rng = np.random.default_rng(6)
    bits = code.encode(b"pixel")
    _, _, columns = code._code()
    for flips in itertools.islice(itertools.combinations(rng.permutation(code.NBITS)[:10], 3), 20):
        trial = bits.copy()
        trial[list(flips)] ^= 1
        want = int(np.bitwise_xor.reduce(columns[list(flips)]))
        assert code._syndrome(trial) == want


def test_payload_helpers_are_shared_with_version_1():
    assert watermark_v1.payload_bytes is wm.payload_bytes is code.payload_bytes
    assert watermark_v1.WatermarkError is wm.WatermarkError
    with pytest.raises(wm.WatermarkError, match="at most 6"):
        watermark_v1.payload_bytes("seven!!")
