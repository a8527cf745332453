"""Hidden progress: its detector (registered as `hidden_progress`) and, on demand, figures."""

from dynamics_lab.phenomena.hidden_progress.detector import (
    HiddenProgress,
    HiddenProgressConfig,
    HiddenProgressVerdict,
)

__all__ = ["HiddenProgress", "HiddenProgressConfig", "HiddenProgressVerdict"]
