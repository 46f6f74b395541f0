"""The dashboard in a real browser (headless Chromium) against a real server on a free loopback port:
start the main job from its form and watch its live progress reach the end, see its thumbnail and
caption; retry a failed run; edit a workflow with a typo, see the problem at its line, save a fix and
see it reload; screenshots of the main pages (size, not blank) at desktop and phone width."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from .browser import check_screenshot, chromium, why_not
from .serverutil import Server, write

ROOT = Path(__file__).resolve().parents[1]
REASON = why_not()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"browser tests skipped: {REASON}")
SHOTS = os.environ.get("PIXELMILL_SCREENSHOTS")  # keep the screenshots here (docs/dashboard.png is one)

EDIT_ME = """\
name: edit-me
description: A workflow to edit in the browser.
steps:
  - id: words
    node: prompt
    with:
      template: "a {{ color }} circle"
      choices: {color: [red, blue]}
      seed: 3
outputs:
  text: ${{ steps.words.outputs.text }}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("dash")
    wf = root / "workflows"
    wf.mkdir()
    shutil.copy(ROOT / "workflows" / "daily-shapes.yaml", wf / "daily-shapes.yaml")
    write(wf, "edit-me.yaml", EDIT_ME)
    write(wf, "flaky.yaml", f"""
name: flaky
description: Fails until a file exists.
steps:
  - {{id: first, node: test_count, with: {{log: "{root}/count.log", text: hi}}}}
  - {{id: breaks, node: test_flaky, with: {{ok_file: "{root}/ok", text: "${{{{ steps.first.outputs.text }}}}"}}}}
outputs: {{text: "${{{{ steps.breaks.outputs.text }}}}"}}
""")
    srv = Server(root / "home", wf, env={"PIXELMILL_SCHEDULER": "0", "PIXELMILL_WORKERS": "2"}).start()
    srv.root = root
    yield srv
    srv.kill9()  # a graceful stop takes seconds of interpreter teardown and is tested elsewhere


@pytest.fixture(scope="module")
def browser():
    with chromium() as ctx:
        ctx.set_default_timeout(30_000)
        yield ctx


@pytest.fixture
def page(browser):
    p = browser.new_page()
    errors: list[str] = []
    p.on("pageerror", lambda exc: errors.append(str(exc)))
    p.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    yield p
    p.close()
    assert not [e for e in errors if "EventSource" not in e], errors  # no script errors, no CSP violations


def shot(page, name: str) -> None:
    png = page.screenshot(full_page=True)
    check_screenshot(png)
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        (Path(SHOTS) / f"{name}.png").write_bytes(png)


def run_id_of(page) -> str:
    return re.search(r"/runs/([0-9a-f]{32})$", page.url).group(1)


def test_main_job_from_its_form_with_live_progress_thumbnail_and_caption(server, page):
    page.goto(server.url + "/")
    page.get_by_role("link", name="Workflows").click()
    page.get_by_role("link", name="daily-shapes", exact=True).first.click()
    page.fill("#in-seed", "5")
    page.get_by_role("button", name="Start run").click()
    page.wait_for_url(re.compile(r"/runs/[0-9a-f]{32}$"))
    run_id = run_id_of(page)
    # live progress from the event stream: the denoising bar moves, then reaches its end
    page.wait_for_selector('tr[data-step="gen"] progress[data-live]', timeout=120_000)
    page.wait_for_function(
        """() => { const p = document.querySelector('tr[data-step="gen"] progress');
                   return p && p.max > 1 && p.value === p.max; }""", timeout=120_000)
    page.wait_for_selector('#run[data-status="succeeded"]', timeout=120_000)  # reloaded with the results
    caption = page.inner_text('tr[data-output="caption"] td').strip()
    assert len(caption) > 3
    assert page.inner_text('tr[data-step="gen"] .ptext').strip().endswith("/ 20")
    assert page.locator("#steps tbody tr").count() == 6
    page.wait_for_selector("details.labels[open] .verdict.ok")  # AI labels read back like `pixelmill inspect`
    assert "found" in page.inner_text("details.labels[open]")  # the invisible watermark
    assert page.evaluate("() => [...document.querySelectorAll('#files img')].every(i => i.naturalWidth > 0)")
    shot(page, "run")
    # the runs list shows the run with its thumbnail
    page.get_by_role("link", name="Runs").first.click()
    row = page.locator(f'tr[data-run="{run_id}"]')
    assert "succeeded" in row.inner_text() and "dashboard" in row.inner_text()
    thumb = row.locator("img")
    thumb.wait_for()
    page.wait_for_function("(img) => img.complete && img.naturalWidth > 0", arg=thumb.element_handle())
    assert thumb.evaluate("img => img.naturalWidth") <= 128
    shot(page, "runs")
    page.goto(server.url + "/gallery")
    assert caption in page.inner_text("#gallery")
    shot(page, "gallery")


def test_retry_a_failed_run(server, page):
    page.goto(server.url + "/workflows/flaky")
    page.get_by_role("button", name="Start run").click()
    page.wait_for_selector('#run[data-status="failed"]', timeout=60_000)
    failed_id = run_id_of(page)
    error = page.inner_text("#run-error")
    assert "breaks" in error and "does not exist yet" in error
    assert "failed-step" in page.get_attribute('tr[data-step="breaks"]', "class")
    (server.root / "ok").write_text("ok")
    page.get_by_role("button", name="Retry from the failed step").click()
    page.wait_for_selector('#run[data-status="succeeded"]', timeout=60_000)
    assert run_id_of(page) != failed_id
    assert failed_id[:8] in page.inner_text(".meta")  # "Retry of"
    assert page.inner_text('tr[data-output="text"] td').strip() == "HI!"


def test_edit_a_typo_see_it_at_its_line_save_the_fix_and_reload(server, page):
    page.goto(server.url + "/editor?file=edit-me.yaml")
    page.wait_for_selector("#check.ok")
    bad = EDIT_ME.replace("node: prompt", "node: promt")
    line = next(i for i, ln in enumerate(bad.splitlines(), 1) if "promt" in ln)
    page.fill("#code", bad)
    item = page.locator(f'#problems li[data-line="{line}"]')
    item.wait_for()
    assert "promt" in item.inner_text() and "prompt" in item.inner_text()  # with its did-you-mean
    assert page.locator(f'#gutter span.bad[data-line="{line}"]').count() == 1
    item.locator("button").click()
    at = page.evaluate("() => { const c = document.getElementById('code');"
                       " return c.value.slice(0, c.selectionStart).split('\\n').length; }")
    assert at == line and page.evaluate("() => document.activeElement.id") == "code"
    shot(page, "editor")
    fixed = EDIT_ME.replace("A workflow to edit in the browser.", "Edited in the browser.")
    page.fill("#code", fixed)
    page.wait_for_selector("#check.ok")
    page.keyboard.press("Control+s")
    page.wait_for_selector(".flash-ok")
    assert "Saved edit-me.yaml and reloaded" in page.inner_text(".flash-ok")
    assert "changed edit-me" in page.inner_text(".flash-ok")
    page.goto(server.url + "/workflows")
    assert "Edited in the browser." in page.inner_text('article[data-workflow="edit-me"]')
    kept = list((server.workflows / ".versions").iterdir())
    assert len(kept) == 1 and kept[0].read_text() == EDIT_ME


PAGES = ["/", "/workflows", "/workflows/daily-shapes", "/editor?file=daily-shapes.yaml", "/gallery", "/nodes",
         "/health"]


def test_runs_list_updates_itself(server, page):
    page.goto(server.url + "/")
    page.evaluate("() => { window.notReloaded = true; }")
    r = server.post("/api/v1/workflows/edit-me/runs", json={})
    assert r.status_code == 202, r.text
    run_id = r.json()["run_id"]
    page.wait_for_selector(f'tr[data-run="{run_id}"][data-status="succeeded"]', timeout=20_000)
    assert page.evaluate("() => window.notReloaded === true")  # updated in place, not by a page reload


def test_screenshots_of_the_main_pages_and_phone_width(server, browser, page):
    page.goto(server.url + "/")
    run_page = page.get_attribute("a.runlink", "href")
    for path in PAGES + [run_page]:
        page.goto(server.url + path)
        shot(page, "page" + re.sub(r"[^a-z]+", "-", path).rstrip("-"))
    page.set_viewport_size({"width": 390, "height": 844})
    for path in PAGES + [run_page]:
        page.goto(server.url + path)
        overflow = page.evaluate("() => document.documentElement.scrollWidth")
        assert overflow <= 392, f"{path} scrolls sideways at phone width ({overflow}px)"
    page.goto(server.url + "/")
    shot(page, "phone-runs")


def test_keyboard_skip_link_and_copy_button(server, page):
    page.goto(server.url + "/workflows")
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.className") == "skip"
    page.keyboard.press("Enter")
    assert page.evaluate("() => document.activeElement.id") == "main"
    copy = page.locator('article[data-workflow="daily-shapes"] button[data-copy]').first
    copy.focus()
    page.keyboard.press("Enter")
    page.wait_for_function("(b) => b.textContent !== 'Copy URL'", arg=copy.element_handle())
    assert copy.inner_text() in ("Copied", "Copy failed")


def test_sign_in_with_the_token_use_a_form_and_sign_out(server, browser, tmp_path):
    wf = tmp_path / "workflows"
    write(wf, "edit-me.yaml", EDIT_ME)
    guarded = Server(tmp_path / "home", wf, env={"PIXELMILL_SCHEDULER": "0"}, token="browser-token-4242").start()
    browser.clear_cookies()  # cookies are per host, not per port: start clean, leave clean
    page = browser.new_page()
    try:
        page.goto(guarded.url + "/workflows/edit-me")
        assert "/login?next=/workflows/edit-me" in page.url
        page.fill("#token", "not-the-token")
        page.keyboard.press("Enter")
        page.wait_for_selector("p.problem")
        assert "not the server" in page.inner_text("p.problem")
        page.fill("#token", "browser-token-4242")
        page.keyboard.press("Enter")
        page.wait_for_url(guarded.url + "/workflows/edit-me")
        page.get_by_role("button", name="Start run").click()  # a CSRF-protected form inside the session
        page.wait_for_selector('#run[data-status="succeeded"]', timeout=30_000)
        page.get_by_role("button", name="Sign out").click()
        page.wait_for_url(re.compile(r"/login"))
        page.goto(guarded.url + "/")
        assert "/login" in page.url
    finally:
        page.close()
        browser.clear_cookies()
        guarded.kill9()
