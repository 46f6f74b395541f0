"""The workflow's ``on:``: schedules that can be built (cron, interval, timezone), webhook auth that names
its secrets, and the calendar's dated entries (read by ``pixelmill/calendar/entries.py``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from ..calendar.entries import Calendar, read_calendar
from ..model import Schedule, Webhook
from ..schedules import ScheduleError, build_trigger
from .check import Check


def check_calendar(check: Check, data: dict, workflow_dir: Path, step_index: dict, steps) -> Calendar:
    """Dated entries (pixelmill/calendar/entries.py). With approval, some step must read
    ``trigger.calendar.phase`` in its ``if:`` (the posting step runs only in the 'post' phase)."""
    calendar, errors, warnings = read_calendar(check.located, data.get("on"), workflow_dir, data.get("inputs"),
                                               set(step_index))
    check.problems.extend(errors)
    check.warnings.extend(warnings)
    if calendar.settings.approval and not any(isinstance(s.if_, str) and "trigger.calendar.phase" in s.if_
                                              for _, s in steps):
        check.add(("on", "calendar", "approval"), "calendar approval needs the posting step(s) to wait for the "
                  "'post' phase", "add  if: ${{ trigger.calendar.phase == 'post' }}  to each posting step")
    return calendar


def check_triggers(check: Check, on) -> None:
    if not isinstance(on, dict):
        return
    schedules = on.get("schedule")
    items = [schedules] if isinstance(schedules, dict) else schedules if isinstance(schedules, list) else []
    for k, raw in enumerate(items):
        path = ("on", "schedule") if isinstance(schedules, dict) else ("on", "schedule", k)
        try:
            schedule = Schedule.model_validate(raw)
        except ValidationError:
            continue
        try:
            build_trigger(schedule)
        except ScheduleError as exc:
            text = str(exc)
            field_name = "timezone" if "timezone" in text else "cron" if schedule.cron is not None else "interval"
            target = path + (field_name,) if (path + (field_name,)) in check.located.values else path
            check.add(target, text, "cron is 'minute hour day month weekday', e.g. '0 9 * * 1-5'; "
                                    "timezones are IANA names like 'Europe/Paris'")
    hook = on.get("webhook")
    if isinstance(hook, dict):
        try:
            webhook = Webhook.model_validate(hook)
        except ValidationError:
            return
        auth = webhook.auth
        path = ("on", "webhook", "auth")
        for key in ("secret", "username_secret", "password_secret"):
            check.secret(path + (key,), getattr(auth, key))
        if auth.type in ("header", "hmac") and not auth.secret:
            check.add(path, f"webhook auth '{auth.type}' needs 'secret' (the environment variable holding the key)")
        if auth.type == "basic" and not (auth.username_secret and auth.password_secret):
            check.add(path, "webhook auth 'basic' needs 'username_secret' and 'password_secret'")
