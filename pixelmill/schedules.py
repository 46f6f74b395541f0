"""Schedule triggers: cron (5 fields, or 6 with seconds first) and intervals, in a timezone."""

from __future__ import annotations

import math
import re
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from .problems import shorten

_DOW = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd])")
MAX_INTERVAL = 366 * 86400.0  # longer periods are what cron is for


class ScheduleError(ValueError):
    pass


def timezone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(f"unknown timezone '{name}'") from None


def parse_interval(value) -> float:
    """Seconds from a number or a duration such as '90s', '15m', '1h30m', '1d'."""
    if isinstance(value, bool):
        raise ScheduleError(f"interval must be seconds or a duration like '15m', not {shorten(value)}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = str(value).strip().lower().replace(" ", "")
        matches = list(_DURATION.finditer(text))
        if not matches or "".join(m.group(0) for m in matches) != text:
            raise ScheduleError(f"interval '{shorten(value)}' is not a duration like '90s', '15m', '1h30m' or '1d'")
        seconds = sum(float(m.group(1)) * _UNIT[m.group(2)] for m in matches)
    if not math.isfinite(seconds):
        raise ScheduleError(f"interval must be a finite number of seconds, not {shorten(value)}")
    if seconds > MAX_INTERVAL:
        raise ScheduleError(f"interval {shorten(value)} is longer than a year; use 'cron' for rare schedules")
    if seconds <= 0:
        raise ScheduleError("interval must be greater than zero")
    return seconds


def _crontab_dow(field: str) -> str:
    # crontab counts weekdays from Sunday = 0 (and 7); APScheduler 3 from Monday = 0. Names are unambiguous.
    return re.sub(r"\d+", lambda m: _DOW[int(m.group(0)) % 7], field)


def cron_trigger(expr: str, tz: str) -> CronTrigger:
    fields = expr.split()
    if len(fields) not in (5, 6):
        raise ScheduleError(
            f"cron '{shorten(expr)}' has {len(fields)} fields; use 5 (minute hour day month weekday) or 6 with seconds first"
        )
    second = fields.pop(0) if len(fields) == 6 else "0"
    minute, hour, day, month, dow = fields
    try:
        return CronTrigger(
            second=second, minute=minute, hour=hour, day=day, month=month,
            day_of_week=_crontab_dow(dow), timezone=timezone(tz),
        )
    except ScheduleError:
        raise
    except ValueError as exc:
        raise ScheduleError(f"bad cron '{shorten(expr)}': {shorten(str(exc), 200)}") from None


def build_trigger(schedule):
    """An APScheduler trigger for a ``model.Schedule``; raises ``ScheduleError`` with a readable reason."""
    if (schedule.cron is None) == (schedule.interval is None):
        raise ScheduleError("a schedule needs exactly one of 'cron' or 'interval'")
    if schedule.cron is not None:
        return cron_trigger(schedule.cron, schedule.timezone)
    return IntervalTrigger(seconds=parse_interval(schedule.interval), timezone=timezone(schedule.timezone))
