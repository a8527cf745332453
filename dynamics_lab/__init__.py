"""dynamics_lab: reproducible, measured training-dynamics phenomena."""

__version__ = "0.1.0"


def __getattr__(name: str):
    # Lazy, so `import dynamics_lab` (and `dynlab --help`) stays free of pandas and torch.
    if name in ("load_run", "load_sweep"):
        from dynamics_lab import frames

        return getattr(frames, name)
    raise AttributeError(f"module 'dynamics_lab' has no attribute {name!r}")
