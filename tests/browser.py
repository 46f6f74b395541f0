"""Headless Chromium for the dashboard's browser tests: Debian's ``chromium`` driven by Playwright for
Python through ``executable_path`` (Playwright's own browser download is never used).

``why_not()`` says why the tests cannot run instead of failing where Chromium or Playwright is
missing (or PIXELMILL_CHROMIUM=off); ``make test`` installs Chromium first when it may (root with apt-get).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium_path() -> str | None:
    for candidate in (os.environ.get("PIXELMILL_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def why_not() -> str | None:
    """None when the browser tests can run, else the reason they are skipped."""
    if os.environ.get("PIXELMILL_CHROMIUM", "").lower() in ("off", "none", "0"):
        return "PIXELMILL_CHROMIUM=off"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[dev]')"
    if chromium_path() is None:
        return ("no chromium binary (Debian package 'chromium'; `make test` installs it when run as root with "
                "apt-get, or set PIXELMILL_CHROMIUM)")
    return None


@contextmanager
def chromium(viewport=(1280, 800)):
    """A fresh browser profile in a temporary folder; yields a Playwright BrowserContext."""
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="pixelmill-chromium-")
    try:
        with sync_playwright() as pw:
            ctx = pw.chromium.launch_persistent_context(
                profile, executable_path=chromium_path(), headless=True, args=ARGS,
                viewport={"width": viewport[0], "height": viewport[1]}, timeout=60_000)
            try:
                yield ctx
            finally:
                ctx.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def check_screenshot(png: bytes, min_size=(300, 300)) -> dict:
    """Size and content of a screenshot: fails when it is too small or (nearly) one flat colour."""
    import io

    from PIL import Image, ImageStat

    im = Image.open(io.BytesIO(png)).convert("RGB")
    assert im.width >= min_size[0] and im.height >= min_size[1], f"screenshot is only {im.size}"
    small = im.resize((min(im.width, 400), min(im.height, 400)))
    colours = len(small.getcolors(maxcolors=1 << 20) or [])
    spread = max(ImageStat.Stat(small).stddev)
    assert colours >= 16 and spread >= 8, f"screenshot looks blank ({colours} colours, stddev {spread:.1f})"
    return {"size": im.size, "colours": colours, "stddev": round(spread, 1)}
