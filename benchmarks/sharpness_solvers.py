"""Sharpness eigensolvers side by side on the edge-of-stability quick trajectories.

Trains the shipped `edge_of_stability` quick config (float32 full-batch GD, the sweep's step
sizes 0.1, 0.15, 0.2, 0.3; 3000 steps each), timing the bare training loop, and snapshots the
parameters every `--every` steps (25). At every snapshot the top Hessian eigenvalue (k=1) of the
loss on all 500 training examples is measured by six solvers, each at tol=1e-3:
  tracker       HessianSpectrum(solver="track") with its defaults (printed in the header):
                block and scout carried from one measurement to the next, a warm Lanczos audit
                every audit_every-th, and, where the callback has it, warm Lanczos run directly
                for retry_after measurements after a fallback ("direct" in the method counts)
  warm lanczos  HessianSpectrum(solver="lanczos", warm_start=True): the default today
  cold lanczos  HessianSpectrum(warm_start=False): Lanczos from a fresh random start
  pyhessian     HessianSpectrum(backend="pyhessian"): PyHessian's power iteration, started from
                the same seeded random vector each time; its tol is the relative change of the
                estimate between two iterations, not a residual bound. Its count is power
                iterations; its time includes the backend's residual check (one more HVP
                through a graph of its own)
  eigsh         scipy.sparse.linalg.eigsh (ARPACK) on a LinearOperator whose matvec is the HVP:
                k=1, which="LA", tol=1e-3 (ARPACK: residual <= tol |theta|), default ncv (20),
                seeded random v0
  lobpcg        torch.lobpcg(k=1, largest=True, tol=1e-3) from a seeded random X (n=1),
                niter 100. torch.lobpcg takes a tensor, not a callable, and its only use of A
                is torch.matmul(A, X); it runs on a zero-storage dim x dim stand-in (an expanded
                1x1 tensor) under a TorchFunctionMode that answers torch.matmul(stand-in, X)
                with the HVP of X's columns, so no dense Hessian is assembled and every HVP is
                counted. Its own tol test is ||R|| < tol (||A x0|| + |theta|), x0 its start
                (looser than tol |theta|), and it applies A to X again for each residual, so
                it spends about four HVPs per iteration
Every solver builds its own HVP operator (one gradient graph, "reuse") per measurement, inside
its timing. The reference is Lanczos from a random start at tol=1e-7 (max_iter 400), float64.

The solvers run in the dtype(s) `--dtype` names, each with its own carried state per dtype.
Default float32, the shipped run's dtype (HessianSpectrum measures in the network's dtype): one
run gives the HVP counts, the errors, the times and the overhead = (time of all its
measurements) / (time of the bare float32 GD loop of the same steps, same process: forward,
backward, step, the batch loss read every step). The errors are against the float64 reference;
float32 rounding moves the top eigenvalue by ~1e-6 relative, far below tol, so what they show
is the solver's. `--dtype both` also runs every solver in float64 (on a float64 copy of the
parameters) and takes HVP counts, errors and the histogram from there, times from float32: about
twice the work (past 10 minutes on two shared cores), hence not the default. `--dtype float64`
times float64 solvers against the float32 bare loop (an overstated overhead). The bare loop has
no Lightning around it, so the overhead is against a cheaper run than `dynlab run` (see
benchmarks/overhead.py). Times are wall clock and this process's CPU time (one thread; on a
shared machine the CPU time is the steadier one); the solvers run in a rotating order.

The verdict question: the edge_of_stability detector (with the config's phenomenon section)
judges a metrics table per step size built as a run logs it (step; train/batch_loss every
step; hessian/lambda_max, hessian/certified and hessian/threshold = 2/eta at the measured
steps; certified is 1 for eigsh, lobpcg and the reference), once per solver's sharpness series,
and the verdicts are compared with the reference's. The shipped config measures at log-spaced
steps plus every 100; here every `--every`, so a step size that crosses early has few samples
before the crossing (the detector's reason is printed).

Usage: .venv/bin/python benchmarks/sharpness_solvers.py [--steps 3000] [--every 25]
       [--lrs 0.1 0.15 0.2 0.3] [--dtype float32|float64|both]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from types import SimpleNamespace

os.environ.setdefault("WANDB_MODE", "disabled")

import numpy as np
import pandas as pd
import torch
from scipy.sparse.linalg import LinearOperator, eigsh
from torch.overrides import TorchFunctionMode

from dynamics_lab.config import load_experiment
from dynamics_lab.linalg.hvp import hessian_vector_product
from dynamics_lab.linalg.lanczos import lanczos, random_vector
from dynamics_lab.losses import LOSSES
from dynamics_lab.measure.hessian import HessianSpectrum
from dynamics_lab.measure.stability import threshold_of
from dynamics_lab.phenomena import detect
from dynamics_lab.registry import MODELS, TASKS
from dynamics_lab.train.module import build_optimizer

TOL = 1e-3
REFERENCE_TOL, REFERENCE_ITER = 1e-7, 400
LOBPCG_NITER = 100
SOLVERS = ("tracker", "warm lanczos", "cold lanczos", "pyhessian", "eigsh", "lobpcg")
DTYPES = {"float32": (torch.float32,), "float64": (torch.float64,),
          "both": (torch.float64, torch.float32)}


class Clock:
    """Wall and CPU (this process) seconds of a block."""

    def __enter__(self) -> Clock:
        self.t0, self.c0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall, self.cpu = time.perf_counter() - self.t0, time.process_time() - self.c0


# -- the trajectory ------------------------------------------------------------------------------

@dataclass
class Trajectory:
    lr: float
    config: object
    model: torch.nn.Module  # float32, as trained
    batch: tuple[torch.Tensor, torch.Tensor]  # float32, the whole training set
    loss_fn: object
    threshold: float
    snapshots: dict[int, dict[str, torch.Tensor]]  # float32 state dicts
    losses: np.ndarray  # train/batch_loss at steps 0 .. steps-1
    bare: Clock = field(default_factory=Clock)


def trajectory(lr: float, steps: int, every: int) -> Trajectory:
    """The quick EoS run at step size `lr` in float32, timed; snapshots every `every` steps."""
    config = load_experiment("edge_of_stability", "quick",
                             [f"optim.lr={lr}", f"trainer.max_steps={steps}"])
    task = TASKS.get(config.task.name)(config.task, seed=config.seed)
    task.setup()
    torch.manual_seed(config.seed)
    model = MODELS.get(config.model.name)(config.model, task.spec)
    loss_fn = LOSSES[task.spec.loss]
    x, y = task.splits["train"]
    optimizer = build_optimizer(model.parameters(), config.optim)
    snapshots, losses = {}, []
    with Clock() as clock:
        for step in range(steps + 1):
            if step % every == 0:  # a few thousand floats: negligible beside a step
                snapshots[step] = {k: v.detach().clone() for k, v in model.state_dict().items()}
            if step == steps:
                break
            loss = loss_fn(model(x), y)
            losses.append(loss.item())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return Trajectory(lr, config, model, (x, y), loss_fn, float(threshold_of(optimizer)),
                      snapshots, np.array(losses), clock)


# -- the solvers: each a callable (model, batch, step) -> (lambda_max, n_matvec) ----------------

class Callback:
    """A HessianSpectrum driven outside a Trainer (state carried across its calls)."""

    def __init__(self, loss_fn, **config):
        self.callback = HessianSpectrum(k=1, tol=TOL, loss_fn=loss_fn, **config)
        self.results: list = []  # the tracker's TrackResults, in order
        self.direct: list[bool] = []  # whether the callback ran Lanczos directly (no tracking)
        if self.callback.config.solver == "track":
            original = self.callback._track

            def capture(key, *args, **kwargs):
                left = getattr(self.callback, "direct_left", {}).get(key, 0)
                result = original(key, *args, **kwargs)
                self.results.append(result)
                self.direct.append(left > 0)
                return result

            self.callback._track = capture

    def __call__(self, model, batch, step: int) -> tuple[float, int, bool]:
        self.callback.probe = batch
        trainer = SimpleNamespace(global_step=step, loggers=[], optimizers=[])
        metrics = self.callback.run(trainer, SimpleNamespace(model=model))
        if "hessian/failed" in metrics:
            raise RuntimeError(f"HessianSpectrum failed at step {step}")
        return (metrics["hessian/lambda_max"], int(metrics["hessian/matvecs"]),
                bool(metrics.get("hessian/certified", 1)))


def _generator(step: int, salt: int) -> torch.Generator:
    return torch.Generator().manual_seed(salt * 1_000_003 + step)


def reference(model, batch, loss_fn, step: int) -> tuple[float, int, bool]:
    with hessian_vector_product(model, loss_fn, batch) as hvp:
        result = lanczos(hvp, hvp.dim, k=1, tol=REFERENCE_TOL, max_iter=REFERENCE_ITER,
                         dtype=hvp.dtype, generator=_generator(step, 7))
    return float(result.eigenvalues[0]), result.n_matvec, result.converged


class Eigsh:
    """ARPACK through scipy on a LinearOperator wrapping the HVP."""

    def __init__(self, loss_fn):
        self.loss_fn = loss_fn

    def __call__(self, model, batch, step: int) -> tuple[float, int, bool]:
        count = 0
        with hessian_vector_product(model, self.loss_fn, batch) as hvp:
            dtype = {torch.float32: np.float32, torch.float64: np.float64}[hvp.dtype]

            def matvec(v: np.ndarray) -> np.ndarray:
                nonlocal count
                count += 1
                return hvp(torch.from_numpy(np.array(v, dtype=dtype).reshape(-1))).numpy()

            operator = LinearOperator((hvp.dim, hvp.dim), matvec=matvec, dtype=dtype)
            v0 = random_vector(hvp.dim, _generator(step, 11), dtype=hvp.dtype).numpy()
            values = eigsh(operator, k=1, which="LA", tol=TOL, v0=v0,
                           return_eigenvectors=False)
        return float(values[0]), count, True  # ARPACK raises when it does not converge


class HvpMatmul(TorchFunctionMode):
    """torch.matmul(stand_in, X) answered by the HVP of X's columns; everything else as is."""

    def __init__(self, stand_in: torch.Tensor, hvp):
        super().__init__()
        self.stand_in, self.hvp, self.count = stand_in, hvp, 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is torch.matmul and args and args[0] is self.stand_in:
            self.count += args[1].shape[-1]
            return self.hvp.matmat(args[1])
        return func(*args, **(kwargs or {}))


class Lobpcg:
    """torch.lobpcg matrix-free: see the module docstring."""

    def __init__(self, loss_fn):
        self.loss_fn = loss_fn

    def __call__(self, model, batch, step: int) -> tuple[float, int, bool]:
        with hessian_vector_product(model, self.loss_fn, batch) as hvp:
            stand_in = torch.zeros(1, 1, dtype=hvp.dtype).expand(hvp.dim, hvp.dim)
            x0 = random_vector(hvp.dim, _generator(step, 13), dtype=hvp.dtype).reshape(-1, 1)
            with HvpMatmul(stand_in, hvp) as mode:
                values, _ = torch.lobpcg(stand_in, k=1, X=x0, tol=TOL, largest=True,
                                         niter=LOBPCG_NITER)
        return float(values[0]), mode.count, True  # torch.lobpcg reports no convergence


def solvers(loss_fn) -> dict[str, object]:
    return {"tracker": Callback(loss_fn, solver="track"),
            "warm lanczos": Callback(loss_fn, solver="lanczos", warm_start=True),
            "cold lanczos": Callback(loss_fn, solver="lanczos", warm_start=False),
            "pyhessian": Callback(loss_fn, backend="pyhessian"),
            "eigsh": Eigsh(loss_fn), "lobpcg": Lobpcg(loss_fn)}


# -- one trajectory, every solver ---------------------------------------------------------------

@dataclass
class Record:
    """Per solver and dtype: values, matvec counts and times, one entry per measurement."""

    values: list[float] = field(default_factory=list)
    matvecs: list[int] = field(default_factory=list)
    certified: list[bool] = field(default_factory=list)
    wall: float = 0.0
    cpu: float = 0.0


def measure(run: Trajectory, dtypes: tuple[torch.dtype, ...]) -> dict:
    """All solvers (in each of `dtypes`) and the float64 reference at every snapshot of `run`."""
    models = {torch.float32: run.model, torch.float64: _copy(run.model, torch.float64)}
    batches = {dtype: tuple(t.to(dtype) for t in run.batch) for dtype in models}
    state = {dtype: solvers(run.loss_fn) for dtype in dtypes}
    records = {(name, dtype): Record() for name in SOLVERS for dtype in dtypes}
    steps, exact, exact_matvecs, unconverged = [], [], [], 0
    for i, (step, snapshot) in enumerate(sorted(run.snapshots.items())):
        for model in models.values():
            model.load_state_dict(snapshot)  # copy_ casts to each model's dtype
        value, n, converged = reference(models[torch.float64], batches[torch.float64],
                                        run.loss_fn, step)
        steps.append(step)
        exact.append(value)
        exact_matvecs.append(n)
        unconverged += not converged
        order = SOLVERS[i % len(SOLVERS):] + SOLVERS[:i % len(SOLVERS)]
        for name in order:
            for dtype in dtypes:
                record = records[name, dtype]
                with Clock() as clock:
                    value, n, certified = state[dtype][name](models[dtype], batches[dtype],
                                                             step)
                record.values.append(value)
                record.matvecs.append(n)
                record.certified.append(certified)
                record.wall += clock.wall
                record.cpu += clock.cpu
    return {"steps": steps, "exact": np.array(exact), "exact_matvecs": exact_matvecs,
            "unconverged": unconverged, "records": records,
            "tracker": {dtype: state[dtype]["tracker"] for dtype in dtypes}}


def _copy(model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    import copy

    return copy.deepcopy(model).to(dtype)


# -- the verdict --------------------------------------------------------------------------------

def verdict(run: Trajectory, steps: list[int], sharpness, certified=None) -> object:
    """The edge_of_stability detector on the table a run with this sharpness series logs."""
    n = len(run.losses)
    frame = pd.DataFrame({"step": np.arange(n + 1)})
    frame["train/batch_loss"] = np.append(run.losses, np.nan)
    for column in ("hessian/lambda_max", "hessian/certified", "hessian/threshold"):
        frame[column] = np.nan
    at = frame["step"].isin(steps)
    frame.loc[at, "hessian/lambda_max"] = np.asarray(sharpness, float)
    frame.loc[at, "hessian/certified"] = (np.ones(len(steps)) if certified is None
                                          else np.asarray(certified, float))
    frame.loc[at, "hessian/threshold"] = run.threshold
    return detect("edge_of_stability", frame, run.config)


def describe(v) -> str:
    crossing = "-" if v.crossing_step is None else str(v.crossing_step)
    within = "-" if v.fraction_within is None else f"{v.fraction_within:.2f}"
    return f"{v.outcome.value} (cross {crossing}, within {within})"


# -- report -------------------------------------------------------------------------------------

def relative_errors(values, exact: np.ndarray) -> np.ndarray:
    return np.abs(np.asarray(values) - exact) / np.abs(exact)


def _name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def report(args) -> None:
    dtypes = DTYPES[args.dtype]
    # HVP counts and errors from float64 where it ran, times from float32 where it ran.
    exact_dtype = torch.float64 if torch.float64 in dtypes else torch.float32
    time_dtype = torch.float32 if torch.float32 in dtypes else torch.float64
    total = Clock().__enter__()
    runs, results = [], []
    for lr in args.lrs:
        run = trajectory(lr, args.steps, args.every)
        runs.append(run)
        results.append(measure(run, dtypes))
    total.__exit__()

    n_meas = sum(len(r["steps"]) for r in results)
    bare_wall = sum(run.bare.wall for run in runs)
    bare_cpu = sum(run.bare.cpu for run in runs)
    exact = np.concatenate([r["exact"] for r in results])
    print(f"sharpness solvers on the edge_of_stability quick trajectories (float32 GD, eta "
          f"{', '.join(f'{lr:g}' for lr in args.lrs)}; {args.steps} steps each): lambda_max "
          f"(k=1) every {args.every} steps on all 500 examples, {n_meas} measurements per "
          f"solver, tol={TOL:g}")
    if len(dtypes) == 2:
        print("  solvers ran in float64 (on float64 copies of the parameters: HVP counts, errors) "
              "and in float32 (times, overhead)")
    else:
        print(f"  solvers ran in {_name(dtypes[0])} only (--dtype {args.dtype}): HVP counts, "
              "errors, times and overhead all from that run"
              + ("; float32 is the shipped run's dtype, and its rounding (~1e-6) is far below "
                 "tol" if dtypes[0] == torch.float32 else "; timed against the float32 bare "
                 "loop, so the overhead is overstated"))
    c = results[0]["tracker"][dtypes[0]].callback.config
    print("  tracker: HessianSpectrum(solver='track') defaults: " + ", ".join(
        f"{key} {getattr(c, key)}" for key in ("guard", "max_expand", "audit_every",
                                               "retry_after", "max_iter", "batched")
        if hasattr(c, key)))
    print(f"  errors relative to cold float64 Lanczos at tol={REFERENCE_TOL:g} (max_iter "
          f"{REFERENCE_ITER}; {statistics.mean(n for r in results for n in r['exact_matvecs']):.0f}"
          f" HVPs each on average, {sum(r['unconverged'] for r in results)} unconverged)")
    print(f"  bare float32 GD loop, {len(runs)} x {args.steps} steps: {bare_wall:.2f} s wall, "
          f"{bare_cpu:.2f} s CPU; overhead = time of all the solver's measurements / bare time")
    head = (f"  {'solver':13} {'HVPs mean':>9} {'max':>4} {'max rel err':>11} {'> 1e-3':>6} "
            f"{'wall s':>7} {'cpu s':>7} {'ovh wall':>8} {'ovh cpu':>8}")
    print(head)
    print("  " + "-" * (len(head) - 2))
    for name in SOLVERS:
        counted = [r["records"][name, exact_dtype] for r in results]
        timed = [r["records"][name, time_dtype] for r in results]
        matvecs = [n for rec in counted for n in rec.matvecs]
        err = relative_errors([v for rec in counted for v in rec.values], exact)
        wall, cpu = sum(rec.wall for rec in timed), sum(rec.cpu for rec in timed)
        print(f"  {name:13} {statistics.mean(matvecs):9.1f} {max(matvecs):4d} {err.max():11.1e} "
              f"{int((err > TOL).sum()):6d} {wall:7.2f} {cpu:7.2f} {wall / bare_wall:8.0%} "
              f"{cpu / bare_cpu:8.0%}")

    print("\n  per step size: HVPs mean / measurements with error > 1e-3")
    print(f"  {'solver':13} " + " ".join(f"{'eta=' + format(lr, 'g'):>12}" for lr in args.lrs))
    for name in SOLVERS:
        cells = []
        for r in results:
            rec = r["records"][name, exact_dtype]
            misses = int((relative_errors(rec.values, r["exact"]) > TOL).sum())
            cells.append(f"{statistics.mean(rec.matvecs):7.1f} / {misses:2d}")
        print(f"  {name:13} " + " ".join(f"{c:>12}" for c in cells))

    print(f"\n  tracker ({_name(exact_dtype)}): measurements by HVP count")
    tracked = [res for r in results for res in r["tracker"][exact_dtype].results]
    counts = Counter(res.n_matvec for res in tracked)
    scale = max(1.0, max(counts.values()) / 50)
    for value in sorted(counts):
        print(f"    {value:4d} {counts[value]:4d} {'#' * max(1, round(counts[value] / scale))}")
    for dtype in dtypes:
        methods: Counter = Counter()
        certified = 0
        for r in results:
            tracker = r["tracker"][dtype]
            for i, (res, direct) in enumerate(zip(tracker.results, tracker.direct)):
                methods["cold start" if i == 0 else "direct" if direct else
                        "fallback" if res.method == "lanczos" else res.method] += 1
                certified += res.certified
        batched = ", ".join(str(r["tracker"][dtype].callback.batched) for r in results)
        print(f"  tracker ({_name(dtype)}): "
              + ", ".join(f"{methods[m]} {m}" for m in
                          ("tracked", "expanded", "fallback", "direct", "audit",
                           "cold start"))
              + f"; {certified} of {sum(methods.values())} certified; batched products "
              f"chosen (per eta): {batched}")

    for name in ("tracker", "warm lanczos"):
        misses = []
        for run, r in zip(runs, results):
            rec = r["records"][name, exact_dtype]
            for i in np.flatnonzero(relative_errors(rec.values, r["exact"]) > TOL):
                tracker = r["tracker"][exact_dtype]
                method = "direct" if tracker.direct[i] else tracker.results[i].method
                how = (f"{method}, {rec.matvecs[i]} HVPs" if name == "tracker"
                       else f"{rec.matvecs[i]} HVPs")
                misses.append(f"eta={run.lr:g} step {r['steps'][i]}: {rec.values[i]:.4f} vs "
                              f"{r['exact'][i]:.4f} ({how})")
        print(f"  {name} errors > {TOL:g} ({_name(exact_dtype)}): "
              + ("; ".join(misses) if misses else "none"))

    print("\n  edge_of_stability verdicts on each sharpness series (outcome, crossing step, "
          "fraction of the window within the band)")
    for run, r in zip(runs, results):
        ref = verdict(run, r["steps"], r["exact"])
        print(f"    eta={run.lr:<5g} reference        {describe(ref)}")
        print(f"    {'':9} {'':16} {ref.reason}")
        for dtype in dtypes:
            rec = r["records"]["tracker", dtype]
            v = verdict(run, r["steps"], rec.values, rec.certified)
            agree = "agrees" if v.outcome == ref.outcome else "DISAGREES"
            print(f"    {'':9} tracker {_name(dtype):8} {describe(v)}: {agree}")
        others = []
        for name in SOLVERS[1:]:
            for dtype in dtypes:
                rec = r["records"][name, dtype]
                v = verdict(run, r["steps"], rec.values, rec.certified)
                if v.outcome != ref.outcome or v.crossing_step != ref.crossing_step:
                    others.append(f"{name} {_name(dtype)}: {describe(v)}")
        print(f"    {'':9} other solvers: " + ("; ".join(others) if others else
                                                "same outcome and crossing step"))
    print(f"\n  total benchmark time {total.wall:.0f} s wall, {total.cpu:.0f} s CPU")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--every", type=int, default=25)
    parser.add_argument("--lrs", type=float, nargs="+", default=[0.1, 0.15, 0.2, 0.3])
    parser.add_argument("--dtype", choices=list(DTYPES), default="float32",
                        help="the solvers' dtype (see the module docstring)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    report(args)


if __name__ == "__main__":
    main()
