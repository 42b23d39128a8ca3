"""Tests of mrlib.autopool: limits (mean / max / min), invariances, dtypes, variants."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mrlib.autopool import AutoPool, autopool, autopool_penalty, pooling_position


# small tensors: one torch thread (see tests/conftest.py)
pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _loop_autopool(x: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Plain-loop reference: x (B, T, C), alpha (C,) -> (B, C), in float64 via math.exp."""
    b_, t_, c_ = x.shape
    out = np.zeros((b_, c_))
    for b in range(b_):
        for c in range(c_):
            z = [alpha[c] * x[b, t, c] for t in range(t_)]
            m = max(z)
            w = [math.exp(v - m) for v in z]
            s = sum(w)
            out[b, c] = sum(x[b, t, c] * w[t] / s for t in range(t_))
    return out


def _grid_inputs(rng: np.random.Generator, shape) -> torch.Tensor:
    """Random inputs in [0, 1] on a 0.2 grid (ties allowed).

    With a finite alpha, AutoPool approaches the max only as fast as the runner-up is far from
    it: the error is about sum_t d_t exp(-alpha d_t) over the gaps d_t. On a 0.2 grid every gap
    is 0 (a tie: exact) or >= 0.2, so alpha = 50 is within T * 0.2 * exp(-10) ~ 1e-5 of the max.
    """
    return torch.from_numpy(rng.integers(0, 6, size=shape) / 5.0).float()


def test_matches_plain_loop_reference():
    rng = np.random.default_rng(0)
    for _ in range(5):
        b, t, c = rng.integers(1, 6), rng.integers(1, 40), rng.integers(1, 9)
        x = rng.normal(size=(b, t, c)) * 3
        alpha = rng.normal(size=c) * 4
        ref = _loop_autopool(x, alpha)
        got = autopool(torch.tensor(x, dtype=torch.float32), torch.tensor(alpha, dtype=torch.float32), axis=1)
        np.testing.assert_allclose(got.numpy(), ref, atol=1e-5, rtol=1e-5)


def test_pooling_position_matches_a_plain_loop_and_its_landmarks():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 12, 5)) * 3
    alpha = torch.tensor([-3.0, -0.3, 0.0, 0.3, 3.0])
    xt = torch.tensor(x, dtype=torch.float64)
    y = autopool(xt, alpha, axis=1)
    got = pooling_position(y, xt, axis=1).numpy()
    for b in range(4):
        for c in range(5):
            seq, v = list(x[b, :, c]), float(y[b, c])
            mean = sum(seq) / len(seq)
            ref = (v - mean) / (max(seq) - mean) if v >= mean else (v - mean) / (mean - min(seq))
            assert got[b, c] == pytest.approx(ref, abs=1e-9)
    assert np.all(np.sign(got[:, [0, 1]]) == -1) and np.all(np.sign(got[:, [3, 4]]) == 1)
    assert np.all(np.abs(got[:, 4]) > np.abs(got[:, 3]))          # further from the mean with |alpha|
    xf = xt.float()
    for pooled, rho in ((xf.mean(1), 0.0), (xf.amax(1), 1.0), (xf.amin(1), -1.0)):
        np.testing.assert_allclose(pooling_position(pooled, xf, axis=1).numpy(), rho, atol=1e-6)
    flat = torch.full((2, 6, 3), 0.7)                               # a constant slice: 0, not 0 / 0
    assert pooling_position(autopool(flat, 5.0, axis=1), flat, axis=1).abs().max().item() == 0.0
    flat[0, 2, 1] = float("nan")                                    # a diverged slice is not "at the mean"
    rho = pooling_position(autopool(flat, 5.0, axis=1), flat, axis=1)
    assert torch.isnan(rho[0, 1]) and rho.isnan().sum().item() == 1
    # alpha has units, rho does not: scaling x by k and alpha by 1 / k leaves rho unchanged
    np.testing.assert_allclose(pooling_position(autopool(10 * xt, alpha / 10, axis=1), 10 * xt, axis=1).numpy(),
                               got, atol=1e-9)
    with pytest.raises(ValueError, match="shape"):
        pooling_position(y, xt, axis=2)


def test_hand_worked_example():
    x = torch.tensor([0.0, 1.0, 3.0])
    # alpha = 1: weights e^0, e^1, e^3 over their sum
    w = np.exp([0.0, 1.0, 3.0])
    expected = float((np.array([0.0, 1.0, 3.0]) * w).sum() / w.sum())
    assert autopool(x, 1.0).item() == pytest.approx(expected, abs=1e-6)
    assert autopool(x, 0.0).item() == pytest.approx(4.0 / 3.0, abs=1e-6)


@pytest.mark.parametrize("seed", range(5))
def test_limits_mean_max_min(seed):
    rng = np.random.default_rng(seed)
    x = _grid_inputs(rng, (4, 32, 6))                       # (B, T, C), pooled over T
    pool = AutoPool(6, axis=1)
    with torch.no_grad():
        torch.testing.assert_close(pool(x), x.mean(1), atol=1e-6, rtol=0)   # init alpha = 0
        pool.alpha.fill_(50.0)
        assert (pool(x) - x.amax(1)).abs().max().item() < 1e-3
        pool.alpha.fill_(-50.0)
        assert (pool(x) - x.amin(1)).abs().max().item() < 1e-3


def test_limits_on_continuous_inputs_need_larger_alpha():
    # Uniform [0, 1] inputs: the runner-up can be arbitrarily close to the max, so the limit is
    # approached as alpha grows; alpha = 1e4 is within 1e-3 here.
    torch.manual_seed(0)
    x = torch.rand(8, 64, 5)
    assert (autopool(x, 1e4, axis=1) - x.amax(1)).abs().max() < 1e-3
    assert (autopool(x, -1e4, axis=1) - x.amin(1)).abs().max() < 1e-3


def test_monotone_in_alpha():
    # dy/dalpha = Var_w(x) >= 0 (the variance under the softmax weights): y rises from min to max.
    torch.manual_seed(1)
    x = torch.randn(3, 20, 4)
    alphas = torch.linspace(-20, 20, 81)
    ys = torch.stack([autopool(x, a.item(), axis=1) for a in alphas])
    assert (ys.diff(dim=0) >= -1e-6).all()
    assert torch.all(ys[0] >= x.amin(1) - 1e-6) and torch.all(ys[-1] <= x.amax(1) + 1e-6)


def test_gradient_at_zero_is_the_variance():
    # d/dalpha sum_t x_t softmax(alpha x)_t at alpha = 0 equals the population variance of x.
    x = torch.tensor([0.2, 1.0, 3.0, -1.0])
    alpha = torch.zeros((), requires_grad=True)
    autopool(x, alpha).backward()
    assert alpha.grad.item() == pytest.approx(x.var(unbiased=False).item(), abs=1e-6)


def test_permutation_invariant():
    torch.manual_seed(2)
    x = torch.randn(5, 30, 7)
    pool = AutoPool(7, axis=1)
    with torch.no_grad():
        pool.alpha.copy_(torch.randn(7) * 3)
        perm = torch.randperm(30)
        torch.testing.assert_close(pool(x), pool(x[:, perm]), atol=1e-6, rtol=1e-6)


def test_any_axis():
    torch.manual_seed(3)
    x_btc = torch.randn(2, 11, 4)
    alpha = torch.randn(4)
    p_time_mid = AutoPool(4, axis=1)             # (B, T, C): channels default to the last axis
    p_time_last = AutoPool(4, axis=-1)           # (B, C, T): channels default to axis -2
    p_first = AutoPool(4, axis=0)                # (T, B, C): channels default to the last axis
    with torch.no_grad():
        for p in (p_time_mid, p_time_last, p_first):
            p.alpha.copy_(alpha)
        ref = p_time_mid(x_btc)
        torch.testing.assert_close(p_time_last(x_btc.transpose(1, 2)), ref)
        torch.testing.assert_close(p_first(x_btc.permute(1, 0, 2)), ref)
    # n_dims = 1 shares alpha and accepts a bare sequence
    shared = AutoPool(1)
    assert shared(torch.tensor([1.0, 2.0, 3.0])).item() == pytest.approx(2.0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs(dtype):
    torch.manual_seed(4)
    x = torch.rand(4, 200, 8)
    pool = AutoPool(8, axis=1)
    with torch.no_grad():
        for a in (0.0, 50.0, -50.0, 1e4):
            pool.alpha.fill_(a)
            y = pool(x.to(dtype))
            assert y.dtype == dtype
            assert torch.isfinite(y).all()
            ref = pool(x.to(dtype).float())
            torch.testing.assert_close(y.float(), ref, atol=1e-2, rtol=1e-2)
    # large half-precision values (near float16's max) do not overflow either
    big = torch.full((2, 10, 8), 6e4, dtype=torch.float16)
    pool.alpha.data.fill_(50.0)
    assert torch.isfinite(pool(big)).all()


def test_extreme_values_stable_and_grad_finite():
    x = torch.tensor([[1e4, -1e4, 0.0, 5e3]], requires_grad=True)
    for a in (-1e3, -50.0, 0.0, 50.0, 1e3):
        alpha = torch.tensor(a, requires_grad=True)
        y = autopool(x, alpha, axis=1)
        y.sum().backward()
        assert torch.isfinite(y).all() and torch.isfinite(x.grad).all() and torch.isfinite(alpha.grad).all()
        x.grad = None


def test_constrained_projects_alpha_and_can_recover():
    torch.manual_seed(5)
    x = torch.randn(16, 10, 3)
    pool = AutoPool(3, axis=1, constrained=True)
    opt = torch.optim.SGD(pool.parameters(), lr=1.0)
    # A loss that wants min pooling drives alpha down: the constraint holds it at 0 (the mean).
    for _ in range(5):
        opt.zero_grad()
        pool(x).sum().backward()
        opt.step()
    pool(x)  # forward in training mode projects the stored parameter
    assert (pool.alpha >= 0).all()
    torch.testing.assert_close(pool(x), x.mean(1), atol=1e-6, rtol=0)
    # ...and a loss that wants max pooling moves it up again from the boundary.
    for _ in range(5):
        opt.zero_grad()
        (-pool(x).sum()).backward()
        opt.step()
    assert (pool.effective_alpha > 0).all()
    # eval mode never writes the parameter but still clamps
    with torch.no_grad():
        pool.alpha.fill_(-3.0)
    pool.eval()
    torch.testing.assert_close(pool(x), x.mean(1), atol=1e-6, rtol=0)
    assert (pool.alpha == -3.0).all()


def test_penalty_and_model_sum():
    pool = AutoPool(4, l2=0.1)
    with torch.no_grad():
        pool.alpha.copy_(torch.tensor([1.0, -2.0, 0.5, 0.0]))
    assert pool.penalty().item() == pytest.approx(0.1 * (1 + 4 + 0.25))
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), pool, AutoPool(2, l2=1.0))
    assert autopool_penalty(model).item() == pytest.approx(0.1 * 5.25)
    assert autopool_penalty(torch.nn.Linear(2, 2)).item() == 0.0
    half = torch.nn.Sequential(torch.nn.Linear(2, 2), AutoPool(2, l2=1.0)).to(torch.bfloat16)
    assert autopool_penalty(half).dtype == torch.bfloat16     # the model's dtype, not float32
    # the penalty is differentiable w.r.t. alpha: 2 * l2 * alpha
    pool.penalty().backward()
    torch.testing.assert_close(pool.alpha.grad, 0.2 * pool.alpha.detach())


def test_errors_are_clear():
    with pytest.raises(ValueError, match="n_dims"):
        AutoPool(0)
    with pytest.raises(ValueError, match="l2"):
        AutoPool(3, l2=-1.0)
    with pytest.raises(ValueError, match="n_dims=3"):
        AutoPool(3, axis=1)(torch.randn(2, 5, 4))
    with pytest.raises(TypeError, match="floating"):
        autopool(torch.ones(3, dtype=torch.int64), 0.0)
    with pytest.raises(ValueError, match="out of range"):
        autopool(torch.randn(3, 4), 0.0, axis=2)
    with pytest.raises(ValueError, match="axis=-3 is out of range"):
        autopool(torch.randn(3, 4), 0.0, axis=-3)
    with pytest.raises(TypeError, match="axis must be an int"):
        autopool(torch.randn(3, 4), 0.0, axis=1.0)
    with pytest.raises(ValueError, match="empty"):
        autopool(torch.randn(3, 0), 0.0, axis=1)
    with pytest.raises(ValueError, match="channel axis"):
        AutoPool(4, axis=0)(torch.randn(4))


def test_printed_model_shows_pooling_settings():
    # print(model) is how a student inspects a network: the pooling layers say how they pool
    from mrlib.layers import ClampedMaxPool2d
    assert repr(AutoPool(4, constrained=True, l2=0.5)) == \
        "AutoPool(n_dims=4, axis=-1, constrained=True, l2=0.5)"
    assert repr(ClampedMaxPool2d((2, 4))) == "ClampedMaxPool2d(kernel=(2, 4))"
