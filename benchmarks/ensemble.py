"""Sweeps with their measurements: single runs against vectorized ensembles, side by side.

- eos: the edge-of-stability quick sweep (4 step sizes x 4 seeds, sharpness measured on the
  shipped schedule) as 16 single runs on 2 workers (one torch thread each) against one
  `--ensemble auto` process at 2 threads; the members' Lanczos runs meet in lockstep rounds.
- grokking: the grokking quick sweep (weight decay x train fraction x seeds) the same way; the
  train fraction changes the data, so auto packs one process per fraction.
- scaling: the quick grokking MLP as one ensemble of K members, K = 1, 16, 64, 256: wall time
  per member (on a GPU: how many runs one device carries).

Each line says what ran; the verdicts of members and single runs are compared (at large step
sizes EoS is chaotic: rounding, vmapped or not, moves the trajectory, not the verdict).

    python benchmarks/ensemble.py [eos] [grokking] [scaling] [--steps N] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from dynamics_lab.config import load_experiment
from dynamics_lab.sweep import expand, prepare_sweep
from dynamics_lab.sweep.jobs import group_jobs
from dynamics_lab.sweep.local import launch_local
from dynamics_lab.tracking.rundir import Status


def timed(config, root: Path, name: str, workers: int, ensemble, threads: int):
    dirs = prepare_sweep(config, expand(config), root / name)
    os.environ["DYNLAB_THREADS"] = str(threads)
    jobs = group_jobs(dirs, ensemble)
    start = time.perf_counter()
    statuses = launch_local(jobs, workers, gpus=[])
    wall = time.perf_counter() - start
    bad = {p.name: s for p, s in statuses.items() if s != Status.COMPLETED}
    if bad:
        raise SystemExit(f"{name}: runs did not complete: {bad} (see their stdout.log)")
    return wall, dirs, len(jobs)


def verdicts(dirs: list[Path]) -> list[str]:
    return [json.loads((d / "verdict.json").read_text()).get("outcome", "?") for d in dirs]


def compare(label: str, config, root: Path) -> None:
    n = len(expand(config))
    single, a, _ = timed(config, root, f"{label}-single", 2, 1, 1)
    print(f"  {n} single runs, 2 workers x 1 thread:     {single:7.1f} s", flush=True)
    packed, b, jobs = timed(config, root, f"{label}-ensemble", 1, "auto", 2)
    print(f"  --ensemble auto ({jobs} process(es), 2 threads): {packed:7.1f} s", flush=True)
    same = sum(x == y for x, y in zip(verdicts(a), verdicts(b)))
    print(f"  {label}: ensemble speed-up {single / packed:.2f}x; verdicts equal in {same}/{n}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("which", nargs="*", default=["eos", "grokking"],
                        choices=["eos", "grokking", "scaling"])
    parser.add_argument("--steps", type=int, default=None, help="override trainer.max_steps")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    parser.add_argument("--members", default="1,16,64,256", help="K values for `scaling`")
    args = parser.parse_args()
    os.environ.setdefault("WANDB_MODE", "disabled")
    common = ["logging.wandb=false", f"trainer.device={args.device}",
              *([f"trainer.max_steps={args.steps}"] if args.steps else [])]
    print(f"{os.cpu_count()} CPU core(s), device {args.device}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if "eos" in args.which:
            config = load_experiment("edge_of_stability", "quick", common + [
                "sweep.grid={optim.lr: [0.1, 0.15, 0.2, 0.3]}", "sweep.seeds=[0, 1, 2, 3]"])
            print(f"edge_of_stability quick, {config.trainer.max_steps} steps, sharpness on "
                  "the shipped schedule:", flush=True)
            compare("eos", config, root)
        if "grokking" in args.which:
            config = load_experiment("grokking", "quick", common)
            print(f"grokking quick sweep, {config.trainer.max_steps} steps:", flush=True)
            compare("grokking", config, root)
        if "scaling" in args.which:
            base = None
            for k in [int(v) for v in args.members.split(",")]:
                config = load_experiment("grokking", "quick", common + [
                    "sweep.grid={}", f"sweep.seeds={list(range(k))}", "measure={}"])
                wall, _, jobs = timed(config, root, f"k{k}", 1, k, 1)
                base = base or wall
                print(f"  grokking MLP, {k:4d} members in {jobs} process: {wall:7.1f} s "
                      f"({wall / k:6.2f} s per member, {wall / base:5.2f}x one run)", flush=True)


if __name__ == "__main__":
    main()
