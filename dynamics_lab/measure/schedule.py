"""When a measurement runs: a step predicate every measurement callback owns, which fused
training steps also read to know how far they may run without skipping a measurement."""

from __future__ import annotations

import math


class Schedule:
    """When to measure: every n steps from step 0, or log-spaced (0, 1, 2, ... 10, 13, ...),
    optionally with every `also_every` steps on top."""

    def __init__(self, every: int = 50, log_spaced: bool = False, per_decade: int = 10,
                 also_every: int | None = None):
        self.every, self.log_spaced, self.per_decade = every, log_spaced, per_decade
        self.also_every = also_every

    @classmethod
    def of(cls, config) -> Schedule:
        """From a MeasurementConfig's every, log_spaced, per_decade and also_every."""
        return cls(config.every, config.log_spaced, config.per_decade, config.also_every)

    def __call__(self, step: int) -> bool:
        if not self.log_spaced:
            return step % self.every == 0
        if self.also_every and step % self.also_every == 0:
            return True
        if step < self.per_decade:
            return True
        # step is on the grid if it is the rounding of 10^(i / per_decade) for some integer i.
        i = round(self.per_decade * math.log10(step))
        return any(round(10 ** (j / self.per_decade)) == step for j in (i - 1, i, i + 1))
