"""The lazy_rich row of results/CLAIMS.md: does grokking (Kumar et al.'s definition) come with
laziness, the rich end of the alpha range not grokking and the lazy end grokking?"""

from __future__ import annotations

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
    seeds_of,
    swept_range,
)

AXIS = "model.alpha"
CLAIM = ("grokking (test loss on its level while the train loss fits, then a drop) appears at "
         "the lazy end (large alpha), not at the rich end")
PAPER = "rich end: no delay; lazy end: grokking, the gap at MSE 0.1 growing with alpha"
MIN_RATIO = 2.0  # the detector's min_delay_ratio default


def claim(results: Path, experiment: dict) -> Claim:
    cells = read_csv(Path(results) / "cells.csv")
    if cells is None or AXIS not in cells or not len(cells):
        return not_run(CLAIM, PAPER)
    cells = cells.sort_values(AXIS)
    rich, lazy = cells.iloc[0], cells.iloc[-1]
    ours = "; ".join(
        f"alpha={row[AXIS]:g}: {int(row['detected'])}/{int(row['finished'])} grokked, "
        f"test drop / train fit {cell_value(row, 'delay_ratio')}, step gap at MSE 0.1 "
        f"{cell_value(row, 'step_gap')}" for row in (rich, lazy))
    gaps = pd.to_numeric(cells.get("step_gap_mean", pd.Series(dtype=float)), errors="coerce")
    trend = ("the step gap grows with alpha" if len(gaps) == len(cells) and gaps.notna().all()
             and gaps.is_monotonic_increasing else
             "the step gap does not grow monotonically with alpha (or was not reached)")
    rich_none = int(rich["not_detected"]) == int(rich["finished"]) > 0
    lazy_all = int(lazy["detected"]) == int(lazy["finished"]) > 0
    lazy_none = (int(lazy["not_detected"]) == int(lazy["finished"]) > 0
                 and float(lazy.get("delay_ratio_ci_high", float("nan"))) < MIN_RATIO)
    if rich_none and lazy_all:
        status, note = REPRODUCED, f"rich end not grokked, lazy end grokked; {trend}"
    elif lazy_none:
        status = CONTRADICTED
        note = (f"at alpha={lazy[AXIS]:g} the test loss falls with the train loss in every "
                f"seed (its drop / fit interval is under {MIN_RATIO:g}x): no plateau-then-drop "
                f"at the lazy end of this range; {trend} (the paper's own measure)")
    else:
        status = INCONCLUSIVE
        note = f"the verdicts at the ends are mixed or undetermined; {trend}"
    return Claim(CLAIM, PAPER, ours, seeds_of(cells), swept_range(cells, AXIS), status, note)
