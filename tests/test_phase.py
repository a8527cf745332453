"""Phase search logic with label functions instead of runs: axes and lattice, the quadtree along
a boundary, bisection in 1-D, majority labels, and the phenomena's phase labels."""

import pytest

from dynamics_lab.phenomena import build
from dynamics_lab.phenomena.edge_of_stability import phase as eos_phase
from dynamics_lab.phenomena.grokking import phase as grok_phase
from dynamics_lab.phenomena.phase_lattice import Axis, Lattice, parse_axis
from dynamics_lab.phenomena.phase_map import SPLIT, agreement, boundary, majority
from dynamics_lab.phenomena.phase_tree import known, leaves, next_points, predict
from dynamics_lab.schema import ConfigError

PHASES = frozenset({"a", "b", "c"})


def search(lattice, label, max_runs=None):
    """Rounds of the quadtree with `label(values)` standing in for the runs; labels sampled."""
    labels = {p: label(lattice.value(p)) for p in lattice.coarse_points()}
    while True:
        room = None if max_runs is None else max_runs - len(labels)
        new = next_points(lattice, labels, PHASES, room)
        if not new:
            return labels
        labels.update({p: label(lattice.value(p)) for p in new})


def two_boundaries(values):
    x, y = values
    if (x - 0.2) ** 2 + (y + 0.1) ** 2 < 0.35:
        return "a"
    return "b" if x + y < 0.9 else "c"


@pytest.mark.parametrize("text, says", [
    ("optim.lr=0.1:0.1", "empty range"),
    ("optim.lr=0.3:0.1", "LO must be below HI"),
    ("optim.lr=0:1:log", "log axis must stay above 0"),
    ("optim.lr=-1:1:log", "log axis must stay above 0"),
    ("optim.lr=0.1", "expected KEY=LO:HI"),
    ("optim.lr=a:b", "must be numbers"),
    ("optim.lr=0.1:1:lin", "expected KEY=LO:HI"),
    ("=0.1:1", "expected KEY=LO:HI"),
])
def test_bad_axes_are_one_line_errors(text, says):
    with pytest.raises(ConfigError, match=says) as info:
        parse_axis(text)
    assert "\n" not in str(info.value)


def test_lattice_values_are_geometric_on_a_log_axis_with_exact_ends():
    lattice = Lattice.for_resolution((parse_axis("w=0.001:10:log"),), coarse=5, resolution=17)
    values = lattice.values(0)
    assert lattice.levels == 2 and len(values) == 17
    assert values[0] == 0.001 and values[-1] == 10.0
    ratios = [b / a for a, b in zip(values, values[1:])]
    assert max(ratios) / min(ratios) < 1.01  # evenly spaced in log up to the rounding
    assert lattice.index(lattice.value((8,))) == (8,)
    assert lattice.index((0.5,)) is None  # off the lattice


def test_resolution_rounds_up_to_halvings_of_the_coarse_grid():
    axes = (parse_axis("a=0:1"), parse_axis("b=0:1"))
    assert Lattice.for_resolution(axes, 4, 10).resolution == 13
    assert Lattice.for_resolution(axes, 4, 4).levels == 0
    with pytest.raises(ConfigError, match="below the coarse grid"):
        Lattice.for_resolution(axes, 4, 3)


def test_an_integer_axis_refuses_a_lattice_finer_than_its_integers():
    axis = Axis("model.width", 8, 16, integer=True)
    assert Lattice((axis,), 3, 1).values(0) == (8, 10, 12, 14, 16)
    with pytest.raises(ConfigError, match="repeat values"):
        Lattice((axis,), 3, 3)


def test_quadtree_refines_only_along_the_boundary_and_agrees_with_the_fine_grid():
    lattice = Lattice.for_resolution((parse_axis("x=-1:1"), parse_axis("y=-1:1")), 5, 33)
    labels = search(lattice, two_boundaries)
    truth = {p: two_boundaries(lattice.value(p)) for p in lattice.all_points()}
    share, compared = agreement(labels, lattice, truth, PHASES)
    assert compared == lattice.size == 33 * 33
    assert share >= 0.97
    assert len(labels) <= lattice.size / 3
    # every leaf whose points disagree is at the finest size: nothing left to refine
    for cell in leaves(lattice, set(labels)):
        seen = {labels[p] for p in cell.boundary() if p in labels}
        assert len(seen) == 1 or cell.size == 1


def test_cells_deep_inside_a_phase_are_never_split():
    lattice = Lattice.for_resolution((parse_axis("x=0:1"), parse_axis("y=0:1")), 4, 13)
    labels = search(lattice, lambda v: "a" if v[0] < 0.45 else "b")
    # x = 0.45 lies in the middle column of coarse cells (x index 4..8 of 0..12): only that
    # column is refined, and within it only the sub-columns it crosses
    added = [p for p in labels if p not in lattice.coarse_points()]
    assert added and all(4 <= p[0] <= 8 for p in added)
    assert all(p[0] in (4, 5, 6) for p in added if p[0] % 2)  # finest level: x index 5 only


def test_one_axis_is_bisection():
    lattice = Lattice.for_resolution((parse_axis("lr=0.01:1:log"),), 4, 49)
    threshold = 0.137
    labels = search(lattice, lambda v: "a" if v[0] < threshold else "b")
    assert len(labels) == 4 + lattice.levels  # the coarse grid, then one midpoint a round
    below = max(lattice.value(p)[0] for p, v in labels.items() if v == "a")
    above = min(lattice.value(p)[0] for p, v in labels.items() if v == "b")
    assert lattice.index((above,))[0] - lattice.index((below,))[0] == 1
    assert below < threshold < above
    assert len(boundary(lattice, predict(lattice, labels, PHASES))) == 1


def test_a_split_point_is_refined_like_a_boundary():
    lattice = Lattice.for_resolution((parse_axis("x=0:1"), parse_axis("y=0:1")), 3, 5)
    labels = {p: "a" for p in lattice.coarse_points()}
    assert next_points(lattice, labels, PHASES) == []
    labels[(0, 0)] = SPLIT  # the centre, and the midpoints of the two edges that meet there
    assert next_points(lattice, labels, PHASES) == [(0, 1), (1, 0), (1, 1)]
    labels[(0, 0)] = "undetermined"
    assert len(next_points(lattice, labels, PHASES)) == 3


def test_an_edge_whose_ends_agree_is_inferred_not_run():
    lattice = Lattice.for_resolution((parse_axis("x=0:1"), parse_axis("y=0:1")), 2, 3)
    labels = {(0, 0): "a", (0, 2): "a", (2, 0): "b", (2, 2): "b"}  # a boundary x = const
    new = next_points(lattice, labels, PHASES)
    assert new == [(1, 0), (1, 1), (1, 2)]  # not (0, 1) nor (2, 1): their edges agree
    labels.update({(1, 0): "a", (1, 1): "b", (1, 2): "b"})
    full = known(lattice, labels, PHASES)
    assert full[(0, 1)] == "a" and full[(2, 1)] == "b"
    assert predict(lattice, labels, PHASES)[(0, 1)] == "a"


def test_a_budget_takes_whole_cells_largest_first():
    lattice = Lattice.for_resolution((parse_axis("x=-1:1"), parse_axis("y=-1:1")), 5, 33)
    labels = search(lattice, two_boundaries, max_runs=60)
    assert 25 < len(labels) <= 60
    assert len(search(lattice, two_boundaries)) > 60
    assert next_points(lattice, labels, PHASES, 60 - len(labels)) == []


def test_majority_over_seeds():
    assert majority(["a", "a", "b"]) == "a"
    assert majority(["a", "b"]) == SPLIT
    assert majority(["a", "b", "c"]) == SPLIT
    assert majority(["undetermined", "undetermined", "a"]) == "undetermined"


GROK = build("grokking")


@pytest.mark.parametrize("verdict, phase", [
    ({"outcome": "detected", "fit_step": 100, "generalization_step": 2000}, "grokking"),
    ({"outcome": "not_detected", "fit_step": None, "final_train_acc": 0.4}, "confusion"),
    ({"outcome": "not_detected", "fit_step": 100, "generalization_step": 140,
      "delay_ratio": 1.4}, "comprehension"),
    ({"outcome": "not_detected", "fit_step": 100, "val_acc_at_fit": 0.9,
      "final_val_acc": 0.99}, "comprehension"),
    ({"outcome": "not_detected", "fit_step": 100, "final_val_acc": 0.05}, "memorization"),
    ({"outcome": "undetermined", "fit_step": 100}, "undetermined"),
])
def test_grokking_phases_after_liu_et_al(verdict, phase):
    assert GROK.phase_label(verdict) == phase
    assert GROK.phases == grok_phase.PHASES


EOS = build("edge_of_stability")


@pytest.mark.parametrize("verdict, phase", [
    ({"outcome": "not_detected", "crossing_step": None, "max_sharpness_ratio": 0.6}, "stable"),
    ({"outcome": "detected", "crossing_step": 300, "loss_change": 0.1}, "edge of stability"),
    ({"outcome": "not_detected", "crossing_step": 10, "loss_change": 0.2,
      "picture": "catapult"}, "edge of stability"),
    ({"outcome": "not_detected", "diverged_step": 40}, "diverged"),
    ({"outcome": "not_detected", "crossing_step": 100, "loss_change": 3.0}, "diverged"),
    ({"outcome": "not_detected", "crossing_step": 100, "loss_change": None,
      "fraction_within": 0.8}, "diverged"),
    ({"outcome": "undetermined", "crossing_step": None}, "undetermined"),
])
def test_edge_of_stability_phases(verdict, phase):
    assert EOS.phase_label(verdict) == phase
    assert EOS.phases == eos_phase.PHASES


def test_a_phenomenon_without_phase_labels_uses_its_outcomes():
    xor = build("xor")
    assert xor.phases == ("detected", "not_detected")
    assert xor.phase_label({"outcome": "detected"}) == "detected"
    assert xor.phase_label({}) == "undetermined"


def test_prediction_covers_the_lattice_and_keeps_sampled_labels():
    lattice = Lattice.for_resolution((parse_axis("x=-1:1"), parse_axis("y=-1:1")), 4, 13)
    labels = search(lattice, two_boundaries)
    guess = predict(lattice, labels, PHASES)
    assert set(guess) == set(lattice.all_points())
    assert all(guess[p] == v for p, v in labels.items())
    assert agreement(labels, lattice, labels, PHASES)[0] == 1.0
