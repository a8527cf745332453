"""The lattice and quadtree of a phase diagram: axes, points, cells; no runs, no files.

A search over one or two config keys samples points of one lattice: `coarse` points per axis
first, then each refinement halves a cell, down to the finest lattice of
`(coarse - 1) * 2**levels + 1` points per axis (`levels` is the least that reaches the requested
resolution). Points are integer index tuples on the finest lattice, so a search, a resumed
search and a full grid at the finest resolution name the same points with the same values.

The quadtree over these cells is phenomena/phase_tree.py.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

from dynamics_lab.schema import ConfigError

Point = tuple[int, ...]


@dataclass(frozen=True)
class Cell:
    """A cube of the finest lattice: its lowest corner and its edge length in finest steps."""

    corner: Point
    size: int

    @property
    def centre(self) -> Point:
        return tuple(c + self.size // 2 for c in self.corner)

    def children(self) -> list[Cell]:
        half = self.size // 2
        return [Cell(tuple(c + half * o for c, o in zip(self.corner, offs)), half)
                for offs in itertools.product((0, 1), repeat=len(self.corner))]

    def edges(self) -> list[tuple[Point, Point, Point]]:
        """(end, end, midpoint) of each edge of a square; none for an interval, whose midpoint
        is its centre."""
        d, half = len(self.corner), self.size // 2
        out = []
        for a in range(d):
            others = [b for b in range(d) if b != a]
            for offs in itertools.product((0, self.size), repeat=len(others)):
                base = list(self.corner)
                for b, o in zip(others, offs):
                    base[b] += o
                ends = [list(base), list(base), list(base)]
                ends[1][a] += self.size
                ends[2][a] += half
                out.append((tuple(ends[0]), tuple(ends[1]), tuple(ends[2])))
        return out if d > 1 else []

    def boundary(self) -> list[Point]:
        """Every finest-lattice point on the closed boundary (the corners in 1-D)."""
        if len(self.corner) == 1:
            return [self.corner, (self.corner[0] + self.size,)]
        ranges = [range(c, c + self.size + 1) for c in self.corner]
        return [p for p in itertools.product(*ranges)
                if any(v in (c, c + self.size) for v, c in zip(p, self.corner))]

    def points(self) -> list[Point]:
        return list(itertools.product(*(range(c, c + self.size + 1) for c in self.corner)))


@dataclass(frozen=True)
class Axis:
    """One swept config key over LO..HI, evenly spaced or (log) geometric."""

    key: str
    lo: float
    hi: float
    log: bool = False
    integer: bool = False  # the key holds an int: lattice values are rounded to integers

    def to_dict(self) -> dict:
        return {"key": self.key, "lo": self.lo, "hi": self.hi, "log": self.log,
                "integer": self.integer}

    def spec(self) -> str:
        return f"{self.key}={self.lo:g}:{self.hi:g}" + (":log" if self.log else "")


def parse_axis(text: str, flag: str = "--x") -> Axis:
    """`KEY=LO:HI[:log]` -> Axis; an empty range, LO >= HI or a log axis reaching <= 0 is a
    one-line ConfigError."""
    key, sep, rest = text.partition("=")
    key, parts = key.strip(), rest.split(":")
    if not sep or not key or len(parts) not in (2, 3) or (len(parts) == 3
                                                          and parts[2].strip() != "log"):
        raise ConfigError(f"{flag} {text!r}: expected KEY=LO:HI or KEY=LO:HI:log, e.g. "
                          "optim.lr=0.01:1:log")
    try:
        lo, hi = float(parts[0]), float(parts[1])
    except ValueError:
        raise ConfigError(f"{flag} {text!r}: LO and HI must be numbers") from None
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ConfigError(f"{flag} {text!r}: LO and HI must be finite")
    if lo == hi:
        raise ConfigError(f"{flag} {text!r}: empty range (LO == HI)")
    if lo > hi:
        raise ConfigError(f"{flag} {text!r}: LO must be below HI")
    log = len(parts) == 3
    if log and lo <= 0:
        raise ConfigError(f"{flag} {text!r}: a log axis must stay above 0 (LO={lo:g})")
    return Axis(key, lo, hi, log)


def _rounded(raw: list[float], integer: bool) -> list[float] | None:
    """The fewest significant digits (3..12) that keep the values distinct and in order."""
    if integer:
        values = [int(round(v)) for v in raw]
        return values if all(a < b for a, b in zip(values, values[1:])) else None
    for digits in range(3, 13):
        values = [float(f"{v:.{digits}g}") for v in raw]
        if all(a < b for a, b in zip(values, values[1:])):
            return values
    return None


@dataclass(frozen=True)
class Lattice:
    """The finest lattice of a search and its coarse start (module docstring)."""

    axes: tuple[Axis, ...]
    coarse: int = 4
    levels: int = 2
    _values: tuple = field(default=(), compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.coarse < 2:
            raise ConfigError(f"--coarse {self.coarse}: need at least 2 points per axis")
        values = []
        for axis in self.axes:
            n = self.span + 1
            if axis.log:
                ratio = math.log(axis.hi / axis.lo)
                raw = [axis.lo * math.exp(ratio * i / self.span) for i in range(n)]
            else:
                raw = [axis.lo + (axis.hi - axis.lo) * i / self.span for i in range(n)]
            raw[0], raw[-1] = axis.lo, axis.hi
            kept = _rounded(raw, axis.integer)
            if kept is None:
                raise ConfigError(f"{axis.key}: {n} points over {axis.lo:g}..{axis.hi:g} repeat "
                                  "values; lower --resolution or widen the range")
            values.append(tuple(kept))
        object.__setattr__(self, "_values", tuple(values))

    @classmethod
    def for_resolution(cls, axes: tuple[Axis, ...], coarse: int, resolution: int) -> Lattice:
        """The least number of halvings of the coarse grid that reaches `resolution` points per
        axis."""
        if resolution < coarse:
            raise ConfigError(f"--resolution {resolution} is below the coarse grid's {coarse} "
                              "points per axis")
        levels = 0
        while (coarse - 1) * 2 ** levels + 1 < resolution:
            levels += 1
        return cls(tuple(axes), coarse, levels)

    @property
    def span(self) -> int:
        """Finest-lattice intervals per axis."""
        return (self.coarse - 1) * 2 ** self.levels

    @property
    def resolution(self) -> int:
        return self.span + 1

    @property
    def dim(self) -> int:
        return len(self.axes)

    @property
    def size(self) -> int:
        """Points of the full grid at the finest resolution."""
        return self.resolution ** self.dim

    def values(self, axis: int) -> tuple:
        return self._values[axis]

    def value(self, point: Point) -> tuple:
        return tuple(self._values[a][i] for a, i in enumerate(point))

    def index(self, values: tuple) -> Point | None:
        """The lattice point with these values (None when one is off the lattice)."""
        out = []
        for a, v in enumerate(values):
            try:
                out.append(self._values[a].index(v))
            except ValueError:
                return None
        return tuple(out)

    def coarse_points(self) -> list[Point]:
        step = 2 ** self.levels
        return list(itertools.product(*[range(0, self.span + 1, step)] * self.dim))

    def coarse_cells(self) -> list[Cell]:
        step = 2 ** self.levels
        return [Cell(c, step) for c in
                itertools.product(*[range(0, self.span, step)] * self.dim)]

    def all_points(self) -> list[Point]:
        return list(itertools.product(*[range(self.span + 1)] * self.dim))

    def to_dict(self) -> dict:
        return {"axes": [a.to_dict() for a in self.axes], "coarse": self.coarse,
                "levels": self.levels}

    @classmethod
    def from_dict(cls, data: dict) -> Lattice:
        return cls(tuple(Axis(**a) for a in data["axes"]), data["coarse"], data["levels"])
