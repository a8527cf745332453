"""The lazy_rich families of the shared detector battery (phenomena/battery.py): grokking as
Kumar et al. define it (the test loss on its level while the train loss fits, by step ~900
here, and a drop only later) and its look-alikes. The kernel columns describe the regime; the
outcome reads the losses."""

from __future__ import annotations

from collections.abc import Callable

from dynamics_lab.phenomena import synthetic as syn

DETECTED, NOT, UNDETERMINED = "detected", "not_detected", "undetermined"
Row = tuple[str, str, str, str, Callable]
FAMILIES = (  # (family, test loss shape, kernel, extra knobs, expected)
    ("textbook grokking", "plateau", "moves", {}, DETECTED),
    ("grokking after a transient", "transient", "moves", {}, DETECTED),
    ("grokking, no kernel column", "plateau", "none", {}, DETECTED),
    ("test drop before the train fit (rich)", "plateau", "moves", dict(drop_at=400), NOT),
    ("test falls with the train loss", "exponential", "moves", {}, NOT),
    ("lazy: the test loss stays on its level", "settle", "static", {}, UNDETERMINED),
    ("transient sets the level, no drop", "settle", "early", {}, UNDETERMINED))
VARIANTS = {"every=50, steps=8000, noise=0.0": dict(every=50, steps=8000, noise=0.0),
            "every=25, steps=8000, noise=0.02": dict(every=25, steps=8000, noise=0.02),
            "every=100, steps=16000, noise=0.02": dict(every=100, steps=16000, noise=0.02)}


def rows() -> list[Row]:
    """(phenomenon, family, variant, expected outcome, make) for every lazy_rich family."""
    out: list[Row] = []
    for name, kw in VARIANTS.items():
        for family, test, kernel, extra, expected in FAMILIES:
            if test == "exponential" and kw["steps"] > 8000:
                # Its time constant is a third of the run: over 16 000 steps the test loss is
                # still within 10% of its level at the fit and falls 3x eight times later, a
                # delay by the definition, no longer a look-alike.
                continue
            out.append(("lazy_rich", family, name, expected,
                        lambda t=test, k=kernel, e=extra, kw=kw: (
                            syn.lazy_rich(t, k, **{**kw, **e}), {})))
    out.append(("lazy_rich", "few evaluations", "every=1000, steps=8000", UNDETERMINED,
                lambda: (syn.lazy_rich(every=1000), {})))
    out.append(("lazy_rich", "train loss not fit yet", "every=20, steps=600", UNDETERMINED,
                lambda: (syn.lazy_rich(every=20, steps=600), {})))
    return out
