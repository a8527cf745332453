"""The edge_of_stability row of results/CLAIMS.md: at every step size swept, does the sharpness,
drawn from enough samples to show it rising, reach 2/eta and hover there?

Ours per eta: runs detected, the hover level (median sharpness / threshold after the crossing)
and the overshoot peak (max sharpness / threshold), each a mean with its 95% interval across
seeds, and the fewest sharpness samples any run had before its crossing. Reproduced when every
run of every eta is detected and every hover interval lies inside the detector's band (its
default, 10%); contradicted when every run of some eta is not detected; else inconclusive.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from dynamics_lab.phenomena.claims import (
    CONTRADICTED,
    INCONCLUSIVE,
    REPRODUCED,
    Claim,
    cell_value,
    not_run,
    read_csv,
    read_runs,
    seeds_of,
    swept_range,
)
from dynamics_lab.phenomena.columns import verdict_key
from dynamics_lab.phenomena.edge_of_stability.verdict import EdgeOfStabilityConfig

CLAIM = ("under full-batch GD the sharpness rises (progressive sharpening) to 2/eta and then "
         "hovers at it while the loss falls (Cohen et al. 2021)")
PAPER = "sharpness / (2/eta) ~ 1 after the crossing at every eta (their figures: just above 1)"
AXIS = "optim.lr"


def hover_claim(results: Path, claim: str, paper: str,
                where: Callable[[pd.DataFrame], pd.Series] | None = None,
                every_eta: bool = True) -> Claim:
    """The claim from results/<experiment>/cells.csv and summary.csv (grid points `where`
    selects, all by default). `every_eta`: the paper claims the edge at every step size swept
    (else: at the large enough ones, so one eta reproduced in every seed suffices and only no
    detection anywhere contradicts)."""
    cells = read_csv(Path(results) / "cells.csv")
    runs = read_runs(results)
    if cells is None or runs is None or "median_ratio_mean" not in cells or AXIS not in cells:
        return not_run(claim, paper)
    if where is not None:
        cells, runs = cells[where(cells)], runs[where(runs)]
    band = EdgeOfStabilityConfig().band
    parts, statuses = [], []
    for _, row in cells.iterrows():
        mine = runs[runs[AXIS] == row[AXIS]]
        crossing, picture = verdict_key("crossing_step"), verdict_key("picture")
        crossed = mine[mine[crossing].notna()] if crossing in mine else mine
        before = pd.to_numeric(crossed.get(verdict_key("n_before_crossing")),
                               errors="coerce").dropna()
        pictures = ", ".join(f"{n} {p}" for p, n in crossed[picture].value_counts().items()) \
            if picture in crossed else ""
        reached = (f", >= {int(before.min())} samples before the crossing ({pictures})"
                   if len(before) else ", never reached the edge")
        parts.append(f"eta={row[AXIS]:g}: {row['seeds']} detected, hover "
                     f"{cell_value(row, 'median_ratio')}x, peak "
                     f"{cell_value(row, 'max_sharpness_ratio')}x{reached}")
        low, high = row.get("median_ratio_ci_low"), row.get("median_ratio_ci_high")
        inside = pd.notna(low) and pd.notna(high) and 1 - band <= low and high <= 1 + band
        if row["detected"] == row["finished"] and inside:
            statuses.append(REPRODUCED)
        elif row["detected"] == 0 and row["finished"] > 0:
            statuses.append(CONTRADICTED)
        else:
            statuses.append(INCONCLUSIVE)
    if every_eta:
        status = (CONTRADICTED if CONTRADICTED in statuses else
                  REPRODUCED if statuses and set(statuses) == {REPRODUCED} else INCONCLUSIVE)
        note = {REPRODUCED: f"every run detected; every hover interval within {band:.0%} of "
                            "2/eta",
                CONTRADICTED: "every run of some eta was not detected",
                INCONCLUSIVE: "some runs not detected or undetermined, or a hover interval "
                              f"reaches outside {band:.0%} of 2/eta"}[status]
    else:
        none = bool(statuses) and int(cells["detected"].sum()) == 0
        status = (REPRODUCED if REPRODUCED in statuses else CONTRADICTED if none
                  else INCONCLUSIVE)
        note = {REPRODUCED: f"at some eta every run detected with its hover interval within "
                            f"{band:.0%} of 2/eta",
                CONTRADICTED: "no run of any eta was detected",
                INCONCLUSIVE: "no eta reaches the edge in every seed with its hover interval "
                              f"within {band:.0%}"}[status]
    return Claim(claim, paper, "; ".join(parts), seeds_of(cells), swept_range(cells, AXIS),
                 status, note)


def claim(results: Path, experiment: dict) -> Claim:
    return hover_claim(results, CLAIM, PAPER)
