"""NTKAlignment in a real Lightning Trainer: logged values equal direct linalg computations."""

import copy
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from conftest import ListLogger

from dynamics_lab.linalg.ntk import empirical_ntk, kernel_alignment, kernel_distance
from dynamics_lab.measure.ntk import NTKAlignment, flat_trainable
from dynamics_lab.models.mlp import MLP, MLPConfig
from dynamics_lab.schema import OptimConfig
from dynamics_lab.tasks.modular_arithmetic import ModularArithmetic, ModularArithmeticConfig
from dynamics_lab.tasks.polynomial import Polynomial, PolynomialConfig
from dynamics_lab.train.module import DynamicsModule

STEPS, EVERY = 6, 2


class Snapshots(L.Callback):
    """Copies of the network at every step the measurement runs (placed before it)."""

    def __init__(self, schedule):
        self.schedule, self.models = schedule, {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.schedule(trainer.global_step):
            self.models[trainer.global_step] = copy.deepcopy(pl_module.model)

    def on_train_end(self, trainer, pl_module):
        self.models[trainer.global_step] = copy.deepcopy(pl_module.model)


def train(task, model, callback, lr=0.05):
    logger = ListLogger()
    snapshots = Snapshots(callback.schedule)
    module = DynamicsModule(model, task.spec.loss, OptimConfig(name="gd", lr=lr), log_every=1)
    trainer = L.Trainer(max_steps=STEPS, logger=logger, callbacks=[snapshots, callback],
                        enable_progress_bar=False, enable_model_summary=False,
                        enable_checkpointing=False, num_sanity_val_steps=0,
                        limit_val_batches=0, accelerator="cpu")
    trainer.fit(module, datamodule=task)
    return logger, snapshots.models


def regression_setup(seed=0):
    task = Polynomial(PolynomialConfig(dim=4, n_train=12, n_test=8))
    torch.manual_seed(seed)
    model = MLP(MLPConfig(width=8, parametrization="ntk", centered=True, alpha=2.0), task.spec)
    return task, model


def test_logged_values_equal_direct_kernels():
    task, model = regression_setup()
    callback = NTKAlignment(every=EVERY, probe_size=12)
    logger, models = train(task, model, callback)
    x, y = task.probe_batch(12)
    kernels = {s: empirical_ntk(m, x, "scalar") for s, m in models.items()}
    theta0 = flat_trainable(models[0])
    assert sorted(models) == [0, 2, 4, 6]
    for step, kernel in kernels.items():
        row = logger.rows[step]
        assert row["ntk/alignment"] == pytest.approx(float(kernel_alignment(kernel, y)), rel=1e-5)
        assert row["ntk/kernel_norm"] == pytest.approx(float(kernel.norm()), rel=1e-5)
        assert row["ntk/distance_init"] == pytest.approx(
            float(kernel_distance(kernels[0].double(), kernel.double())), abs=1e-6)
        movement = (flat_trainable(models[step]) - theta0).norm() / theta0.norm()
        assert row["ntk/param_movement"] == pytest.approx(float(movement), rel=1e-5, abs=1e-12)
        if step > 0:
            expected = kernel_distance(kernels[step - EVERY].double(), kernel.double()) / EVERY
            assert row["ntk/velocity"] == pytest.approx(float(expected), rel=1e-4, abs=1e-9)
    assert "ntk/velocity" not in logger.rows[0]
    assert logger.rows[6]["ntk/distance_init"] > 0


def test_classification_uses_traced_kernel_and_one_hot_labels():
    task = ModularArithmetic(ModularArithmeticConfig(p=7, train_fraction=0.5))
    torch.manual_seed(0)
    model = MLP(MLPConfig(width=8, embed_dim=4), task.spec)
    callback = NTKAlignment(every=EVERY, probe_size=10)
    logger, models = train(task, model, callback, lr=0.5)
    x, y = task.probe_batch(10)
    kernel = empirical_ntk(models[STEPS], x, "trace")
    expected = kernel_alignment(kernel, torch.nn.functional.one_hot(y, 7).double())
    assert logger.rows[STEPS]["ntk/alignment"] == pytest.approx(float(expected), rel=1e-5)


def test_initial_kernel_state_round_trips(tmp_path):
    task, model = regression_setup()
    callback = NTKAlignment(every=EVERY, probe_size=12)
    train(task, model, callback)
    path = tmp_path / "state.pt"
    torch.save(callback.state_dict(), path)
    restored = NTKAlignment(every=EVERY, probe_size=12)
    restored.load_state_dict(torch.load(path))
    for key in ("kernel_init", "kernel_prev", "theta_init"):
        torch.testing.assert_close(getattr(restored, key), getattr(callback, key))
    assert restored.step_prev == callback.step_prev == STEPS


def fake_trainer(task, step=0):
    # A stand-in: the test sets .grad and the mode by hand before one measurement, which a
    # Trainer's own step would overwrite (test_logged_values_equal_direct_kernels: the hooks).
    logger = ListLogger()
    return SimpleNamespace(global_step=step, loggers=[logger], datamodule=task), logger


def test_measurement_leaves_grads_mode_and_params_alone():
    task, model = regression_setup()
    module = DynamicsModule(model, "squared", OptimConfig(), log_every=1)
    for p in model.parameters():
        p.grad = torch.full_like(p, 3.0)
    model.train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    grads = {n: p.grad for n, p in model.named_parameters()}
    trainer, logger = fake_trainer(task)
    NTKAlignment(probe_size=12).run(trainer, module)
    assert model.training
    assert "ntk/alignment" in logger.rows[0] and "ntk/failed" not in logger.rows[0]
    for n, p in model.named_parameters():
        assert torch.equal(p.detach(), before[n])
        assert p.grad is grads[n]


def test_matrix_free_estimate_has_its_own_key_and_agrees_with_exact():
    task, model = regression_setup()
    module = DynamicsModule(model, "squared", OptimConfig(), log_every=1)
    trainer, logger = fake_trainer(task)
    NTKAlignment(probe_size=12, matrix_free=True, n_probes=64).run(trainer, module)
    row = logger.rows[0]
    assert {"ntk/alignment_full_est", "ntk/alignment_full_est_stderr",
            "ntk/param_movement"} <= set(row)
    # The estimate of the full kernel's alignment is never logged as the traced alignment.
    assert not {"ntk/alignment", "ntk/distance_init", "ntk/velocity", "ntk/kernel_norm"} & set(row)
    x, y = task.probe_batch(12)
    exact = float(kernel_alignment(empirical_ntk(model, x, "scalar"), y))
    assert abs(row["ntk/alignment_full_est"] - exact) <= 5 * row["ntk/alignment_full_est_stderr"] \
        + 1e-3


def classifier_setup(p=11):
    task = ModularArithmetic(ModularArithmeticConfig(p=p, train_fraction=0.8))
    torch.manual_seed(0)
    return task, MLP(MLPConfig(width=16, embed_dim=4), task.spec)


def test_shuffled_label_baseline_beside_the_alignment_for_many_classes():
    task, model = classifier_setup()
    module = DynamicsModule(model, task.spec.loss, OptimConfig(), log_every=1)
    trainer, logger = fake_trainer(task)
    NTKAlignment(probe_size=60, probe_seed=3).run(trainer, module)
    row = logger.rows[0]
    x, y = task.probe_batch(60, 3)
    targets = torch.nn.functional.one_hot(y, 11).double()
    order = torch.randperm(60, generator=torch.Generator().manual_seed(3))
    kernel = empirical_ntk(model, x, "trace")
    assert row["ntk/alignment"] == pytest.approx(float(kernel_alignment(kernel, targets)))
    shuffled = float(kernel_alignment(kernel, targets[order]))
    assert row["ntk/alignment_shuffled"] == pytest.approx(shuffled)
    assert not torch.equal(order, torch.arange(60))
    # With 11 classes YY^T is mostly its diagonal: an untrained kernel scores about as well on
    # shuffled labels as on the true ones, which is what the baseline is there to show.
    assert row["ntk/alignment_shuffled"] > 0.5 * row["ntk/alignment"] > 0


def test_matrix_free_shuffled_baseline_shares_one_norm_estimate():
    task, model = classifier_setup()
    module = DynamicsModule(model, task.spec.loss, OptimConfig(), log_every=1)
    trainer, logger = fake_trainer(task)
    NTKAlignment(probe_size=20, matrix_free=True, n_probes=8).run(trainer, module)
    row = logger.rows[0]
    x, y = task.probe_batch(20)
    targets = torch.nn.functional.one_hot(y, 11).double()
    shuffled = targets[torch.randperm(20, generator=torch.Generator().manual_seed(0))]
    K = empirical_ntk(model, x, "full")
    ratio = row["ntk/alignment_full_est_shuffled"] / row["ntk/alignment_full_est"]
    # Same ||K||_F estimate in both: their ratio is exactly that of the numerators.
    exact = float(kernel_alignment(K, shuffled) / kernel_alignment(K, targets))
    assert ratio == pytest.approx(exact, rel=1e-4)


def test_float64_training_measures_in_float64():
    task, model = regression_setup()
    model = model.double()
    module = DynamicsModule(model, "squared", OptimConfig(), log_every=1)
    trainer, logger = fake_trainer(task)
    NTKAlignment(probe_size=12).run(trainer, module)
    assert "ntk/failed" not in logger.rows[0]
