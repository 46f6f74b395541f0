"""The one-shot collector settings of ``pixelmill run`` / ``retry`` (pixelmill.cli.oneshot)."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from pathlib import Path

from pixelmill.cli.oneshot import THRESHOLDS, one_shot

ROOT = Path(__file__).resolve().parents[1]


def test_thresholds_apply_inside_and_come_back_after():
    before = gc.get_threshold()
    with one_shot():
        assert gc.get_threshold() == THRESHOLDS
    assert gc.get_threshold() == before


def test_thresholds_come_back_after_sys_exit():
    before = gc.get_threshold()

    @one_shot()
    def command():
        assert gc.get_threshold() == THRESHOLDS
        sys.exit(3)

    try:
        command()
    except SystemExit as exc:
        assert exc.code == 3
    assert gc.get_threshold() == before


def _frozen_at_exit(body: str, tmp_path) -> str:
    # A probe registered first runs last (atexit is last-in, first-out): it sees whether what survived
    # was frozen before the interpreter's final collections.
    code = "import atexit, gc\natexit.register(lambda: print('frozen', gc.get_freeze_count() > 0))\n" + body
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120,
                         env={**os.environ, "PIXELMILL_HOME": str(tmp_path / "home")})
    return out.stdout.strip().splitlines()[-1]


def test_objects_are_frozen_at_exit(tmp_path):
    assert _frozen_at_exit("from pixelmill.cli.oneshot import one_shot\nwith one_shot():\n    pass\n",
                           tmp_path) == "frozen True"
    assert _frozen_at_exit("pass\n", tmp_path) == "frozen False"


def test_pixelmill_run_uses_it(tmp_path):
    body = "from pixelmill.cli import main\nmain(['run', 'workflows/hello-prompt.yaml', '-i', 'seed=3'])\n"
    assert _frozen_at_exit(body, tmp_path) == "frozen True"


def test_close_frozen_freezes_only_while_closing():
    from pixelmill.cli.oneshot import close_frozen

    before = gc.get_freeze_count()
    seen = []
    close_frozen(lambda: seen.append(gc.get_freeze_count()))
    assert seen[0] > before and gc.get_freeze_count() == before
