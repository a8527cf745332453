"""FourierProgress: Nanda et al.'s (2023) progress measures of grokking on (a + b) mod p.

A network that has grokked modular addition computes its logits from a few key frequencies w_k:
logit(a, b, c) ~ sum_k cos(w_k (a + b - c)). Over the p x p grid of inputs, those terms live in the
span of cos(w_k (a + b)) and sin(w_k (a + b)) (for each output c), so projecting the logits onto
that span keeps exactly them. Logged at each scheduled step, on every pair of the table:
  fourier/key_power       share of the embedding's non-constant Fourier power in the key
                          frequencies (n_key of them in a random embedding: n_key / (p // 2))
  fourier/key_freq_<i>    the key frequencies, strongest first
  fourier/restricted_loss cross-entropy on the held-out pairs of the logits restricted to their
                          mean over (a, b) plus the key-frequency components: falls as the
                          generalizing circuit forms, before the test loss does
  fourier/excluded_loss   cross-entropy on the training pairs of the logits with the key-frequency
                          components removed: rises as the circuit takes over from memorization
  fourier/key_logit_share share of the logits' variance over (a, b) in the key components
Key frequencies are the n_key strongest of the embedding (`token_weights`: the embedding table, or
a one-hot first layer), chosen anew at each measurement, or fixed by `key_frequencies` (e.g. those
of a finished run, as Nanda et al. fix them).
Nanda et al. measure under the FINAL model's key frequencies. With `final_keys` (default on) each
measurement also saves the network's weights to <default_root_dir>/snapshots/fourier/ (the run
directory under dynlab); when training ends, the key frequencies of the final weights are taken
and every snapshot is measured again under them, logged at the snapshot's own step:
  fourier/final_restricted_loss, fourier/final_excluded_loss, fourier/final_key_logit_share
and fourier/final_key_freq_<i> at the last step. `final_key_losses` recomputes the same from the
snapshot files after the run (a network built like the run's, the task's p and splits).
The task is read off the datamodule by duck typing:
`config.p` (or `spec.n_tokens`), `config.op` (only `add`) and `splits` (without it both losses
are taken over every pair). Inputs are token pairs (a, b), as modular_arithmetic serves them.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn
from typing_extensions import override

from dynamics_lab.linalg.representations import fourier_metrics
from dynamics_lab.measure.base import Measurement, MeasurementConfig, model_of
from dynamics_lab.measure.features import token_count, token_weights
from dynamics_lab.metric_names import Fourier
from dynamics_lab.offers import SPLITS, offered
from dynamics_lab.registry import MEASUREMENTS


class FourierProgressConfig(MeasurementConfig):
    n_key: int = Field(5, ge=1)  # key frequencies taken from the embedding
    key_frequencies: list[int] | None = None  # fixed key frequencies (1 .. p // 2) instead
    chunk: int = Field(16384, ge=1)  # pairs per forward pass
    final_keys: bool = True  # snapshot the weights; re-measure under the final key frequencies


def sum_waves(p: int, frequencies: list[int], dtype=torch.float64, device=None) -> torch.Tensor:
    """Unit vectors over the (a, b) grid (rows, p * p entries in a-major order): cos and sin of
    2 pi k (a + b) / p for each k (a sine that vanishes, at k = p / 2, is left out)."""
    t = torch.arange(p, dtype=dtype, device=device)
    s = (t[:, None] + t[None, :]).reshape(-1)
    rows = []
    for k in frequencies:
        for wave in (torch.cos(2 * math.pi * k * s / p), torch.sin(2 * math.pi * k * s / p)):
            norm = wave.norm()
            if norm > 1e-9 * p:
                rows.append(wave / norm)
    return torch.stack(rows) if rows else torch.zeros(0, p * p, dtype=dtype, device=device)


def key_components(logits: torch.Tensor, p: int, frequencies: list[int]) -> torch.Tensor:
    """The part of grid logits (p * p, C) in the span of the key (a + b) waves, per output."""
    waves = sum_waves(p, frequencies, logits.dtype, logits.device)
    return waves.T @ (waves @ logits)


def frequency_power(weights: torch.Tensor, p: int) -> torch.Tensor:
    """Fourier power of the token weights at frequencies 1 .. p // 2 (the constant left out)."""
    return fourier_metrics(weights, p)["power"][1:]


def strongest_frequencies(weights: torch.Tensor, p: int, n: int) -> list[int]:
    """The n frequencies (1 .. p // 2) with the most Fourier power in the token weights."""
    return _strongest(frequency_power(weights, p), n)


def _strongest(power: torch.Tensor, n: int) -> list[int]:
    return [int(k) + 1 for k in torch.argsort(power, descending=True)[: min(n, len(power))]]


@MEASUREMENTS.register("fourier_progress")
class FourierProgress(Measurement):
    """Key frequencies, restricted and excluded loss of a modular-addition network.

    Example:
        >>> trainer = L.Trainer(callbacks=[FourierProgress(every=100, n_key=5)])
    """

    Config = FourierProgressConfig
    prefix = Fourier.PREFIX
    uses_probe = False
    config: FourierProgressConfig

    @override
    def measure(self, trainer: L.Trainer, pl_module: L.LightningModule,
                model: nn.Module) -> dict[str, float]:
        task = getattr(trainer, "datamodule", None)
        p = token_count(task)
        if p is None or getattr(getattr(task, "config", None), "op", "add") != "add":
            return {}
        model.eval()
        device = next(model.parameters()).device
        folder = snapshot_dir(trainer) if self.config.final_keys else None
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
            torch.save({k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
                       folder / f"step_{trainer.global_step:09d}.pt")
        return self.metrics(grid_logits(model, p, device, self.config.chunk), p,
                            token_weights(model, p), split_indices(task, p, device))

    @override
    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_end(trainer, pl_module)
        task = getattr(trainer, "datamodule", None)
        p = token_count(task)
        folder = snapshot_dir(trainer) if self.config.final_keys else None
        if p is None or folder is None or not folder.is_dir():
            return
        model = model_of(pl_module)
        keys = self.keys(token_weights(model, p), p)
        if not keys:
            return
        device = next(model.parameters()).device
        rows = final_key_losses(model, folder, p, keys,
                                split_indices(task, p, device), self.config.chunk)
        last = max(rows) if rows else trainer.global_step
        rows.setdefault(last, {}).update(
            {Fourier.key_frequency(i, final=True): float(k) for i, k in enumerate(keys)})
        for step in sorted(rows):
            for logger in getattr(trainer, "loggers", ()):
                logger.log_metrics(rows[step], step=step)

    def keys(self, weights: torch.Tensor | None, p: int) -> list[int]:
        """The fixed key frequencies, else the n_key strongest of the token weights."""
        c = self.config
        if c.key_frequencies is not None:
            return [k for k in c.key_frequencies if 1 <= k <= p // 2]
        if weights is None or weights.shape[0] < p:
            return []
        return _strongest(frequency_power(weights, p), c.n_key)

    def metrics(self, logits: torch.Tensor, p: int, weights: torch.Tensor | None,
                splits: dict[str, torch.Tensor]) -> dict[str, float]:
        """Progress measures of grid logits (p * p, C; row a * p + b holds the pair (a, b)), the
        token weights (p x d, for the key frequencies) and the grid indices of each split."""
        power = (frequency_power(weights, p) if weights is not None and weights.shape[0] >= p
                 else None)
        keys = self.keys(weights, p)
        if not keys:
            return {}
        metrics: dict[str, float] = {}
        if power is not None:
            share = power[[k - 1 for k in keys]].sum() / power.sum().clamp_min(1e-300)
            metrics[Fourier.KEY_POWER] = float(share)
        metrics.update({Fourier.key_frequency(i): float(k) for i, k in enumerate(keys)})
        metrics.update(key_losses(logits, p, keys, splits))
        return metrics


def key_losses(logits: torch.Tensor, p: int, keys: list[int], splits: dict[str, torch.Tensor],
               prefix: str = Fourier.RUNNING) -> dict[str, float]:
    """Restricted loss (held-out pairs), excluded loss (training pairs) and the key components'
    share of the logits' variance, under the key frequencies `keys`."""
    key = key_components(logits, p, keys)
    restricted = logits.mean(0, keepdim=True) + key
    excluded = logits - key
    every = torch.arange(p * p, device=logits.device)
    labels = (every // p + every % p) % p
    test, train = splits.get("val", every), splits.get("train", every)
    centred = logits - logits.mean(0, keepdim=True)
    return {f"{prefix}restricted_loss": float(F.cross_entropy(restricted[test], labels[test])),
            f"{prefix}excluded_loss": float(F.cross_entropy(excluded[train], labels[train])),
            f"{prefix}key_logit_share": float(
                key.pow(2).sum() / centred.pow(2).sum().clamp_min(1e-300))}


def snapshot_dir(trainer: L.Trainer) -> Path | None:
    """Where the weight snapshots go: <default_root_dir>/snapshots/fourier (None outside a
    Trainer with a root directory)."""
    root = getattr(trainer, "default_root_dir", None)
    return Path(root) / "snapshots" / "fourier" if root else None


def final_key_losses(model: nn.Module, folder: Path, p: int, keys: list[int],
                     splits: dict[str, torch.Tensor], chunk: int = 16384
                     ) -> dict[int, dict[str, float]]:
    """Step -> fourier/final_* losses of every weight snapshot in `folder` under `keys` (the
    final model's key frequencies); `model` is a network of the run's architecture (its
    weights are not touched: each snapshot is loaded into a copy)."""
    net = copy.deepcopy(model).eval()
    device = next(net.parameters()).device
    rows = {}
    for path in sorted(Path(folder).glob("step_*.pt")):
        net.load_state_dict(torch.load(path, map_location=device, weights_only=True))
        logits = grid_logits(net, p, device, chunk)
        rows[int(path.stem.removeprefix("step_"))] = key_losses(logits, p, keys, splits,
                                                                Fourier.FINAL)
    return rows


def grid_logits(model: nn.Module, p: int, device, chunk: int) -> torch.Tensor:
    """The model's outputs (float64) on every pair (a, b), row a * p + b."""
    a = torch.arange(p, device=device)
    pairs = torch.stack([a.repeat_interleave(p), a.repeat(p)], dim=1)
    with torch.no_grad():
        return torch.cat([model(pairs[i:i + chunk]).double()
                          for i in range(0, len(pairs), chunk)])


def split_indices(task: Any, p: int, device) -> dict[str, torch.Tensor]:
    """Grid indices of the task's train and held-out pairs (`splits`; none when absent)."""
    splits = offered(task, SPLITS) or {}
    return {name: (splits[name][0][:, 0] * p + splits[name][0][:, 1]).to(device)
            for name in ("train", "val") if name in splits}
