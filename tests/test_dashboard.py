"""The dashboard's pages through Flask's test client: every page, filters and paging, the run page's
timeline, retries, error and files, actions with CSRF, the editor's validate/save/versions, and access
with an API token. (The browser tests in test_dashboard_browser.py drive the same pages in Chromium.)"""

from __future__ import annotations

import ast
import io
import re
import textwrap
from pathlib import Path

import pytest
from PIL import Image

from pixelmill.node import ArtifactRef, Model, Node
from pixelmill.server.app import create_app
from pixelmill.server.config import ServerConfig

ROOT = Path(__file__).resolve().parents[1]


class PictureInputs(Model):
    color: str = "red"


class PictureOutputs(Model):
    image: ArtifactRef
    caption: str


class Picture(Node):
    """Draw a flat colour square as PNG (test node)."""

    type = "t_picture"
    Inputs = PictureInputs
    Outputs = PictureOutputs

    def run(self, inputs, ctx):
        for i in range(4):
            ctx.progress(i + 1, 4, "drawing")
        ref, path = ctx.new_artifact("image.png", "image/png")
        Image.new("RGB", (300, 200), inputs.color).save(path)
        return PictureOutputs(image=ref, caption=f"a {inputs.color} square")


WORKFLOWS = {
    "pics.yaml": """
        name: pics
        description: Draw a square.
        inputs:
          color: {type: string, default: red, enum: [red, green, blue]}
          size: {type: integer, default: 3}
          loud: {type: boolean, default: false}
        on:
          schedule: [{cron: "0 9 * * *", timezone: UTC}]
          webhook: {path: pics}
        steps:
          - {id: draw, node: t_picture, with: {color: "${{ inputs.color }}"}}
          - {id: echo, node: t_echo, with: {value: "${{ steps.draw.outputs.caption }}"}}
        outputs:
          image: ${{ steps.draw.outputs.image }}
          caption: ${{ steps.draw.outputs.caption }}
        """,
    "flaky.yaml": """
        name: flaky
        steps:
          - {id: first, node: t_echo, with: {value: hi}}
          - id: shaky
            node: t_flaky
            config: {fail_times: 1}
            retry: {max_attempts: 2, delay: 0}
          - id: broken
            node: t_flaky
            config: {fail_times: 5}
            needs: [shaky]
        """,
    "broken.yaml": """
        name: broken
        steps:
          - {id: a, node: no_such_node}
        """,
}


def _write(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in WORKFLOWS.items():
        (folder / name).write_text(textwrap.dedent(text).lstrip())


@pytest.fixture
def app_env(tmp_path, runtime, monkeypatch):
    runtime.registry.register(Picture)
    folder = tmp_path / "workflows"
    _write(folder)

    def make(token=None):
        monkeypatch.delenv("PIXELMILL_API_TOKEN", raising=False)
        config = ServerConfig.from_env(workflows_dir=folder, api_token=token)
        app = create_app(config, runtime=runtime, start=False)
        app.config["TESTING"] = True
        svc = app.extensions["pixelmill"]
        svc.workflows.load()
        return app, svc

    yield make, folder


@pytest.fixture
def dash(app_env):
    make, folder = app_env
    app, svc = make()
    client = app.test_client()
    client.folder = folder
    client.svc = svc
    yield client
    svc.queue.writer.stop()


def csrf(client, path="/") -> str:
    html = client.get(path).get_data(as_text=True)
    return re.search(r'<meta name="csrf-token" content="([^"]+)"', html).group(1)


def run(client, name, **inputs):
    svc = client.svc
    return svc.runtime.run(svc.workflows.get(name), inputs)


def text(resp) -> str:
    return resp.get_data(as_text=True)


# -- every page ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/workflows", "/workflows/pics", "/editor", "/editor?file=pics.yaml",
                                  "/editor/new?example=pics.yaml", "/gallery", "/nodes", "/health"])
def test_every_page_renders_html_with_security_headers(dash, path):
    r = dash.get(path)
    assert r.status_code == 200, text(r)[:500]
    assert r.mimetype == "text/html"
    assert "<nav" in text(r) and "pixelmill" in text(r)
    csp = r.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert "<script>" not in text(r) and " style=" not in text(r)  # nothing inline: the CSP would block it


def test_root_is_the_dashboard_and_the_api_is_unchanged(dash):
    assert dash.get("/").mimetype == "text/html"
    api = dash.get("/api/v1/workflows")
    assert api.mimetype == "application/json" and {w["name"] for w in api.get_json()["items"]} == {"pics", "flaky"}
    assert dash.get("/nothing-here").mimetype == "application/json"  # unknown paths keep the API's JSON 404


def test_missing_run_and_workflow_are_html_404(dash):
    for path in ("/runs/" + "0" * 32, "/workflows/nope", "/runs/x/files/a.png"):
        r = dash.get(path)
        assert r.status_code == 404 and r.mimetype == "text/html" and "Traceback" not in text(r)


def test_a_failing_page_answers_html_500_without_a_traceback(dash, monkeypatch, caplog):
    from pixelmill.web import queries

    def boom(*a, **k):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(queries, "run_rows", boom)
    r = dash.get("/")
    assert r.status_code == 500 and r.mimetype == "text/html"
    assert "RuntimeError" in text(r) and "secret internal detail" not in text(r) and "Traceback" not in text(r)
    assert "secret internal detail" in caplog.text  # logged for the operator


# -- runs list ---------------------------------------------------------------------------------------


def test_runs_list_shows_status_workflow_trigger_thumbnail_and_filters(dash):
    ok = run(dash, "pics", color="blue")
    bad = run(dash, "flaky")
    html = text(dash.get("/"))
    assert ok.run_id[:8] in html and bad.run_id[:8] in html
    assert "s-succeeded" in html and "s-failed" in html and "manual" in html
    assert f"/runs/{ok.run_id}/files/draw-image.png?thumb=1" in html
    assert "at broken" in html  # the failing step's id in the list
    only_failed = text(dash.get("/?status=failed"))
    assert bad.run_id[:8] in only_failed and ok.run_id[:8] not in only_failed
    only_pics = text(dash.get("/?workflow=pics"))
    assert ok.run_id[:8] in only_pics and bad.run_id[:8] not in only_pics
    assert "1 run" in text(dash.get("/?trigger=manual&workflow=flaky"))
    assert "0 runs" in text(dash.get("/?trigger=webhook"))
    fragment = dash.get("/?fragment=rows")
    assert "<table" in text(fragment) and "<nav aria-label=\"Main\"" not in text(fragment)


def test_runs_list_pages(dash):
    store = dash.svc.runtime.store
    ids = [store.create_run("pics", inputs={}, trigger_kind="api") for _ in range(55)]
    first, second = text(dash.get("/")), text(dash.get("/?page=2"))
    assert "page 1 of 2" in first and "older" in first and "page 2 of 2" in second
    assert sum(i[:8] in first for i in ids) == 50 and sum(i[:8] in second for i in ids) == 5
    assert dash.get("/?page=abc").status_code == 200 and dash.get("/?status=bogus").status_code == 200


def test_thumbnail_is_small_png_and_files_cannot_escape_the_run_folder(dash):
    ok = run(dash, "pics")
    full = dash.get(f"/runs/{ok.run_id}/files/draw-image.png")
    assert full.status_code == 200 and full.mimetype == "image/png"
    thumb = dash.get(f"/runs/{ok.run_id}/files/draw-image.png?thumb=1")
    assert thumb.mimetype == "image/png" and max(Image.open(io.BytesIO(thumb.data)).size) == 128
    for bad in ("..%2F..%2Fpixelmill.db", "%2E%2E", "draw-image.png%00", "nope.png"):
        assert dash.get(f"/runs/{ok.run_id}/files/{bad}").status_code == 404


def test_thumbnail_of_a_cached_image_points_at_the_run_that_made_it(dash):
    from pixelmill.web.queries import thumbnail

    ref = {"kind": "artifact", "run_id": "a" * 32, "name": "gen-image.png", "media_type": "image/png"}
    store = dash.svc.runtime.store
    assert thumbnail(store, {"id": "b" * 32, "outputs": {"caption": "x", "image": ref}}) == ("a" * 32, "gen-image.png")
    assert thumbnail(store, {"id": "b" * 32, "outputs": {"file": {**ref, "media_type": "text/plain"}}}) is None


# -- run page ----------------------------------------------------------------------------------------


def test_run_page_timeline_retries_error_and_outputs(dash):
    res = run(dash, "flaky")
    html = text(dash.get(f"/runs/{res.run_id}"))
    assert 'data-step="first"' in html and 'data-step="shaky"' in html and 'data-step="broken"' in html
    assert "1 retry" in html and "flaky failure 1" in html  # shaky failed once, then passed
    assert re.search(r'<section class="error-box"[^>]*>\s*<h2>Error in step <code>broken</code>', html)
    assert "step &#39;broken&#39; (t_flaky) failed: flaky failure 1" in html
    assert 'class="b-succeeded"' in html and 'class="b-failed"' in html  # timeline bars per status
    assert "Retry from the failed step" in html and "Delete" in html and "Cancel run" not in html
    assert "data-events=" not in html  # a finished run opens no event stream


def test_run_page_outputs_files_progress_and_labels(dash):
    res = run(dash, "pics", color="green")
    html = text(dash.get(f"/runs/{res.run_id}"))
    assert "a green square" in html  # the caption output
    assert 'data-output="image"' in html and "draw-image.png" in html
    assert "drawing 4 / 4" in html  # the last progress event of the step
    assert 'data-labels="/runs/' in html
    labels = dash.get(f"/runs/{res.run_id}/labels/draw-image.png")
    assert labels.status_code == 200 and "Not labelled as AI-generated" in text(labels)


def test_run_events_stream_replays_a_finished_run(dash):
    res = run(dash, "pics")
    body = text(dash.get(f"/runs/{res.run_id}/events"))
    kinds = re.findall(r"^event: (\S+)$", body, re.M)
    assert kinds[0] == "run.queued" and "step.progress" in kinds and kinds[-1] == "run.finished"


# -- actions -------------------------------------------------------------------------------------------


def test_actions_need_the_csrf_token(dash):
    res = run(dash, "flaky")
    for action in ("retry", "delete"):
        r = dash.post(f"/runs/{res.run_id}/{action}")
        assert r.status_code == 400 and "security token" in text(r)
        r = dash.post(f"/runs/{res.run_id}/{action}", data={"csrf_token": "forged"})
        assert r.status_code == 400
    assert dash.svc.runtime.store.get_run(res.run_id) is not None
    token = csrf(dash)
    r = dash.post(f"/runs/{res.run_id}/retry", data={"csrf_token": token},
                  headers={"Origin": "http://evil.example"})
    assert r.status_code == 400  # a cross-site origin is refused even with a token


def test_retry_cancel_and_delete(dash):
    store = dash.svc.runtime.store
    res = run(dash, "flaky")
    token = csrf(dash)
    r = dash.post(f"/runs/{res.run_id}/retry", data={"csrf_token": token})
    assert r.status_code == 302
    new_id = r.headers["Location"].rsplit("/", 1)[-1]
    new = store.get_run(new_id)
    assert new["retry_of"] == res.run_id and new["trigger_kind"] == "retry" and new["status"] == "queued"
    assert f"/runs/{new_id}" in text(dash.get(f"/runs/{res.run_id}"))  # "retried as"
    page = text(dash.get(f"/runs/{new_id}"))
    assert "Cancel run" in page and "data-events=" in page
    assert dash.post(f"/runs/{new_id}/delete", data={"csrf_token": token}).status_code == 409
    assert dash.post(f"/runs/{new_id}/cancel", data={"csrf_token": token}).status_code == 302
    assert store.get_run(new_id)["status"] == "cancelled"
    ok = run(dash, "pics")
    assert dash.post(f"/runs/{ok.run_id}/retry", data={"csrf_token": token}).status_code == 409
    assert dash.post(f"/runs/{ok.run_id}/delete", data={"csrf_token": token}).status_code == 302
    assert store.get_run(ok.run_id) is None
    assert not (store.artifacts_root / ok.run_id).exists()


# -- workflows -----------------------------------------------------------------------------------------


def test_workflows_list_webhook_curl_schedule_and_load_problems(dash):
    html = text(dash.get("/workflows"))
    assert "Draw a square." in html
    assert "http://localhost/webhook/pics" in html and 'data-copy="http://localhost/webhook/pics"' in html
    assert "curl -sS -X POST http://localhost/webhook/pics" in html
    assert "&#34;color&#34;: &#34;red&#34;" in html  # the example body from the declared defaults
    assert len(re.findall(r'<time datetime="[^"]+T09:00:00\+00:00">', html)) == 3  # next three 09:00 slots
    assert "Files that failed to load" in html and "broken.yaml:3:" in html and "no_such_node" in html
    assert "/editor?file=broken.yaml#L3" in html


def test_workflow_page_graph_and_run_form(dash):
    html = text(dash.get("/workflows/pics"))
    assert html.count('class="box') == 2 and html.count('class="edge"') == 1  # draw -> echo
    assert '<select id="in-color" name="color">' in html and "<option>blue</option>" in html
    assert 'id="in-size" name="size" type="number" step="1" value="3"' in html
    assert '<select id="in-loud" name="loud">' in html
    token = csrf(dash, "/workflows/pics")
    r = dash.post("/workflows/pics/run", data={"csrf_token": token, "color": "blue", "size": "", "loud": ""})
    assert r.status_code == 302
    run_id = r.headers["Location"].rsplit("/", 1)[-1]
    stored = dash.svc.runtime.store.get_run(run_id)
    assert stored["inputs"] == {"color": "blue", "size": 3, "loud": False} and stored["trigger_kind"] == "dashboard"
    r = dash.post("/workflows/pics/run", data={"csrf_token": token, "color": "pink", "size": "x"})
    assert r.status_code == 400
    assert "input &#39;size&#39; must be an integer" in text(r) and "must be one of" in text(r)


# -- editor ----------------------------------------------------------------------------------------------


def test_validate_reports_problems_at_their_line(dash):
    token = csrf(dash, "/editor?file=pics.yaml")
    source = (dash.folder / "pics.yaml").read_text().replace("node: t_echo", "node: t_ecko")
    r = dash.post("/editor/validate", json={"yaml": source, "file": "pics.yaml"}, headers={"X-CSRF-Token": token})
    body = r.get_json()
    line = next(i for i, ln in enumerate(source.splitlines(), 1) if "t_ecko" in ln)
    assert body["valid"] is False and body["problems"][0]["line"] == line and "t_echo" in body["problems"][0]["hint"]
    assert dash.post("/editor/validate", json={"yaml": source}).status_code == 400  # no CSRF token
    clash = source.replace("t_ecko", "t_echo").replace("name: pics", "name: flaky")
    names = [p["message"] for p in dash.post("/editor/validate", json={"yaml": clash, "file": "new.yaml"},
                                             headers={"X-CSRF-Token": token}).get_json()["problems"]]
    assert any("already used by flaky.yaml" in m for m in names)


def test_save_keeps_the_previous_version_and_reloads(dash):
    path = dash.folder / "pics.yaml"
    before = path.read_text()
    page = text(dash.get("/editor?file=pics.yaml"))
    token = csrf(dash, "/editor?file=pics.yaml")
    base = re.search(r'name="base" value="([^"]+)"', page).group(1)
    broken = before.replace("node: t_echo", "node: t_ecko")
    r = dash.post("/editor/save", data={"csrf_token": token, "file": "pics.yaml", "text": broken, "base": base})
    assert r.status_code == 400 and "t_ecko" in text(r) and path.read_text() == before  # refused, nothing written
    fixed = before.replace("Draw a square.", "Draw a square, edited.")
    r = dash.post("/editor/save", data={"csrf_token": token, "file": "pics.yaml", "text": fixed, "base": base},
                  follow_redirects=True)
    assert r.status_code == 200 and "Saved pics.yaml and reloaded" in text(r) and "changed pics" in text(r)
    assert path.read_text() == fixed
    kept = list((dash.folder / ".versions").iterdir())
    assert len(kept) == 1 and kept[0].read_text() == before and kept[0].name.startswith("pics.yaml.")
    assert dash.svc.workflows.get("pics").workflow.description == "Draw a square, edited."
    assert kept[0].name in text(dash.get("/editor?file=pics.yaml"))  # listed under previous versions
    # saving against a base that changed on disk is refused
    r = dash.post("/editor/save", data={"csrf_token": token, "file": "pics.yaml", "text": before, "base": base})
    assert r.status_code == 409 and path.read_text() == fixed


def test_new_workflow_from_an_example(dash):
    page = text(dash.get("/editor/new?example=pics.yaml"))
    assert "name: pics-copy" in page and "path: pics-copy" in page and 'value="pics-copy.yaml"' in page
    token = csrf(dash, "/editor")
    source = (dash.folder / "pics.yaml").read_text().replace("name: pics", "name: pics-copy") \
        .replace("path: pics", "path: pics-copy")
    r = dash.post("/editor/save", data={"csrf_token": token, "file": "pics-copy.yaml", "text": source, "new": "1"})
    assert r.status_code == 302 and dash.svc.workflows.get("pics-copy") is not None
    for bad in ("../evil.yaml", ".hidden.yaml", "x.py", "a/b.yaml"):
        r = dash.post("/editor/save", data={"csrf_token": token, "file": bad, "text": source, "new": "1"})
        assert r.status_code == 400
    assert not (dash.folder.parent / "evil.yaml").exists()


# -- gallery, nodes, health ----------------------------------------------------------------------------


def test_gallery_lists_images_by_workflow(dash):
    a = run(dash, "pics", color="red")
    b = run(dash, "pics", color="blue")
    run(dash, "flaky")
    html = text(dash.get("/gallery"))
    assert html.count("<li class=\"card\">") == 2 and "a blue square" in html
    assert f'href="/runs/{a.run_id}"' in html and f'href="/runs/{b.run_id}"' in html
    assert "No images yet from flaky" in text(dash.get("/gallery?workflow=flaky"))


def test_nodes_catalogue_lists_every_node_with_its_fields(dash):
    html = text(dash.get("/nodes"))
    for info in dash.svc.runtime.registry:
        assert f'id="node-{info.type}"' in html
    assert "Draw a flat colour square as PNG (test node)." in html
    node = html.split('id="node-generate_image"')[1].split("</article>")[0]
    assert "<code>prompt</code>" in node and "<code>image</code>" in node and "<code>seed</code>" in node


def test_health_shows_queue_workers_and_loaded_models(dash):
    import torch

    from pixelmill.models.manager import SERVICE_KEY, ModelManager

    html = text(dash.get("/health"))
    assert 'id="queue-depth">0<' in html and "0 / 4" in html and "No model is loaded" in html
    manager = dash.svc.runtime.services.get(SERVICE_KEY, ModelManager)
    manager.get(("embedded-sd", "cpu", "float32"), lambda: torch.nn.Linear(256, 256))
    html = text(dash.get("/health"))
    assert "embedded-sd · cpu · float32" in html and "257.0 KB" in html
    fragment = text(dash.get("/health?fragment=body"))  # what the page refreshes itself with
    assert "embedded-sd · cpu · float32" in fragment and "<nav" not in fragment


# -- access ------------------------------------------------------------------------------------------------


def test_token_login_session_csrf_and_logout(app_env):
    make, _ = app_env
    app, svc = make(token="dashboard-token-123")
    c = app.test_client()
    r = c.get("/workflows?x=1")
    assert r.status_code == 302 and r.headers["Location"].startswith("/login?next=/workflows")
    assert c.get("/runs/abc/events").status_code == 401  # an EventSource must stop, not follow a redirect
    assert c.get("/", headers={"X-Requested-With": "fetch"}).status_code == 401
    login = text(c.get("/login"))
    token = re.search(r'name="csrf_token" value="([^"]+)"', login).group(1)
    assert c.post("/login", data={"token": "dashboard-token-123"}).status_code == 400  # no CSRF token
    r = c.post("/login", data={"csrf_token": token, "token": "wrong"})
    assert r.status_code == 401 and "not the server" in text(r)
    r = c.post("/login", data={"csrf_token": token, "token": "dashboard-token-123", "next": "//evil.example/x"})
    assert r.status_code == 302 and r.headers["Location"] == "/"  # no open redirect
    token = re.search(r'name="csrf_token" value="([^"]+)"', text(c.get("/login"))).group(1)
    for evil in ("/\t/evil.example", "/\\evil.example", "https://evil.example/", "/\n/evil.example"):
        r = c.post("/login", data={"csrf_token": token, "token": "dashboard-token-123", "next": evil})
        assert r.headers["Location"] == "/", evil
        token = re.search(r'name="csrf_token" value="([^"]+)"', text(c.get("/login"))).group(1)
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert c.get("/workflows").status_code == 200
    assert c.get("/api/v1/workflows").status_code == 401  # the session is not an API credential
    token = csrf(c)
    assert c.post("/logout").status_code == 400
    assert c.post("/logout", data={"csrf_token": token}).status_code == 302
    assert c.get("/").status_code == 302
    svc.queue.writer.stop()


def test_without_a_token_only_loopback_host_names_are_served(app_env):
    make, _ = app_env
    app, svc = make()
    c = app.test_client()
    for host in ("127.0.0.1:8080", "localhost", "[::1]:8080"):
        assert c.get("/", headers={"Host": host}).status_code == 200, host
    for host in ("evil.example:8080", "192.168.1.5:8080", "127.0.0.1.evil.example"):
        r = c.get("/workflows", headers={"Host": host})
        assert r.status_code == 403 and "PIXELMILL_API_TOKEN" in text(r), host
    assert c.get("/api/v1/workflows", headers={"Host": "evil.example"}).status_code == 200  # the API is unchanged
    svc.queue.writer.stop()
    app, svc = make(token="tok-123456")
    assert app.test_client().get("/", headers={"Host": "192.168.1.5:8080"}).status_code == 302  # to sign-in
    svc.queue.writer.stop()


def test_web_package_never_imports_a_node():
    for path in (ROOT / "pixelmill" / "web").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                assert not (node.module or "").startswith(("pixelmill_nodes", "nodes")), path
            elif isinstance(node, ast.Import):
                assert not any(a.name.startswith(("pixelmill_nodes", "nodes")) for a in node.names), path


def test_static_assets_are_served_beside_the_pages(dash):
    html = text(dash.get("/"))
    for asset in re.findall(r'(?:src|href)="(/assets/[^"]+)"', html):
        r = dash.get(asset)
        assert r.status_code == 200 and len(r.data) > 100, asset
    assert {"/assets/app.css", "/assets/app.js"} <= set(re.findall(r'(?:src|href)="(/assets/[^"]+)"', html))
