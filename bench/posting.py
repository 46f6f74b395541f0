"""Posting overheads, measured: pre-flight recompression under Bluesky's blob limit, the cost of a
post through the executor (ledger writes and reading the image's AI labels included) against local
fakes of Mastodon and a Bluesky PDS, and Bluesky logins made by separate processes sharing one
PIXELMILL_HOME.

    .venv/bin/python bench/posting.py
"""

from __future__ import annotations

import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pixelmill.loader import load_text  # noqa: E402
from pixelmill.posting.base import PostImage  # noqa: E402
from pixelmill.posting.bluesky import BLOB_LIMIT  # noqa: E402
from pixelmill.posting.preflight import fit_image  # noqa: E402
from pixelmill.runtime import Runtime  # noqa: E402
from pixelmill.settings import Settings  # noqa: E402
from tests.posting_fakes import FakeBluesky, FakeMastodon  # noqa: E402
from tests.test_posting import (  # noqa: E402
    BPASS,
    HANDLE,
    MTOKEN,
    FixtureImage,
    _bluesky_processes,
    bluesky_cfg,
    flow,
    mastodon_cfg,
)


def recompress(side: int) -> None:
    smooth = Image.radial_gradient("L").resize((side, side)).convert("RGB")
    noise = Image.frombytes("RGB", (side, side), os.urandom(side * side * 3))
    im = Image.blend(smooth, noise, 0.35)
    buf = io.BytesIO()
    im.save(buf, "PNG")
    data = buf.getvalue()
    img = PostImage(data, "image/png", side, side, "alt", "x.png")
    from pixelmill.posting.base import Limits
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        out = fit_image(img, Limits(max_image_bytes=BLOB_LIMIT))
        times.append(time.perf_counter() - t0)
    print(f"recompress {side}x{side} PNG {len(data):,} B -> {out.media_type} {len(out.data):,} B "
          f"({len(out.data) / BLOB_LIMIT:.2f} of the blob limit, {out.width}x{out.height}) "
          f"in {statistics.median(times) * 1000:.0f} ms (median of 3)")


def posts(n: int) -> None:
    with tempfile.TemporaryDirectory() as home:
        env = {"MASTODON_TOKEN": MTOKEN, "BSKY_PASSWORD": BPASS}
        rt = Runtime.create(Settings.from_env(environ={}, home=Path(home)), environ=env)
        rt.registry.register(FixtureImage)
        try:
            with FakeMastodon(MTOKEN, processing_polls=0) as m, FakeBluesky(HANDLE, BPASS) as b:
                for name, cfg in (("outbox", {"target": "outbox"}), ("mastodon", mastodon_cfg(m)),
                                  ("bluesky", bluesky_cfg(b))):
                    loaded = load_text(flow(cfg), "bench.yaml", rt.registry)
                    rt.run(loaded, {})  # warm-up (Bluesky session)
                    times = []
                    for _ in range(n):
                        result = rt.run(loaded, {})
                        assert result.status.value == "succeeded", result.error
                        times.append(result.steps["post"].duration_s)
                    print(f"{name:9s} post step (1 image, through the executor): median "
                          f"{statistics.median(times) * 1000:.1f} ms, max {max(times) * 1000:.1f} ms over {n} runs")
                print(f"bluesky sessions created: {b.sessions_created} for {n + 1} posts")
        finally:
            rt.close()


def processes(n: int) -> None:
    """``n`` processes at once, each its own runtime and run store, posting one text to the fake PDS."""
    with tempfile.TemporaryDirectory() as tmp, FakeBluesky(HANDLE, BPASS) as b:
        t0 = time.perf_counter()
        procs = _bluesky_processes(b, Path(tmp), n, "bench")
        wall = time.perf_counter() - t0
        ok = sum(p.returncode == 0 and '"succeeded"' in p.stdout for p in procs)
        print(f"{n} separate processes posting to Bluesky at once: {ok} succeeded, "
              f"{b.sessions_created} createSession, {b.refreshes} refreshSession, {wall:.1f} s wall")


if __name__ == "__main__":
    for side in (1024, 2048):
        recompress(side)
    posts(20)
    processes(20)
