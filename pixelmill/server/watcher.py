"""Watch the workflow folder by polling file names, sizes and modification times (no extra dependency)
and reload when it changed and then stayed still for ``debounce`` seconds (editors write in bursts)."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from ..loader import workflow_files

log = logging.getLogger(__name__)


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """File -> (size, mtime in ns) of the workflow files; missing or unreadable entries are left out."""
    out = {}
    try:
        files = workflow_files(folder) if folder.is_dir() else []
    except OSError:
        return out
    for path in files:
        try:
            st = path.stat()
        except OSError:
            continue
        out[str(path)] = (st.st_size, st.st_mtime_ns)
    return out


class FolderWatcher:
    def __init__(self, folder: Path, reload, *, interval: float = 2.0, debounce: float = 1.0):
        self.folder = Path(folder)
        self.reload = reload
        self.interval = interval
        self.debounce = debounce
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._seen: dict[str, tuple[int, int]] = {}

    def start(self) -> None:
        self._seen = snapshot(self.folder)
        self._thread = threading.Thread(target=self._loop, name="pixelmill-watch", daemon=True)
        self._thread.start()
        log.info("watching %s for workflow changes (every %.1f s)", self.folder, self.interval)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def poll(self) -> bool:
        """One check: reload when the folder changed and has been quiet for ``debounce`` seconds."""
        now = snapshot(self.folder)
        if now == self._seen:
            return False
        quiet_since = time.monotonic()
        while not self._stop.is_set():  # wait until nothing changed for `debounce` seconds
            if self._stop.wait(min(self.debounce, 0.25)):
                return False
            later = snapshot(self.folder)
            if later != now:
                now, quiet_since = later, time.monotonic()
            elif time.monotonic() - quiet_since >= self.debounce:
                break
        changed = sorted(k for k in set(now) | set(self._seen) if now.get(k) != self._seen.get(k))
        self._seen = now
        log.info("workflow folder changed (%s); reloading", ", ".join(Path(c).name for c in changed[:10])
                 + (f" and {len(changed) - 10} more" if len(changed) > 10 else ""))
        self.reload()
        return True

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.poll()
            except Exception:  # noqa: BLE001 - the watcher must outlive one bad reload
                log.exception("reloading the workflow folder failed")
