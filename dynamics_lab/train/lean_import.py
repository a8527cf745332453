"""Import Lightning without the plotting and signal-processing stacks a run never uses.

Lightning imports torchmetrics, which imports matplotlib (for `Metric.plot`) and scipy.signal
(for audio metrics) whenever they are installed: about a second of every run's start, for
nothing a run calls. While Lightning is first imported, torchmetrics' probes for those two
packages (`lightning_utilities`' `package_available` and `RequirementCache`) answer "absent";
afterwards every probe answers truthfully again, and scipy or matplotlib import as usual
wherever a caller needs them. A process that has already imported Lightning is left as it is;
`DYNLAB_FULL_IMPORTS=1` turns this off.

There is no public switch for these probes; pyproject.toml bounds lightning-utilities to the
tested release and tests/test_lightning_internals.py names a probe that moved.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

HIDDEN = ("matplotlib", "scipy")


@contextlib.contextmanager
def optional_packages_hidden(names: tuple[str, ...] = HIDDEN) -> Iterator[None]:
    """`lightning_utilities` probes report `names` as not installed inside the block."""
    try:
        from lightning_utilities.core import imports as probes

        check, available = probes.RequirementCache._check_requirement, probes.package_available
    except (ImportError, AttributeError):  # another layout: import everything, as usual
        yield
        return
    hiding = [True]

    def hidden(name: str) -> bool:
        return hiding[0] and name.split(".")[0] in names

    def check_requirement(self) -> None:
        if hidden(_project(self.requirement or "")):
            self.available, self.message = False, f"{self.requirement!r} hidden while importing"
            return
        check(self)

    def package_available(name: str) -> bool:
        return False if hidden(name) else available(name)

    probes.RequirementCache._check_requirement = check_requirement
    probes.package_available = package_available
    try:
        yield
    finally:
        hiding[0] = False  # functions bound during the import now answer truthfully
        probes.RequirementCache._check_requirement = check
        probes.package_available = available


def _project(requirement: str) -> str:
    """The project name of a requirement string: 'scipy' of 'scipy>=1.8.0'."""
    end = next((i for i, c in enumerate(requirement) if not (c.isalnum() or c in "_-.")),
               len(requirement))
    return requirement[:end]


def import_lightning() -> None:
    """Import Lightning (once per process), leaving out what only plots and audio need."""
    if "lightning" in sys.modules or os.environ.get("DYNLAB_FULL_IMPORTS") == "1":
        return
    with optional_packages_hidden():
        import lightning  # noqa: F401
