"""dynamics_lab: reproducible, measured training-dynamics phenomena.

Notebook entry points (imported on first use, without torch or Lightning): `load_run`,
`load_sweep`, `load_sweeps` (run directories -> pandas tables) and `compare` (two sweeps'
verdicts side by side).
"""

__version__ = "0.1.0"

_LAZY = {"load_run": "frames", "load_sweep": "frames", "load_sweeps": "frames",
         "compare": "comparison"}
__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    # Lazy, so `import dynamics_lab` (and `dynlab --help`) stays free of pandas and torch.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"dynamics_lab.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'dynamics_lab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
