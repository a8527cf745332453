"""Curvature on the edge-of-stability model: HVP cost, eigensolver cost, callback overhead.

Trains the quick `edge_of_stability` config (GD, eta=0.2, 2/eta=10) in-process, keeps checkpoints
past the onset of the edge of stability, and at each one prints:
- HVP time / gradient time (forward + backward of the same loss, as training pays it) for each
  of linalg's HVP methods: reuse (the gradient graph built once per operator; its one-off build
  is not in this ratio, it is in the solver wall times below), func, double_backward;
- matvecs and wall time for the top eigenvalue at tol=1e-3 from our Lanczos (cold, and warm from
  the top eigenvector 25 steps earlier, as the callback does), pyhessian's power iteration
  (`eigenvalues(top_n=1, tol=1e-3)`) and scipy's ARPACK `eigsh(which='LA', tol=1e-3)` over the
  same HVP (linalg's default, "auto"), each with the relative error it actually reached against
  Lanczos at tol=1e-10; Lanczos walls include building the operator's graph;
- the same warm Lanczos in float32 at the same parameters, which is what the quick run (float32
  training) logs, with its error against the float64 reference;
then the warm start's matvecs and accuracy along the whole trajectory, side by side: random
starts, the previous top-k Ritz vectors (the warm start before crossings were tracked) and the
callback's tracked start (`benchmarks/warm_start.py`); then the wall time of the whole quick run
with and without sharpness every 50 steps (runs alternate, best of N), and, less sensitive to
other processes on a shared machine, the time the callback spent measuring inside the "with" run
against the rest of that same run.
Curvature is compared in float64 (a tight reference needs it); training runs in float32.
Usage: .venv/bin/python benchmarks/curvature.py [--steps 400 800] [--overhead-repeats 0]
       [--trajectory-steps 0]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import math
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("WANDB_MODE", "disabled")

import numpy as np
import torch
import warm_start  # benchmarks/warm_start.py, next to this script
from scipy.sparse.linalg import LinearOperator, eigsh

from dynamics_lab.config import load_experiment
from dynamics_lab.linalg.hvp import hessian_vector_product
from dynamics_lab.linalg.lanczos import (
    default_generator,
    lanczos,
    random_vector,
    ritz_pairs,
    tridiagonalize,
)
from dynamics_lab.losses import squared
from dynamics_lab.measure.pyhessian_backend import pyhessian_top_eigenpairs
from dynamics_lab.registry import MODELS, TASKS
from dynamics_lab.train.module import build_optimizer

TOL, LR, WARM_GAP = 1e-3, 0.2, 25
METHODS = ("reuse", "func", "double_backward")


def build(config):
    task = TASKS.get(config.task.name)(config.task, seed=config.seed)
    task.setup()
    torch.manual_seed(config.seed)  # what L.seed_everything(config.seed) does to torch
    return task, MODELS.get(config.model.name)(config.model, task.spec)


def train_checkpoints(config, steps: list[int]) -> tuple[tuple, dict[int, dict]]:
    """GD on the full batch; parameter snapshots at each step in `steps` and WARM_GAP before."""
    task, model = build(config)
    x, y = task.splits["train"]
    optimizer = build_optimizer(model.parameters(), config.optim)
    wanted = set(steps) | {s - WARM_GAP for s in steps}
    snapshots = {}
    for step in range(max(steps) + 1):
        if step in wanted:
            snapshots[step] = {k: v.clone() for k, v in model.state_dict().items()}
        optimizer.zero_grad()
        squared(model(x), y).backward()
        optimizer.step()
    return (task, model), snapshots


def timed(fn, repeats: int = 1):
    """(result of the last call, median seconds per call)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return out, statistics.median(times)


def hvp_over_grad(model, batch, repeats: int = 30) -> dict[str, float]:
    """Median HVP time / median gradient time per operator, calls interleaved against drift."""
    ops = {m: hessian_vector_product(model, squared, batch, method=m) for m in METHODS}
    v = torch.randn(ops[METHODS[0]].dim, dtype=torch.float64,
                    generator=torch.Generator().manual_seed(1)).to(ops[METHODS[0]].dtype)

    def grad():
        model.zero_grad(set_to_none=True)
        squared(model(batch[0]), batch[1]).backward()

    times: dict[str, list[float]] = {name: [] for name in ["grad", *ops]}
    for _ in range(repeats + 1):  # the first round warms up (torch.func traces, reuse builds)
        for name, fn in [("grad", grad), *((n, lambda op=op: op(v)) for n, op in ops.items())]:
            times[name].append(timed(fn)[1])
    model.zero_grad(set_to_none=True)
    for op in ops.values():
        op.release()
    t_grad = statistics.median(times.pop("grad")[1:])
    return {name: statistics.median(t[1:]) / t_grad for name, t in times.items()}


def scipy_top(hvp) -> tuple[float, int]:
    count = [0]

    def matvec(v):
        count[0] += 1
        return hvp(torch.from_numpy(np.ascontiguousarray(v).reshape(-1))).double().numpy()

    op = LinearOperator((hvp.dim, hvp.dim), matvec=matvec, dtype=np.float64)
    v0 = np.random.default_rng(0).standard_normal(hvp.dim)
    value = eigsh(op, k=1, which="LA", tol=TOL, v0=v0, return_eigenvectors=False)[0]
    return float(value), count[0]


def lanczos_oracle(hvp, v0, exact: float, max_iter: int = 60) -> float:
    """Fewest Lanczos steps whose top Ritz value is within TOL of `exact` (T's leading blocks)."""
    tri = tridiagonalize(hvp, v0, max_iter)
    for m in range(1, len(tri.alphas) + 1):
        if abs(float(ritz_pairs(tri.alphas[:m], tri.betas[:m])[0][0]) / exact - 1) <= TOL:
            return m
    return math.nan


def power_oracle(hvp, exact: float, max_iter: int = 500) -> float:
    """Fewest power iterations (Rayleigh quotient, as pyhessian) within TOL of `exact`."""
    v = torch.randn(hvp.dim, dtype=hvp.dtype, generator=torch.Generator().manual_seed(0))
    v = v / v.norm()
    for i in range(1, max_iter + 1):
        hv = hvp(v)
        if abs(float(v @ hv) / exact - 1) <= TOL:
            return i
        v = hv / hv.norm()
    return math.nan


def measured_top(model, batch, v0):
    """What the callback does per measurement: a fresh operator, Lanczos at TOL, release."""
    with hessian_vector_product(model, squared, batch) as hvp:
        return lanczos(hvp, hvp.dim, tol=TOL, v0=v0, dtype=hvp.dtype)


def compare_solvers(model, batch, warm_vector) -> tuple[dict, float]:
    """({solver: (matvecs, rel. error, wall s, oracle matvecs to TOL)}, reference) at one step."""
    hvp = hessian_vector_product(model, squared, batch)
    ref = lanczos(hvp, hvp.dim, tol=1e-10, max_iter=400, dtype=hvp.dtype)
    exact = float(ref.eigenvalues[0])
    cold = random_vector(hvp.dim, default_generator(), dtype=hvp.dtype)
    model32 = copy.deepcopy(model).float()
    batch32 = tuple(t.float() for t in batch)
    runs = {
        "lanczos (cold)": (lambda: measured_top(model, batch, cold), cold),
        "lanczos (warm, top vec)": (lambda: measured_top(model, batch, warm_vector), warm_vector),
        "lanczos float32 (warm)": (lambda: measured_top(model32, batch32, warm_vector), None),
        "pyhessian power": (lambda: pyhessian_top_eigenpairs(model, squared, batch, 1, 100, TOL),
                            hvp),
    }
    out = {}
    for name, (fn, v0) in runs.items():
        result, wall = timed(fn)
        if v0 is None:
            oracle = math.nan
        elif v0 is hvp:
            oracle = power_oracle(hvp, exact)
        else:
            oracle = lanczos_oracle(hvp, v0, exact)
        out[name] = (result.n_matvec, abs(float(result.eigenvalues[0]) / exact - 1), wall, oracle)
    (value, matvecs), wall = timed(lambda: scipy_top(hvp))
    out["scipy eigsh (ARPACK)"] = (matvecs, abs(value / exact - 1), wall, math.nan)
    hvp.release()
    return out, exact


@contextlib.contextmanager
def timing_measurements(totals: list[float]):
    """Adds the wall time of every HessianSpectrum measurement (Measurement.record) to `totals`."""
    from dynamics_lab.measure.hessian import HessianSpectrum

    original = HessianSpectrum.record

    def record(self, trainer, pl_module):
        t0 = time.perf_counter()
        out = original(self, trainer, pl_module)
        totals.append(time.perf_counter() - t0)
        return out

    HessianSpectrum.record = record
    try:
        yield
    finally:
        del HessianSpectrum.record  # back to the inherited Measurement.record


def overhead(every: int, repeats: int) -> tuple[float, float, float, float]:
    """Fastest wall time of the quick run (eta=LR) without / with sharpness every `every` steps
    (the two alternate so that load from other processes hits both alike), the smallest in-run
    share: measuring time / (wall - measuring time) of one "with" run, and its mean matvecs."""
    from dynamics_lab.sweep import prepare_sweep, single
    from dynamics_lab.tracking.metrics import read_metrics
    from dynamics_lab.tracking.rundir import RunDir
    from dynamics_lab.train.runner import execute

    walls: dict[str, list[float]] = {"without": [], "with": []}
    shares = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeats):
            for key, measure in [("without", "measure.hessian=null"),
                                 ("with", f"measure.hessian.every={every}")]:
                config = load_experiment("edge_of_stability", "quick", [f"optim.lr={LR}", measure])
                [run_dir] = prepare_sweep(config, [single(config)], Path(tmp) / f"{key}{i}")
                totals: list[float] = []
                with timing_measurements(totals):
                    walls[key].append(execute(RunDir(run_dir), echo=lambda m: None).wall_time_s)
                if key == "with":
                    shares.append(sum(totals) / (walls[key][-1] - sum(totals)))
                    matvecs = read_metrics(run_dir)["hessian/matvecs"].mean()
    return min(walls["without"]), min(walls["with"]), min(shares), matvecs


def median_row(rows: list[tuple]) -> list[float]:
    return [statistics.median(r[i] for r in rows) for i in range(len(rows[0]))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[400, 600, 800, 1000, 1200])
    parser.add_argument("--overhead-repeats", type=int, default=3, help="0 skips the overhead runs")
    parser.add_argument("--trajectory-steps", type=int, default=1200,
                        help="steps of the warm-start comparison; 0 skips it")
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = load_experiment("edge_of_stability", "quick", [f"optim.lr={LR}"])
    (task, model), snapshots = train_checkpoints(config, args.steps)
    model = model.double()
    x, y = (t.double() for t in task.splits["train"])
    print(f"model: {config.model.width}-{config.model.width} tanh MLP, "
          f"{sum(p.numel() for p in model.parameters())} params, probe {len(x)} examples; "
          f"GD eta={LR} (2/eta={2 / LR:g}); checkpoints at steps {args.steps}; float64, 1 thread")
    ratios: dict[str, list[float]] = {}
    table: dict[str, list[tuple]] = {}
    for step in args.steps:
        model.load_state_dict(snapshots[step - WARM_GAP])  # copied into the float64 params
        earlier = hessian_vector_product(model, squared, (x, y))
        warm = lanczos(earlier, earlier.dim, tol=1e-8, dtype=earlier.dtype).eigenvectors[:, 0]
        model.load_state_dict(snapshots[step])
        for name, ratio in hvp_over_grad(model, (x, y)).items():
            ratios.setdefault(name, []).append(ratio)
        rows, exact = compare_solvers(model, (x, y), warm)
        shown = ", ".join(f"{m} {r[-1]:.2f}" for m, r in ratios.items())
        print(f"step {step:5d}: sharpness {exact:.4f} = {exact * LR / 2:.3f} x 2/eta; "
              f"HVP/grad time: {shown}")
        for name, row in rows.items():
            table.setdefault(name, []).append(row)
    print("\nHVP time / gradient time (forward+backward), median over checkpoints (target <= 2.5):")
    auto = hessian_vector_product(model, squared, (x, y))
    auto(torch.zeros(auto.dim, dtype=auto.dtype))
    auto.release()
    notes = {"reuse": "ours (reuse): pyhessian's scheme", "func": "forward-over-reverse",
             "double_backward": "forward + 2 backwards per matvec"}
    for name, values in ratios.items():
        picked = f"; linalg 'auto' and EoS config ({config.measure['hessian'].hvp_method})" \
            if name == auto.method else ""
        print(f"  {name:16} {statistics.median(values):5.2f}  ({notes[name]}{picked})")
    print(f"\n{'top eigenvalue at tol=1e-3':24} {'matvecs':>7} {'rel.err':>8} {'wall ms':>8} "
          f"{'vs lanczos':>10} {'matvecs to 1e-3 err':>20}")
    base = median_row(table["lanczos (cold)"])
    for name, rows in table.items():
        mv, err, wall, oracle = median_row(rows)
        oracle_s = "-" if math.isnan(oracle) else f"{oracle:.0f}"
        print(f"{name:24} {mv:7.0f} {err:8.1e} {wall * 1e3:8.1f} {mv / base[0]:9.2f}x "
              f"{oracle_s:>20}")
    print(f"(medians over {len(args.steps)} checkpoints; rel.err against Lanczos at tol=1e-10; "
          "target: lanczos <= 30 matvecs)")
    if args.trajectory_steps:
        warm_start.report(args.trajectory_steps, WARM_GAP, [1, 2])
    if args.overhead_repeats:
        without, with_, share, matvecs = overhead(50, args.overhead_repeats)
        print(f"\nquick run (eta={LR}, {config.trainer.max_steps} steps, float32, best of "
              f"{args.overhead_repeats}): {without:.1f}s without, {with_:.1f}s with sharpness "
              f"every 50 steps: overhead {with_ / without - 1:.0%} (target <= 30%); "
              f"in-run: measuring / rest of the run {share:.0%}, {matvecs:.1f} matvecs per "
              "measurement (warm-started from the previous one)")


if __name__ == "__main__":
    main()
