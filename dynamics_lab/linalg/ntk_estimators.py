"""Matrix-free NTK estimators for probe sets too large to form the kernel.

All quantities here refer to the *full* empirical NTK K = J J^T over the (example, output)
index (n*O x n*O, example-major), which is the n x n scalar kernel for single-output models.
Targets Y have the model's output shape (n, O) (or (n,) when O == 1); "centered" means
centering across examples, i.e. applying H (x) I_O with H = I - 11^T/n. With these
conventions `matrix_free_alignment` estimates exactly what
`kernel_alignment(empirical_ntk(model, x, "full"), Y)` computes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, jvp, vjp


def trainable_params(
    model: nn.Module, params: dict[str, Tensor] | None = None
) -> dict[str, Tensor]:
    """Detached trainable parameters by name, so torch.func never touches `.grad` or the model."""
    if params is None:
        params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    return {name: p.detach() for name, p in params.items()}


def example_chunks(n: int, chunk_size: int | None) -> list[slice]:
    """Consecutive example slices of at most `chunk_size` (all examples when None)."""
    step = max(1, n if chunk_size is None else int(chunk_size))
    return [slice(start, min(start + step, n)) for start in range(0, n, step)]


def _outputs(model: nn.Module, params: dict[str, Tensor], x: Tensor) -> Tensor:
    """Model outputs on a batch, flattened per example to (n, O)."""
    return functional_call(model, params, (x,)).reshape(x.shape[0], -1)


def _targets(Y: Tensor, n: int, dtype: torch.dtype, device: torch.device, centered: bool) -> Tensor:
    """Targets as an (n, O) float tensor, centered across examples when asked."""
    Y = Y.detach().to(device=device, dtype=dtype).reshape(n, -1)
    return Y - Y.mean(0, keepdim=True) if centered else Y


def _vjp(model, params, x, Z, chunk_size) -> dict[str, Tensor]:
    """J^T vec(Z) as a parameter dict: the gradient of sum_i <f(x_i), Z_i>, summed over chunks."""

    def projected(p, xs, zs):
        out = _outputs(model, p, xs)
        if out.shape != zs.shape:
            raise ValueError(
                f"targets of shape {tuple(zs.shape)} do not match outputs {tuple(out.shape)}"
            )
        return (out * zs).sum()

    total = None
    for sl in example_chunks(x.shape[0], chunk_size):
        g = grad(projected)(params, x[sl], Z[sl])
        total = g if total is None else {k: total[k] + g[k] for k in total}
    return total


def _jvp_chunk(model, params, x, tangent) -> Tensor:
    """J u on one chunk; forward-mode AD, or a vjp-of-vjp where an op lacks forward AD."""

    def fn(p):
        return _outputs(model, p, x)

    try:
        return jvp(fn, (params,), (tangent,))[1]
    except NotImplementedError:
        # Some fused kernels (e.g. the MultiheadAttention fast path) have no forward-mode
        # formula; J u is then the vjp of the linear map v -> J^T v, which only needs backward.
        out, pullback = vjp(fn, params)
        _, pullback_of_pullback = vjp(lambda v: pullback(v)[0], torch.zeros_like(out))
        return pullback_of_pullback(tangent)[0]


def _kernel_matvec(model, params, x, Z, chunk_size) -> Tensor:
    """K vec(Z) = J (J^T vec(Z)) as an (n, O) tensor, without forming J or K."""
    u = _vjp(model, params, x, Z, chunk_size)
    return torch.cat(
        [_jvp_chunk(model, params, x[sl], u) for sl in example_chunks(x.shape[0], chunk_size)]
    )


def label_projection_norm(
    model: nn.Module,
    x: Tensor,
    Y: Tensor,
    *,
    centered: bool = False,
    chunk_size: int | None = None,
    params: dict[str, Tensor] | None = None,
) -> Tensor:
    """||J^T y||^2 = vec(Y)^T K vec(Y) (centered: Y -> HY): alignment numerator, one backward."""
    params = trainable_params(model, params)
    ref = next(iter(params.values()))
    Yc = _targets(Y, x.shape[0], ref.dtype, ref.device, centered)
    return sum((g**2).sum() for g in _vjp(model, params, x, Yc, chunk_size).values())


def _rademacher(shape, generator: torch.Generator | None, ref: Tensor) -> Tensor:
    """Random +-1 entries in ref's dtype and device, drawn from `generator` wherever it lives."""
    device = generator.device if generator is not None else ref.device
    z = torch.randint(0, 2, shape, generator=generator, device=device)
    return z.to(device=ref.device, dtype=ref.dtype) * 2 - 1


def frobenius_norm_estimate(
    model: nn.Module,
    x: Tensor,
    n_probes: int = 32,
    generator: torch.Generator | None = None,
    centered: bool = False,
    *,
    sketch_size: int = 0,
    chunk_size: int | None = None,
    params: dict[str, Tensor] | None = None,
) -> tuple[Tensor, Tensor]:
    """Hutchinson estimate of ||K||_F^2 = E||K z||^2 (centered: ||HKH||_F^2) and its standard error.

    With sketch_size = k > 0 the range of K G (k random probes) is measured exactly as ||K Q||_F^2
    and Hutchinson only sees the rest, ||(I - QQ^T) K||_F^2 (Hutch++-style deflation): NTKs are
    dominated by a few eigenvalues, so this cuts the variance sharply for 2k extra products.
    """
    params = trainable_params(model, params)
    ref = next(iter(params.values()))
    n = x.shape[0]
    with torch.no_grad():
        out_dim = _outputs(model, params, x[:1]).shape[1]

    def apply_kernel(z: Tensor) -> Tensor:
        if centered:
            z = z - z.mean(0, keepdim=True)
        kz = _kernel_matvec(model, params, x, z, chunk_size)
        return kz - kz.mean(0, keepdim=True) if centered else kz

    exact_part, Q = torch.zeros((), dtype=ref.dtype, device=ref.device), None
    if sketch_size > 0:
        probes = _rademacher((sketch_size, n, out_dim), generator, ref)
        sketch = torch.stack([apply_kernel(g).reshape(-1) for g in probes])
        Q = torch.linalg.qr(sketch.T).Q
        exact_part = sum((apply_kernel(q.reshape(n, out_dim)) ** 2).sum() for q in Q.T)
    samples = []
    for _ in range(n_probes):
        kz = apply_kernel(_rademacher((n, out_dim), generator, ref)).reshape(-1)
        if Q is not None:
            kz = kz - Q @ (Q.T @ kz)
        samples.append((kz**2).sum())
    samples = torch.stack(samples)
    # One probe gives no spread to measure; report that as an infinite error, not NaN.
    stderr = samples.std() / math.sqrt(n_probes) if n_probes > 1 else samples.new_tensor(math.inf)
    return exact_part + samples.mean(), stderr


def matrix_free_alignments(
    model: nn.Module,
    x: Tensor,
    targets: Sequence[Tensor],
    n_probes: int = 32,
    centered: bool = True,
    *,
    generator: torch.Generator | None = None,
    sketch_size: int = 0,
    chunk_size: int | None = None,
    params: dict[str, Tensor] | None = None,
) -> list[tuple[Tensor, Tensor]]:
    """`matrix_free_alignment` for several targets (e.g. labels and shuffled labels) at the cost
    of one ||K||_F estimate and one backward per target; (alignment, stderr) per target."""
    params = trainable_params(model, params)
    ref = next(iter(params.values()))
    frob_sq, frob_sq_err = frobenius_norm_estimate(
        model,
        x,
        n_probes,
        generator,
        centered,
        sketch_size=sketch_size,
        chunk_size=chunk_size,
        params=params,
    )
    out = []
    for Y in targets:
        numerator = label_projection_norm(
            model, x, Y, centered=centered, chunk_size=chunk_size, params=params
        )
        # ||vec(Yc) vec(Yc)^T||_F = ||Yc||_F^2 exactly, so only ||K||_F carries estimation noise.
        target_norm = (_targets(Y, x.shape[0], ref.dtype, ref.device, centered) ** 2).sum()
        alignment = numerator / (frob_sq.sqrt() * target_norm)
        out.append((alignment, alignment.abs() * frob_sq_err / (2 * frob_sq)))
    return out


def matrix_free_alignment(
    model: nn.Module,
    x: Tensor,
    Y: Tensor,
    n_probes: int = 32,
    centered: bool = True,
    *,
    generator: torch.Generator | None = None,
    sketch_size: int = 0,
    chunk_size: int | None = None,
    params: dict[str, Tensor] | None = None,
) -> tuple[Tensor, Tensor]:
    """Kernel-target alignment of the full NTK with vec(Y) vec(Y)^T, and its delta-method stderr."""
    [result] = matrix_free_alignments(
        model, x, [Y], n_probes, centered, generator=generator, sketch_size=sketch_size,
        chunk_size=chunk_size, params=params,
    )  # fmt: skip
    return result
