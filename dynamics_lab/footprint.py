"""Memory a run will hold, estimated before anything is allocated, and refused when it exceeds
the machine (physical RAM, or the GPU's memory) unless forced.

Parts: the task's tensors (a task says so with `data_bytes()`), parameters with their gradients
and optimizer state, and the activations of one training step or evaluation chunk, counted from
the meta-device forward that checks the task/model pairing (no memory is touched). An estimate,
not a bound: it catches a width or a modulus off by orders of magnitude, not a tight fit.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from dynamics_lab.schema import ConfigError

GIB = 2**30
OPTIMIZER_TENSORS = {"adamw": 2, "adam": 2, "sgd": 1, "gd": 0}  # state tensors per parameter


def machine_memory(device: str) -> int:
    """Bytes a run on `device` may use: the first GPU's memory where CUDA trains it, else RAM."""
    import torch

    if device in ("auto", "cuda") and torch.cuda.is_available():
        return int(torch.cuda.get_device_properties(0).total_memory)
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def gib(n: float) -> str:
    value = n / GIB
    return f"{value:.1f} GiB" if value < 1e6 else f"{value:.2g} GiB"


def refuse_beyond_machine(what: str, parts: dict[str, float], device: str, force: bool) -> None:
    """A one-line ConfigError when the parts add up to more than the machine has."""
    total, limit = sum(parts.values()), machine_memory(device)
    if force or total <= limit:
        return
    detail = ", ".join(f"{name} {gib(size)}" for name, size in parts.items() if size)
    raise ConfigError(f"{what} needs about {gib(total)} of memory ({detail}); this machine has "
                      f"{gib(limit)}: make it smaller, or pass --force to run it anyway")


def check_data(config, task, force: bool = False) -> None:
    """Refuse a task whose tensors alone exceed the machine (before they are built)."""
    size = task.data_bytes() if hasattr(task, "data_bytes") else 0
    refuse_beyond_machine(f"task.name={config.task.name}", {"data": size},
                          config.trainer.device, force)


@contextlib.contextmanager
def counting_activations(model) -> Iterator[list[int]]:
    """Sums the elements every leaf module outputs during the forwards inside the block."""
    import torch

    total = [0]

    def hook(module, inputs, output) -> None:
        outputs = output if isinstance(output, (tuple, list)) else (output,)
        total[0] += sum(o.numel() for o in outputs if isinstance(o, torch.Tensor))

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if not any(True for _ in m.children())]
    try:
        yield total
    finally:
        for handle in handles:
            handle.remove()


def dry_forward(config, spec, shape: tuple[int, ...]):
    """(model, outputs, activations per example) of the config's model on zero inputs of
    `shape`, built on the meta device (no memory), or on the CPU when its constructor needs
    real values, with a forked RNG so the run's own seeding is untouched."""
    import torch

    from dynamics_lab.registry import MODELS

    def forward(device: str):
        with torch.random.fork_rng(devices=[]), torch.no_grad(), torch.device(device):
            x = (torch.zeros(shape, dtype=torch.long) if spec.n_tokens
                 else torch.zeros(shape, dtype=torch.get_default_dtype()))
            model = MODELS.build(config.model, spec)
            with counting_activations(model) as activations:
                return model, model(x), activations[0] / shape[0]

    try:
        return forward("meta")
    except Exception:  # e.g. an init that reads values (.item()): try with real tensors
        return forward("cpu")


def run_parts(config, task, model, activations_per_example: float) -> dict[str, float]:
    """Bytes by part: parameters + gradients + optimizer state, activations, data.
    Activations count a training step of `batch_size` examples (the whole training split when
    the task says how many), twice for backward, or one evaluation chunk."""
    t, optim = config.trainer, config.optim
    element = 8 if t.dtype == "float64" else 4
    n_params = sum(p.numel() for p in model.parameters()) + sum(b.numel() for b in model.buffers())
    states = OPTIMIZER_TENSORS[optim.name] if optim.name != "sgd" or optim.momentum else 0
    train_examples = getattr(task, "train_examples", lambda: None)()
    per_step = t.batch_size or train_examples or 0
    per_eval = min(t.eval_chunk, train_examples) if train_examples else per_step
    parts = {"parameters, gradients and optimizer state": n_params * element * (2 + states),
             "activations": activations_per_example * element * max(2 * per_step, per_eval),
             "data": task.data_bytes() if hasattr(task, "data_bytes") else 0}
    return parts


def member_bytes(config) -> float:
    """Memory one more ensemble member adds: its parameters, gradients, optimizer state and
    activations (the data is shared by all members)."""
    from dynamics_lab.registry import TASKS

    task = TASKS.build(config.task, batch_size=config.trainer.batch_size, seed=config.seed)
    model, _, per_example = dry_forward(config, task.spec, (2, *task.spec.input_shape))
    parts = run_parts(config, task, model, per_example)
    return parts["parameters, gradients and optimizer state"] + parts["activations"]


def check_model(config, task, model, activations_per_example: float, force: bool = False) -> None:
    """Refuse a run whose `run_parts` add up to more than the machine has."""
    t = config.trainer
    parts = run_parts(config, task, model, activations_per_example)
    refuse_beyond_machine(f"model.name={config.model.name} on task.name={config.task.name}",
                          parts, t.device, force)
