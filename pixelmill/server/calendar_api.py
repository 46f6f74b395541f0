"""``/api/v1/calendar``: list, add, move, approve, skip and regenerate calendar entries (docs/calendar.md).

Same bearer token and JSON errors as the rest of the API; every change goes through the calendar's
conditional writes, so two API processes on one database never post an entry twice. The OpenAPI document
says exactly what a body may hold: real dates only, IANA timezone names, and per served workflow its inputs
and its steps as targets; a body outside it gets 400.
"""

from __future__ import annotations

import re
import zoneinfo
from datetime import datetime
from typing import Annotated, Any, Literal

from flask import Blueprint
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema, field_validator

from ..calendar.service import CalendarError
from . import schemas as s
from .auth import check_bearer
from .context import current_service
from .http import ApiError, endpoint, json_response, parse_body, parse_query
from .typed_inputs import check_json_inputs, input_schema

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


# Dates that exist: 30-day months, February 29 in leap years only. Years 1000-9998, so that a slot moved
# to UTC by any offset is still a date Python can hold; 3 or 6 digits of seconds' fraction, as every Python
# from 3.10 on reads them.
_YEAR = r"(?:[1-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9]|999[0-8])"
_LEAP = r"(?:[1-9][0-9](?:0[48]|[2468][048]|[13579][26])|(?:[13579][26]|[2468][048])00)"
_DATE = (rf"(?:{_YEAR}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)"
         rf"|02-(?:0[1-9]|1[0-9]|2[0-8]))|{_LEAP}-02-29)")
ISO_DATETIME = (rf"^{_DATE}[T ](?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:\.[0-9]{{3}}|\.[0-9]{{6}})?)?"
                r"(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])?$")
_WHEN = re.compile(ISO_DATETIME)


def _real_time(text: str) -> str:
    if not _WHEN.fullmatch(text):
        raise ValueError(f"{text[:60]!r} is not a date and time that exists, like '2026-12-01T09:00' (seconds, a "
                         "fraction of 3 or 6 digits and an offset such as '+01:00' or 'Z' may follow; years "
                         "1000 to 9998)")
    return text


# checked in Python for a readable message; the document carries the pattern
When = Annotated[str, Field(max_length=100), AfterValidator(_real_time), WithJsonSchema(
    {"type": "string", "maxLength": 100, "pattern": ISO_DATETIME,
     "description": "ISO date and time, e.g. 2026-12-01T09:00"})]
ZONES = sorted(zoneinfo.available_timezones()) or ["UTC"]
_ZONE_SET = frozenset(ZONES)


def _known_zone(name: str) -> str:
    if name not in _ZONE_SET:
        raise ValueError(f"unknown timezone {name[:100]!r}; use an IANA name such as 'Europe/Paris' or 'UTC'")
    return name


Zone = Annotated[str, AfterValidator(_known_zone), WithJsonSchema({"type": "string", "enum": ZONES})]


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
    when: When
    timezone: Zone | None = Field(None, description="for a time without offset (default: the calendar's)")
    inputs: dict[str, Any] = Field(default_factory=dict)
    target: str | None = Field(None, max_length=100)
    status: Literal["draft", "approved"] = "draft"
    id: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=200)


class MoveIn(_In):
    when: When
    timezone: Zone | None = None


class RegenerateIn(_In):
    inputs: dict[str, Any] = Field(default_factory=dict, description="changed inputs (merged into the entry's)")


def _add_fields(loaded) -> tuple[dict, list[str]]:
    """The body of ``POST /calendar/<workflow>`` for one served workflow: its inputs as they are checked,
    its steps as targets."""
    inputs = input_schema(loaded.workflow.inputs)
    target = {"enum": [*loaded.nodes, None], "description": "a step of the workflow, given to its runs as "
                                                           "trigger.calendar.target (docs/calendar.md, Targets)"}
    return {"inputs": inputs, "target": target}, (["inputs"] if inputs.get("required") else [])


def _regenerate_fields(loaded) -> tuple[dict, list[str]]:
    """The body of ``POST /calendar/<workflow>/<id>/regenerate``: inputs to change (merged into the entry's)."""
    inputs = input_schema(loaded.workflow.inputs)
    inputs.pop("required", None)
    return {"inputs": inputs}, []


def _check_inputs(workflow: str, inputs: dict, partial: bool = False) -> None:
    """400 unless ``inputs`` are declared inputs of the workflow with their JSON types (an unknown workflow
    is left to the calendar's 404)."""
    loaded = current_service().workflows.get(workflow)
    problems = check_json_inputs(loaded.workflow.inputs, inputs, partial) if loaded is not None else []
    if problems:
        raise ApiError(400, "invalid_inputs", f"workflow '{workflow}': " + "; ".join(problems), problems)


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
          responses={201: EntryOut, 400: s.ErrorOut, **ERRORS}, per_workflow=_add_fields)
def add_entry(workflow: str):
    body = parse_body(AddIn)
    _check_inputs(workflow, body.inputs)
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
          responses={200: EntryOut, 400: s.ErrorOut, **ERRORS}, per_workflow=_regenerate_fields)
def regenerate_entry(workflow: str, entry_id: str):
    body = parse_body(RegenerateIn, required=False)
    _check_inputs(workflow, body.inputs, partial=True)
    return json_response(_call(_calendar().regenerate, workflow, entry_id, body.inputs))


def init_app(app) -> None:
    app.register_blueprint(bp)
