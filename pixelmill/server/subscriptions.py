"""Event subscriptions (``/api/v1/subscriptions``): POST a URL, the events (``run.succeeded``,
``run.failed``) and optionally a workflow; every matching finished run is POSTed there. Deliveries are
persisted in the store, signed (``X-Pixelmill-Signature: sha256=<hex HMAC-SHA256 of the body>``, the key
returned once when the subscription is created and derived from the signing key, so it is never stored)
and retried with backoff and jitter over the callback window. The n8n "Pixelmill Trigger" node uses this.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import json
import logging
import threading
import time
import uuid
from datetime import datetime, timezone

import requests
from flask import Blueprint
from sqlalchemy import Float, Integer, String, Text, delete, insert, select, update
from sqlalchemy.orm import Mapped, mapped_column

from ..db import Base
from . import schemas as s
from .auth import require_bearer
from .callbacks import next_delay, refused_host
from .context import NOT_FOUND, current_service
from .http import CALLBACK_PATTERN, ApiError, endpoint, json_response, parse_body
from .signing import redact_url

log = logging.getLogger(__name__)
bp = Blueprint("subscriptions", __name__, url_prefix="/api/v1")
require_bearer(bp)
FINAL_FAILED = ("failed", "blocked", "cancelled", "interrupted")


class SubscriptionRow(Base):
    __tablename__ = "subscriptions"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    events: Mapped[str] = mapped_column(Text)  # JSON list
    workflow: Mapped[str | None] = mapped_column(String(255), nullable=True)
    created_at: Mapped[str] = mapped_column(String(40))


class DeliveryRow(Base):
    __tablename__ = "subscription_deliveries"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    subscription_id: Mapped[str] = mapped_column(String(32), index=True)
    run_id: Mapped[str] = mapped_column(String(32), index=True)
    event: Mapped[str] = mapped_column(String(40))
    state: Mapped[str] = mapped_column(String(20), default="pending")  # pending | delivered | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    last_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    first_failure_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    next_attempt_at: Mapped[float | None] = mapped_column(Float, nullable=True)


def event_of(status: str) -> str | None:
    return "run.succeeded" if status == "succeeded" else "run.failed" if status in FINAL_FAILED else None


class Subscriptions:
    """The subscription table and the delivery loop."""

    def __init__(self, runtime, result_body, key: bytes, base_url, *, backoff: float = 1.0, window: float = 3600.0,
                 max_delay: float = 300.0, timeout: float = 10.0):
        self.runtime = runtime
        self.result_body = result_body
        self.base_url = base_url  # () -> the public base of URLs in deliveries
        self.key = key
        self.backoff, self.window, self.max_delay, self.timeout = backoff, window, max_delay, timeout
        self._heap: list[tuple[float, str]] = []
        self._cond = threading.Condition()
        self._stop = False
        self._session = requests.Session()
        Base.metadata.create_all(runtime.store.engine, tables=[SubscriptionRow.__table__, DeliveryRow.__table__])

    # -- subscriptions ---------------------------------------------------------------------------

    def secret(self, sub_id: str) -> str:
        return hmac.new(self.key, f"subscription:{sub_id}".encode(), hashlib.sha256).hexdigest()

    def create(self, url: str, events: list[str], workflow: str | None) -> dict:
        row = {"id": uuid.uuid4().hex, "url": url, "events": json.dumps(sorted(set(events))), "workflow": workflow,
               "created_at": datetime.now(timezone.utc).isoformat()}
        with self.runtime.store.writing() as conn:
            conn.execute(insert(SubscriptionRow).values(**row))
        return {**self._out(row), "secret": self.secret(row["id"])}

    def list(self) -> list[dict]:
        with self.runtime.store.engine.connect() as conn:
            rows = conn.execute(select(SubscriptionRow.__table__).order_by(SubscriptionRow.created_at)).mappings()
            return [self._out(r) for r in rows]

    def delete(self, sub_id: str) -> bool:
        with self.runtime.store.writing() as conn:
            gone = conn.execute(delete(SubscriptionRow).where(SubscriptionRow.id == sub_id)).rowcount
            conn.execute(delete(DeliveryRow).where(DeliveryRow.subscription_id == sub_id,
                                                   DeliveryRow.state == "pending"))
        return bool(gone)

    @staticmethod
    def _out(row) -> dict:
        return {"id": row["id"], "url": redact_url(row["url"]), "events": json.loads(row["events"]),
                "workflow": row["workflow"], "created_at": row["created_at"]}

    def deliveries(self, run_id: str) -> list[dict]:
        t = DeliveryRow.__table__
        with self.runtime.store.engine.connect() as conn:
            rows = conn.execute(select(t.c.id, t.c.subscription_id, t.c.event, t.c.state, t.c.attempts,
                                       t.c.last_error, t.c.last_status).where(t.c.run_id == run_id)).mappings()
            return [dict(r) for r in rows]

    # -- deliveries ------------------------------------------------------------------------------

    def start(self) -> None:
        t = DeliveryRow.__table__
        with self.runtime.store.engine.connect() as conn:
            rows = list(conn.execute(select(t.c.id, t.c.next_attempt_at).where(t.c.state == "pending")))
        for delivery_id, next_at in rows:
            self._schedule(delivery_id, max(0.0, (next_at or 0.0) - time.time()))
        threading.Thread(target=self._loop, name="pixelmill-subscriptions", daemon=True).start()

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()

    def on_finished(self, run_id: str) -> None:
        run = self.runtime.store.get_run(run_id)
        event = event_of(run["status"]) if run else None
        if event is None:
            return
        t = SubscriptionRow.__table__
        with self.runtime.store.engine.connect() as conn:
            subs = list(conn.execute(select(t.c.id, t.c.events, t.c.workflow)).mappings())
        ids = []
        with self.runtime.store.writing() as conn:
            for sub in subs:
                if event in json.loads(sub["events"]) and sub["workflow"] in (None, run["workflow"]):
                    ids.append(uuid.uuid4().hex)
                    conn.execute(insert(DeliveryRow).values(id=ids[-1], subscription_id=sub["id"], run_id=run_id,
                                                            event=event, state="pending", attempts=0))
        for delivery_id in ids:
            self._schedule(delivery_id, 0.0)

    def _schedule(self, delivery_id: str, delay: float) -> None:
        with self._cond:
            heapq.heappush(self._heap, (time.monotonic() + delay, delivery_id))
            self._cond.notify()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._stop and (not self._heap or self._heap[0][0] > time.monotonic()):
                    self._cond.wait(None if not self._heap else max(0.0, self._heap[0][0] - time.monotonic()))
                if self._stop:
                    return
                _, delivery_id = heapq.heappop(self._heap)
            try:
                self._deliver(delivery_id)
            except Exception:
                log.exception("subscription delivery %s failed unexpectedly", delivery_id)

    def _deliver(self, delivery_id: str) -> None:
        d, sub_t = DeliveryRow.__table__, SubscriptionRow.__table__
        with self.runtime.store.engine.connect() as conn:
            row = conn.execute(select(d).where(d.c.id == delivery_id)).mappings().first()
            sub = conn.execute(select(sub_t).where(sub_t.c.id == row["subscription_id"])).mappings().first() \
                if row else None
        run = self.runtime.store.get_run(row["run_id"]) if row else None
        if row is None or row["state"] != "pending" or sub is None or run is None:
            return
        base = self.base_url()
        payload = json.dumps({"event": row["event"], "delivery_id": delivery_id, "subscription_id": sub["id"],
                              "run": self.result_body(run, base)}).encode()
        signature = "sha256=" + hmac.new(self.secret(sub["id"]).encode(), payload, hashlib.sha256).hexdigest()
        status, error = None, None
        try:
            refused = refused_host(sub["url"])  # PIXELMILL_CALLBACK_HOSTS limits subscriptions too
            if refused:
                raise ValueError(refused)
            resp = self._session.post(sub["url"], data=payload, timeout=self.timeout, headers={
                "Content-Type": "application/json", "X-Pixelmill-Event": row["event"],
                "X-Pixelmill-Delivery": delivery_id, "X-Pixelmill-Signature": signature,
                "User-Agent": "pixelmill-subscription"})
            status = resp.status_code
            ok, retryable = 200 <= status < 300, status >= 500 or status in (404, 408, 425, 429)
            error = None if ok else f"HTTP {status}"
        except requests.RequestException as exc:
            ok, retryable, error = False, True, redact_url(f"{type(exc).__name__}: {exc}")
        except (ValueError, UnicodeError) as exc:
            ok, retryable, error = False, False, f"{type(exc).__name__}: {str(exc)[:200]}"
        now = time.time()
        first = row["first_failure_at"] if row["first_failure_at"] is not None else (None if ok else now)
        delay = next_delay(row["attempts"] + 1, self.backoff, self.max_delay)
        state = "delivered" if ok else "pending" if retryable and (now + delay - first) <= self.window else "failed"
        with self.runtime.store.writing() as conn:
            conn.execute(update(d).where(d.c.id == delivery_id).values(
                state=state, attempts=row["attempts"] + 1, last_error=error, last_status=status,
                first_failure_at=first, next_attempt_at=now + delay if state == "pending" else None))
        if state == "pending":
            log.warning("delivery %s of %s to subscription %s failed (%s); retrying in %.1f s", delivery_id,
                        row["event"], sub["id"], error, delay)
            self._schedule(delivery_id, delay)
        elif state == "failed":
            log.error("delivery %s to subscription %s gave up: %s", delivery_id, sub["id"], error)


# -- the API ---------------------------------------------------------------------------------------------


@endpoint(bp, "/subscriptions", "POST", summary="Subscribe a URL to run events", tag="subscriptions",
          body=s.SubscriptionIn, responses={201: s.SubscriptionOut, 400: s.ErrorOut, 404: s.ErrorOut})
def create_subscription():
    svc = current_service()
    req = parse_body(s.SubscriptionIn)
    if len(req.url) > 2000 or not CALLBACK_PATTERN.fullmatch(req.url):
        raise ApiError(400, "invalid_url", f"url must be an http(s) URL, not {req.url[:200]!r}")
    if req.workflow is not None and svc.workflows.get(req.workflow) is None:
        raise ApiError(404, "not_found", f"no workflow named '{req.workflow}' is served; GET /api/v1/workflows "
                                         "lists them")
    return json_response(svc.subscriptions.create(req.url, list(req.events), req.workflow), 201)


@endpoint(bp, "/subscriptions", "GET", summary="List event subscriptions", tag="subscriptions",
          responses={200: s.SubscriptionList})
def list_subscriptions():
    return json_response({"items": current_service().subscriptions.list()})


@endpoint(bp, "/subscriptions/<sub_id>", "DELETE", summary="Delete an event subscription", tag="subscriptions",
          responses={204: None, **NOT_FOUND})
def delete_subscription(sub_id: str):
    if len(sub_id) > 64 or not current_service().subscriptions.delete(sub_id):
        raise ApiError(404, "not_found", f"no subscription with id '{sub_id[:64]}'")
    return "", 204


def init_app(app) -> None:
    app.register_blueprint(bp)
