"""Hessian-vector products against dense Hessians from torch.func.hessian, and side effects."""

import gc
import itertools
import weakref

import pytest
import torch
import torch.nn.functional as F
from conftest import dense_hessian
from torch import nn
from torch.func import functional_call

from dynamics_lab.linalg.hvp import flat_params, gradient, hessian_vector_product, unflatten_params

torch.set_num_threads(1)


def mlp(sizes: list[int], seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(sizes):
        layers += [nn.Linear(a, b), nn.Tanh()]
    return nn.Sequential(*layers[:-1]).double()


def mse(out, y):
    return F.mse_loss(out, y)


def saddle_loss(out, y):
    """MSE minus a large output-energy term: the most negative Hessian eigenvalue dominates."""
    return F.mse_loss(out, y) - 5.0 * (out**2).mean()


def data(n: int, d_in: int, classes: int | None = None, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d_in, generator=g, dtype=torch.float64)
    y = torch.randint(0, classes, (n,), generator=g) if classes else torch.randn(n, 1, generator=g)
    return x, y if classes else y.double()


CASES = {
    "regression": (lambda: mlp([4, 16, 16, 1]), mse, lambda: data(37, 4)),
    "classifier": (lambda: mlp([5, 12, 4]), F.cross_entropy, lambda: data(40, 5, classes=4)),
    "saddle": (lambda: mlp([4, 16, 16, 1]), saddle_loss, lambda: data(37, 4)),
}


@pytest.fixture(scope="module", params=list(CASES))
def case(request):
    make_model, loss_fn, make_batch = CASES[request.param]
    model, batch = make_model(), make_batch()
    return model, loss_fn, batch, dense_hessian(model, loss_fn, batch)


@pytest.mark.parametrize("method", ["reuse", "func", "double_backward", "auto"])
@pytest.mark.parametrize("chunk_size", [None, 8])
def test_hvp_matches_dense(case, method, chunk_size):
    model, loss_fn, batch, h = case
    hvp = hessian_vector_product(model, loss_fn, batch, chunk_size=chunk_size, method=method)
    g = torch.Generator().manual_seed(0)
    for _ in range(2):
        v = torch.randn(hvp.dim, generator=g, dtype=torch.float64)
        torch.testing.assert_close(hvp(v), h @ v, rtol=1e-10, atol=1e-12)
    # auto reuses one graph when unchunked; with 5 chunks reuse would hold all 5 graphs at once.
    auto = "reuse" if chunk_size is None else "func"
    assert hvp.method == (auto if method == "auto" else method)


def test_chunked_equals_unchunked(case):
    model, loss_fn, batch, _ = case
    v = torch.randn(sum(p.numel() for p in model.parameters()), dtype=torch.float64)
    full = hessian_vector_product(model, loss_fn, batch)(v)
    for chunk_size in (1, 5, 36, 1000):
        chunked = hessian_vector_product(model, loss_fn, batch, chunk_size=chunk_size)(v)
        torch.testing.assert_close(chunked, full, rtol=1e-12, atol=1e-14)


def test_gradient_matches_func_grad_and_chunks():
    model, batch = mlp([4, 16, 1]), data(30, 4)
    names, shapes, flat = flat_params(model)

    def loss(w):
        return mse(
            functional_call(model, unflatten_params(w, names, shapes), (batch[0],)), batch[1]
        )

    expected = torch.func.grad(loss)(flat)
    torch.testing.assert_close(gradient(model, mse, batch), expected)
    torch.testing.assert_close(gradient(model, mse, batch, chunk_size=7), expected)


def test_flat_params_round_trip_and_frozen_params_excluded():
    model = mlp([3, 4, 2])
    model[0].bias.requires_grad_(False)
    names, shapes, flat = flat_params(model)
    assert "0.bias" not in names and flat.numel() == 12 + 8 + 2
    views = unflatten_params(flat, names, shapes)
    for n, p in model.named_parameters():
        if p.requires_grad:
            assert torch.equal(views[n], p.detach())
    with pytest.raises(ValueError):
        unflatten_params(flat[:-1], names, shapes)


def test_frozen_params_hvp_matches_dense_over_trainable():
    model, batch = mlp([4, 8, 1]), data(20, 4)
    model[2].weight.requires_grad_(False)
    h = dense_hessian(model, mse, batch)
    hvp = hessian_vector_product(model, mse, batch)
    v = torch.randn(hvp.dim, dtype=torch.float64)
    assert hvp.dim == h.shape[0] == 4 * 8 + 8 + 1
    torch.testing.assert_close(hvp(v), h @ v)


def test_mixed_dtypes_rejected():
    model = mlp([3, 4, 2])
    model[2].float()
    with pytest.raises(ValueError, match="dtype"):
        hessian_vector_product(model, mse, data(5, 3))


class OldStyleTanh(torch.autograd.Function):
    """An autograd.Function without setup_context: autograd handles it, torch.func refuses it."""

    @staticmethod
    def forward(ctx, x):
        y = torch.tanh(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad_out):
        (y,) = ctx.saved_tensors
        return grad_out * (1 - y * y)


class CustomTanhNet(nn.Module):
    def __init__(self, twin: nn.Sequential):
        super().__init__()
        self.inp, self.out = twin[0], twin[2]

    def forward(self, x):
        return self.out(OldStyleTanh.apply(self.inp(x)))


@pytest.mark.parametrize("chunk_size, chosen", [(None, "reuse"), (7, "double_backward")])
def test_auto_handles_models_torch_func_refuses(chunk_size, chosen):
    reference, batch = mlp([4, 8, 1]), data(20, 4)
    model = CustomTanhNet(reference)
    v = torch.randn(sum(p.numel() for p in model.parameters()), dtype=torch.float64)
    with pytest.raises(RuntimeError, match="setup_context"):
        hessian_vector_product(model, mse, batch, method="func")(v)
    hvp = hessian_vector_product(model, mse, batch, chunk_size=chunk_size, method="auto")
    torch.testing.assert_close(hvp(v), dense_hessian(reference, mse, batch) @ v)
    assert hvp.method == chosen  # chunked: func fails on the first call, double backward takes over


@pytest.mark.parametrize("method", ["reuse", "func", "double_backward"])
def test_zero_hessian_of_linear_loss(method):
    model, batch = nn.Linear(3, 1).double(), data(6, 3)
    hvp = hessian_vector_product(model, lambda out, y: out.mean(), batch, method=method)
    assert torch.equal(hvp(torch.ones(4, dtype=torch.float64)), torch.zeros(4, dtype=torch.float64))


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("method", ["reuse", "func", "double_backward"])
def test_no_side_effects_on_grads_mode_params(training, method):
    model, batch = mlp([4, 16, 1]), data(20, 4)
    model.train(training)
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    grads = {n: (p.grad, p.grad.clone()) for n, p in model.named_parameters()}
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    with torch.no_grad():  # measurement hooks may run under no_grad; HVPs must still work
        hv = hessian_vector_product(model, mse, batch, method=method, chunk_size=7)(
            torch.ones(sum(p.numel() for p in params.values()), dtype=torch.float64)
        )
        gradient(model, mse, batch)
    assert torch.isfinite(hv).all() and hv.abs().sum() > 0
    assert model.training is training
    for n, p in model.named_parameters():
        assert p.grad is grads[n][0] and torch.equal(p.grad, grads[n][1])
        assert torch.equal(p, params[n]) and p.requires_grad


@pytest.mark.parametrize("method", ["auto", "func"])
def test_batchnorm_buffers_untouched_in_train_mode(method):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Linear(8, 1)).double()
    model.train()
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    batch = data(16, 4)
    hvp = hessian_vector_product(model, mse, batch, method=method)
    v = torch.ones(hvp.dim, dtype=torch.float64)
    hv = hvp(v)
    assert hvp.method == ("reuse" if method == "auto" else method) and torch.isfinite(hv).all()
    reference = hessian_vector_product(model, mse, batch, method="double_backward")(v)
    torch.testing.assert_close(hv, reference)
    for n, b in model.named_buffers():
        assert torch.equal(b, buffers[n])
    assert model.training


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_hvp_matches_cpu():
    model, batch = mlp([4, 16, 1]), data(20, 4)
    v = torch.randn(sum(p.numel() for p in model.parameters()), dtype=torch.float64)
    expected = hessian_vector_product(model, mse, batch)(v)
    model.cuda()
    hvp = hessian_vector_product(model, mse, tuple(t.cuda() for t in batch), chunk_size=7)
    out = hvp(v.cuda())
    assert out.is_cuda
    torch.testing.assert_close(out.cpu(), expected)


class CountingLoss:
    """mse counting its calls: a reuse operator evaluates the loss only when it builds a graph."""

    def __init__(self):
        self.calls = 0

    def __call__(self, out, y):
        self.calls += 1
        return mse(out, y)


@pytest.mark.parametrize("chunk_size, n_chunks", [(None, 1), (8, 5)])
def test_reuse_builds_once_and_repeats_exactly(chunk_size, n_chunks):
    model, batch = mlp([4, 16, 16, 1]), data(37, 4)
    h = dense_hessian(model, mse, batch)
    loss = CountingLoss()
    hvp = hessian_vector_product(model, loss, batch, chunk_size=chunk_size, method="reuse")
    assert loss.calls == 0  # built lazily, on the first matvec
    g = torch.Generator().manual_seed(0)
    vs = [torch.randn(hvp.dim, generator=g, dtype=torch.float64) for _ in range(3)]
    first = [hvp(v) for v in vs]
    again = [hvp(v) for v in reversed(vs)][::-1]
    assert loss.calls == n_chunks  # one forward per chunk for all six matvecs
    for v, a, b in zip(vs, first, again):
        assert torch.equal(a, b)
        torch.testing.assert_close(a, h @ v, rtol=1e-10, atol=1e-12)


def test_reuse_rebuilds_after_in_place_parameter_update():
    model, batch = mlp([4, 16, 1]), data(30, 4)
    loss = CountingLoss()
    hvp = hessian_vector_product(model, loss, batch, method="reuse")
    v = torch.randn(hvp.dim, dtype=torch.float64)
    before = hvp(v)
    with torch.no_grad():  # what an optimizer step does
        for p in model.parameters():
            p.mul_(1.5)
    after = hvp(v)
    assert loss.calls == 2 and not torch.allclose(before, after)
    torch.testing.assert_close(after, dense_hessian(model, mse, batch) @ v)
    model.load_state_dict({k: t * 2 for k, t in model.state_dict().items()})
    torch.testing.assert_close(hvp(v), dense_hessian(model, mse, batch) @ v)
    assert loss.calls == 3


def test_release_frees_the_graph_and_context_manager_releases():
    model, batch = mlp([4, 16, 1]), data(30, 4)
    v = torch.randn(sum(p.numel() for p in model.parameters()), dtype=torch.float64)
    with hessian_vector_product(model, mse, batch) as hvp:
        expected = hvp(v)
        graph_head = weakref.ref(hvp._graph._outputs[0])  # holds the activations alive
    gc.collect()
    assert graph_head() is None and not hvp._graph.built
    torch.testing.assert_close(hvp(v), expected, rtol=0, atol=0)  # a released operator rebuilds
    hvp.release()
    assert not hvp._graph.built


def test_unknown_method_rejected():
    with pytest.raises(ValueError, match="reuse"):
        hessian_vector_product(mlp([3, 4, 2]), mse, data(5, 3), method="graph")


# -- random layers: a fixed symmetric operator --------------------------------------------------


def dropout_mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 12), nn.Tanh(), nn.Dropout(0.3), nn.Linear(12, 1)).double()


def masked_twin_hessian(model, batch, seed):
    """Brute force: record the dropout mask the seeded forward draws, then the dense Hessian of
    the same network with that mask as a constant."""
    masks = []
    hook = model[2].register_forward_hook(lambda m, i, o: masks.append(o / i[0]))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model(batch[0])
    hook.remove()
    net = nn.Sequential(model[0], model[1], Scale(masks[0].detach()), model[3])
    return dense_hessian(net, mse, batch)


class Scale(nn.Module):
    def __init__(self, mask):
        super().__init__()
        self.mask = mask

    def forward(self, x):
        return x * self.mask


@pytest.mark.parametrize("method", ["reuse", "func", "double_backward"])
@pytest.mark.parametrize("chunk_size", [None, 7])
def test_dropout_hvp_is_a_fixed_symmetric_operator(method, chunk_size):
    model, batch = dropout_mlp().train(), data(20, 4)
    g = torch.Generator().manual_seed(2)
    u, v = (torch.randn(73, generator=g, dtype=torch.float64) for _ in range(2))
    rng = torch.get_rng_state()
    hvp = hessian_vector_product(model, mse, batch, method=method, chunk_size=chunk_size)
    hu, hv = hvp(u), hvp(v)
    torch.testing.assert_close(u @ hv, v @ hu, rtol=1e-12, atol=0)
    assert torch.equal(hvp(u), hu)  # the same masks at every call
    again = hessian_vector_product(model, mse, batch, method=method, chunk_size=chunk_size)
    torch.testing.assert_close(again(v), hv, rtol=1e-12, atol=1e-14)  # and in a new operator
    assert torch.equal(torch.get_rng_state(), rng) and model.training
    if chunk_size is None:
        torch.testing.assert_close(hv, masked_twin_hessian(model, batch, 0) @ v)
    # Without a seed each forward draws new masks: the operator is neither symmetric nor fixed.
    loose = hessian_vector_product(model, mse, batch, method=method, chunk_size=chunk_size,
                                   seed=None)
    if method != "reuse":  # reuse draws its masks once per graph
        assert not torch.allclose(u @ loose(v), v @ loose(u))


def test_all_methods_apply_the_same_fixed_mask_hessian():
    model, batch = dropout_mlp().train(), data(20, 4)
    v = torch.randn(73, dtype=torch.float64)
    for chunk_size in (None, 7):
        results = [hessian_vector_product(model, mse, batch, method=m, chunk_size=chunk_size,
                                          seed=3)(v) for m in ("reuse", "func", "double_backward")]
        for other in results[1:]:
            torch.testing.assert_close(other, results[0], rtol=1e-10, atol=1e-12)
    g_a, g_b = gradient(model, mse, batch, seed=3), gradient(model, mse, batch, seed=3)
    assert torch.equal(g_a, g_b)


def test_chunking_batchnorm_in_train_mode_is_refused():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Linear(8, 1)).double()
    batch = data(16, 4)
    with pytest.raises(ValueError, match=r"1 \(BatchNorm1d\)|1 normalize"):
        hessian_vector_product(model.train(), mse, batch, chunk_size=8)
    with pytest.raises(ValueError, match="batch statistics"):
        gradient(model.train(), mse, batch, chunk_size=8)
    # In eval mode BatchNorm is per example: chunked equals unchunked.
    model.eval()
    v = torch.randn(sum(p.numel() for p in model.parameters()), dtype=torch.float64)
    torch.testing.assert_close(hessian_vector_product(model, mse, batch, chunk_size=5)(v),
                               hessian_vector_product(model, mse, batch)(v))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_dropout_hvp_is_fixed_and_leaves_the_cuda_rng_alone():
    model, batch = dropout_mlp().cuda().train(), tuple(t.cuda() for t in data(20, 4))
    u, v = torch.randn(73, dtype=torch.float64).cuda(), torch.randn(73, dtype=torch.float64).cuda()
    state = torch.cuda.get_rng_state()
    for chunk_size in (None, 7):
        hvp = hessian_vector_product(model, mse, batch, method="func", chunk_size=chunk_size)
        torch.testing.assert_close(u @ hvp(v), v @ hvp(u), rtol=1e-12, atol=0)
        assert torch.equal(hvp(u), hvp(u))
    assert torch.equal(torch.cuda.get_rng_state(), state)
