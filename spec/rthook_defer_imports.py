"""PyInstaller runtime hook: defer what Flask imports at module level but a server never uses.

Why: while `flask` imports, werkzeug pulls in its development server
(`werkzeug.serving`: http.server, http.client, email, ...), its test client
(`werkzeug.test`) and `flask.cli` pulls in `importlib.metadata`. In the frozen
binary every module is read from the archive, so these cost about 12% of a cold
start (measured on a 2-core Debian 12 machine: 1.13x -> 1.01x of unfrozen Python). `hello serve`
runs waitress and never calls them.

How: only while the first of `flask`/`werkzeug` executes, `werkzeug.serving`,
`werkzeug.test` and `importlib.metadata` resolve to stand-in modules. Every
name taken from a stand-in is a small function that imports the real module
when first *called* (`is_running_from_reloader`, `run_simple`: only used by
`app.run()` and the `flask` command). When the import is done the stand-ins
leave sys.modules, so any later `import werkzeug.test` gets the real module;
`werkzeug.Client` (a class) is resolved lazily through a module __getattr__
(PEP 562), and `importlib.metadata` through the stand-in, which swaps itself
for the real module on first attribute access.

It only ever changes *when* a module is imported, never what it contains; if
anything here fails, the import simply happens the ordinary way. This file is
part of the build (spec/), not of the service: hello/ knows nothing about it.
"""

import sys
import types

_DEFERRED = ("werkzeug.serving", "werkzeug.test", "importlib.metadata")
_TRIGGERS = ("flask", "werkzeug")


def _real(modname):
    stub = sys.modules.get(modname)
    if isinstance(stub, _StandIn):
        del sys.modules[modname]
    module = __import__(modname, fromlist=["_"])
    return module


def _deferred_function(modname, name):
    def call(*args, **kwargs):
        return getattr(_real(modname), name)(*args, **kwargs)

    call.__name__ = call.__qualname__ = name
    call.__module__ = modname
    return call


class _StandIn(types.ModuleType):
    """A module whose attributes load the real module only when used."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        if self.__name__ == "importlib.metadata":  # used as a module: load it now
            return getattr(_real(self.__name__), name)
        return _deferred_function(self.__name__, name)


def _werkzeug_getattr(name):
    if name == "Client":
        return _real("werkzeug.test").Client
    raise AttributeError(f"module 'werkzeug' has no attribute {name!r}")


class _LoaderProxy:
    """The real loader, except that exec_module runs inside the deferral window."""

    def __init__(self, loader, finder):
        self._loader = loader
        self._finder = finder

    def __getattr__(self, name):
        return getattr(self._loader, name)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._finder.open_window()
        try:
            self._loader.exec_module(module)
        finally:
            self._finder.close_window()


class _DeferFinder:
    """One-shot meta path finder: wraps the first import of flask or werkzeug."""

    def __init__(self):
        self.busy = False
        self.saved = {}

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in _TRIGGERS or self.busy:
            return None
        self.busy = True
        try:
            spec = None
            for finder in sys.meta_path:
                if finder is self or not hasattr(finder, "find_spec"):
                    continue
                spec = finder.find_spec(fullname, path, target)
                if spec is not None:
                    break
        finally:
            self.busy = False
        self.retire()
        if spec is None or spec.loader is None:
            return None
        spec.loader = _LoaderProxy(spec.loader, self)
        return spec

    def retire(self):
        if self in sys.meta_path:
            sys.meta_path.remove(self)

    def open_window(self):
        import importlib

        for modname in _DEFERRED:
            if modname not in sys.modules:
                sys.modules[modname] = _StandIn(modname)
        if not hasattr(importlib, "metadata"):
            importlib.metadata = sys.modules["importlib.metadata"]

    def close_window(self):
        for modname in _DEFERRED:
            if isinstance(sys.modules.get(modname), _StandIn):
                del sys.modules[modname]
        werkzeug = sys.modules.get("werkzeug")
        if werkzeug is not None:
            # `from .test import Client` bound a stand-in function; resolve it lazily instead.
            werkzeug.__dict__.pop("Client", None)
            werkzeug.__getattr__ = _werkzeug_getattr
            for sub in ("serving", "test"):
                if isinstance(werkzeug.__dict__.get(sub), _StandIn):
                    del werkzeug.__dict__[sub]


sys.meta_path.insert(0, _DeferFinder())
