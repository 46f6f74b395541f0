"""A throwaway redis-server on a free loopback port (no persistence), for the Celery tests."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time

from .pg import free_port


def start_redis() -> tuple[subprocess.Popen | None, str]:
    exe = shutil.which("redis-server")
    if exe is None:
        return None, "redis-server is not installed (Debian: apt-get install redis-server; `make test` does it as root)"
    port = free_port()
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--daemonize", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return proc, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    return None, "redis-server did not start"
