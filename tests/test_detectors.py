"""The shared detector battery (phenomena/battery.py), in the manner of scikit-learn's
check_estimator: every registered phenomenon's textbook curves are detected, its look-alikes are
not, and too little data or a missing column is undetermined, in every variant of noise, cadence
and run length. Each phenomenon brings its cases from its own folder (phenomena/<name>/cases.py),
found through the registry."""

import collections

import pytest

from dynamics_lab.phenomena.battery import all_cases, outcome
from dynamics_lab.registry import PHENOMENA

CASES = all_cases()
NAMES = PHENOMENA.names()  # at collection: the built-ins (and installed entry points)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_battery(case):
    assert outcome(case) == case.expected


def test_every_phenomenon_faces_all_three_outcomes_in_several_variants():
    for name in NAMES:
        cases = [c for c in CASES if c.phenomenon == name]
        assert {c.expected for c in cases} == {"detected", "not_detected", "undetermined"}, name
        variants = collections.Counter(c.family for c in cases)
        looks = [f for f in variants if any(c.family == f and c.expected == "not_detected"
                                            for c in cases)]
        assert len(looks) >= 2, name  # at least two look-alike families
        assert all(variants[f] >= 2 for f in looks), (name, variants)
