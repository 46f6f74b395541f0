"""Read-only queries the pages need, against the run store the API uses (its engine and tables).

Kept narrow so that a page of 50 runs reads 50 rows of a few columns, whatever the store holds.
"""

from __future__ import annotations

import mimetypes
import os
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import func, select

from ..db import EventRow, RunRow

RUNS = RunRow.__table__
IMAGE_EXT = {".png", ".jpg", ".jpeg", ".webp", ".gif"}
VIDEO_EXT = {".mp4", ".webm", ".ogv", ".mov"}
STATUSES = ("queued", "running", "succeeded", "failed", "blocked", "cancelled", "interrupted")
ACTIVE = ("queued", "running")


def duration(run: dict) -> float | None:
    if run.get("started_at") and run.get("finished_at"):
        a = datetime.fromisoformat(run["started_at"])
        b = datetime.fromisoformat(run["finished_at"])
        return max(0.0, (b - a).total_seconds())
    return None


def media_kind(name: str) -> str:
    ext = Path(name).suffix.lower()
    if ext in IMAGE_EXT:
        return "image"
    if ext in VIDEO_EXT:
        return "video"
    return "file"


def first_image(value) -> dict | None:
    """The first image artifact reference inside a run's outputs (depth-first, in key order)."""
    if isinstance(value, dict):
        if value.get("kind") == "artifact" and "name" in value:
            media = value.get("media_type") or mimetypes.guess_type(str(value["name"]))[0] or ""
            return value if media.startswith("image/") else None
        for v in value.values():
            found = first_image(v)
            if found:
                return found
    elif isinstance(value, list):
        for v in value:
            found = first_image(v)
            if found:
                return found
    return None


def _iso(value) -> str | None:
    return value.replace(tzinfo=timezone.utc).isoformat() if value else None


def run_rows(store, *, workflow=None, status=None, trigger=None, limit=50, offset=0) -> tuple[list[dict], int]:
    """A page of runs, newest first, with the columns the list shows, and the total that match."""
    cols = (RUNS.c.id, RUNS.c.workflow, RUNS.c.status, RUNS.c.trigger_kind, RUNS.c.created_at,
            RUNS.c.started_at, RUNS.c.finished_at, RUNS.c.outputs, RUNS.c.error, RUNS.c.retry_of)
    where = []
    if workflow:
        where.append(RUNS.c.workflow == workflow)
    if status:
        where.append(RUNS.c.status == status)
    if trigger:
        where.append(RUNS.c.trigger_kind == trigger)
    q = select(*cols).where(*where).order_by(RUNS.c.created_at.desc(), RUNS.c.id).limit(limit).offset(offset)
    count = select(func.count()).select_from(RUNS).where(*where)
    with store.engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(q).mappings()]
        total = conn.execute(count).scalar_one()
    for r in rows:
        for k in ("created_at", "started_at", "finished_at"):
            r[k] = _iso(r[k])
        r["duration_s"] = duration(r)
        r["thumb"] = thumbnail(store, r)
    return rows, total


def thumbnail(store, run: dict) -> tuple[str, str] | None:
    """(run id, file name) of the image to show for a run: the first image in its outputs (a cached step's
    image lives in the run that made it), else the first image file in its own folder."""
    ref = first_image(run.get("outputs"))
    if ref:
        return str(ref.get("run_id") or run["id"]), str(ref["name"])
    images = [f["name"] for f in run_files(store, run["id"]) if f["kind"] == "image"]
    return (run["id"], images[0]) if images else None


def run_files(store, run_id: str) -> list[dict]:
    """The run's files in the artifact store (what the API's artifact list shows)."""
    try:
        listed = store.artifacts.list(run_id)
    except ValueError:  # not a plain run id
        return []
    return [{"name": a.name, "size": a.size, "kind": media_kind(a.name),
             "media_type": mimetypes.guess_type(a.name)[0] or "application/octet-stream"} for a in listed]


def artifact_path(store, run_id: str, name: str) -> Path | None:
    """The file only when ``name`` is one of the run's own artifacts (no path ever built from input)."""
    if len(run_id) > 64 or len(name) > 255:
        return None
    for f in run_files(store, run_id):
        if f["name"] == name:
            return store.artifacts.path(run_id, f["name"])
    return None


def retries(store, run_id: str) -> dict[str, list[dict]]:
    """Per step, the failed attempts that were retried (attempt number, delay, error) in order."""
    q = (select(EventRow.step_id, EventRow.data, EventRow.ts)
         .where(EventRow.run_id == run_id, EventRow.kind == "step.retrying").order_by(EventRow.id))
    out: dict[str, list[dict]] = {}
    with store.engine.connect() as conn:
        for step_id, data, ts in conn.execute(q):
            data = data or {}
            out.setdefault(step_id, []).append({"attempt": (data.get("attempt") or 2) - 1,
                                                "delay_s": data.get("delay_s"),
                                                "error": (data.get("error") or {}).get("message", ""), "ts": ts})
    return out


def last_progress(store, run_id: str) -> dict[str, dict]:
    """Per step, the data of its latest ``step.progress`` event (value, total, message)."""
    q = (select(EventRow.step_id, EventRow.data).where(EventRow.run_id == run_id, EventRow.kind == "step.progress")
         .order_by(EventRow.id))
    out: dict[str, dict] = {}
    with store.engine.connect() as conn:
        for step_id, data in conn.execute(q):
            out[step_id] = data or {}
    return out


def retried_by(store, run_id: str) -> list[str]:
    """Ids of the runs that retried this one, oldest first."""
    q = select(RUNS.c.id).where(RUNS.c.retry_of == run_id).order_by(RUNS.c.created_at)
    with store.engine.connect() as conn:
        return [r[0] for r in conn.execute(q)]


def workflow_names(store) -> list[str]:
    with store.engine.connect() as conn:
        return sorted(r[0] for r in conn.execute(select(RUNS.c.workflow).distinct()))


def status_counts(store) -> dict[str, int]:
    with store.engine.connect() as conn:
        found = dict(conn.execute(select(RUNS.c.status, func.count()).group_by(RUNS.c.status)).all())
    return {s: found.get(s, 0) for s in STATUSES}


def gallery(store, *, workflow=None, limit=24, offset=0) -> tuple[list[dict], bool]:
    """Runs that have image files, newest first, each with its images; and whether more follow."""
    root = Path(store.artifacts_root)
    try:
        with_files = {e.name for e in os.scandir(root) if e.is_dir()}
    except FileNotFoundError:
        return [], False
    q = select(RUNS.c.id, RUNS.c.workflow, RUNS.c.created_at).order_by(RUNS.c.created_at.desc(), RUNS.c.id)
    if workflow:
        q = q.where(RUNS.c.workflow == workflow)
    picked, skipped, more = [], 0, False
    with store.engine.connect() as conn:
        for rid, wf, created in conn.execute(q):
            if rid not in with_files:
                continue
            images = [f for f in run_files(store, rid) if f["kind"] == "image"]
            if not images:
                continue
            if skipped < offset:
                skipped += 1
                continue
            if len(picked) == limit:
                more = True
                break
            picked.append({"id": rid, "workflow": wf, "created_at": _iso(created), "images": images})
        if picked:
            outs = dict(conn.execute(select(RUNS.c.id, RUNS.c.outputs)
                                     .where(RUNS.c.id.in_([p["id"] for p in picked]))).all())
            for p in picked:
                out = outs.get(p["id"]) or {}
                p["caption"] = out.get("caption") if isinstance(out.get("caption"), str) else None
    return picked, more
