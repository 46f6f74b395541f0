"""Text and video figures, measured in one run.

1. make_video: H.264 yuv420p encode time for 64 frames at 256x256 (and the same frames as GIF), and a
   64-frame crossfade slideshow through the node.
2. generate_text: the node's overhead against the raw HTTP call to the same local OpenAI-compatible server
   (tests/openai_fake.py on loopback), interleaved, medians of many calls. Target: under 5 %.
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
from pixelmill.video.encode import probe, write_animation, write_mp4  # noqa: E402
from pixelmill_nodes.generate_text import GenerateTextNode  # noqa: E402
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


def bench_text(tmp: Path, calls: int = 300) -> None:
    import requests

    with FakeOpenAI() as srv:
        node = GenerateTextNode(GenerateTextNode.Config(base_url=srv.base_url, model="tiny-chat"))
        inputs = GenerateTextNode.Inputs(prompt="Write one line about {{ topic }}.", vars={"topic": "the sea"},
                                         max_tokens=64, temperature=0.0)
        ctx = make_context(tmp)
        session = requests.Session()
        # one keep-alive connection for both paths, so only the client-side work differs
        ctx.services.get("pixelmill.text.http", lambda: session)
        payload = {"model": "tiny-chat", "messages": [{"role": "user", "content": "Write one line about the sea."}],
                   "temperature": 0.0, "max_tokens": 64}

        def raw():
            resp = session.post(f"{srv.base_url}/chat/completions", data=json.dumps(payload),
                                headers={"Content-Type": "application/json"}, timeout=30)
            resp.raise_for_status()
            return resp.json()["choices"][0]["message"]["content"]

        def via_node():
            return node.run(inputs, ctx).text

        assert raw() == via_node()  # same request, same answer
        for _ in range(20):  # warm both paths
            raw(), via_node()
        t_raw, t_node = [], []
        for i in range(calls):
            pair = ((raw, t_raw), (via_node, t_node))
            for fn, sink in pair if i % 2 else pair[::-1]:  # alternate which goes first
                t0 = time.perf_counter()
                fn()
                sink.append(time.perf_counter() - t0)
        r, n = statistics.median(t_raw), statistics.median(t_node)
        print(f"generate_text vs raw HTTP, {calls} interleaved calls each to the local fake: raw median "
              f"{r * 1e3:.3f} ms, node median {n * 1e3:.3f} ms, overhead {(n - r) / r * 100:+.1f} % "
              f"({(n - r) * 1e6:.0f} us a call; target < 5 %)")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as d:
        bench_video(Path(d))
        bench_text(Path(d))
