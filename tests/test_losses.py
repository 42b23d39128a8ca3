"""Tests of mrlib.losses against plain-loop references, hand-worked cases and failure modes."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mrlib.losses import (bce_loss, matchnet_contrastive_loss, matchnet_loss, matchnet_rank_loss,
                          triplet_loss)


# small tensors: one torch thread (see tests/conftest.py)
pytestmark = pytest.mark.usefixtures("torch_one_thread")


# ------------------------------------------------------------------ plain-loop references
def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


def _loop_triplet(a, p, n, margin):
    losses = []
    for i in range(a.shape[0]):
        d_ap = sum((a[i, k] - p[i, k]) ** 2 for k in range(a.shape[1]))
        d_an = sum((a[i, k] - n[i, k]) ** 2 for k in range(a.shape[1]))
        losses.append(max(d_ap - d_an + margin, 0.0))
    return sum(losses) / len(losses), sum(v > 0 for v in losses) / len(losses)


def _loop_psi_phi(z_pos: np.ndarray, z_neg: np.ndarray) -> tuple[float, float]:
    """The MatchNet loss written literally for one song triplet, with f = sigmoid(z) (moderate logits)."""
    p_x, p_pos = z_pos.shape
    p_neg = z_neg.shape[1]
    psis, phis = [], []
    for i in range(p_x):
        d_max = max(_sigmoid(z_pos[i, j]) for j in range(p_pos))
        psis.append(sum(max(0.0, d_max - _sigmoid(z_neg[i, k])) for k in range(p_neg)) / p_neg)
        acc = 0.0
        for j in range(p_pos):
            for k in range(p_neg):
                acc += math.log(1.0 - _sigmoid(z_pos[i, j])) + math.log(_sigmoid(z_neg[i, k]))
        phis.append(-acc / (p_pos * p_neg))
    return sum(psis) / p_x, sum(phis) / p_x


def _unit(rng, b, d):
    x = rng.normal(size=(b, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# ------------------------------------------------------------------ triplet loss
def test_triplet_matches_loop_on_random_sizes():
    rng = np.random.default_rng(0)
    for _ in range(20):
        b, d = int(rng.integers(1, 65)), int(rng.integers(1, 33))
        margin = float(rng.uniform(0, 1.5))
        a, p, n = (_unit(rng, b, d) for _ in range(3))
        ref_loss, ref_active = _loop_triplet(a, p, n, margin)
        loss, active = triplet_loss(*(torch.tensor(v, dtype=torch.float32) for v in (a, p, n)), margin=margin)
        assert loss.item() == pytest.approx(ref_loss, abs=1e-5)
        assert active.item() == pytest.approx(ref_active, abs=1e-6)
        per, _ = triplet_loss(*(torch.tensor(v) for v in (a, p, n)), margin=margin, reduction="none")
        assert per.shape == (b,)
        s, _ = triplet_loss(*(torch.tensor(v) for v in (a, p, n)), margin=margin, reduction="sum")
        assert s.item() == pytest.approx(ref_loss * b, abs=1e-5 * b)


def test_triplet_hand_worked():
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    p = torch.tensor([[0.0, 1.0], [-1.0, 0.0]])
    n = torch.tensor([[-1.0, 0.0], [0.0, 1.0]])
    per, active = triplet_loss(a, p, n, margin=0.5, reduction="none")
    # row 0: d_ap = 2, d_an = 4 -> max(2 - 4 + 0.5, 0) = 0 ; row 1: 4 - 2 + 0.5 = 2.5
    torch.testing.assert_close(per, torch.tensor([0.0, 2.5]))
    assert active.item() == 0.5


def test_triplet_gradient_is_analytic():
    # Active triplet: dL/da = 2 (n - p), dL/dp = 2 (p - a), dL/dn = 2 (a - n)  (per triplet, sum)
    rng = np.random.default_rng(1)
    a, p, n = (torch.tensor(_unit(rng, 6, 5), requires_grad=True) for _ in range(3))
    per, _ = triplet_loss(a, p, n, margin=10.0, reduction="none")   # huge margin: all active
    per.sum().backward()
    torch.testing.assert_close(a.grad, 2 * (n - p).detach())
    torch.testing.assert_close(p.grad, 2 * (p - a).detach())
    torch.testing.assert_close(n.grad, 2 * (a - n).detach())


def test_triplet_ordered_costs_less_than_swapped():
    rng = np.random.default_rng(2)
    for _ in range(20):
        a = _unit(rng, 32, 16)
        p = a + 0.3 * rng.normal(size=a.shape)
        n = rng.normal(size=a.shape)
        p /= np.linalg.norm(p, axis=1, keepdims=True)
        n /= np.linalg.norm(n, axis=1, keepdims=True)
        a, p, n = (torch.tensor(v) for v in (a, p, n))
        good, _ = triplet_loss(a, p, n)
        bad, _ = triplet_loss(a, n, p)
        assert good.item() < bad.item()


def test_triplet_collapse_stuck_at_margin():
    # Every embedding identical: both distances 0, loss = margin on every triplet, and the
    # gradient 2 (n - p) etc. is exactly zero -> nothing moves the model out of collapse.
    e = torch.nn.functional.normalize(torch.ones(10, 8), dim=1)
    a, p, n = (e.clone().requires_grad_(True) for _ in range(3))
    loss, active = triplet_loss(a, p, n, margin=0.5)
    assert loss.item() == pytest.approx(0.5) and active.item() == 1.0
    loss.backward()
    for t in (a, p, n):
        assert t.grad.abs().max().item() == 0.0


def test_triplet_loss_distances_stable_for_close_points():
    x = torch.tensor([[1.0, 0.0]], dtype=torch.float32)
    y = torch.tensor([[1.0, 1e-4]], dtype=torch.float32)
    # margin 0 and n = a: the loss is d(a, p) itself, 1e-8 (the expansion would give 0)
    per, _ = triplet_loss(x, y, x, margin=0.0, reduction="none")
    assert per.item() == pytest.approx(1e-8, rel=1e-3)


def test_triplet_errors():
    x = torch.randn(4, 3)
    with pytest.raises(ValueError, match="margin"):
        triplet_loss(x, x, x, margin=-1.0)
    with pytest.raises(ValueError, match="reduction"):
        triplet_loss(x, x, x, reduction="avg")
    with pytest.raises(ValueError, match="embedding size"):
        triplet_loss(x, x, torch.randn(4, 5))
    with pytest.raises(TypeError, match="floating"):
        triplet_loss(x, x, torch.ones(4, 3, dtype=torch.long))


# ------------------------------------------------------------------ Triplet MatchNet
def test_matchnet_matches_loop_on_random_sizes():
    rng = np.random.default_rng(3)
    for _ in range(12):
        p_x, p_pos, p_neg = (int(v) for v in rng.integers(1, 41, size=3))
        z_pos = rng.normal(size=(p_x, p_pos)) * 3
        z_neg = rng.normal(size=(p_x, p_neg)) * 3
        ref_psi, ref_phi = _loop_psi_phi(z_pos, z_neg)
        zp, zn = torch.tensor(z_pos, dtype=torch.float32), torch.tensor(z_neg, dtype=torch.float32)
        assert matchnet_rank_loss(zp, zn).item() == pytest.approx(ref_psi, abs=1e-5)
        assert matchnet_contrastive_loss(zp, zn).item() == pytest.approx(ref_phi, abs=1e-5)
        total, parts = matchnet_loss(zp, zn, return_parts=True)
        assert total.item() == pytest.approx(ref_psi + ref_phi, abs=1e-5)
        assert parts["rank"].item() == pytest.approx(ref_psi, abs=1e-5)


def test_matchnet_batched_matches_loop():
    rng = np.random.default_rng(4)
    for _ in range(4):
        b = int(rng.integers(1, 65))
        p_x, p_pos, p_neg = (int(v) for v in rng.integers(1, 9, size=3))
        z_pos = rng.normal(size=(b, p_x, p_pos)) * 3
        z_neg = rng.normal(size=(b, p_x, p_neg)) * 3
        refs = [_loop_psi_phi(z_pos[i], z_neg[i]) for i in range(b)]
        zp, zn = torch.tensor(z_pos, dtype=torch.float32), torch.tensor(z_neg, dtype=torch.float32)
        per_psi = matchnet_rank_loss(zp, zn, reduction="none")
        per_phi = matchnet_contrastive_loss(zp, zn, reduction="none")
        assert per_psi.shape == (b,)
        np.testing.assert_allclose(per_psi.numpy(), [r[0] for r in refs], atol=1e-5)
        np.testing.assert_allclose(per_phi.numpy(), [r[1] for r in refs], atol=1e-5)
        mean_ref = float(np.mean([r[0] + r[1] for r in refs]))
        assert matchnet_loss(zp, zn).item() == pytest.approx(mean_ref, abs=1e-5)
        assert matchnet_loss(zp, zn, reduction="sum").item() == pytest.approx(mean_ref * b, abs=1e-4)


@pytest.mark.parametrize("zp_val,zn_val", [(100.0, -100.0), (-100.0, 100.0), (100.0, 100.0),
                                           (-100.0, -100.0)])
def test_matchnet_finite_at_saturated_logits(zp_val, zn_val):
    zp = torch.full((4, 3), zp_val, requires_grad=True)
    zn = torch.full((4, 5), zn_val, requires_grad=True)
    for fn in (matchnet_rank_loss, matchnet_contrastive_loss, matchnet_loss):
        loss = fn(zp, zn)
        assert torch.isfinite(loss)
        zp.grad = zn.grad = None
        loss.backward()
        assert torch.isfinite(zp.grad).all() and torch.isfinite(zn.grad).all()
    # worst case: positive pairs scored fully dissimilar, negatives fully similar
    if zp_val > 0 and zn_val < 0:
        # phi = -(logsigmoid(-100) + logsigmoid(-100)) = 200 exactly; psi = 1 - 0 ~ 1
        assert matchnet_contrastive_loss(zp, zn).item() == pytest.approx(200.0, rel=1e-6)
        assert matchnet_rank_loss(zp, zn).item() == pytest.approx(1.0, abs=1e-6)
        # the contrastive gradient does not vanish where the sigmoid saturates
        zp.grad = None
        matchnet_contrastive_loss(zp, zn).backward()
        assert zp.grad.abs().min().item() > 0


def test_matchnet_ordered_costs_less_than_swapped():
    rng = np.random.default_rng(5)
    for _ in range(20):
        p_x, p_pos, p_neg = (int(v) for v in rng.integers(1, 12, size=3))
        zp = torch.tensor(rng.normal(-2, 1, size=(p_x, p_pos)), dtype=torch.float32)   # similar
        zn = torch.tensor(rng.normal(2, 1, size=(p_x, p_neg)), dtype=torch.float32)    # dissimilar
        assert matchnet_loss(zp, zn).item() < matchnet_loss(zn, zp).item()
        assert matchnet_contrastive_loss(zp, zn).item() < matchnet_contrastive_loss(zn, zp).item()


def test_rank_loss_is_blind_to_a_constant_metric():
    # The failure mode behind phi: psi = 0 whenever f is constant, whatever the constant.
    for c in (-5.0, 0.0, 3.0):
        zp, zn = torch.full((4, 6), c), torch.full((4, 7), c)
        assert matchnet_rank_loss(zp, zn).item() == 0.0
        assert matchnet_contrastive_loss(zp, zn).item() > 0.0


def test_matchnet_errors():
    with pytest.raises(ValueError, match="agree"):
        matchnet_loss(torch.randn(3, 4), torch.randn(2, 4))
    with pytest.raises(ValueError, match="at least 2"):
        matchnet_loss(torch.randn(3), torch.randn(3))
    with pytest.raises(TypeError):
        matchnet_loss(torch.randn(3, 4), [torch.randn(3, 4)])
    with pytest.raises(ValueError, match="empty"):
        matchnet_loss(torch.randn(3, 0), torch.randn(3, 2))


# ------------------------------------------------------------------ BCE
def test_bce_matches_formula_and_binarises():
    torch.manual_seed(0)
    z = torch.randn(7, 11) * 4
    t = torch.rand(7, 11)
    y = (t >= 0.5).float()
    s = torch.sigmoid(z.double())
    ref = -(y * torch.log(s) + (1 - y) * torch.log(1 - s)).mean()
    assert bce_loss(z, t).item() == pytest.approx(ref.item(), abs=1e-5)
    assert bce_loss(torch.sigmoid(z), t, from_logits=False).item() == pytest.approx(ref.item(), abs=1e-4)
    soft = -(t * F.logsigmoid(z) + (1 - t) * F.logsigmoid(-z)).mean()
    assert bce_loss(z, t, threshold=None).item() == pytest.approx(soft.item(), abs=1e-5)
    assert bce_loss(z, t, reduction="none").shape == (7, 11)


def test_bce_finite_at_saturation_and_errors():
    z = torch.tensor([[100.0, -100.0]], requires_grad=True)
    loss = bce_loss(z, torch.tensor([[0.0, 1.0]]))
    loss.backward()
    assert loss.item() == pytest.approx(100.0) and torch.isfinite(z.grad).all()
    with pytest.raises(ValueError, match="same shape"):
        bce_loss(torch.randn(2, 3), torch.rand(2, 4))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        bce_loss(torch.randn(2, 3), torch.full((2, 3), 2.0))
    with pytest.raises(ValueError, match="threshold"):
        bce_loss(torch.randn(2, 3), torch.rand(2, 3), threshold=1.5)


@pytest.mark.parametrize("margin", [float("nan"), float("inf"), -0.1])
def test_triplet_loss_and_online_mining_refuse_a_margin_that_is_not_finite_and_non_negative(margin):
    # a NaN margin gave a NaN loss with an active share of 0, an infinite one an infinite loss
    from mrlib.mining import online_triplets

    a = torch.nn.functional.normalize(torch.randn(4, 3), dim=-1)
    with pytest.raises(ValueError, match="margin must be a finite number >= 0"):
        triplet_loss(a, a.flip(0), a.roll(1, 0), margin=margin)
    with pytest.raises(ValueError, match="margin must be a finite number >= 0"):
        online_triplets(a, torch.rand(4, 4), margin=margin)



def test_batch_shape_mismatch_and_nan_targets_are_refused_at_the_door():
    a, p, n = torch.randn(5, 4), torch.randn(3, 4), torch.randn(5, 4)
    with pytest.raises(ValueError, match="a, p, n must have the same"):    # was torch's RuntimeError
        triplet_loss(a, p, n)
    triplet_loss(a[:1], a, a)                                          # broadcasting still works
    # NaN passed the [0, 1] check ((y < 0) | (y > 1) is False for NaN) and was binarised to 0
    with pytest.raises(ValueError, match="targets must lie in"):
        bce_loss(torch.randn(2, 3), torch.full((2, 3), float("nan")))
    with pytest.raises(ValueError, match="probabilities in"):
        bce_loss(torch.full((2, 3), float("nan")), torch.rand(2, 3), from_logits=False)
