"""pixelmill.labels.blas: numpy's BLAS on one thread inside the watermark functions, restored after."""

from __future__ import annotations

import threading

import numpy as np
from threadpoolctl import threadpool_info

from pixelmill.labels import watermark
from pixelmill.labels.blas import one_blas_thread


def _blas_threads() -> list[int]:
    return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]


def test_one_thread_inside_restored_after_nested_and_concurrent():
    np.ones((4, 4)) @ np.ones((4, 4))  # numpy's BLAS is loaded
    before = _blas_threads()
    assert before
    seen = []
    gate = threading.Barrier(2)

    @one_blas_thread
    def inner():
        seen.append(_blas_threads())

    @one_blas_thread
    def outer(wait: bool):
        seen.append(_blas_threads())
        inner()
        if wait:
            gate.wait(timeout=10)  # both threads inside at once
        seen.append(_blas_threads())

    t = threading.Thread(target=outer, args=(True,))
    t.start()
    outer(True)
    t.join()
    assert seen and all(threads == [1] * len(before) for threads in seen)
    assert _blas_threads() == before


def test_watermark_entry_points_are_limited():
    for fn in (watermark.embed, watermark.detect, watermark.bit_accuracy):
        assert getattr(fn, "__wrapped__", None) is not None, fn.__name__
