"""Lightning overhead: the quick grokking config through dynlab's Trainer vs a plain PyTorch loop.

Both do the same work: the same full-batch AdamW steps, the loss read back every `log_every`
steps, and a full train/val evaluation every `eval_every` steps. They alternate in one process;
the median ratio of wall times is printed. Target: <= 1.10 on CPU.

    python benchmarks/overhead.py [--steps 500] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from dynamics_lab.config import load_experiment
from dynamics_lab.losses import LOSSES, accuracy
from dynamics_lab.registry import MODELS, TASKS
from dynamics_lab.tracking.metrics import LocalMetricsLogger
from dynamics_lab.tracking.rundir import RunDir
from dynamics_lab.train.lifecycle import quiet_lightning
from dynamics_lab.train.module import DynamicsModule, build_optimizer
from dynamics_lab.train.runner import build_trainer


def build(config):
    torch.manual_seed(config.seed)
    task = TASKS.get(config.task.name)(config.task, seed=config.seed)
    task.setup()
    model = MODELS.get(config.model.name)(config.model, task.spec)
    return task, model


def run_lightning(config, root: Path) -> float:
    task, model = build(config)
    run = RunDir.create(root / f"run{time.time_ns()}", config.to_dict(), config.seed)
    module = DynamicsModule(model, task.spec.loss, config.optim, config.trainer.log_every)
    start = time.perf_counter()
    trainer = build_trainer(config, run, "cpu", [LocalMetricsLogger(run.path)], [])
    trainer.fit(module, datamodule=task)
    return time.perf_counter() - start


def run_plain(config) -> float:
    task, model = build(config)
    loss_fn, t = LOSSES[task.spec.loss], config.trainer
    (x, y), splits = task.splits["train"], task.splits
    start = time.perf_counter()
    optimizer = build_optimizer(model.parameters(), config.optim)
    for step in range(t.max_steps + 1):
        if step % t.eval_every == 0:
            with torch.no_grad():
                for xs, ys in splits.values():
                    out = model(xs)
                    loss_fn(out, ys).item(), accuracy(out, ys, task.spec.loss).item()
        if step == t.max_steps:
            break
        loss = loss_fn(model(x), y)
        if step % t.log_every == 0:
            loss.item()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    quiet_lightning()
    config = load_experiment("grokking", overrides=[f"trainer.max_steps={args.steps}",
                                                    "trainer.checkpoint_every=null"])
    ratios = []
    with tempfile.TemporaryDirectory() as tmp:
        run_plain(config)  # warm-up: allocator, kernels
        for i in range(args.repeats):
            plain = run_plain(config)
            lightning = run_lightning(config, Path(tmp))
            ratios.append(lightning / plain)
            print(f"repeat {i}: plain {plain:7.2f}s  dynlab {lightning:7.2f}s  "
                  f"ratio {lightning / plain:.3f}")
    print(f"median ratio dynlab / plain loop over {args.steps} full-batch steps: "
          f"{statistics.median(ratios):.3f}  (target <= 1.10)")


if __name__ == "__main__":
    main()
