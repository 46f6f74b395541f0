"""Issue 17: ``/api/v1/calendar`` (list, add, move, approve, skip, regenerate; JSON errors; bearer auth),
and two real server processes on one database posting each entry once."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest

from pixelmill.server.app import create_app
from pixelmill.server.config import ServerConfig

from .calendarutil import Clock, posts, utc, workflow
from .serverutil import Server, write

TOKEN = "calendar-test-token"


@pytest.fixture
def api(tmp_path, runtime, monkeypatch):
    folder = tmp_path / "workflows"
    folder.mkdir()
    write(folder, "plan.yaml", workflow("plan", calendar="    approval: true\n    lead: 1h\n",
                                        at="    - {at: '2030-01-01T12:00:00Z', id: noon}\n"))
    monkeypatch.delenv("PIXELMILL_API_TOKEN", raising=False)
    app = create_app(ServerConfig.from_env(workflows_dir=folder, api_token=TOKEN), runtime=runtime, start=False)
    svc = app.extensions["pixelmill"]
    svc.workflows.load()
    svc.calendar.now = Clock(utc(2030, 1, 1, 9, 0))
    svc.calendar.sync()
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {TOKEN}"
    client.svc = svc
    yield client
    svc.queue.writer.stop()


def test_calendar_api_lists_adds_moves_approves_skips_and_regenerates(api):
    assert api.get("/api/v1/calendar", environ_base={"HTTP_AUTHORIZATION": ""}).status_code == 401
    body = api.get("/api/v1/calendar").get_json()
    assert [(e["workflow"], e["id"], e["status"]) for e in body["items"]] == [("plan", "noon", "planned")]
    assert body["items"][0]["needs_approval"] is True

    r = api.post("/api/v1/calendar/plan", json={"when": "2030-01-02T09:00", "timezone": "Europe/Paris",
                                                 "inputs": {"subject": "added"}, "id": "added"})
    assert r.status_code == 201, r.get_json()
    assert r.get_json()["slot"] == "2030-01-02T08:00:00+00:00" and r.get_json()["inputs"]["subject"] == "added"

    bad = api.post("/api/v1/calendar/plan", json={"when": "someday"})
    assert bad.status_code == 400 and "when" in bad.get_json()["message"]  # not an ISO date: the schema says so
    impossible = api.post("/api/v1/calendar/plan", json={"when": "2030-02-31T09:00"})  # the schema says so too
    assert impossible.status_code == 400 and "2030-02-31T09:00" in impossible.get_json()["message"]
    nowhere = api.post("/api/v1/calendar/plan", json={"when": "2030-01-02T09:00", "timezone": "Mars/Olympus"})
    assert nowhere.status_code == 400 and "unknown timezone 'Mars/Olympus'" in nowhere.get_json()["message"]
    undeclared = api.post("/api/v1/calendar/plan", json={"when": "2030-01-02T09:00", "inputs": {"colour": "red"}})
    assert undeclared.status_code == 400 and undeclared.get_json()["error"] == "invalid_inputs"
    assert "unknown input 'colour'" in undeclared.get_json()["message"]
    mistyped = api.post("/api/v1/calendar/plan", json={"when": "2030-01-02T09:00", "inputs": {"seed": "3"}})
    assert mistyped.status_code == 400 and "input 'seed' must be a whole number" in mistyped.get_json()["message"]
    no_step = api.post("/api/v1/calendar/plan", json={"when": "2030-01-02T09:00", "target": "nope"})
    assert no_step.status_code == 422 and "target 'nope'" in no_step.get_json()["message"]
    taken = api.post("/api/v1/calendar/plan", json={"when": "2030-01-01T12:00:00Z"})
    assert taken.status_code == 409 and taken.get_json()["error"] == "slot_taken"
    assert api.post("/api/v1/calendar/nope", json={"when": "2030-01-02T09:00"}).status_code == 404
    extra = api.post("/api/v1/calendar/plan", json={"when": "2030-01-02T09:00", "colour": "red"})
    assert extra.status_code == 400 and extra.get_json()["error"] == "invalid_body"
    assert api.post("/api/v1/calendar/plan", data="{", content_type="application/json").status_code == 400

    moved = api.post("/api/v1/calendar/plan/added/move", json={"when": "2030-01-03T09:00:00Z"})
    assert moved.status_code == 200 and moved.get_json()["slot"] == "2030-01-03T09:00:00+00:00"

    regen = api.post("/api/v1/calendar/plan/noon/regenerate", json={"inputs": {"subject": "edited"}})
    assert regen.status_code == 200, regen.get_json()
    entry = regen.get_json()
    assert entry["status"] == "generated" and entry["inputs"]["subject"] == "edited" and entry["draft_run_id"]
    early = api.post("/api/v1/calendar/plan/noon/approve")  # the draft is only queued (no workers here)
    assert early.status_code == 409 and early.get_json()["error"] == "draft_running"
    bad_inputs = api.post("/api/v1/calendar/plan/noon/regenerate", json={"inputs": {"seed": "x"}})
    assert bad_inputs.status_code == 400 and "seed" in bad_inputs.get_json()["message"]

    approved = api.post("/api/v1/calendar/plan/added/approve")
    assert approved.status_code == 200 and approved.get_json()["status"] == "approved"
    skipped = api.post("/api/v1/calendar/plan/added/skip")
    assert skipped.status_code == 200 and skipped.get_json()["status"] == "skipped"
    again = api.post("/api/v1/calendar/plan/added/approve")
    assert again.status_code == 409 and "skipped" in again.get_json()["message"]
    assert api.get("/api/v1/calendar/plan/missing").status_code == 404
    listed = api.get("/api/v1/calendar?workflow=plan&start=2030-01-03T00:00:00Z").get_json()
    assert [e["id"] for e in listed["items"]] == ["added"] and listed["log"][0]["kind"] == "skipped"
    doc = api.get("/api/v1/openapi.json").get_json()
    assert {"/api/v1/calendar", "/api/v1/calendar/plan", "/api/v1/calendar/{workflow}/{entry_id}/approve",
            "/api/v1/calendar/plan/{entry_id}/regenerate"} <= set(doc["paths"])
    add = doc["paths"]["/api/v1/calendar/plan"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert add["properties"]["inputs"]["additionalProperties"] is False
    assert set(add["properties"]["inputs"]["properties"]) == {"subject", "seed"}
    assert None in add["properties"]["target"]["enum"]


def test_the_when_pattern_accepts_exactly_the_dates_that_exist():
    import re
    from datetime import date

    from pixelmill.server.calendar_api import ISO_DATETIME

    pattern = re.compile(ISO_DATETIME)
    years = [*range(1000, 1005), *range(1896, 1905), *range(1996, 2105), *range(2396, 2405), *range(9994, 10000)]
    for y in years:
        for m in range(1, 13):
            for d in range(1, 32):
                try:
                    date(y, m, d)
                except ValueError:
                    exists = False
                else:
                    exists = y <= 9998  # in 9999 a slot moved to UTC could leave the range of a datetime
                assert bool(pattern.fullmatch(f"{y:04d}-{m:02d}-{d:02d}T09:00")) == exists, (y, m, d)
    for text in ["2030-01-02 09:00:00.123", "2030-01-02T09:00:00.123456+01:00", "2030-01-02T23:59Z"]:
        assert pattern.fullmatch(text), text
    for text in ["2030-01-02T24:00", "2030-01-02T09:00:00.5", "0999-01-01T00:00", "2030-01-02", "2030-01-02T09:00\n"]:
        assert not pattern.fullmatch(text), text


def test_two_server_processes_on_one_database_post_each_entry_once(tmp_path):
    folder = tmp_path / "workflows"
    folder.mkdir()
    soon = datetime.now(timezone.utc) + timedelta(seconds=8)
    at = "".join(f"    - {{at: '{(soon + timedelta(seconds=k)).isoformat()}', id: e{k}, inputs: {{seed: {k}}}}}\n"
                 for k in range(3))
    write(folder, "both.yaml", workflow("both", at=at))
    env = {"PIXELMILL_CALENDAR_TICK": "0.1", "PIXELMILL_WORKERS": "2", "PIXELMILL_SWEEP_INTERVAL": "0.5"}
    home = tmp_path / "home"
    a = Server(home, folder, env=env).start()
    b = Server(home, folder, env=env).start()
    try:
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            items = a.get("/api/v1/calendar").json()["items"]
            if items and all(e["status"] == "posted" for e in items):
                break
            time.sleep(0.2)
        assert [e["status"] for e in items] == ["posted"] * 3, items
        assert posts(home) == ["a red circle #0", "a red circle #1", "a red circle #2"]
        runs = a.get("/api/v1/runs?limit=50").json()
        assert len(runs["items"]) == 3
    finally:
        a.stop()
        b.stop()


def test_dashboard_calendar_actions_need_the_csrf_token(api):
    import re

    login = api.get("/login").get_data(as_text=True)
    first = re.search(r'<meta name="csrf-token" content="([^"]+)"', login).group(1)
    assert api.post("/login", data={"token": TOKEN, "csrf_token": first, "next": "/calendar"}).status_code == 302
    page = api.get("/calendar?view=month&date=2030-01-01")
    assert page.status_code == 200 and 'data-entry="plan/noon"' in page.get_data(as_text=True)
    token = re.search(r'<meta name="csrf-token" content="([^"]+)"', page.get_data(as_text=True)).group(1)
    refused = api.post("/calendar/plan/noon/approve", data={})
    assert refused.status_code == 400 and api.get("/api/v1/calendar/plan/noon").get_json()["status"] == "planned"
    done = api.post("/calendar/plan/noon/approve", data={"csrf_token": token, "back": "//evil.example/"})
    assert done.status_code == 302 and done.headers["Location"].endswith("/calendar")
    assert api.get("/api/v1/calendar/plan/noon").get_json()["status"] == "approved"
    assert api.post("/calendar/plan/noon/launch", data={"csrf_token": token}).status_code == 404
