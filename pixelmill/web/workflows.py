"""Workflows: the served list (webhook URL and curl line, next schedule times, files that failed to load)
and a workflow's page (steps graph, a run form made from its declared inputs, recent runs)."""

from __future__ import annotations

import json
import shlex
from datetime import datetime, timedelta, timezone

from flask import redirect, render_template, request, url_for

from ..inputs import InputError
from ..schedules import ScheduleError, build_trigger
from . import queries
from .blueprint import PageError, bp, service
from .graph import layout

NEXT_TIMES = 3


def _base() -> str:
    return service().config.public_url or request.host_url.rstrip("/")


def _example_body(wf) -> dict:
    return {k: spec.default for k, spec in wf.inputs.items() if not spec.required and spec.default is not None}


def _curl(url: str, hook, body: dict) -> str:
    auth = hook.auth
    args = ["curl", "-sS", "-X", "POST", url, "-H", "Content-Type: application/json"]
    if auth.type == "header":
        args += ["-H", f"{auth.header or 'X-Webhook-Token'}: ${auth.secret}"]
    elif auth.type == "hmac":
        args += ["-H", f"{auth.header or 'X-Signature-256'}: sha256=$SIGNATURE"]  # HMAC-SHA256 of the body
    elif auth.type == "basic":
        args += ["-u", f"${auth.username_secret}:${auth.password_secret}"]
    args += ["-d", json.dumps(body)]
    # $VARIABLES stay unquoted-expandable: the shell fills in the secret, the page never shows it
    return " ".join(f'"{a}"' if "$" in a else shlex.quote(a) for a in args)


def _next_times(name: str, index: int, sched, jobs: dict[str, str]) -> list[str]:
    """The next few fire times (UTC ISO): the scheduler's own next one first when it runs the job."""
    try:
        trigger = build_trigger(sched)
    except ScheduleError:
        return []
    now = datetime.now(timezone.utc)
    first = next((v for k, v in jobs.items() if k.startswith(f"{name}#{index}:") and v), None)
    times = [datetime.fromisoformat(first)] if first else []
    prev = times[0] if times else None
    while len(times) < NEXT_TIMES:
        t = trigger.get_next_fire_time(prev, (prev + timedelta(seconds=1)) if prev else now)
        if t is None:
            break
        times.append(t)
        prev = t
    return [t.astimezone(timezone.utc).isoformat() for t in times]


def _summary(loaded, jobs: dict[str, str], base: str) -> dict:
    wf = loaded.workflow
    hook = wf.on.webhook
    webhook = None
    if hook is not None:
        url = f"{base}/webhook/{hook.path.strip('/')}"
        webhook = {"url": url, "path": hook.path, "methods": hook.methods, "auth": hook.auth.type,
                   "respond": hook.respond, "curl": _curl(url, hook, _example_body(wf))}
    schedules = [{"text": s.cron or f"every {s.interval}" + ("" if isinstance(s.interval, str) else " s"),
                  "timezone": s.timezone, "misfire": s.misfire, "next": _next_times(loaded.name, i, s, jobs)}
                 for i, s in enumerate(wf.on.schedule)]
    return {"name": wf.name, "description": wf.description, "file": loaded.file, "steps": len(wf.steps),
            "webhook": webhook, "schedules": schedules, "filename": _filename(loaded.file)}


def _filename(path: str) -> str:
    return path.replace("\\", "/").rsplit("/", 1)[-1]


def _jobs(svc) -> dict[str, str]:
    return {j["id"]: j["next_run"] for j in svc.scheduler.jobs()} if svc.scheduler is not None else {}


@bp.get("/workflows")
def workflows():
    svc = service()
    jobs, base = _jobs(svc), _base()
    items = [_summary(w, jobs, base) for w in svc.workflows.all()]
    problems = [dict(p.to_dict(), filename=_filename(p.file)) for p in svc.workflows.catalog.problems]
    return render_template("workflows.html", title="Workflows", items=items, problems=problems,
                           scheduler=svc.scheduler is not None, folder=svc.workflows.folder)


def _loaded_or_404(name: str):
    loaded = service().workflows.get(name)
    if loaded is None:
        raise PageError(404, "No such workflow", f"No workflow named '{name}' is served; the Workflows page "
                                                 "lists the served ones and the files that failed to load.")
    return loaded


def _form_fields(wf, values: dict | None = None) -> list[dict]:
    fields = []
    for name, spec in wf.inputs.items():
        if values is not None and name in values:
            value = values[name]
        elif spec.default is None:
            value = ""
        elif spec.type in ("list", "object"):
            value = json.dumps(spec.default)
        elif spec.type == "boolean":
            value = "true" if spec.default else "false"
        else:
            value = str(spec.default)
        widget = "select" if spec.enum is not None or spec.type == "boolean" else \
            "textarea" if spec.type in ("list", "object") else "number" if spec.type in ("integer", "number") \
            else "text"
        options = [str(v) for v in spec.enum] if spec.enum is not None else ["true", "false"] \
            if spec.type == "boolean" else []
        fields.append({"name": name, "type": spec.type, "description": spec.description, "value": value,
                       "required": spec.required, "widget": widget, "options": options,
                       "step": "1" if spec.type == "integer" else "any",
                       "default": None if spec.required else spec.default})
    return fields


def _page(loaded, values=None, errors=None, status=200):
    svc = service()
    wf = loaded.workflow
    nodes = {sid: (info.type, bool(getattr(info.cls, "uses_gpu", False))) for sid, info in loaded.nodes.items()}
    recent, total = queries.run_rows(svc.runtime.store, workflow=wf.name, limit=10)
    return render_template("workflow.html", title=wf.name, wf=wf, summary=_summary(loaded, _jobs(svc), _base()),
                           graph=layout(list(loaded.order), loaded.deps, nodes), fields=_form_fields(wf, values),
                           errors=errors or [], recent=recent, total=total), status


@bp.get("/workflows/<name>")
def workflow(name: str):
    return _page(_loaded_or_404(name))


@bp.post("/workflows/<name>/run")
def start_run(name: str):
    from ..server.queue import QueueFull

    svc = service()
    loaded = _loaded_or_404(name)
    specs = loaded.workflow.inputs
    submitted = {k: request.form.get(k, "") for k in specs}
    given = {}
    for key, raw in submitted.items():
        if raw.strip() == "" and not specs[key].required:
            continue  # empty field: the declared default applies
        given[key] = raw
    try:
        run_id = svc.queue.create(loaded, given, trigger={"kind": "dashboard", "inputs": given},
                                  trigger_kind="dashboard")
    except InputError as exc:
        return _page(loaded, submitted, exc.problems, 400)
    except QueueFull as exc:
        return _page(loaded, submitted, [f"{exc}; try again in a moment"], 503)
    svc.queue.enqueue(run_id)
    return redirect(url_for("web.run", run_id=run_id))
