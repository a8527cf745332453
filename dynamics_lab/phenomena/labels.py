"""Config keys, metric names and verdict columns as axis labels in words, with units where they
have one."""

from __future__ import annotations

from dynamics_lab.phenomena.columns import verdict_key

WORDS = {
    "step": "training step", "optim.lr": "learning rate",
    "optim.weight_decay": "weight decay", "task.train_fraction": "training fraction of all pairs",
    "task.p": "modulus p", "model.width": "width (hidden units)", "model.depth": "depth (layers)",
    "seed": "seed", "model.init_scale": "initialization scale",
    "task.n_train": "training examples", "task.dim": "input dimension d",
    "task.k": "parity degree k", "task.n": "input dimension n",
    "model.alpha": "output scale alpha", "model.curvature": "second-order curvature Q",
    verdict_key("n_params"): "number of parameters", verdict_key("d"): "memory dimension d",
    verdict_key("T"): "training tokens T",
    "model.dim": "memory dimension d", "task.n_samples": "training tokens T",
    "train/acc": "training accuracy", "val/acc": "validation accuracy",
    "train/loss": "training loss", "val/loss": "test loss",
    "train/batch_loss": "training loss (minibatch)",
    "hessian/lambda_max": "top Hessian eigenvalue (sharpness)",
    "delay": "delay (generalization step / fit step, x)",
}


def words(key: str) -> str:
    """An axis label in words: a known key's label, else its last segment with spaces."""
    return WORDS.get(key) or key.rsplit(".", 1)[-1].rsplit("/", 1)[-1].replace("_", " ")
