"""eos_quadratic figures: the edge-of-stability figure (sharpness with its 2/eta lines, loss
beneath, at the nonzero curvature), the paper's normalized view (eta x sharpness against step
for every step size, second-order model solid beside the linear model with Q = 0 dashed, so
that every run's threshold is the same line at 2) and the two-variable picture beside the
measured curves (reduced.py): who sharpens, who holds the edge, who carries the loss."""

from __future__ import annotations

from pathlib import Path

from dynamics_lab.phenomena.curves import first_column
from dynamics_lab.phenomena.edge_of_stability.detector import LOSSES, SHARPNESS
from dynamics_lab.phenomena.edge_of_stability.figures import write_figures as eos_figures
from dynamics_lab.phenomena.eos_quadratic.reduced import budget, reduced_variables
from dynamics_lab.phenomena.figure_marks import band, label, mark_steps, seeds_text, title
from dynamics_lab.phenomena.labels import words
from dynamics_lab.phenomena.plotting import colors, pyplot, save

LR, CURVATURE = "optim.lr", "model.curvature"


def step_axis(ax) -> None:
    """Steps on a log scale past step 10, linear before: the sharpening takes tens of steps."""
    label(ax, "step")
    ax.set_xscale("symlog", linthresh=10)
    ax.set_xlim(left=0)


def _points(view, table):
    """(label, row, metrics) of the lowest seed at each grid point, by step size (curvature)."""
    by = [LR, *([CURVATURE] if CURVATURE in table else [])]
    return [(name, row, frame) for name, row, frame in view.runs(table.sort_values(by))]


def _marked(view, runs, counts: list[int], what: str = "") -> str:
    """The selection line of a title, and what the vertical lines (and `what`) are."""
    return (f"{view.selection(runs)}, {seeds_text(counts)}\nvertical lines: the lowest "
            f"seed's crossing steps{'; ' + what if what else ''}")


def normalized_figure(view, path: Path) -> Path | None:
    """eta x sharpness against step at every grid point: the threshold is 2 for every run."""
    table = view.first_seed()
    if LR not in table:
        return None
    plt = pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True,
                                      gridspec_kw={"height_ratios": [3, 2]})
    palette = colors()
    lrs = sorted(table[LR].unique())
    runs, counts = [], []
    for _, row, frame in _points(view, table):
        column = first_column(frame, SHARPNESS)
        if column is None:
            continue
        lr = float(row[LR])
        curvature = float(row[CURVATURE]) if CURVATURE in row else None
        colour = palette[lrs.index(row[LR]) % len(palette)]
        linear = curvature == 0
        style = dict(lw=1.0 if linear else 1.4, ls="--" if linear else "-")
        name = f"eta={lr:g}" + (f", curvature={curvature:g}" if curvature is not None else "")
        seeds = view.seeds(row) or [frame]
        counts.append(band(top, seeds, column, colour, name, scale=lr, **style))
        loss = first_column(frame, LOSSES)
        if loss is not None:
            band(bottom, seeds, loss, colour, **style)
        for ax in (top, bottom):
            mark_steps(ax, row, color=colour, legend=False)
        runs.append((name, row, frame))
    if not runs:
        plt.close(fig)
        return None
    top.axhline(2.0, color="k", lw=0.8, ls=":")
    top.set_ylabel("eta x sharpness (edge of stability: 2)")
    top.legend(fontsize=7, ncol=2)
    top.grid(alpha=0.3)
    bottom.set_yscale("log")
    bottom.set_ylabel(words("train/loss"))
    step_axis(bottom)
    bottom.grid(alpha=0.3)
    title(fig, "second-order model (solid) sharpens to eta x sharpness = 2;\nthe linear model "
          "(dashed, Q = 0) does not", _marked(view, runs, counts), fontsize=9)
    return save(fig, path)


def _seed_variables(view, row, lr: float, window: int) -> list[tuple]:
    """(variables, budget parts as `window`-step means, sharpness) of each seed at the grid
    point of `row` that logged the second-order columns."""
    found = []
    for frame in view.seeds(row):
        variables = reduced_variables(frame, lr)
        if variables is None or len(variables) < 2:
            continue
        variables = variables.assign(top_loss=variables["top_share"] * variables["loss"])
        parts = (budget(variables).set_index("step")  # an even window: a two-cycle cancels
                 .rolling(window, min_periods=1, center=True).mean().reset_index())
        column = first_column(frame, SHARPNESS)
        sharp = (frame[["step", column]].dropna().rename(columns={column: "sharpness"})
                 if column is not None else None)
        found.append((variables, parts, sharp))
    return found


def reduced_figure(view, path: Path, window: int = 50) -> Path | None:
    """Per second-order grid point (colour: step size), the mean over its seeds with a 95% band
    of: eta x top NTK eigenvalue beside eta x sharpness; the change of x per step split as
    reduced.budget does (means over an even `window`, so a two-cycle cancels); the loss beside
    the top mode's zeta^2 / 2."""
    table = view.first_seed()
    if LR not in table:
        return None
    if CURVATURE in table:
        table = table[table[CURVATURE].astype(float) > 0]
    plt = pyplot()
    fig, (top, middle, bottom) = plt.subplots(3, 1, figsize=(7, 8.5), sharex=True,
                                              gridspec_kw={"height_ratios": [3, 2, 2]})
    palette, lrs, runs, counts = colors(), sorted(table[LR].unique()), [], []
    for name, row, frame in _points(view, table):
        lr = float(row[LR])
        seeds = _seed_variables(view, row, lr, window)
        if not seeds:
            continue
        colour = palette[lrs.index(row[LR]) % len(palette)]
        variables, parts, sharp = (list(x) for x in zip(*seeds))
        counts.append(band(top, variables, "x", colour, f"eta={lr:g}", lw=1.4))
        band(top, [s for s in sharp if s is not None], "sharpness", colour, scale=lr, lw=0,
             marker=".", ms=3)
        for part, style in (("others", "-"), ("top", "--"), ("turn", ":")):
            band(middle, parts, part, colour, lw=1.2 if style != ":" else 1.0, ls=style)
        band(bottom, variables, "loss", colour, lw=1.2)
        band(bottom, variables, "top_loss", colour, lw=1.0, ls="--")
        for ax in (top, middle, bottom):
            mark_steps(ax, row, color=colour, legend=False)
        runs.append((name, row, frame))
    if not runs:
        plt.close(fig)
        return None
    top.axhline(2.0, color="k", lw=0.8, ls=":")
    top.set_ylabel("x = eta lambda (edge: 2)")
    top.set_title("lines: x from the top NTK mode; dots: eta x sharpness", fontsize=9)
    top.legend(fontsize=7, ncol=2)
    middle.axhline(0.0, color="k", lw=0.6)
    middle.set_ylabel(f"change of x per step\n({window}-step mean)")
    middle.set_title("solid: other modes; dashed: the top mode's map term x (w^2 - 2 kappa w); "
                     "dotted: the top eigenvector turning", fontsize=8)
    bottom.set_yscale("log")
    bottom.set_ylabel(words("train/loss"))
    bottom.set_title("solid: loss; dashed: the top mode's part zeta^2 / 2", fontsize=9)
    step_axis(bottom)
    for ax in (top, middle, bottom):
        ax.grid(alpha=0.3)
    title(fig, "two-variable picture of the second-order runs",
          _marked(view, runs, counts), fontsize=9)
    return save(fig, path)


def write_figures(view) -> list[Path]:
    written = eos_figures(view)
    for figure, name in ((normalized_figure, "normalized_sharpness.png"),
                         (reduced_figure, "two_variable.png")):
        path = figure(view, view.out / name)
        written += [path] if path else []
    return written
