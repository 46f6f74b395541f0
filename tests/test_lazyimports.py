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


STANDINS = r"""
import json, sys
from pixelmill import lazyimports
lazyimports.install()
import torch
from diffusers import UNet2DConditionModel
from diffusers.models.attention import BasicTransformerBlock
from diffusers.utils.torch_utils import is_compiled_module
import transformers.masking_utils  # noqa: F401  (binds TransformGetItemToIndex)
from transformers.loss.loss_for_object_detection import HungarianMatcher  # noqa: F401
out = {}

def state(name):
    return type(sys.modules[name]).__name__ if name in sys.modules else "absent"

out["dynamo_after_import"] = state("torch._dynamo")
out["optimize_after_import"] = state("scipy.optimize")
net = torch.nn.Linear(3, 2)
out["compiled_before"] = is_compiled_module(net)
double = torch.compiler.disable(lambda x: x * 2)
out["disabled_call"] = double(torch.ones(2)).tolist()
@torch.compiler.disable(recursive=False)
def triple(x):
    return x * 3
out["disabled_nonrecursive"] = triple(torch.ones(1)).tolist()
out["dynamo_before_compile"] = state("torch._dynamo")
from scipy.optimize import linear_sum_assignment as lsa  # a real import of a name with a stand-in
import transformers.loss.loss_for_object_detection as lod
rows, cols = lod.linear_sum_assignment([[4, 1], [2, 0]])
out["lsa_through_standin"] = [rows.tolist(), cols.tolist()]
out["lsa_real"] = [x.tolist() for x in lsa([[4, 1], [2, 0]])]
compiled = torch.compile(net, backend="eager")
x = torch.ones(1, 3)
out["compiled_equal"] = bool(torch.equal(compiled(x), net(x)))
out["dynamo_after_compile"] = state("torch._dynamo")
out["compiled_after"] = is_compiled_module(compiled)
f = torch.compile(lambda x: double(x) + 1, backend="eager")
out["compiled_through_disabled"] = f(torch.ones(2)).tolist()
from torch._dynamo import trace_rules
out["allowed_in_graph"] = id(BasicTransformerBlock) in trace_rules._allowed_callable_ids
print(json.dumps(out))
"""


def test_standins_keep_dynamo_and_scipy_optimize_unrun_and_give_the_real_behaviour():
    lazy = _probe(STANDINS)
    assert lazy["dynamo_after_import"] == "_Deferred" and lazy["dynamo_before_compile"] == "_Deferred"
    assert lazy["optimize_after_import"] == "_Deferred"
    assert lazy["dynamo_after_compile"] == "module"
    plain = _probe(STANDINS.replace("lazyimports.install()", "pass"))
    assert plain["dynamo_after_import"] == "module"
    for key in ("compiled_before", "disabled_call", "disabled_nonrecursive", "lsa_through_standin", "lsa_real",
                "compiled_equal", "compiled_after", "compiled_through_disabled", "allowed_in_graph"):
        assert lazy[key] == plain[key], key
    # diffusers' attention blocks, decorated while dynamo had not run, are allowed in graph once it runs
    assert lazy["allowed_in_graph"] is True and lazy["compiled_after"] is True
    assert lazy["compiled_before"] is False


def test_a_stand_in_class_is_no_instance_check_until_its_module_ran():
    code = ("import json, sys\nfrom pixelmill import lazyimports\nlazyimports.install()\n"
            "import torch\nimport torch._dynamo\n"
            "OM = torch._dynamo.eval_frame.OptimizedModule\n"
            "net = torch.nn.Linear(2, 2)\nout = {'before': isinstance(net, OM),\n"
            "       'state': type(sys.modules['torch._dynamo']).__name__}\n"
            "c = torch.compile(net, backend='eager')\n"
            "out['after'] = isinstance(c, OM)\nout['same_class'] = OM.__name__ == 'OptimizedModule'\n"
            "out['subclass'] = issubclass(type(c), OM)\nprint(json.dumps(out))\n")
    assert _probe(code) == {"before": False, "state": "_Deferred", "after": True, "same_class": True,
                            "subclass": True}


def test_off_switch(tmp_path):
    code = ("import json, sys, os\nos.environ['PIXELMILL_LAZY_IMPORTS'] = 'off'\n"
            "from pixelmill import lazyimports\nok = lazyimports.install()\n"
            "import scipy.stats\nprint(json.dumps({'ok': ok, 'state': type(sys.modules['scipy.stats']).__name__}))\n")
    assert _probe(code) == {"ok": False, "state": "module"}


def test_the_main_job_runs_without_ever_running_dynamo_or_scipy_optimize(tmp_path):
    # what the cold-start figure rests on: a whole `pixelmill run` of the main job leaves them unrun
    code = ("import atexit, json, sys\n"
            "names = ['torch._dynamo', 'scipy.optimize', 'scipy.stats', 'scipy.integrate']\n"
            "atexit.register(lambda: print(json.dumps({n: type(sys.modules.get(n)).__name__ for n in names})))\n"
            "from pixelmill.cli import main\n"
            "main(['run', 'workflows/daily-shapes.yaml', '--json'])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=600,
                         env={**os.environ, "PIXELMILL_HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    assert json.loads(lines[-1]) == {n: "_Deferred" for n in
                                     ["torch._dynamo", "scipy.optimize", "scipy.stats", "scipy.integrate"]}
    assert '"status": "succeeded"' in out.stdout


def test_only_one_shot_commands_defer_torch_dynamo():
    from pixelmill.cli import standins_for

    assert "torch._dynamo" in standins_for("run") and "torch._dynamo" in standins_for("retry")
    for command in ("serve", "worker", "validate", None):
        table = standins_for(command)
        assert "scipy.optimize" in table and not any(name.startswith("torch") for name in table), command
