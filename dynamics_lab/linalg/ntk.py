"""Empirical neural tangent kernels via torch.func, and kernel-kernel / kernel-target comparisons.

Kernels are taken over the trainable parameters at their current values; nothing here touches
`.grad`, the parameters or train/eval mode. Per-example Jacobians are formed one chunk of
examples at a time, so memory is bounded by a chunk pair rather than by the probe set. The
traced kernel sum_o J_o J_o^T is also streamed over groups of outputs: with few outputs held at
once, far more examples fit in a chunk, so each Jacobian row is computed once and the Gram
products are large matmuls instead of many memory-bound small ones.
Models whose forward mixes examples (BatchNorm in train mode) are not supported; dropout in
train mode makes the kernel random, so callers wanting a deterministic kernel use eval mode.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, jacrev, vmap

from dynamics_lab.linalg.ntk_estimators import (
    example_chunks,
    frobenius_norm_estimate,
    label_projection_norm,
    matrix_free_alignment,
    matrix_free_alignments,
    trainable_params,
)

__all__ = [
    "empirical_ntk",
    "frobenius_norm_estimate",
    "kernel_alignment",
    "kernel_distance",
    "label_projection_norm",
    "matrix_free_alignment",
    "matrix_free_alignments",
]

OUTPUTS = ("scalar", "trace", "full")
# Bytes of per-example Jacobians one chunk may hold when chunk_size is None (256 MiB).
JACOBIAN_CHUNK_BYTES = 2**28


def _output_fn(
    model: nn.Module, output: str, direction: Tensor | None, with_labels: bool, group: slice
):
    """Per-example function of (params, x_i[, y_i]) whose Jacobian rows enter the kernel."""

    def outputs(p, xi):
        return functional_call(model, p, (xi.unsqueeze(0),)).reshape(-1)

    if output != "scalar":
        return lambda p, xi: outputs(p, xi)[group]
    if with_labels:
        # gather, not indexing: vmap cannot index with a batched 0-d tensor.
        return lambda p, xi, yi: outputs(p, xi).gather(0, yi.reshape(1)).squeeze(0)
    if direction is not None:
        return lambda p, xi: outputs(p, xi) @ direction
    return lambda p, xi: outputs(p, xi).sum()


def _jacobians(fn, params, output: str, x: Tensor, labels: Tensor | None) -> dict[str, Tensor]:
    """Per-example Jacobians of a chunk as {name: (chunk, O', P_name)}, O' = 1 if scalar."""
    transform = grad if output == "scalar" else jacrev
    args, in_dims = (
        ((params, x), (None, 0)) if labels is None else ((params, x, labels), (None, 0, 0))
    )
    # "different" mirrors a batched forward (a dropout mask per example) instead of erroring.
    jac = vmap(transform(fn), in_dims=in_dims, randomness="different")(*args)
    rows = 1 if output == "scalar" else -1
    return {name: j.reshape(x.shape[0], rows, params[name].numel()) for name, j in jac.items()}


def _kernel_block(ja: dict[str, Tensor], jb: dict[str, Tensor], full: bool) -> Tensor:
    """Kernel block between two chunks as (ca, O_k, cb, O_k), O_k = O for full kernels else 1."""
    if full:
        return sum(torch.einsum("aop,bqp->aobq", ja[k], jb[k]) for k in ja)
    return sum(torch.einsum("aop,bop->ab", ja[k], jb[k]) for k in ja)[:, None, :, None]


def _checked_direction(direction: Tensor | None, out_dim: int, ref: Tensor) -> Tensor | None:
    """The projection direction on the parameters' device and dtype, checked against O."""
    if direction is None:
        if out_dim != 1:
            raise ValueError(
                f"output='scalar' on a model with {out_dim} outputs needs direction= or labels="
            )
        return None
    direction = direction.detach().to(device=ref.device, dtype=ref.dtype).reshape(-1)
    if direction.numel() != out_dim:
        raise ValueError(
            f"direction has {direction.numel()} entries; the model has {out_dim} outputs"
        )
    return direction


def _chunk_sizes(
    output: str, out_dim: int, params: dict[str, Tensor], n_max: int, chunk_size: int | None
) -> tuple[int, int]:
    """(examples per chunk, outputs per group) so one chunk's Jacobians stay near the budget."""
    ref = next(iter(params.values()))
    row_bytes = sum(p.numel() for p in params.values()) * ref.element_size()
    budget_rows = max(1, JACOBIAN_CHUNK_BYTES // row_bytes)
    if chunk_size is None:
        # A full kernel needs every output of an example at once; the others need one at a time.
        rows_per_example = out_dim if output == "full" else 1
        chunk_size = max(1, min(n_max, budget_rows // rows_per_example))
    if output != "trace":
        return chunk_size, out_dim
    return chunk_size, max(1, min(out_dim, budget_rows // chunk_size))


def _rows(t: Tensor | None, sl: slice) -> Tensor | None:
    """Slice of an optional per-example tensor."""
    return None if t is None else t[sl]


def empirical_ntk(
    model: nn.Module,
    x: Tensor,
    output: str = "trace",
    *,
    direction: Tensor | None = None,
    labels: Tensor | None = None,
    x2: Tensor | None = None,
    labels2: Tensor | None = None,
    chunk_size: int | None = None,
    params: dict[str, Tensor] | None = None,
) -> Tensor:
    """Empirical NTK: "scalar"/"trace" give n1 x n2, "full" gives (n1*O) x (n2*O) example-major.

    "scalar" projects each example's flattened output on `direction` (length O), or takes the
    entry `labels[i]` (the correct-class logit); a single-output model needs neither. `x2` (with
    `labels2` for labels) gives the cross kernel K(x, x2). `chunk_size` is examples per Jacobian
    chunk; by default it and the output grouping keep a chunk's Jacobians near
    JACOBIAN_CHUNK_BYTES. `params` overrides the model's trainable parameters by name.
    """
    if output not in OUTPUTS:
        raise ValueError(f"output={output!r}; choose one of {', '.join(OUTPUTS)}")
    if output != "scalar" and (direction is not None or labels is not None):
        raise ValueError(f"direction= and labels= apply to output='scalar' only, not {output!r}")
    if x2 is not None and labels is not None and labels2 is None:
        raise ValueError("a cross kernel of correct-class logits needs labels2 for x2")
    params = trainable_params(model, params)
    ref = next(iter(params.values()))
    with torch.no_grad():
        out_dim = functional_call(model, params, (x[:1],)).numel()
    if output == "scalar" and labels is None:
        direction = _checked_direction(direction, out_dim, ref)
    full = output == "full"
    k_dim = out_dim if full else 1
    symmetric = x2 is None
    xb, lb = (x, labels) if symmetric else (x2, labels2)
    chunk_size, group_size = _chunk_sizes(output, out_dim, params, max(len(x), len(xb)), chunk_size)
    rows = example_chunks(x.shape[0], chunk_size)
    cols = rows if symmetric else example_chunks(xb.shape[0], chunk_size)
    kernel = torch.zeros(x.shape[0], k_dim, xb.shape[0], k_dim, dtype=ref.dtype, device=ref.device)
    for group in example_chunks(out_dim, group_size):
        fn = _output_fn(model, output, direction, labels is not None, group)
        for i, ra in enumerate(rows):
            ja = _jacobians(fn, params, output, x[ra], _rows(labels, ra))
            for j, cb in enumerate(cols):
                if symmetric and j < i:
                    continue  # filled from the transposed block
                diagonal = symmetric and j == i
                jb = ja if diagonal else _jacobians(fn, params, output, xb[cb], _rows(lb, cb))
                block = _kernel_block(ja, jb, full)
                kernel[ra, :, cb, :] += block
                if symmetric and j > i:
                    kernel[cb, :, ra, :] += block.permute(2, 3, 0, 1)
    return kernel.reshape(x.shape[0] * k_dim, xb.shape[0] * k_dim)


def _double_center(K4: Tensor) -> Tensor:
    """(H (x) I) K (H (x) I) for a kernel viewed as (n, O, n, O): center over both example axes."""
    K4 = K4 - K4.mean(0, keepdim=True)
    return K4 - K4.mean(2, keepdim=True)


def kernel_alignment(K: Tensor, Y: Tensor, centered: bool = True) -> Tensor:
    """<HKH, HYY^TH>_F / (||HKH||_F ||HYY^TH||_F): how much of K lies along the target kernel.

    K is n x n with Y of shape (n,) or (n, c) (target YY^T), or a full (n*O) x (n*O) example-major
    kernel with Y of shape (n, O) (target vec(Y) vec(Y)^T, centering across examples per output,
    the quantity `matrix_free_alignment` estimates).
    """
    Y = Y.detach().to(K.dtype).reshape(Y.shape[0], -1)
    n, c = Y.shape
    if K.shape[0] not in (n, n * c):
        raise ValueError(
            f"kernel of shape {tuple(K.shape)} fits neither {n} examples nor {n * c} outputs"
        )
    o = K.shape[0] // n
    K4 = K.reshape(n, o, n, o)
    if centered:
        K4 = _double_center(K4)
        Y = Y - Y.mean(0, keepdim=True)
    Kc = K4.reshape(K.shape)
    Yt = Y if o == 1 else Y.reshape(n * o, 1)
    # <K, Y Y^T> = tr(Y^T K Y) and ||Y Y^T||_F = ||Y^T Y||_F avoid forming the target kernel.
    numerator = (Yt * (Kc @ Yt)).sum()
    return numerator / (torch.linalg.matrix_norm(Kc) * torch.linalg.matrix_norm(Yt.T @ Yt))


def kernel_distance(K1: Tensor, K2: Tensor) -> Tensor:
    """1 - <K1, K2>_F / (||K1||_F ||K2||_F): 0 for kernels equal up to scale, 1 for orthogonal."""
    return 1 - (K1 * K2).sum() / (torch.linalg.matrix_norm(K1) * torch.linalg.matrix_norm(K2))
