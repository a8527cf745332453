"""Name -> class tables for tasks, models, measurements and phenomena, and plugin loading.

A task, model, measurement or phenomenon registers itself with a decorator; configs refer to it
by name, and a misspelt name fails with the valid choices and a "did you mean". The name is
written once, in the decorator (or the entry point): registering gives the class's `Config` a
`name` field that admits that name alone and defaults to it. Code outside the package joins in
two ways, without editing it: an installed distribution's entry points (group
`dynamics_lab.tasks`, `.models`, `.measurements`, `.phenomena`; the value is a module to import or
a class to register under the entry point's name), or an experiment's `plugins:` list of module
names, .py files and package folders (`import_plugins`; a folder as the path of its
`__init__.py`).
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import inspect
import sys
import typing
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Generic, Literal, TypeVar

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


_config_names: dict[type, str] = {}


def name_config(config: type | None, name: str, kind: str) -> None:
    """Make `name` the one value, and the default, of a registered class's `Config.name`.

    A Config that declares `name` itself keeps its declaration, which must admit `name`; one
    Config serves one registered name. Configs without a `name` field are left alone.
    """
    fields = getattr(config, "model_fields", None)
    if not fields or "name" not in fields:
        return
    if _config_names.get(config, name) != name:
        raise ValueError(f"{kind} '{name}': {config.__qualname__} is already the Config of "
                         f"'{_config_names[config]}'; give each registered class its own Config")
    declared = fields["name"].annotation
    if "name" in inspect.get_annotations(config) and declared is not str:
        if typing.get_origin(declared) is Literal and name not in typing.get_args(declared):
            raise ValueError(f"{kind} '{name}': {config.__qualname__}.name admits "
                             f"{', '.join(map(repr, typing.get_args(declared)))}, not '{name}' "
                             "(leave the name to the registration)")
    elif fields["name"].default != name or typing.get_origin(declared) is not Literal:
        from pydantic.fields import FieldInfo

        fields["name"] = FieldInfo(annotation=Literal[name], default=name)  # type: ignore
        config.model_rebuild(force=True)
    _config_names[config] = name


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
            name_config(getattr(obj, "Config", None), name, self.kind)
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
    """Import each plugin once: a module name, or a path to a .py file or to a package folder's
    `__init__.py` (imported by path).

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
    package = path.name == "__init__.py"  # a folder: its modules import as the package's own
    name = f"dynlab_plugin_{path.parent.name if package else path.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(
        name, path, submodule_search_locations=[str(path.parent)] if package else None)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    _imported_files[path] = name
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:
        del sys.modules[name], _imported_files[path]
        raise PluginError(f"plugin file {path} failed to import: {one_line(exc)}") from None

