"""Fully connected network over vectors, token pairs (shared embedding) or one-hot tokens.

Laziness is a knob here (Chizat & Bach 2019; Kumar et al. 2023):

- `parametrization` sets per-layer weight multipliers. Every layer stores W~ and applies
  W = m * W~ (an "abc-parametrization"), so GD on W~ with lr eta moves W with lr m^2 eta.
  * standard: PyTorch's default init (U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and
    biases), m = 1. The historical behaviour; the default.
  * ntk: W~ ~ N(0, 1), biases 0, m = 1/sqrt(fan_in) on every Linear (Jacot et al. 2018).
  * mean_field: as ntk, but the readout uses m = 1/fan_in = 1/width: for depth 1,
    f = (1/m) sum_i a_i act(w_i.x / sqrt(d)), the two-layer mean-field network.
  Embeddings keep N(0, 1) and m = 1 under ntk/mean_field. For relu, depth 1 and inputs with
  ||x||^2 = q d, the init output has Var f(x) = q/2 (ntk) and q/(2 width) (mean_field).
- `alpha` scales the output, f = alpha * net(x); with `centered`, f = alpha * (net(x) - net_0(x))
  where net_0 is the network at init, frozen (so f = 0 at init).
- `alpha_lr_scaling` (default on) makes GD run at lr eta / alpha^2 in the network's own weights,
  Chizat & Bach's convention under which the function moves at an alpha-independent rate at
  init and alpha alone decides laziness: every multiplier gets an extra 1/alpha and the stored
  parameters are alpha times larger (same function, same init). The empirical NTK over the
  stored parameters is then alpha-independent at init. Off, alpha is a plain output multiplier.

- `readout: ones` fixes every readout weight at 1 (times init_scale; not trained): with
  mean_field and depth 1, f = alpha/width sum_i act(w_i.x / sqrt(d)), the fixed-readout network
  of Kumar et al. 2023; with `activation: linear_quadratic`, act(z) = z + quadratic_eps z^2 / 2.

With the defaults (standard, alpha 1, not centered) the network is exactly the historical MLP.
"""

from __future__ import annotations

import copy
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn
from torch.func import functional_call

from dynamics_lab.models.layers import ACTIVATIONS, scale_init_
from dynamics_lab.registry import MODELS
from dynamics_lab.schema import NamedSection
from dynamics_lab.tasks.base import TaskSpec


class MLPConfig(NamedSection):
    width: int = Field(128, ge=1)
    depth: int = Field(1, ge=0)  # hidden layers
    activation: Literal["relu", "gelu", "tanh", "quadratic", "linear", "linear_quadratic"] = "relu"
    quadratic_eps: float = Field(0.25, ge=0)  # eps of linear_quadratic: z + eps z^2 / 2
    embed_dim: int | None = Field(64, ge=1)  # token inputs; null means one-hot tokens
    bias: bool = True
    init_scale: float = Field(1.0, gt=0)
    parametrization: Literal["standard", "ntk", "mean_field"] = "standard"
    alpha: float = Field(1.0, gt=0)  # output scale: the lazy (large) / rich (small) knob
    centered: bool = False  # f = alpha * (net - net_0): zero output at init
    alpha_lr_scaling: bool = True  # effective lr eta / alpha^2 on the weights (see module doc)
    readout: Literal["trained", "ones"] = "trained"  # ones: readout fixed at 1, not trained


class ScaledLinear(nn.Linear):
    """nn.Linear with fixed multipliers: y = x (m_w W)^T + m_b b (plain Linear when both are 1)."""

    weight_multiplier: float = 1.0
    bias_multiplier: float = 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.weight_multiplier == 1.0 and self.bias_multiplier == 1.0:
            return super().forward(x)
        bias = None if self.bias is None else self.bias * self.bias_multiplier
        return F.linear(x, self.weight * self.weight_multiplier, bias)


class ScaledEmbedding(nn.Embedding):
    """nn.Embedding whose table is applied times a fixed multiplier."""

    weight_multiplier: float = 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        return out if self.weight_multiplier == 1.0 else out * self.weight_multiplier


def effective_weight(module: nn.Module) -> torch.Tensor:
    """The matrix a (possibly scaled) layer actually applies."""
    return module.weight * getattr(module, "weight_multiplier", 1.0)


@MODELS.register("mlp")
class MLP(nn.Module):
    """Token inputs are embedded by one shared table (or one-hot) and concatenated."""

    Config = MLPConfig

    def __init__(self, config: MLPConfig, spec: TaskSpec):
        super().__init__()
        self.config = config
        self.n_tokens = spec.n_tokens
        if spec.n_tokens is not None and config.embed_dim is not None:
            self.embed = ScaledEmbedding(spec.n_tokens, config.embed_dim)
            in_dim = spec.input_shape[0] * config.embed_dim
        else:
            self.embed = None
            per_position = spec.n_tokens if spec.n_tokens is not None else 1
            in_dim = per_position * int(torch.tensor(spec.input_shape).prod())
        layers: list[nn.Module] = []
        for _ in range(config.depth):
            act = (ACTIVATIONS[config.activation](config.quadratic_eps)
                   if config.activation == "linear_quadratic" else ACTIVATIONS[config.activation]())
            layers += [ScaledLinear(in_dim, config.width, bias=config.bias), act]
            in_dim = config.width
        layers.append(ScaledLinear(in_dim, spec.n_outputs, bias=config.bias))
        self.net = nn.Sequential(*layers)
        self.alpha = config.alpha
        self._parametrize(config)
        scale_init_(self, config.init_scale)
        self._reference: tuple[nn.Module, ...] = ()  # a tuple, so it is no registered submodule
        if config.centered:
            self._freeze_reference()

    def _parametrize(self, config: MLPConfig) -> None:
        linears = [m for m in self.net if isinstance(m, ScaledLinear)]
        if config.parametrization != "standard":
            with torch.no_grad():
                for i, layer in enumerate(linears):
                    layer.weight.normal_()
                    if layer.bias is not None:
                        layer.bias.zero_()
                    fan_in = layer.in_features
                    readout_mf = config.parametrization == "mean_field" and i == len(linears) - 1
                    layer.weight_multiplier = 1.0 / (fan_in if readout_mf else fan_in**0.5)
        if config.readout == "ones":
            with torch.no_grad():
                linears[-1].weight.fill_(1.0)
                if linears[-1].bias is not None:
                    linears[-1].bias.zero_()
            for p in linears[-1].parameters():
                p.requires_grad_(False)
        if config.alpha_lr_scaling and config.alpha != 1.0:
            scaled = [*linears, *([self.embed] if self.embed is not None else [])]
            with torch.no_grad():
                for module in scaled:
                    module.weight_multiplier = module.weight_multiplier / config.alpha
                    if isinstance(module, ScaledLinear):
                        module.bias_multiplier = module.bias_multiplier / config.alpha
                for p in self.parameters():
                    p.mul_(config.alpha)

    def _freeze_reference(self) -> None:
        """Keep net_0: its tensors as buffers (saved, moved, cast with the model, never trained),
        applied through a hidden copy, so optimizers, torch.func and hooks see only the live net."""
        reference = copy.deepcopy(self)
        reference.alpha = 1.0
        for p in reference.parameters():
            p.requires_grad_(False)
        self._reference_names = {}
        for name, p in self.named_parameters():
            buffer = "init_" + name.replace(".", "_")
            self.register_buffer(buffer, p.detach().clone())
            self._reference_names[name] = buffer
        self._reference = (reference,)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The network's input vector: embeddings or one-hot tokens concatenated, or x flattened."""
        if self.embed is not None:
            return self.embed(x).flatten(1)
        if self.n_tokens is not None:
            return nn.functional.one_hot(x, self.n_tokens).flatten(1).to(self.net[0].weight.dtype)
        return x.flatten(1)

    def initial_output(self, x: torch.Tensor) -> torch.Tensor:
        """net_0(x), the uncentered, unscaled network at init (centered models only)."""
        reference = self._reference[0]
        state = {name: getattr(self, buffer) for name, buffer in self._reference_names.items()}
        return functional_call(reference, state, (x,))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(self.features(x))
        if self._reference:
            out = out - self.initial_output(x)
        return out if self.alpha == 1.0 else self.alpha * out
