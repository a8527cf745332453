"""FeatureMetrics on hand-built cases and in a real Lightning Trainer, against direct linalg."""

import copy
import math

import lightning as L
import pytest
import torch
from conftest import EachStep, ListLogger, fit_with
from torch import nn

from dynamics_lab.linalg.representations import (
    effective_rank,
    linear_cka,
    participation_ratio,
    real_fourier_basis,
)
from dynamics_lab.measure.features import FeatureMetrics, hidden_layers, token_weights
from dynamics_lab.models.mlp import MLP, MLPConfig
from dynamics_lab.schema import OptimConfig
from dynamics_lab.tasks.modular_arithmetic import ModularArithmetic, ModularArithmeticConfig
from dynamics_lab.tasks.parity import Parity, ParityConfig
from dynamics_lab.tasks.polynomial import Polynomial, PolynomialConfig
from dynamics_lab.train.module import DynamicsModule


def measure_once(model, task, **kwargs):
    """The step-0 measurement of a one-step fit of a copy of `model` in a real Trainer: the
    row measures `model`'s parameters, which the fit leaves alone for the references."""
    module = DynamicsModule(copy.deepcopy(model), task.spec.loss, OptimConfig(), log_every=1)
    callback = FeatureMetrics(**kwargs)
    logger = fit_with([callback], module, task)
    return logger.rows[0], callback


def low_rank_model(rank: int, d_in=6, width=10) -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(d_in, width, bias=False), nn.Identity(), nn.Linear(width, 1))
    with torch.no_grad():
        model[0].weight.copy_(torch.randn(width, rank) @ torch.randn(rank, d_in))
    return model


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_hidden_layer_of_known_rank(rank):
    task = Polynomial(PolynomialConfig(dim=6, n_train=40))
    model = low_rank_model(rank)
    row, _ = measure_once(model, task, probe_size=40)
    assert 1 - 1e-4 <= row["features/erank/1"] <= rank + 1e-4
    assert 1 - 1e-4 <= row["features/pr/1"] <= rank + 1e-4
    assert row["features/weight_erank/0"] <= rank + 1e-4
    x = task.probe_batch(40)[0]
    rep = model[0](x).detach()
    assert row["features/erank/1"] == pytest.approx(float(effective_rank(rep - rep.mean(0))))
    assert row["features/pr/1"] == pytest.approx(float(participation_ratio(rep)))
    assert row["features/cka_init/1"] == pytest.approx(1.0, abs=1e-5)


def test_weight_norms_use_the_applied_weights():
    task = Polynomial(PolynomialConfig(dim=5, n_train=20))
    torch.manual_seed(0)
    model = MLP(MLPConfig(width=7, depth=2, parametrization="ntk", alpha=3.0), task.spec)
    row, _ = measure_once(model, task, probe_size=20)
    norms = {}
    for name in ("net.0", "net.2", "net.4"):
        layer = model.get_submodule(name)
        norms[name] = float((layer.weight * layer.weight_multiplier).detach().norm())
        assert row[f"features/weight_norm/{name}"] == pytest.approx(norms[name], rel=1e-5)
    assert row["features/weight_norm"] == pytest.approx(
        math.sqrt(sum(v**2 for v in norms.values())), rel=1e-5)
    assert set(hidden_layers(model)) == {"net.1", "net.3"}


def test_cka_to_init_is_kept_in_state_and_falls_when_features_change(tmp_path):
    task = Polynomial(PolynomialConfig(dim=5, n_train=30))
    torch.manual_seed(0)
    model = MLP(MLPConfig(width=12), task.spec)
    callback = FeatureMetrics(probe_size=30, every=1)
    checkpoint = tmp_path / "first.ckpt"
    module = DynamicsModule(model, task.spec.loss, OptimConfig(), log_every=1)
    fit_with([callback], module, task, save_to=checkpoint)

    def new_features(step):  # after the resumed run's step, before its measurement
        if step == 2:
            with torch.no_grad():
                model.net[0].weight.copy_(torch.randn_like(model.net[0].weight))

    # A fresh callback resumed by Lightning from the checkpoint keeps the initial features.
    restored = FeatureMetrics(probe_size=30, every=1)
    logger = fit_with([EachStep(new_features), restored],
                      module, task, max_steps=2, ckpt_path=checkpoint)
    torch.testing.assert_close(restored.representations_init["net.1"],
                               callback.representations_init["net.1"])
    x = task.probe_batch(30)[0]
    rep = torch.relu(model.net[0](x)).detach()
    expected = linear_cka(callback.representations_init["net.1"], rep)
    assert logger.rows[2]["features/cka_init/net.1"] == pytest.approx(float(expected), rel=1e-5)
    assert logger.rows[2]["features/cka_init/net.1"] < 0.99


@pytest.mark.parametrize("embed_dim", [4, None])
def test_fourier_metrics_of_a_single_frequency_input_layer(embed_dim):
    p = 11
    task = ModularArithmetic(ModularArithmeticConfig(p=p, train_fraction=0.5))
    torch.manual_seed(0)
    model = MLP(MLPConfig(width=6, embed_dim=embed_dim), task.spec)
    basis = real_fourier_basis(p, torch.float32)
    with torch.no_grad():
        if embed_dim:  # columns: cos and sin of frequency 3
            model.embed.weight.copy_(torch.stack([basis[5], basis[6], basis[5], basis[6]], 1))
        else:  # every neuron reads frequency 3 at both positions
            row = torch.cat([basis[5], basis[6]])
            model.net[0].weight.copy_(row.repeat(6, 1) * torch.arange(1.0, 7.0)[:, None])
    metrics, _ = measure_once(model, task, probe_size=20)
    assert token_weights(model, p).shape[0] == p
    assert metrics["features/fourier/ipr"] == pytest.approx(1.0, abs=1e-5)
    assert metrics["features/fourier/n_key_frequencies"] == 1
    assert metrics["features/fourier/neuron_purity"] == pytest.approx(1.0, abs=1e-5)
    assert metrics["features/fourier/power/3"] == pytest.approx(1.0, abs=1e-5)


def test_relevant_mass_of_parity_first_layer():
    task = Parity(ParityConfig(n=10, k=2, seed=3))
    torch.manual_seed(0)
    model = MLP(MLPConfig(width=20), task.spec)
    relevant = task.relevant
    with torch.no_grad():
        w = torch.ones(20, 10)
        w[:2] = 0
        w[:2, relevant] = 1.0  # two neurons read only the relevant coordinates
        model.net[0].weight.copy_(w)
    metrics, _ = measure_once(model, task, probe_size=16)
    expected_mean = (2 * 1.0 + 18 * 0.2) / 20
    assert metrics["features/relevant_mass"] == pytest.approx(expected_mean, rel=1e-5)
    assert metrics["features/relevant_mass_top10"] == pytest.approx(1.0, rel=1e-5)


def test_in_a_real_trainer_with_float64():
    task = Parity(ParityConfig(n=8, k=2, n_train=64, n_test=32), batch_size=16)
    torch.manual_seed(0)
    model = MLP(MLPConfig(width=16), task.spec)
    logger = ListLogger()
    module = DynamicsModule(model, task.spec.loss, OptimConfig(name="sgd", lr=0.1), log_every=1)
    trainer = L.Trainer(max_steps=4, logger=logger, callbacks=[FeatureMetrics(every=2)],
                        precision="64-true", enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False,
                        num_sanity_val_steps=0, limit_val_batches=0, accelerator="cpu")
    trainer.fit(module, datamodule=task)
    assert sorted(s for s, row in logger.rows.items() if "features/weight_norm" in row) == [0, 2, 4]
    final = logger.rows[4]
    assert "features/failed" not in final
    assert final["features/weight_norm/net.0"] == pytest.approx(float(model.net[0].weight.norm()))
    assert 0 < final["features/relevant_mass"] < 1
