"""The closed lists of choices the command line and the config both accept: launchers, devices.

Kept apart from config.py so that the command line names them without importing pydantic."""

LAUNCHERS = ("local", "slurm", "wandb")  # sweep/launch.py runs each
DEVICES = ("auto", "cpu", "cuda")  # trainer.device and --device
