"""The edge-of-stability rows of CLAIMS.md read what the reports carry: reproduced only when
every run of every eta is detected and each hover interval sits inside the detector's band;
contradicted when an eta is never detected; inconclusive otherwise; not run without a report."""

import pandas as pd

from dynamics_lab.phenomena.edge_of_stability.claim import claim
from dynamics_lab.phenomena.eos_quadratic.claim import claim as quadratic_claim


def write(tmp_path, hover: dict[float, list[float]], detected: dict[float, int], **extra):
    """cells.csv and summary.csv for three seeds per eta with the given hover levels."""
    from dynamics_lab.report.cells import interval

    cells, runs = [], []
    for lr, levels in hover.items():
        mean, low, high = interval(levels)
        cells.append({"optim.lr": lr, "runs": len(levels), "finished": len(levels),
                      "detected": detected[lr], "seeds": f"{detected[lr]}/{len(levels)}",
                      "median_ratio_mean": mean, "median_ratio_ci_low": low,
                      "median_ratio_ci_high": high, "max_sharpness_ratio_mean": 1.2,
                      "max_sharpness_ratio_ci_low": 1.1, "max_sharpness_ratio_ci_high": 1.3,
                      **extra})
        for seed, level in enumerate(levels):
            runs.append({"optim.lr": lr, "seed": seed, "n_before_crossing": 25,
                         "crossing_step": 300,
                         "picture": "oscillating at the edge", "median_ratio": level, **extra})
    pd.DataFrame(cells).to_csv(tmp_path / "cells.csv", index=False)
    pd.DataFrame(runs).to_csv(tmp_path / "summary.csv", index=False)


def test_every_eta_at_the_edge_is_reproduced(tmp_path):
    write(tmp_path, {0.1: [1.01, 1.02, 1.0], 0.3: [1.05, 1.06, 1.04]}, {0.1: 3, 0.3: 3})
    c = claim(tmp_path, {})
    assert c.status == "reproduced" and c.seeds == 3
    assert "eta=0.3: 3/3 detected, hover 1.05 [" in c.ours and ">= 25 samples" in c.ours


def test_a_hover_interval_reaching_outside_the_band_is_inconclusive(tmp_path):
    # All detected, but one eta's seeds scatter so that the interval reaches past 1.1.
    write(tmp_path, {0.1: [1.01, 1.02, 1.0], 0.3: [1.0, 1.09, 0.95]}, {0.1: 3, 0.3: 3})
    assert claim(tmp_path, {}).status == "inconclusive"


def test_an_eta_never_detected_contradicts(tmp_path):
    write(tmp_path, {0.1: [1.01, 1.02, 1.0], 0.3: [1.5, 1.6, 1.55]}, {0.1: 3, 0.3: 0})
    assert claim(tmp_path, {}).status == "contradicted"


def test_the_quadratic_claim_reads_the_curved_models_only(tmp_path):
    # The zero-curvature control is never detected; it does not count against the claim.
    write(tmp_path, {3.0: [1.0, 0.99, 1.01]}, {3.0: 3}, **{"model.curvature": 0.35})
    curved = pd.read_csv(tmp_path / "cells.csv")
    flat = curved.assign(**{"model.curvature": 0.0, "detected": 0, "seeds": "0/3"})
    pd.concat([curved, flat]).to_csv(tmp_path / "cells.csv", index=False)
    summary = pd.read_csv(tmp_path / "summary.csv")
    pd.concat([summary, summary.assign(**{"model.curvature": 0.0})]).to_csv(
        tmp_path / "summary.csv", index=False)
    c = quadratic_claim(tmp_path, {})
    assert c.status == "reproduced" and "0/3" not in c.ours


def test_the_quadratic_claim_needs_one_eta_at_the_edge_in_every_seed(tmp_path):
    # A small eta that levels off below does not contradict "once the step is large enough";
    # without any eta detected in every seed the row is inconclusive; none detected anywhere
    # contradicts.
    curvature = {"model.curvature": 0.35}
    write(tmp_path, {2.0: [0.8, 0.7, 0.75], 3.0: [1.0, 0.99, 1.01]}, {2.0: 0, 3.0: 3},
          **curvature)
    assert quadratic_claim(tmp_path, {}).status == "reproduced"
    write(tmp_path, {2.0: [0.8, 0.7, 0.75], 3.0: [1.0, 0.92, 1.01]}, {2.0: 0, 3.0: 2},
          **curvature)
    assert quadratic_claim(tmp_path, {}).status == "inconclusive"
    write(tmp_path, {2.0: [0.8, 0.7, 0.75], 3.0: [0.9, 0.92, 0.91]}, {2.0: 0, 3.0: 0},
          **curvature)
    assert quadratic_claim(tmp_path, {}).status == "contradicted"


def test_no_report_is_not_run(tmp_path):
    assert claim(tmp_path, {}).status == "not run"
