"""A phase map from a table of runs: each run's phase label, each point's label over its seeds,
the labels over the finest lattice, and what `dynlab phase` and `dynlab report` write from them
(the points table, the map figure, a W&B scatter panel).

A run's label is its phenomenon's (`Detector.phase_label`) when it finished, else its status
(failed, killed, ...). A point's label is the label a strict majority of its runs share;
without one it is `split`. Any label outside the phenomenon's phases (split, undetermined, a
failed run) is refined like a boundary by the search.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from dynamics_lab.phenomena.columns import verdict_key, verdict_of
from dynamics_lab.phenomena.dashboard import Panel
from dynamics_lab.phenomena.phase_lattice import Lattice, Point
from dynamics_lab.phenomena.phase_tree import predict

SPLIT = "split"  # the seeds of a point disagree, no label has a strict majority
FINISHED = ("completed", "diverged")  # statuses whose runs carry a verdict
POINTS_FILE, MAP_FILE, PANEL_FILE = "phase_points.csv", "phase_map.png", "phase_panel.json"
PHASE_COLUMN = "phase"


def run_label(row: dict, detector) -> str:
    """One run's label: its phase when it finished with a verdict, else its status."""
    status = row.get("status")
    if status not in FINISHED or _missing(row.get(verdict_key("outcome"))):
        return str(status or "missing")
    verdict = {k: (None if _missing(v) else v) for k, v in verdict_of(row).items()}
    return detector.phase_label(verdict)


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def majority(labels: list[str]) -> str:
    """The label a strict majority shares, else `split`."""
    if not labels:
        return "missing"
    label, n = Counter(labels).most_common(1)[0]
    return label if 2 * n > len(labels) else SPLIT


def phase_points(table: pd.DataFrame, lattice: Lattice, detector) -> pd.DataFrame:
    """One row per sampled lattice point: its values, index, runs, their labels and the point's
    label. Runs off the lattice are left out."""
    keys = [a.key for a in lattice.axes]
    groups: dict[Point, list[str]] = {}
    for row in table.to_dict("records"):
        point = lattice.index(tuple(row.get(k) for k in keys))
        if point is not None:
            groups.setdefault(point, []).append(run_label(row, detector))
    rows = []
    for point in sorted(groups):
        labels = groups[point]
        counts = ", ".join(f"{k} x{n}" for k, n in Counter(labels).most_common())
        rows.append({**dict(zip(keys, lattice.value(point))),
                     **{f"i{a}": i for a, i in enumerate(point)},
                     "runs": len(labels), "run_labels": counts, PHASE_COLUMN: majority(labels)})
    columns = [*keys, *(f"i{a}" for a in range(lattice.dim)), "runs", "run_labels", PHASE_COLUMN]
    return pd.DataFrame(rows, columns=columns)


def labels_of(points: pd.DataFrame, lattice: Lattice) -> dict[Point, str]:
    return {tuple(int(r[f"i{a}"]) for a in range(lattice.dim)): r[PHASE_COLUMN]
            for r in points.to_dict("records")}


def agreement(labels: dict[Point, str], lattice: Lattice, reference: dict[Point, str],
              phases: frozenset[str]) -> tuple[float, int]:
    """Share of the reference's points whose predicted label matches, and how many compared."""
    guess = predict(lattice, labels, phases)
    common = [p for p in reference if p in guess]
    same = sum(guess[p] == reference[p] for p in common)
    return (same / len(common) if common else float("nan")), len(common)


def boundary(lattice: Lattice, guess: dict[Point, str]) -> list[tuple[tuple, tuple]]:
    """Segments between neighbouring finest-lattice points of different predicted labels, in
    lattice coordinates (the dual edge; in 1-D a point between the two)."""
    segments = []
    for p, label in guess.items():
        for a in range(lattice.dim):
            q = tuple(v + (1 if b == a else 0) for b, v in enumerate(p))
            if q in guess and guess[q] != label:
                if lattice.dim == 1:
                    segments.append(((p[0] + 0.5,), (p[0] + 0.5,)))
                    continue
                mid = [v + (0.5 if b == a else 0) for b, v in enumerate(p)]
                lo, hi = list(mid), list(mid)
                other = 1 - a
                lo[other], hi[other] = mid[other] - 0.5, mid[other] + 0.5
                segments.append((tuple(lo), tuple(hi)))
    return segments


def _coord(lattice: Lattice, axis: int, t: float) -> float:
    """Lattice coordinate (fractional) -> config value, geometric on a log axis."""
    values = lattice.values(axis)
    t = min(max(t, 0.0), len(values) - 1.0)
    i = min(int(t), len(values) - 2)
    a, b, f = float(values[i]), float(values[i + 1]), t - i
    return a * (b / a) ** f if lattice.axes[axis].log else a + (b - a) * f


def draw_map(points: pd.DataFrame, lattice: Lattice, phases: tuple[str, ...], path: Path,
             title: str = "") -> Path:
    """Labels as regions (the prediction over the finest lattice), the estimated boundary, and
    every sampled point marked with its label."""
    from dynamics_lab.phenomena.plotting import colors, pyplot, save

    plt = pyplot()
    from matplotlib.colors import ListedColormap

    labels = labels_of(points, lattice)
    guess = predict(lattice, labels, frozenset(phases))
    names = list(phases) + sorted({*guess.values()} - set(phases))
    palette = {n: c for n, c in zip(names, colors() * 3)}
    fig, ax = plt.subplots(figsize=(6, 4.6 if lattice.dim == 2 else 2.4))
    dim = lattice.dim

    def xy(p):
        x = _coord(lattice, 0, p[0])
        return (x, _coord(lattice, 1, p[1])) if dim == 2 else (x, 0.0)

    edges = [[_coord(lattice, a, i - 0.5) for i in range(lattice.resolution + 1)]
             for a in range(dim)]  # each finest point's patch: half a step either side
    index = {n: k for k, n in enumerate(names)}
    cmap = ListedColormap([palette[n] for n in names])
    if dim == 2:
        grid = np.full((lattice.resolution, lattice.resolution), np.nan)
        for (i, j), label in guess.items():
            grid[j, i] = index[label]
        ax.pcolormesh(edges[0], edges[1], grid, cmap=cmap, vmin=-0.5,
                      vmax=len(names) - 0.5, alpha=0.3, shading="flat")
    else:
        row = np.full((1, lattice.resolution), np.nan)
        for (i,), label in guess.items():
            row[0, i] = index[label]
        ax.pcolormesh(edges[0], [-1, 1], row, cmap=cmap, vmin=-0.5, vmax=len(names) - 0.5,
                      alpha=0.3, shading="flat")
    for a, b in boundary(lattice, guess):
        (x0, y0), (x1, y1) = xy(a), xy(b)
        if dim == 2:
            ax.plot([x0, x1], [y0, y1], color="black", lw=1.2)
        else:
            ax.axvline(x0, color="black", lw=1.2)
    for label in names:
        sampled = [p for p, v in labels.items() if v == label]
        if sampled:
            pts = [xy(p) for p in sampled]
            ax.scatter([q[0] for q in pts], [q[1] for q in pts], s=18, color=palette[label],
                       edgecolors="black", linewidths=0.4, label=f"{label} ({len(sampled)})",
                       zorder=3)
    ax.set_xlabel(lattice.axes[0].key)
    if lattice.axes[0].log:
        ax.set_xscale("log")
    if dim == 2:
        ax.set_ylabel(lattice.axes[1].key)
        if lattice.axes[1].log:
            ax.set_yscale("log")
    else:
        ax.set_yticks([])
    ax.legend(fontsize=7, loc="best", framealpha=0.8)
    ax.set_title(title or f"{len(labels)} points sampled, finest grid {lattice.resolution}"
                 + (f"x{lattice.resolution}" if dim == 2 else ""), fontsize=9)
    return save(fig, path)


def panel(lattice: Lattice) -> Panel:
    """The W&B scatter of the points table: one point per lattice point, coloured by phase."""
    x = lattice.axes[0]
    y = lattice.axes[1].key if lattice.dim == 2 else "runs"
    return Panel("phase map", y=(y,), x=x.key, kind="scatter", group_by=(), color=PHASE_COLUMN,
                 log_x=x.log, log_y=lattice.dim == 2 and lattice.axes[1].log)


def write_map(table: pd.DataFrame, lattice: Lattice, detector, out: Path,
              title: str = "") -> list[Path]:
    """phase_points.csv, phase_map.png and phase_panel.json into `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    points = phase_points(table, lattice, detector)
    written = [out / POINTS_FILE]
    points.to_csv(written[0], index=False)
    if len(points):
        written.append(draw_map(points, lattice, detector.phases, out / MAP_FILE, title))
    spec = {"table": POINTS_FILE, "panel": panel(lattice).to_dict()}
    written.append(out / PANEL_FILE)
    written[-1].write_text(json.dumps(spec, indent=2) + "\n")
    return written


def summary_lines(points: pd.DataFrame, lattice: Lattice) -> list[str]:
    """The labels' counts and the search's cost beside the full grid's."""
    runs = int(points["runs"].sum()) if len(points) else 0
    counts = Counter(points[PHASE_COLUMN]) if len(points) else Counter()
    per = (runs / len(points)) if len(points) else 1
    full = int(round(lattice.size * per))
    return [f"phase map: {len(points)} points ({runs} runs; the full {lattice.resolution}"
            + (f"x{lattice.resolution}" if lattice.dim == 2 else "")
            + f" grid would take {full})",
            "  " + ", ".join(f"{k}: {n}" for k, n in counts.most_common())]


def report_section(table: pd.DataFrame, manifest: dict, detector, out: Path,
                   echo=lambda line: None) -> list[Path]:
    """`dynlab report` on a phase search (a manifest with a `phase` section): the map, the
    points and the panel spec beside the other figures, and the summary lines; [] otherwise."""
    search = manifest.get("phase")
    if not search:
        return []
    lattice = Lattice.from_dict(search["lattice"])
    written = write_map(table, lattice, detector, out)
    for line in summary_lines(phase_points(table, lattice, detector), lattice):
        echo(line)
    return written
