"""Issue 17: the dashboard's calendar page in a real browser (headless Chromium) against a real server:
entries of the week with their draft's thumbnail and status; approve one and skip another with the page's
buttons (CSRF-protected forms) and see their status change, on the page and in the API."""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from .browser import check_screenshot, chromium, why_not
from .serverutil import Server, write

REASON = why_not()
SHOTS = os.environ.get("PIXELMILL_SCREENSHOTS")  # keep the screenshot here
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"browser tests skipped: {REASON}")


def test_calendar_view_shows_entries_and_approves_one(tmp_path):
    folder = tmp_path / "workflows"
    folder.mkdir()
    slot = (datetime.now(timezone.utc) + timedelta(hours=1)).replace(second=0, microsecond=0)
    later = slot + timedelta(minutes=30)
    write(folder, "week.yaml", f"""
name: week
inputs:
  color: {{type: string, default: red}}
on:
  calendar: {{approval: true, lead: 2h}}
  at:
    - {{at: '{slot.isoformat()}', id: blue-one, inputs: {{color: blue}}}}
    - {{at: '{later.isoformat()}', id: green-one, inputs: {{color: green}}}}
steps:
  - {{id: draw, node: test_square, with: {{color: "${{{{ inputs.color }}}}"}}}}
  - id: post
    node: post_social
    if: ${{{{ trigger.calendar.phase == 'post' }}}}
    config: {{target: outbox}}
    with: {{text: "a square", images: ["${{{{ steps.draw.outputs.image }}}}"]}}
""")
    srv = Server(tmp_path / "home", folder, env={"PIXELMILL_CALENDAR_TICK": "0.2", "PIXELMILL_WORKERS": "2"}).start()
    try:
        with chromium() as ctx:
            ctx.set_default_timeout(30_000)
            page = ctx.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            page.goto(srv.url + "/")
            page.get_by_role("link", name="Calendar").click()
            page.locator("p.cal-nav").get_by_role("link", name="week", exact=True).click()
            if slot.date().isocalendar()[:2] != datetime.now(timezone.utc).date().isocalendar()[:2]:
                page.goto(srv.url + f"/calendar?view=week&date={slot.date().isoformat()}")
            blue = page.locator('li[data-entry="week/blue-one"]')
            # drafted within the 2 h lead: wait for the drafts, reloading like a person would
            for _ in range(100):
                if blue.get_attribute("data-status") == "generated" and blue.locator("img").count():
                    break
                page.wait_for_timeout(200)
                page.reload()
            assert blue.get_attribute("data-status") == "generated"
            assert page.evaluate("() => [...document.querySelectorAll('li.cal-entry img')]"
                                 ".every(i => i.complete && i.naturalWidth > 0)")
            assert blue.get_by_role("link", name="draft run").count() == 1
            blue.get_by_role("button", name="approve week/blue-one").click()
            page.wait_for_selector('li[data-entry="week/blue-one"][data-status="approved"]')
            assert "week/blue-one: approved" in page.inner_text(".flash")
            assert page.locator('li[data-entry="week/blue-one"] button.approve').count() == 0
            page.get_by_role("button", name="skip week/green-one").click()
            page.wait_for_selector('li[data-entry="week/green-one"][data-status="skipped"]')
            png = page.screenshot(full_page=True)
            check_screenshot(png)
            if SHOTS:
                Path(SHOTS).mkdir(parents=True, exist_ok=True)
                (Path(SHOTS) / "calendar.png").write_bytes(png)
            page.close()
            assert not errors, errors  # no script errors, no CSP violations
        items = {e["id"]: e["status"] for e in srv.get("/api/v1/calendar").json()["items"]}
        assert items == {"blue-one": "approved", "green-one": "skipped"}
    finally:
        srv.kill9()
