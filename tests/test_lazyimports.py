"""pixelmill.lazyimports: scipy.stats, imported by diffusers' schedulers, runs on first use, complete."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROBE = r"""
import json, sys
from pixelmill import lazyimports
lazyimports.install()
from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline  # noqa: F401
import scipy.stats  # a second import of the deferred module does not run it either
out = {"deferred_after_import": type(sys.modules["scipy.stats"]).__name__}
s = EulerDiscreteScheduler(use_beta_sigmas=True)
s.set_timesteps(5)
out["sigmas"] = [round(float(x), 6) for x in s.sigmas]
out["after_use"] = type(sys.modules["scipy.stats"]).__name__
out["same_object"] = sys.modules["scipy.stats"] is scipy.stats
out["ppf"] = float(scipy.stats.beta.ppf(0.25, 0.6, 0.6))
print(json.dumps(out))
"""


def _probe(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300,
                         env={**os.environ, "DIFFUSERS_VERBOSITY": "error"})
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_scipy_stats_is_deferred_until_a_scheduler_uses_it_and_gives_the_same_numbers():
    lazy = _probe(PROBE)
    assert lazy["deferred_after_import"] == "_Deferred"
    assert lazy["after_use"] == "module" and lazy["same_object"]
    plain = _probe(PROBE.replace("lazyimports.install()", "pass"))
    assert plain["deferred_after_import"] == "module"
    assert lazy["sigmas"] == plain["sigmas"] and lazy["ppf"] == plain["ppf"]


def test_a_module_that_fails_leaves_nothing_behind(tmp_path):
    (tmp_path / "brokenpkg").mkdir()
    (tmp_path / "brokenpkg" / "__init__.py").write_text("")
    (tmp_path / "brokenpkg" / "bad.py").write_text("raise RuntimeError('boom')\n")
    code = (f"import sys; sys.path.insert(0, {str(tmp_path)!r})\n"
            "from pixelmill import lazyimports\nlazyimports.install({'brokenpkg.bad'})\n"
            "import brokenpkg.bad\n"
            "try:\n    brokenpkg.bad.anything\nexcept RuntimeError as exc:\n    err = str(exc)\n"
            "import json; print(json.dumps({'err': err, 'gone': 'brokenpkg.bad' not in sys.modules}))\n")
    assert _probe(code) == {"err": "boom", "gone": True}
