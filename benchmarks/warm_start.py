"""Warm-started sharpness along a smooth trajectory: matvecs and accuracy of three starts.

Trains the quick `edge_of_stability` config (GD, eta=0.2) and measures the top-k Hessian
eigenvalues every `--every` steps, in float64 on all 500 examples, at tol=1e-3, three ways:
  random          a fresh random start each time (`hessian.warm_start: false`)
  previous top-k  Lanczos from the sum of the previous top-k Ritz vectors: the warm start before
                  crossings were tracked (its Krylov space misses a new top direction
                  orthogonal to the old ones)
  tracked         HessianSpectrum as configured: the previous top k+1 Ritz vectors plus a random
                  vector of equal weight
For each: mean matvecs per measurement (after the first), the saving against random starts, the
worst relative error of lambda_1..k against Lanczos at tol=1e-10, and the measurements whose
error exceeds 10 x tol (a missed or mixed-up eigenvalue). Also counts the measurements where the
top eigenvector turned by more than 60 degrees since the previous one.
Usage: .venv/bin/python benchmarks/warm_start.py [--steps 1200] [--every 25] [--k 1 2]
(run as part of benchmarks/curvature.py too).
"""

from __future__ import annotations

import argparse
import os
import statistics
from types import SimpleNamespace

os.environ.setdefault("WANDB_MODE", "disabled")

import torch

from dynamics_lab.config import load_experiment
from dynamics_lab.linalg.hvp import hessian_vector_product
from dynamics_lab.linalg.lanczos import lanczos
from dynamics_lab.losses import squared
from dynamics_lab.measure.hessian import HessianSpectrum
from dynamics_lab.registry import MODELS, TASKS
from dynamics_lab.train.module import build_optimizer

TOL, LR = 1e-3, 0.2


def trajectory(steps: int, every: int) -> tuple[torch.nn.Module, tuple, dict[int, dict]]:
    """The quick EoS run at eta=LR; float64 copies of the parameters every `every` steps."""
    config = load_experiment("edge_of_stability", "quick", [f"optim.lr={LR}"])
    task = TASKS.get(config.task.name)(config.task, seed=config.seed)
    task.setup()
    torch.manual_seed(config.seed)
    model = MODELS.get(config.model.name)(config.model, task.spec)
    x, y = task.splits["train"]
    optimizer = build_optimizer(model.parameters(), config.optim)
    snapshots = {}
    for step in range(steps + 1):
        if step % every == 0:
            snapshots[step] = {k: v.double().clone() for k, v in model.state_dict().items()}
        optimizer.zero_grad()
        squared(model(x), y).backward()
        optimizer.step()
    return model.double(), (x.double(), y.double()), snapshots


class PreviousTopK:
    """The warm start before tracking: Lanczos from the sum of the previous top-k vectors."""

    def __init__(self, k: int):
        self.k, self.vectors = k, None

    def __call__(self, hvp) -> tuple[torch.Tensor, int]:
        v0 = None if self.vectors is None else self.vectors.sum(dim=1)
        result = lanczos(hvp, hvp.dim, k=self.k, tol=TOL, v0=v0, dtype=hvp.dtype)
        self.vectors = result.eigenvectors
        return result.eigenvalues, result.n_matvec


def compare(steps: int = 1200, every: int = 25, k: int = 1) -> dict[str, tuple]:
    """{start: (mean matvecs, worst rel. error, misses)} and the count of big turns."""
    model, batch, snapshots = trajectory(steps, every)
    module = SimpleNamespace(model=model, loss_fn=squared)
    callbacks = {name: HessianSpectrum(k=k, tol=TOL, warm_start=warm, probe=batch)
                 for name, warm in (("random", False), ("tracked", True))}
    previous = PreviousTopK(k)
    rows: dict[str, list[tuple[int, float]]] = {n: [] for n in ("random", "previous top-k",
                                                                 "tracked")}
    turns, top_before = 0, None
    for step, state in sorted(snapshots.items()):
        model.load_state_dict(state)
        with hessian_vector_product(model, squared, batch) as hvp:
            exact = lanczos(hvp, hvp.dim, k=k, tol=1e-10, max_iter=400, dtype=hvp.dtype)
            values, n = previous(hvp)
        found = {"previous top-k": (values, n)}
        for name, callback in callbacks.items():
            trainer = SimpleNamespace(global_step=step, loggers=[], optimizers=[])
            metrics = callback.run(trainer, module)
            found[name] = (torch.tensor([metrics[f"hessian/lambda_{i + 1}"] for i in range(k)]),
                           int(metrics["hessian/matvecs"]))
        for name, (values, n) in found.items():
            error = float(((values - exact.eigenvalues).abs() / exact.eigenvalues.abs()).max())
            rows[name].append((n, error))
        top = exact.eigenvectors[:, 0]
        if top_before is not None and float((top @ top_before).abs()) < 0.5:
            turns += 1
        top_before = top
    out = {}
    for name, values in rows.items():
        later = values[1:]  # the first measurement starts cold in every scheme
        out[name] = (statistics.mean(n for n, _ in later), max(e for _, e in later),
                     sum(e > 10 * TOL for _, e in later))
    return {"rows": out, "turns": turns, "measurements": len(snapshots)}


def report(steps: int, every: int, ks: list[int]) -> None:
    print(f"\nwarm start along the quick EoS trajectory (GD eta={LR}, {steps} steps, measured "
          f"every {every}; float64, tol={TOL:g}; errors against Lanczos at tol=1e-10)")
    for k in ks:
        result = compare(steps, every, k)
        rows = result["rows"]
        base = rows["random"][0]
        print(f"  k={k}: {result['measurements']} measurements, the top eigenvector turned by "
              f"> 60 degrees at {result['turns']} of them")
        print(f"    {'start':16} {'matvecs':>8} {'saved':>7} {'worst err':>10} {'misses':>7}")
        for name, (matvecs, worst, misses) in rows.items():
            print(f"    {name:16} {matvecs:8.1f} {1 - matvecs / base:7.0%} {worst:10.1e} "
                  f"{misses:7d}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--every", type=int, default=25)
    parser.add_argument("--k", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    torch.set_num_threads(1)
    report(args.steps, args.every, args.k)


if __name__ == "__main__":
    main()
