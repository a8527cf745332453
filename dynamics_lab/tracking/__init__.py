"""Where runs land: run directories (status, paths, lock), crash-safe local metrics, checkpoints
and resuming, W&B wiring. Import the submodules; this package imports nothing heavy."""
