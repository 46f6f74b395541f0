"""The calendar page: a month or week grid of the served workflows' dated entries with each entry's
thumbnail, status and run, and approve / skip buttons (forms carrying the session's CSRF token)."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from flask import flash, redirect, render_template, request, url_for

from . import queries
from .blueprint import PageError, bp, service

VIEWS = ("month", "week")


def _day(text: str | None) -> date:
    try:
        return date.fromisoformat(text) if text else datetime.now(timezone.utc).date()
    except ValueError:
        return datetime.now(timezone.utc).date()


def _span(view: str, day: date) -> tuple[date, date]:
    """First and last-plus-one day shown: whole weeks, Monday first."""
    if view == "week":
        start = day - timedelta(days=day.weekday())
        return start, start + timedelta(days=7)
    first = day.replace(day=1)
    nxt = (first + timedelta(days=32)).replace(day=1)
    start = first - timedelta(days=first.weekday())
    end = nxt + timedelta(days=(7 - nxt.weekday()) % 7)
    return start, end


def _with_run(store, entry: dict) -> dict:
    run_id = entry["post_run_id"] or entry["draft_run_id"]
    run = store.get_run(run_id) if run_id else None
    entry["run"] = run
    entry["thumb"] = queries.thumbnail(store, run) if run else None
    entry["time"] = entry["slot"][11:16]
    entry["key"] = f"{entry['workflow']}/{entry['id']}"
    return entry


@bp.get("/calendar")
def calendar():
    svc = service()
    view = request.args.get("view") if request.args.get("view") in VIEWS else "month"
    day = _day(request.args.get("date"))
    start, end = _span(view, day)
    to_dt = lambda d: datetime(d.year, d.month, d.day, tzinfo=timezone.utc)  # noqa: E731
    entries = [_with_run(svc.runtime.store, e) for e in svc.calendar.list(None, to_dt(start), to_dt(end))]
    by_day: dict[str, list] = {}
    for e in entries:
        by_day.setdefault(e["slot"][:10], []).append(e)
    days = [start + timedelta(days=n) for n in range((end - start).days)]
    step = timedelta(days=7) if view == "week" else None
    if step is None:
        prev = (day.replace(day=1) - timedelta(days=1)).replace(day=1)
        nxt = (day.replace(day=1) + timedelta(days=32)).replace(day=1)
    else:
        prev, nxt = day - step, day + step
    return render_template("calendar.html", title="Calendar", view=view, day=day, days=days, by_day=by_day,
                           weeks=[days[i:i + 7] for i in range(0, len(days), 7)], prev=prev, next=nxt,
                           today=datetime.now(timezone.utc).date(), log=svc.calendar.log(20), count=len(entries))


@bp.post("/calendar/<workflow>/<entry_id>/<action>")
def calendar_action(workflow: str, entry_id: str, action: str):
    from ..calendar.service import CalendarError  # the calendar package stands alone; imported where used

    cal = service().calendar
    fn = {"approve": cal.approve, "skip": cal.skip, "regenerate": cal.regenerate}.get(action)
    if fn is None:
        raise PageError(404, "No such action", f"'{action}' is not a calendar action (approve, skip, regenerate).")
    try:
        entry = fn(workflow, entry_id)
        flash(f"{workflow}/{entry_id}: {entry['status']}", "ok")
    except CalendarError as exc:
        flash(f"{workflow}/{entry_id}: {exc.message}", "error")
    back = request.form.get("back") or ""
    if not back.startswith("/calendar") or "//" in back or "\\" in back:
        back = url_for("web.calendar")
    return redirect(back)
