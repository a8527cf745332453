"""The Lightning internals dynamics_lab relies on are still there and still mean the same.

Fused steps (train/steps.py) advance Lightning's loop counters themselves and prepare batches as
Lightning's loop does; the lean import (train/lean_import.py) answers lightning_utilities'
package probes while Lightning is imported. No public hook does either job, so pyproject.toml
bounds Lightning to the tested release and these tests name what moved when a release changes
it: widen the bound only once they pass."""

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from dynamics_lab.train.steps import FusedSteps


def require(owner: object, name: str, used_by: str):
    """owner.name, or a failure that names the attribute and the code that needs it."""
    if not hasattr(owner, name):
        where = owner.__name__ if isinstance(owner, type) else type(owner).__name__
        pytest.fail(f"Lightning changed: {where}.{name} is gone; {used_by} relies on it",
                    pytrace=False)
    return getattr(owner, name)


class Tiny(FusedSteps):
    """A 2 -> 1 linear model on four points, repeated: every step is fused up to max_steps."""

    def __init__(self):
        super().__init__()
        self.net = torch.nn.Linear(2, 1)
        self.lightning_steps = 0

    def step_loss(self, batch, step):
        x, y = batch
        return torch.nn.functional.mse_loss(self.net(x), y)

    def training_step(self, dataloader_iter):
        self.lightning_steps += 1
        return super().training_step(dataloader_iter)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def endless_data() -> L.LightningDataModule:
    """Four points repeated without end, as a full-batch task streams them."""
    torch.manual_seed(0)
    loader = DataLoader(TensorDataset(torch.randn(4, 2), torch.randn(4, 1)), batch_size=4)

    class Endless(L.LightningDataModule):
        def train_dataloader(self):
            while True:
                yield from loader

    return Endless()


def fused_trainer(steps: int = 12) -> tuple[L.Trainer, Tiny]:
    trainer = L.Trainer(max_steps=steps, max_epochs=-1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0, accelerator="cpu")
    module = Tiny()
    trainer.fit(module, datamodule=endless_data())
    return trainer, module


def test_loop_counters_fused_steps_advance_exist():
    loop = L.Trainer(logger=False, enable_progress_bar=False).fit_loop.epoch_loop
    used_by = "train/steps.py (StepPlan.count_batch/count_update)"
    assert isinstance(require(loop, "_batches_that_stepped", used_by), int)
    require(require(loop, "batch_progress", used_by), "increment_by", used_by)
    manual = require(loop, "manual_optimization", used_by)
    require(require(manual, "optim_step_progress", used_by), "increment_by", used_by)


def test_batch_preparation_fused_steps_repeat_exists():
    used_by = "train/steps.py (FusedSteps.prepared)"
    require(L.LightningModule, "_on_before_batch_transfer", used_by)
    trainer = L.Trainer(logger=False, enable_progress_bar=False)
    require(trainer.precision_plugin, "convert_input", used_by)
    require(trainer.strategy, "batch_to_device", used_by)


def test_fused_steps_leave_lightnings_counters_as_one_step_per_lightning_step_would():
    trainer, module = fused_trainer(12)
    loop = trainer.fit_loop.epoch_loop
    assert module.lightning_steps < 12  # the steps were fused ...
    assert trainer.global_step == 12  # ... and every counter reads as if they had not been
    assert loop._batches_that_stepped == 12, "epoch_loop._batches_that_stepped changed meaning"
    assert loop.batch_progress.total.completed == 12


def test_checkpoint_keys_fused_steps_migrate_exist(tmp_path):
    trainer, _ = fused_trainer(3)
    trainer.save_checkpoint(tmp_path / "last.ckpt")
    loops = torch.load(tmp_path / "last.ckpt", weights_only=False)["loops"]["fit_loop"]
    for key in ("epoch_loop.manual_optimization.optim_step_progress",
                "epoch_loop.automatic_optimization.optim_progress"):
        assert key in loops, (f"Lightning changed: checkpoint key loops.fit_loop.{key} is gone; "
                              "FusedSteps.on_load_checkpoint relies on it")


def test_package_probes_the_lean_import_answers_exist_and_are_restored():
    from lightning_utilities.core import imports as probes

    from dynamics_lab.train.lean_import import optional_packages_hidden

    used_by = "train/lean_import.py"
    require(require(probes, "RequirementCache", used_by), "_check_requirement", used_by)
    require(probes, "package_available", used_by)
    before = (probes.RequirementCache._check_requirement, probes.package_available)
    with optional_packages_hidden(("scipy",)):
        assert not probes.RequirementCache("scipy>=1.0")
        assert not probes.package_available("scipy")
        assert probes.package_available("torch")
    assert (probes.RequirementCache._check_requirement, probes.package_available) == before
    assert probes.RequirementCache("scipy>=1.0") and probes.package_available("scipy")
