"""Hostile input is one line and exit status 2, before anything is written: strict YAML (no
duplicate keys, no alias bombs, no huge or deep or non-UTF-8 files), seeds in range, plugins
that raise or exit, models, datasets and sweeps too big for the machine, and a primality test
that answers at once for any 64-bit p."""

import contextlib
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import one_line_error, sets
from typer.testing import CliRunner

from dynamics_lab.cli import app
from dynamics_lab.config import load_experiment
from dynamics_lab.schema import ConfigError
from dynamics_lab.tasks.modular_arithmetic import is_prime

REPO = Path(__file__).resolve().parents[1]
TINY = ["task.p=23", "model.embed_dim=8", "model.width=32", "trainer.max_steps=40",
        "logging.wandb=false"]


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])




@contextlib.contextmanager
def within(seconds):
    """Fail (instead of hanging) when the block runs longer than `seconds`."""
    def expire(*_):
        raise TimeoutError(f"took longer than {seconds}s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def experiment(tmp_path, text, name="exp.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


BASE = """\
task: {name: modular_arithmetic, p: 23}
model: {name: mlp, embed_dim: 8, width: 32}
trainer: {max_steps: 40}
"""


# -- YAML ---------------------------------------------------------------------------------


def test_a_duplicate_top_level_key_names_the_key_and_both_lines(tmp_path, runs_root):
    path = experiment(tmp_path, "name: first\n" + BASE + "name: second\n")
    result = invoke("run", path)
    one_line_error(result, "duplicate key 'name'", "lines 1 and 5", str(path))
    assert not runs_root.exists()


def test_a_duplicate_nested_key_names_its_dotted_path(tmp_path):
    path = experiment(tmp_path, BASE + "optim:\n  lr: 0.1\n  weight_decay: 1.0\n  lr: 0.001\n")
    with pytest.raises(ConfigError, match=r"duplicate key 'optim\.lr' \(lines 5 and 7\)"):
        load_experiment(path)


def test_a_duplicate_key_in_an_override_value_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="duplicate key 'a'"):
        load_experiment("grokking", overrides=[*TINY, "sweep.slurm.additional={a: 1, a: 2}"])


def test_an_alias_bomb_in_a_free_form_mapping_is_refused_at_once(tmp_path):
    bomb = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    bomb += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    text = BASE + "sweep:\n  slurm:\n    additional:\n" + "".join(
        f"      {line}\n" for line in bomb)
    path = experiment(tmp_path, text)
    with within(5.0), pytest.raises(ConfigError, match="alias"):
        load_experiment(path)


def test_ordinary_anchors_and_aliases_still_load(tmp_path):
    path = experiment(tmp_path, "task: {name: modular_arithmetic, p: 23}\n"
                                "model: {name: mlp, embed_dim: 8, width: 32}\n"
                                "trainer: &trainer {max_steps: 40}\n"
                                "sweep: {slurm: {additional: {comment: *trainer}}}\n")
    assert load_experiment(path).sweep.slurm.additional == {"comment": {"max_steps": 40}}


def test_a_50_mb_yaml_is_refused_without_reading_it(tmp_path, runs_root):
    path = tmp_path / "huge.yaml"
    with open(path, "wb") as f:
        f.write(BASE.encode())
        f.truncate(50 * 2**20)  # sparse: 50 MB on paper, nothing to write
    with within(5.0):
        result = invoke("run", path)
    one_line_error(result, str(path), "MB")
    assert not runs_root.exists()


def test_non_utf8_bytes_are_one_line(tmp_path, runs_root):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(BASE.encode() + "description: caf\xe9\n".encode("latin-1"))
    one_line_error(invoke("run", path), str(path), "UTF-8")
    assert not runs_root.exists()


@pytest.mark.parametrize("depth", [300, 10_000])
def test_deep_nesting_is_one_line(tmp_path, runs_root, depth):
    path = experiment(tmp_path, BASE + "sweep: {slurm: {additional: {x: "
                      + "[" * depth + "]" * depth + "}}}\n")
    one_line_error(invoke("run", path), str(path), "nest")
    assert not runs_root.exists()


def test_deep_nesting_in_an_override_is_one_line(runs_root):
    deep = "[" * 5000 + "]" * 5000
    deep_override = f"sweep.slurm.additional={{x: {deep}}}"
    one_line_error(invoke("run", "grokking", *sets([*TINY, deep_override])), "nest")
    assert not runs_root.exists()


# -- seeds --------------------------------------------------------------------------------


@pytest.mark.parametrize("flags", [["--seed", "4294967296"], ["--sweep", "--seed", "4294967296"],
                                   ["--seed", "-1"], ["--seed", "4294967295", "--ensemble", "2"]])
def test_a_seed_out_of_range_is_refused_before_anything_is_written(runs_root, flags):
    result = invoke("run", "grokking", *flags, *sets(TINY))
    one_line_error(result, "seed")
    assert not runs_root.exists()


def test_the_largest_seed_is_accepted():
    assert load_experiment("grokking", overrides=[*TINY, "seed=4294967295"]).seed == 2**32 - 1


# -- plugins ------------------------------------------------------------------------------


@pytest.mark.parametrize("body, words", [
    ("raise RuntimeError('no GPU here\\nsecond line')", ["RuntimeError", "no GPU here"]),
    ("import sys\nsys.exit(3)", ["exit", "3"]),
    ("raise KeyError('gone')", ["KeyError"]),
])
def test_a_plugin_that_raises_or_exits_is_one_line(tmp_path, runs_root, body, words):
    plugin = tmp_path / f"broken_{abs(hash(body))}.py"
    plugin.write_text(body + "\n")
    result = invoke("run", "grokking", "--plugin", plugin, *sets(TINY))
    one_line_error(result, str(plugin), *words)
    assert not runs_root.exists()


def test_a_plugin_module_that_raises_is_one_line(tmp_path, runs_root, monkeypatch):
    (tmp_path / "raising_mod.py").write_text("raise ValueError('bad import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    result = invoke("run", "grokking", "--plugin", "raising_mod", *sets(TINY))
    one_line_error(result, "raising_mod", "ValueError", "bad import")


def test_a_plugin_taking_a_built_in_name_first_is_one_line(tmp_path):
    plugin = tmp_path / "squatter.py"
    plugin.write_text("from dynamics_lab.registry import TASKS\n\n\n"
                      "@TASKS.register('modular_arithmetic')\nclass Mine:\n    pass\n")
    # A fresh interpreter: the built-ins must not have been loaded before the plugin.
    out = subprocess.run(
        [sys.executable, str(REPO / "cli.py"), "run", "grokking", "--plugin", str(plugin),
         "--out", str(tmp_path / "runs"), *sets(TINY)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path)
    lines = (out.stdout + out.stderr).strip().splitlines()
    assert out.returncode == 2, out.stdout + out.stderr
    assert len(lines) == 1 and "modular_arithmetic" in lines[0] and "squatter" in lines[0]
    assert not (tmp_path / "runs").exists()


# -- sizes: primes, datasets, models, sweeps ----------------------------------------------


def test_primality_is_instant_and_exact_up_to_64_bits():
    with within(2.0):
        assert is_prime(2**61 - 1) and is_prime(2**64 - 59) and is_prime(1_000_003)
        assert not is_prime(2**64 - 1) and not is_prime((2**31 - 1) * (2**31 + 11))
        # Carmichael numbers and strong pseudoprimes to the first bases are composite.
        assert not any(map(is_prime, [561, 41041, 3215031751, 3825123056546413051,
                                      318665857834031151167461]))
    assert [n for n in range(60) if is_prime(n)] == [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31,
                                                     37, 41, 43, 47, 53, 59]


def test_a_mersenne_prime_p_is_checked_at_once_then_refused_for_its_size(runs_root):
    with within(10.0):
        result = invoke("run", "grokking", *sets([*TINY, f"task.p={2**61 - 1}", "task.op=div"]))
    one_line_error(result, "memory", "--force")
    assert not runs_root.exists()


def test_a_dataset_of_a_trillion_pairs_is_refused_before_it_is_built(runs_root):
    with within(10.0):
        result = invoke("run", "grokking", *sets([*TINY, "task.p=1000003", "task.op=div"]))
    one_line_error(result, "memory", "task", "--force")
    assert not runs_root.exists()


def test_a_model_too_big_for_the_machine_is_refused_and_force_lets_it_through(monkeypatch):
    monkeypatch.setattr("dynamics_lab.footprint.machine_memory", lambda device: 16 * 2**30)
    with within(10.0), pytest.raises(ConfigError, match=r"model.*GiB.*16\.0 GiB.*--force"):
        load_experiment("grokking", overrides=[*TINY, "model.width=10000000"])
    config = load_experiment("grokking", overrides=[*TINY, "model.width=10000000"], force=True)
    assert config.model.width == 10**7


def test_a_model_beyond_any_machine_is_refused_on_the_command_line(runs_root):
    with within(10.0):
        result = invoke("run", "grokking", *sets([*TINY, "model.width=1000000000"]))
    one_line_error(result, "memory", "--force")
    assert not runs_root.exists()


def test_a_sweep_grid_point_too_big_is_refused(monkeypatch):
    monkeypatch.setattr("dynamics_lab.footprint.machine_memory", lambda device: 16 * 2**30)
    with pytest.raises(ConfigError, match=r"sweep\.grid\.model\.width=10000000"):
        load_experiment("grokking", overrides=[*TINY, "sweep.grid={model.width: [32, 10000000]}"])


def test_the_experiments_as_shipped_fit_a_laptop(monkeypatch):
    monkeypatch.setattr("dynamics_lab.footprint.machine_memory", lambda device: 8 * 2**30)
    from dynamics_lab.config import list_experiments

    for name in list_experiments():
        load_experiment(name, "quick")


def test_a_sweep_of_100000_seeds_is_refused_at_once_unless_allowed(runs_root):
    seeds = f"sweep.seeds={list(range(100_000))}"
    start = time.time()
    result = invoke("run", "grokking", "--sweep", *sets([*TINY, "sweep.grid={}", seeds]))
    one_line_error(result, "100000 runs", "sweep.max_runs")
    assert time.time() - start < 30 and not runs_root.exists()
    config = load_experiment("grokking", overrides=[*TINY, "sweep.grid={}", seeds,
                                                    "sweep.max_runs=100000"])
    assert len(config.sweep.seeds) == 100_000
