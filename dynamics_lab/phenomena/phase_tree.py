"""The quadtree of a phase search over its lattice: leaves, which to refine, what to run next,
and the labels it implies for every point of the finest lattice.

The quadtree is derived, never stored: a cell is split exactly when its centre was sampled.
A leaf is refined when the labels on its closed boundary (corners, and the midpoints its
refined neighbours added) are not one phase label; a split or undetermined point counts as a
disagreement. 1-D: cells are intervals and refinement is bisection.
"""

from __future__ import annotations

import itertools

from dynamics_lab.phenomena.phase_lattice import Cell, Lattice, Point


def leaves(lattice: Lattice, sampled: set[Point]) -> list[Cell]:
    """The quadtree's leaves: coarse cells split wherever their centre was sampled."""
    out, todo = [], lattice.coarse_cells()
    while todo:
        cell = todo.pop()
        if cell.size > 1 and cell.centre in sampled:
            todo += cell.children()
        else:
            out.append(cell)
    return sorted(out, key=lambda c: (-c.size, c.corner))


def known(lattice: Lattice, labels: dict[Point, str],
          phases: frozenset[str]) -> dict[Point, str]:
    """The sampled labels, and those inferred without a run: the midpoint of a split cell's
    edge whose two ends share one phase takes that phase (a boundary that crossed the edge
    would have made its ends differ). Parents first, so inferred ends infer further."""
    out = dict(labels)
    sampled = set(labels)
    level = lattice.coarse_cells()
    while level:
        split = [c for c in level if c.size > 1 and c.centre in sampled]
        for cell in split:
            for a, b, mid in cell.edges():
                if mid not in out and out.get(a) == out.get(b) and out.get(a) in phases:
                    out[mid] = out[a]
        level = [child for c in split for child in c.children()]
    return out


def unresolved(cell: Cell, labels: dict[Point, str], phases: frozenset[str]) -> bool:
    """The labels on the cell's boundary are not one phase (a split or undetermined point, or
    a missing one, counts as a disagreement)."""
    seen = {labels[p] for p in cell.boundary() if p in labels}
    missing = any(p not in labels for p in _corners(cell))
    return missing or len(seen) != 1 or not seen <= phases


def _corners(cell: Cell) -> list[Point]:
    return [tuple(c + cell.size * o for c, o in zip(cell.corner, offs))
            for offs in itertools.product((0, 1), repeat=len(cell.corner))]


def _split_cost(cell: Cell, labels: dict[Point, str], phases: frozenset[str]) -> list[Point]:
    """The points a split must run: the centre, and the midpoint of each edge whose ends
    differ (the others are inferred, `known`)."""
    new = [cell.centre]
    for a, b, mid in cell.edges():
        if mid not in labels and not (labels.get(a) == labels.get(b) and labels.get(a) in phases):
            new.append(mid)
    return new


def next_points(lattice: Lattice, labels: dict[Point, str], phases: frozenset[str],
                max_points: int | None = None) -> list[Point]:
    """The next round: the points that split every unresolved leaf above the finest size, the
    largest cells first, whole cells only while they fit in `max_points`."""
    full = known(lattice, labels, phases)
    chosen: list[Point] = []
    seen = set(full)
    for cell in leaves(lattice, set(labels)):
        if cell.size <= 1 or not unresolved(cell, full, phases):
            continue
        new = [p for p in _split_cost(cell, full, phases) if p not in seen]
        if max_points is not None and len(chosen) + len(new) > max_points:
            continue
        chosen += new
        seen.update(new)
    return sorted(chosen)


def predict(lattice: Lattice, labels: dict[Point, str],
            phases: frozenset[str] | None = None) -> dict[Point, str]:
    """A label for every finest-lattice point: its own where sampled (or inferred, `known`),
    else that of the nearest such point on its leaf's boundary (the leaf's one label when its
    boundary agrees)."""
    sampled = set(labels)
    if phases is not None:
        labels = known(lattice, labels, phases)
    out: dict[Point, str] = {}
    for cell in reversed(leaves(lattice, sampled)):  # the finest leaves know most
        around = [p for p in cell.boundary() if p in labels]
        if not around:
            continue
        for p in cell.points():
            if p in labels:
                out[p] = labels[p]
            elif p not in out:
                near = min(around, key=lambda q: (sum((a - b) ** 2 for a, b in zip(p, q)), q))
                out[p] = labels[near]
    return out
