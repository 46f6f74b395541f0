"""A disk cache for transformers' import structure, so that a fresh process does not rebuild it.

``import transformers`` (and then ``transformers.models``) builds its lazy-import table by reading the
source of every model module it ships, about 3,000 files, to find their ``__all__`` lists and backend
requirements (``transformers.utils.import_utils.define_import_structure``). The result depends only on
those files, yet every new process computes it again: about 0.6 s of CPU on this project's 2-core
machine, a tenth of a cold ``pixelmill run``. ``install()`` keeps each result in a small file under the
user's cache folder (``$XDG_CACHE_HOME/pixelmill``, else ``~/.cache/pixelmill``; ``PIXELMILL_IMPORT_CACHE``
names another folder, or ``off`` turns it off), keyed by the folder and its modification time and
stored per transformers installation (the path and modification time of its ``__init__.py`` and
``import_utils.py``, so an upgrade or reinstall starts a new file). The values are plain dicts, sets and
strings written with ``marshal``; a missing, unreadable or foreign file is ignored and rebuilt. What
transformers gets is the same table it would have built.

The hook is a meta-path finder that only acts on ``transformers.utils.import_utils``: after that module
has run, its ``define_import_structure`` is wrapped. Installing it twice, or after transformers was
imported, does nothing.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.abc
import importlib.machinery
import marshal
import os
import sys
import threading
from pathlib import Path

from .lazyimports import spec_from_others

TARGET = "transformers.utils.import_utils"
FORMAT = 1


def cache_folder(environ=os.environ) -> Path | None:
    """Where the cache files go, or None when ``PIXELMILL_IMPORT_CACHE`` is off/0/false."""
    chosen = environ.get("PIXELMILL_IMPORT_CACHE", "").strip()
    if chosen.lower() in {"off", "0", "false", "no"}:
        return None
    if chosen:
        return Path(chosen).expanduser()
    base = environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pixelmill"


def install(environ=os.environ) -> bool:
    """Add the finder (once) when transformers is not imported yet; True if it is in place."""
    folder = cache_folder(environ)
    if folder is None or TARGET in sys.modules:
        return False
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder(folder))
    return True


class _Finder(importlib.abc.MetaPathFinder):
    def __init__(self, folder: Path):
        self.folder = folder

    def find_spec(self, fullname, path, target=None):
        if fullname != TARGET:
            return None
        spec = spec_from_others(self, fullname, path, target)
        if spec is None:
            return None
        if not isinstance(spec.loader, importlib.machinery.SourceFileLoader):
            return spec  # not the plain installed module: leave it alone
        spec.loader = _Loader(spec.loader, self.folder)
        return spec


class _Loader(importlib.abc.Loader):
    def __init__(self, inner, folder: Path):
        self.inner = inner
        self.folder = folder

    def create_module(self, spec):
        return self.inner.create_module(spec)

    def exec_module(self, module):
        self.inner.exec_module(module)
        try:
            wrap(module, self.folder)
        except Exception:  # noqa: BLE001 - never let the cache stand between a process and transformers
            pass

    def __getattr__(self, name):  # get_source, get_filename, ... as the real loader has them
        return getattr(self.inner, name)


def wrap(module, folder: Path) -> None:
    """Replace ``module.define_import_structure`` by a version that reads and fills the disk cache."""
    original = module.define_import_structure
    build = getattr(original, "__wrapped__", original)
    store = _Store(folder / f"transformers-imports-{_installation_stamp(module)}.marshal")

    @functools.lru_cache  # as transformers' own: one table object per argument in a process
    @functools.wraps(build)
    def define_import_structure(module_path, prefix=None):
        key = _key(module_path, prefix)
        found = store.get(key) if key is not None else None
        if found is not None:
            return found
        value = build(module_path, prefix)
        if key is not None:
            store.put(key, value)  # serialised now, before the caller adds to it
        return value

    define_import_structure.uncached = build
    module.define_import_structure = define_import_structure


def _installation_stamp(module) -> str:
    files = [Path(module.__file__), Path(module.__file__).parents[1] / "__init__.py"]
    parts = [f"{FORMAT}", f"{marshal.version}", sys.version]
    for f in files:
        st = f.stat()
        parts.append(f"{f.resolve()}:{st.st_mtime_ns}:{st.st_size}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _key(module_path, prefix) -> tuple | None:
    path = os.fspath(module_path)
    folder = path if os.path.isdir(path) else os.path.dirname(path)
    try:
        stamp = os.stat(folder).st_mtime_ns
    except OSError:
        return None
    return (path, prefix, stamp)


class _Store:
    """One marshal file: {key: marshalled table}. Read once; rewritten whole (atomically) on a miss."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        self._entries: dict | None = None

    def _load(self) -> dict:
        if self._entries is None:
            try:
                data = marshal.loads(self.path.read_bytes())
                self._entries = data if isinstance(data, dict) else {}
            except (OSError, EOFError, ValueError, TypeError):
                self._entries = {}
        return self._entries

    def get(self, key):
        with self._lock:
            raw = self._load().get(key)
        if not isinstance(raw, bytes):
            return None
        try:
            value = marshal.loads(raw)
        except (EOFError, ValueError, TypeError):
            return None
        return value if isinstance(value, dict) else None

    def put(self, key, value) -> None:
        try:
            raw = marshal.dumps(value)
        except ValueError:  # something marshal cannot hold: no caching for it
            return
        with self._lock:
            entries = self._load()
            entries[key] = raw
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
                tmp.write_bytes(marshal.dumps(entries))
                os.replace(tmp, self.path)
            except OSError:
                pass
