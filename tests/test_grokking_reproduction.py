"""The shipped grokking config really groks, and weight decay 0 really does not (slow); both on
the shipped seed and on the seeds the YAML holds out."""

import json

import pytest
from typer.testing import CliRunner

from dynamics_lab.cli import app
from dynamics_lab.config import load_experiment

SEEDS = [load_experiment("grokking").seed, *load_experiment("grokking", "held_out").sweep.seeds]


def verdict_of(tmp_path, *overrides):
    sets = [x for o in overrides for x in ("--set", o)]
    result = CliRunner().invoke(app, ["run", "grokking", "--out", str(tmp_path), *sets])
    assert result.exit_code == 0, result.output
    return json.loads(next(tmp_path.rglob("verdict.json")).read_text())


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_quick_profile_groks(tmp_path, seed):
    v = verdict_of(tmp_path, f"seed={seed}")
    assert v["detected"], v["summary"]
    assert v["fit_step"] < 400 and v["delay_ratio"] >= 5


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_without_weight_decay_it_fits_but_does_not_grok(tmp_path, seed):
    v = verdict_of(tmp_path, "optim.weight_decay=0.0", f"seed={seed}")
    assert not v["detected"] and v["fit_step"] is not None and v["generalization_step"] is None
