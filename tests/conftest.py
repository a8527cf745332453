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


def fit_with(callbacks, module, datamodule, max_steps: int = 1, ckpt_path=None,
             save_to=None):
    """`module` trained `max_steps` steps on `datamodule` in a real `L.Trainer` with `callbacks`
    (their hooks, flush and the module's own step as a run takes them), logging to a ListLogger;
    returns the logger. A measurement due at step 0 sees the initial parameters. `ckpt_path`
    resumes from a checkpoint (callback states restored by Lightning); `save_to` writes one when
    the fit ends."""
    import tempfile

    logger = ListLogger()
    with tempfile.TemporaryDirectory() as root:  # what callbacks write (snapshots) goes here
        trainer = L.Trainer(max_steps=max_steps, callbacks=list(callbacks), logger=logger,
                            default_root_dir=root, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False,
                            num_sanity_val_steps=0, limit_val_batches=0, accelerator="cpu")
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
        if save_to is not None:
            trainer.save_checkpoint(save_to)
    return logger


class Batches(L.LightningDataModule):
    """A user's own datamodule: the full batch (x, y) at every step, resident as the tasks serve
    it, and whatever a measurement reads off a datamodule given as keywords (`relevant=`,
    `splits=`, `population=`, ...): a datamodule that declares no offers is read by the
    attributes it has."""

    def __init__(self, x, y, **attributes):
        super().__init__()
        self.x, self.y = x, y
        for name, value in attributes.items():
            setattr(self, name, value)

    def train_dataloader(self):
        from dynamics_lab.tasks.base import ResidentBatches

        return ResidentBatches(self.x, self.y, batch_size=None, seed=0)


class Held(L.LightningModule):
    """`model` and its `loss_fn` in a Trainer whose steps the test decides: `update(model,
    batch)` gives the loss each step backpropagates and `optimizer` (an optimizer, or a function
    of the parameters; default SGD) steps on; without `update` a step moves nothing (no
    gradient), so that an `EachStep` callback sets the parameters each measurement sees."""

    def __init__(self, model, loss_fn, optimizer=None, update=None):
        super().__init__()
        self.model, self.loss_fn, self.update = model, loss_fn, update
        self.optimizer_of = optimizer
        self.automatic_optimization = False

    def configure_optimizers(self):
        if isinstance(self.optimizer_of, torch.optim.Optimizer):
            return self.optimizer_of
        make = self.optimizer_of or (lambda params: torch.optim.SGD(params, lr=1.0))
        return make(self.model.parameters())

    def training_step(self, batch, batch_idx):
        optimizer = self.optimizers()
        optimizer.zero_grad()
        if self.update is not None:
            self.manual_backward(self.update(self.model, batch))
        optimizer.step()  # one optimizer step: global_step advances


class EachStep(L.Callback):
    """Calls `fn(step)` once per step, at the first batch hook that sees the step (batch start
    for step 0 or a resumed run's first step, batch end after each update): placed before a
    measurement it sets the state the measurement sees, placed after one it reads what the
    measurement left."""

    def __init__(self, fn):
        self.fn, self.seen = fn, None

    def _once(self, trainer):
        if trainer.global_step != self.seen:
            self.seen = trainer.global_step
            self.fn(trainer.global_step)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._once(trainer)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._once(trainer)


def sets(overrides):
    """`--set KEY=VALUE` arguments for the CLI, one pair per override."""
    return [x for o in overrides for x in ("--set", o)]


def one_line_error(result, *words):
    """Exit status 2 and a single `error:` line holding every word (no traceback)."""
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    for word in words:
        assert word in lines[0], lines[0]
