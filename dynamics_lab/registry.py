"""Name -> class tables for tasks, models, measurements and phenomena.

A new task, model or measurement registers itself with a decorator; configs refer to it by
name, and a misspelt name fails with the valid choices and a "did you mean".
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


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
            if name in self._items and self._items[name] is not obj:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._items[name] = obj
            return obj

        return decorator

    def _load_builtins(self) -> None:
        # Built-ins register on import; importing lazily keeps `dynlab --help` free of torch.
        if not self._loaded:
            self._loaded = True
            for module in self._builtin_modules:
                importlib.import_module(module)

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
