"""Signed artifact URLs: ``?expires=<unix>&sig=<hex>`` (HMAC-SHA256 of ``run_id/name:expires``), so a
client such as n8n can download an image without sending the API token. The key comes from
PIXELMILL_SIGNING_KEY, else from a random key created once in ``<PIXELMILL_HOME>/signing.key`` (mode 0600).
Also: the signature of an n8n resume URL (``$execution.resumeUrl``) is redacted before it is stored or logged.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import time
from pathlib import Path
from urllib.parse import quote

REDACTED = "REDACTED"
_SECRET_QUERY = re.compile(r"([?&](?:signature|sig|token|key)=)[^&#\s\"']*", re.IGNORECASE)


def load_key(home: Path, environ=None) -> bytes:
    env = os.environ if environ is None else environ
    given = env.get("PIXELMILL_SIGNING_KEY")
    if given:
        return given.encode()
    path = Path(home) / "signing.key"
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32).encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process won the race: use its key
        return path.read_bytes().strip()
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)
    return key


class UrlSigner:
    def __init__(self, key: bytes, ttl: float = 86400.0):
        self.key = key
        self.ttl = ttl

    def _sig(self, run_id: str, name: str, expires: int) -> str:
        msg = f"{run_id}/{name}:{expires}".encode("utf-8", "surrogatepass")
        return hmac.new(self.key, msg, hashlib.sha256).hexdigest()

    def artifact_url(self, base: str, run_id: str, name: str, now: float | None = None) -> str:
        expires = int((time.time() if now is None else now) + self.ttl)
        return (f"{base}/api/v1/runs/{run_id}/artifacts/{quote(name)}"
                f"?expires={expires}&sig={self._sig(run_id, name, expires)}")

    def check(self, run_id: str, name: str, expires: str | None, sig: str | None) -> str | None:
        """None when the signature is valid and unexpired; else why not."""
        if not expires or not sig:
            return "missing"
        try:
            when = int(expires)
        except ValueError:
            return "malformed expires"
        if when < time.time():
            return "expired"
        if not hmac.compare_digest(sig.encode(), self._sig(run_id, name, when).encode()):
            return "wrong signature"
        return None


def redact_url(url: str) -> str:
    """The URL with secret query values (n8n's ``signature``, ``sig``, ``token``, ``key``) replaced."""
    return _SECRET_QUERY.sub(lambda m: m.group(1) + REDACTED, url)


def redact_value(value):
    """``redact_url`` applied to every string in a JSON-like value."""
    if isinstance(value, str):
        return redact_url(value) if "=" in value else value
    if isinstance(value, dict):
        return {k: redact_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_value(v) for v in value]
    return value


class Sealer:
    """Seal a secret (the full resume URL) for storage with a key derived from the signing key (Fernet:
    AES-128-CBC + HMAC-SHA256), so the database holds the redacted URL in clear and the real one sealed."""

    def __init__(self, key: bytes, purpose: str = "callback-url"):
        import base64

        from cryptography.fernet import Fernet

        derived = hashlib.sha256(key + b"\x00" + purpose.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(derived))

    def seal(self, text: str) -> str:
        return self._fernet.encrypt(text.encode()).decode()

    def open(self, token: str) -> str:
        return self._fernet.decrypt(token.encode()).decode()
