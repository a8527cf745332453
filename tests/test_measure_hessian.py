"""HessianSpectrum in a real Lightning Trainer against a dense Hessian (torch.func.hessian)."""

import math
import warnings

import lightning as L
import numpy as np
import pytest
import torch
from conftest import dense_hessian
from lightning.pytorch.loggers import Logger

from dynamics_lab.config import build_config
from dynamics_lab.linalg import top_hessian_eigenvalues
from dynamics_lab.losses import squared
from dynamics_lab.measure.hessian import HessianConfig, HessianSpectrum
from dynamics_lab.measure.pyhessian_backend import pyhessian_top_eigenpairs
from dynamics_lab.measure.stability import threshold_of
from dynamics_lab.models.mlp import MLP, MLPConfig
from dynamics_lab.schema import ConfigError, OptimConfig
from dynamics_lab.tasks.regression import TeacherRegression, TeacherRegressionConfig
from dynamics_lab.train.module import DynamicsModule

STEPS, EVERY = 4, 2


class ListLogger(Logger):
    """Keeps every logged (step, metrics) in memory."""

    def __init__(self):
        super().__init__()
        self.rows: list[tuple[int, dict]] = []

    name, version = "list", "0"

    def log_hyperparams(self, *args, **kwargs):
        pass

    def log_metrics(self, metrics, step=None):
        self.rows.append((step, dict(metrics)))

    def at(self, step: int) -> dict:
        merged = {}
        for s, m in self.rows:
            if s == step:
                merged.update(m)
        return merged


def adam_diag(optimizer, model) -> torch.Tensor:
    """P^-1/2 for P = (1 - beta1^t)(sqrt(v_hat) + eps), written out apart from the callback."""
    group = optimizer.param_groups[0]
    (beta1, beta2), eps = group["betas"], group["eps"]
    parts = []
    for p in model.parameters():
        state = optimizer.state[p]
        t = state["step"].item()
        v_hat = state["exp_avg_sq"] / (1 - beta2**t)
        parts.append((1 / ((1 - beta1**t) * (v_hat.sqrt() + eps)).sqrt()).reshape(-1))
    return torch.cat(parts)


class Reference(L.Callback):
    """Before the measurement: snapshot params/.grad/mode. After it: compare, and compute the
    dense reference at exactly the parameters the measurement saw."""

    def __init__(self):
        self.before, self.dense, self.precond = {}, {}, {}

    def snapshot(self, trainer, pl_module):
        model = pl_module.model
        self.before[trainer.global_step] = (
            [p.detach().clone() for p in model.parameters()],
            [None if p.grad is None else p.grad.clone() for p in model.parameters()],
            model.training,
        )

    def check(self, trainer, pl_module):
        model, step = pl_module.model, trainer.global_step
        params, grads, mode = self.before.pop(step)
        assert model.training == mode
        for p, p0, g0 in zip(model.parameters(), params, grads):
            assert torch.equal(p.detach(), p0)
            assert (p.grad is None and g0 is None) or torch.equal(p.grad, g0)
        if step in self.dense:
            return
        x, y = trainer.datamodule.splits["train"]
        h = dense_hessian(model, squared, (x.double(), y.double()))
        self.dense[step] = torch.linalg.eigvalsh(h).flip(0)
        optimizer = trainer.optimizers[0]
        if isinstance(optimizer, torch.optim.Adam) and optimizer.state:
            d = adam_diag(optimizer, model)
            self.precond[step] = torch.linalg.eigvalsh(d[:, None] * h * d[None, :]).max()


class Before(L.Callback):
    """Placed before the measurement: snapshots in both hooks a measurement may run in."""

    def __init__(self, ref):
        self.ref = ref

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.ref.snapshot(trainer, pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.ref.snapshot(trainer, pl_module)


class After(L.Callback):
    """Placed after the measurement: what it left behind equals the snapshot."""

    def __init__(self, ref):
        self.ref = ref

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step % EVERY == 0:
            self.ref.check(trainer, pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step % EVERY == 0:
            self.ref.check(trainer, pl_module)


def fit(tmp_path, callback, optim=None, steps=STEPS):
    torch.manual_seed(0)
    task = TeacherRegression(TeacherRegressionConfig(dim=3, n_outputs=2, n_train=16, n_val=4))
    task.setup()
    model = MLP(MLPConfig(width=5, depth=1, activation="tanh"), task.spec)
    module = DynamicsModule(model, "squared", optim or OptimConfig(name="gd", lr=0.05), 1)
    ref, logger = Reference(), ListLogger()
    trainer = L.Trainer(
        max_steps=steps, precision="64-true", accelerator="cpu", logger=logger,
        callbacks=[Before(ref), callback, After(ref)], limit_val_batches=0,
        num_sanity_val_steps=0, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(module, datamodule=task)
    return trainer, module, ref, logger


def test_top_k_matches_dense_hessian_and_leaves_no_trace(tmp_path):
    cb = HessianSpectrum(HessianConfig(every=EVERY, k=3, tol=1e-10, probe_size=64))
    _, _, ref, logger = fit(tmp_path, cb)
    assert sorted(ref.dense) == [0, 2, 4]  # the params/.grad/mode checks ran at every step
    for step, dense in ref.dense.items():
        logged = logger.at(step)
        assert logged["hessian/converged"] == 1.0
        assert logged["hessian/lambda_max"] == logged["hessian/lambda_1"]
        for i in range(3):
            got = logged[f"hessian/lambda_{i + 1}"]
            assert abs(got - dense[i].item()) <= 1e-5 * abs(dense[0].item())
            assert logged[f"hessian/residual_{i + 1}"] < 1e-6
        assert logged["hessian/threshold"] == pytest.approx(2 / 0.05)
    assert logger.at(0)["hessian/probe_size"] == 16  # the whole training split, logged once
    assert sum("hessian/probe_size" in m for _, m in logger.rows) == 1
    assert sorted(s for s, m in logger.rows if "hessian/lambda_1" in m) == [0, 2, 4]


@pytest.mark.parametrize("optim, expected", [
    (OptimConfig(name="gd", lr=0.05), 2 / 0.05),
    (OptimConfig(name="sgd", lr=0.05, momentum=0.9), (2 + 1.8) / 0.05),
    (OptimConfig(name="adam", lr=0.01, betas=(0.9, 0.99)), (2 + 1.8) / (0.1 * 0.01)),
])
def test_threshold_and_preconditioned_sharpness(tmp_path, optim, expected):
    cb = HessianSpectrum(every=EVERY, tol=1e-10, probe_size=64)
    _, _, ref, logger = fit(tmp_path, cb, optim)
    assert logger.at(2)["hessian/threshold"] == pytest.approx(expected)
    if optim.name == "adam":
        assert "hessian/precond_lambda_max" not in logger.at(0)  # no second moments yet
        got = logger.at(2)["hessian/precond_lambda_max"]
        assert abs(got - ref.precond[2].item()) <= 1e-5 * abs(ref.precond[2].item())
    else:
        assert "hessian/precond_lambda_max" not in logger.at(2)


def test_threshold_variants_of_sgd():
    params = [torch.nn.Parameter(torch.zeros(1))]
    nesterov = torch.optim.SGD(params, lr=0.1, momentum=0.5, nesterov=True)
    assert threshold_of(nesterov) == pytest.approx(3 / (0.1 * 2))
    damped = torch.optim.SGD(params, lr=0.1, momentum=0.5, dampening=0.5)
    assert threshold_of(damped) == pytest.approx(3 / 0.05)


def test_warm_start_round_trips_through_a_checkpoint(tmp_path):
    cb = HessianSpectrum(every=EVERY, tol=1e-8, probe_size=64)
    trainer, module, _, logger = fit(tmp_path, cb)
    cold = logger.at(0)["hessian/matvecs"]
    trainer.save_checkpoint(tmp_path / "last.ckpt")
    state = torch.load(tmp_path / "last.ckpt", weights_only=False)["callbacks"][cb.state_key]
    assert torch.equal(state["vectors"], cb.vectors.cpu()) and state["last_step"] == STEPS
    fresh = HessianSpectrum(every=EVERY, tol=1e-8, probe_size=64)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.vectors, cb.vectors)
    # Warm-started at the parameters its vector came from, Lanczos needs far fewer matvecs.
    fresh.probe = cb.probe
    metrics = fresh.measure(trainer, module, module.model)
    assert metrics["hessian/matvecs"] < cold
    assert metrics["hessian/lambda_1"] == pytest.approx(logger.at(STEPS)["hessian/lambda_1"])


def test_trace_and_density(tmp_path):
    cb = HessianSpectrum(HessianConfig(every=EVERY, tol=1e-10, probe_size=64, trace=400,
                                       density=True, density_draws=2, density_iter=20))
    _, _, ref, logger = fit(tmp_path, cb, steps=1)
    logged, dense = logger.at(0), ref.dense[0]
    assert abs(logged["hessian/trace"] - dense.sum().item()) < 4 * logged["hessian/trace_stderr"]
    saved = np.load(tmp_path / "hessian_density" / "step_000000.npz")
    dx = saved["grid"][1] - saved["grid"][0]
    assert saved["density"].sum() * dx == pytest.approx(1.0)
    assert 0 <= logged["hessian/density_negative_mass"] <= 1
    assert logged["hessian/density_lambda_max"] == pytest.approx(dense[0].item(), rel=1e-6)
    assert logged["hessian/density_lambda_min"] == pytest.approx(dense[-1].item(), rel=1e-6)


def test_pyhessian_backend_agrees_and_leaves_no_trace(tmp_path):
    cb = HessianSpectrum(every=EVERY, backend="pyhessian", tol=1e-7, max_iter=2000,
                         probe_size=64)
    _, _, ref, logger = fit(tmp_path, cb)
    for step, dense in ref.dense.items():  # .grad (leftover from training), mode checked there
        got = logger.at(step)["hessian/lambda_max"]
        assert abs(got - dense[0].item()) <= 1e-3 * abs(dense[0].item())
        assert logger.at(step)["hessian/converged"] == 1.0


def test_pyhessian_ignores_leftover_grads_and_global_rng():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 6), torch.nn.Tanh(), torch.nn.Linear(6, 2))
    model = model.double()
    x, y = torch.randn(20, 3, dtype=torch.float64), torch.randn(20, 2, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        # Leftover grads that carry a graph (as another create_graph backward leaves them):
        # pyhessian would differentiate them along with its own gradient.
        (5.0 * model(x).pow(2).mean()).backward(create_graph=True)
    leftover = [p.grad for p in model.parameters()]
    model.eval()
    rng = torch.get_rng_state()
    result = pyhessian_top_eigenpairs(model, squared, (x, y), k=2, max_iter=3000, tol=1e-9)
    reference = top_hessian_eigenvalues(model, squared, (x, y), k=2, tol=1e-10)
    assert torch.allclose(result.eigenvalues, reference.eigenvalues, rtol=1e-3)
    assert torch.equal(torch.get_rng_state(), rng) and not model.training
    assert all(p.grad is g for p, g in zip(model.parameters(), leftover))
    assert result.n_matvec > 2 and result.residuals[0] < 1e-2 * result.eigenvalues[0]


def test_density_with_pyhessian_is_a_config_error():
    raw = {"name": "x", "task": {"name": "teacher_regression"}, "model": {"name": "mlp"},
           "measure": {"hessian": {"density": True, "backend": "pyhessian"}}}
    with pytest.raises(ConfigError, match=r"measure\.hessian.*torch\.eig"):
        build_config(raw)
    with pytest.raises(ConfigError, match="density=true needs backend=lanczos"):
        HessianSpectrum(density=True, backend="pyhessian")
    with pytest.raises(ConfigError, match="backend"):
        HessianSpectrum(backend="arpack")
    assert math.isclose(HessianSpectrum(backend="pyhessian").config.tol, 1e-3)


class Recorder:
    """Stands in for hessian_vector_product inside the callback and keeps every operator built."""

    def __init__(self, build):
        self.build, self.operators = build, []

    def __call__(self, *args, **kwargs):
        self.operators.append(self.build(*args, **kwargs))
        return self.operators[-1]


class CountingSquared:
    def __init__(self):
        self.calls = 0

    def __call__(self, out, y):
        self.calls += 1
        return squared(out, y)


@pytest.mark.parametrize("optim", [OptimConfig(name="gd", lr=0.05),
                                   OptimConfig(name="adam", lr=0.01, betas=(0.9, 0.99))])
def test_fresh_reused_operator_per_measurement_released_after(tmp_path, monkeypatch, optim):
    import dynamics_lab.measure.hessian as hessian_module

    recorder = Recorder(hessian_module.hessian_vector_product)
    monkeypatch.setattr(hessian_module, "hessian_vector_product", recorder)
    loss = CountingSquared()
    cb = HessianSpectrum(every=EVERY, tol=1e-10, probe_size=64, trace=5, loss_fn=loss)
    _, _, ref, logger = fit(tmp_path, cb, optim)
    ops = recorder.operators
    assert len(ops) == 3 and len({id(op) for op in ops}) == 3  # steps 0, 2 and the end (4)
    assert all(op.method == "reuse" and not op._graph.built for op in ops)
    # One forward per measurement, though eigensolver, trace and (Adam, step 2 on) the
    # preconditioned sharpness run dozens of matvecs on the operator.
    assert loss.calls == 3
    logged = logger.at(2)
    assert logged["hessian/matvecs"] > 1 and "hessian/trace" in logged
    assert abs(logged["hessian/lambda_max"] - ref.dense[2][0].item()) <= 1e-5 * ref.dense[2][0]
    if optim.name == "adam":
        got = logged["hessian/precond_lambda_max"]
        assert abs(got - ref.precond[2].item()) <= 1e-5 * abs(ref.precond[2].item())


class InnerFloat64Module(L.LightningModule):
    """A user's plain module that casts only its network: `pl_module.dtype` stays float32."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.model, self.loss_fn = net.double(), squared

    def training_step(self, batch, batch_idx):
        x, y = batch
        return squared(self.model(x.double()), y.double())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)


def test_plain_module_with_float64_network_in_float32_trainer(tmp_path):
    torch.manual_seed(0)
    task = TeacherRegression(TeacherRegressionConfig(dim=3, n_outputs=2, n_train=16, n_val=4))
    task.setup()
    module = InnerFloat64Module(MLP(MLPConfig(width=5, depth=1, activation="tanh"), task.spec))
    assert module.dtype == torch.float32 and next(module.parameters()).dtype == torch.float64
    ref, logger = Reference(), ListLogger()
    cb = HessianSpectrum(every=EVERY, tol=1e-10, probe_size=64)
    trainer = L.Trainer(
        max_steps=STEPS, precision="32-true", accelerator="cpu", logger=logger,
        callbacks=[Before(ref), cb, After(ref)], limit_val_batches=0, num_sanity_val_steps=0,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        default_root_dir=tmp_path)
    trainer.fit(module, datamodule=task)
    for step, dense in ref.dense.items():
        logged = logger.at(step)
        assert "hessian/failed" not in logged
        assert abs(logged["hessian/lambda_max"] - dense[0].item()) <= 1e-5 * abs(dense[0].item())


def test_pyhessian_backend_uses_the_same_fixed_mask_hessian_with_dropout():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 10), torch.nn.Tanh(), torch.nn.Dropout(0.3),
                                torch.nn.BatchNorm1d(10), torch.nn.Linear(10, 2)).double().train()
    x, y = torch.randn(24, 3, dtype=torch.float64), torch.randn(24, 2, dtype=torch.float64)
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    runs = [pyhessian_top_eigenpairs(model, squared, (x, y), k=2, max_iter=3000, tol=1e-10,
                                     seed=4) for _ in range(2)]
    reference = top_hessian_eigenvalues(model, squared, (x, y), k=2, tol=1e-10, seed=4)
    assert torch.equal(runs[0].eigenvalues, runs[1].eigenvalues)  # the same masks every time
    # Other masks move these eigenvalues by ~5%; power iteration stops within ~1e-5 of them.
    torch.testing.assert_close(runs[0].eigenvalues, reference.eigenvalues, rtol=1e-4, atol=0)
    assert (runs[0].residuals < 1e-3 * runs[0].eigenvalues.abs()).all()  # of our own operator
    assert model.training and model[2].training  # pyhessian's eval() did not stick
    for n, b in model.named_buffers():  # BatchNorm's running statistics as they were
        assert torch.equal(b, buffers[n])
