"""Where the watermark key comes from, and which keys ``inspect`` tries.

The key is a secret: ``PIXELMILL_WATERMARK_KEY`` in the environment wins; without it a random key is
created once under ``PIXELMILL_HOME`` (``watermark.key``, mode 0600) and reused. The public demo key
(``watermark.DEMO_KEY``) proves nothing: anyone can make or overwrite a mark with it.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from . import watermark as wm

ENV = "PIXELMILL_WATERMARK_KEY"
FILE_NAME = "watermark.key"


@dataclass(frozen=True)
class NamedKey:
    source: str  # "environment", "stored", "file", "demo"
    key: bytes

    @property
    def key_id(self) -> str:
        return wm.key_id(self.key)

    @property
    def forgeable(self) -> bool:
        return self.key == wm.DEMO_KEY


def home_from_env(environ=None) -> Path:
    """PIXELMILL_HOME as ``pixelmill.settings`` resolves it (this library stands alone, so it reads it here)."""
    env = os.environ if environ is None else environ
    if env.get("PIXELMILL_HOME"):
        return Path(env["PIXELMILL_HOME"]).resolve()
    base = env.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "pixelmill"


def key_file(home: Path) -> Path:
    return Path(home) / FILE_NAME


def read_key_file(path: Path) -> bytes:
    text = Path(path).read_text(encoding="utf-8").strip()
    if not text:
        raise ValueError(f"watermark key file {path} is empty")
    return text.encode("utf-8")


def stored_key(home: Path, *, create: bool) -> bytes | None:
    """The key stored under ``home``; created (random, 256 bits, mode 0600) when missing and ``create``."""
    path = key_file(home)
    if path.is_file():
        return read_key_file(path)
    if not create:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first: use theirs
        return read_key_file(path)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(secrets.token_hex(32) + "\n")
    return read_key_file(path)


def signing_key(home: Path, env_value: str | None) -> NamedKey:
    """The key to mark with: the environment's, else the stored one (created on first use)."""
    if env_value:
        return NamedKey("environment", env_value.encode("utf-8"))
    key = stored_key(home, create=True)
    assert key is not None
    return NamedKey("stored", key)


def verification_keys(home: Path | None, environ=None, extra: list[NamedKey] | None = None) -> list[NamedKey]:
    """Keys ``inspect`` tries, in order: given ones, the environment's, the stored one, the demo key."""
    env = os.environ if environ is None else environ
    keys = list(extra or [])
    if env.get(ENV):
        keys.append(NamedKey("environment", env[ENV].encode("utf-8")))
    if home is not None:
        stored = stored_key(home, create=False)
        if stored is not None:
            keys.append(NamedKey("stored", stored))
    keys.append(NamedKey("demo", wm.DEMO_KEY))
    seen, out = set(), []
    for k in keys:
        if k.key not in seen:
            seen.add(k.key)
            out.append(k)
    return out
