"""Nanda et al.'s progress measures (key frequencies, restricted and excluded loss) against a 2-D
DFT reference and hand-built circuits, on a real transformer, and (slow) the shipped
`transformer` grokking profile."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import fit_with

from dynamics_lab.config import load_experiment
from dynamics_lab.measure.fourier_progress import (
    FourierProgress,
    final_key_losses,
    grid_logits,
    key_components,
    split_indices,
    strongest_frequencies,
)
from dynamics_lab.models.transformer import Transformer, TransformerConfig
from dynamics_lab.schema import OptimConfig
from dynamics_lab.tasks.modular_arithmetic import ModularArithmetic, ModularArithmeticConfig
from dynamics_lab.train.module import DynamicsModule


def dft_restricted(logits: np.ndarray, p: int, keys: list[int]) -> np.ndarray:
    """Keep, per output, the (0, 0), (k, k) and (-k, -k) terms of the 2-D DFT over (a, b): the
    constant and the waves in a + b of the key frequencies."""
    grid = logits.reshape(p, p, -1)
    spectrum = np.fft.fft2(grid, axes=(0, 1))
    keep = np.zeros((p, p), bool)
    keep[0, 0] = True
    for k in keys:
        keep[k, k] = keep[(-k) % p, (-k) % p] = True
    return np.fft.ifft2(spectrum * keep[:, :, None], axes=(0, 1)).real.reshape(p * p, -1)


@pytest.mark.parametrize("p,keys", [(7, [1, 3]), (11, [2, 5, 4]), (8, [1, 4])])
def test_restricted_logits_match_a_2d_dft(p, keys):
    logits = torch.randn(p * p, p, generator=torch.Generator().manual_seed(p), dtype=torch.float64)
    ours = logits.mean(0, keepdim=True) + key_components(logits, p, keys)
    np.testing.assert_allclose(ours.numpy(), dft_restricted(logits.numpy(), p, keys), atol=1e-10)


def circuit_logits(p: int, keys: list[int], scale: float = 5.0) -> torch.Tensor:
    """logit(a, b, c) = scale * sum_k cos(2 pi k (a + b - c) / p): the generalizing circuit."""
    a = torch.arange(p, dtype=torch.float64)
    s = (a[:, None] + a[None, :]).reshape(-1, 1)
    return scale * sum(torch.cos(2 * math.pi * k * (s - a[None, :]) / p) for k in keys)


def test_a_pure_circuit_keeps_its_loss_when_restricted_and_loses_everything_when_excluded():
    p, keys = 13, [2, 5]
    logits = circuit_logits(p, keys)
    labels = (torch.arange(p * p) // p + torch.arange(p * p) % p) % p
    full = F.cross_entropy(logits, labels)
    metrics = FourierProgress(key_frequencies=keys).metrics(logits, p, None, {})
    assert metrics["fourier/restricted_loss"] == pytest.approx(float(full), rel=1e-9)
    assert metrics["fourier/excluded_loss"] == pytest.approx(math.log(p), rel=1e-9)
    assert metrics["fourier/key_logit_share"] == pytest.approx(1.0)
    other = FourierProgress(key_frequencies=[1, 3]).metrics(logits, p, None, {})
    assert other["fourier/restricted_loss"] == pytest.approx(math.log(p), rel=1e-9)
    assert other["fourier/excluded_loss"] == pytest.approx(float(full), rel=1e-9)


def test_losses_use_the_held_out_and_training_pairs():
    p = 7
    logits = torch.randn(p * p, p, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    train, val = torch.arange(0, 30), torch.arange(30, p * p)
    labels = (torch.arange(p * p) // p + torch.arange(p * p) % p) % p
    fp = FourierProgress(key_frequencies=[2])
    metrics = fp.metrics(logits, p, None, {"train": train, "val": val})
    key = key_components(logits, p, [2])
    restricted = logits.mean(0, keepdim=True) + key
    assert metrics["fourier/restricted_loss"] == pytest.approx(
        float(F.cross_entropy(restricted[val], labels[val])))
    assert metrics["fourier/excluded_loss"] == pytest.approx(
        float(F.cross_entropy((logits - key)[train], labels[train])))


def test_key_frequencies_are_the_embeddings_strongest():
    p = 17
    t = torch.arange(p, dtype=torch.float64)
    weights = torch.stack([torch.cos(2 * math.pi * 3 * t / p), torch.sin(2 * math.pi * 3 * t / p),
                           0.5 * torch.cos(2 * math.pi * 7 * t / p), 0.1 * torch.ones(p)], dim=1)
    assert strongest_frequencies(weights, p, 2) == [3, 7]
    metrics = FourierProgress(n_key=2).metrics(circuit_logits(p, [3]), p, weights, {})
    assert [metrics["fourier/key_freq_0"], metrics["fourier/key_freq_1"]] == [3.0, 7.0]
    assert metrics["fourier/key_power"] == pytest.approx(1.0)  # the constant column is excluded


def test_on_a_transformer_through_the_callback():
    task = ModularArithmetic(ModularArithmeticConfig(p=11, train_fraction=0.5))
    task.setup()
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(d_model=16, n_heads=2, d_mlp=32), task.spec)
    module = DynamicsModule(model, task.spec.loss, OptimConfig(), log_every=1)
    row = fit_with([FourierProgress(n_key=3)], module, task).rows[0]  # before the first step
    assert "fourier/failed" not in row and 0 < row["fourier/key_power"] <= 1
    assert sorted(row[f"fourier/key_freq_{i}"] for i in range(3)) == sorted(
        set(row[f"fourier/key_freq_{i}"] for i in range(3)))
    # An untrained network: neither loss is far from log p.
    for key in ("fourier/restricted_loss", "fourier/excluded_loss"):
        assert abs(row[key] - math.log(11)) < 1.0
    logits = grid_logits(model, 11, "cpu", 50)
    x, y = task.table()
    np.testing.assert_allclose(logits[x[:, 0] * 11 + x[:, 1]].numpy(),
                               model(x).double().detach().numpy(), atol=1e-6)


def test_snapshots_are_remeasured_under_the_final_models_key_frequencies(tmp_path):
    import lightning as L

    from dynamics_lab.tracking.metrics import read_metrics
    from dynamics_lab.tracking.metrics_logger import LocalMetricsLogger

    task = ModularArithmetic(ModularArithmeticConfig(p=11, train_fraction=0.5), batch_size=None)
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(d_model=16, n_heads=2, d_mlp=32), task.spec)
    module = DynamicsModule(model, task.spec.loss, OptimConfig(lr=3e-3, weight_decay=1.0),
                            log_every=1)
    logger = LocalMetricsLogger(tmp_path)
    trainer = L.Trainer(max_steps=40, callbacks=[FourierProgress(every=10, n_key=3)],
                        logger=[logger], default_root_dir=tmp_path, enable_progress_bar=False,
                        enable_checkpointing=False, enable_model_summary=False,
                        val_check_interval=None, check_val_every_n_epoch=None)
    trainer.fit(module, datamodule=task)
    logger.finalize("success")
    frame = read_metrics(tmp_path).set_index("step")
    snapshots = sorted(int(p.stem.removeprefix("step_"))
                       for p in (tmp_path / "snapshots" / "fourier").glob("step_*.pt"))
    assert snapshots == [0, 10, 20, 30, 40]
    final = frame["fourier/final_restricted_loss"].dropna()
    assert list(final.index) == snapshots
    assert frame["fourier/final_excluded_loss"].notna().sum() == 5
    keys = [int(frame.loc[40, f"fourier/final_key_freq_{i}"]) for i in range(3)]
    # At the last step the final keys are the keys of the moment: both measures agree there.
    assert keys == [int(frame.loc[40, f"fourier/key_freq_{i}"]) for i in range(3)]
    assert final[40] == pytest.approx(frame.loc[40, "fourier/restricted_loss"], rel=1e-9)
    # Recomputed after the run from the snapshot files: the same numbers.
    again = final_key_losses(model, tmp_path / "snapshots" / "fourier", 11, keys,
                             split_indices(task, 11, "cpu"))
    assert [again[s]["fourier/final_restricted_loss"] for s in snapshots] == pytest.approx(
        list(final), rel=1e-9)
    earlier_keys = [int(frame.loc[0, f"fourier/key_freq_{i}"]) for i in range(3)]
    if earlier_keys != keys:  # a different key set at step 0 gives a different loss there
        assert final[0] != pytest.approx(frame.loc[0, "fourier/restricted_loss"], rel=1e-9)


def test_transformer_profile_loads_with_the_progress_measures():
    config = load_experiment("grokking", "transformer")
    assert config.model.name == "transformer" and "fourier_progress" in config.measure
    full = load_experiment("grokking", "full")
    assert full.model.name == "transformer" and full.task.p == 113


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, load_experiment("grokking", "held_out").sweep.seeds[0]])
def test_transformer_profile_groks_and_the_progress_measures_lead(tmp_path, seed):
    from dynamics_lab.phenomena.grokking.progress import progress_steps
    from dynamics_lab.tracking.metrics import read_metrics
    from dynamics_lab.tracking.rundir import RunDir
    from dynamics_lab.train.runner import execute

    config = load_experiment("grokking", "transformer", overrides=[f"seed={seed}"])
    run = RunDir.create(tmp_path / "run", config.to_dict(), config.seed)
    verdict = execute(run, echo=lambda *a: None).verdict
    assert verdict["detected"], verdict["summary"]
    steps = progress_steps(read_metrics(run.metrics_path))
    # Nanda et al.: memorization, then circuit formation (restricted loss down, excluded loss
    # up), then cleanup (test loss down, val acc up).
    assert steps["fit_step"] < steps["restricted_step"] < steps["test_step"]
    assert steps["excluded_step"] < steps["test_step"]
    assert steps["test_step"] <= verdict["generalization_step"]
    assert steps["keys"] == "final"  # under the final model's key frequencies, as Nanda et al.
