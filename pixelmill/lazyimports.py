"""Modules that libraries import at module level but use only on rare paths, run on first use instead.

diffusers' schedulers run ``import scipy.stats`` when they are imported, for the beta noise schedule
(``use_beta_sigmas``) alone; that import costs about a quarter of a second of CPU on this project's
2-core machine, in every process that draws a picture. ``install()`` defers such an import: the module
object is made at once (with its name, spec, path and loader) and its code runs on the first access to
any other attribute, under a lock, so whoever uses it gets the same, complete module. (The standard
library's ``importlib.util.LazyLoader`` would not do here: in Python 3.11 the next ``import scipy.stats``
reads ``__spec__`` and that alone runs the module.) Only plain ``import x.y`` statements can be deferred
(``from x import name`` reads the attribute at once), which is why the list is short. Installing it
twice, or after the module was imported, changes nothing.
"""

from __future__ import annotations

import importlib.abc
import sys
import threading
import types

LAZY = frozenset({"scipy.stats"})


def install(names=LAZY) -> bool:
    """Put the finder first on ``sys.meta_path`` (once); True if it is there."""
    if not any(isinstance(f, _DeferFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _DeferFinder(frozenset(names)))
    return True


def spec_from_others(me, fullname, path, target=None):
    """The spec the rest of ``sys.meta_path`` (every finder but ``me``) finds for ``fullname``, or None."""
    for finder in sys.meta_path:
        if finder is me or not hasattr(finder, "find_spec"):
            continue
        spec = finder.find_spec(fullname, path, target)
        if spec is not None:
            return spec
    return None


class _DeferFinder(importlib.abc.MetaPathFinder):
    def __init__(self, names: frozenset[str]):
        self.names = names

    def find_spec(self, fullname, path, target=None):
        if fullname not in self.names:
            return None
        spec = spec_from_others(self, fullname, path, target)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _DeferLoader(spec.loader)
        return spec


class _DeferLoader(importlib.abc.Loader):
    def __init__(self, inner):
        self.inner = inner
        self.lock = threading.RLock()

    def create_module(self, spec):
        return self.inner.create_module(spec)

    def exec_module(self, module):
        module.__class__ = _Deferred  # its code runs on the first attribute it does not have yet

    def run(self, module) -> None:
        with self.lock:
            if type(module) is _Deferred:
                module.__class__ = types.ModuleType
                try:
                    self.inner.exec_module(module)
                except BaseException:
                    sys.modules.pop(module.__name__, None)  # as a failed import leaves nothing behind
                    raise

    def __getattr__(self, name):  # get_source, get_filename, is_package, ... as the real loader has them
        return getattr(self.inner, name)


class _Deferred(types.ModuleType):
    def __getattr__(self, name):
        loader = self.__dict__["__spec__"].loader
        loader.run(self)
        return getattr(self, name)
