"""Closed-form rank of the loss Hessian of a deep linear network (Singh, Bachmann, Hofmann 2021,
"Analytic insights into structure and rank of neural network Hessian maps").

A network W_L ... W_1 x with layer widths M_0 (input), M_1 .. M_{L-1} (hidden), M_L (output),
no biases, squared loss, at a generic point (random init, away from a minimum):
    q = min(M_0, ..., M_L)
    rank(H)         = q (M_0 + M_L) + 2 q (M_1 + ... + M_{L-1}) - L q^2
    rank(H_outer)   = q (M_0 + M_L - q)          (Gauss-Newton part J^T J; J = d outputs / d W)
out of sum_l M_l M_{l-1} parameters. M_0 is the rank of the input covariance, min(d, n) for n
generic inputs in d dimensions (checked against dense Hessians, tests/test_hessian_rank.py). At a
minimum the residual vanishes, and with it the functional part of H, so the first formula holds
along training, not at convergence. Other architectures have no closed form here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LinearNetwork:
    """Layer widths [M_0 = input rank, M_1, ..., M_L] and the input's own width."""

    widths: tuple[int, ...]
    input_dim: int

    @property
    def q(self) -> int:
        return min(self.widths)

    @property
    def depth(self) -> int:
        return len(self.widths) - 1

    @property
    def n_params(self) -> int:
        dims = (self.input_dim, *self.widths[1:])
        return sum(a * b for a, b in zip(dims, dims[1:]))

    @property
    def hessian_rank(self) -> int:
        """q (M_0 + M_L) + 2 q sum(hidden) - L q^2 (module docstring)."""
        w, q = self.widths, self.q
        return q * (w[0] + w[-1]) + 2 * q * sum(w[1:-1]) - self.depth * q * q

    @property
    def outer_rank(self) -> int:
        """q (M_0 + M_L - q): the rank of the Gauss-Newton part."""
        return self.q * (self.widths[0] + self.widths[-1] - self.q)


def network_from_config(experiment: dict) -> tuple[LinearNetwork | None, str]:
    """The deep linear network a resolved config trains, or None and why there is no formula."""
    model = experiment.get("model") or {}
    task = experiment.get("task") or {}
    if model.get("name") != "deep_linear":
        return None, f"no closed form for model.name={model.get('name')} (deep_linear only)"
    d = task.get("in_dim", task.get("dim"))
    k = task.get("out_dim", task.get("n_outputs"))
    if d is None or k is None:
        return None, "input or output width unknown (task has no in_dim/dim, out_dim/n_outputs)"
    depth, width = int(model.get("depth", 2)), int(model.get("width", 16))
    n = probe_examples(experiment)
    m0 = min(int(d), n) if n is not None else int(d)
    return LinearNetwork((m0, *[width] * (depth - 1), int(k)), int(d)), "deep linear network"


def probe_examples(experiment: dict) -> int | None:
    """Examples in the measurement's probe set: min(probe_size, n_train) when both are known."""
    section = (experiment.get("measure") or {}).get("hessian_rank") or {}
    n_train = (experiment.get("task") or {}).get("n_train")
    sizes = [int(s) for s in (section.get("probe_size"), n_train) if s is not None]
    return min(sizes) if sizes else None
