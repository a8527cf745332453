"""Sweep throughput on the quick grokking config: N seeds as one `--ensemble N` job vs N
sequential runs, and `--workers 2` vs `--workers 1`.

Every variant goes through the local launcher (one worker process per job, one torch thread
each), so wall times include process start-up as a user sees it. Also printed: the largest
difference in final accuracies between the ensemble members and their separate runs.

    python benchmarks/sweep.py [--steps 300] [--seeds 16] [--device cpu|cuda|auto]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from dynamics_lab.config import load_experiment
from dynamics_lab.sweep import expand, prepare_sweep
from dynamics_lab.sweep.jobs import group_jobs
from dynamics_lab.sweep.local import launch_local
from dynamics_lab.tracking.metrics import read_metrics
from dynamics_lab.tracking.rundir import Status


def timed(config, root: Path, name: str, workers: int, ensemble: int) -> tuple[float, list[Path]]:
    dirs = prepare_sweep(config, expand(config), root / name)
    start = time.perf_counter()
    statuses = launch_local(group_jobs(dirs, ensemble), workers, gpus=[])
    wall = time.perf_counter() - start
    bad = {p.name: s for p, s in statuses.items() if s != Status.COMPLETED}
    if bad:
        raise SystemExit(f"{name}: runs did not complete: {bad} (see their stdout.log)")
    return wall, dirs


def final_accuracy_gap(a: list[Path], b: list[Path]) -> float:
    gaps = []
    for x, y in zip(a, b):
        fx, fy = read_metrics(x).iloc[-1], read_metrics(y).iloc[-1]
        gaps += [abs(fx[c] - fy[c]) for c in ("train/acc", "val/acc")]
    return max(gaps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seeds", type=int, default=16)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    args = parser.parse_args()
    os.environ.setdefault("WANDB_MODE", "disabled")
    config = load_experiment("grokking", "quick", [
        f"trainer.max_steps={args.steps}", f"trainer.device={args.device}", "measure={}",
        "logging.wandb=false", "sweep.grid={}", f"sweep.seeds={list(range(args.seeds))}"])
    t = config.trainer
    print(f"quick grokking (p={config.task.p}, MLP width {config.model.width}, full batch), "
          f"{args.seeds} seeds x {t.max_steps} steps, eval every {t.eval_every}, "
          f"device {args.device}, {os.cpu_count()} CPU core(s)")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        sequential, separate = timed(config, root, "sequential", 1, 1)
        print(f"  {args.seeds} sequential runs (--workers 1):      {sequential:7.1f} s")
        two, _ = timed(config, root, "two-workers", 2, 1)
        print(f"  {args.seeds} runs, --workers 2:                  {two:7.1f} s")
        ensemble, members = timed(config, root, "ensemble", 1, args.seeds)
        print(f"  one --ensemble {args.seeds} job:                   {ensemble:7.1f} s")
        gap = final_accuracy_gap(separate, members)
    print(f"ensemble speed-up (sequential / ensemble):   {sequential / ensemble:5.2f}x")
    print(f"workers speed-up (--workers 1 / --workers 2): {sequential / two:5.2f}x")
    print(f"max |final accuracy, ensemble member - separate run|: {gap:.2g}")


if __name__ == "__main__":
    main()
