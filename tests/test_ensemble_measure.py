"""Measurements inside ensembles: each member measures what the same run alone measures."""

import threading

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torch.func import stack_module_state

from dynamics_lab.config import load_experiment
from dynamics_lab.linalg.lockstep import Lockstep, run_in_lockstep
from dynamics_lab.linalg.member_hvp import StackedHessian
from dynamics_lab.schema import ConfigError
from dynamics_lab.sweep import expand, prepare_sweep
from dynamics_lab.tracking.rundir import RunDir
from dynamics_lab.train.ensemble import check_ensemble, execute_ensemble
from dynamics_lab.train.runner import execute

QUIET = dict(echo=lambda *_: None)
# Small steps on a tiny net: not chaotic, so rounding (vmapped vs plain matmuls) stays rounding.
EOS_TINY = ["trainer.max_steps=60", "trainer.dtype=float64", "trainer.eval_every=20",
            "task.n_train=64", "task.n_val=64", "model.width=16", "logging.wandb=false",
            "sweep.seeds=[0, 1]", "sweep.grid={optim.lr: [0.05, 0.1]}"]
HESSIAN = ("measure.hessian={log_spaced: false, also_every: null, every: 10, tol: 1.0e-10, "
           "k: 2, probe_size: 64, max_iter: 300}")


def separate_and_together(tmp_path, experiment, overrides):
    config = load_experiment(experiment, "quick", overrides)
    separate = prepare_sweep(config, expand(config), tmp_path / "separate")
    together = prepare_sweep(config, expand(config), tmp_path / "together")
    for path in separate:
        assert execute(RunDir(path), **QUIET).status == "completed"
    results = execute_ensemble([RunDir(p) for p in together], **QUIET)
    assert [r.status for r in results] == ["completed"] * len(together), results
    return separate, together


def assert_members_equal(separate, together, rtol):
    for a, b in zip(separate, together):
        expected, got = pd.read_csv(a / "metrics.csv"), pd.read_csv(b / "metrics.csv")
        assert list(got.columns) == list(expected.columns)
        assert got["step"].tolist() == expected["step"].tolist()
        np.testing.assert_allclose(got.to_numpy(), expected.to_numpy(), rtol=rtol, atol=1e-12)


def test_sharpness_of_each_member_equals_its_single_run(tmp_path):
    # Members differ in seed and step size; their Lanczos runs meet in lockstep rounds.
    separate, together = separate_and_together(tmp_path, "edge_of_stability",
                                               EOS_TINY + [HESSIAN])
    assert_members_equal(separate, together, rtol=1e-6)
    metrics = pd.read_csv(together[0] / "metrics.csv")
    assert metrics["hessian/lambda_2"].notna().sum() == 7  # steps 0, 10, ..., 60
    thresholds = {round(pd.read_csv(p / "metrics.csv")["hessian/threshold"].dropna().iloc[0], 6)
                  for p in together}
    assert thresholds == {20.0, 40.0}  # each member against its own 2/eta


@pytest.mark.parametrize("measure", [
    "measure.ntk={every: 20, probe_size: 32}",
    "measure.features={every: 20, probe_size: 64}",
    "measure.gradients={every: 20, probe_size: 64}",
])
def test_kernel_feature_and_gradient_measurements_per_member(tmp_path, tiny_overrides, measure):
    separate, together = separate_and_together(tmp_path, "grokking", tiny_overrides + [
        "trainer.dtype=float64", "logging.wandb=false", "sweep.seeds=[0, 1]",
        "sweep.grid={optim.weight_decay: [0.0, 1.0]}", measure])
    assert_members_equal(separate, together, rtol=1e-6)


def test_a_measurement_that_cannot_run_per_member_is_refused_in_one_line(monkeypatch):
    import lightning as L

    from dynamics_lab.measure.gradients import GradientStats
    from dynamics_lab.registry import MEASUREMENTS

    class WatchesBackward(GradientStats):
        def on_after_backward(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
            pass

    monkeypatch.setattr(MEASUREMENTS, "get", lambda name: WatchesBackward)
    config = load_experiment("grokking", "quick", ["measure.gradients={every: 5}"])
    with pytest.raises(ConfigError, match="cannot run per ensemble member.*on_after_backward"):
        check_ensemble(config)


def test_stacked_hessian_products_equal_each_members_dense_hessian():
    torch.manual_seed(0)
    nets = [nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
            for _ in range(3)]
    nets[1][0].bias.requires_grad_(False)  # a frozen parameter rides along unmeasured
    for net in nets[::2]:
        net[0].bias.requires_grad_(False)
    params, buffers = stack_module_state(nets)
    for name, p in params.items():
        p.requires_grad_(name != "0.bias")
    x, y = torch.randn(3, 5, 3, dtype=torch.float64), torch.randn(3, 5, 2, dtype=torch.float64)
    loss = lambda out, target: ((out - target) ** 2).mean()  # noqa: E731
    skeleton = nets[0].to("meta")
    hessian = StackedHessian(skeleton, params, buffers, loss, (x, y), seed=None)
    block = torch.randn(3, hessian.dim, dtype=torch.float64)
    got = hessian(block)
    # A graph over some members only (the others have converged): their rows, in that order.
    subset = StackedHessian(skeleton, params, buffers, loss, (x, y), seed=None, rows=[2, 0])
    torch.testing.assert_close(subset(block[[2, 0]]), got[[2, 0]], rtol=1e-12, atol=1e-14)
    for m in range(3):
        names = [n for n in params if n != "0.bias"]
        flat = torch.cat([params[n][m].detach().reshape(-1) for n in names])
        shapes = [params[n].shape[1:] for n in names]

        def member_loss(theta, m=m, names=names, shapes=shapes):
            parts = theta.split([s.numel() for s in shapes])
            state = {n: t.reshape(s) for n, t, s in zip(names, parts, shapes)}
            state["0.bias"] = params["0.bias"][m].detach()
            return loss(torch.func.functional_call(nets[0], state, (x[m],)), y[m])

        dense = torch.autograd.functional.hessian(member_loss, flat)
        torch.testing.assert_close(got[m], dense @ block[m], rtol=1e-10, atol=1e-12)


def test_lockstep_rounds_batch_every_running_solver_and_let_finished_ones_leave():
    calls = []

    def apply(vectors):
        calls.append(sorted(vectors))
        return {m: v * (m + 1) for m, v in vectors.items()}

    lockstep = Lockstep(range(3), apply)

    def solver(member, products):
        def run():
            out = [lockstep(member, torch.ones(2))[0].item() for _ in range(products)]
            lockstep.leave(member)
            return out
        return run

    results = run_in_lockstep([solver(0, 1), solver(1, 3), solver(2, 2)])
    assert results == [[1.0], [2.0, 2.0, 2.0], [3.0, 3.0]]
    assert calls == [[0, 1, 2], [1, 2], [1]] and lockstep.rounds == 3


def test_a_failing_round_reaches_every_waiting_solver_and_nothing_hangs():
    def apply(vectors):
        raise RuntimeError("out of memory")

    lockstep = Lockstep(range(2), apply)
    errors = []

    def solver(member):
        def run():
            try:
                lockstep(member, torch.ones(1))
            except RuntimeError as exc:
                errors.append(str(exc))
            finally:
                lockstep.leave(member)
        return run

    thread = threading.Thread(target=run_in_lockstep, args=([solver(0), solver(1)],))
    thread.start()
    thread.join(timeout=10)
    assert not thread.is_alive() and errors == ["out of memory"] * 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_ensemble_sharpness_equals_its_single_runs(tmp_path):
    separate, together = separate_and_together(tmp_path, "edge_of_stability",
                                               EOS_TINY + [HESSIAN, "trainer.device=cuda"])
    assert_members_equal(separate, together, rtol=1e-6)
