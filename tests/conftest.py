"""Shared test setup: W&B off unless a test turns it on, one torch thread, tiny configs."""

import os

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_SILENT", "true")

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import Logger

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


class ListLogger(Logger):
    """A Lightning logger that keeps every logged row in memory, merged per step (`rows`)."""

    name, version = "list", "0"

    def __init__(self):
        super().__init__()
        self.rows: dict[int, dict] = {}

    def log_hyperparams(self, *args, **kwargs):
        pass

    def log_metrics(self, metrics, step=None):
        self.rows.setdefault(step, {}).update(metrics)


def fit_with(callbacks, module, datamodule, max_steps: int = 1):
    """`module` trained `max_steps` steps on `datamodule` in a real `L.Trainer` with `callbacks`
    (their hooks, flush and the module's own step as a run takes them), logging to a ListLogger;
    returns the logger. A measurement due at step 0 sees the initial parameters."""
    import tempfile

    logger = ListLogger()
    with tempfile.TemporaryDirectory() as root:  # what callbacks write (snapshots) goes here
        trainer = L.Trainer(max_steps=max_steps, callbacks=list(callbacks), logger=logger,
                            default_root_dir=root, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False,
                            num_sanity_val_steps=0, limit_val_batches=0, accelerator="cpu")
        trainer.fit(module, datamodule=datamodule)
    return logger
