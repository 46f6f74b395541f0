"""pixelmill.importcache: transformers' import table from a disk cache, identical to the one it builds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from pixelmill import importcache

ROOT = Path(__file__).resolve().parents[1]

PROBE = r"""
import json, sys
from pixelmill import importcache
installed = importcache.install()
import transformers
from transformers import BlipForConditionalGeneration  # noqa: F401 (models/, blip/ tables)
from transformers.utils import import_utils as iu
out = {"installed": installed, "scans": iu.create_import_structure_from_path.cache_info().misses}
if installed:
    from pathlib import Path
    define = iu.define_import_structure
    folder = importcache.cache_folder()
    files = sorted(folder.glob("transformers-imports-*.marshal"))
    store = importcache._Store(files[-1])
    models = Path(transformers.__file__).parent / "models"
    blip = models / "blip" / "__init__.py"
    same = []
    for path, prefix in ((models, "models"), (blip, None)):
        cached = store.get(importcache._key(path, prefix))
        same.append(cached is not None and cached == define.uncached(path, prefix))
    out["same"] = same
print(json.dumps(out))
"""


def _probe(tmp_path):
    e = {**os.environ, "PIXELMILL_IMPORT_CACHE": str(tmp_path / "cache")}
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, cwd=ROOT, env=e, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_second_process_reads_the_table_instead_of_scanning_it_is_the_same_and_a_broken_file_is_rebuilt(tmp_path):
    first = _probe(tmp_path)
    assert first["installed"] and first["scans"] > 100  # every model folder read
    second = _probe(tmp_path)
    assert second["installed"] and second["scans"] < first["scans"] / 10, (first, second)
    assert second["same"] == [True, True]
    (file,) = (tmp_path / "cache").glob("transformers-imports-*.marshal")
    file.write_bytes(b"not marshal at all")
    third = _probe(tmp_path)
    assert third["scans"] > 100 and third["same"] == [True, True]
    assert file.read_bytes() != b"not marshal at all"


def test_folder_setting():
    assert importcache.cache_folder({"PIXELMILL_IMPORT_CACHE": "off"}) is None
    assert importcache.cache_folder({"PIXELMILL_IMPORT_CACHE": "/x/y"}) == Path("/x/y")
    assert importcache.cache_folder({"XDG_CACHE_HOME": "/c"}) == Path("/c/pixelmill")


def test_the_cli_installs_it(tmp_path):
    code = ("import sys\nfrom pixelmill.cli import main\nfrom pixelmill import importcache\n"
            "try:\n    main(['nodes'])\nexcept SystemExit:\n    pass\n"
            "print('finder', any(isinstance(f, importcache._Finder) for f in sys.meta_path))\n")
    e = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "PIXELMILL_HOME": str(tmp_path / "home")}
    e.pop("PIXELMILL_IMPORT_CACHE", None)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=e, timeout=300)
    assert out.stdout.strip().splitlines()[-1] == "finder True", out.stderr[-2000:]
