"""``/api/v1/calendar``: list, add, move, approve, skip and regenerate calendar entries (docs/calendar.md).

Same bearer token and JSON errors as the rest of the API; every change goes through the calendar's
conditional writes, so two API processes on one database never post an entry twice.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from flask import Blueprint
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..calendar.service import CalendarError
from . import schemas as s
from .auth import check_bearer
from .context import current_service
from .http import ApiError, endpoint, json_response, parse_body, parse_query

bp = Blueprint("calendar_api", __name__, url_prefix="/api/v1/calendar")
ERRORS = {404: s.ErrorOut, 409: s.ErrorOut, 422: s.ErrorOut}


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EntryOut(BaseModel):
    """A calendar entry and its state."""

    workflow: str
    id: str
    slot: str = Field(description="UTC, ISO 8601")
    inputs: dict[str, Any]
    target: str | None
    needs_approval: bool
    status: Literal["planned", "generated", "approved", "posted", "failed", "skipped", "missed"]
    source: str
    where: str
    draft_run_id: str | None
    post_run_id: str | None
    note: str
    version: int
    updated_at: str


class LogOut(BaseModel):
    workflow: str
    id: str
    kind: str
    message: str
    at: str


class CalendarList(BaseModel):
    """Entries (oldest slot first) and the latest reports (missed, skipped, posted late)."""

    items: list[EntryOut]
    log: list[LogOut]


ISO_DATETIME = (r"^[1-9][0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[T ]([01][0-9]|2[0-3]):[0-5][0-9]"
                r"(:[0-5][0-9](\.[0-9]{1,6})?)?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])?$")


class ListQuery(_In):
    workflow: str | None = Field(None, max_length=200)
    start: datetime | None = Field(None, description="entries at or after this time (ISO 8601)")
    end: datetime | None = Field(None, description="entries before this time (ISO 8601)")

    @field_validator("start", "end", mode="before")
    @classmethod
    def _iso_text_only(cls, value):
        """ISO 8601 text only: pydantic would otherwise read a number such as 0.5 as a Unix time."""
        if value is None or isinstance(value, datetime):
            return value
        try:
            return datetime.fromisoformat(value) if isinstance(value, str) else _not_iso()
        except ValueError:
            _not_iso()


def _not_iso():
    raise ValueError("an ISO 8601 date and time is needed, like 2026-12-01T09:00")


class AddIn(_In):
    when: str = Field(max_length=100, pattern=ISO_DATETIME, description="ISO date and time, e.g. 2026-12-01T09:00")
    timezone: str | None = Field(None, max_length=100, description="for a time without offset")
    inputs: dict[str, Any] = Field(default_factory=dict)
    target: str | None = Field(None, max_length=100)
    status: Literal["draft", "approved"] = "draft"
    id: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=200)


class MoveIn(_In):
    when: str = Field(max_length=100, pattern=ISO_DATETIME)
    timezone: str | None = Field(None, max_length=100)


class RegenerateIn(_In):
    inputs: dict[str, Any] = Field(default_factory=dict, description="changed inputs (merged into the entry's)")


def _call(fn, *args, **kwargs) -> dict:
    try:
        return fn(*args, **kwargs)
    except CalendarError as exc:
        raise ApiError(exc.status, exc.code, exc.message) from None


def _calendar():
    return current_service().calendar


@bp.before_request
def _bearer():
    check_bearer(current_service().config.api_token)


@endpoint(bp, "", "GET", summary="List calendar entries", tag="calendar", query=ListQuery,
          responses={200: CalendarList})
def list_entries():
    q = parse_query(ListQuery)
    cal = _calendar()
    return json_response({"items": cal.list(q.workflow, q.start, q.end), "log": cal.log()})


@endpoint(bp, "/<workflow>", "POST", summary="Add an entry to a workflow's calendar", tag="calendar", body=AddIn,
          responses={201: EntryOut, 400: s.ErrorOut, **ERRORS})
def add_entry(workflow: str):
    body = parse_body(AddIn)
    entry = _call(_calendar().add, workflow, body.when, inputs=body.inputs, target=body.target,
                  approved=body.status == "approved", entry_id=body.id, tz=body.timezone)
    return json_response(entry, 201)


@endpoint(bp, "/<workflow>/<entry_id>", "GET", summary="Show a calendar entry", tag="calendar",
          responses={200: EntryOut, 404: s.ErrorOut})
def show_entry(workflow: str, entry_id: str):
    return json_response(_call(_calendar().get, workflow, entry_id))


@endpoint(bp, "/<workflow>/<entry_id>/move", "POST", summary="Move an entry to another time", tag="calendar",
          body=MoveIn, responses={200: EntryOut, 400: s.ErrorOut, **ERRORS})
def move_entry(workflow: str, entry_id: str):
    body = parse_body(MoveIn)
    return json_response(_call(_calendar().move, workflow, entry_id, body.when, body.timezone))


@endpoint(bp, "/<workflow>/<entry_id>/approve", "POST", summary="Approve an entry (its draft is posted at the slot)",
          tag="calendar", body_required=False, responses={200: EntryOut, **ERRORS})
def approve_entry(workflow: str, entry_id: str):
    return json_response(_call(_calendar().approve, workflow, entry_id))


@endpoint(bp, "/<workflow>/<entry_id>/skip", "POST", summary="Skip an entry (never posted)", tag="calendar",
          body_required=False, responses={200: EntryOut, **ERRORS})
def skip_entry(workflow: str, entry_id: str):
    return json_response(_call(_calendar().skip, workflow, entry_id))


@endpoint(bp, "/<workflow>/<entry_id>/regenerate", "POST", tag="calendar", body=RegenerateIn,
          body_required=False, summary="Make a new draft (optionally with edited inputs); it needs approval again",
          responses={200: EntryOut, 400: s.ErrorOut, **ERRORS})
def regenerate_entry(workflow: str, entry_id: str):
    body = parse_body(RegenerateIn, required=False)
    return json_response(_call(_calendar().regenerate, workflow, entry_id, body.inputs))


def init_app(app) -> None:
    app.register_blueprint(bp)
