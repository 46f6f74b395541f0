"""Image and file inputs: multipart through the webhook and the API, data URLs, the URL guard, limits."""

from __future__ import annotations

import base64
import io
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from PIL import Image

from pixelmill.fileinputs import FileInputRefused, FileLimits, RunFiles, accept, fetch

from .serverutil import Server, write


def png(size=(24, 16), color="#ff0000") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def bomb() -> bytes:
    """A small PNG that claims 144 million pixels (1 bit each, all zero: it compresses to almost nothing)."""
    buf = io.BytesIO()
    Image.new("1", (12000, 12000), 0).save(buf, format="PNG", optimize=False)
    return buf.getvalue()


@pytest.fixture(scope="module")
def local_http():
    """A loopback HTTP server that serves one PNG (what a forged request would reach)."""
    body = png()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/photo.png"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    root = tmp_path_factory.mktemp("files")
    write(root / "workflows", "flip.yaml", """
name: flip
inputs:
  photo: {type: image}
  note: {type: string, default: ""}
  attachment: {type: file, default: null}
on: {webhook: {path: flip, respond: when_done}}
steps:
  - id: flip
    node: image_ops
    with: {image: "${{ inputs.photo }}", ops: [{op: flip}]}
outputs: {width: "${{ steps.flip.outputs.width }}", note: "${{ inputs.note }}", photo: "${{ inputs.photo }}"}
""")
    server = Server(root / "home", root / "workflows").start()
    yield server
    server.stop()


def test_multipart_upload_through_the_webhook(srv):
    r = requests.post(srv.url + "/webhook/flip", timeout=30, data={"note": "hi"},
                      files={"photo": ("holiday.jpg", png((30, 20)), "image/jpeg")})
    assert r.status_code == 200, r.text
    out = r.json()["outputs"]
    assert out["width"] == 30 and out["note"] == "hi"
    # sniffed from the content (a PNG), not the declared type; stored as an artifact of the run
    assert out["photo"]["name"] == "input-photo.png" and out["photo"]["media_type"] == "image/png"
    got = srv.get(out["photo"]["url"].replace(srv.url, ""))
    assert got.status_code == 200 and got.content == png((30, 20))
    run = srv.get(f"/api/v1/runs/{r.json()['run_id']}").json()
    assert run["trigger"]["body"]["files"]["photo"]["filename"] == "holiday.jpg"  # a summary, never the bytes


def test_multipart_upload_through_the_api(srv):
    r = srv.post("/api/v1/workflows/flip/runs", data={"note": "api"},
                 files={"photo": ("p.png", png((12, 8)), "image/png"),
                        "attachment": ("notes.txt", b"hello", "text/plain")})
    assert r.status_code == 202, r.text
    run = srv.wait_run(r.json()["run_id"])
    assert run["status"] == "succeeded", run
    assert run["outputs"]["width"] == 12
    assert run["inputs"]["attachment"]["name"] == "input-attachment.txt"
    assert run["inputs"]["attachment"]["media_type"] == "text/plain"


def test_data_url_in_json(srv):
    url = "data:image/png;base64," + base64.b64encode(png((9, 9))).decode()
    r = requests.post(srv.url + "/webhook/flip", json={"photo": url}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["outputs"]["width"] == 9
    trigger = srv.get(f"/api/v1/runs/{r.json()['run_id']}").json()["trigger"]
    assert "not kept here" in trigger["body"]["photo"] and len(trigger["body"]["photo"]) < 200


def test_not_an_image_is_refused_with_400(srv):
    r = requests.post(srv.url + "/webhook/flip", timeout=30, files={"photo": ("x.png", b"GIF89a not really", "image/png")})
    assert r.status_code == 400 and "is not a readable image" in r.json()["message"]


def test_loopback_url_is_refused_by_default(srv, local_http):
    assert requests.get(local_http, timeout=5).status_code == 200  # it is there, and reachable
    r = requests.post(srv.url + "/webhook/flip", json={"photo": local_http}, timeout=30)
    assert r.status_code == 400, r.text
    assert "non-public address (127.0.0.1)" in r.json()["message"]
    assert "PIXELMILL_ALLOW_PRIVATE_URLS" in r.json()["message"]


def test_decompression_bomb_is_refused_with_a_clear_4xx(srv, bomb):
    assert len(bomb) < 1024 * 1024
    r = requests.post(srv.url + "/webhook/flip", timeout=30, files={"photo": ("b.png", bomb, "image/png")})
    assert r.status_code == 413, r.text
    body = r.json()
    assert body["error"] == "invalid_inputs" and "decompression bomb" in body["message"]
    assert "144000000 pixels" in body["message"] and "Traceback" not in r.text


def test_fetch_follows_the_setting_and_checks_every_address(tmp_path, local_http):
    files = RunFiles(tmp_path, "r1", FileLimits(allow_private=True))
    ref = accept("photo", "image", local_http, files)
    assert ref["name"] == "input-photo.png" and (tmp_path / "r1" / "input-photo.png").read_bytes() == png()
    with pytest.raises(FileInputRefused, match="non-public"):
        fetch(local_http.replace("127.0.0.1", "localhost"), FileLimits())
    with pytest.raises(FileInputRefused, match="non-public"):
        fetch("http://169.254.169.254/latest/meta-data/", FileLimits())
    with pytest.raises(FileInputRefused, match="more than the limit") as err:
        fetch(local_http, FileLimits(allow_private=True, max_bytes=10))
    assert err.value.status == 413
