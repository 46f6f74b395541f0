"""Login sessions kept on disk, shared by every pixelmill process of one ``PIXELMILL_HOME``.

One JSON file per (service, account) in a folder only its owner can enter (0700), each file 0600,
written atomically (temporary file, fsync, rename). A lock file beside it (``flock``; ``msvcrt``
on Windows) serialises the processes that read, refresh or create the session, so twenty processes
starting together log in once. Nothing here logs a token.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]
    import msvcrt

log = logging.getLogger("pixelmill.posting")


class SessionFiles:
    """``folder/<kind>-<host>-<hash>.json`` per (service, account), with a ``.lock`` beside each."""

    def __init__(self, folder: Path, kind: str):
        self.folder = Path(folder)
        self.kind = kind

    def path(self, service: str, account: str) -> Path:
        host = re.sub(r"[^A-Za-z0-9.-]+", "-", urlsplit(service).netloc or "service")[:60]
        digest = hashlib.sha256(f"{service}\x1f{account}".encode()).hexdigest()[:24]
        return self.folder / f"{self.kind}-{host}-{digest}.json"

    def _folder(self) -> Path:
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        mode = stat.S_IMODE(self.folder.stat().st_mode)
        if mode & 0o077 and os.name == "posix":
            os.chmod(self.folder, 0o700)
        return self.folder

    @contextmanager
    def locked(self, service: str, account: str) -> Iterator[None]:
        """Hold the account's lock (exclusive across processes and threads using this folder)."""
        self._folder()
        lock = self.path(service, account).with_suffix(".lock")
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            else:  # pragma: no cover - Windows
                msvcrt.locking(fd, msvcrt.LK_LOCK, 1)
            yield
        finally:
            try:
                if fcntl is not None:
                    fcntl.flock(fd, fcntl.LOCK_UN)
                else:  # pragma: no cover - Windows
                    msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
            finally:
                os.close(fd)

    def load(self, service: str, account: str) -> dict | None:
        """The saved session, or None when there is none or it cannot be read (it is then ignored)."""
        path = self.path(service, account)
        try:
            st = path.stat()
            if os.name == "posix" and (st.st_uid != os.getuid() or stat.S_IMODE(st.st_mode) & 0o077):
                log.warning("ignoring session file %s: it must belong to this user with mode 0600", path)
                return None
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable session file %s (%s)", path, type(exc).__name__)
            return None
        if not isinstance(data, dict) or data.get("service") != service or data.get("account") != account:
            return None
        return data

    def save(self, service: str, account: str, data: dict) -> None:
        path = self.path(service, account)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=self._folder())  # mode 0600
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump({**data, "service": service, "account": account}, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise

    def delete(self, service: str, account: str) -> None:
        try:
            self.path(service, account).unlink()
        except FileNotFoundError:
            pass
