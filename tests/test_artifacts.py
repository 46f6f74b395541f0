"""The artifact-store interface: the folder implementation's contract, and a server whose artifacts live in
a folder of their own (PIXELMILL_ARTIFACTS, as a cluster's shared mount): nodes write there through their
context, the API lists, serves (with byte ranges) and deletes through the store."""

from __future__ import annotations

import io

import pytest

from pixelmill.artifacts import BadArtifactName, FolderArtifacts, from_setting
from pixelmill.node import NodeContext

from .serverutil import Server, write


def test_folder_store_contract(tmp_path):
    a = FolderArtifacts(tmp_path / "arts")
    assert a.list("r1") == [] and not a.exists("r1", "x.png")
    assert a.put("r1", "b.txt", b"bytes").size == 5
    a.put("r1", "a.txt", io.BytesIO(b"file object"))
    src = tmp_path / "src.bin"
    src.write_bytes(b"\x00" * 10)
    a.put("r1", "c.bin", src)
    assert [(i.name, i.size) for i in a.list("r1")] == [("a.txt", 11), ("b.txt", 5), ("c.bin", 10)]
    with a.open("r1", "a.txt") as fh:
        assert fh.read() == b"file object"
    assert a.url("r1", "b.txt") == (tmp_path / "arts" / "r1" / "b.txt").resolve().as_uri()
    with pytest.raises(FileNotFoundError):
        a.open("r1", "nope.txt")
    name, path = a.reserve("r1", "b.txt")
    assert name == "b-2.txt" and path == tmp_path / "arts" / "r1" / "b-2.txt"
    path.write_bytes(b"x")
    assert a.reserve("r1", "b.txt")[0] == "b-3.txt"
    a.copy("r1", "b.txt", "r2")
    assert a.read_bytes("r2", "b.txt") == b"bytes"
    a.delete("r1", "b.txt")
    assert not a.exists("r1", "b.txt") and a.exists("r2", "b.txt")  # the copy outlives its source
    a.delete("r1")
    assert a.list("r1") == [] and not (tmp_path / "arts" / "r1").exists()
    for bad in ("../x", "..", "", "a/b", "a\\b", "x\x00y", "n" * 300):
        with pytest.raises(BadArtifactName):
            a.put("r1", bad, b"")
        with pytest.raises(BadArtifactName):
            a.exists(bad, "ok.txt")


def test_store_from_setting(tmp_path):
    assert from_setting("", tmp_path / "d").root == tmp_path / "d"
    assert from_setting(str(tmp_path / "p"), tmp_path / "d").root == tmp_path / "p"
    assert from_setting((tmp_path / "u v").as_uri(), tmp_path / "d").root == tmp_path / "u v"
    with pytest.raises(ValueError, match="PIXELMILL_ARTIFACTS"):
        from_setting("s3://bucket/x", tmp_path / "d")


def test_node_context_writes_through_the_store(tmp_path):
    a = FolderArtifacts(tmp_path / "arts")
    ctx = NodeContext(run_id="r1", step_id="s", workflow="w", artifacts=a, secrets={})
    ref, path = ctx.new_artifact("out.png", "image/png")
    path.write_bytes(b"png")
    ref2 = ctx.put_artifact("out.png", b"second", "image/png")
    assert (ref.name, ref2.name) == ("s-out.png", "s-out-2.png")
    assert a.read_bytes("r1", "s-out-2.png") == b"second"
    assert ctx.artifact_path(ref) == a.path("r1", "s-out.png")
    with pytest.raises(ValueError):
        ctx.artifact_path(ref.model_copy(update={"name": "../../etc/passwd"}))


IMAGE = """
name: pic
on: {webhook: {path: pic, respond: when_done}}
steps:
  - {id: img, node: test_image, with: {size: 8, color: red}}
outputs: {image: "${{ steps.img.outputs.image }}"}
"""


def test_server_uses_the_configured_artifact_folder(tmp_path):
    shared = tmp_path / "shared-artifacts"
    write(tmp_path / "wf", "pic.yaml", IMAGE)
    srv = Server(tmp_path / "home", tmp_path / "wf", {"PIXELMILL_SCHEDULER": "0", "PIXELMILL_WATCH_INTERVAL": "0",
                                                      "PIXELMILL_ARTIFACTS": shared.as_uri()}).start()
    try:
        r = srv.post("/webhook/pic", json={})
        assert r.status_code == 200, r.text
        run_id = r.json()["run_id"]
        on_disk = shared / run_id / "img-image.png"
        assert on_disk.is_file() and not (tmp_path / "home" / "runs" / run_id).exists()
        items = srv.get(f"/api/v1/runs/{run_id}/artifacts").json()["items"]
        assert [(i["name"], i["size"]) for i in items] == [("img-image.png", on_disk.stat().st_size)]
        got = srv.get(f"/api/v1/runs/{run_id}/artifacts/img-image.png")
        assert got.status_code == 200 and got.content == on_disk.read_bytes()
        assert got.headers["Content-Type"] == "image/png" and got.headers["Accept-Ranges"] == "bytes"
        part = srv.get(f"/api/v1/runs/{run_id}/artifacts/img-image.png", headers={"Range": "bytes=1-3"})
        assert part.status_code == 206 and part.content == on_disk.read_bytes()[1:4]
        etag = got.headers["ETag"]
        again = srv.get(f"/api/v1/runs/{run_id}/artifacts/img-image.png", headers={"If-None-Match": etag})
        assert again.status_code == 304
        image = srv.get(f"/api/v1/runs/{run_id}", headers={"Accept": "image/png"})
        assert image.status_code == 200 and image.content == on_disk.read_bytes()
        inline = srv.get(f"/api/v1/runs/{run_id}?inline=base64").json()
        assert inline["outputs"]["image"]["data"]
        (shared / run_id / ".x.part").write_bytes(b"half")  # an upload in progress is not an artifact
        assert srv.get(f"/api/v1/runs/{run_id}/artifacts/.x.part").status_code == 404
        assert srv.delete(f"/api/v1/runs/{run_id}").status_code == 204
        assert not (shared / run_id).exists()  # deleted through the store
    finally:
        srv.stop()
