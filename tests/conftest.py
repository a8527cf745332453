"""Shared test setup: W&B off unless a test turns it on, one torch thread, tiny configs."""

import os

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_SILENT", "true")

import pytest
import torch

torch.set_num_threads(1)

TINY_GROKKING = [
    "task.p=23",
    "task.train_fraction=0.5",
    "model.embed_dim=8",
    "model.width=32",
    "trainer.max_steps=40",
    "trainer.eval_every=10",
    "trainer.log_every=10",
    "trainer.checkpoint_every=20",
    "sweep.seeds=[0]",  # the shipped sweep runs 3 seeds per grid point; tests need one
]


@pytest.fixture
def tiny_overrides():
    return list(TINY_GROKKING)


@pytest.fixture
def runs_root(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    monkeypatch.setenv("DYNLAB_RUNS", str(root))
    return root


class Quadratic(torch.nn.Module):
    """Outputs 0.5 theta^T A theta per example, so the mean output (`mean_output`) has Hessian A
    exactly: set `A` to any symmetric matrix to give a Hessian-based measurement a known
    spectrum."""

    def __init__(self, dim: int):
        super().__init__()
        self.theta = torch.nn.Parameter(torch.randn(dim, dtype=torch.float64))
        self.register_buffer("A", torch.zeros(dim, dim, dtype=torch.float64))

    def forward(self, x):
        return (0.5 * self.theta @ self.A @ self.theta).expand(x.shape[0], 1)


def mean_output(out, y):
    return out.mean()


def dense_hessian(model, loss_fn, batch, functorch: bool = True) -> torch.Tensor:
    """The brute-force Hessian every curvature measurement is checked against: of
    `loss_fn(model(x), y)` over the flat trainable parameters (named_parameters order), with the
    model's buffers as they are (copied, so BatchNorm's running statistics stay untouched).
    `functorch=False` takes torch.autograd.functional.hessian, the reference where
    torch.func.hessian's vmap disagrees (BatchNorm in train mode)."""
    from torch.func import functional_call, hessian

    x, y = batch
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    sizes = [p.numel() for _, p in named]
    flat = torch.cat([p.detach().reshape(-1) for _, p in named])

    def loss(w):
        state = {n: b.clone() for n, b in model.named_buffers()}
        state.update({n: c.view_as(p) for (n, p), c in zip(named, w.split(sizes))})
        return loss_fn(functional_call(model, state, (x,)), y)

    if functorch:
        return hessian(loss)(flat).detach()
    return torch.autograd.functional.hessian(loss, flat).detach()
