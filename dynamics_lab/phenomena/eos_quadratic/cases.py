"""The eos_quadratic cases of the shared detector battery (phenomena/battery.py): the
edge-of-stability curves of the detector this one builds on, at this model's threshold, judged
by the same rule under this phenomenon's name."""

from __future__ import annotations

from dynamics_lab.phenomena.battery import Case
from dynamics_lab.phenomena.edge_of_stability.cases import table

GD = {"optim": {"name": "gd", "lr": 3.0}, "model": {"name": "quadratic", "curvature": 0.35}}


def cases() -> list[Case]:
    """Every eos_quadratic case of the battery."""
    out: list[Case] = []
    for name, kw in {"every=10, steps=2000": dict(every=10, steps=2000),
                     "every=20, steps=2000, noise=0.02": dict(every=20, steps=2000, noise=0.02),
                     "every=10, steps=4000, noise=0.03": dict(every=10, steps=4000, noise=0.03)
                     }.items():
        # threshold 2/eta = 0.667; reached after ~20% of the run, as the quick sweep's runs do
        kw = {**kw, "threshold": 2 / 3, "reach_at": kw["steps"] / 5}
        for family, sharp, loss, expected in (
                ("textbook", "edge", "falls", "detected"),
                ("levels off below (linear model, small eta)", "low", "falls", "not_detected"),
                ("overshoot", "over", "falls", "not_detected"),
                ("stuck at the threshold, loss grows", "edge", "grows", "not_detected"),
                ("still sharpening", "rising", "falls", "undetermined")):
            out.append(Case("eos_quadratic", family, name, expected,
                            lambda s=sharp, lo=loss, kw=kw: (table(s, lo, **kw), GD)))
        out.append(Case("eos_quadratic", "no sharpness", name, "undetermined", lambda kw=kw: (
            table(**kw).drop(columns=["hessian/lambda_max"]), GD)))
    return out
