"""Missed-slot arithmetic used by the misfire policy on restart (no server needed)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from pixelmill.model import Schedule
from pixelmill.schedules import build_trigger
from pixelmill.server.scheduler import Scheduler, schedule_key

NOW = datetime(2026, 11, 24, 12, 0, 30, tzinfo=timezone.utc)


def missed(schedule: Schedule, after: datetime):
    return Scheduler._missed(Scheduler.__new__(Scheduler), build_trigger(schedule), after, NOW)


def test_cron_with_seconds_counts_slots_and_latest():
    count, latest = missed(Schedule(cron="*/10 * * * * *"), NOW - timedelta(minutes=1))
    assert count == 6 and latest == NOW


def test_weekday_cron_in_a_timezone():
    count, latest = missed(Schedule(cron="0 9 * * 1-5", timezone="Europe/Paris"), NOW - timedelta(days=7))
    assert count == 5
    assert latest.astimezone(timezone.utc) == datetime(2026, 11, 24, 8, 0, tzinfo=timezone.utc)


def test_nothing_missed_before_the_next_slot():
    assert missed(Schedule(cron="0 9 * * *"), NOW - timedelta(hours=1)) == (0, None)


def test_very_frequent_cron_over_a_long_outage_still_finds_the_latest_slot():
    count, latest = missed(Schedule(cron="* * * * * *"), NOW - timedelta(days=3))
    assert count >= 10_000 and latest == NOW


def test_schedule_key_changes_with_the_definition():
    a = schedule_key("wf", 0, Schedule(interval="1m"))
    assert a == schedule_key("wf", 0, Schedule(interval="1m"))
    assert a != schedule_key("wf", 0, Schedule(interval="2m"))
    assert a != schedule_key("wf", 0, Schedule(interval="1m", misfire="skip"))
