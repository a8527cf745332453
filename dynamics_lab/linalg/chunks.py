"""The batch loss as one fixed function of the parameters: chunks whose weighted losses add up
to it, and random layers held to fixed masks.

Chunking is exact because a chunk's loss is a mean over its examples; a layer that normalizes
with batch statistics (BatchNorm in train mode) breaks that, so chunking such a model is refused.
Random layers (dropout, noise) draw new masks at every forward; `fixed_rng` seeds the global RNG
for the duration of one forward (and restores it), so every evaluation sees the same masks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor, nn


def weighted_chunks(batch, chunk_size: int | None) -> list[tuple[float, Tensor, Tensor]]:
    """(weight, x, y) chunks whose weighted mean losses add up to the full-batch mean loss."""
    x, y = batch
    n = x.shape[0]
    if chunk_size is None or chunk_size >= n:
        return [(1.0, x, y)]
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size}")
    return [(xc.shape[0] / n, xc, yc) for xc, yc in zip(x.split(chunk_size), y.split(chunk_size))]


def batch_statistics_layers(model: nn.Module) -> list[str]:
    """Paths of the layers whose output on an example depends on the rest of the batch."""
    return [
        name or type(m).__name__
        for name, m in model.named_modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm)
        and (m.training or m.running_mean is None)
    ]


def check_chunking(model: nn.Module, chunks: list) -> None:
    """Refuse several chunks of a model whose layers mix the examples of a batch."""
    layers = batch_statistics_layers(model) if len(chunks) > 1 else []
    if layers:
        raise ValueError(
            f"chunk_size splits the batch, but {', '.join(layers)} normalize(s) with batch "
            "statistics (BatchNorm in train mode): the chunk losses would not add up to the "
            "batch loss; use chunk_size=None or put the model in eval mode"
        )


@contextlib.contextmanager
def fixed_rng(seed: int | None, device: torch.device) -> Iterator[None]:
    """Random layers draw the same masks inside every time: the global RNG of `device` is
    forked, seeded to `seed` and restored afterwards (a no-op for seed=None)."""
    if seed is None:
        yield
        return
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] if (
        device.type == "cuda") else []
    with torch.random.fork_rng(devices=cuda):
        torch.default_generator.manual_seed(seed)
        if cuda:
            with torch.cuda.device(cuda[0]):
                torch.cuda.manual_seed(seed)
        yield
