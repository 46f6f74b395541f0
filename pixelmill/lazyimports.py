"""Modules that libraries import at module level but use only on rare paths, run on first use instead.

Two kinds, both for a short, measured list:

- **deferred modules** (``LAZY``): diffusers' schedulers run ``import scipy.stats`` and ``from scipy import
  integrate`` when they are imported, for the beta noise schedule (``use_beta_sigmas``) and the LMS
  scheduler alone. The module object is made at once (with its
  name, spec, path and loader) and its code runs on the first access to any other attribute, under a lock,
  so whoever uses it gets the same, complete module. (The standard library's ``importlib.util.LazyLoader``
  would not do here: in Python 3.11 the next ``import scipy.stats`` reads ``__spec__`` and that alone runs
  the module.)
- **stand-ins** (``STANDINS``): a deferred module that also answers ``from x import name`` for a few names
  without running, because the importer binds them at module level but uses them only on rare paths.
  transformers imports ``TransformGetItemToIndex`` from ``torch._dynamo`` (for its vmap mask path) and
  ``linear_sum_assignment`` from ``scipy.optimize`` (for object-detection losses); diffusers decorates its
  attention classes with ``torch._dynamo.allow_in_graph`` and asks ``isinstance(m,
  torch._dynamo.eval_frame.OptimizedModule)`` for every pipeline component. ``torch._dynamo`` alone costs
  about a second of CPU to import on this project's 2-core machine, and a one-shot run on the CPU never
  compiles. Each stand-in is exact for what it stands for:

  * a *function* forwards its call to the real one (the module runs first);
  * a *class* forwards calls and attribute reads to the real class; ``isinstance``/``issubclass`` against it
    are False while the module has not run (no instance of a class can exist before its module ran) and
    the real answer after;
  * ``allow_in_graph`` records the callables it is given and returns them unchanged, as the real one does;
    the records are handed to the real ``allow_in_graph`` the moment ``torch._dynamo`` runs (only a running
    dynamo reads them), and calls after that go straight to it;
  * ``disable`` (``torch.compiler.disable``, which transformers applies to a few methods at class
    definition) returns a wrapper that calls the function directly while dynamo has not run (nothing can
    be compiling then) and through the real ``disable`` wrapper once it has; ``assume_constant_result``
    marks the function as the real one does;
  * a *submodule* attribute (``torch._dynamo.eval_frame``) imports that submodule, itself deferred.

  Any other attribute, or any plain ``import`` of a submodule, runs the real module (its package first)
  and gives the real thing; from the moment a package starts running, its stand-ins stop answering, so the
  package's own code always sees real objects.

``PIXELMILL_LAZY_TRACE=1`` prints what made each deferred module run; ``PIXELMILL_LAZY_IMPORTS=off`` turns
all of this off.

Installing it twice, or after the module was imported, changes nothing.
"""

from __future__ import annotations

import functools
import importlib
import importlib.abc
import importlib.machinery
import os
import sys
import threading
import traceback
import types

LAZY = frozenset({"scipy.stats", "scipy.integrate"})

FUNCTION, CLASS, SUBMODULE = "function", "class", "submodule"
ALLOW_IN_GRAPH, DISABLE, ASSUME_CONSTANT = "allow_in_graph", "disable", "assume_constant_result"
STANDINS: dict[str, dict[str, str]] = {
    "torch._dynamo": {"allow_in_graph": ALLOW_IN_GRAPH, "disable": DISABLE,
                      "assume_constant_result": ASSUME_CONSTANT, "eval_frame": SUBMODULE},
    "torch._dynamo.eval_frame": {"OptimizedModule": CLASS},
    "torch._dynamo._trace_wrapped_higher_order_op": {"TransformGetItemToIndex": CLASS},
    "scipy.optimize": {"linear_sum_assignment": FUNCTION},
}
# the stand-ins without torch._dynamo's, for long-lived processes that may compile
SCIPY_STANDINS = {name: names for name, names in STANDINS.items() if name.startswith("scipy.")}


def install(names=LAZY, standins=None, environ=os.environ) -> bool:
    """Put the finder first on ``sys.meta_path`` (once); True if it is there.

    ``PIXELMILL_LAZY_IMPORTS=off`` leaves every import as the libraries wrote it."""
    if environ.get("PIXELMILL_LAZY_IMPORTS", "").strip().lower() in {"off", "0", "false", "no"}:
        return False
    if not any(isinstance(f, _DeferFinder) for f in sys.meta_path):
        table = STANDINS if standins is None else standins
        sys.meta_path.insert(0, _DeferFinder(frozenset(names) | frozenset(table), table))
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


def is_deferred(module) -> bool:
    """True while ``module`` is a deferred module whose code has not run."""
    return type(module) is _Deferred


class _DeferFinder(importlib.abc.MetaPathFinder):
    def __init__(self, names: frozenset[str], standins: dict[str, dict[str, str]]):
        self.names = names
        self.standins = standins

    def find_spec(self, fullname, path, target=None):
        if fullname not in self.names:
            parent = sys.modules.get(fullname.rpartition(".")[0])
            if type(parent) is _Deferred:
                return self._after_parent(parent, fullname)
            return None
        spec = spec_from_others(self, fullname, path, target)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _DeferLoader(spec.loader, self.standins.get(fullname, {}))
        return spec

    def _after_parent(self, parent, fullname):
        """A plain import of a submodule of a deferred package: the package runs first, as it would have."""
        parent.__spec__.loader.run(parent)
        done = sys.modules.get(fullname)
        if done is None:
            return None  # the package did not import it: the other finders find it as usual
        return importlib.machinery.ModuleSpec(fullname, _Existing(done), origin=getattr(done.__spec__, "origin", None))


class _Existing(importlib.abc.Loader):
    """The module the package's own code imported meanwhile: the import gets that one, not a second copy."""

    def __init__(self, module):
        self.module = module
        self.original = module.__spec__

    def create_module(self, spec):
        return self.module

    def exec_module(self, module):
        module.__spec__ = self.original  # the import system set ours; the module keeps its own


class _DeferLoader(importlib.abc.Loader):
    def __init__(self, inner, standins: dict[str, str]):
        self.inner = inner
        self.standins = standins
        self.made: dict[str, object] = {}
        self.started = False  # the real code began: stand-ins no longer answer
        self.lock = threading.RLock()
        self.recorded: list = []  # allow_in_graph calls to hand over

    def create_module(self, spec):
        return self.inner.create_module(spec)

    def exec_module(self, module):
        module.__class__ = _Deferred  # its code runs on the first attribute it does not have yet

    def run(self, module) -> None:
        parent = sys.modules.get(module.__name__.rpartition(".")[0])
        if type(parent) is _Deferred:
            # a package before its submodules, as a plain import does (and its lock before ours: the package's
            # code may run this module meanwhile)
            parent.__spec__.loader.run(parent)
        with self.lock:
            if type(module) is not _Deferred or self.started:
                return
            self.started = True
            if os.environ.get("PIXELMILL_LAZY_TRACE"):
                print(f"[pixelmill.lazyimports] running {module.__name__} for:\n"
                      + "".join(traceback.format_stack()[-14:-2]), file=sys.stderr)
            module.__class__ = types.ModuleType
            try:
                self.inner.exec_module(module)
            except BaseException:
                sys.modules.pop(module.__name__, None)  # as a failed import leaves nothing behind
                self.started = False
                raise
            self._hand_over(module)

    def _hand_over(self, module) -> None:
        real = getattr(module, "allow_in_graph", None)
        pending, self.recorded = self.recorded, []
        for fn in pending:
            real(fn)

    def standin(self, module, name: str):
        """The stand-in for ``name``, or None when there is none (or the module is running)."""
        kind = self.standins.get(name)
        if kind is None or self.started or _package_started(module.__name__):
            return None
        if name not in self.made:
            self.made[name] = _make(kind, module, name, self)
        return self.made[name]

    def __getattr__(self, name):  # get_source, get_filename, is_package, ... as the real loader has them
        return getattr(self.inner, name)


def _package_started(name: str) -> bool:
    """True when a deferred package above ``name`` has begun to run: its code must see real objects."""
    while "." in name:
        name = name.rpartition(".")[0]
        above = sys.modules.get(name)
        spec = getattr(above, "__spec__", None)
        if isinstance(getattr(spec, "loader", None), _DeferLoader) and type(above) is not _Deferred:
            return True
    return False


def _real(module, name: str):
    """``module.name`` after the module ran (whatever the module object in sys.modules is now)."""
    if type(module) is _Deferred:
        module.__spec__.loader.run(module)
    return getattr(module, name)


def _ran(module) -> bool:
    return type(module) is not _Deferred


def _make(kind: str, module, name: str, loader: _DeferLoader):
    if kind == SUBMODULE:
        return importlib.import_module(f"{module.__name__}.{name}")
    if kind == FUNCTION:
        return _Forward(module, name)
    if kind == ALLOW_IN_GRAPH:
        def allow_in_graph(fn):
            with loader.lock:
                if not _ran(module) and callable(fn) and not isinstance(fn, (list, tuple)):
                    loader.recorded.append(fn)  # kept alive, as the classes it is given are anyway
                    return fn
            return _real(module, name)(fn)
        allow_in_graph.__module__ = module.__name__
        return allow_in_graph
    if kind == ASSUME_CONSTANT:
        def assume_constant_result(fn):
            if _ran(module):
                return _real(module, name)(fn)
            fn._dynamo_marked_constant = True  # all the real decorator does; dynamo reads it when it traces
            return fn
        return assume_constant_result
    if kind == DISABLE:
        return _disable_standin(module, name)
    if kind == CLASS:
        return _StandInMeta(name, (), {"__module__": module.__name__, "_pm_module": module, "_pm_name": name})
    raise ValueError(f"unknown stand-in kind {kind!r}")


def _disable_standin(module, name):
    def disable(fn=None, recursive=True, **options):
        if _ran(module) or (fn is not None and not callable(fn)):
            return _real(module, name)(fn, recursive, **options)
        if fn is None:  # used as @disable(recursive=...)
            return functools.partial(disable, recursive=recursive, **options)
        state = {}

        @functools.wraps(fn)
        def disabled(*args, **kwargs):
            if not _ran(module):  # nothing is compiling: there is nothing to disable
                return fn(*args, **kwargs)
            if "real" not in state:
                state["real"] = _real(module, name)(fn, recursive, **options)
            return state["real"](*args, **kwargs)
        return disabled
    return disable


class _Forward:
    """A function standing in for one that lives in a deferred module: calls and attributes go to the real one."""

    def __init__(self, module, name: str):
        self._pm_module, self._pm_name = module, name
        self.__name__ = self.__qualname__ = name
        self.__module__ = module.__name__

    def __call__(self, *args, **kwargs):
        return _real(self._pm_module, self._pm_name)(*args, **kwargs)

    def __getattr__(self, attribute):
        return getattr(_real(self._pm_module, self._pm_name), attribute)


class _StandInMeta(type):
    """A class standing in for one that lives in a deferred module (see the module docstring)."""

    def _pm_real(cls):
        return _real(type.__getattribute__(cls, "_pm_module"), type.__getattribute__(cls, "_pm_name"))

    def _pm_loaded(cls):
        module = type.__getattribute__(cls, "_pm_module")
        return cls._pm_real() if _ran(module) else None

    def __instancecheck__(cls, obj):
        real = cls._pm_loaded()
        return real is not None and isinstance(obj, real)

    def __subclasscheck__(cls, sub):
        real = cls._pm_loaded()
        return real is not None and issubclass(sub, real)

    def __call__(cls, *args, **kwargs):
        return cls._pm_real()(*args, **kwargs)

    def __getattr__(cls, name):
        return getattr(cls._pm_real(), name)


class _Deferred(types.ModuleType):
    def __getattr__(self, name):
        spec = self.__dict__["__spec__"]
        loader = spec.loader
        if name == "__path__" and spec.submodule_search_locations is None:
            # the import system asks every module it imports from; only packages have one (set before
            # their code runs), so a plain module's answer does not depend on running it
            raise AttributeError(name)
        if not name.startswith("__"):
            standin = loader.standin(self, name)
            if standin is not None:
                return standin
        loader.run(self)
        return getattr(self, name)
