"""The sweep's side of large-step sparsity: large step sizes against the smallest one.

The paper's claim is comparative: after the decay, the network trained with a large step size
is sparser and generalizes better than the one trained with a small step size throughout. From
a sweep's run table (one row per run, verdict fields as `verdict/<field>`), per step size (seeds
pooled): the runs, how many stabilized, and the mean active fraction before the decay, dead
fraction and final test loss. Every larger step size whose runs mostly stabilized is compared
with the smallest: detected when each is both sparser (lower mean active fraction) and better
(lower mean final test loss), and at least one stabilized; not detected when one is not;
undetermined with fewer than two step sizes or without those fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from dynamics_lab.phenomena.base import Outcome
from dynamics_lab.phenomena.columns import verdict_key

LR = "optim.lr"
COLUMNS = ("active_before_decay", "dead_before_decay", "final_val_loss")  # verdict fields


@dataclass
class LrComparison:
    outcome: Outcome
    reason: str
    table: pd.DataFrame = field(default_factory=pd.DataFrame)  # one row per step size

    @property
    def detected(self) -> bool:
        return self.outcome == Outcome.DETECTED

    @property
    def line(self) -> str:
        return f"{self.outcome}: {self.reason}"


def per_lr(runs: pd.DataFrame) -> pd.DataFrame:
    """Per step size: runs, stabilized runs and the means of the verdict fields COLUMNS (each
    under its field's name), smallest first."""
    rows = []
    for lr, part in runs.groupby(LR, sort=True):
        row = {LR: float(lr), "runs": len(part),
               "stabilized": int(part.get(verdict_key("stabilized"), pd.Series(dtype=bool))
                                 .fillna(False).astype(bool).sum())}
        for column in COLUMNS:
            values = pd.to_numeric(part.get(verdict_key(column), pd.Series(dtype=float)),
                                   errors="coerce")
            row[column] = float(values.mean()) if values.notna().any() else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def compare_learning_rates(runs: pd.DataFrame) -> LrComparison:
    """The comparison of the module docstring over a run table with `optim.lr` and verdicts."""
    if LR not in runs or runs[LR].nunique() < 2:
        return LrComparison(Outcome.UNDETERMINED, "needs runs at two or more step sizes "
                            f"({LR} swept)")
    table = per_lr(runs)
    if table[["active_before_decay", "final_val_loss"]].isna().any().any():
        return LrComparison(Outcome.UNDETERMINED, "active fraction or test loss missing at some "
                            "step size", table)
    base = table.iloc[0]
    large = table.iloc[1:]
    large = large[large["stabilized"] * 2 > large["runs"]]
    if large.empty:
        return LrComparison(Outcome.NOT_DETECTED, "no larger step size stabilized the loss",
                            table)
    worse = [f"lr {r[LR]:g} ({what})" for _, r in large.iterrows() for what, bad in (
        ("not sparser", r["active_before_decay"] >= base["active_before_decay"]),
        ("test loss not lower", r["final_val_loss"] >= base["final_val_loss"])) if bad]
    best = large.loc[large["final_val_loss"].idxmin()]
    versus = (f"lr {best[LR]:g}: active {best['active_before_decay']:.2f} vs "
              f"{base['active_before_decay']:.2f}, test loss {best['final_val_loss']:.3g} vs "
              f"{base['final_val_loss']:.3g} at lr {base[LR]:g}")
    if worse:
        return LrComparison(Outcome.NOT_DETECTED, f"against lr {base[LR]:g}: "
                            f"{', '.join(worse)}", table)
    return LrComparison(Outcome.DETECTED, f"every stabilized larger step size is sparser and "
                        f"generalizes better ({versus})", table)
