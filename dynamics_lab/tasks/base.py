"""The shared shape of a task: tensors built once, kept on the device, served without collation."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

import lightning as L
import torch

from dynamics_lab.offers import PROBE_BATCH, SPLITS
from dynamics_lab.schema import NamedSection

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class TaskSpec:
    """What a model needs to know about a task's inputs and outputs."""

    input_shape: tuple[int, ...]
    n_outputs: int
    loss: str  # a key of dynamics_lab.losses.LOSSES
    n_tokens: int | None = None  # set when inputs are integer tokens


class ResidentBatches:
    """Endless batches from tensors already on the device: the full batch, or shuffled slices.

    Minibatch order comes from a seeded generator; `state_at(consumed)` captures where the
    stream stands after `consumed` batches were trained on, so a resumed run draws the same
    batches as an uninterrupted one even though Lightning prefetches ahead of training.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int | None, seed: int,
                 state: dict | None = None):
        self.x, self.y = x, y
        self.batch_size = batch_size if batch_size and batch_size < len(x) else None
        self.generator = torch.Generator().manual_seed(seed)
        self.epoch, self.skip = 0, 0
        self.epoch_states: dict[int, torch.Tensor] = {}  # generator state before each epoch
        if state:
            self.generator.set_state(state["generator"])
            self.epoch, self.skip = state["epoch"], state["skip"]

    @property
    def per_epoch(self) -> int:
        return len(self.x) // self.batch_size if self.batch_size else 1

    def __iter__(self) -> Iterator[Batch]:
        if self.batch_size is None:
            while True:
                yield self.x, self.y
        n, bs = len(self.x), self.batch_size
        while True:
            self.epoch_states[self.epoch] = self.generator.get_state()
            for old in [e for e in self.epoch_states if e < self.epoch - 4]:
                del self.epoch_states[old]  # prefetching never reaches this far back
            order = torch.randperm(n, generator=self.generator).to(self.x.device)
            for start in range(self.skip * bs, n - bs + 1, bs):
                idx = order[start : start + bs]
                yield self.x[idx], self.y[idx]
            self.epoch, self.skip = self.epoch + 1, 0

    def state_at(self, consumed: int) -> dict:
        """Where the stream resumes after `consumed` batches were trained on (since step 0)."""
        if self.batch_size is None:
            return {}
        epoch, skip = divmod(consumed, self.per_epoch)
        # An epoch whose order is not drawn yet starts from the generator's current state.
        generator = self.epoch_states.get(epoch, self.generator.get_state())
        return {"epoch": epoch, "skip": skip, "generator": generator}


class FixedBatches:
    """A finite sequence of batches; a class, not a list, since Lightning flattens nested lists."""

    def __init__(self, batches: list[Batch]):
        self.batches = batches

    def __iter__(self) -> Iterator[Batch]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class TensorTask(L.LightningDataModule):
    """Base task: subclasses define `Config`, `spec` and `build()` returning the tensor splits.

    `offers` declares what the task offers measurements beside its batches (dynamics_lab/
    offers.py): a subclass adds its own names (`offers = TensorTask.offers | {TEACHER}`), each
    of which it must define.
    """

    Config: type[NamedSection]
    offers: ClassVar[frozenset[str]] = frozenset({SPLITS, PROBE_BATCH})
    splits: dict[str, Batch]

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        defined = {name for k in cls.__mro__
                   for name in (*vars(k), *vars(k).get("__annotations__", {}))}
        undefined = sorted(set(cls.offers) - defined)
        if undefined:
            raise TypeError(f"{cls.__name__} offers {', '.join(undefined)} but does not define it")

    def __init__(self, config: NamedSection, batch_size: int | None = None, seed: int = 0,
                 eval_chunk: int = 65536):
        super().__init__()
        self.config = config
        self.batch_size = batch_size
        self.seed = seed
        self.eval_chunk = eval_chunk
        self.splits: dict[str, Batch] = {}
        self._train_batches: ResidentBatches | None = None
        self._batches_state: dict | None = None  # from a checkpoint, for the next stream

    @property
    def spec(self) -> TaskSpec:
        raise TypeError(f"{type(self).__name__} must define `spec`")

    def build(self) -> dict[str, Batch]:
        """Return {'train': (x, y), 'val': (x, y)} on the CPU, deterministic in config.seed."""
        raise TypeError(f"{type(self).__name__} must define `build()`")

    def setup(self, stage: str | None = None) -> None:
        if not self.splits:
            self.splits = self.build()

    def _device(self) -> torch.device:
        trainer = getattr(self, "trainer", None)
        return trainer.strategy.root_device if trainer is not None else torch.device("cpu")

    def _resident(self, split: str) -> Batch:
        # Moved once and cached, so later steps find the data already on the device.
        self.setup()
        device = self._device()
        x, y = self.splits[split]
        if x.device != device:
            x, y = x.to(device), y.to(device)
            self.splits[split] = (x, y)
        return x, y

    def train_dataloader(self) -> ResidentBatches:
        x, y = self._resident("train")
        self._train_batches = ResidentBatches(x, y, self.batch_size, self.seed, self._batches_state)
        return self._train_batches

    def state_dict(self) -> dict:
        """The minibatch stream's position; Lightning saves it in checkpoints for exact resumes."""
        batches = getattr(self, "_train_batches", None)  # None when a subclass serves its own
        if batches is None or self.trainer is None:
            return {}
        state = batches.state_at(self.trainer.global_step)
        return {"train_batches": state} if state else {}

    def load_state_dict(self, state: dict) -> None:
        self._batches_state = state.get("train_batches")

    def val_dataloader(self) -> list[FixedBatches]:
        """Evaluation sees the whole train split (index 0) and the held-out split (index 1)."""
        return [self._chunks(self._resident(s)) for s in ("train", "val")]

    def _chunks(self, batch: Batch) -> FixedBatches:
        x, y = batch
        return FixedBatches([(x[i : i + self.eval_chunk], y[i : i + self.eval_chunk])
                             for i in range(0, len(x), self.eval_chunk)])

    def probe_batch(self, n: int, seed: int = 0) -> Batch:
        """A fixed subset of the training split for measurements (all of it if n >= size)."""
        x, y = self._resident("train")
        if n >= len(x):
            return x, y
        idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:n]
        idx = idx.to(x.device)
        return x[idx], y[idx]
