"""FeatureMetrics: what the weights and hidden representations look like, and how far they moved.

Logged at each scheduled step (layer names are module paths, e.g. `net.1`):
  features/weight_norm                 sqrt of the sum of the per-layer norms squared
  features/weight_norm/<layer>         ||W||_F of each Linear/Embedding, as applied (a layer's
                                       fixed `weight_multiplier` included)
  features/weight_erank|weight_pr/<layer>  effective rank (Roy & Vetterli) and participation
                                       ratio of that matrix's singular values
  features/erank|pr/<hidden>           the same for the hidden representation on the probe set,
                                       columns centered (covariance spectrum)
  features/cka_init/<hidden>           linear CKA with that layer's representation at the first
                                       measurement (kept in state_dict)
Hidden layers are the activation modules that follow a Linear inside an nn.Sequential (so an
MLP's post-activations, a transformer block's MLP units), captured by forward hooks that exist
only during the measurement's own forward pass.

Task structure is read off the datamodule by duck typing, so measure/ knows no task class:
  tokens (`config.p` or `spec.n_tokens`): `features/fourier/{ipr, top_k_mass, n_key_frequencies,
    neuron_purity, constant_fraction}` of the model's `embed` table, or else of a one-hot first
    layer (per-position token blocks side by side); per-frequency power only when p//2+1 <=
    `max_power_columns`, as `features/fourier/power/<k>`.
  `relevant` coordinates (parity): the first Linear's per-neuron squared-weight share on them,
    mean as `features/relevant_mass`, mean of the top decile as `features/relevant_mass_top10`.
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
from pydantic import Field
from torch import nn
from typing_extensions import override

from dynamics_lab.linalg.representations import (
    effective_rank,
    fourier_metrics,
    linear_cka,
    participation_ratio,
    relevant_mass,
)
from dynamics_lab.measure.base import Measurement, MeasurementConfig
from dynamics_lab.metric_names import Features
from dynamics_lab.models.layers import ACTIVATIONS
from dynamics_lab.offers import RELEVANT, offered
from dynamics_lab.registry import MEASUREMENTS

ACTIVATION_TYPES = (*set(ACTIVATIONS.values()), nn.Sigmoid, nn.SiLU, nn.Softplus, nn.LeakyReLU,
                    nn.ELU)


class FeaturesConfig(MeasurementConfig):
    probe_size: int = Field(512, ge=2)
    top_k: int = Field(5, ge=1)  # frequencies in fourier top_k_mass
    max_power_columns: int = Field(16, ge=0)  # log per-frequency power only up to this many
    cka: bool = True  # CKA with the representation at the first measurement


def hidden_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Activation modules that directly follow a Linear in an nn.Sequential, by module path."""
    found = {}
    for prefix, module in model.named_modules():
        if isinstance(module, nn.Sequential):
            children = list(module.named_children())
            for (_, before), (name, child) in zip(children, children[1:]):
                if isinstance(before, nn.Linear) and isinstance(child, ACTIVATION_TYPES):
                    found[f"{prefix}.{name}" if prefix else name] = child
    return found


def weight_layers(model: nn.Module) -> dict[str, torch.Tensor]:
    """Each trainable Linear/Embedding's weight as applied (times its fixed multiplier)."""
    return {name: (m.weight * getattr(m, "weight_multiplier", 1.0)).detach()
            for name, m in model.named_modules()
            if isinstance(m, (nn.Linear, nn.Embedding)) and m.weight.requires_grad}


def first_linear(model: nn.Module) -> torch.Tensor | None:
    """The first trainable Linear's weight as applied (out x in), or None."""
    return next((w for name, w in weight_layers(model).items()
                 if isinstance(model.get_submodule(name), nn.Linear)), None)


def representations(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Hidden post-activations on x, flattened per example, from one hooked forward pass."""
    captured: dict[str, torch.Tensor] = {}
    handles = [module.register_forward_hook(
        lambda _m, _i, out, name=name: captured.__setitem__(name, out.detach().reshape(len(x), -1)))
        for name, module in hidden_layers(model).items()]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return captured


def token_count(datamodule: Any) -> int | None:
    """p of a modular-arithmetic-like task: `config.p`, else `spec.n_tokens`, else None."""
    p = getattr(getattr(datamodule, "config", None), "p", None)
    if p is None:
        p = getattr(getattr(datamodule, "spec", None), "n_tokens", None)
    return int(p) if p else None


def token_weights(model: nn.Module, p: int) -> torch.Tensor | None:
    """(tokens x features) input weights: the embedding table, or one-hot first-layer blocks."""
    embed = getattr(model, "embed", None)
    if embed is not None and hasattr(embed, "weight"):
        return (embed.weight * getattr(embed, "weight_multiplier", 1.0)).detach()
    first = first_linear(model)
    if first is None or first.shape[1] % p:
        return None
    # W is (out, positions * p); token t of position j is column j * p + t.
    return first.T.reshape(first.shape[1] // p, p, -1).permute(1, 0, 2).reshape(p, -1)


@MEASUREMENTS.register("features")
class FeatureMetrics(Measurement):
    """Weight and representation structure: norms, ranks, CKA to init, Fourier/parity focus."""

    Config = FeaturesConfig
    prefix = Features.PREFIX
    config: FeaturesConfig

    def __init__(self, config: FeaturesConfig | None = None, /, **kwargs: Any):
        super().__init__(config, **kwargs)
        self.representations_init: dict[str, torch.Tensor] | None = None

    @override
    def measure(self, trainer: L.Trainer, pl_module: L.LightningModule,
                model: nn.Module) -> dict[str, float]:
        model.eval()
        metrics = self.weight_metrics(model)
        metrics.update(self.representation_metrics(model))
        datamodule = getattr(trainer, "datamodule", None)
        p = token_count(datamodule)
        if p is not None:
            metrics.update(self.fourier(model, p))
        relevant = offered(datamodule, RELEVANT)
        if relevant is not None:
            metrics.update(self.relevant_focus(model, list(relevant)))
        return metrics

    def weight_metrics(self, model: nn.Module) -> dict[str, float]:
        metrics, total = {}, 0.0
        for name, w in weight_layers(model).items():
            norm = float(w.norm())
            total += norm**2
            metrics[Features.per_layer("weight_norm", name)] = norm
            matrix = w.reshape(w.shape[0], -1)
            metrics[Features.per_layer("weight_erank", name)] = float(effective_rank(matrix))
            metrics[Features.per_layer("weight_pr", name)] = float(
                participation_ratio(matrix, center=False))
        metrics[Features.WEIGHT_NORM] = math.sqrt(total)
        return metrics

    def representation_metrics(self, model: nn.Module) -> dict[str, float]:
        reps = representations(model, self.probe[0])
        if self.config.cka and self.representations_init is None:
            self.representations_init = {k: v.float().cpu() for k, v in reps.items()}
        metrics = {}
        for name, rep in reps.items():
            centered = rep - rep.mean(0, keepdim=True)
            metrics[Features.per_layer("erank", name)] = float(effective_rank(centered))
            metrics[Features.per_layer("pr", name)] = float(participation_ratio(rep))
            init = (self.representations_init or {}).get(name)
            if self.config.cka and init is not None and init.shape == rep.shape:
                metrics[Features.per_layer("cka_init", name)] = float(
                    linear_cka(init, rep.float().cpu()))
        return metrics

    def fourier(self, model: nn.Module, p: int) -> dict[str, float]:
        weights = token_weights(model, p)
        if weights is None or weights.shape[0] < p:
            return {}
        result = fourier_metrics(weights, p, top_k=self.config.top_k)
        metrics = {Features.fourier(key): float(result[key]) for key in
                   ("ipr", "top_k_mass", "n_key_frequencies", "neuron_purity",
                    "constant_fraction")}
        power = result["power"]
        if len(power) <= self.config.max_power_columns:
            metrics.update({Features.fourier(f"power/{k}"): float(v) for k, v in enumerate(power)})
        return metrics

    def relevant_focus(self, model: nn.Module, relevant: list[int]) -> dict[str, float]:
        first = first_linear(model)
        if first is None or not relevant or max(relevant) >= first.shape[1]:
            return {}
        mass = relevant_mass(first, relevant)
        top = mass.sort(descending=True).values[: max(1, len(mass) // 10)]
        return {Features.RELEVANT_MASS: float(mass.mean()),
                Features.RELEVANT_MASS_TOP10: float(top.mean())}

    # -- checkpointed state -------------------------------------------------------------------

    @override
    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "representations_init": self.representations_init}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.representations_init = state_dict.get("representations_init")
