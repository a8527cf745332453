"""Model shapes and knobs."""

import torch

from dynamics_lab.models.mlp import MLP, MLPConfig
from dynamics_lab.models.transformer import Transformer, TransformerConfig
from dynamics_lab.tasks.base import TaskSpec

TOKENS = TaskSpec(input_shape=(2,), n_outputs=11, loss="cross_entropy", n_tokens=11)


def test_mlp_on_tokens_embedding_and_one_hot():
    x = torch.randint(0, 11, (5, 2))
    for embed_dim in (4, None):
        for act in ("relu", "gelu", "quadratic", "tanh"):
            model = MLP(MLPConfig(embed_dim=embed_dim, width=8, activation=act), TOKENS)
            assert model(x).shape == (5, 11)
    one_hot = MLP(MLPConfig(embed_dim=None, width=8), TOKENS)
    assert one_hot.net[0].in_features == 22


def test_mlp_on_vectors_and_init_scale():
    spec = TaskSpec(input_shape=(3,), n_outputs=2, loss="squared")
    torch.manual_seed(0)
    base = MLP(MLPConfig(width=4, depth=2), spec)
    torch.manual_seed(0)
    scaled = MLP(MLPConfig(width=4, depth=2, init_scale=0.1), spec)
    for p, q in zip(base.parameters(), scaled.parameters()):
        assert torch.allclose(q, 0.1 * p)
    assert base(torch.randn(6, 3)).shape == (6, 2)


def test_transformer_reads_tokens_plus_equals():
    model = Transformer(TransformerConfig(d_model=16, n_heads=4, d_mlp=32), TOKENS)
    out = model(torch.randint(0, 11, (5, 2)))
    assert out.shape == (5, 11)
    assert model.embed.num_embeddings == 12
