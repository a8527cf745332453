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
from dynamics_lab.phenomena.plotting import colors, pyplot, save

LR, CURVATURE = "optim.lr", "model.curvature"


def step_axis(ax) -> None:
    """Steps on a log scale past step 10, linear before: the sharpening takes tens of steps."""
    ax.set_xlabel("step")
    ax.set_xscale("symlog", linthresh=10)
    ax.set_xlim(left=0)


def normalized_figure(view, path: Path) -> Path | None:
    table = view.first_seed()
    if LR not in table:
        return None
    plt = pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True,
                                      gridspec_kw={"height_ratios": [3, 2]})
    palette = colors()
    lrs = sorted(table[LR].unique())
    drawn = False
    for _, row in table.sort_values([LR, *([CURVATURE] if CURVATURE in table else [])]).iterrows():
        frame = view.metrics(row["run_id"])
        column = first_column(frame, SHARPNESS) if frame is not None else None
        if column is None:
            continue
        lr = float(row[LR])
        curvature = float(row[CURVATURE]) if CURVATURE in row else None
        colour = palette[lrs.index(row[LR]) % len(palette)]
        linear = curvature == 0
        style = dict(color=colour, lw=1.0 if linear else 1.4, ls="--" if linear else "-")
        label = f"eta={lr:g}" + (f", curvature={curvature:g}" if curvature is not None else "")
        data = frame[["step", column]].dropna()
        top.plot(data["step"], lr * data[column], label=label, **style)
        loss = frame[["step", first_column(frame, LOSSES)]].dropna()
        bottom.plot(loss["step"], loss.iloc[:, 1], **style)
        drawn = True
    if not drawn:
        plt.close(fig)
        return None
    top.axhline(2.0, color="k", lw=0.8, ls=":")
    top.set_ylabel("eta x sharpness (edge of stability: 2)")
    top.set_title("second-order model (solid) sharpens to eta x sharpness = 2; "
                  "the linear model (dashed, Q = 0) does not", fontsize=9)
    top.legend(fontsize=7, ncol=2)
    top.grid(alpha=0.3)
    bottom.set_yscale("log")
    bottom.set_ylabel("train loss")
    step_axis(bottom)
    bottom.grid(alpha=0.3)
    return save(fig, path)


def reduced_figure(view, path: Path, window: int = 50) -> Path | None:
    """Per second-order run (colour: step size; fainter: later seeds): eta x top NTK eigenvalue
    against eta x sharpness; the change of x per step split as reduced.budget does (means over
    an even `window`, so a two-cycle cancels); the loss against the top mode's zeta^2 / 2."""
    table = view.table
    if LR not in table:
        return None
    if CURVATURE in table:
        table = table[table[CURVATURE].astype(float) > 0]
    plt = pyplot()
    fig, (top, middle, bottom) = plt.subplots(3, 1, figsize=(7, 8.5), sharex=True,
                                              gridspec_kw={"height_ratios": [3, 2, 2]})
    palette, lrs, drawn = colors(), sorted(table[LR].unique()), False
    seeds = sorted(table["seed"].unique()) if "seed" in table else [None]
    for _, row in table.sort_values([LR, *(["seed"] if "seed" in table else [])]).iterrows():
        frame, lr = view.metrics(row["run_id"]), float(row[LR])
        variables = reduced_variables(frame, lr) if frame is not None else None
        if variables is None or len(variables) < 2:
            continue
        colour = palette[lrs.index(row[LR]) % len(palette)]
        seed = row["seed"] if "seed" in row else None
        style = dict(color=colour, alpha=1.0 if seed == seeds[0] else 0.45)
        top.plot(variables["step"], variables["x"], lw=1.4, **style,
                 label=f"eta={lr:g}" + (f", seed {seed}" if seed is not None else ""))
        column = first_column(frame, SHARPNESS)
        if column is not None:
            sharp = frame[["step", column]].dropna()
            top.plot(sharp["step"], lr * sharp[column], lw=0, marker=".", ms=3, **style)
        parts = budget(variables).rolling(window, min_periods=1, center=True).mean()
        middle.plot(parts["step"], parts["others"], lw=1.2, **style)
        middle.plot(parts["step"], parts["top"], lw=1.2, ls="--", **style)
        middle.plot(parts["step"], parts["turn"], lw=1.0, ls=":", **style)
        bottom.plot(variables["step"], variables["loss"], lw=1.2, **style)
        bottom.plot(variables["step"], variables["top_share"] * variables["loss"], lw=1.0,
                    ls="--", **style)
        drawn = True
    if not drawn:
        plt.close(fig)
        return None
    top.axhline(2.0, color="k", lw=0.8, ls=":")
    top.set_ylabel("x = eta lambda (edge: 2)")
    top.set_title("two-variable picture: lines x from the top NTK mode, dots eta x sharpness",
                  fontsize=9)
    top.legend(fontsize=7, ncol=2)
    middle.axhline(0.0, color="k", lw=0.6)
    middle.set_ylabel(f"change of x per step\n({window}-step mean)")
    middle.set_title("solid: other modes; dashed: the top mode's map term x (w^2 - 2 kappa w); "
                     "dotted: the top eigenvector turning", fontsize=8)
    bottom.set_yscale("log")
    bottom.set_ylabel("train loss")
    bottom.set_title("solid: loss; dashed: the top mode's part zeta^2 / 2", fontsize=9)
    step_axis(bottom)
    for ax in (top, middle, bottom):
        ax.grid(alpha=0.3)
    return save(fig, path)


def write_figures(view) -> list[Path]:
    written = eos_figures(view)
    for figure, name in ((normalized_figure, "normalized_sharpness.png"),
                         (reduced_figure, "two_variable.png")):
        path = figure(view, view.out / name)
        written += [path] if path else []
    return written

