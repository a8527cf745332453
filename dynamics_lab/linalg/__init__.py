"""Pure-torch linear algebra for measurements: HVPs, Lanczos, SLQ, NTK, representation metrics.

Nothing here knows about Lightning; every function takes a model, a loss and tensors.
"""

from dynamics_lab.linalg.hvp import flat_params, hessian_vector_product
from dynamics_lab.linalg.lanczos import LanczosResult, lanczos, warm_start
from dynamics_lab.linalg.ntk import (
    empirical_ntk,
    frobenius_norm_estimate,
    kernel_alignment,
    kernel_distance,
    label_projection_norm,
    matrix_free_alignment,
    matrix_free_alignments,
)
from dynamics_lab.linalg.representations import (
    effective_rank,
    fourier_metrics,
    linear_cka,
    participation_ratio,
    relevant_mass,
)
from dynamics_lab.linalg.spectrum import (
    SpectralDensity,
    TraceEstimate,
    hessian_spectral_density,
    hessian_trace,
    top_hessian_eigenvalues,
)

__all__ = [
    "LanczosResult",
    "SpectralDensity",
    "TraceEstimate",
    "effective_rank",
    "empirical_ntk",
    "flat_params",
    "fourier_metrics",
    "frobenius_norm_estimate",
    "hessian_spectral_density",
    "hessian_trace",
    "hessian_vector_product",
    "kernel_alignment",
    "kernel_distance",
    "label_projection_norm",
    "lanczos",
    "linear_cka",
    "matrix_free_alignment",
    "matrix_free_alignments",
    "participation_ratio",
    "relevant_mass",
    "top_hessian_eigenvalues",
    "warm_start",
]
