"""When Nanda et al.'s (2023) progress measures move, beside when the test loss falls.

From one run's metrics (fourier/* from measure/fourier_progress.py, val/loss, train/acc), with
chance = the first val/loss (an untrained network's ~log p):
  fit step         first evaluation of train acc >= 0.99 (memorization done)
  restricted step  first evaluation from which the restricted loss (logits kept on the key
                   frequencies) stays below half of chance: the circuit generalizes
  excluded step    first evaluation from which the excluded loss (key frequencies removed) stays
                   above chance: the training fit rests on the circuit
  test step        first evaluation from which the test loss stays below half of chance
"Stays" means three evaluations in a row. In the paper both measures move during circuit
formation, before the test loss falls in cleanup. Nanda et al. take the key frequencies of the
final model: the restricted and excluded steps read fourier/final_restricted_loss and
fourier/final_excluded_loss when logged (the measurement re-measures its weight snapshots under
the final key frequencies at the end of the run); running_restricted_step and
running_excluded_step read the measures under the key frequencies of each moment.
"""

from __future__ import annotations

import pandas as pd

from dynamics_lab.metric_names import Fourier
from dynamics_lab.phenomena.columns import verdict_key
from dynamics_lab.phenomena.curves import series, sustained

RESTRICTED, EXCLUDED = Fourier.RESTRICTED_LOSS, Fourier.EXCLUDED_LOSS
FINAL_RESTRICTED, FINAL_EXCLUDED = Fourier.FINAL_RESTRICTED_LOSS, Fourier.FINAL_EXCLUDED_LOSS
SUSTAIN = 3


def _first(metrics: pd.DataFrame, column: str, below: float | None = None,
           above: float | None = None) -> int | None:
    steps, values = series(metrics, column)
    meets = values < below if below is not None else values > above
    i = sustained(meets, SUSTAIN)
    return int(steps[i]) if i is not None else None


def progress_steps(metrics: pd.DataFrame) -> dict:
    """{chance, fit_step, restricted_step, excluded_step, test_step, keys, running_*} (None
    where never); `keys` says whose key frequencies the restricted and excluded steps use."""
    _, val = series(metrics, "val/loss")
    if not len(val) or RESTRICTED not in metrics:
        return {}
    chance = float(val[0])
    final = FINAL_RESTRICTED in metrics and metrics[FINAL_RESTRICTED].notna().any()
    restricted, excluded = (FINAL_RESTRICTED, FINAL_EXCLUDED) if final else (RESTRICTED,
                                                                             EXCLUDED)
    return dict(chance=chance, fit_step=_first(metrics, "train/acc", above=0.99 - 1e-12),
                restricted_step=_first(metrics, restricted, below=chance / 2),
                excluded_step=_first(metrics, excluded, above=chance),
                test_step=_first(metrics, "val/loss", below=chance / 2),
                keys="final" if final else "running",
                running_restricted_step=_first(metrics, RESTRICTED, below=chance / 2),
                running_excluded_step=_first(metrics, EXCLUDED, above=chance))


def progress_table(view) -> pd.DataFrame:
    """One row per run of the sweep that logged the progress measures."""
    rows = []
    for _, row in view.first_seed().iterrows():
        frame = view.metrics(row["run_id"])
        steps = progress_steps(frame) if frame is not None else {}
        if steps:
            lead = {f"{name}_before_test": (steps[f"{name}_step"] is not None
                                            and steps["test_step"] is not None
                                            and steps[f"{name}_step"] < steps["test_step"])
                    for name in ("restricted", "excluded")}
            rows.append(dict(run_id=row["run_id"], **steps, **lead,
                             generalization_step=row.get(verdict_key("generalization_step"))))
    return pd.DataFrame(rows)
