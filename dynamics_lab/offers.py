"""What a task offers the measurements beside its batches, declared by name: the contract
between tasks/ and measure/, neither of which imports the other. Torch-free.

A task lists what it offers in its `offers` class attribute (tasks/base.py checks that each
name is defined on the class); a measurement lists what it cannot do without in `needs()` and
is refused at fit start, in one line naming the task and the missing name, when the task does
not offer it. Whatever else a measurement reads off the datamodule it reads through `offered`,
so an attribute that merely shares a name (a teacher network's `teacher(x)` method) is never
mistaken for the offer. A datamodule that declares nothing (one of the user's own) is read by
the attributes it has.
"""

from __future__ import annotations

from typing import Any

TEACHER = "teacher"  # (U, S, V) of a linear teacher W* = U diag(S) V^T, float64
MODES = "modes"  # (eigenvalues, eigenvectors) of the augmentation's covariance
RELEVANT = "relevant"  # the input coordinates the target depends on
POPULATION = "population"  # population() -> (every token, its target, its probability)
COUNTS = "counts"  # counts() -> how often each token occurs in the training split
SPLITS = "splits"  # {"train": (x, y), "val": (x, y)}
PROBE_BATCH = "probe_batch"  # probe_batch(n, seed) -> a fixed subset of the training split


def declared(datamodule: Any) -> frozenset[str] | None:
    """The names a datamodule declares it offers; None when it declares nothing."""
    offers = getattr(type(datamodule), "offers", None)
    return None if offers is None else frozenset(offers)


def offers(datamodule: Any, name: str) -> bool:
    """Whether the datamodule offers `name` (by declaration, else by having the attribute)."""
    if datamodule is None:
        return False
    names = declared(datamodule)
    return name in names if names is not None else hasattr(datamodule, name)


def offered(datamodule: Any, name: str, default: Any = None) -> Any:
    """The datamodule's `name` when it offers it, else `default`."""
    return getattr(datamodule, name, default) if offers(datamodule, name) else default


def refusal(measurement: str, datamodule: Any, needs: tuple[str, ...]) -> str | None:
    """One line saying which need the task does not offer; None when it offers them all."""
    missing = [name for name in needs if not offers(datamodule, name)]
    if not missing:
        return None
    if datamodule is None:
        return (f"measurement '{measurement}' needs the task to offer `{missing[0]}`, but the "
                "trainer has no datamodule")
    task = getattr(getattr(datamodule, "config", None), "name", None) or type(datamodule).__name__
    has = sorted(declared(datamodule) or ())
    return (f"measurement '{measurement}' needs the task to offer `{missing[0]}`; task '{task}' "
            f"does not (it offers: {', '.join(has) or 'nothing beyond its batches'})")
