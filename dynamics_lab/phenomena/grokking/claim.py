"""The grokking row of results/CLAIMS.md: the network generalizes long after it fits its training
set, and weight decay brings that within a short budget (Power et al. 2022; without weight decay
they see it far later, so none within our budget is what the claim predicts); beside it, whether
Nanda et al.'s progress measures move before the test loss (results/grokking/transformer)."""

from __future__ import annotations

from pathlib import Path

from dynamics_lab.phenomena.claims import (
    CONTRADICTED,
    INCONCLUSIVE,
    REPRODUCED,
    Claim,
    cell_value,
    not_run,
    read_csv,
    seeds_of,
)

AXIS, OTHER = "optim.weight_decay", "task.train_fraction"
CLAIM = ("a network generalizes long after it fits its training set; weight decay brings it "
         "sooner (without it, later than our budget)")
PAPER = "validation accuracy rises orders of magnitude of steps after the fit (Power et al. 2022)"


def claim(results: Path, experiment: dict) -> Claim:
    cells = read_csv(Path(results) / "cells.csv")
    if cells is None or AXIS not in cells or not len(cells):
        return not_run(CLAIM, PAPER)
    none, most = cells[cells[AXIS] == cells[AXIS].min()], cells[cells[AXIS] == cells[AXIS].max()]
    ours = (f"weight decay {cells[AXIS].min():g}: {int(none['detected'].sum())}/"
            f"{int(none['finished'].sum())} runs grokked; weight decay {cells[AXIS].max():g}: "
            + ", ".join(f"fraction {row[OTHER]:g}: {row['seeds']}, delay "
                        f"{cell_value(row, 'delay_ratio')}" for _, row in most.iterrows()))
    never = int(none["detected"].sum()) == 0
    some = int(most["detected"].sum()) > 0
    status = REPRODUCED if never and some else CONTRADICTED if not some else INCONCLUSIVE
    note = ("no run without weight decay grokked within the budget; with it, runs grokked"
            if status == REPRODUCED else "no run grokked with weight decay"
            if status == CONTRADICTED else "runs without weight decay grokked within the budget")
    progress = read_csv(Path(results) / "transformer" / "progress.csv")
    if progress is not None and len(progress):
        row = progress.iloc[0]
        keys = row.get("keys", "running")
        note += (f"; transformer (1 run, key frequencies: {keys}): restricted loss below half of "
                 f"chance at step {row['restricted_step']:g}, excluded loss above chance at "
                 f"{row['excluded_step']:g}, test loss below half of chance at "
                 f"{row['test_step']:g}")
    swept = (f"weight decay {cells[AXIS].min():g}..{cells[AXIS].max():g} x train fraction "
             f"{cells[OTHER].min():g}..{cells[OTHER].max():g}")
    return Claim(CLAIM, PAPER, ours, seeds_of(cells), swept, status, note)
