"""The names a registry would hold, read without importing the built-ins (no torch): what
`dynlab list` prints in well under a second.

Built-ins register with a `@REGISTRY.register("name")` decorator, so their names are read from
the source of the registry's built-in packages (a pattern match, no parsing). Entry points that
name a class give their name for free; one that names a module has to be imported to learn what
it registers (the plugin's own cost).
A test checks that these names equal the registry's own after a full import.
"""

from __future__ import annotations

import importlib.util
import re
from importlib.metadata import entry_points
from pathlib import Path

from dynamics_lab import registry as registry_module
from dynamics_lab.registry import Registry


def _variable(registry: Registry) -> str:
    """The registry's name in registry.py (`TASKS`), as the decorators spell it."""
    return next(name for name, value in vars(registry_module).items() if value is registry)


def _package_files(module: str) -> list[Path]:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        return []
    origin = Path(spec.origin)
    return sorted(origin.parent.rglob("*.py")) if origin.name == "__init__.py" else [origin]


def _decorated_names(path: Path, variable: str) -> list[str]:
    """Names registered in one source file by `@variable.register("name")`."""
    pattern = rf"@{variable}\.register\(\s*[\"']([^\"']+)[\"']\s*\)"
    return re.findall(pattern, path.read_text())


def names(registry: Registry) -> list[str]:
    """Sorted names of the registry's built-ins and installed entry points, imported only for
    entry points that name a module."""
    variable = _variable(registry)
    found = {name for module in registry._builtin_modules
             for path in _package_files(module) for name in _decorated_names(path, variable)}
    for point in entry_points(group=registry.entry_point_group):
        if ":" in point.value:  # module:Class, registered under the entry point's name
            found.add(point.name)
        else:  # a module registering on import: only the registry knows what it adds
            return registry.names()
    return sorted(found)
