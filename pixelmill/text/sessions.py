"""HTTP sessions for the chat servers, shared by the steps of a process.

requests does not promise that one ``Session`` is safe to use from several threads at once, and steps run on
many threads (the executor's pool, a thread per step with a timeout, ``for_each`` items). So a session is lent
to one caller at a time and given back afterwards with its keep-alive connection open: the next call to the
same ``base_url`` reuses that connection instead of opening a new one. Concurrent calls get their own sessions.
"""

from __future__ import annotations

import threading

import requests


class SessionPool:
    def __init__(self, max_idle_per_url: int = 8):
        self.max_idle_per_url = max_idle_per_url
        self._idle: dict[str, list[requests.Session]] = {}
        self._lock = threading.Lock()
        self._closed = False

    def acquire(self, base_url: str) -> requests.Session:
        """A session no one else is using, the most recently given back one for this URL first."""
        with self._lock:
            idle = self._idle.get(base_url)
            if idle:
                return idle.pop()
        return requests.Session()

    def release(self, base_url: str, session: requests.Session) -> None:
        """Give ``session`` back (kept for the next call, or closed when enough are idle or the pool is closed)."""
        with self._lock:
            if not self._closed:
                idle = self._idle.setdefault(base_url, [])
                if len(idle) < self.max_idle_per_url:
                    idle.append(session)
                    return
        session.close()

    def idle(self, base_url: str) -> int:
        with self._lock:
            return len(self._idle.get(base_url, ()))

    def close(self) -> None:
        """Close the idle sessions (the runtime calls this on shutdown); sessions given back later are closed."""
        with self._lock:
            self._closed = True
            sessions = [s for idle in self._idle.values() for s in idle]
            self._idle.clear()
        for session in sessions:
            session.close()
