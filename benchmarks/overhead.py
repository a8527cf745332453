"""Framework overhead against plain PyTorch, side by side: a tiny model, the grokking quick run as
whole processes, and the sharpness measurement's overhead on the edge-of-stability quick run.

- tiny: the stepwise deep linear network (8-16-8, 256 examples, full-batch GD, one thread, 2 000
  steps, no measurements, the loss logged every 250 steps like the evaluations) through dynlab's
  Trainer and through a plain loop doing the same work (the loss read back every `log_every`
  steps, a train/val evaluation every `eval_every`), in one process, alternating. Prints ms per
  step, dynlab's overhead per step (everything included: Trainer construction, fit setup, the
  final checkpoint) and the whole-run ratio. Targets: overhead < 0.05 ms/step, ratio < 1.5.
- grokking: `dynlab run grokking` (quick profile, W&B off) against a plain script that imports
  torch alone and trains the same network on the same table with the same evaluations, each a
  fresh process from the shell, alternating. Target: ratio < 1.05.
- eos: the edge-of-stability quick run without `measure.hessian` and with it at the config's
  cadence (and every 25 steps, the former cadence, for comparison), in one process, alternating.
  Prints the overhead relative to the bare run, (with - without) / without, and the share of the
  run's time, (with - without) / with, and one measurement's cost in training steps.
  Target: overhead < 25% of the bare run, at the config's cadence.

Every line prints wall-clock and CPU time (this process's, or the child's): on a shared machine
the CPU ratio is the steadier one. Medians over `--repeats`, with the spread (max/min).

    python benchmarks/overhead.py [--parts tiny grokking eos] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
COMPARE_EVERY = 25  # the edge-of-stability sharpness cadence before issue #14


class Clock:
    """Wall and CPU seconds of a block: this process's CPU, or its children's."""

    def __init__(self, children: bool = False):
        self.children = children

    def _cpu(self) -> float:
        if not self.children:
            return time.process_time()
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    def __enter__(self) -> Clock:
        self.t0, self.c0 = time.perf_counter(), self._cpu()
        return self

    def __exit__(self, *exc) -> None:
        self.wall, self.cpu = time.perf_counter() - self.t0, self._cpu() - self.c0


def summary(name: str, values: list[float], unit: str = "", scale: float = 1.0) -> str:
    med = statistics.median(values) * scale
    spread = max(values) / min(values) if min(values) > 0 else float("nan")
    return f"{name} {med:.3f}{unit} (spread {spread:.2f}x)"


# -- tiny model, in one process ----------------------------------------------------------------

def tiny_config():
    from dynamics_lab.config import load_experiment

    return load_experiment("stepwise", overrides=["measure.modes=null", "trainer.log_every=250"])


def build(config):
    from dynamics_lab.registry import MODELS, TASKS

    torch.manual_seed(config.seed)
    task = TASKS.build(config.task, seed=config.seed)
    task.setup()
    return task, MODELS.build(config.model, task.spec)


def run_dynlab(config, root: Path, callbacks=(), **module_options) -> tuple[Clock, Path]:
    """One run through runner.build_trainer, timed from Trainer construction to fit's end;
    the clock and the run's metrics.csv."""
    from dynamics_lab.tracking.metrics import LocalMetricsLogger
    from dynamics_lab.tracking.rundir import RunDir
    from dynamics_lab.train.module import DynamicsModule
    from dynamics_lab.train.runner import build_trainer

    task, model = build(config)
    run = RunDir.create(root / f"run{time.time_ns()}", config.to_dict(), config.seed)
    module = DynamicsModule(model, task.spec.loss, config.optim, config.trainer.log_every,
                            **module_options)
    with Clock() as clock:
        trainer = build_trainer(config, run, "cpu", [LocalMetricsLogger(run.path)],
                                list(callbacks))
        trainer.fit(module, datamodule=task)
    return clock, run.metrics_path


def run_plain(config) -> Clock:
    """The same steps, loss reads and evaluations as a dynlab run, in a bare loop."""
    from dynamics_lab.losses import LOSSES, accuracy
    from dynamics_lab.train.module import build_optimizer

    task, model = build(config)
    loss_fn, t, kind = LOSSES[task.spec.loss], config.trainer, task.spec.loss
    x, y = task.splits["train"]
    with Clock() as clock:
        optimizer = build_optimizer(model.parameters(), config.optim)
        for step in range(t.max_steps + 1):
            if step % t.eval_every == 0 or step == t.max_steps:
                with torch.no_grad():
                    for xs, ys in task.splits.values():
                        out = model(xs)
                        loss_fn(out, ys).item()
                        acc = accuracy(out, ys, kind)
                        if acc is not None:
                            acc.item()
            if step == t.max_steps:
                break
            loss = loss_fn(model(x), y)
            if step % t.log_every == 0:
                loss.item()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return clock


def bench_tiny(repeats: int) -> None:
    config = tiny_config()
    steps = config.trainer.max_steps
    print(f"tiny: stepwise {config.task.in_dim}-{config.model.width}-{config.task.out_dim}, "
          f"{config.task.n_train} examples, {steps} steps, log_every "
          f"{config.trainer.log_every}, eval_every {config.trainer.eval_every}")
    rows: dict[str, list[Clock]] = {"plain": [], "dynlab": []}
    with tempfile.TemporaryDirectory() as tmp:
        run_plain(config), run_dynlab(config, Path(tmp))  # warm-up: allocator, kernels
        for _ in range(repeats):
            rows["plain"].append(run_plain(config))
            rows["dynlab"].append(run_dynlab(config, Path(tmp))[0])
    for kind in ("wall", "cpu"):
        plain = [getattr(c, kind) for c in rows["plain"]]
        ours = [getattr(c, kind) for c in rows["dynlab"]]
        overhead = [(o - p) / steps for o, p in zip(ours, plain)]
        print(f"  {kind:4}: " + summary("plain", plain, " ms/step", 1e3 / steps) + "  "
              + summary("dynlab", ours, " ms/step", 1e3 / steps))
        print(f"  {kind:4}: overhead {statistics.median(overhead) * 1e3:.4f} ms/step "
              f"(target < 0.05)  " + summary("ratio", [o / p for o, p in zip(ours, plain)])
              + " (target < 1.5)")


# -- grokking quick run, whole processes --------------------------------------------------------

def plain_grokking() -> None:
    """A plain script's version of `dynlab run grokking` (quick): torch only, same network
    (embedding 64 -> 128 ReLU -> 97), same AdamW, same table and split size, same evaluations."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    p, steps, every = 97, 4000, 20
    a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
    x, y = torch.stack([a.flatten(), b.flatten()], 1), (a.flatten() + b.flatten()) % p
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    n = round(0.4 * len(x))
    splits = {"train": (x[order[:n]], y[order[:n]]), "val": (x[order[n:]], y[order[n:]])}
    embed, net = torch.nn.Embedding(p, 64), torch.nn.Sequential(
        torch.nn.Linear(128, 128), torch.nn.ReLU(), torch.nn.Linear(128, p))
    model = lambda t: net(embed(t).flatten(1))  # noqa: E731
    params = [*embed.parameters(), *net.parameters()]
    optimizer = torch.optim.AdamW(params, lr=3e-3, betas=(0.9, 0.98), weight_decay=1.0)
    for step in range(steps + 1):
        if step % every == 0:
            with torch.no_grad():
                for xs, ys in splits.values():
                    out = model(xs)
                    torch.nn.functional.cross_entropy(out, ys).item()
                    (out.argmax(1) == ys).float().mean().item()
        if step == steps:
            break
        loss = torch.nn.functional.cross_entropy(model(splits["train"][0]), splits["train"][1])
        if step % every == 0:
            loss.item()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def bench_grokking(repeats: int) -> None:
    print("grokking: `dynlab run grokking` (quick, W&B off) vs a torch-only script, "
          "whole processes")
    env = {**os.environ, "WANDB_MODE": "disabled", "DYNLAB_THREADS": "1"}
    plain_cmd = [sys.executable, __file__, "--plain-grokking"]
    walls: dict[str, list[float]] = {"plain": [], "dynlab": []}
    cpus: dict[str, list[float]] = {"plain": [], "dynlab": []}
    with tempfile.TemporaryDirectory() as tmp:
        ours_cmd = [sys.executable, str(ROOT / "cli.py"), "run", "grokking", "--out", tmp,
                    "--no-wandb"]
        for _ in range(repeats):
            for name, cmd in (("plain", plain_cmd), ("dynlab", ours_cmd)):
                with Clock(children=True) as clock:
                    subprocess.run(cmd, env=env, cwd=ROOT, check=True,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                walls[name].append(clock.wall)
                cpus[name].append(clock.cpu)
    for kind, rows in (("wall", walls), ("cpu", cpus)):
        print(f"  {kind:4}: " + summary("plain", rows["plain"], " s") + "  "
              + summary("dynlab", rows["dynlab"], " s") + "  "
              + summary("ratio", [o / p for o, p in zip(rows["dynlab"], rows["plain"])])
              + " (target < 1.05)")


# -- edge of stability: the sharpness measurement's overhead ------------------------------------

def bench_eos(repeats: int) -> None:
    from dynamics_lab.config import load_experiment
    from dynamics_lab.tracking.metrics import read_metrics
    from dynamics_lab.train.runner import build_measurements

    config = load_experiment("edge_of_stability")
    every, steps = config.measure["hessian"].every, config.trainer.max_steps
    configs = {"without": load_experiment("edge_of_stability", overrides=["measure.hessian=null"]),
               f"every {every}": config}
    if every != COMPARE_EVERY:  # the former cadence, for before/after in one process
        configs[f"every {COMPARE_EVERY}"] = load_experiment(
            "edge_of_stability", overrides=[f"measure.hessian.every={COMPARE_EVERY}"])
    print(f"eos: edge_of_stability quick ({steps} steps), without measure.hessian and with it "
          f"every {every} steps (the config)"
          + (f" and every {COMPARE_EVERY} (for comparison)" if len(configs) > 2 else ""))
    walls: dict[str, list[float]] = {name: [] for name in configs}
    cpus: dict[str, list[float]] = {name: [] for name in configs}
    matvecs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(repeats):
            order = list(configs.items())
            for name, cfg in order if repeat % 2 == 0 else order[::-1]:  # no fixed position
                callbacks = build_measurements(cfg) if name != "without" else ()
                clock, metrics = run_dynlab(cfg, Path(tmp), callbacks)
                walls[name].append(clock.wall)
                cpus[name].append(clock.cpu)
                if name != "without":
                    matvecs[name] = read_metrics(metrics)["hessian/matvecs"].dropna()
    for kind, rows in (("wall", walls), ("cpu", cpus)):
        print(f"  {kind:4}: " + "  ".join(summary(name, values, " s")
                                          for name, values in rows.items()))
        bare = rows["without"]
        for name in matvecs:
            over = [(w - wo) / wo for w, wo in zip(rows[name], bare)]
            share = [(w - wo) / w for w, wo in zip(rows[name], bare)]
            print(f"  {kind:4}: {name}: overhead {statistics.median(over):.1%} of the bare run"
                  + (" (target < 25%)" if name == f"every {every}" else "")
                  + f", {statistics.median(share):.1%} of the run's time")
    bare_step = statistics.median(cpus["without"]) / steps
    for name, counts in matvecs.items():
        cost = statistics.median(cpus[name]) - statistics.median(cpus["without"])
        print(f"  {name}: {len(counts)} measurements, {counts.mean():.1f} Hessian-vector products "
              f"each (median {counts.median():.0f}, max {counts.max():.0f}); "
              f"{cost / len(counts) * 1e3:.1f} ms CPU per measurement = "
              f"{cost / len(counts) / bare_step:.0f} training steps, "
              f"{cost / counts.sum() * 1e3:.2f} ms per product")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", default=["tiny", "grokking", "eos"],
                        choices=["tiny", "grokking", "eos"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--plain-grokking", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain_grokking:
        return plain_grokking()
    from dynamics_lab.train.lifecycle import quiet_lightning

    torch.set_num_threads(1)
    quiet_lightning()
    for part in args.parts:
        {"tiny": bench_tiny, "grokking": bench_grokking, "eos": bench_eos}[part](args.repeats)


if __name__ == "__main__":
    main()
