"""dynamics_lab: reproducible, measured training-dynamics phenomena."""

__version__ = "0.1.0"
