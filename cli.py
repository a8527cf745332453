"""`python cli.py ...` is the same as `dynlab ...`."""
from dynamics_lab.cli import app

if __name__ == "__main__":
    app()
