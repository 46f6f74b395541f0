"""numpy's BLAS on one thread for the small matrices of the watermark code.

The watermark's linear algebra works on matrices of a few hundred rows (the keyed basis is a 416 x 81 QR).
At that size OpenBLAS's worker threads cost more than they bring, and on a busy machine, where they spin
for a core another process holds, a call that takes 1 ms on one thread took over a second (measured on
the 2-core machine with `bench/models.py` running beside other work). ``one_blas_thread`` limits numpy's
BLAS to one thread while a decorated function runs; nested and concurrent calls share one limit, which is
lifted when the last of them returns.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable)


class _Limit:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depth = 0
        self._controller = None
        self._active = None

    def enter(self) -> None:
        with self._lock:
            if self._depth == 0:
                if self._controller is None:
                    from threadpoolctl import ThreadpoolController

                    self._controller = ThreadpoolController()
                self._active = self._controller.limit(limits=1, user_api="blas")
            self._depth += 1

    def exit(self) -> None:
        with self._lock:
            self._depth -= 1
            if self._depth == 0 and self._active is not None:
                self._active.restore_original_limits()
                self._active = None


_LIMIT = _Limit()  # process-wide because the BLAS thread count is process-wide


def one_blas_thread(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        _LIMIT.enter()
        try:
            return fn(*args, **kwargs)
        finally:
            _LIMIT.exit()

    return wrapper  # type: ignore[return-value]
