"""Values that cannot train are refused at load time with one line naming the key."""

import pytest

from dynamics_lab.config import load_experiment
from dynamics_lab.schema import ConfigError

BAD = [
    ("optim.lr=.inf", "optim.lr: must be a finite number"),
    ("optim.lr=.nan", "optim.lr: must be a finite number"),
    ("optim.weight_decay=-.inf", "optim.weight_decay: must be a finite number"),
    ("task.train_fraction=.nan", "task.train_fraction: must be a finite number"),
    ("trainer.max_steps=true", "trainer.max_steps: expected a number"),
    ("trainer.batch_size=false", "trainer.batch_size: expected a number"),
    ("optim.betas=[0.9, 1.0]", "optim.betas.1: Input should be less than 1"),
    ("optim.betas=[-0.1, 0.9]", "optim.betas.0: Input should be greater than or equal to 0"),
    ("seed=-1", "seed: Input should be greater than or equal to 0"),
    ("task.seed=-3", "task.seed: Input should be greater than or equal to 0"),
    ("sweep.seeds=[]", "sweep.seeds: List should have at least 1 item"),
    ("sweep.seeds=[0, true]", "sweep.seeds: expected a number"),
    ("task.train_fraction=0.00001", "task: train_fraction=1e-05 of 9409 pairs leaves an empty"),
    ("task.train_fraction=0.99999", "task: train_fraction=0.99999 of 9409 pairs leaves an empty"),
    ("model.name=deep_linear", "model.name=deep_linear cannot take task.name=modular_arithmetic"),
    ("sweep.grid={optim.lr: [0.1, 0.1]}", "sweep.grid.optim.lr: repeated value(s) 0.1"),
    ("sweep.grid={optim.lr: [0.1, .inf]}", "sweep.grid: must be a finite number at 'optim.lr'"),
]


@pytest.mark.parametrize("override,message", BAD, ids=[b[0] for b in BAD])
def test_bad_value_is_one_line_naming_the_key(override, message):
    with pytest.raises(ConfigError) as info:
        load_experiment("grokking", overrides=[override])
    text = str(info.value)
    assert "\n" not in text
    assert message in text, text


def test_a_grid_value_that_breaks_the_model_task_pairing_names_the_grid_key():
    with pytest.raises(ConfigError, match=r"sweep.grid.model.name='deep_linear': model.name="):
        load_experiment("grokking", overrides=["sweep.grid={model.name: [mlp, deep_linear]}"])


def test_top_level_name_is_an_ordinary_key():
    config = load_experiment("grokking", overrides=["name=my_grokking"])
    assert config.name == "my_grokking"
    assert config.task.name == "modular_arithmetic" and config.optim.lr == 3e-3


def test_good_values_still_load():
    overrides = ["optim.betas=[0.0, 0.5]", "seed=7", "sweep.seeds=[0, 1]",
                 "task.train_fraction=0.5"]
    config = load_experiment("grokking", overrides=overrides)
    assert config.optim.betas == (0.0, 0.5) and config.seed == 7


def test_booleans_stay_booleans_where_they_are_booleans():
    config = load_experiment("grokking", overrides=["logging.wandb=false"])
    assert config.logging.wandb is False


def test_yaml_is_safe_loaded(tmp_path):
    path = tmp_path / "evil.yaml"
    marker = tmp_path / "pwned"
    path.write_text(f"!!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_experiment(path)
    assert not marker.exists()
