"""Provisional CLAIMS.md rows for phenomena whose folder states no claim yet, read from their
verdict fields as they stand (cells.csv: k/n detected, the key field's interval). A claim.py in
the phenomenon's own folder replaces its row here."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from dynamics_lab.phenomena.claims import (
    INCONCLUSIVE,
    REPRODUCED,
    Claim,
    cell_value,
    not_run,
    read_csv,
    seeds_of,
    swept_range,
)


def _detected_everywhere(results: Path, claim: str, paper: str, axis: str, field: str,
                         where: Callable | None = None) -> Claim:
    """Reproduced when every run of every (selected) grid point is detected in >= 3 seeds."""
    cells = read_csv(Path(results) / "cells.csv")
    if cells is None or axis not in cells or not len(cells):
        return not_run(claim, paper)
    chosen = cells[where(cells)] if where is not None else cells
    ours = "; ".join(f"{axis.rsplit('.', 1)[-1]}={row[axis]:g}: {row['seeds']} detected, "
                     f"{field} {cell_value(row, field)}" for _, row in chosen.iterrows())
    every = bool(len(chosen)) and bool((chosen["detected"] == chosen["finished"]).all())
    status = REPRODUCED if every else INCONCLUSIVE
    note = ("detected in every run of every grid point shown" if every else
            "not detected (or undetermined) in some runs of the grid points shown")
    return Claim(claim, paper, ours, seeds_of(chosen), swept_range(cells, axis), status,
                 note + "; provisional row from the verdict fields")


def edge_of_stability(results: Path, experiment: dict) -> Claim:
    return _detected_everywhere(
        results, "full-batch GD: the sharpness rises to 2/eta and hovers there (Cohen et al. "
        "2021)", "lambda_max ~ 2/eta (within ~10%)", "optim.lr", "fraction_within")


def eos_quadratic(results: Path, experiment: dict) -> Claim:
    return _detected_everywhere(
        results, "a quadratic model (nonzero curvature) at a large step settles at or oscillates "
        "around 2/eta (Agarwala et al. 2022)", "lambda_max -> 2/eta", "optim.lr",
        "fraction_within", where=lambda c: c["model.curvature"] > 0
        if "model.curvature" in c else c["optim.lr"] > 0)


PROVISIONAL: dict[str, Callable[[Path, dict], Claim]] = {
    "edge_of_stability": edge_of_stability, "eos_quadratic": eos_quadratic}
