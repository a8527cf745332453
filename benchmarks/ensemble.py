"""Sweeps with their measurements: single runs against vectorized ensembles, side by side.

- eos: the edge-of-stability quick sweep (4 step sizes x 4 seeds, sharpness measured on the
  shipped schedule) two ways: 16 single runs on 2 workers (one torch thread each), and
  `--ensemble auto` on the same 2 workers (the groups cut so that both finish together,
  sweep/jobs.py). The members' Lanczos runs meet in lockstep rounds.
- grokking: the grokking quick sweep (weight decay x train fraction x seeds) the same way; the
  train fraction changes the data, so auto groups by fraction.
- bare: the grokking MLP's full-batch AdamW step in plain PyTorch, one model against a vmapped
  stack of K (K = 9, one grokking group), per member, at one thread: what vectorizing alone
  buys on this device, with no framework, start-up or measurement around it. On a CPU that
  is busy with one model per core, it is about 1x: the sweeps above can gain only the start-up
  and per-step overhead of the processes they save.
- scaling: the quick grokking MLP as one ensemble of K members, K = 1, 16, 64, 256: wall time
  per member (on a GPU: how many runs one device carries).

Each line says what ran; the verdicts of members and single runs are compared (at large step
sizes EoS is chaotic: rounding, vmapped or not, moves the trajectory, not the verdict).

    python benchmarks/ensemble.py [eos] [grokking] [scaling] [bare] [--steps N] [--device cpu|cuda]
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


def timed(config, root: Path, name: str, workers: int, ensemble):
    # Every worker slot runs one torch thread (sweep/local.py: slot_env), as `dynlab run` does.
    dirs = prepare_sweep(config, expand(config), root / name)
    jobs = group_jobs(dirs, ensemble, workers)
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
    single, a, _ = timed(config, root, f"{label}-single", 2, 1)
    print(f"  {n} single runs, 2 workers x 1 thread:   {single:7.1f} s", flush=True)
    packed, b, jobs = timed(config, root, f"{label}-ensemble", 2, "auto")
    same = sum(x == y for x, y in zip(verdicts(a), verdicts(b)))
    print(f"  --ensemble auto, {jobs} process(es), 2 workers x 1 thread: {packed:7.1f} s  "
          f"speed-up {single / packed:.2f}x, verdicts equal in {same}/{n}", flush=True)


def bare(members: int, steps: int = 20, rounds: int = 5) -> None:
    """Seconds per step per member: one grokking MLP against a vmapped stack (module doc).

    The two alternate for `rounds` rounds of `steps` steps and each keeps its fastest round, so
    a neighbour's burst of load or a slow first allocation does not decide the ratio."""
    import copy

    import torch
    import torch.nn.functional as F
    from torch.func import functional_call, stack_module_state, vmap

    from dynamics_lab.registry import MODELS, TASKS

    torch.set_num_threads(1)
    config = load_experiment("grokking", "quick")
    task = TASKS.build(config.task, seed=config.seed)
    x, y = task.build()["train"]
    models = [MODELS.build(config.model, task.spec) for _ in range(members)]
    one = models[0]
    stacked, _ = stack_module_state(models)
    names = list(stacked)
    leaves = [torch.nn.Parameter(t.detach()) for t in stacked.values()]
    skeleton = copy.deepcopy(one).to("meta")

    def ensemble_loss():
        out = vmap(lambda p: functional_call(skeleton, p, (x,)))(dict(zip(names, leaves)))
        return vmap(F.cross_entropy, in_dims=(0, None))(out, y).sum()

    def stepper(params, loss_of):
        opt = torch.optim.AdamW(params, lr=3e-3, betas=(0.9, 0.98), weight_decay=1.0)

        def run() -> float:
            start = time.perf_counter()
            for _ in range(steps):
                opt.zero_grad()
                loss_of().backward()
                opt.step()
            return (time.perf_counter() - start) / steps

        run()  # warm-up: allocations, the optimizer's state
        return run

    single = stepper(list(one.parameters()), lambda: F.cross_entropy(one(x), y))
    ensemble = stepper(leaves, ensemble_loss)
    best_single = best_ensemble = float("inf")
    for _ in range(rounds):
        best_single = min(best_single, single())
        best_ensemble = min(best_ensemble, ensemble() / members)
    print(f"  grokking MLP step ({len(x)} examples, full batch), 1 thread, best of {rounds} "
          f"rounds of {steps} steps: one model {best_single * 1e3:.2f} ms; vmapped K={members}: "
          f"{best_ensemble * 1e3:.2f} ms per member ({best_single / best_ensemble:.2f}x)",
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("which", nargs="*", default=["eos", "grokking"],
                        choices=["eos", "grokking", "scaling", "bare"])
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
        if "bare" in args.which:
            bare(9)
        if "scaling" in args.which:
            base = None
            for k in [int(v) for v in args.members.split(",")]:
                config = load_experiment("grokking", "quick", common + [
                    "sweep.grid={}", f"sweep.seeds={list(range(k))}", "measure={}"])
                wall, _, jobs = timed(config, root, f"k{k}", 1, k)
                base = base or wall
                print(f"  grokking MLP, {k:4d} members in {jobs} process: {wall:7.1f} s "
                      f"({wall / k:6.2f} s per member, {wall / base:5.2f}x one run)", flush=True)


if __name__ == "__main__":
    main()
