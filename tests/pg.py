"""A throwaway PostgreSQL cluster for the tests: Debian's initdb + pg_ctl in a temporary folder, listening on a
free loopback port (and a unix socket inside that folder), trust authentication, stopped and deleted at the end.

``PgCluster.start()`` returns None with a reason when PostgreSQL is not installed here; the fixtures skip
with that reason. As root the server runs as the ``postgres`` system user (or ``nobody``): PostgreSQL
refuses to run as root.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


def _run_as() -> list[str]:
    if os.geteuid() != 0:
        return []
    for user in ("postgres", "nobody"):
        try:
            pwd.getpwnam(user)
        except KeyError:
            continue
        return ["runuser", "-u", user, "--"] if shutil.which("runuser") else ["su", user, "-s", "/bin/sh", "-c"]
    raise RuntimeError("running as root and neither a 'postgres' nor a 'nobody' user exists")


class PgCluster:
    def __init__(self, bindir: Path, root: Path, port: int, prefix: list[str]):
        self.bindir, self.root, self.port, self.prefix = bindir, root, port, prefix
        self.data = root / "data"

    @classmethod
    def start(cls) -> tuple[PgCluster | None, str]:
        bindir = _bindir()
        if bindir is None:
            return None, "PostgreSQL is not installed (Debian: apt-get install postgresql; `make test` does it as root)"
        try:
            import psycopg  # noqa: F401
        except ImportError:
            return None, "psycopg is not installed (pip install -e '.[postgres]')"
        prefix = _run_as()
        root = Path(tempfile.mkdtemp(prefix="pixelmill-pg-"))
        if prefix:
            user = prefix[2] if prefix[0] == "runuser" else prefix[1]
            ent = pwd.getpwnam(user)
            os.chown(root, ent.pw_uid, ent.pw_gid)
        cluster = cls(bindir, root, free_port(), prefix)
        try:
            cluster._sh(str(bindir / "initdb"), "-D", str(cluster.data), "-U", "postgres", "-A", "trust",
                        "-E", "UTF8", "--no-sync")
            opts = (f"-p {cluster.port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
                    "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
            cluster._sh(str(bindir / "pg_ctl"), "-D", str(cluster.data), "-o", opts, "-l", str(root / "log"),
                        "-w", "-t", "60", "start")
        except (subprocess.CalledProcessError, OSError) as exc:
            log = (root / "log").read_text(errors="replace")[-2000:] if (root / "log").exists() else ""
            shutil.rmtree(root, ignore_errors=True)
            return None, f"could not start PostgreSQL: {exc} {getattr(exc, 'stderr', '') or ''} {log}"
        return cluster, ""

    def _sh(self, *args: str) -> None:
        if self.prefix and self.prefix[0] == "su":
            cmd = [*self.prefix, " ".join(f"'{a}'" for a in args)]
        else:
            cmd = [*self.prefix, *args]
        subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120)

    def stop(self) -> None:
        try:
            self._sh(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        except (subprocess.CalledProcessError, OSError, subprocess.TimeoutExpired):
            pass
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{dbname}"

    def create_database(self) -> str:
        """A fresh, empty database; returns its SQLAlchemy URL."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)
