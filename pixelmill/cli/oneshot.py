"""Garbage-collector settings for a command that runs once and exits (``pixelmill run``, ``retry``).

Loading torch, transformers and diffusers creates about half a million long-lived objects (modules,
classes, functions). With Python's default thresholds the cyclic collector walks all of them again and
again while they are imported, and the interpreter walks them once more at exit, only to free memory
the operating system takes back anyway: on two cores that was a fifth of a cold ``pixelmill run``
(``bench/models.py`` measures it). So for the duration of the command young collections are rarer
(cycles are still collected, only in larger batches), and at exit the surviving objects are frozen
(``gc.freeze``) so that the interpreter's final collections skip them; ``close_frozen`` does the same for
the full collection the model manager makes when the runtime closes (the objects come back to the
collector afterwards, so a process that goes on, such as a test, frees them later). Long-lived processes
(``serve``, ``worker``) keep the defaults.
"""

from __future__ import annotations

import atexit
import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager

THRESHOLDS = (10_000, 20, 100)  # Python's defaults are (700, 10, 10)


@contextmanager
def one_shot() -> Iterator[None]:
    """Collector settings for a process that runs one command; the previous thresholds come back after."""
    previous = gc.get_threshold()
    gc.set_threshold(*THRESHOLDS)
    atexit.unregister(gc.freeze)
    atexit.register(gc.freeze)  # atexit runs before the interpreter's final collections
    try:
        yield
    finally:
        gc.set_threshold(*previous)


def close_frozen(close: Callable[[], None]) -> None:
    """Call ``close`` with every live object frozen: its ``gc.collect`` walks only what it frees."""
    gc.freeze()
    try:
        close()
    finally:
        gc.unfreeze()
