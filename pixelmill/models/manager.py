"""The model manager: one load per (model, device, dtype) per process, shared by runs and threads.

Nodes reach it through ``ctx.service(SERVICE_KEY, ModelManager.from_env)``. Loading happens outside the
manager's table lock but under a per-key lock, so two runs asking for the same model at once wait for
one load; different models load in parallel. Models are unloaded least-recently-used first when the
estimated memory of the loaded ones passes the budget, and after an idle timeout; a model in use is
never unloaded under a caller's feet.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("pixelmill.models")

SERVICE_KEY = "pixelmill.models"
ENV_BUDGET = "PIXELMILL_MODEL_MEMORY"  # e.g. 8GB, 512MB, or bytes; 0 = no limit
ENV_IDLE = "PIXELMILL_MODEL_IDLE_S"  # seconds; 0 = never unload for idleness


def parse_bytes(text: str) -> int:
    text = text.strip().upper().replace(" ", "")
    units = {"TB": 1 << 40, "GB": 1 << 30, "MB": 1 << 20, "KB": 1 << 10, "T": 1 << 40, "G": 1 << 30,
             "M": 1 << 20, "K": 1 << 10, "B": 1}
    for unit, factor in units.items():
        if text.endswith(unit):
            return int(float(text[: -len(unit)]) * factor)
    return int(float(text))


def estimate_bytes(obj: Any) -> int:
    """Bytes held by the torch parameters and buffers of a model or pipeline (each tensor counted once)."""
    import torch

    modules = []
    if isinstance(obj, torch.nn.Module):
        modules = [obj]
    elif hasattr(obj, "components"):
        modules = [m for m in obj.components.values() if isinstance(m, torch.nn.Module)]
    elif isinstance(obj, (tuple, list)):
        return sum(estimate_bytes(o) for o in obj)
    seen: set[int] = set()
    total = 0
    for module in modules:
        for t in list(module.parameters()) + list(module.buffers()):
            if t.data_ptr() in seen:
                continue
            seen.add(t.data_ptr())
            total += t.numel() * t.element_size()
    return total


@dataclass
class _Entry:
    key: tuple
    lock: threading.Lock = field(default_factory=threading.Lock)
    value: Any = None
    nbytes: int = 0
    users: int = 0
    last_used: float = 0.0
    loaded: bool = False


class ModelManager:
    def __init__(self, budget_bytes: int = 0, idle_timeout_s: float = 900.0, clock: Callable[[], float] = time.monotonic):
        self.budget_bytes = int(budget_bytes)
        self.idle_timeout_s = float(idle_timeout_s)
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple, _Entry] = OrderedDict()  # least recently used first
        self.load_counts: dict[tuple, int] = {}
        self.load_seconds: dict[tuple, float] = {}
        self.unloads: list[tuple[tuple, str]] = []
        self._stop = threading.Event()
        self._sweeper: threading.Thread | None = None

    @classmethod
    def from_env(cls, environ=None) -> ModelManager:
        env = os.environ if environ is None else environ
        configure_cpu_threads(env)
        budget = parse_bytes(env.get(ENV_BUDGET, "0") or "0")
        idle = float(env.get(ENV_IDLE, "900") or 900)
        return cls(budget_bytes=budget, idle_timeout_s=idle)

    # ------------------------------------------------------------ use

    @contextlib.contextmanager
    def use(self, key: tuple, loader: Callable[[], Any], estimate: int | Callable[[], int] | None = None,
            warn: Callable[[str], None] | None = None):
        """Yield the loaded object for ``key`` (loading it once with ``loader``); held while in the block.

        ``estimate``: the bytes the model will take (from its safetensors headers), or a function that
        reads them, called only when the model must load; room is made for it *before* it loads, so the old and new models are never resident together over the budget. A model
        bigger than the budget on its own still loads (``warn`` says so) and stays loaded until another
        model needs the room, so it is not reloaded on every run.
        """
        entry = self._acquire(key, loader, estimate, warn)
        try:
            yield entry.value
        finally:
            with self._lock:
                entry.users -= 1
                entry.last_used = self._clock()
            self._enforce_budget()

    def is_loaded(self, key: tuple) -> bool:
        with self._lock:
            entry = self._entries.get(key)
            return bool(entry and entry.loaded)

    def get(self, key: tuple, loader: Callable[[], Any]) -> Any:
        """The loaded object for ``key`` without holding it (it may be unloaded later)."""
        with self.use(key, loader) as value:
            return value

    def _acquire(self, key: tuple, loader: Callable[[], Any], estimate: int | Callable[[], int] | None = None,
                 warn: Callable[[str], None] | None = None) -> _Entry:
        self._start_sweeper()
        self.sweep()
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                entry = self._entries[key] = _Entry(key)
            entry.users += 1  # pins it: neither sweep nor budget unloads it from here on
            self._entries.move_to_end(key)
        try:
            with entry.lock:  # one load per key; others wait here for it
                if not entry.loaded:
                    needed = estimate() if callable(estimate) else estimate
                    if needed:
                        self._make_room(key, needed, warn)
                    t0 = time.perf_counter()
                    value = loader()
                    with self._lock:
                        entry.value = value
                        entry.nbytes = estimate_bytes(value)
                        entry.loaded = True
                        self.load_counts[key] = self.load_counts.get(key, 0) + 1
                        self.load_seconds[key] = time.perf_counter() - t0
                    log.info("loaded %s (%.1f MB) in %.2f s", key, entry.nbytes / 2**20, time.perf_counter() - t0)
        except BaseException:
            with self._lock:
                entry.users -= 1
                if not entry.loaded and entry.users == 0 and self._entries.get(key) is entry:
                    del self._entries[key]
            raise
        with self._lock:
            entry.last_used = self._clock()
            # a concurrent unload may have dropped the table's entry while we loaded; put it back
            if self._entries.get(key) is not entry:
                self._entries[key] = entry
            self._entries.move_to_end(key)
        self._enforce_budget(keep=key)
        return entry

    # ------------------------------------------------------------ unloading

    def loaded(self) -> list[dict]:
        with self._lock:
            return [{"key": e.key, "bytes": e.nbytes, "users": e.users, "idle_s": self._clock() - e.last_used}
                    for e in self._entries.values() if e.loaded]

    def _unload(self, entry: _Entry, reason: str) -> None:
        # caller holds self._lock and has checked entry.users == 0
        self._entries.pop(entry.key, None)
        entry.value = None
        entry.loaded = False
        self.unloads.append((entry.key, reason))
        log.info("unloaded %s (%s)", entry.key, reason)

    def _make_room(self, key: tuple, estimate: int, warn: Callable[[str], None] | None) -> None:
        """Unload least-recently-used idle models until ``estimate`` more bytes fit the budget."""
        if self.budget_bytes <= 0:
            return
        if estimate > self.budget_bytes:
            msg = (f"model {key[1] if len(key) > 1 else key} needs about {estimate / 2**20:.0f} MB, more than the "
                   f"model memory budget {self.budget_bytes / 2**20:.0f} MB ({ENV_BUDGET}); loading it anyway, "
                   "alone")
            log.warning(msg)
            if warn is not None:
                warn(msg)
        freed = False
        with self._lock:
            total = sum(e.nbytes for e in self._entries.values() if e.loaded)
            for entry in list(self._entries.values()):  # oldest first
                if total + estimate <= self.budget_bytes:
                    break
                if entry.loaded and entry.users == 0 and entry.key != key:
                    total -= entry.nbytes
                    self._unload(entry, "memory budget (before a load)")
                    freed = True
        if freed:
            _release_memory()

    def _enforce_budget(self, keep: tuple | None = None) -> None:
        if self.budget_bytes <= 0:
            return
        freed = False
        with self._lock:
            loaded = [e for e in self._entries.values() if e.loaded]
            total = sum(e.nbytes for e in loaded)
            newest = loaded[-1].key if loaded else None  # never unloaded for the budget: it was just asked for
            for entry in list(self._entries.values()):  # oldest first
                if total <= self.budget_bytes:
                    break
                if entry.loaded and entry.users == 0 and entry.key not in (keep, newest):
                    total -= entry.nbytes
                    self._unload(entry, "memory budget")
                    freed = True
        if freed:
            _release_memory()

    def sweep(self) -> None:
        """Unload models idle for longer than the timeout."""
        if self.idle_timeout_s <= 0:
            return
        now = self._clock()
        freed = False
        with self._lock:
            for entry in list(self._entries.values()):
                if entry.loaded and entry.users == 0 and now - entry.last_used > self.idle_timeout_s:
                    self._unload(entry, "idle")
                    freed = True
        if freed:
            _release_memory()

    def unload_all(self) -> None:
        with self._lock:
            for entry in list(self._entries.values()):
                if entry.users == 0:
                    self._unload(entry, "requested")
        _release_memory()

    def _start_sweeper(self) -> None:
        if self._sweeper is not None or self.idle_timeout_s <= 0:
            return
        with self._lock:
            if self._sweeper is not None:
                return
            interval = max(1.0, min(60.0, self.idle_timeout_s / 4))

            def loop():
                while not self._stop.wait(interval):
                    try:
                        self.sweep()
                    except Exception:  # noqa: BLE001 - a sweep failure must not kill the thread
                        log.exception("model sweep failed")

            self._sweeper = threading.Thread(target=loop, name="pixelmill-model-sweeper", daemon=True)
            self._sweeper.start()

    def close(self) -> None:
        self._stop.set()
        self.unload_all()


def configure_cpu_threads(env) -> int | None:
    """Torch's CPU thread count for this process: PIXELMILL_TORCH_THREADS, else half the cores.

    torch defaults to one thread per core; its OpenMP threads spin while they wait, so beside the
    server's own threads, or another busy process, every CPU model call slows down many times over
    (measured on 2 cores with one core busy: a 20-step embedded image took 34 s with 2 threads, 4 s with
    1). OMP_NUM_THREADS, when set, is left alone.
    """
    if env.get("OMP_NUM_THREADS"):
        return None
    import torch

    wanted = env.get("PIXELMILL_TORCH_THREADS") or ""
    threads = int(wanted) if wanted.isdigit() and int(wanted) > 0 else max(1, (os.cpu_count() or 2) // 2)
    torch.set_num_threads(threads)
    return threads


def _release_memory() -> None:
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # noqa: BLE001
        pass


def manager_for(ctx) -> ModelManager:
    """The process-wide manager of a node context (created on first use)."""
    return ctx.service(SERVICE_KEY, ModelManager.from_env)


_PIPELINE_LOCKS_GUARD = threading.Lock()


def pipeline_lock(pipe) -> threading.Lock:
    """The one lock of a shared pipeline: its scheduler keeps per-call state, so every node that calls it
    (generate_image, edit_image, make_video's morph) takes turns through this lock."""
    lock = getattr(pipe, "_pixelmill_lock", None)
    if lock is None:
        with _PIPELINE_LOCKS_GUARD:
            lock = getattr(pipe, "_pixelmill_lock", None)
            if lock is None:
                lock = threading.Lock()
                object.__setattr__(pipe, "_pixelmill_lock", lock)
    return lock
