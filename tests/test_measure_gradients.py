"""GradientStats and per-example gradients against brute-force loops."""

import lightning as L
import torch
from torch import nn

from dynamics_lab.linalg.gradients import gradient_noise_scale, per_example_gradients
from dynamics_lab.losses import squared
from dynamics_lab.measure.gradients import GradientStats


def tiny():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2)).double()
    x, y = torch.randn(7, 3, dtype=torch.float64), torch.randn(7, 2, dtype=torch.float64)
    return model, (x, y)


def loop_gradients(model, batch):
    rows = []
    for xi, yi in zip(*batch):
        model.zero_grad()
        squared(model(xi[None]), yi[None]).backward()
        rows.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    model.zero_grad(set_to_none=True)
    return torch.stack(rows)


def test_per_example_gradients_match_a_loop():
    model, batch = tiny()
    fast = per_example_gradients(model, squared, batch, chunk_size=3)
    assert torch.allclose(fast, loop_gradients(model, batch), atol=1e-12)


def test_noise_scale_formula():
    g = torch.tensor([[1.0, 0.0], [3.0, 2.0], [2.0, 1.0]], dtype=torch.float64)
    b, g2, trace = gradient_noise_scale(g)
    trace_ref = float(g.var(dim=0).sum())  # (1 + 1) = 2
    assert abs(trace - trace_ref) < 1e-12
    assert abs(g2 - (4.0 + 1.0 - trace_ref / 3)) < 1e-12
    assert abs(b - trace / g2) < 1e-12


class Module(L.LightningModule):
    def __init__(self, model, batch):
        super().__init__()
        self.model, self.batch, self.loss_fn = model, batch, squared

    def training_step(self, batch, batch_idx):
        return self.loss_fn(self.model(batch[0]), batch[1])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class Recorder(L.pytorch.loggers.Logger):
    name, version = "rec", 0
    rows = []

    @property
    def experiment(self):
        return None

    def log_hyperparams(self, *a, **k):
        pass

    def log_metrics(self, metrics, step=None):
        self.rows.append((step, dict(metrics)))


def test_callback_logs_the_full_batch_gradient_in_a_trainer():
    model, batch = tiny()
    module = Module(model, batch)
    callback = GradientStats(every=2, probe_size=7, noise_scale=True)
    recorder = Recorder()
    recorder.rows = []
    trainer = L.Trainer(max_steps=3, logger=recorder, callbacks=[callback], accelerator="cpu",
                        enable_progress_bar=False, enable_checkpointing=False,
                        enable_model_summary=False)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(*batch), batch_size=7)
    trainer.fit(module, train_dataloaders=loader)
    steps = [s for s, m in recorder.rows if "grad/norm" in m]
    assert steps == [0, 2, 3]  # schedule, plus the final parameters
    last = [m for s, m in recorder.rows if "grad/norm" in m][-1]
    reference = loop_gradients(model, batch)
    assert abs(last["grad/norm"] - float(reference.mean(0).norm())) < 1e-10
    assert "grad/cosine_prev" in last and "grad/noise_scale" in last
    assert abs(last["grad/norm/0.weight"] - float(reference.mean(0)[:15].norm())) < 1e-10
