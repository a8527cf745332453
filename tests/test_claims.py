"""results/CLAIMS.md: each phenomenon's claim.py turns its report files into a row whose status
follows the evidence (reproduced / contradicted / inconclusive / not run)."""

import numpy as np
import pandas as pd
import pytest
import yaml

from dynamics_lab.phenomena.claims import INCONCLUSIVE, REPRODUCED, Claim
from dynamics_lab.phenomena.hidden_progress.claim import claim as hidden_progress_claim
from dynamics_lab.phenomena.hidden_progress.scaling import ordering, seed_exponent
from dynamics_lab.phenomena.lazy_rich.claim import claim as lazy_rich_claim
from dynamics_lab.phenomena.xor.claim import claim as xor_claim
from dynamics_lab.phenomena.xor.scaling import (
    distinguishes,
    form_fits,
    local_exponents,
    tuned_points,
    tuned_table,
)
from dynamics_lab.report.claims import claims_table, write_claims


def test_a_status_outside_the_four_words_is_refused_and_few_seeds_are_inconclusive():
    with pytest.raises(ValueError, match="reproduced, contradicted, inconclusive, not run"):
        Claim("c", "p", "o", 3, "s", "confirmed")
    two = Claim("c", "p", "o", 2, "s", REPRODUCED)
    assert two.status == INCONCLUSIVE and "under the 3 a claim needs" in two.note


# -- lazy_rich ---------------------------------------------------------------------------------


def lazy_cells(tmp_path, lazy_detected: int, lazy_ratio_high: float, rich_detected: int = 0):
    rows = [dict(**{"model.alpha": 0.1}, finished=3, detected=rich_detected,
                 not_detected=3 - rich_detected, undetermined=0, seeds=f"{rich_detected}/3",
                 delay_ratio_mean=1.0, delay_ratio_ci_low=0.9, delay_ratio_ci_high=1.1,
                 step_gap_mean=100, step_gap_ci_low=90, step_gap_ci_high=110),
            dict(**{"model.alpha": 4.0}, finished=3, detected=lazy_detected,
                 not_detected=3 - lazy_detected, undetermined=0, seeds=f"{lazy_detected}/3",
                 delay_ratio_mean=lazy_ratio_high - 0.5, delay_ratio_ci_low=lazy_ratio_high - 1,
                 delay_ratio_ci_high=lazy_ratio_high, step_gap_mean=9000,
                 step_gap_ci_low=8000, step_gap_ci_high=10000)]
    pd.DataFrame(rows).to_csv(tmp_path / "cells.csv", index=False)
    return lazy_rich_claim(tmp_path, {})


def test_lazy_rich_reproduced_when_only_the_lazy_end_groks(tmp_path):
    c = lazy_cells(tmp_path, lazy_detected=3, lazy_ratio_high=6.0)
    assert c.status == "reproduced" and c.seeds == 3
    assert "alpha=0.1: 0/3 grokked" in c.ours and "alpha=4: 3/3 grokked" in c.ours
    assert "the step gap grows with alpha" in c.note


def test_lazy_rich_contradicted_when_the_lazy_end_falls_with_the_train_loss(tmp_path):
    c = lazy_cells(tmp_path, lazy_detected=0, lazy_ratio_high=1.5)
    assert c.status == "contradicted" and "no plateau-then-drop" in c.note


def test_lazy_rich_inconclusive_when_the_ends_are_mixed(tmp_path):
    assert lazy_cells(tmp_path, lazy_detected=2, lazy_ratio_high=6.0).status == "inconclusive"
    assert lazy_cells(tmp_path, lazy_detected=3, lazy_ratio_high=6.0,
                      rich_detected=1).status == "inconclusive"


def test_a_claim_without_its_report_is_not_run(tmp_path):
    assert lazy_rich_claim(tmp_path, {}).status == "not run"
    assert xor_claim(tmp_path, {}).status == "not run"
    assert hidden_progress_claim(tmp_path, {}).status == "not run"


# -- hidden_progress ---------------------------------------------------------------------------


def fit_row(k, exponent, half):
    return dict(k=k, quantity="learning_step", exponent=exponent, ci_low=exponent - half,
                ci_high=exponent + half)


def test_exponent_order_in_k():
    assert ordering(pd.DataFrame([fit_row(2, 0.5, 0.1), fit_row(3, 1.5, 0.2)])) == "agrees"
    assert ordering(pd.DataFrame([fit_row(2, 1.0, 0.1), fit_row(3, 0.5, 0.1)])) == "contradicts"
    assert ordering(pd.DataFrame([fit_row(2, 1.0, 0.4), fit_row(3, 1.2, 0.4)])) == "undecided"
    no_interval = pd.DataFrame([fit_row(2, 1.0, np.nan), fit_row(3, 0.5, np.nan)])
    assert ordering(no_interval) == "undecided"


def test_seed_exponent_keeps_repeats_and_gives_an_interval():
    rng = np.random.default_rng(0)
    n = np.repeat([20, 30, 45, 70], 3)
    fit = seed_exponent(n, 5 * n ** 2.0 * np.exp(rng.normal(0, 0.05, len(n))))
    assert fit["n"] == 12 and fit["n_sizes"] == 4
    assert fit["ci_low"] < 2.0 < fit["ci_high"] and fit["ci_high"] - fit["ci_low"] < 0.3


def test_hidden_progress_claim_flags_a_contradicting_order(tmp_path):
    fits = pd.DataFrame([fit_row(2, 1.0, 0.1), fit_row(3, 0.5, 0.1)])
    fits["ordering"] = ordering(fits)
    fits.to_csv(tmp_path / "learning_scaling.csv", index=False)
    pd.DataFrame([dict(k=k, n=n, runs=3, learned=3) for k in (2, 3) for n in (20, 70)]).to_csv(
        tmp_path / "learning_steps.csv", index=False)
    c = hidden_progress_claim(tmp_path, {})
    assert c.status == "contradicted" and c.note.startswith("FLAG")
    assert "k=2: steps to halve the loss ~ n^1 [0.9, 1.1]" in c.ours and c.seeds == 3


# -- xor ---------------------------------------------------------------------------------------


def xor_runs(samples_of, dims=(8, 16, 32, 64, 128, 256), lrs=(0.5, 1.0, 2.0), seeds=3):
    rng = np.random.default_rng(1)
    rows = []
    for d in dims:
        for lr in lrs:
            for seed in range(seeds):
                # Fewest samples at lr 1; lr 2 never reaches the target at the largest d.
                base = samples_of(d) * (1 if lr == 1.0 else 1.5)
                never = lr == 2.0 and d == dims[-1] and seed == 0
                rows.append({"task.n": d, "optim.lr": lr, "seed": seed,
                             "verdict/samples_to_target": None if never else
                             base * float(np.exp(rng.normal(0, 0.05)))})
    return pd.DataFrame(rows)


def test_the_tuned_step_size_has_the_fewest_samples_and_a_failed_seed_rules_one_out():
    table = xor_runs(lambda d: 40 * d)
    tuned = tuned_table(table)
    assert list(tuned["tuned_lr"]) == [1.0] * 6 and not tuned["at_grid_edge"].any()
    assert tuned.iloc[-1]["samples_at_lr_2"] == float("inf")
    points = tuned_points(table, tuned)
    assert len(points) == 18 and set(points["task.n"]) == {8, 16, 32, 64, 128, 256}


def test_the_forms_are_fitted_and_the_power_law_recovers_its_exponent():
    table = xor_runs(lambda d: 40 * d * np.log(d) ** 2)
    fits = form_fits(tuned_points(table, tuned_table(table))).set_index("form")
    local = local_exponents(8, 256)
    assert local["d"] == pytest.approx(1.0)
    assert 1.0 < local["d log d"] < local["d log^2 d"] < 2.0
    assert fits.loc["d^b", "ci_low"] < local["d log^2 d"] < fits.loc["d^b", "ci_high"]
    assert fits.loc["d log^2 d", "delta_aic"] == 0.0
    assert fits.loc["d", "delta_aic"] > 10
    assert "d log^2 d fits best" in distinguishes(fits.reset_index())


def test_noisy_data_over_a_short_range_do_not_tell_the_forms_apart():
    rng = np.random.default_rng(2)
    d = np.repeat([64, 96, 128], 3).astype(float)
    points = pd.DataFrame({"task.n": d, "verdict/samples_to_target":
                           30 * d * np.log(d) * np.exp(rng.normal(0, 0.4, len(d)))})
    assert "do not tell d, d log d, d log^2 d apart" in distinguishes(form_fits(points))


def write_xor_report(tmp_path, samples_of):
    from dynamics_lab.phenomena.sweep_view import SweepView
    from dynamics_lab.phenomena.xor.figures import write_figures

    table = xor_runs(samples_of).assign(run_id=lambda t: t.index.astype(str),
                                        **{"verdict/outcome": "detected"})
    view = SweepView(table, ["task.n", "optim.lr"], tmp_path, lambda run_id: None,
                     lambda run_id: {})
    names = [p.name for p in write_figures(view)]
    assert names == ["tuned_lr.csv", "samples_scaling.csv", "samples_per_dim.csv",
                     "samples_scaling.png"]
    return xor_claim(tmp_path, {})


def test_xor_claim_within_the_bound_beyond_it_and_straddling_it(tmp_path):
    within = write_xor_report(tmp_path, lambda d: 40 * d)
    assert within.status == "reproduced" and "within the bound" in within.note
    assert "lr tuned per d over {0.5 1 2}" in within.swept and within.seeds == 3
    beyond = write_xor_report(tmp_path, lambda d: 4 * d ** 2.2)
    assert beyond.status == "contradicted"
    flat = write_xor_report(tmp_path, lambda d: 3000 + 0 * d)
    assert flat.status == "reproduced" and "near-linear rate itself is not seen" in flat.note


# -- the table ---------------------------------------------------------------------------------


def test_the_table_has_a_row_per_experiment_and_lists_the_silent_ones(tmp_path):
    experiments = tmp_path / "experiments"
    experiments.mkdir()
    for name, phenomenon in (("lazy_rich", "lazy_rich"), ("edge_of_stability",
                                                         "edge_of_stability"),
                             ("stepwise", "stepwise")):
        (experiments / f"{name}.yaml").write_text(yaml.safe_dump(
            {"name": name, "phenomenon": {"name": phenomenon}}))
    results = tmp_path / "results"
    (results / "lazy_rich").mkdir(parents=True)
    lazy_cells(results / "lazy_rich", lazy_detected=0, lazy_ratio_high=1.5)
    path = write_claims(results, experiments)
    text = path.read_text()
    assert path.name == "CLAIMS.md"
    assert "| lazy_rich |" in text and "| contradicted |" in text
    assert "| edge_of_stability |" in text and "| not run |" in text  # its claim, no report yet
    assert "No claim stated yet" in text and "stepwise" in text.split("No claim stated yet")[1]
    assert text == claims_table([(p.stem, yaml.safe_load(p.read_text()))
                                 for p in sorted(experiments.glob("*.yaml"))], results)
