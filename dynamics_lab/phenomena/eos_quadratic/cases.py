"""The eos_quadratic families of the shared detector battery: the edge-of-stability curves of
phenomena/synthetic.py, judged by the same rule under this phenomenon's name."""

from __future__ import annotations

from collections.abc import Callable

from dynamics_lab.phenomena import synthetic as syn

GD = {"optim": {"name": "gd", "lr": 3.0}, "model": {"name": "quadratic", "curvature": 0.35}}

Row = tuple[str, str, str, str, Callable[[], tuple]]


def rows() -> list[Row]:
    """(phenomenon, family, variant, expected outcome, make) for every family."""
    out: list[Row] = []
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
            out.append(("eos_quadratic", family, name, expected,
                        lambda s=sharp, lo=loss, kw=kw: (syn.edge_of_stability(s, lo, **kw), GD)))
        out.append(("eos_quadratic", "no sharpness", name, "undetermined", lambda kw=kw: (
            syn.edge_of_stability(**kw).drop(columns=["hessian/lambda_max"]), GD)))
    return out
