"""The shared detector battery, in the manner of scikit-learn's `check_estimator`: for every
phenomenon, textbook curves that must be `detected`, look-alikes that must be `not_detected`,
and too-little-data or missing-column tables that must be `undetermined`, each family in several
variants (noise, evaluation cadence, run length). The curves come from synthetic.py; hostile.py
adds look-alikes that probe each paper's definition, diverged runs and damaged tables.

`CASES` lists them; `outcome(case)` runs one through today's detectors. A new phenomenon adds its
families here and passes the same battery (tests/test_detectors.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from dynamics_lab.phenomena import eos_quadratic, hessian_rank, hostile, lazy_rich
from dynamics_lab.phenomena import synthetic as syn

DETECTED, NOT, UNDETERMINED = "detected", "not_detected", "undetermined"


@dataclass(frozen=True)
class Case:
    """One table and the outcome its phenomenon's detector must reach.

    kind `run`: make() -> (metrics, experiment config); kind `fit`: make() -> (sizes, errors),
    judged by the power-law test of a sweep's scaling fit.
    """

    phenomenon: str
    family: str
    variant: str
    expected: str
    make: Callable[[], tuple] = field(repr=False, compare=False)
    kind: str = "run"

    @property
    def id(self) -> str:
        return f"{self.phenomenon}:{self.family}[{self.variant}]"


def _variants(knobs: list[dict]) -> list[tuple[str, dict]]:
    return [(", ".join(f"{k}={v}" for k, v in kw.items()), kw) for kw in knobs]


def _drop(frame, *columns):
    return frame.drop(columns=list(columns))


def _last(frame, column, value):
    """The table with its last value of `column` replaced (a crossing at the final evaluation)."""
    frame = frame.copy()
    frame.loc[frame.index[-1], column] = value
    return frame


def _grokking() -> list[Case]:
    out = []
    for name, kw in _variants([dict(every=20, steps=4000, noise=0.0),
                               dict(every=10, steps=4000, noise=0.01),
                               dict(every=50, steps=10000, noise=0.02)]):
        for family, val, expected in (("textbook", "grok", DETECTED), ("spike", "spike", NOT),
                                      ("creep", "creep", NOT), ("lost", "lost", NOT),
                                      ("together", "together", NOT), ("never", "never", NOT)):
            out.append(Case("grokking", family, name, expected,
                            lambda val=val, kw=kw: (syn.grokking(val, **kw), {})))
        out.append(Case("grokking", "no val/acc", name, UNDETERMINED,
                        lambda kw=kw: (_drop(syn.grokking("grok", **kw), "val/acc"), {})))
        out.append(Case("grokking", "crossing at the end", name, UNDETERMINED,
                        lambda kw=kw: (_last(syn.grokking("never", **kw), "val/acc", 0.97), {})))
    for name, kw in _variants([dict(every=10, steps=200), dict(every=20, steps=260)]):
        out.append(Case("grokking", "ends after the fit", name, UNDETERMINED,
                        lambda kw=kw: (syn.grokking("never", **kw), {})))
    out.append(Case("grokking", "few evaluations", "every=500, steps=3000", UNDETERMINED,
                    lambda: (syn.grokking("grok", every=500, steps=3000), {})))
    return out


GD = {"optim": {"name": "gd", "lr": 0.1}}


def _eos() -> list[Case]:
    out = []
    for name, kw in _variants([dict(every=25, steps=3000, noise=0.0),
                               dict(every=10, steps=3000, noise=0.02),
                               dict(every=50, steps=6000, noise=0.03)]):
        for family, sharp, loss, expected in (
                ("textbook", "edge", "falls", DETECTED),
                ("cross-entropy decline", "entropy", "falls", DETECTED),
                ("catapult", "catapult", "falls", NOT), ("loss grows", "edge", "grows", NOT),
                ("overshoot", "over", "falls", NOT), ("levels off below", "low", "falls", NOT),
                ("still sharpening", "rising", "falls", UNDETERMINED)):
            out.append(Case("edge_of_stability", family, name, expected,
                            lambda s=sharp, lo=loss, kw=kw: (syn.edge_of_stability(s, lo, **kw),
                                                             GD)))
        out.append(Case("edge_of_stability", "no sharpness", name, UNDETERMINED, lambda kw=kw: (
            _drop(syn.edge_of_stability(**kw), "hessian/lambda_max"), GD)))
        out.append(Case("edge_of_stability", "no loss", name, UNDETERMINED, lambda kw=kw: (
            _drop(syn.edge_of_stability(**kw), "train/batch_loss"), GD)))
        out.append(Case("edge_of_stability", "no threshold", name, UNDETERMINED, lambda kw=kw: (
            _drop(syn.edge_of_stability(**kw), "hessian/threshold"), {})))
        out.append(Case("edge_of_stability", "reached at the end", name, UNDETERMINED,
                        lambda kw=kw: (syn.edge_of_stability(
                            reach_at=(kw["steps"] - 2 * kw["every"]) / 0.94, **kw), GD)))
    return out


STEPWISE = {"task": {"name": "low_rank_regression", "singular_values": [3.0, 1.0, 0.3]}}


def _stepwise() -> list[Case]:
    out = []
    for name, kw in _variants([dict(steps=2000, log_spaced=False, noise=0.0),
                               dict(steps=2000, log_spaced=True, noise=0.01),
                               dict(steps=4000, log_spaced=True, noise=0.03)]):
        for family, kind, expected in (("textbook", "logistic", DETECTED),
                                       ("saturate together", "together", NOT),
                                       ("anisotropic regression", "anisotropic", NOT)):
            out.append(Case("stepwise", family, name, expected,
                            lambda k=kind, kw=kw: (syn.stepwise(k, **kw), STEPWISE)))
        out.append(Case("stepwise", "textbook, loss only", name, DETECTED, lambda kw=kw: (
            syn.stepwise("logistic", loss_only=True, **kw), {})))
        out.append(Case("stepwise", "too short", name, UNDETERMINED, lambda kw=kw: (
            syn.stepwise("logistic", **{**kw, "steps": 30}), STEPWISE)))
    for name, kw in _variants([dict(steps=5000, noise=0.0), dict(steps=5000, noise=0.05),
                               dict(steps=20000, noise=0.1)]):
        for family, kind in (("noisy exponential", "exponential"), ("noisy power law", "power")):
            out.append(Case("stepwise", family, name, NOT,
                            lambda k=kind, kw=kw: (syn.loss_curve(k, **kw), {})))
    out.append(Case("stepwise", "no modes, no loss", "steps=2000", UNDETERMINED, lambda: (
        syn.stepwise("logistic")[["step"]].assign(other=1.0), STEPWISE)))
    out.append(Case("stepwise", "few samples", "8 rows", UNDETERMINED, lambda: (
        syn.stepwise("logistic").iloc[::250], STEPWISE)))
    return out


SSL = {"task": {"name": "augmented_pairs", "dim": 16, "spectrum": [1.0, 0.5, 0.25, 0.125],
                "embed_dim": 4}, "model": {"name": "linear_encoder", "init_scale": 1e-3},
       "optim": {"name": "gd", "lr": 0.05}}


def _stepwise_ssl() -> list[Case]:
    out = []
    for name, kw in _variants([dict(steps=800, noise=0.0), dict(steps=800, log_spaced=True,
                                                                 noise=0.01),
                               dict(steps=1600, noise=0.03)]):
        for family, extra, expected in (
                ("textbook", {}, DETECTED), ("eigenvalues only", dict(eig_only=True), DETECTED),
                ("modes rise together", dict(kind="together"), NOT),
                ("exponential saturations", dict(kind="saturate"), NOT),
                ("too short", dict(steps=60), UNDETERMINED)):
            out.append(Case("stepwise_ssl", family, name, expected,
                            lambda e=extra, kw=kw: (syn.stepwise_ssl(**{**kw, **e}), SSL)))
    out.append(Case("stepwise_ssl", "no spectrum, no loss", "steps=800", UNDETERMINED, lambda: (
        syn.stepwise_ssl()[["step"]].assign(other=1.0), SSL)))
    return out


DECAYED = {"optim": {"name": "sgd", "lr": 0.3, "decay_steps": [7000]}}


def _large_step_sgd() -> list[Case]:
    out = []
    for name, kw in _variants([dict(every=50, noise=0.0), dict(every=25, noise=0.05),
                               dict(every=100, steps=20000, noise=0.1)]):
        experiment = {"optim": {**DECAYED["optim"],
                                "decay_steps": [int(0.7 * kw.get("steps", 10000))]}}
        for family, kind, expected in (("textbook", "sparsify", DETECTED),
                                       ("small step size", "converged", NOT),
                                       ("stabilized, still dense", "dense", NOT),
                                       ("sparse from the start", "early", NOT)):
            out.append(Case("large_step_sgd", family, name, expected,
                            lambda k=kind, kw=kw, e=experiment: (syn.large_step(k, **kw), e)))
        out.append(Case("large_step_sgd", "no decay", name, UNDETERMINED,
                        lambda kw=kw: (syn.large_step(**kw), {"optim": {"lr": 0.3}})))
        out.append(Case("large_step_sgd", "no activity column", name, UNDETERMINED, lambda kw=kw,
                        e=experiment: (_drop(syn.large_step(**kw), "sparsity/active_fraction"), e)))
    out.append(Case("large_step_sgd", "ends before the decay", "steps=6000", UNDETERMINED,
                    lambda: (syn.large_step(steps=6000), DECAYED)))
    out.append(Case("large_step_sgd", "few evaluations", "every=1000", UNDETERMINED,
                    lambda: (syn.large_step(every=1000), DECAYED)))
    return out


def _hidden_progress() -> list[Case]:
    out = []
    for name, kw in _variants([dict(every=100, steps=4000, noise=0.0),
                               dict(every=50, steps=4000, noise=0.02),
                               dict(every=100, steps=8000, noise=0.03)]):
        for family, extra, expected in (
                ("textbook", dict(loss="plateau"), DETECTED),
                ("after a transient", dict(loss="transient"), DETECTED),
                ("linear decline", dict(loss="linear"), NOT),
                ("slow exponential", dict(loss="exponential"), NOT),
                ("flat mass", dict(loss="plateau", mass_rise=0.0), NOT),
                ("quick learning", dict(loss="plateau", drop_at=150), NOT),
                ("still on the plateau", dict(loss="plateau", drop_at=10 * kw["steps"]),
                 UNDETERMINED),
                ("no mass column", dict(loss="plateau", mass=False), UNDETERMINED)):
            out.append(Case("hidden_progress", family, name, expected,
                            lambda e=extra, kw=kw: (syn.hidden_progress(**e, **kw), {})))
    out.append(Case("hidden_progress", "few evaluations", "every=500, steps=4000", UNDETERMINED,
                    lambda: (syn.hidden_progress(every=500), {})))
    return out


def _xor() -> list[Case]:
    out = []
    for name, kw in _variants([dict(every=20, steps=4000, noise=0.0),
                               dict(every=10, steps=4000, noise=0.01),
                               dict(every=50, steps=10000, noise=0.02, search_end=3000)]):
        for family, extra, expected in (
                ("textbook", dict(kind="find_tune"), DETECTED),
                ("features after the drop", dict(kind="late_features"), NOT),
                ("no search phase", dict(kind="at_once"), NOT),
                ("large initial output", dict(kind="large_init"), NOT),
                ("still searching", dict(kind="find_tune", search_end=20 * kw["steps"]),
                 UNDETERMINED),
                ("still tuning", dict(kind="stalls"), UNDETERMINED),
                ("no alignment column", dict(kind="find_tune", alignment=False), UNDETERMINED)):
            out.append(Case("xor", family, name, expected,
                            lambda e=extra, kw=kw: (syn.xor(**{**kw, **e}), {})))
    out.append(Case("xor", "few evaluations", "every=500, steps=4000", UNDETERMINED,
                    lambda: (syn.xor(every=500), {})))
    return out


def _scaling_law() -> list[Case]:
    out = []
    for classes in (64, 10):
        variant = f"n_classes={classes}"
        chance = 1 - 1 / classes
        out += [
            Case("scaling_law", "beats chance", variant, DETECTED,
                 lambda c=classes: syn.memory_run(0.05, c)),
            Case("scaling_law", "stuck at chance", variant, NOT,
                 lambda c=classes, e=chance: syn.memory_run(e, c)),
            Case("scaling_law", "no population error", variant, UNDETERMINED,
                 lambda c=classes: (_drop(syn.memory_run(0.05, c)[0],
                                          "memory/population_error"), syn.memory_run(0.05, c)[1])),
        ]
    out.append(Case("scaling_law", "chance unknown", "no n_classes", UNDETERMINED,
                    lambda: syn.memory_run(0.05, None)))
    grids = {"d=32..512": 2.0 ** np.arange(5, 10), "d=16..512": 2.0 ** np.arange(4, 10),
             "T=256..65536": 4.0 ** np.arange(4, 9)}
    for grid, sizes in grids.items():
        for noise in (0.0, 0.02, 0.05):
            name = f"{grid}, noise={noise}"
            for family, kind, expected in (("power law", "power", DETECTED),
                                           ("exponential", "exponential", NOT),
                                           ("floor", "floor", NOT)):
                out.append(Case("scaling_law", f"fit: {family}", name, expected,
                                lambda k=kind, s=sizes, n=noise: (s, syn.error_curve(k, s, n)),
                                kind="fit"))
        for n in (3, 4):
            out.append(Case("scaling_law", f"fit: {n} sizes", grid, UNDETERMINED,
                            lambda s=sizes[:n]: (s, syn.error_curve("power", s, 0.02)),
                            kind="fit"))
    return out


CASES: list[Case] = [*_grokking(), *_eos(), *_stepwise(), *_hidden_progress(),
                     *_scaling_law(), *_xor(), *_stepwise_ssl(), *_large_step_sgd(),
                     *(Case(*row) for row in hostile.rows()),
                     *(Case(*r) for p in (eos_quadratic, hessian_rank, lazy_rich)
                       for r in p.battery_rows())]


def outcome(case: Case) -> str:
    """What today's detectors say about the case."""
    from dynamics_lab.phenomena import detect
    from dynamics_lab.phenomena.scaling_law import fit_power_law

    if case.kind == "fit":
        return str(fit_power_law(*case.make()).outcome)
    frame, experiment = case.make()
    return str(detect(case.phenomenon, frame, experiment).outcome)
