"""Who may use the dashboard, and how forms are protected.

With ``PIXELMILL_API_TOKEN`` set, every dashboard page asks for that token once (a login form) and then
trusts a signed session cookie (HttpOnly, SameSite=Lax, Secure behind an https public URL); the cookie
holds a fingerprint of the token, so changing the token logs everyone out. Without a token the dashboard
is as open as the API. Either way every state-changing request (form or fetch) must carry the session's
CSRF token, and pages are served with a strict Content-Security-Policy (scripts and styles from this
server only, no framing).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from datetime import timedelta
from urllib.parse import urlsplit

from flask import redirect, render_template, request, session, url_for

from .blueprint import EXTENSION, PageError, bp, service

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
OPEN_ENDPOINTS = ("web.login", "web.static")
CSP = ("default-src 'self'; img-src 'self' data: blob:; media-src 'self'; style-src 'self'; "
       "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


def _token() -> str | None:
    return service().config.api_token


def _fingerprint(token: str) -> str:
    return hashlib.sha256(b"pixelmill-dashboard\0" + token.encode()).hexdigest()[:32]


def logged_in() -> bool:
    token = _token()
    if not token:
        return True
    return hmac.compare_digest(session.get("auth", ""), _fingerprint(token))


def csrf_token() -> str:
    """This session's CSRF token (made on first use); every form and fetch sends it back."""
    value = session.get("csrf")
    if not value:
        value = session["csrf"] = secrets.token_urlsafe(32)
    return value


def _csrf_ok() -> bool:
    given = request.form.get("csrf_token") or request.headers.get("X-CSRF-Token") or ""
    want = session.get("csrf") or ""
    if not want or not hmac.compare_digest(given.encode(), want.encode()):
        return False
    origin = request.headers.get("Origin")
    if origin and origin != "null":  # a cross-site form post says so in Origin; refuse it even with a token
        return urlsplit(origin).netloc == request.host
    return True


def _safe_next(value: str | None) -> str:
    """Only a path on this server may be a redirect target: no scheme or host, no '//' or '/\\' trick, and
    no whitespace or control characters (browsers drop tabs and newlines inside URLs, so a slash, a tab and
    a slash would become '//')."""
    if (not value or not value.startswith("/") or "\\" in value or len(value) > 2000
            or any(c.isspace() or ord(c) < 32 for c in value) or value.startswith("//")):
        return url_for("web.runs")
    return value


LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}


def _host_allowed() -> bool:
    """Without a token only requests addressed to a loopback name (or PIXELMILL_PUBLIC_URL's host) are
    served, so that a page on another site cannot reach the dashboard through DNS rebinding."""
    if _token():
        return True
    host = request.host.lower()
    name = host[1:].split("]")[0] if host.startswith("[") else host.rsplit(":", 1)[0]
    public = urlsplit(service().config.public_url or "").hostname
    return name in LOCAL_HOSTS or (public is not None and name == public.lower())


@bp.before_request
def _guard():
    if not _host_allowed():
        raise PageError(403, "Set an API token", "Without PIXELMILL_API_TOKEN the dashboard answers only on "
                        "localhost, 127.0.0.1 or [::1] (or the host of PIXELMILL_PUBLIC_URL). Set a token to use "
                        "it from another address; it will then ask for the token once.")
    if request.endpoint in OPEN_ENDPOINTS:
        if request.endpoint == "web.login" and request.method == "POST" and not _csrf_ok():
            raise PageError(400, "Form expired", "The login form expired; reload the page and try again.")
        return None
    if not logged_in():
        page = request.endpoint != "web.run_events"  # an EventSource stops on 401, it would follow a redirect
        if page and request.method in SAFE_METHODS and not request.headers.get("X-Requested-With"):
            return redirect(url_for("web.login", next=request.full_path.rstrip("?")))
        raise PageError(401, "Sign in needed", "Your session ended; sign in again.")
    if request.method not in SAFE_METHODS and not _csrf_ok():
        raise PageError(400, "Form expired",
                        "This form's security token is missing or out of date; reload the page and try again.")
    return None


@bp.after_request
def _headers(resp):
    resp.headers.setdefault("Content-Security-Policy", CSP)
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    resp.headers.setdefault("X-Frame-Options", "DENY")
    resp.headers.setdefault("Referrer-Policy", "same-origin")
    if resp.mimetype == "text/html":
        resp.headers.setdefault("Cache-Control", "no-store")
    return resp


@bp.route("/login", methods=["GET", "POST"])
def login():
    if not _token():
        return redirect(url_for("web.runs"))
    target = _safe_next(request.values.get("next"))
    error = None
    if request.method == "POST":
        given = request.form.get("token", "")
        if given and hmac.compare_digest(given.encode(), _token().encode()):
            session.clear()
            session.permanent = True
            session["auth"] = _fingerprint(_token())
            session["csrf"] = secrets.token_urlsafe(32)
            return redirect(target)
        time.sleep(0.25)  # slows guessing; the token itself should be long and random
        error = "That is not the server's API token (PIXELMILL_API_TOKEN)."
    status = 401 if error else 200
    return render_template("login.html", next=target, error=error, title="Sign in"), status


@bp.route("/logout", methods=["POST"])
def logout():
    session.clear()
    return redirect(url_for("web.login") if _token() else url_for("web.runs"))


def init_app(app) -> None:
    """Session settings: a per-token key (sessions survive restarts, end when the token changes), or a
    random per-process key when there is no token (only the CSRF token lives in the session then)."""
    config = app.extensions[EXTENSION].config
    token = config.api_token
    if not app.secret_key:
        app.secret_key = (hmac.new(token.encode(), b"pixelmill dashboard session key", hashlib.sha256).digest()
                          if token else secrets.token_bytes(32))
    app.config["SESSION_COOKIE_NAME"] = "pixelmill_session"
    app.config["SESSION_COOKIE_HTTPONLY"] = True
    app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    app.config["SESSION_COOKIE_SECURE"] = (config.public_url or "").startswith("https://")
    app.config["PERMANENT_SESSION_LIFETIME"] = timedelta(days=7)
