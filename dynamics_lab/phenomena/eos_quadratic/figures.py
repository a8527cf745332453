"""eos_quadratic figures: the edge-of-stability figure (sharpness with its 2/eta lines, loss
beneath, at the nonzero curvature) and the paper's normalized view: eta x sharpness against step
for every step size, second-order model (solid) beside the linear model with Q = 0 (dashed), so
that every run's threshold is the same line at 2."""

from __future__ import annotations

from pathlib import Path

from dynamics_lab.phenomena.curves import first_column
from dynamics_lab.phenomena.edge_of_stability.detector import LOSSES, SHARPNESS
from dynamics_lab.phenomena.edge_of_stability.figures import write_figures as eos_figures
from dynamics_lab.phenomena.plotting import colors, pyplot, save

LR, CURVATURE = "optim.lr", "model.curvature"


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
    bottom.set_xlabel("step")
    bottom.grid(alpha=0.3)
    return save(fig, path)


def write_figures(view) -> list[Path]:
    written = eos_figures(view)
    normalized = normalized_figure(view, view.out / "normalized_sharpness.png")
    return written + ([normalized] if normalized else [])

