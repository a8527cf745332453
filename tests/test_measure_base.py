"""What every measurement shares: built from its Config (or the same fields as keywords), one
logged row per step through Lightning's own loggers and callback_metrics, and a probe set from
any user's Trainer."""

import inspect
import warnings

import lightning as L
import pandas as pd
import pytest
import torch
from lightning.pytorch.callbacks import EarlyStopping
from lightning.pytorch.loggers import CSVLogger
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from dynamics_lab.losses import squared
from dynamics_lab.measure import Measurement, Schedule
from dynamics_lab.measure.gradients import GradientStats
from dynamics_lab.measure.hessian import HessianConfig, HessianSpectrum
from dynamics_lab.measure.ntk import NTKAlignment
from dynamics_lab.registry import MEASUREMENTS
from dynamics_lab.schema import ConfigError

STEPS = 12


def test_config_or_keywords_build_the_same_measurement():
    assert HessianSpectrum(HessianConfig(k=2)).config == HessianSpectrum(k=2).config
    assert HessianSpectrum({"k": 2, "every": 5}).config == HessianSpectrum(k=2, every=5).config
    assert HessianSpectrum(HessianConfig(k=2), every=5).config.every == 5  # keywords win
    callback = HessianSpectrum(HessianConfig(every=7, log_spaced=True, per_decade=3))
    assert isinstance(callback.schedule, Schedule) and callback.schedule.every == 7
    assert [s for s in range(12) if callback.schedule(s)] == [0, 1, 2, 5, 10]
    for name in MEASUREMENTS.names():  # every plugin: REGISTRY.build(section) == cls(section)
        cls = MEASUREMENTS.get(name)
        section = cls.Config(name=name, every=3)
        built = MEASUREMENTS.build(section)
        assert type(built) is cls and built.config == section == cls(every=3).config
        # The Config's fields are the keywords help() shows; none repeated in a constructor.
        assert {"every", "probe_size", "loss_fn", "probe"} <= set(inspect.signature(cls).parameters)


def test_bad_keywords_are_the_configs_one_line_error():
    with pytest.raises(ConfigError, match=r"unknown key 'measure.hessian.evry' \(did you mean"):
        HessianSpectrum(evry=3)
    with pytest.raises(ConfigError, match=r"measure.ntk.probe_size"):
        NTKAlignment(probe_size=1)
    with pytest.raises(ConfigError, match=r"measure.gradients.every"):
        GradientStats(every=0)


class Regression(L.LightningModule):
    """A user's module: no `loss_fn` unless given, batches as the user's loader yields them."""

    def __init__(self, loss_fn=squared, keys=("x", "y")):
        super().__init__()
        torch.manual_seed(0)
        self.model = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1)).double()
        if loss_fn is not None:
            self.loss_fn = loss_fn
        self.keys = keys

    def training_step(self, batch, batch_idx):
        x, y = (batch[k] for k in self.keys) if isinstance(batch, dict) else batch
        return squared(self.model(x), y)

    def validation_step(self, batch, batch_idx):
        pass

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class DictData(Dataset):
    def __init__(self, x, y, keys):
        self.x, self.y, self.keys = x, y, keys

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {self.keys[0]: self.x[i], self.keys[1]: self.y[i]}


def data(n=32):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 3, generator=g, dtype=torch.float64)
    return x, torch.sin(x.sum(1, keepdim=True))


def fit(callbacks, tmp_path, module=None, loader=None, steps=STEPS, **trainer_kwargs):
    module = module or Regression()
    loader = loader or DataLoader(TensorDataset(*data()), batch_size=32)
    logger = CSVLogger(tmp_path, name="csv", version=0)
    trainer = L.Trainer(max_steps=steps, logger=logger, callbacks=callbacks, accelerator="cpu",
                        val_check_interval=2, check_val_every_n_epoch=None,
                        num_sanity_val_steps=0, enable_progress_bar=False,
                        enable_checkpointing=False, enable_model_summary=False, **trainer_kwargs)
    trainer.fit(module, train_dataloaders=loader, val_dataloaders=loader)
    path = tmp_path / "csv" / "version_0" / "metrics.csv"
    return trainer, pd.read_csv(path) if path.exists() else pd.DataFrame()


def test_one_csv_row_per_step_and_early_stopping_on_a_measurement(tmp_path):
    grads = GradientStats(every=2, probe_size=32, per_layer=False)
    hessian = HessianSpectrum(every=2, probe_size=32, tol=1e-8)
    # GD on a smooth regression: the gradient norm shrinks; stop once it is below the threshold.
    stop = EarlyStopping(monitor="grad/norm", mode="min", stopping_threshold=0.08, patience=100,
                         check_on_train_epoch_end=False, strict=True)
    trainer, table = fit([grads, hessian, stop], tmp_path, steps=200)
    assert table["step"].is_unique  # both measurements of a step share one row
    rows = table.dropna(subset=["grad/norm"])
    assert rows["hessian/lambda_max"].notna().all() and len(rows) == len(table)
    assert rows["step"].tolist() == list(range(0, trainer.global_step + 1, 2))
    # The value at step t describes the parameters after t updates, and EarlyStopping judges
    # the step it sees with that step's value: training stops at the first step below 0.08.
    first_below = int(rows.loc[rows["grad/norm"] < 0.08, "step"].iloc[0])
    assert trainer.global_step == first_below < 200
    assert float(trainer.callback_metrics["grad/norm"]) == rows["grad/norm"].iloc[-1]
    assert float(trainer.callback_metrics["hessian/lambda_max"]) == pytest.approx(
        rows["hessian/lambda_max"].iloc[-1])


@pytest.mark.parametrize("keys", [("x", "y"), ("input", "target")])
def test_dict_batches_from_a_user_loader(tmp_path, keys):
    x, y = data()
    loader = DataLoader(DictData(x, y, keys), batch_size=32)
    grads = GradientStats(every=4, probe_size=32, per_layer=False)
    trainer, table = fit([grads], tmp_path, Regression(keys=keys), loader, steps=4)
    assert table["grad/probe_size"].dropna().tolist() == [32.0]  # logged once
    assert "grad/failed" not in table
    module = Regression(keys=keys)  # the same start: the first gradient on the same 32 examples
    expected = torch.autograd.grad(squared(module.model(x), y), list(module.model.parameters()))
    first = table.dropna(subset=["grad/norm"]).iloc[0]
    assert first["grad/norm"] == pytest.approx(float(torch.cat([g.flatten() for g in
                                                                expected]).norm()))


def test_explicit_probe_and_the_shrink_warning(tmp_path):
    x, y = data(64)
    loader = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True)
    explicit = GradientStats(every=4, per_layer=False, probe={"input": x, "target": y})
    fit([explicit], tmp_path / "a", loader=loader, steps=4)
    assert len(explicit.probe[0]) == 64
    shrunk = GradientStats(every=4, probe_size=64, per_layer=False)
    with pytest.warns(UserWarning, match="probe_size=64, but the probe is one training batch of"):
        _, table = fit([shrunk], tmp_path / "b", loader=loader, steps=4)
    assert table["grad/probe_size"].dropna().tolist() == [16.0]


def test_drawing_the_probe_leaves_the_training_rng_alone(tmp_path):
    x, y = data(64)
    runs = []
    for callbacks in ([], [GradientStats(every=100, probe_size=16, per_layer=False)]):
        torch.manual_seed(5)
        loader = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True)
        module = Regression()
        fit(callbacks, tmp_path / str(len(runs)), module, loader, steps=6)
        runs.append(torch.cat([p.detach().flatten() for p in module.parameters()]))
    assert torch.equal(*runs)


def test_no_loss_is_a_clear_error_at_fit_start(tmp_path):
    with pytest.raises(ValueError, match="HessianSpectrum needs a loss: pass loss_fn="):
        fit([HessianSpectrum(every=2)], tmp_path, Regression(loss_fn=None))
    # A loss passed to the measurement is enough.
    trainer, table = fit([HessianSpectrum(every=4, loss_fn=squared, probe_size=32)], tmp_path / "b",
                         Regression(loss_fn=None), steps=4)
    assert table["hessian/lambda_max"].notna().sum() == 2


class Counting(Measurement):
    prefix = "count"
    uses_probe = False

    def measure(self, trainer, pl_module, model):
        return {"count/step": float(trainer.global_step)}


def test_a_plain_subclass_and_the_step_convention(tmp_path):
    seen = {}

    class Spy(L.Callback):  # params at the end of the batch whose update made step t
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            seen[trainer.global_step] = pl_module.model[0].weight.detach().clone()

    class Weight(Measurement):
        prefix = "w"
        uses_probe = False

        def measure(self, trainer, pl_module, model):
            return {"w/first": float(model[0].weight[0, 0])}

    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*(failed at step|probe)")
        trainer, table = fit([Spy(), Counting(every=3), Weight(every=3)], tmp_path, steps=7)
    rows = table.dropna(subset=["count/step"])
    assert rows["step"].tolist() == [0, 3, 6, 7] and (rows["count/step"] == rows["step"]).all()
    for step, value in zip(rows["step"], rows["w/first"]):
        if step:
            assert value == float(seen[step][0, 0])


def test_log_spaced_with_also_every_is_dense_early_and_regular_later():
    # per_decade=10 gives 20 samples below step 90 (enough to draw sharpening that crosses at
    # step ~90); also_every=50 keeps a regular cadence where log spacing thins out.
    schedule = Schedule.of(HessianSpectrum(log_spaced=True, per_decade=10, also_every=50).config)
    due = [t for t in range(3001) if schedule(t)]
    assert sum(t < 90 for t in due) == 20
    assert all(t in due for t in range(0, 3001, 50))
    assert set(due) == {t for t in range(3001) if Schedule(log_spaced=True)(t) or t % 50 == 0}


def test_a_measurement_refuses_a_task_that_does_not_offer_what_it_needs_in_one_line():
    from types import SimpleNamespace

    from conftest import fit_with

    from dynamics_lab.measure.modes import Modes
    from dynamics_lab.measure.signal_alignment import SignalAlignment
    from dynamics_lab.registry import TASKS
    from dynamics_lab.schema import OptimConfig
    from dynamics_lab.tasks import TensorTask
    from dynamics_lab.train.module import DynamicsModule

    def built(name):
        return TASKS.build(TASKS.get(name).Config())

    def fit(callback, task):
        """A real one-step fit of a small MLP on `task`; the measurement's row of step 0."""
        width = task.spec.input_shape[0]
        model = nn.Sequential(nn.Linear(width, 8), nn.ReLU(), nn.Linear(8, 1))
        module = DynamicsModule(model, task.spec.loss, OptimConfig(), log_every=1)
        return fit_with([callback], module, task).rows[0]

    with pytest.raises(ValueError) as refused:  # at fit start, before any step
        fit(SignalAlignment(), built("teacher_regression"))
    assert str(refused.value) == (
        "measurement 'signal' needs the task to offer `relevant`; task 'teacher_regression' "
        "does not (it offers: probe_batch, splits)")
    assert "signal/alignment" in fit(SignalAlignment(), built("parity"))  # offers its relevant
    assert "signal/alignment" in fit(SignalAlignment(relevant=[0, 1]),
                                     built("teacher_regression"))

    def task(name):  # a stand-in: teacher_of reads only the trainer's datamodule, no hook
        return SimpleNamespace(datamodule=built(name))

    # teacher_regression's teacher(x, g) method shares the name but is no offer of a teacher.
    assert Modes().teacher_of(task("teacher_regression")) is None
    assert len(Modes().teacher_of(task("low_rank_regression"))) == 3
    with pytest.raises(TypeError, match="Lying offers relevant but does not define it"):
        type("Lying", (TensorTask,), {"offers": TensorTask.offers | {"relevant"}})
