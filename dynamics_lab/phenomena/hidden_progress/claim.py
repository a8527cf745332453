"""The hidden_progress row of results/CLAIMS.md: does the time to learn sparse parity grow with
n faster the larger k is, as Barak et al.'s n^O(k) orders it?"""

from __future__ import annotations

from pathlib import Path

from dynamics_lab.phenomena.claims import (
    CONTRADICTED,
    INCONCLUSIVE,
    REPRODUCED,
    Claim,
    fmt,
    not_run,
    read_csv,
)

CLAIM = "learning k-sparse parity takes n^O(k) steps: the exponent in n grows with k"
PAPER = "n^O(k) steps, near the SQ lower bound of ~n^k queries (Barak et al. 2022)"
STATUS = {"agrees": REPRODUCED, "contradicts": CONTRADICTED, "undecided": INCONCLUSIVE}


def claim(results: Path, experiment: dict) -> Claim:
    fits = read_csv(Path(results) / "learning_scaling.csv")
    steps = read_csv(Path(results) / "learning_steps.csv")
    if fits is None or steps is None or "ordering" not in fits or not len(fits):
        return not_run(CLAIM, PAPER)
    fits = fits[fits["quantity"] == "learning_step"].sort_values("k")
    ours = "; ".join(f"k={int(f['k'])}: steps to halve the loss ~ n^"
                     f"{fmt(f['exponent'], f['ci_low'], f['ci_high'], 2)}"
                     for _, f in fits.iterrows())
    order = str(fits["ordering"].iloc[0])
    learned = int(steps["learned"].sum())
    runs = int(steps["runs"].sum())
    seeds = int(steps["learned"].min())
    ks = " ".join(str(int(k)) for k in sorted(steps["k"].unique()))
    ns = sorted(steps["n"].unique())
    note = {"agrees": "each k's exponent interval lies above the previous k's",
            "contradicts": "FLAG: an exponent interval lies below the previous k's, against the "
                           "theory's order",
            "undecided": "the exponents' intervals overlap"}[order]
    note += f"; {learned}/{runs} runs learned (the fits use those)"
    swept = f"n {ns[0]:g}..{ns[-1]:g} ({len(ns)} values) x k {{{ks}}}"
    return Claim(CLAIM, PAPER, ours, seeds, swept, STATUS[order], note)
