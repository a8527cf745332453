"""The adaptive phase map against the full grid it stands for, on real runs (slow): grokking
on (a+b) mod 23 for 400 AdamW steps at lr 0.01, weight decay (log) x train fraction. The fine
13x13 grid runs once; the search starts from 4x4 and refines to the same 13x13 lattice.
Measured: the fine grid shows memorization, grokking, confusion (and 3 undetermined points);
the search used 56 of its 169 runs (16 + 12 + 28) and agreed on 97.6% of its points. 21 min
on two CPU cores shared with other jobs (load ~14), 12 of them the fine grid."""

import pytest

from dynamics_lab.phenomena.phase_map import agreement, labels_of
from dynamics_lab.sweep.launch import RunRequest
from dynamics_lab.sweep.phase import PhaseRequest, current_points, plan_search, run_search

AXES = ["optim.weight_decay=0.3:10:log", "task.train_fraction=0.5:0.9"]
SHRUNK = ["task.p=23", "optim.lr=0.01", "trainer.max_steps=400", "trainer.eval_every=10",
          "trainer.log_every=10", "trainer.checkpoint_every=400"]


def search(out, coarse):
    # --ensemble 13: the runs of one train fraction train as one vectorized model
    run = RunRequest("grokking", overrides=SHRUNK, out=out, workers=2, ensemble=13,
                     wandb=False)
    found = plan_search(PhaseRequest(run, AXES, resolution=13, seeds=1, coarse=coarse))
    run_search(found, echo=lambda line: None)
    return found, labels_of(current_points(found), found.lattice)


@pytest.mark.slow
def test_the_adaptive_map_agrees_with_the_fine_grid_using_a_third_of_its_runs(tmp_path):
    fine, reference = search(tmp_path / "fine", coarse=13)
    adaptive, labels = search(tmp_path / "adaptive", coarse=4)
    phases = frozenset(fine.detector.phases)
    assert len(reference) == 169
    assert len(set(reference.values()) & phases) >= 2  # a boundary to find
    share, compared = agreement(labels, adaptive.lattice, reference, phases)
    print(f"fine grid: {len(reference)} runs, phases {sorted(set(reference.values()))}; "
          f"adaptive: {len(labels)} runs ({len(labels) / len(reference):.0%}), agreement "
          f"{share:.1%} of {compared} points")
    assert compared == 169
    assert share >= 0.95
    assert len(labels) <= 169 / 3
