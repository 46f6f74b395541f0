"""The workflow file's shape, as pydantic models (also the source of the JSON Schema)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

IDENT = r"^[A-Za-z_][A-Za-z0-9_]*$"
SLUG = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


MAX_TIMEOUT = 7 * 86400.0  # a step timeout beyond a week is a mistake (and overflows thread waits)
MAX_PARALLEL = 64  # for_each items running at once
MAX_ITEMS = 10_000  # items of one for_each


class Strict(BaseModel):
    # .inf and .nan are never meaningful in a workflow (a timeout of .inf made every run fail)
    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)


_KINDS = {"string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,), "list": (list,),
          "object": (dict,), "image": (str,), "file": (str,)}  # a file's default is a data: or http(s) URL


def value_fits(kind: str, value) -> bool:
    """Whether a literal value has an input type (``true`` is not an integer)."""
    if isinstance(value, bool) and kind != "boolean":
        return False
    return isinstance(value, _KINDS[kind])


class InputSpec(Strict):
    """A workflow input. An input without a default is required."""

    type: Literal["string", "integer", "number", "boolean", "list", "object", "image", "file"] = Field(
        "string", description="image/file: a multipart upload, a data: URL or an http(s) URL, stored as an "
                              "artifact of the run (see docs/images.md)")
    default: Any = None
    description: str = ""
    enum: list[Any] | None = None

    @property
    def required(self) -> bool:
        return "default" not in self.model_fields_set


class Schedule(Strict):
    """Run on a cron expression or at an interval, in a timezone."""

    cron: str | None = Field(None, description="5 fields (min hour day month weekday) or 6 with seconds first")
    interval: float | str | None = Field(None, description="seconds, or a duration such as '90s', '15m', '1h', '1d'")
    timezone: str = "UTC"
    inputs: dict[str, Any] = Field(default_factory=dict)
    misfire: Literal["skip", "run_once"] = Field(
        "run_once", description="after downtime: skip missed slots, or run once for all of them"
    )


class WebhookAuth(Strict):
    type: Literal["none", "header", "hmac", "basic"] = "none"
    header: str | None = Field(None, description="header carrying the token (header) or the signature (hmac)")
    secret: str | None = Field(None, description="name of the secret (environment variable) holding the token or key")
    username_secret: str | None = None
    password_secret: str | None = None


class Webhook(Strict):
    """Start the workflow when ``/webhook/<path>`` is called (n8n conventions)."""

    path: str = Field(description="served at /webhook/<path>; ':name' segments are route parameters")
    methods: list[Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]] = Field(default_factory=lambda: ["POST"])
    auth: WebhookAuth = Field(default_factory=WebhookAuth)
    respond: Literal["immediately", "when_done"] = "immediately"
    respond_timeout: float = Field(30.0, gt=0, le=3600)
    extra_inputs: Literal["reject", "ignore"] = Field(
        "reject", description="body keys that are not declared inputs: answer 400 naming the inputs (reject), or "
                              "leave them in trigger.body only (ignore)")

    @field_validator("path")
    @classmethod
    def _clean_path(cls, value: str) -> str:
        value = value.strip().strip("/")
        if not re.match(r"^[A-Za-z0-9:][A-Za-z0-9_\-/:.]*$", value) or "//" in value or ".." in value:
            raise ValueError("a webhook path uses letters, digits, '-', '_', '.', '/' and ':param' segments")
        return value


class DatedEntry(Strict):
    """A one-off post: run once at a date and time, with its own inputs (see docs/calendar.md)."""

    at: str | datetime = Field(description="ISO date and time, e.g. '2026-12-01T09:00' or with an offset '+01:00'")
    timezone: str | None = Field(None, description="IANA name for a time without offset (default: the calendar's)")
    id: str | None = Field(None, pattern=SLUG, description="stable id of the entry (default: its slot)")
    inputs: dict[str, Any] = Field(default_factory=dict)
    target: str | None = Field(None, description="posting step id this entry posts with (trigger.calendar.target)")
    status: Literal["draft", "approved"] = "draft"


class CalendarSettings(Strict):
    """Dated entries: a file of posts beside the workflow, review before posting, and the misfire policy."""

    file: str | None = Field(None, description="a .yaml or .csv file beside the workflow, one row per post")
    timezone: str = "UTC"
    approval: bool = Field(False, description="entries must be approved before they are posted")
    lead: float | str = Field("2h", description="generate drafts this long before the slot (seconds or '2h')")
    misfire: Literal["post_late", "skip"] | None = Field(
        None, description="a slot passed while the service was down: post once late, or skip and report "
                          "(default: like the workflow's schedules, else post_late)")


class Triggers(Strict):
    schedule: list[Schedule] = Field(default_factory=list)
    webhook: Webhook | None = None
    at: list[DatedEntry] = Field(default_factory=list, description="one-off dated posts")
    calendar: CalendarSettings | str | None = Field(None, description="settings, or just the calendar file's name")

    @field_validator("schedule", "at", mode="before")
    @classmethod
    def _one_or_many(cls, value):
        return [value] if isinstance(value, dict) else value

    @field_validator("calendar", mode="before")
    @classmethod
    def _file_only(cls, value):
        return {"file": value} if isinstance(value, str) else value


class Retry(Strict):
    max_attempts: int = Field(1, ge=1, le=20)
    delay: float = Field(1.0, ge=0, description="seconds before the second attempt")
    factor: float = Field(2.0, ge=1, description="each further wait is multiplied by this")
    max_delay: float = Field(60.0, ge=0)

    def wait_before(self, attempt: int) -> float:
        """Seconds to wait before ``attempt`` (2 is the first retry)."""
        return min(self.max_delay, self.delay * self.factor ** max(0, attempt - 2))


class Step(Strict):
    id: str = Field(pattern=IDENT, description="unique within the workflow; used as steps.<id> in expressions")
    node: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.]*(@[A-Za-z0-9_.]+)?$", description="node type, optionally @version")
    name: str = ""
    config: dict[str, Any] = Field(default_factory=dict, description="literal settings, checked when the workflow loads")
    with_: dict[str, Any] = Field(default_factory=dict, alias="with", description="inputs; may use ${{ }} expressions")
    if_: str | bool | None = Field(None, alias="if", description="run only when this expression is true")
    needs: list[str] = Field(default_factory=list, description="steps that must finish first (besides references)")
    retry: Retry = Field(default_factory=Retry)
    timeout: float | None = Field(None, gt=0, le=MAX_TIMEOUT, description="seconds (at most a week)")
    on_error: Literal["fail", "continue"] = "fail"
    cache: bool = Field(True, description="reuse outputs of deterministic nodes for identical inputs")
    for_each: str | None = Field(
        None, description="run the step once per item of this list expression, e.g. '${{ inputs.prompts }}'; "
                          "'item' and 'index' are available in its 'with'; each output becomes a list in item order")
    max_parallel: int = Field(1, ge=1, le=MAX_PARALLEL, description="for_each: items that may run at the same time")
    on_item_error: Literal["stop", "continue"] = Field(
        "stop", description="for_each: 'stop' fails the step at the first failed item (no new items start); "
                            "'continue' runs every item and leaves null in the output lists for failed ones")

    @property
    def node_type(self) -> str:
        return self.node.partition("@")[0]

    @property
    def node_version(self) -> str | None:
        return self.node.partition("@")[2] or None


class Workflow(Strict):
    name: str = Field(pattern=SLUG)
    description: str = ""
    inputs: dict[str, InputSpec] = Field(default_factory=dict)
    on: Triggers = Field(default_factory=Triggers)
    steps: list[Step] = Field(min_length=1)
    outputs: dict[str, Any] = Field(default_factory=dict, description="what a webhook caller gets back")
    queue: str | None = Field(None, pattern=SLUG, description="the worker queue of this workflow's runs (celery "
                              "executor); default: gpu when a step uses the GPU, else default")

    @field_validator("inputs")
    @classmethod
    def _input_names(cls, value: dict) -> dict:
        for key in value:
            if not re.match(IDENT, key):
                raise ValueError(f"input name '{key}' must be an identifier (letters, digits, _)")
        return value

    def step(self, step_id: str) -> Step | None:
        return next((s for s in self.steps if s.id == step_id), None)
