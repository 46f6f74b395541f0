"""Request and response bodies of the HTTP API, as pydantic models: the OpenAPI document is generated
from these, and request bodies are validated with them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .http import CALLBACK_PATTERN

LAST_EVENT_ID = {"type": "string", "pattern": "^[0-9]{1,18}$"}  # the SSE resume header


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorOut(BaseModel):
    error: str = Field(description="short machine-readable reason, e.g. not_found")
    message: str = Field(description="what went wrong and what to do")
    details: list[Any] | None = None


class ProblemOut(BaseModel):
    file: str
    line: int
    col: int
    message: str
    hint: str = ""


class WebhookOut(BaseModel):
    path: str
    url: str
    methods: list[str]
    respond: str
    respond_timeout: float
    auth: str


class ScheduleOut(BaseModel):
    cron: str | None = None
    interval: str | float | None = None
    timezone: str
    misfire: str
    next_run: str | None = None


class WorkflowSummary(BaseModel):
    name: str
    description: str
    file: str
    steps: int
    webhook: WebhookOut | None = None
    schedules: list[ScheduleOut] = Field(default_factory=list)


class WorkflowDetail(WorkflowSummary):
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    step_list: list[dict[str, Any]]
    source: str


class WorkflowList(BaseModel):
    items: list[WorkflowSummary]
    problems: list[ProblemOut] = Field(default_factory=list, description="files that are not served, and why")


class ValidateIn(Body):
    yaml: str = Field(description="the workflow file's text")
    file: str = Field("<request>", description="a name used in problem locations")


class ValidateOut(BaseModel):
    valid: bool
    name: str | None = None
    steps: int | None = None
    problems: list[ProblemOut] = Field(default_factory=list)


class TriggerIn(Body):
    inputs: dict[str, Any] = Field(default_factory=dict)
    callback_url: str | None = Field(None, description="POST the result here when the run ends")


class RunAccepted(BaseModel):
    run_id: str
    workflow: str
    status: str
    status_url: str
    events_url: str
    message: str = "Workflow got started"


class StepOut(BaseModel):
    step_id: str
    node_type: str
    node_version: str
    status: str
    attempts: int
    started_at: str | None = None
    finished_at: str | None = None
    duration_s: float | None = None
    inputs: dict[str, Any] | None = None
    outputs: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


class RunOut(BaseModel):
    id: str
    workflow: str
    status: str
    trigger_kind: str
    created_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    duration_s: float | None = None
    retry_of: str | None = None
    inputs: dict[str, Any] | None = None
    outputs: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    url: str


class RunDetail(RunOut):
    trigger: dict[str, Any] | None = None
    steps: list[StepOut]
    events_url: str
    artifacts_url: str
    callback: dict[str, Any] | None = None


class RunList(BaseModel):
    items: list[RunOut]
    total: int
    limit: int
    offset: int


class RunListQuery(Body):
    workflow: str | None = Field(None, max_length=200)
    status: Literal["queued", "running", "succeeded", "failed", "blocked", "cancelled", "interrupted"] | None = None
    limit: int = Field(50, ge=1, le=500)
    offset: int = Field(0, ge=0, le=10_000_000)


class CancelOut(BaseModel):
    run_id: str
    status: str


class ArtifactOut(BaseModel):
    name: str
    size: int
    media_type: str
    url: str


class ArtifactList(BaseModel):
    items: list[ArtifactOut]


class NodeOut(BaseModel):
    type: str
    version: str
    source: str
    gpu: bool
    deterministic: bool
    description: str
    config: dict[str, Any]
    inputs: dict[str, Any]
    outputs: dict[str, Any]


class NodeList(BaseModel):
    items: list[NodeOut]


class ReloadOut(BaseModel):
    added: list[str]
    changed: list[str]
    removed: list[str]
    problems: list[ProblemOut]
    schedules: dict[str, list[str]] = Field(default_factory=dict)
    nodes_added: list[str] = Field(default_factory=list, description="node types found in packages installed "
                                                                      "since the last reload")
    restart_needed: list[str] = Field(default_factory=list, description="changes a reload cannot apply")


class HealthOut(BaseModel):
    status: str
    version: str
    workflows: int
    queue_depth: int
    workers: int
    workers_busy: int
    scheduler: bool


class SubscriptionIn(Body):
    # the pattern is documented for clients and checked in the view with Python's regex engine
    url: str = Field(description="where run events are POSTed (an http(s) URL, e.g. an n8n trigger webhook)",
                     json_schema_extra={"pattern": CALLBACK_PATTERN.pattern, "maxLength": 2000})
    events: list[Literal["run.succeeded", "run.failed"]] = Field(
        default_factory=lambda: ["run.succeeded", "run.failed"], min_length=1)
    workflow: str | None = Field(None, description="only runs of this workflow (all when absent)")


class SubscriptionOut(BaseModel):
    id: str
    url: str
    events: list[str]
    workflow: str | None = None
    created_at: str
    secret: str | None = Field(None, description="HMAC key of X-Pixelmill-Signature; returned once, on creation")


class SubscriptionList(BaseModel):
    items: list[SubscriptionOut]
