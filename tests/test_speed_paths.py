"""Several optimizer steps per Lightning step (train/steps.py) change no metric: a tiny run's
metrics.csv is byte for byte what a plain PyTorch loop writes, and what one step per Lightning
step writes, through minibatches, step-size schedules, measurements, checkpoints, stops and
resumes; callbacks that must see every step still do; and a run imports only what it uses."""

import json
import os
import subprocess
import sys
import warnings

import lightning as L
import pytest
import torch

from dynamics_lab.config import load_experiment
from dynamics_lab.losses import LOSSES, accuracy
from dynamics_lab.measure import Measurement
from dynamics_lab.registry import MODELS, TASKS
from dynamics_lab.tracking.checkpoint import Interrupted, allowing_safe_globals, load_checkpoint
from dynamics_lab.tracking.metrics import LocalMetricsLogger, MetricsFile
from dynamics_lab.tracking.rundir import RunDir
from dynamics_lab.train.lifecycle import quiet_lightning
from dynamics_lab.train.module import SPLITS, DynamicsModule, EvalSums, build_optimizer
from dynamics_lab.train.runner import build_trainer
from dynamics_lab.train.stopping import StopRequest

STEPS = 60


def tiny(*overrides: str):
    """A deep linear net (8-16-8) on 64 examples: eval every 20 steps, batch loss every 7."""
    return load_experiment("stepwise", "quick", [
        "measure.modes=null", "task.n_train=64", "task.n_val=32", f"trainer.max_steps={STEPS}",
        "trainer.eval_every=20", "trainer.log_every=7", *overrides])


class Counting(DynamicsModule):
    """Counts Lightning steps and the optimizer steps they ran."""

    lightning_steps = 0

    def training_step(self, dataloader_iter):
        self.lightning_steps += 1
        return super().training_step(dataloader_iter)


def fit(config, path, callbacks=(), stop=None, max_fused=256, ckpt_path=None, model_hook=None):
    """One run as runner.execute trains it (seeding, task, model, build_trainer)."""
    quiet_lightning()
    L.seed_everything(config.seed, verbose=False)
    task = TASKS.build(config.task, batch_size=config.trainer.batch_size, seed=config.seed)
    task.setup()
    model = MODELS.build(config.model, task.spec)
    if model_hook is not None:
        model.register_forward_hook(model_hook)
    module = Counting(model, task.spec.loss, config.optim, config.trainer.log_every,
                      max_fused=max_fused)
    run = RunDir.create(path, config.to_dict(), config.seed)
    trainer = build_trainer(config, run, "cpu", [LocalMetricsLogger(run.path)], list(callbacks),
                            stop)
    with allowing_safe_globals():
        trainer.fit(module, datamodule=task, ckpt_path=ckpt_path)
    return run, module, trainer


def plain_loop_metrics(config, path) -> bytes:
    """The metrics.csv a bare PyTorch loop writes with the same writer: no Lightning at all."""
    L.seed_everything(config.seed, verbose=False)
    task = TASKS.build(config.task, seed=config.seed)
    task.setup()
    model = MODELS.build(config.model, task.spec)
    loss_fn, t, kind = LOSSES[task.spec.loss], config.trainer, task.spec.loss
    x, y = task.splits["train"]
    optimizer = build_optimizer(model.parameters(), config.optim)
    out = MetricsFile(path)
    for step in range(t.max_steps + 1):
        if step % t.eval_every == 0:
            sums = EvalSums()
            with torch.no_grad():
                for split in SPLITS:
                    xs, ys = task.splits[split]
                    outputs = model(xs)
                    sums.add(split, len(xs), loss_fn(outputs, ys), accuracy(outputs, ys, kind))
            out.log(sums.means(), step)
        if step == t.max_steps:
            break
        loss = loss_fn(model(x), y)
        if step % t.log_every == 0:
            value = loss.item()
            if value != value or abs(value) == float("inf"):
                break
            out.log({"train/batch_loss": value}, step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    out.compact()
    return path.read_bytes()


class Norm(Measurement):
    """Records the steps it measures at, and the parameters' norm there."""

    prefix = "norm"
    uses_probe = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.steps: list[int] = []

    def measure(self, trainer, pl_module, model):
        self.steps.append(trainer.global_step)
        norm = torch.cat([p.detach().flatten() for p in model.parameters()]).norm()
        return {f"{self.prefix}/params": float(norm)}


class Every9(Norm):
    prefix = "every9"


def test_a_fused_run_writes_the_metrics_of_a_plain_pytorch_loop_byte_for_byte(tmp_path):
    config = tiny()
    run, module, trainer = fit(config, tmp_path / "run")
    assert trainer.global_step == STEPS
    assert module.lightning_steps == 3, "one Lightning step per evaluation interval"
    assert run.metrics_path.read_bytes() == plain_loop_metrics(config, tmp_path / "plain.csv")


def test_fusing_changes_no_metric_and_no_checkpoint(tmp_path):
    # Shuffled minibatches, a warmup + decay schedule, log-spaced and periodic measurements, and
    # checkpoints every 25 steps: every boundary a block must respect, and the minibatch order.
    config = tiny("trainer.batch_size=16", "trainer.checkpoint_every=25", "optim.warmup_steps=5",
                  "optim.decay_steps=[33]", "optim.name=adamw", "optim.lr=0.01")
    runs = {}
    for fused in (256, 1):
        measures = [Norm(log_spaced=True, per_decade=5), Every9(every=9)]
        runs[fused] = fit(config, tmp_path / f"fused{fused}", measures, max_fused=fused)
        expected = sorted({s for s in range(STEPS + 1) if measures[0].schedule(s)} | {STEPS})
        assert measures[0].steps == expected
        assert measures[1].steps == list(range(0, STEPS + 1, 9)) + [STEPS]
    (fused, module, trainer), (single, one_step, _) = runs[256], runs[1]
    assert one_step.lightning_steps == STEPS and module.lightning_steps < STEPS / 2
    assert fused.metrics_path.read_bytes() == single.metrics_path.read_bytes()
    a, b = load_checkpoint(fused.last_checkpoint), load_checkpoint(single.last_checkpoint)
    assert a["global_step"] == b["global_step"] == STEPS
    assert a["loops"] == b["loops"]
    for key in ("state_dict", "optimizer_states"):
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    stream = type(trainer.datamodule).__qualname__  # the minibatch stream's position
    assert a[stream]["train_batches"]["skip"] == STEPS % 4
    torch.testing.assert_close(a[stream], b[stream], rtol=0, atol=0)


def test_a_stop_request_ends_a_block_after_the_step_under_way(tmp_path):
    config = tiny("trainer.checkpoint_every=50")
    checkpoints = []
    for fused in (256, 1):
        stop, forwards = StopRequest(), []

        def signal_during_update_13(module, inputs, output, stop=stop, forwards=forwards):
            forwards.append(1)
            if len(forwards) == 2 + 14:  # the sanity evaluation's 2 forwards, then updates 0..13
                stop.requested = "SIGINT"  # what the Ctrl-C handler records

        with pytest.raises(Interrupted, match="stopped at step 14, checkpoint written"):
            fit(config, tmp_path / f"f{fused}", stop=stop, max_fused=fused,
                model_hook=signal_during_update_13)
        checkpoints.append(load_checkpoint(RunDir(tmp_path / f"f{fused}").last_checkpoint))
    fused, single = checkpoints
    assert fused["global_step"] == single["global_step"] == 14
    assert fused["loops"] == single["loops"]
    torch.testing.assert_close(fused["state_dict"], single["state_dict"], rtol=0, atol=0)


class AfterBackward(L.Callback):
    calls = 0

    def on_after_backward(self, trainer, pl_module):
        self.calls += 1


class EveryBatch(L.Callback):
    def __init__(self):
        self.steps = []

    def on_train_batch_end(self, trainer, *args):
        self.steps.append(trainer.global_step)


class Observer(EveryBatch):
    def observes(self, step: int) -> bool:
        return step % 13 == 0


def test_callbacks_that_watch_every_step_still_see_every_step_and_say_why(tmp_path):
    hooked = AfterBackward()
    with pytest.warns(UserWarning, match="AfterBackward watches every backward pass"):
        _, module, _ = fit(tiny(), tmp_path / "hooked", [hooked])
    assert hooked.calls == STEPS and module.lightning_steps == STEPS
    blind = EveryBatch()
    with pytest.warns(UserWarning, match="EveryBatch has per-batch hooks but no observes"):
        fit(tiny(), tmp_path / "blind", [blind])
    assert blind.steps == list(range(1, STEPS + 1))
    observer = Observer()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # it says when it looks: steps fuse, quietly
        _, module, _ = fit(tiny(), tmp_path / "observer", [observer])
    boundaries = {s for s in range(1, STEPS + 1) if s % 13 == 0 or s % 20 == 0}
    assert set(observer.steps) == boundaries and module.lightning_steps == len(boundaries)


def test_a_checkpoint_from_automatic_optimization_resumes_at_its_step(tmp_path):
    straight, *_ = fit(tiny(), tmp_path / "straight")
    early, *_ = fit(tiny("trainer.max_steps=40"), tmp_path / "early")
    # Rewrite the checkpoint as automatic optimization (before fused steps) wrote it.
    checkpoint = torch.load(early.last_checkpoint, weights_only=False)
    loops = checkpoint["loops"]["fit_loop"]
    manual = loops["epoch_loop.manual_optimization.optim_step_progress"]
    auto = loops["epoch_loop.automatic_optimization.optim_progress"]
    auto["optimizer"]["step"] = {"total": dict(manual["total"]), "current": dict(manual["current"])}
    for part in ("total", "current"):
        manual[part] = {"ready": 0, "completed": 0}
    old = tmp_path / "old.ckpt"
    torch.save(checkpoint, old)
    resumed, _, trainer = fit(tiny(), tmp_path / "resumed", ckpt_path=old)
    assert trainer.global_step == STEPS
    final = load_checkpoint(resumed.last_checkpoint)["state_dict"]
    torch.testing.assert_close(final, load_checkpoint(straight.last_checkpoint)["state_dict"],
                               rtol=0, atol=0)


def test_a_diverged_run_logs_its_last_evaluation_at_the_steps_it_took(tmp_path):
    config = tiny("optim.lr=40.0", "trainer.log_every=1")
    run, module, trainer = fit(config, tmp_path / "run")
    assert module.diverged
    reference = plain_loop_metrics(config, tmp_path / "plain.csv").decode().splitlines()
    last = int(reference[-1].split(",")[0])  # the last finite batch loss, one step before
    rows = run.metrics_path.read_text().splitlines()
    assert trainer.global_step == last + 1
    assert rows[:-1] == reference  # identical up to the divergence
    assert rows[-1].split(",")[0] == str(last + 1), "the parameters after last + 1 updates"


def test_a_run_imports_neither_plotting_nor_scipy_nor_wandb(tmp_path, tiny_overrides):
    # Grokking, verdict included: its detector needs no scipy (stepwise's theory does).
    config = load_experiment("grokking", "quick", [*tiny_overrides, "logging.wandb=false"])
    run = RunDir.create(tmp_path / "run", config.to_dict(), config.seed)
    script = ("import sys, json\n"
              "from dynamics_lab.train.worker import run_one\n"
              f"status = run_one({str(run.path)!r}, echo=lambda *a: None)\n"
              "heavy = ['matplotlib', 'scipy', 'wandb', 'pyhessian']\n"
              "print(json.dumps([status, [m for m in heavy if m in sys.modules]]))\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, env={**os.environ, "WANDB_MODE": "disabled"})
    status, imported = json.loads(out.stdout.strip().splitlines()[-1])
    assert status == "completed" and imported == []
    assert json.loads((run.path / "verdict.json").read_text())["phenomenon"] == "grokking"
