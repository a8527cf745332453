"""Name -> class tables for tasks, models, measurements and phenomena, and plugin loading.

A task, model, measurement or phenomenon registers itself with a decorator; configs refer to it
by name, and a misspelt name fails with the valid choices and a "did you mean". Code outside the
package joins in two ways, without editing it: an installed distribution's entry points (group
`dynamics_lab.tasks`, `.models`, `.measurements`, `.phenomena`; the value is a module to import or
a class to register under the entry point's name), or an experiment's `plugins:` list of module
names and .py files (`import_plugins`).
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Generic, TypeVar

T = TypeVar("T")


class PluginError(ImportError):
    """A plugin module or file that cannot be imported; the message is one line."""


def one_line(exc: BaseException) -> str:
    """`Type: message` of an exception, its lines joined (a SystemExit names its code)."""
    if isinstance(exc, SystemExit):
        return f"called sys.exit({exc.code!r})"
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class UnknownNameError(KeyError):
    """A name that is not in a registry; the message names the valid choices."""

    def __str__(self) -> str:
        return str(self.args[0])


def did_you_mean(name: str, choices: list[str]) -> str:
    """' (did you mean 'x'?)' when a close match exists, else ''."""
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


class Registry(Generic[T]):
    """A table of named classes of one kind ('task', 'model', ...)."""

    def __init__(self, kind: str, builtin_modules: tuple[str, ...] = (), plural: str = ""):
        self.kind = kind
        self.plural = plural or kind + "s"
        self._items: dict[str, T] = {}
        self._builtin_modules = builtin_modules
        self._loaded = False

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if not getattr(obj, "__module__", "").startswith("dynamics_lab."):
                self._load_builtins()  # a plugin sees the built-in names it would shadow
            if name in self._items and self._items[name] is not obj:
                taken = getattr(self._items[name], "__module__", "?")
                raise ValueError(f"{self.kind} '{name}' is registered twice (already by "
                                 f"{taken}); register yours under another name")
            self._items[name] = obj
            return obj

        return decorator

    @property
    def entry_point_group(self) -> str:
        return f"dynamics_lab.{self.plural}"

    def _load_builtins(self) -> None:
        # Built-ins register on import; importing lazily keeps `dynlab --help` free of torch.
        if not self._loaded:
            self._loaded = True
            for module in self._builtin_modules:
                importlib.import_module(module)
            for point in entry_points(group=self.entry_point_group):
                try:
                    obj = point.load()
                except (Exception, SystemExit) as exc:  # a broken plugin names itself
                    raise PluginError(f"entry point '{point.name}' in group "
                                      f"'{self.entry_point_group}' failed to load: "
                                      f"{one_line(exc)}") from None
                if isinstance(obj, type) and point.name not in self._items:
                    self.register(point.name)(obj)

    def get(self, name: str) -> T:
        self._load_builtins()
        if name not in self._items:
            names = self.names()
            raise UnknownNameError(
                f"unknown {self.kind} '{name}'{did_you_mean(name, names)}; "
                f"valid: {', '.join(names)}"
            )
        return self._items[name]

    def build(self, section, /, *args, **context):
        """The instance of the class `section.name` names, built from its validated section.

        Every plugin kind is built this way: the class takes its own Config first, then any
        context the caller supplies (a task's batch size, a model's TaskSpec).
        """
        return self.get(section.name)(section, *args, **context)

    def names(self) -> list[str]:
        self._load_builtins()
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        self._load_builtins()
        return name in self._items


TASKS: Registry = Registry("task", ("dynamics_lab.tasks",))
MODELS: Registry = Registry("model", ("dynamics_lab.models",))
MEASUREMENTS: Registry = Registry("measurement", ("dynamics_lab.measure",))
PHENOMENA: Registry = Registry("phenomenon", ("dynamics_lab.phenomena",), "phenomena")


_imported_files: dict[Path, str] = {}


def import_plugins(plugins: list[str]) -> None:
    """Import each plugin once: a module name, or a path to a .py file (imported by path).

    Importing is what registers the plugin's classes, so this runs before a config's named
    sections are validated, in the CLI and in every sweep worker alike.
    """
    for plugin in plugins:
        if plugin.endswith(".py"):
            _import_file(Path(plugin))
            continue
        try:
            importlib.import_module(plugin)
        except ImportError as exc:
            raise PluginError(f"plugin '{plugin}' cannot be imported: {exc}; give an installed "
                              "module name or a path to a .py file") from None
        except (Exception, SystemExit) as exc:  # its own code failed: one line, not a traceback
            raise PluginError(f"plugin '{plugin}' failed to import: {one_line(exc)}") from None


def _import_file(path: Path) -> None:
    path = path.resolve()
    if path in _imported_files:
        return
    if not path.is_file():
        raise PluginError(f"plugin file not found: {path}")
    # A name unique to the path: two plugins called measures.py in different folders coexist.
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:8]
    name = f"dynlab_plugin_{path.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    _imported_files[path] = name
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:
        del sys.modules[name], _imported_files[path]
        raise PluginError(f"plugin file {path} failed to import: {one_line(exc)}") from None

