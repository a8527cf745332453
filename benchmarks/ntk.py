"""NTK measurement cost, printed side by side in one process (one thread).

1. The p=97 modular MLP of experiments/grokking.yaml (quick) on 256 probe points: the
   alignment by the matrix-free estimator (what `measure.ntk.matrix_free: true` runs) vs
   building the output-traced kernel (the default). With 97 outputs the two are different
   quantities: the traced kernel's alignment with one-hot YY^T (`ntk/alignment`), and the full
   (example, output) kernel's alignment with vec(Y)vec(Y)^T (`ntk/alignment_full_est`); both
   are printed, each beside its shuffled-label baseline (the same labels permuted), which with
   97 classes shows how much of the alignment the kernel's diagonal alone earns.
2. The quick lazy_rich run with and without its measurement callbacks (target: <= 25% overhead).

Usage: python benchmarks/ntk.py [--steps N] [--skip-kernel] [--skip-overhead]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("WANDB_MODE", "disabled")

import torch

from dynamics_lab.config import load_experiment
from dynamics_lab.linalg.ntk import (
    empirical_ntk,
    kernel_alignment,
    matrix_free_alignments,
)
from dynamics_lab.measure.ntk import kernel_targets, shuffled
from dynamics_lab.registry import MODELS, TASKS


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def kernel_paths(probe_size: int = 256, n_probes: int = 16) -> None:
    config = load_experiment("grokking", "quick")
    task = TASKS.get(config.task.name)(config.task)
    task.setup()
    torch.manual_seed(config.seed)
    model = MODELS.get(config.model.name)(config.model, task.spec).eval()
    x, y = task.probe_batch(probe_size)
    targets = kernel_targets(y, task.spec.n_outputs)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"[1] {config.model.name} on (a+b) mod {config.task.p}: {n_params} parameters, "
          f"{task.spec.n_outputs} outputs, {len(x)} probe points")
    generator = torch.Generator().manual_seed(0)
    both = [targets, shuffled(targets, 0)]
    ((free, stderr), (free_shuffled, _)), t_free = timed(lambda: matrix_free_alignments(
        model, x, [t.float() for t in both], n_probes=n_probes, generator=generator))
    kernel, t_traced = timed(lambda: empirical_ntk(model, x, "trace"))
    traced, traced_shuffled = (float(kernel_alignment(kernel, t)) for t in both)
    print(f"    traced kernel + alignment : {t_traced:8.2f} s   ntk/alignment {traced:.4f} "
          f"(shuffled labels {traced_shuffled:.4f})")
    print(f"    matrix-free ({n_probes:>2} probes)  : {t_free:8.2f} s   ntk/alignment_full_est "
          f"{float(free):.4f} +- {float(stderr):.4f} (shuffled labels {float(free_shuffled):.4f})")
    print(f"    speed-up of the matrix-free path: {t_traced / t_free:.1f}x")


def run_quick(measure: bool, steps: int | None, root: Path) -> tuple[float, float]:
    from dynamics_lab.tracking.rundir import RunDir
    from dynamics_lab.train.runner import execute

    overrides = [] if measure else ["measure.ntk=null", "measure.features=null"]
    if steps:
        overrides.append(f"trainer.max_steps={steps}")
    config = load_experiment("lazy_rich", "quick", overrides)
    run = RunDir.create(root / ("measured" if measure else "bare"), config.to_dict(), config.seed)
    wall, cpu = time.perf_counter(), time.process_time()
    result = execute(run, echo=lambda *a: None)
    assert result.status == "completed", result.error
    return time.perf_counter() - wall, time.process_time() - cpu


def callback_overhead(steps: int | None) -> None:
    config = load_experiment("lazy_rich", "quick")
    every = {k: v.every for k, v in config.measure.items()}
    print(f"[2] quick lazy_rich run ({steps or config.trainer.max_steps} steps, "
          f"measurements every {every} steps)")
    with tempfile.TemporaryDirectory() as tmp:
        run_quick(False, 50, Path(tmp) / "warmup")  # imports and first-call costs
        bare = run_quick(False, steps, Path(tmp))
        measured = run_quick(True, steps, Path(tmp))
    for label, (wall, cpu) in (("without callbacks", bare), ("with callbacks", measured)):
        print(f"    {label:18s}: wall {wall:7.1f} s   cpu {cpu:7.1f} s")
    print(f"    overhead: wall {100 * (measured[0] / bare[0] - 1):+.1f}%   "
          f"cpu {100 * (measured[1] / bare[1] - 1):+.1f}%   (target <= +25%)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=None, help="shorten the lazy_rich run")
    parser.add_argument("--skip-kernel", action="store_true")
    parser.add_argument("--skip-overhead", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if not args.skip_kernel:
        kernel_paths()
    if not args.skip_overhead:
        callback_overhead(args.steps)


if __name__ == "__main__":
    main()
