"""The modular-arithmetic task: labels, deterministic splits, resident batches."""

import pytest
import torch

from dynamics_lab.tasks.base import ResidentBatches
from dynamics_lab.tasks.modular_arithmetic import ModularArithmetic, ModularArithmeticConfig


def task(**kw):
    t = ModularArithmetic(ModularArithmeticConfig(**{"p": 7, **kw}))
    t.setup()
    return t


@pytest.mark.parametrize("op, fn", [("add", lambda a, b: a + b), ("sub", lambda a, b: a - b),
                                    ("mul", lambda a, b: a * b)])
def test_labels(op, fn):
    x, y = task(op=op).table()
    assert len(x) == 49
    assert all(int(c) == fn(int(a), int(b)) % 7 for (a, b), c in zip(x, y))


def test_division_uses_the_modular_inverse():
    x, y = task(op="div").table()
    assert len(x) == 42  # b = 0 excluded
    assert all((int(c) * int(b)) % 7 == int(a) for (a, b), c in zip(x, y))


def test_split_is_deterministic_in_the_data_seed():
    a, b, c = task(seed=1), task(seed=1), task(seed=2)
    assert torch.equal(a.splits["train"][0], b.splits["train"][0])
    assert not torch.equal(a.splits["train"][0], c.splits["train"][0])
    n_train = len(a.splits["train"][0])
    assert n_train == round(0.4 * 49) and n_train + len(a.splits["val"][0]) == 49
    train_pairs = {tuple(r.tolist()) for r in a.splits["train"][0]}
    assert not train_pairs & {tuple(r.tolist()) for r in a.splits["val"][0]}


def test_minibatches_cover_each_epoch_once():
    x, y = torch.arange(10), torch.arange(10)
    batches = iter(ResidentBatches(x, y, batch_size=5, seed=0))
    seen = torch.cat([next(batches)[0] for _ in range(2)])
    assert sorted(seen.tolist()) == list(range(10))
    full = next(iter(ResidentBatches(x, y, batch_size=None, seed=0)))
    assert full[0] is x


def test_probe_batch_is_fixed():
    t = task(p=11)
    assert torch.equal(t.probe_batch(5, seed=3)[0], t.probe_batch(5, seed=3)[0])
    assert len(t.probe_batch(10_000)[0]) == len(t.splits["train"][0])
