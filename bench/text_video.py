"""Text and video figures, measured in one run.

1. make_video: H.264 yuv420p encode time for 64 frames at 256x256 (and the same frames as GIF), and a
   64-frame crossfade slideshow through the node.
2. generate_text: the node's overhead against the raw HTTP call to the same local OpenAI-compatible server
   (tests/openai_fake.py on loopback, in this process), interleaved, medians of many calls, over the same
   keep-alive connection (the node's session pool lends it the raw call's session), the same request body and
   headers (checked). Also this thread's CPU time a call,
   which other processes on the machine disturb less than wall time. Target: under 5 %.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pixelmill.testing import make_context  # noqa: E402
from pixelmill.text.sessions import SessionPool  # noqa: E402
from pixelmill.video.encode import probe, write_animation, write_mp4  # noqa: E402
from pixelmill_nodes.generate_text import SESSIONS, GenerateTextNode  # noqa: E402
from pixelmill_nodes.make_video import MakeVideoNode  # noqa: E402
from tests.openai_fake import FakeOpenAI  # noqa: E402


def frames(n=64, size=256):
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    out = []
    for i in range(n):
        t = i / n
        r = (np.sin(6 * (x + t)) * 0.5 + 0.5) * 255
        g = (np.cos(5 * (y - t)) * 0.5 + 0.5) * 255
        b = ((x * y + t) % 1.0) * 255
        out.append(np.stack([r, g, b], axis=-1).astype(np.uint8))
    return out


def bench_video(tmp: Path) -> None:
    data = frames()
    times = []
    for k in range(3):
        path = tmp / f"b{k}.mp4"
        t0 = time.perf_counter()
        write_mp4(iter(data), path, 24)
        times.append(time.perf_counter() - t0)
    info = probe(path)
    t0 = time.perf_counter()
    write_animation(iter(data), tmp / "b.gif", 24, "gif")
    gif_s = time.perf_counter() - t0
    print(f"make_video encode, 64 frames 256x256 -> H.264 {info['pix_fmt']} MP4 (crf 20, preset medium): "
          f"median {statistics.median(times) * 1000:.0f} ms of 3 ({64 / statistics.median(times):.0f} frames/s), "
          f"{path.stat().st_size / 1024:.0f} KiB; GIF {gif_s * 1000:.0f} ms")
    ctx = make_context(tmp)
    from PIL import Image

    refs = []
    for i in range(4):
        ref, p = ctx.new_artifact("in.png", "image/png")
        Image.fromarray(data[i * 16]).save(p)
        refs.append(ref)
    node = MakeVideoNode(MakeVideoNode.Config(fps=16))
    t0 = time.perf_counter()
    out = node.run(MakeVideoNode.Inputs(images=refs, seconds_per_image=1.0, transition="crossfade"), ctx)
    print(f"make_video node, slideshow of 4 images 256x256 with crossfades, {out.frames} frames: "
          f"{(time.perf_counter() - t0) * 1000:.0f} ms")


def bench_text(tmp: Path, calls: int = 2000, rounds: int = 3) -> None:
    """The node's ``run`` against the raw HTTP call it makes, both to the same loopback server, interleaved."""
    import requests

    with FakeOpenAI() as srv:
        node = GenerateTextNode(GenerateTextNode.Config(base_url=srv.base_url, model="tiny-chat"))
        inputs = GenerateTextNode.Inputs(prompt="Write one line about {{ topic }}.", vars={"topic": "the sea"},
                                         max_tokens=64, temperature=0.0)
        ctx = make_context(tmp)  # its services hold the node's session pool, as the runtime's do
        session = requests.Session()
        pool = ctx.service(SESSIONS, SessionPool)
        pool.release(srv.base_url, session)  # one keep-alive connection for both: only the client side differs
        payload = {"model": "tiny-chat", "messages": [{"role": "user", "content": "Write one line about the sea."}],
                   "temperature": 0.0, "max_tokens": 64}

        def raw():
            resp = session.post(f"{srv.base_url}/chat/completions", data=json.dumps(payload),
                                headers={"Content-Type": "application/json"}, timeout=30)
            resp.raise_for_status()
            return resp.json()["choices"][0]["message"]["content"]

        def via_node():
            return node.run(inputs, ctx).text

        assert raw() == via_node()  # same answer to the same request:
        sent_raw, sent_node = srv.chat_requests()[-2:]
        assert sent_raw["body"] == sent_node["body"] and sent_raw["headers"] == sent_node["headers"]
        for _ in range(50):  # warm both paths
            raw(), via_node()
        wall = {raw: [], via_node: []}
        cpu = {raw: [], via_node: []}  # this thread's CPU time: what the client side costs, whatever the load
        per_round = []
        for _ in range(rounds):
            srv.requests.clear()
            start = len(wall[raw])
            for i in range(calls):
                for fn in (raw, via_node) if i % 2 else (via_node, raw):  # alternate which goes first
                    c0, t0 = time.thread_time(), time.perf_counter()
                    fn()
                    t1, c1 = time.perf_counter(), time.thread_time()
                    wall[fn].append(t1 - t0)
                    cpu[fn].append(c1 - c0)
            r, n = statistics.median(wall[raw][start:]), statistics.median(wall[via_node][start:])
            per_round.append(f"{(n - r) / r * 100:+.1f} %")
        assert pool.acquire(srv.base_url) is session  # the node lent and gave back that session every time
    r, n = statistics.median(wall[raw]), statistics.median(wall[via_node])
    cr, cn = statistics.median(cpu[raw]), statistics.median(cpu[via_node])
    print(f"generate_text vs raw HTTP (same request body and headers, same keep-alive connection), "
          f"{rounds} rounds x {calls} interleaved calls each to the local fake: raw median {r * 1e3:.3f} ms, "
          f"node median {n * 1e3:.3f} ms, overhead {(n - r) / r * 100:+.1f} % ({(n - r) * 1e6:.0f} us a call; "
          f"rounds {', '.join(per_round)}); client CPU a call: raw {cr * 1e6:.0f} us, node {cn * 1e6:.0f} us "
          f"({(cn - cr) / cr * 100:+.1f} %); target < 5 %")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as d:
        bench_video(Path(d))
        bench_text(Path(d))
