"""PyInstaller runtime hook: defer what Flask imports at module level but a server never uses.

Why: while `flask` imports, werkzeug pulls in its development server
(`werkzeug.serving`: http.server, http.client, ...) and test client
(`werkzeug.test`), `flask.cli` pulls in `importlib.metadata`, `flask.templating`
all of jinja2 (its compiler, lexer, filters: the largest package a serving hello
would hold; hello renders no template), `flask.json.provider` decimal (for a
Decimal in a JSON answer), `werkzeug.http` the email package (for HTTP dates) and
`werkzeug.routing.exceptions` difflib (for "did you mean" in a BuildError). In
the frozen binary every module is decompressed from the archive, so these cost a
good part of a cold start and of the memory an idle instance holds
(bench/RESULTS.md `## Probe, memory, start and size`). `hello serve` runs
waitress and never calls them.

How: only while the first of `flask`/`werkzeug` executes, the modules in
_DEFERRED resolve to stand-in modules, and the rest of the program sees the real
ones, imported on first use:
- a module imported as a module (`import decimal`, `import email.utils`) is bound
  to its stand-in, which swaps itself for the real module on the first attribute
  read once the import is done (`isinstance(o, decimal.Decimal)` gets the class);
- a name taken from one (`from werkzeug.serving import run_simple`) is a small
  callable that imports the real module when first *called*. It is an object, not
  a function, so a class attribute holding one (`Flask.jinja_environment =
  Environment`) is not turned into a method. Only names that are only ever called
  may come from a deferred module this way: tests/unit/test_rthook_defer_imports.py
  holds each one to it (a class used with isinstance would break).
When the import is done the stand-ins leave sys.modules, so any later `import
werkzeug.test` gets the real module; `werkzeug.Client` (a class) is resolved
lazily through a module __getattr__ (PEP 562).

It only ever changes *when* a module is imported, never what it contains; if
anything here fails, the import simply happens the ordinary way. This file is
part of the build (spec/), not of the service: hello/ knows nothing about it.
"""

import sys
import types

_DEFERRED = ("werkzeug.serving", "werkzeug.test", "importlib.metadata", "flask.templating",
             "jinja2", "decimal", "email.utils", "difflib")
_TRIGGERS = ("flask", "werkzeug")


def _real(modname):
    stub = sys.modules.get(modname)
    if isinstance(stub, _StandIn):
        del sys.modules[modname]
    return __import__(modname, fromlist=["_"])


class _Deferred:
    """A name of a deferred module: calling it imports the module and calls the real one."""

    def __init__(self, modname, name):
        self.__module__ = modname
        self.__name__ = self.__qualname__ = name

    def __call__(self, *args, **kwargs):
        return getattr(_real(self.__module__), self.__name__)(*args, **kwargs)

    def __repr__(self):
        return f"<deferred {self.__module__}.{self.__name__}>"


class _StandIn(types.ModuleType):
    """A module whose attributes load the real module only when used."""

    def __init__(self, name):
        super().__init__(name)
        self._holders = []  # (module, global name) bound to this stand-in: see close_window

    def __getattr__(self, name):
        if name.startswith("__") or name == "_holders":
            raise AttributeError(name)
        if sys.modules.get(self.__name__) is self and self.__name__ != "importlib.metadata":
            return _Deferred(self.__name__, name)  # `from module import name`, while flask imports
        real = _real(self.__name__)  # used as a module: load it now, and bind it where
        for holder, attribute in self._holders:  # this stand-in was bound, so that
            if holder.__dict__.get(attribute) is self:  # the next read is a plain one
                setattr(holder, attribute, real)
        return getattr(real, name)


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
        self.stand_ins = {}

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
        for modname in _DEFERRED:
            if modname not in sys.modules:
                self.stand_ins[modname] = sys.modules[modname] = _StandIn(modname)
        self.adopt()

    def adopt(self):
        """`import email.utils` binds the real `email`, whose `utils` must then be there:
        the stand-in, which loads the real module when read."""
        for modname, stand_in in self.stand_ins.items():
            parent, _, child = modname.rpartition(".")
            holder = sys.modules.get(parent)
            if holder is not None and child not in holder.__dict__:
                setattr(holder, child, stand_in)

    def close_window(self):
        self.adopt()  # for the packages imported while the window was open
        for modname, stand_in in self.stand_ins.items():
            if sys.modules.get(modname) is stand_in:
                del sys.modules[modname]
        for module in list(sys.modules.values()):  # `import decimal` bound a stand-in
            for attribute, value in list(getattr(module, "__dict__", {}).items()):
                if isinstance(value, _StandIn):
                    value._holders.append((module, attribute))
        werkzeug = sys.modules.get("werkzeug")
        if werkzeug is not None:
            # `from .test import Client` bound a stand-in callable; resolve it lazily instead.
            werkzeug.__dict__.pop("Client", None)
            werkzeug.__getattr__ = _werkzeug_getattr


sys.meta_path.insert(0, _DeferFinder())
