"""Associative memory: logits u_y^T W e_x with fixed random unit embeddings and a trained d x d W.

Beside the trained memory live the closed-form outer-product memories of Cabannes, Dohmatob and
Bietti (2023), W = sum_x q(x) u_{f(x)} e_x^T, with the storage weight q computed from the sample
counts n(x) of T samples:
  frequency: q(x) = n(x) / T      (the empirical distribution)
  seen:      q(x) = 1[n(x) > 0]   (every seen token stored once)
  top_k:     q(x) = 1 for the k = ceil(capacity * d) most frequent seen tokens, else 0.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field
from torch import nn

from dynamics_lab.registry import MODELS
from dynamics_lab.schema import NamedSection
from dynamics_lab.tasks.base import TaskSpec

SCHEMES = ("frequency", "seen", "top_k")
Scheme = Literal["frequency", "seen", "top_k"]


def random_embeddings(n: int, dim: int, generator: torch.Generator | None = None,
                      dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """n vectors uniform on the unit sphere of R^dim, one per row."""
    e = torch.randn(n, dim, generator=generator, dtype=torch.float64)
    return (e / e.norm(dim=1, keepdim=True)).to(dtype)


def storage_weights(counts: torch.Tensor, scheme: str, dim: int,
                    capacity: float = 1.0) -> torch.Tensor:
    """q(x) of a closed-form memory from per-token sample counts (see the module docstring)."""
    counts = counts.double()
    if scheme == "frequency":
        return counts / counts.sum().clamp_min(1.0)
    seen = (counts > 0).double()
    if scheme == "seen":
        return seen
    if scheme == "top_k":
        k = min(math.ceil(capacity * dim), len(counts))
        # Stable sort: ties in count go to the lower token id, so the choice is deterministic.
        keep = torch.sort(-counts, stable=True).indices[:k]
        q = torch.zeros_like(counts)
        q[keep] = seen[keep]
        return q
    raise ValueError(f"unknown storage scheme '{scheme}'; valid: {', '.join(SCHEMES)}")


def outer_product_memory(inputs: torch.Tensor, outputs: torch.Tensor, targets: torch.Tensor,
                         q: torch.Tensor) -> torch.Tensor:
    """W = sum_x q(x) u_{f(x)} e_x^T from input embeddings (N x d), output embeddings (M x d)."""
    return outputs[targets].T.double() @ (q.double().unsqueeze(1) * inputs.double())


def memory_predictions(W: torch.Tensor, inputs: torch.Tensor, outputs: torch.Tensor,
                       chunk: int = 8192) -> torch.Tensor:
    """argmax_y u_y^T W e_x for every row e_x of `inputs`, in chunks to bound memory."""
    W, outputs = W.to(inputs.dtype), outputs.to(inputs.dtype)
    preds = [((inputs[i:i + chunk] @ W.T) @ outputs.T).argmax(dim=1)
             for i in range(0, len(inputs), chunk)]
    return torch.cat(preds)


class AssociativeMemoryConfig(NamedSection):
    dim: int = Field(64, ge=1)  # d: embedding dimension; W is d x d
    init_scale: float = Field(0.0, ge=0)  # W entries N(0, init_scale^2 / d); 0 starts at W = 0


@MODELS.register("associative_memory")
class AssociativeMemory(nn.Module):
    """Token x -> logits (u_y^T W e_x)_y; only W is a parameter, the embeddings are buffers."""

    Config = AssociativeMemoryConfig

    def __init__(self, config: AssociativeMemoryConfig, spec: TaskSpec):
        super().__init__()
        if spec.n_tokens is None or tuple(spec.input_shape) != (1,):
            raise ValueError("associative_memory needs single-token inputs (input_shape (1,))")
        self.config = config
        d = config.dim
        # Drawn from the global RNG, which the runner seeds with the run's seed.
        self.register_buffer("input_embeddings", random_embeddings(spec.n_tokens, d))
        self.register_buffer("output_embeddings", random_embeddings(spec.n_outputs, d))
        self.W = nn.Parameter(torch.randn(d, d) * (config.init_scale / d ** 0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = self.input_embeddings[x.reshape(len(x), -1)[:, 0]]
        return (e @ self.W.T) @ self.output_embeddings.T
