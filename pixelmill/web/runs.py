"""Runs: the self-updating list, the run page (timeline, live progress, inputs, outputs, error, files,
AI labels) and its actions (cancel, retry, delete)."""

from __future__ import annotations

import io
import time
from datetime import datetime
from functools import lru_cache
from pathlib import Path

from flask import redirect, render_template, request, send_file, url_for

from . import queries
from .blueprint import PageError, bp, service

PER_PAGE = 50
TRIGGERS = ("api", "calendar", "dashboard", "manual", "retry", "schedule", "webhook")
RETRYABLE = ("failed", "blocked", "cancelled", "interrupted")


def _run_or_404(run_id: str) -> dict:
    run = service().runtime.store.get_run(run_id) if len(run_id) <= 64 else None
    if run is None:
        raise PageError(404, "No such run", f"There is no run with id '{run_id}'; it may have been deleted.")
    return run


def _int_arg(name: str, default: int, lo: int, hi: int) -> int:
    try:
        return min(hi, max(lo, int(request.args.get(name, default))))
    except ValueError:
        return default


# -- the list --------------------------------------------------------------------------------------


@bp.get("/")
def runs():
    svc = service()
    store = svc.runtime.store
    filters = {k: (request.args.get(k) or "").strip()[:200] or None for k in ("workflow", "status", "trigger")}
    if filters["status"] not in (None, *queries.STATUSES):
        filters["status"] = None
    page = _int_arg("page", 1, 1, 1_000_000)
    rows, total = queries.run_rows(store, **filters, limit=PER_PAGE, offset=(page - 1) * PER_PAGE)
    pages = max(1, -(-total // PER_PAGE))
    ctx = dict(rows=rows, total=total, page=page, pages=pages, filters=filters,
               query={k: v for k, v in filters.items() if v})
    if request.args.get("fragment") == "rows":
        return render_template("_runs_rows.html", **ctx)
    names = sorted(set(queries.workflow_names(store)) | {w.name for w in svc.workflows.all()})
    return render_template("runs.html", title="Runs", workflows=names, statuses=queries.STATUSES,
                           triggers=TRIGGERS, **ctx)


# -- one run ---------------------------------------------------------------------------------------


def _timeline(run: dict, order: list[str], node_types: dict[str, str]) -> list[dict]:
    """One row per step (stored steps, then the workflow's steps that have not started), with the bar's
    offset and width in percent of the run's span."""
    steps = {s["step_id"]: s for s in run["steps"]}
    ids = list(steps) + [sid for sid in order if sid not in steps]
    start = run.get("started_at") or run.get("created_at")
    t0 = datetime.fromisoformat(start).timestamp() if start else time.time()
    end = run.get("finished_at")
    t1 = datetime.fromisoformat(end).timestamp() if end else time.time()
    stamps = [t1]
    for s in steps.values():
        if s.get("finished_at"):
            stamps.append(datetime.fromisoformat(s["finished_at"]).timestamp())
    t1 = max(stamps)
    span = max(t1 - t0, 1e-6)
    rows = []
    for sid in ids:
        s = steps.get(sid)
        row = {"id": sid, "status": "pending", "node": node_types.get(sid, ""), "attempts": 0, "duration_s": None,
               "x": 0.0, "w": 0.0, "error": None}
        if s is not None:
            row.update(status=s["status"], node=s["node_type"], attempts=s["attempts"], duration_s=s["duration_s"],
                       error=(s.get("error") or {}).get("message"))
            if s.get("started_at"):
                a = datetime.fromisoformat(s["started_at"]).timestamp()
                b = datetime.fromisoformat(s["finished_at"]).timestamp() if s.get("finished_at") else t1
                row["x"] = round(max(0.0, min(100.0, (a - t0) / span * 100)), 2)
                row["w"] = round(max(0.6, min(100.0 - row["x"], (b - a) / span * 100)), 2)
        rows.append(row)
    return rows


@bp.get("/runs/<run_id>")
def run(run_id: str):
    svc = service()
    store = svc.runtime.store
    run = _run_or_404(run_id)
    loaded = svc.workflows.get(run["workflow"])
    order = list(loaded.order) if loaded is not None else []
    node_types = {sid: info.type for sid, info in loaded.nodes.items()} if loaded is not None else {}
    files = queries.run_files(store, run_id)
    return render_template(
        "run.html", title=f"Run {run_id[:8]}", run=run, steps=_timeline(run, order, node_types), files=files,
        duration=queries.duration(run), retries=queries.retries(store, run_id), active=run["status"] in queries.ACTIVE,
        progress=queries.last_progress(store, run_id), retryable=run["status"] in RETRYABLE and loaded is not None,
        served=loaded is not None, retried_by=queries.retried_by(store, run_id), error=run.get("error"),
        primary=(queries.first_image(run.get("outputs")) or {}).get("name"))


def _is_artifact(value) -> bool:
    return isinstance(value, dict) and value.get("kind") == "artifact" and "name" in value


bp.add_app_template_test(_is_artifact, "artifact")


@bp.get("/runs/<run_id>/files/<name>")
def artifact(run_id: str, name: str):
    store = service().runtime.store
    path = queries.artifact_path(store, run_id, name)
    if path is None:
        raise PageError(404, "No such file", f"Run {run_id[:8]} has no file named {name[:100]!r}.")
    if request.args.get("thumb") and queries.media_kind(name) == "image":
        st = path.stat()
        data = _thumbnail(str(path), st.st_mtime_ns, st.st_size)
        if data is not None:
            resp = send_file(io.BytesIO(data), mimetype="image/png", download_name=f"thumb-{name}.png")
            resp.headers["Cache-Control"] = "private, max-age=3600"
            return resp
    resp = send_file(path, mimetype=queries.mimetypes.guess_type(name)[0] or "application/octet-stream",
                     as_attachment=queries.media_kind(name) == "file", download_name=name, conditional=True)
    resp.headers["Cache-Control"] = "private, max-age=3600"
    return resp


@lru_cache(maxsize=512)
def _thumbnail(path: str, _mtime_ns: int, _size: int) -> bytes | None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.thumbnail((128, 128))
            buf = io.BytesIO()
            im.convert("RGB").save(buf, "PNG", optimize=True)
            return buf.getvalue()
    except (UnidentifiedImageError, OSError, ValueError):
        return None


@bp.get("/runs/<run_id>/labels/<name>")
def labels(run_id: str, name: str):
    """The AI labels that ``pixelmill inspect`` reads from an image (an HTML fragment the run page loads)."""
    from ..labels.inspect import InspectError, inspect_file

    store = service().runtime.store
    path = queries.artifact_path(store, run_id, name)
    if path is None or queries.media_kind(name) != "image":
        raise PageError(404, "No such image", f"Run {run_id[:8]} has no image named {name[:100]!r}.")
    try:
        report, problem = inspect_file(path), None
    except InspectError as exc:
        report, problem = None, str(exc).replace(str(Path(store.artifacts_root)), "…")
    return render_template("_labels.html", report=report, problem=problem, name=name)


# -- live events (the run page's EventSource) -------------------------------------------------------


@bp.get("/runs/<run_id>/events")
def run_events(run_id: str):
    from .live import stream

    run = _run_or_404(run_id)
    return stream(service(), run)


# -- actions ---------------------------------------------------------------------------------------


@bp.post("/runs/<run_id>/cancel")
def cancel(run_id: str):
    svc = service()
    before = _run_or_404(run_id)["status"]
    if before in queries.ACTIVE:
        status = svc.runtime.executor.cancel(run_id)
        if before == "queued" and status == "cancelled":
            svc.finish_cancelled(run_id)
    return redirect(url_for("web.run", run_id=run_id))


@bp.post("/runs/<run_id>/retry")
def retry(run_id: str):
    from ..server.queue import QueueFull

    svc = service()
    run = _run_or_404(run_id)
    if run["status"] not in RETRYABLE:
        raise PageError(409, "Cannot retry", f"This run is {run['status']}; only failed, blocked, cancelled or "
                                             "interrupted runs can be retried.")
    loaded = svc.workflows.get(run["workflow"])
    if loaded is None:
        raise PageError(409, "Cannot retry", f"Workflow '{run['workflow']}' is not served any more.")
    try:
        new_id = svc.queue.create(loaded, run.get("inputs") or {}, trigger=run.get("trigger") or {},
                                  trigger_kind="retry", retry_of=run_id)
    except QueueFull as exc:
        raise PageError(503, "Queue full", f"{exc}; try again in a moment.") from None
    svc.queue.enqueue(new_id)
    return redirect(url_for("web.run", run_id=new_id))


@bp.post("/runs/<run_id>/delete")
def delete(run_id: str):
    svc = service()
    run = _run_or_404(run_id)
    if run["status"] in queries.ACTIVE:
        raise PageError(409, "Cannot delete", f"This run is {run['status']}; cancel it first.")
    svc.runtime.store.delete_run(run_id)
    return redirect(url_for("web.runs"))
