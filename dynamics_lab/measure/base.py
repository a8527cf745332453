"""What every measurement callback shares: its Config, a schedule, a fixed probe set, one metrics
row per step, and no side effects on the model.

A measurement of step t describes the parameters after t optimizer updates, like the loss and
accuracy logs. It runs in `on_train_batch_end` once the update has made the step t (before that
step's validation, so EarlyStopping and ModelCheckpoint see the value of the parameters they
judge), in `on_train_batch_start` for a step not measured yet (step 0, a resumed run's first
step) and in `on_train_end` for the final parameters. Values go into `trainer.callback_metrics`
and, merged over all measurements of the step, to every logger once per step.
"""

from __future__ import annotations

import contextlib
import inspect
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import lightning as L
import torch
from pydantic import BaseModel, Field, model_validator
from torch import nn
from typing_extensions import override

from dynamics_lab.measure.schedule import Schedule
from dynamics_lab.offers import PROBE_BATCH, offered, refusal
from dynamics_lab.schema import NamedSection, validate_section

Batch = tuple[torch.Tensor, torch.Tensor]
# Accepted (input, target) key pairs of dict batches, in the order they are tried.
BATCH_KEYS = (("x", "y"), ("input", "target"), ("inputs", "targets"))


class MeasurementConfig(NamedSection):
    """Fields every measurement accepts; subclasses add their own."""

    every: int = Field(50, ge=1)  # steps between measurements (ignored when log_spaced)
    log_spaced: bool = False  # measure at ~per_decade log-spaced steps instead
    per_decade: int = Field(10, ge=1)
    # With log_spaced: also every n steps (dense early where curves change fast, regular later).
    also_every: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _also_every_needs_log_spacing(self):
        if self.also_every is not None and not self.log_spaced:
            raise ValueError("also_every adds steps to a log_spaced schedule; with log_spaced: "
                             "false measure with every (or set also_every: null)")
        return self
    probe_size: int = Field(1024, ge=1)  # examples in the fixed probe set
    probe_seed: int = 0


def split_batch(batch: Any) -> Batch:
    """(inputs, targets) of a batch: a tuple/list (first two items) or a dict (BATCH_KEYS)."""
    if isinstance(batch, Mapping):
        for x_key, y_key in BATCH_KEYS:
            if x_key in batch and y_key in batch:
                return batch[x_key], batch[y_key]
        pairs = ", ".join(f"{a!r}/{b!r}" for a, b in BATCH_KEYS)
        raise ValueError(f"a dict batch needs one of the key pairs {pairs}; got {list(batch)}")
    if isinstance(batch, (tuple, list)) and len(batch) >= 2:
        return batch[0], batch[1]
    raise ValueError(f"a batch is (inputs, targets, ...) or a dict, not {type(batch).__name__}")


def network_reference(model: nn.Module) -> torch.Tensor:
    """The parameter whose dtype and device the probe follows (the first trainable float one)."""
    params = list(model.parameters())
    if not params:
        raise ValueError(f"{type(model).__name__} has no parameters to measure")
    return next((p for p in params if p.requires_grad and p.is_floating_point()), params[0])


def to_network(batch: Batch, model: nn.Module) -> Batch:
    """The batch on the network's device, floating tensors in its parameters' dtype.

    The network's own dtype, not the LightningModule's: a module that casts only its inner
    network (`self.model = net.double()`) still reports float32 as `pl_module.dtype`.
    """
    ref = network_reference(model)
    return tuple(t.to(ref.device, ref.dtype) if t.is_floating_point() else t.to(ref.device)
                 for t in batch)  # type: ignore[return-value]


@contextlib.contextmanager
def measuring(model: nn.Module) -> Iterator[None]:
    """Gradients on, and every module's mode and every `.grad` exactly as before afterwards."""
    modes = {m: m.training for m in model.modules()}
    grads = {p: p.grad for p in model.parameters()}
    try:
        with torch.enable_grad():
            yield
    finally:
        for p, g in grads.items():
            p.grad = g
        for m, mode in modes.items():
            m.training = mode


def model_of(pl_module: L.LightningModule) -> nn.Module:
    """The network inside a LightningModule (`.model` by convention, else the module itself)."""
    return getattr(pl_module, "model", pl_module)


class Measurement(L.Callback):
    """Base callback: a subclass sets `Config` and `prefix` and implements `measure`.

    Args:
        config: the subclass's Config (as `MEASUREMENTS.build(section)` passes it); or leave it
            out and give the Config's fields as keywords, validated the same way.
        loss_fn: `(outputs, targets) -> mean loss`; default: the LightningModule's `loss_fn`.
        probe: a fixed probe batch, `(x, y)` or a dict with one of BATCH_KEYS; default: the
            datamodule's `probe_batch(probe_size, probe_seed)`, else the first training batch.

    Raises:
        ConfigError: a keyword that is not a field of the Config, or a bad value (one line).
        ValueError: at fit start, when the measurement needs a loss and none can be found.

    Example:
        >>> HessianSpectrum(HessianConfig(k=2)).config == HessianSpectrum(k=2).config
        True
    """

    Config: type[MeasurementConfig] = MeasurementConfig
    prefix: str = "measure"
    needs_loss: bool = False  # loss-based measurements check for a loss at fit start
    uses_probe: bool = True  # draw a probe set (and log its size) before the first measurement

    def __init__(self, config: MeasurementConfig | Mapping | None = None, /, *,
                 loss_fn: Callable | None = None, probe: Any = None, **fields: Any):
        self.config = self.validated(config, fields)
        self.loss_fn = loss_fn
        self.probe: Batch | None = None if probe is None else split_batch(probe)
        self._probe_size_logged = False
        self._last_step: int | None = None
        self._pending: dict[int, dict[str, float]] = {}

    @property
    def schedule(self) -> Schedule:
        """When to measure, derived from the config (so an edited config takes effect)."""
        return Schedule.of(self.config)

    @classmethod
    def validated(cls, config: BaseModel | Mapping | None, fields: dict) -> MeasurementConfig:
        """The Config from an instance, a mapping and/or keywords (keywords win), validated."""
        if isinstance(config, cls.Config) and not fields:
            return config
        data = dict(config) if isinstance(config, Mapping) else (
            config.model_dump() if config is not None else {})
        default = cls.Config.model_fields["name"].default
        data = {"name": default if isinstance(default, str) else cls.prefix, **data, **fields}
        return validate_section(cls.Config, data, f"measure.{data['name']}")  # type: ignore

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # help() and IDEs show the Config's fields as keyword arguments; they live in one place.
        super().__init_subclass__(**kwargs)
        own = inspect.signature(cls.__init__)
        params = [p for p in list(own.parameters.values())[1:] if p.kind != p.VAR_KEYWORD]
        base = list(inspect.signature(Measurement.__init__).parameters.values())[2:-1]
        params += [p for p in base if p.name not in {q.name for q in params}]
        params += [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY,
                                     default=inspect.Parameter.empty if f.is_required()
                                     else f.get_default(call_default_factory=True))
                   for name, f in cls.Config.model_fields.items()
                   if name != "name" and name not in {q.name for q in params}]
        cls.__signature__ = own.replace(parameters=params)  # type: ignore[attr-defined]

    # -- probe set ---------------------------------------------------------------------------

    def draw_probe(self, trainer: L.Trainer, pl_module: L.LightningModule) -> Batch:
        """A fixed probe set from the training data, drawn once."""
        size, seed = self.config.probe_size, self.config.probe_seed
        probe_batch = offered(getattr(trainer, "datamodule", None), PROBE_BATCH)
        if probe_batch is not None:
            return split_batch(probe_batch(size, seed))
        # A fresh iterator of a shuffling loader draws its seed from the global RNG: fork it,
        # so that drawing the probe does not change the training run.
        with torch.random.fork_rng(devices=[]):
            x, y = split_batch(next(iter(trainer.train_dataloader)))
        if len(x) < size:
            warnings.warn(f"{type(self).__name__}: probe_size={size}, but the probe is one "
                          f"training batch of {len(x)} examples; pass probe= (or give the "
                          "datamodule a probe_batch(size, seed) method) for a larger probe set",
                          stacklevel=2)
        return x[:size], y[:size]

    def loss(self, pl_module: L.LightningModule) -> Callable:
        fn = self.loss_fn or getattr(pl_module, "loss_fn", None)
        if fn is None:
            raise ValueError(f"{type(self).__name__} needs a loss: pass loss_fn=(outputs, "
                             "targets) -> mean loss, or give the LightningModule a `loss_fn`")
        return fn

    def task_needs(self) -> tuple[str, ...]:
        """What the task must offer for this measurement to measure at all (names from
        dynamics_lab/offers.py); checked at fit start."""
        return ()

    # -- hooks -------------------------------------------------------------------------------

    @override
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.needs_loss:
            self.loss(pl_module)
        refused = refusal(self.config.name, getattr(trainer, "datamodule", None),
                          self.task_needs())
        if refused:
            raise ValueError(refused)

    @override
    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule,
                             batch: Any, batch_idx: int) -> None:
        self._measure_if_due(trainer, pl_module, self.schedule(trainer.global_step))

    @override
    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        self._measure_if_due(trainer, pl_module, self.schedule(trainer.global_step))

    @override
    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # The final parameters are worth a measurement even off the schedule.
        self._measure_if_due(trainer, pl_module, True)

    def _measure_if_due(self, trainer: L.Trainer, pl_module: L.LightningModule,
                        due: bool) -> None:
        if due and trainer.global_step != self._last_step:
            self.record(trainer, pl_module)
        if self._flusher(trainer) is self:
            self.flush(trainer)

    # -- one measurement, one row per step ---------------------------------------------------

    def run(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, float]:
        """Measure now and log at once (outside a Trainer's hooks); returns the metrics."""
        metrics = self.record(trainer, pl_module)
        self._flusher(trainer).flush(trainer)
        return metrics

    def record(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, float]:
        """Measure at the current step; the values wait for this step's single logger call."""
        step = self._last_step = trainer.global_step
        model = model_of(pl_module)
        try:
            with measuring(model):
                if self.uses_probe:
                    if self.probe is None:
                        self.probe = self.draw_probe(trainer, pl_module)
                    self.probe = to_network(self.probe, model)
                metrics = self.measure(trainer, pl_module, model)
        except Exception as exc:  # a failed measurement is logged; training goes on
            warnings.warn(f"{type(self).__name__} failed at step {step}: {exc}", stacklevel=2)
            metrics = {f"{self.prefix}/failed": 1.0}
        if self.uses_probe and self.probe is not None and not self._probe_size_logged:
            metrics[f"{self.prefix}/probe_size"] = float(len(self.probe[0]))
            self._probe_size_logged = True
        callback_metrics = getattr(trainer, "callback_metrics", None)
        if isinstance(callback_metrics, dict):  # what EarlyStopping and ModelCheckpoint read
            callback_metrics.update({k: torch.tensor(v, dtype=torch.float64)
                                     for k, v in metrics.items()})
        self._flusher(trainer)._pending.setdefault(step, {}).update(metrics)
        return metrics

    def _flusher(self, trainer: L.Trainer) -> Measurement:
        """The last Measurement among the trainer's callbacks: it logs the merged row once all
        measurements have had the hook (callbacks run in list order); self outside a Trainer."""
        mine = [cb for cb in getattr(trainer, "callbacks", ()) if isinstance(cb, Measurement)]
        return mine[-1] if self in mine else self

    def flush(self, trainer: L.Trainer) -> None:
        """One `log_metrics` per logger and step for everything recorded since the last flush."""
        pending, self._pending = self._pending, {}
        for step in sorted(pending):
            for logger in getattr(trainer, "loggers", ()):
                logger.log_metrics(pending[step], step=step)

    def measure(self, trainer: L.Trainer, pl_module: L.LightningModule,
                model: nn.Module) -> dict[str, float]:
        raise TypeError(f"{type(self).__name__} must define measure()")

    # -- checkpointed state ------------------------------------------------------------------

    @override
    def state_dict(self) -> dict[str, Any]:
        """The last measured step: a step measured before a checkpoint is not measured again
        after resuming from it; and whether the probe size was logged, so that it is logged
        once per run, not once per process (subclasses add their own state)."""
        return {"last_step": self._last_step, "probe_size_logged": self._probe_size_logged}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._last_step = state_dict.get("last_step")
        self._probe_size_logged = bool(state_dict.get("probe_size_logged", False))
