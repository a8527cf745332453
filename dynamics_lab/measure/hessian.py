"""HessianSpectrum: sharpness (top Hessian eigenvalues) on a fixed probe set, beside the
optimizer's stability threshold, as a Lightning callback.

Logged under `hessian/`: lambda_1..k (lambda_max = lambda_1), residual_1..k, matvecs, converged;
`threshold`, the largest sharpness the optimizer in use is stable at on a quadratic, and, where
the step is preconditioned (Adam/AdamW, groups with different learning rates) or carries
coupled L2 (SGD's `weight_decay`), `precond_lambda_max` with `precond_matvecs` and
`precond_certified`: the top
eigenvalue of S (H + L2) that the threshold applies to (`stability.py`: Cohen et al. 2022's
P^-1 H for Adam, first-moment bias correction included). Optionally the Hutchinson trace and
an SLQ density (summary numbers logged; grid and density saved to
`<default_root_dir>/hessian_density/step_NNNNNN.npz`). The Hessian is that of the loss alone;
coupled L2 enters the preconditioned sharpness only.

Each measurement builds one HVP operator at the current parameters, shares it between the
eigensolver, the preconditioned sharpness, trace and density, and releases it before returning:
with the default `hvp_method: auto` on an unchunked probe that operator reuses one gradient graph
for all its matvecs (`linalg/hvp.py`), and the graph, which holds the probe's activations, must
not outlive the parameters it was built at. Random layers (dropout) use fixed masks seeded by
`probe_seed`, so the operator is symmetric and the same at every call.

Warm start (`warm_start: true`): Lanczos starts from the previous measurement's top k+1 Ritz
vectors plus a random vector of equal weight (`linalg.lanczos.warm_start`, kept in the
callback's state, so checkpoints carry them). Between nearby steps the top eigenvectors barely
move and fewer matvecs suffice; when the top two eigenvalues swap, or the top eigenvector turns
to a direction orthogonal to the old one, the new top is still found, which a start from the old
top eigenvector alone cannot do (its Krylov space lacks the new direction). A direction that
jumps from deep in the spectrum to the top between two measurements is found only when it
stands out enough to grow from the random part before the top k converge; `warm_start: false`
(a fresh random start each time) is the safe choice when that may happen. Quick EoS run
(`benchmarks/warm_start.py`: every 25 steps, float64, tol=1e-3, k=1): 26.3 matvecs per
measurement from random starts, 21.2 tracked (19% saved); a start from the previous top vector
alone takes 18.8 (28%) but is blind to a new top direction orthogonal to it.
The `pyhessian` backend swaps the eigensolver for PyHessian's power iteration (for comparison);
trace, density and the preconditioned sharpness always use `dynamics_lab.linalg`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from pydantic import Field, model_validator
from torch import Tensor, nn
from typing_extensions import override

from dynamics_lab.linalg.hvp import hessian_vector_product
from dynamics_lab.linalg.lanczos import LanczosResult, lanczos, warm_start
from dynamics_lab.linalg.spectrum import hutchinson_trace, spectral_density
from dynamics_lab.linalg.tracker import TrackResult, track
from dynamics_lab.measure.base import Measurement, MeasurementConfig
from dynamics_lab.measure.stability import preconditioned, stability, threshold_of, unwrap
from dynamics_lab.metric_names import Hessian
from dynamics_lab.registry import MEASUREMENTS


class HessianConfig(MeasurementConfig):
    k: int = Field(1, ge=1)  # top-k eigenvalues
    tol: float = Field(1e-3, gt=0)  # relative Ritz residual (lanczos) / relative change (pyhessian)
    max_iter: int = Field(100, ge=1)
    warm_start: bool = True  # start from the previous top k+1 Ritz vectors (plus a random one)
    chunk_size: int | None = Field(None, ge=1)  # probe examples per HVP pass (memory bound)
    # linalg's HVP (see linalg/hvp.py): "auto" = "reuse" (gradient graph built once per
    # measurement, ~1.4x a gradient per matvec) unless chunk_size splits the probe, then "func".
    hvp_method: Literal["auto", "reuse", "func", "double_backward"] = "auto"
    trace: int = Field(0, ge=0)  # Hutchinson samples; 0 = off
    density: bool = False  # SLQ spectral density
    density_draws: int = Field(3, ge=1)
    density_iter: int = Field(50, ge=2)
    backend: Literal["lanczos", "pyhessian"] = "lanczos"
    # "lanczos": Lanczos at every measurement (warm-started when warm_start). "track": the
    # previous Ritz block carried forward, Rayleigh-Ritz with a residual certificate, block
    # Krylov steps while uncertified, Lanczos past max_expand (`linalg/tracker.py`).
    solver: Literal["lanczos", "track"] = "lanczos"
    guard: int = Field(3, ge=1)  # track: Ritz vectors carried beyond the top k
    max_expand: int = Field(6, ge=0)  # track: extra products before falling back to Lanczos
    audit_every: int = Field(10, ge=0)  # track: a warm Lanczos every n measurements; 0 = never
    retry_after: int = Field(8, ge=0)  # track: measurements by warm Lanczos after a fallback
    # Apply a block's products in one vmapped pass: "auto" times both ways on the first block
    # and keeps the cheaper (logged as hessian/batched).
    batched: Literal["auto", "on", "off"] = "auto"
    preconditioned: bool = True  # also the preconditioned sharpness where the step has one

    @model_validator(mode="after")
    def _pyhessian_has_no_density(self):
        if self.density and self.backend == "pyhessian":
            raise ValueError("density=true needs backend=lanczos: pyhessian's density() calls "
                             "torch.eig, which PyTorch removed")
        if self.solver == "track" and self.backend == "pyhessian":
            raise ValueError("solver=track needs backend=lanczos (pyhessian runs its own "
                             "power iteration)")
        if self.backend == "pyhessian" and self.chunk_size is not None:
            raise ValueError("chunk_size is not supported by backend=pyhessian (it runs one batch)")
        return self


def eigen_metrics(result: LanczosResult | TrackResult) -> dict[str, float]:
    """lambda_1..k, residuals, matvecs and `certified`: every reported value within tol (a
    converged Lanczos, or the tracker's certificate; `bound_i` bounds |lambda_i - true|)."""
    metrics = {Hessian.LAMBDA_MAX: float(result.eigenvalues[0])}
    for i, (value, residual) in enumerate(zip(result.eigenvalues, result.residuals), start=1):
        metrics[Hessian.eigenvalue(i)] = float(value)
        metrics[Hessian.residual(i)] = float(residual)
    metrics[Hessian.MATVECS] = float(result.n_matvec)
    if isinstance(result, TrackResult):
        certified = result.certified
        for i, bound in enumerate(result.bounds, start=1):
            metrics[Hessian.bound(i)] = float(bound)
        metrics[Hessian.FALLBACK] = float(result.method in ("lanczos", "audit"))
    else:
        certified = result.converged
    metrics[Hessian.CONVERGED] = float(certified)
    metrics[Hessian.CERTIFIED] = float(certified)
    return metrics


def tracked(result: LanczosResult) -> Tensor:
    """The Ritz vectors a later warm start begins from: the top k and the next one."""
    extra = result.extra_vectors
    vectors = result.eigenvectors if extra is None else torch.cat([result.eigenvectors, extra], 1)
    return vectors.detach()


@MEASUREMENTS.register("hessian")
class HessianSpectrum(Measurement):
    """Top-k Hessian eigenvalues of the loss on the probe set, with the optimizer's threshold.

    Example:
        >>> callback = HessianSpectrum(every=25, k=2)  # or HessianSpectrum(HessianConfig(...))
        >>> trainer = L.Trainer(callbacks=[callback])
    """

    Config = HessianConfig
    prefix = Hessian.PREFIX
    needs_loss = True
    config: HessianConfig

    def __init__(self, config: HessianConfig | None = None, /, **kwargs: Any):
        super().__init__(config, **kwargs)
        self.vectors: Tensor | None = None  # previous Ritz vectors (warm start)
        self.precond_vectors: Tensor | None = None
        # solver=track: carried Ritz block and scout per operator ("plain", "precond"), the
        # number of measurements taken (audit schedule) and the batched-product choice.
        self.tracked: dict[str, tuple[Tensor, Tensor]] = {}
        self.direct_left: dict[str, int] = {}  # measurements left before tracking is retried
        self.measurements = 0
        self.batched: bool | None = {"on": True, "off": False}.get(self.config.batched)

    @override
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_fit_start(trainer, pl_module)
        for optimizer in trainer.optimizers[:1]:
            threshold_of(unwrap(optimizer))  # parameter groups without one threshold: an error

    # -- measurement -------------------------------------------------------------------------

    @override
    def measure(self, trainer: L.Trainer, pl_module: L.LightningModule,
                model: nn.Module) -> dict[str, float]:
        loss_fn = self.loss(pl_module)
        # A fresh operator per measurement, released on exit (see the module docstring).
        with self.operator(model, loss_fn) as hvp:
            return self._measure_with(trainer, model, loss_fn, hvp)

    def operator(self, model: nn.Module, loss_fn: Callable):
        """The Hessian-vector product every solver of one measurement shares (an ensemble
        hands each member one that meets the others' in a batched pass)."""
        c = self.config
        return hessian_vector_product(model, loss_fn, self.probe, chunk_size=c.chunk_size,
                                      method=c.hvp_method, seed=c.probe_seed)

    def _measure_with(self, trainer: L.Trainer, model: nn.Module, loss_fn: Callable,
                      hvp) -> dict[str, float]:
        c = self.config
        if c.backend == "pyhessian":
            from dynamics_lab.measure.pyhessian_backend import pyhessian_top_eigenpairs

            result = pyhessian_top_eigenpairs(model, loss_fn, self.probe, c.k, c.max_iter, c.tol,
                                              seed=c.probe_seed)
        elif c.solver == "track":
            result = self._track("plain", self._matmat(hvp), hvp, trainer.global_step)
        else:
            result = self._lanczos(hvp, hvp, self.vectors, trainer.global_step)
            self.vectors = tracked(result)
        metrics = eigen_metrics(result)
        if c.solver == "track":
            metrics[Hessian.BATCHED] = float(bool(self.batched))
            self.measurements += 1
        optimizer = unwrap(trainer.optimizers[0]) if trainer.optimizers else None
        if optimizer is not None:
            metrics.update(self._threshold_metrics(optimizer, model, hvp, trainer.global_step))
        if c.trace:
            estimate = hutchinson_trace(hvp, hvp.dim, c.trace, dtype=hvp.dtype, device=hvp.device)
            metrics[Hessian.TRACE] = estimate.value
            if math.isfinite(estimate.stderr):
                metrics[Hessian.TRACE_STDERR] = estimate.stderr
        if c.density:
            metrics.update(self._density(trainer, hvp))
        return metrics

    def _matmat(self, hvp) -> Callable[[Tensor], Tensor]:
        """H V for a block, batched or one product at a time; "auto" decides on the first block
        of two or more vectors by timing both (both results are exact; the loop's is used)."""

        def matmat(v: Tensor) -> Tensor:
            if self.batched is not None or v.shape[1] < 2:
                return hvp.matmat(v, batched=bool(self.batched))
            hvp.matmat(v[:, :1])  # settle the HVP method and build its graph outside the timing
            start = time.perf_counter()
            out = hvp.matmat(v)
            loop = time.perf_counter() - start
            start = time.perf_counter()
            hvp.matmat(v, batched=True)
            self.batched = time.perf_counter() - start < loop
            return out

        return matmat

    def _track(self, key: str, matmat: Callable[[Tensor], Tensor], hvp, step: int) -> TrackResult:
        """The tracker on one operator, from and to its carried block (see linalg/tracker.py)."""
        c = self.config
        block, scout = self.tracked.get(key, (None, None))
        audit = bool(c.audit_every) and self.measurements % c.audit_every == 0
        # After a fallback the eigenspace is moving faster than the cadence: tracking would
        # spend max_expand products before the same Lanczos, so Lanczos runs directly (from
        # the block) for the next `retry_after` measurements, then tracking is tried again.
        direct = self.direct_left.get(key, 0) > 0
        generator = torch.Generator().manual_seed(c.probe_seed * 1_000_003 + step)
        result = track(matmat, hvp.dim, min(c.k, hvp.dim), block=block, scout=scout,
                       guard=c.guard, tol=c.tol, max_expand=c.max_expand, max_iter=c.max_iter,
                       audit=audit, direct=direct, dtype=hvp.dtype, device=hvp.device,
                       generator=generator)
        self.tracked[key] = (result.block, result.scout)
        fell_back = result.method == "lanczos" and not direct and block is not None
        self.direct_left[key] = c.retry_after if fell_back else max(
            0, self.direct_left.get(key, 0) - 1)
        return result

    def _lanczos(self, matvec: Callable[[Tensor], Tensor], hvp, previous: Tensor | None,
                 step: int) -> LanczosResult:
        """Top-k of `matvec` (an operator on hvp's flat parameter space), warm-started."""
        c = self.config
        k = min(c.k, hvp.dim)
        # Seeded by step: reproducible (and resumable), yet not the same random part each time.
        generator = torch.Generator().manual_seed(c.probe_seed * 1_000_003 + step)
        v0 = None
        if c.warm_start and previous is not None and previous.shape[0] == hvp.dim:
            v0 = warm_start(previous.to(hvp.device, hvp.dtype), generator)
        return lanczos(matvec, hvp.dim, k=k, max_iter=c.max_iter, tol=c.tol, v0=v0,
                       dtype=hvp.dtype, device=hvp.device, generator=generator,
                       extra_vectors=min(1, hvp.dim - k))

    def _threshold_metrics(self, optimizer: Any, model: nn.Module, hvp,
                           step: int) -> dict[str, float]:
        metrics: dict[str, float] = {}
        # The optimizer knows the parameters themselves, in the HVP's (trainable) order.
        found = stability(optimizer, [p for p in model.parameters() if p.requires_grad])
        if found is None:
            return metrics
        metrics[Hessian.THRESHOLD] = found.threshold
        if self.config.preconditioned and found.scale is not None:
            if self.config.solver == "track":
                operator = preconditioned(found, self._matmat(hvp), hvp.dtype, hvp.device)
                result = self._track("precond", operator, hvp, step)
            else:
                operator = preconditioned(found, hvp, hvp.dtype, hvp.device)
                result = self._lanczos(operator, hvp, self.precond_vectors, step)
                self.precond_vectors = tracked(result)
            metrics[Hessian.PRECOND_LAMBDA_MAX] = float(result.eigenvalues[0])
            metrics[Hessian.PRECOND_MATVECS] = float(result.n_matvec)
            metrics[Hessian.PRECOND_CERTIFIED] = float(
                result.certified if isinstance(result, TrackResult) else result.converged)
        return metrics

    def _density(self, trainer: L.Trainer, hvp) -> dict[str, float]:
        c = self.config
        sd = spectral_density(hvp, hvp.dim, c.density_draws, c.density_iter, dtype=hvp.dtype,
                              device=hvp.device)
        dx = float(sd.grid[1] - sd.grid[0])
        negative = float(sd.density[sd.grid < 0].sum() * dx)
        out = Path(trainer.default_root_dir) / "hessian_density"
        out.mkdir(parents=True, exist_ok=True)
        np.savez(out / f"step_{trainer.global_step:06d}.npz", grid=sd.grid.numpy(),
                 density=sd.density.numpy(), nodes=sd.nodes.numpy(), weights=sd.weights.numpy(),
                 step=trainer.global_step)
        used = sd.weights > 0
        return {Hessian.DENSITY_NEGATIVE_MASS: negative,
                Hessian.DENSITY_LAMBDA_MIN: float(sd.nodes[used].min()),
                Hessian.DENSITY_LAMBDA_MAX: float(sd.nodes[used].max())}

    # -- state -------------------------------------------------------------------------------

    @property
    @override
    def state_key(self) -> str:
        # Two HessianSpectrum callbacks (say lanczos and pyhessian) keep separate states.
        return self._generate_state_key(backend=self.config.backend, every=self.config.every,
                                        k=self.config.k)

    @override
    def state_dict(self) -> dict[str, Any]:
        """Warm-start vectors and the last measured step travel with Lightning checkpoints."""
        cpu = lambda t: None if t is None else t.detach().cpu()  # noqa: E731
        return {**super().state_dict(), "vectors": cpu(self.vectors),
                "precond_vectors": cpu(self.precond_vectors),
                "tracked": {key: (cpu(b), cpu(s)) for key, (b, s) in self.tracked.items()},
                "measurements": self.measurements, "batched": self.batched,
                "direct_left": dict(self.direct_left)}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.vectors = state_dict.get("vectors")
        self.precond_vectors = state_dict.get("precond_vectors")
        self.tracked = dict(state_dict.get("tracked", {}))
        self.measurements = int(state_dict.get("measurements", 0))
        self.direct_left = dict(state_dict.get("direct_left", {}))
        if self.config.batched == "auto":
            self.batched = state_dict.get("batched")
