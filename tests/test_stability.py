"""Stability thresholds and preconditioned sharpness against hand-computed cases: Adam's
P = (1 - beta1^t)(sqrt(v_hat) + eps) of Cohen et al. 2022 with threshold (2 + 2 beta1)/((1 -
beta1) eta), parameter groups with their own learning rates, coupled and decoupled weight decay."""

import math

import lightning as L
import pytest
import torch
from conftest import Batches, Held, fit_with
from torch import nn

from dynamics_lab.measure.hessian import HessianSpectrum
from dynamics_lab.measure.stability import stability, threshold_of

H = (2.0, 0.5)  # the diagonal Hessian of 0.5 (h_a a^2 + h_b b^2)
START = (1.5, 4.0)


class TwoParams(nn.Module):
    """Two scalar parameters with loss 0.5 (h_a a^2 + h_b b^2): gradient (h_a a, h_b b)."""

    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.tensor([START[0]], dtype=torch.float64))
        self.b = nn.Parameter(torch.tensor([START[1]], dtype=torch.float64))

    def forward(self, x):
        loss = 0.5 * (H[0] * self.a**2 + H[1] * self.b**2)
        return loss.expand(x.shape[0], 1)


def mean_output(out, y):
    return out.mean()


PROBE = (torch.zeros(2, 1), torch.zeros(2, 1))


def trained(optimizer_fn, steps: int):
    """TwoParams trained `steps` steps by `optimizer_fn(model)` in a real Trainer whose
    HessianSpectrum measures the parameters after the last step; (model, that step's hessian/
    metrics)."""
    model = TwoParams()
    callback = HessianSpectrum(tol=1e-12, every=steps, probe=PROBE)
    module = Held(model, mean_output, optimizer_fn(model),
                  lambda model, batch: mean_output(model(batch[0]), None))
    rows = fit_with([callback], module, Batches(*PROBE), max_steps=steps).rows
    assert sorted(rows) == [0, steps] and "hessian/failed" not in rows[steps]
    return model, rows[steps]


def adam_by_hand(steps, lr=(0.1, 0.1), betas=(0.9, 0.99), eps=1e-8, wd=0.0, decoupled=False):
    """Adam written out per coordinate: the step count and v, for the preconditioner."""
    w, m, v = list(START), [0.0, 0.0], [0.0, 0.0]
    for t in range(1, steps + 1):
        for i in range(2):
            g = H[i] * w[i] + (0.0 if decoupled else wd * w[i])
            if decoupled:
                w[i] *= 1 - lr[i] * wd
            m[i] = betas[0] * m[i] + (1 - betas[0]) * g
            v[i] = betas[1] * v[i] + (1 - betas[1]) * g * g
            p = (1 - betas[0] ** t) * (math.sqrt(v[i] / (1 - betas[1] ** t)) + eps)
            w[i] -= lr[i] * m[i] / p
    preconditioner = [(1 - betas[0] ** steps) * (math.sqrt(v[i] / (1 - betas[1] ** steps)) + eps)
                      for i in range(2)]
    return w, preconditioner


def test_adam_one_step_by_hand():
    # One step: g = (3, 2), v_hat = g^2, P = (1 - 0.9)(|g| + eps) = (0.3, 0.2) (+eps):
    # P^-1 H = (2/0.3, 0.5/0.2) = (6.67, 2.5), against (2 + 1.8)/(0.1 * 0.1) = 380.
    _, metrics = trained(lambda m: torch.optim.Adam(m.parameters(), lr=0.1, betas=(0.9, 0.99)),
                         1)
    assert metrics["hessian/precond_lambda_max"] == pytest.approx(2 / (0.1 * (3 + 1e-8)))
    assert metrics["hessian/threshold"] == pytest.approx(3.8 / (0.1 * 0.1))
    assert metrics["hessian/lambda_max"] == pytest.approx(2.0)


@pytest.mark.parametrize("steps", [2, 5])
def test_adam_bias_corrections_over_several_steps(steps):
    model, metrics = trained(lambda m: torch.optim.Adam(m.parameters(), lr=0.1,
                                                        betas=(0.9, 0.99)), steps)
    w, p = adam_by_hand(steps)
    assert [model.a.item(), model.b.item()] == pytest.approx(w)  # the hand Adam is torch's
    expected = max(H[i] / p[i] for i in range(2))
    # (1 - beta1^t) is 0.19 and 0.41 here: leaving it out would be off by 5x and 2.4x.
    assert metrics["hessian/precond_lambda_max"] == pytest.approx(expected)


def test_groups_with_their_own_learning_rates_fold_into_the_preconditioner():
    def optimizer_fn(m):
        return torch.optim.Adam([{"params": [m.a], "lr": 0.1}, {"params": [m.b], "lr": 0.4}],
                                betas=(0.9, 0.99))

    model, metrics = trained(optimizer_fn, 3)
    w, p = adam_by_hand(3, lr=(0.1, 0.4))
    assert [model.a.item(), model.b.item()] == pytest.approx(w)
    # Steps are eta_1 * S m with S_b = (0.4 / 0.1) / P_b; the threshold uses eta_1 = 0.1.
    expected = max(H[0] / p[0], 4 * H[1] / p[1])
    assert metrics["hessian/precond_lambda_max"] == pytest.approx(expected)
    assert metrics["hessian/threshold"] == pytest.approx(3.8 / (0.1 * 0.1))


def test_sgd_groups_with_different_learning_rates():
    def optimizer_fn(m):
        return torch.optim.SGD([{"params": [m.a], "lr": 0.1}, {"params": [m.b], "lr": 0.5}])

    _, metrics = trained(optimizer_fn, 1)
    assert metrics["hessian/threshold"] == pytest.approx(2 / 0.1)
    assert metrics["hessian/precond_lambda_max"] == pytest.approx(max(H[0], 5 * H[1]))
    _, plain = trained(lambda m: torch.optim.SGD(m.parameters(), lr=0.1), 1)
    assert "hessian/precond_lambda_max" not in plain  # one learning rate: lambda_max is it


@pytest.mark.parametrize("decoupled", [False, True])
def test_coupled_weight_decay_counts_and_decoupled_does_not(decoupled):
    cls = torch.optim.AdamW if decoupled else torch.optim.Adam
    model, metrics = trained(lambda m: cls(m.parameters(), lr=0.1, betas=(0.9, 0.99),
                                           weight_decay=0.3), 3)
    w, p = adam_by_hand(3, wd=0.3, decoupled=decoupled)
    assert [model.a.item(), model.b.item()] == pytest.approx(w)
    # Coupled L2 is in the gradient Adam preconditions: S (H + wd); decoupled decay is not.
    shift = 0.0 if decoupled else 0.3
    expected = max((H[i] + shift) / p[i] for i in range(2))
    assert metrics["hessian/precond_lambda_max"] == pytest.approx(expected)


def test_groups_that_differ_in_momentum_have_no_threshold():
    model = TwoParams()
    mixed = torch.optim.Adam([{"params": [model.a], "betas": (0.9, 0.99)},
                              {"params": [model.b], "betas": (0.5, 0.99)}])
    with pytest.raises(ValueError, match=r"Adam parameter groups differ in beta1"):
        threshold_of(mixed)
    sgd = torch.optim.SGD([{"params": [model.a], "momentum": 0.9}, {"params": [model.b]}], lr=0.1)
    with pytest.raises(ValueError, match=r"SGD parameter groups differ in momentum"):
        stability(sgd, [model.a, model.b])
    # Only beta2 differs: one threshold, beta2 lives in each group's preconditioner.
    same_beta1 = torch.optim.Adam([{"params": [model.a], "betas": (0.9, 0.99)},
                                   {"params": [model.b], "betas": (0.9, 0.5)}], lr=0.1)
    assert threshold_of(same_beta1) == pytest.approx(3.8 / (0.1 * 0.1))


class Module(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.model, self.loss_fn = TwoParams(), mean_output

    def training_step(self, batch, batch_idx):
        return mean_output(self.model(batch[0]), None)

    def configure_optimizers(self):
        return torch.optim.Adam([{"params": [self.model.a], "betas": (0.9, 0.99)},
                                 {"params": [self.model.b], "betas": (0.5, 0.99)}])


def test_a_trainer_with_such_groups_fails_at_fit_start(tmp_path):
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.zeros(4, 1)))
    trainer = L.Trainer(max_steps=2, callbacks=[HessianSpectrum(every=1)], logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path)
    with pytest.raises(ValueError, match="differ in beta1"):
        trainer.fit(Module(), train_dataloaders=loader)
    assert trainer.global_step == 0


@pytest.mark.parametrize("optim", [
    {"name": "gd", "lr": 0.1}, {"name": "sgd", "lr": 0.05, "momentum": 0.9},
    {"name": "adam", "lr": 1e-3, "betas": (0.8, 0.999)}, {"name": "adamw", "lr": 3e-4}])
def test_the_config_and_the_optimizer_give_the_same_threshold(optim):
    """One formula (dynamics_lab/thresholds.py): the detector's reading of a config equals the
    measurement's reading of the optimizer built from it, to the last bit."""
    from dynamics_lab.phenomena.edge_of_stability import threshold_from_config

    params = [nn.Parameter(torch.zeros(3))]
    if optim["name"] in ("adam", "adamw"):
        cls = torch.optim.Adam if optim["name"] == "adam" else torch.optim.AdamW
        built = cls(params, lr=optim["lr"], betas=optim.get("betas", (0.9, 0.999)))
    else:
        built = torch.optim.SGD(params, lr=optim["lr"], momentum=optim.get("momentum", 0.0))
    assert threshold_of(built) == threshold_from_config({"optim": optim})


def test_a_step_that_moves_nothing_is_stable_at_any_sharpness():
    import math

    from dynamics_lab.thresholds import stability_threshold

    assert stability_threshold(0.0) == math.inf  # lr 0 (a frozen phase, a probe run)
    assert stability_threshold(0.0, adam_beta1=0.9) == math.inf
    assert stability_threshold(0.1, momentum=0.9, dampening=1.0) == math.inf
    assert stability_threshold(0.1) == 20.0
