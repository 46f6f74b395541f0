"""Credentials: bearer token on the API (PIXELMILL_API_TOKEN) and each webhook's own auth (header token,
HMAC-SHA256 of the raw body, basic), all compared in constant time. Secrets are read from the environment
at request time and never stored or echoed."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import os

from flask import request

from .config import ConfigError
from .context import current_service
from .http import ApiError

DEFAULT_HEADER = {"header": "X-Webhook-Token", "hmac": "X-Signature-256"}


def _secret(name: str | None) -> str:
    value = os.environ.get(name or "") if name else None
    if not value:
        # A configuration problem on our side: say which variable, never its value; no run is created.
        raise ApiError(500, "webhook_misconfigured",
                       f"this webhook's credential is not configured on the server (environment variable "
                       f"{name or '?'} is empty)")
    return value


def _unauthorized(message: str, basic: bool = False):
    headers = {"WWW-Authenticate": 'Basic realm="pixelmill"'} if basic else None
    raise ApiError(401, "unauthorized", message, headers=headers)


def check_auth(auth, raw: bytes) -> set[str]:
    """Raise 401 unless the request carries the workflow's credential; returns header names to drop."""
    kind = auth.type
    if kind == "none":
        return set()
    if kind == "header":
        name = auth.header or DEFAULT_HEADER["header"]
        given = request.headers.get(name)
        if not given:
            _unauthorized(f"missing credential: send the token in the {name} header")
        if not hmac.compare_digest(given.encode(), _secret(auth.secret).encode()):
            _unauthorized(f"wrong credential in the {name} header")
        return {name.lower()}
    if kind == "hmac":
        name = auth.header or DEFAULT_HEADER["hmac"]
        given = request.headers.get(name, "").strip()
        if not given:
            _unauthorized(f"missing signature: send {name}: sha256=<hex HMAC-SHA256 of the raw body>")
        expected = "sha256=" + hmac.new(_secret(auth.secret).encode(), raw, hashlib.sha256).hexdigest()
        if not given.lower().startswith("sha256="):
            given = "sha256=" + given
        if not hmac.compare_digest(given.lower().encode(), expected.encode()):
            _unauthorized(f"the {name} signature does not match the body")
        return {name.lower()}
    if kind == "basic":
        header = request.headers.get("Authorization", "")
        if not header.lower().startswith("basic "):
            _unauthorized("missing credential: use HTTP basic auth", basic=True)
        try:
            user, _, password = base64.b64decode(header[6:].strip(), validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            _unauthorized("malformed basic auth header", basic=True)
        ok_user = hmac.compare_digest(user.encode(), _secret(auth.username_secret).encode())
        ok_pass = hmac.compare_digest(password.encode(), _secret(auth.password_secret).encode())
        if not (ok_user and ok_pass):
            _unauthorized("wrong user name or password", basic=True)
        return set()
    return set()



def check_bearer(token: str | None) -> None:
    """Raise 401 unless the request carries ``Authorization: Bearer <token>`` (no-op when no token is set)."""
    if not token:
        return
    header = request.headers.get("Authorization", "")
    given = header[7:].strip() if header[:7].lower() == "bearer " else ""
    if not given:
        raise ApiError(401, "unauthorized", "send 'Authorization: Bearer <token>' (the server's PIXELMILL_API_TOKEN)",
                       headers={"WWW-Authenticate": "Bearer"})
    if not hmac.compare_digest(given.encode(), token.encode()):
        raise ApiError(401, "unauthorized", "wrong bearer token", headers={"WWW-Authenticate": "Bearer"})


def require_bearer(bp, exempt: tuple[str, ...] = ()) -> None:
    """Every view of ``bp`` (but ``exempt`` endpoints) needs the API token when one is configured."""

    @bp.before_request
    def _bearer():
        if request.endpoint not in exempt:
            check_bearer(current_service().config.api_token)


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, 'localhost')."""
    host = (host or "").strip().strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name or '': it may resolve to anything, so it counts as exposed


def check_exposure(host: str, token: str | None) -> None:
    """Refuse to serve beyond this machine without an API token: anyone who can reach the port could
    otherwise start, cancel and delete runs and read their outputs."""
    if token or is_loopback(host):
        return
    raise ConfigError(
        f"refusing to listen on {host or 'all addresses'} without PIXELMILL_API_TOKEN: the REST API would be "
        "open to anyone who can reach this port. Set a token, e.g. "
        "export PIXELMILL_API_TOKEN=$(python -c 'import secrets; print(secrets.token_urlsafe(32))'), "
        "or listen on 127.0.0.1 behind a proxy that authenticates")


def webhook_auth_guard(loaded, token: str | None) -> None:
    """A workflow whose webhook needs a credential cannot be started through the API unless the API
    itself needs one: otherwise the API would be a way around the webhook's auth."""
    hook = loaded.workflow.on.webhook
    if token or hook is None or hook.auth.type == "none":
        return
    raise ApiError(403, "webhook_auth_required",
                   f"workflow '{loaded.name}' protects its webhook with {hook.auth.type} auth, and the API has no "
                   f"token: call /webhook/{hook.path} with its credential, or set PIXELMILL_API_TOKEN on the "
                   "server to start it through the API")
