"""Config loading, profiles, overrides, and the one-line errors for bad input."""

import pytest

from dynamics_lab.config import load_experiment, parse_override
from dynamics_lab.schema import ConfigError
from dynamics_lab.sweep import expand


def test_quick_profile_matches_the_published_cpu_recipe():
    c = load_experiment("grokking")
    assert (c.profile, c.task.p, c.task.op, c.task.train_fraction) == ("quick", 97, "add", 0.4)
    assert (c.model.name, c.model.embed_dim, c.model.width) == ("mlp", 64, 128)
    assert (c.optim.name, c.optim.lr, c.optim.betas, c.optim.weight_decay) == (
        "adamw", 3e-3, (0.9, 0.98), 1.0)
    assert c.trainer.batch_size is None


def test_full_profile_is_the_transformer_at_paper_scale():
    c = load_experiment("grokking", profile="full")
    assert (c.task.p, c.task.train_fraction, c.model.name) == (113, 0.3, "transformer")
    assert (c.model.d_model, c.model.n_heads, c.model.d_mlp, c.model.layer_norm) == (
        128, 4, 512, False)
    assert (c.optim.lr, c.trainer.max_steps) == (1e-3, 40000)


def test_overrides_are_typed():
    c = load_experiment("grokking", overrides=["optim.lr=1e-2", "trainer.max_steps=7",
                                                "task.op=mul", "optim.betas=[0.8, 0.9]"])
    assert c.optim.lr == 0.01 and c.trainer.max_steps == 7 and c.task.op == "mul"
    assert c.optim.betas == (0.8, 0.9)


def test_data_seed_and_init_seed_are_separate():
    c = load_experiment("grokking", overrides=["seed=3"])
    assert c.seed == 3 and c.task.seed == 0


def test_yaml_path_works(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("task: {name: modular_arithmetic, p: 11}\nmodel: {name: mlp}\n")
    c = load_experiment(str(path))
    assert c.name == "mine" and c.task.p == 11


@pytest.mark.parametrize("overrides, message", [
    (["optim.lrr=1"], "unknown key 'optim.lrr' (did you mean 'optim.lr'?)"),
    (["optim.lr=abc"], "optim.lr: Input should be a valid number"),
    (["optim.name=adamm"], "optim.name"),
    (["task.train_fraction=1.5"], "task.train_fraction"),
    (["task.train_fraction=0"], "task.train_fraction"),
    (["task.op=div", "task.p=96"], "op=div needs a prime p"),
    (["task.name=modular_arithmetc"], "did you mean 'modular_arithmetic'"),
    (["model.name=mlpp"], "did you mean 'mlp'"),
    (["model.widht=3"], "did you mean 'model.width'"),
    (["trainer.max_steps=-1"], "trainer.max_steps"),
    (["nonsense"], "expected KEY=VALUE"),
    (["sweep.grid.optim.wd=[1]"], "unknown key 'optim.wd'"),
])
def test_bad_input_is_one_clear_line(overrides, message):
    with pytest.raises(ConfigError) as info:
        load_experiment("grokking", overrides=overrides)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_unknown_experiment_and_profile():
    with pytest.raises(ConfigError, match="did you mean 'grokking'"):
        load_experiment("grokkin")
    with pytest.raises(ConfigError, match="valid: full, held_out, quick"):
        load_experiment("grokking", profile="fast")


def test_parse_override_reads_yaml_values():
    assert parse_override("a.b=[1, 2]") == ("a.b", [1, 2])
    assert parse_override("a=null") == ("a", None)
    assert parse_override("a=true") == ("a", True)


def test_sweep_expands_grid_times_seeds():
    c = load_experiment("grokking", overrides=["sweep.seeds=[0, 1]"])
    specs = expand(c)
    grid = c.sweep.grid
    assert len(specs) == len(grid["optim.weight_decay"]) * len(grid["task.train_fraction"]) * 2
    assert len({s.run_id for s in specs}) == len(specs)
    first = specs[0]
    assert first.config.optim.weight_decay == grid["optim.weight_decay"][0]
    assert first.config.task.train_fraction == grid["task.train_fraction"][0]
    assert [s.config.seed for s in specs[:2]] == [0, 1]
