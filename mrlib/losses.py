"""Losses of the two papers: triplet loss (2020), Triplet MatchNet rank + contrastive (2017), BCE.

* :func:`triplet_loss` — ``max(||a - p||^2 - ||a - n||^2 + margin, 0)`` on L2-normalised
  embeddings, averaged over all triplets of the batch, with the fraction of non-zero terms
  (Prétet et al. 2020, §3.2).
* :func:`matchnet_rank_loss` (psi), :func:`matchnet_contrastive_loss` (phi) and
  :func:`matchnet_loss` (their sum, averaged over the anchor song's patches) for one song
  triplet or a batch of them (Lu et al. 2017). They take the metric network's *logits* ``z``
  (``f = sigmoid(z)`` is a dissimilarity) and use ``log f = logsigmoid(z)``,
  ``log(1 - f) = logsigmoid(-z)``, so no value or gradient is NaN or infinite even when the
  sigmoid saturates.
* :func:`bce_loss` — binary cross-entropy for the auto-tagging baseline, on tags binarised at
  0.5 as in the 2020 paper.
"""
from __future__ import annotations

import numbers

import torch
import torch.nn.functional as F

from mrlib.checks import check_choice, check_margin

__all__ = [
    "triplet_loss",
    "matchnet_rank_loss",
    "matchnet_contrastive_loss",
    "matchnet_loss",
    "bce_loss",
]

_REDUCE = {"mean": torch.mean, "sum": torch.sum, "none": lambda values: values}


def _check_float(name: str, t: object, min_ndim: int = 1) -> None:
    if not isinstance(t, torch.Tensor) or not t.is_floating_point():
        got = t.dtype if isinstance(t, torch.Tensor) else type(t).__name__
        raise TypeError(f"{name} must be a floating-point torch.Tensor, got {got}")
    if t.ndim < min_ndim:
        raise ValueError(f"{name} needs at least {min_ndim} dimension(s), got shape {tuple(t.shape)}")
    if t.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(t.shape)})")


def triplet_loss(a: torch.Tensor, p: torch.Tensor, n: torch.Tensor, margin: float = 0.5,
                 reduction: str = "mean") -> tuple[torch.Tensor, torch.Tensor]:
    r"""Triplet loss of Prétet et al. (2020) and the share of triplets that still cost something.

    .. math::

        \mathcal{L}(a, p, n) = \max\big(\|f(a) - f(p)\|_2^2 - \|f(a) - f(n)\|_2^2 + \delta,\ 0\big)

    averaged over all triplets of the batch (``reduction="mean"``: easy triplets count as
    zeros, they are not dropped from the denominator). The paper does not state its reduction;
    the mean is what Keras, which it used (§3.4), does with a loss over a batch.

    Parameters
    ----------
    a, p, n : torch.Tensor, float, shape (B, d) (or any ``(..., d)`` that broadcasts)
        Anchor, positive and negative embeddings. Expected L2-normalised (the models do it),
        so squared distances lie in [0, 4]; the loss does not renormalise them.
    margin : float, default 0.5
        :math:`\delta` (2020 paper: 0.5, written :math:`\alpha` there). Must be >= 0.
    reduction : {"mean", "sum", "none"}, default "mean"
        ``"none"`` returns the per-triplet losses, shape (B,).

    Returns
    -------
    loss : torch.Tensor
        0-d (or (B,) for ``"none"``), differentiable.
    active_fraction : torch.Tensor
        0-d float, detached: the share of triplets with a non-zero loss. Near 1 with a loss
        near ``margin`` means collapse (all embeddings alike); near 0 means the triplets have
        become too easy to teach anything.

    Notebook: 04_losses.ipynb
    """
    for name, t in (("a", a), ("p", p), ("n", n)):
        _check_float(name, t)
    if not (a.shape[-1] == p.shape[-1] == n.shape[-1]):
        raise ValueError(f"a, p, n must share their embedding size, got {tuple(a.shape)}, "
                         f"{tuple(p.shape)}, {tuple(n.shape)}")
    try:   # a clear error instead of torch's size error from inside the subtraction
        torch.broadcast_shapes(a.shape[:-1], p.shape[:-1], n.shape[:-1])
    except RuntimeError:
        raise ValueError(f"a, p, n must have the same (or broadcastable) batch shape, got "
                         f"{tuple(a.shape)}, {tuple(p.shape)}, {tuple(n.shape)}") from None
    check_margin(margin)
    check_choice("reduction", reduction, _REDUCE)
    # From the differences, not from |x|^2 + |y|^2 - 2 x.y: the expansion loses all precision
    # for near-identical embeddings, exactly where a triplet loss lives.
    d_ap = (a - p).pow(2).sum(dim=-1)
    d_an = (a - n).pow(2).sum(dim=-1)
    per_triplet = torch.clamp(d_ap - d_an + margin, min=0.0)
    active = (per_triplet > 0).float().mean().detach()
    return _REDUCE[reduction](per_triplet), active


def _per_anchor_rank(z_pos: torch.Tensor, z_neg: torch.Tensor) -> torch.Tensor:
    # sigmoid is monotone, so max_{x+} f(x, x+) = sigmoid(max_{x+} z); sigmoid itself is
    # finite for any finite logit, so psi needs no log-space trick.
    d_pos_max = torch.sigmoid(z_pos.amax(dim=-1, keepdim=True))
    return torch.clamp(d_pos_max - torch.sigmoid(z_neg), min=0.0).mean(dim=-1)


def _per_anchor_contrastive(z_pos: torch.Tensor, z_neg: torch.Tensor) -> torch.Tensor:
    # The double mean over (x+, x-) of [log(1 - d+) + log d-] separates into
    # mean_{x+} log(1 - d+) + mean_{x-} log d-, which costs O(P+ + P-) instead of O(P+ P-).
    return -(F.logsigmoid(-z_pos).mean(dim=-1) + F.logsigmoid(z_neg).mean(dim=-1))


def _matchnet_reduce(fn, z_pos, z_neg, reduction: str) -> torch.Tensor:
    check_choice("reduction", reduction, _REDUCE)
    _check_float("z_pos", z_pos, 2)
    _check_float("z_neg", z_neg, 2)
    if z_pos.shape[:-1] != z_neg.shape[:-1]:
        raise ValueError("z_pos (..., P_x, P_pos) and z_neg (..., P_x, P_neg) must agree on all "
                         f"but the last dimension, got {tuple(z_pos.shape)} and {tuple(z_neg.shape)}")
    per_anchor = fn(z_pos, z_neg)            # (..., P_x)
    if reduction == "none":
        return per_anchor.mean(dim=-1)       # one value per song triplet, shape (...)
    # Every triplet of a dense batch has the same P_x, so the mean over all anchors equals
    # the mean over triplets of the per-triplet means.
    return per_anchor.mean() if reduction == "mean" else per_anchor.mean(dim=-1).sum()


def matchnet_rank_loss(z_pos, z_neg, reduction: str = "mean") -> torch.Tensor:
    r"""Triplet MatchNet rank-based loss :math:`\psi` (Lu et al. 2017), from logits.

    For each anchor patch :math:`x` of song :math:`\chi`, with :math:`f = \sigma(z)` the learned
    dissimilarity:

    .. math::

        \psi(x) = \frac{1}{|\{x^-\}|} \sum_{x^-} \max\{0,\ d^+_{\max} - f(x, x^-)\},
        \qquad d^+_{\max} = \max_{x^+} f(x, x^+)

    and the loss is :math:`\frac{1}{|\{x\}|}\sum_x \psi(x)`.

    Parameters
    ----------
    z_pos : torch.Tensor, float, shape (P_x, P_pos) or (B, P_x, P_pos)
        Logits ``z[i, j]`` of the pairs (anchor patch i, positive-song patch j).
    z_neg : torch.Tensor, float, shape (P_x, P_neg) or (B, P_x, P_neg)
        Logits of the pairs (anchor patch i, negative-song patch j).
    reduction : {"mean", "sum", "none"}, default "mean"
        Over song triplets; ``"none"`` returns one value per triplet, shape (B,) (0-d for a
        single triplet).

    Returns
    -------
    torch.Tensor

    Notebook: 04_losses.ipynb
    """
    return _matchnet_reduce(_per_anchor_rank, z_pos, z_neg, reduction)


def matchnet_contrastive_loss(z_pos, z_neg, reduction: str = "mean") -> torch.Tensor:
    r"""Triplet MatchNet contrastive loss :math:`\phi` (Lu et al. 2017), from logits.

    .. math::

        \phi(x) = -\frac{1}{|\{x^+\}|\,|\{x^-\}|}\sum_{x^+}\sum_{x^-}
                  \big[\log(1 - f(x, x^+)) + \log f(x, x^-)\big]

    with :math:`\log f = \log\sigma(z)` and :math:`\log(1 - f) = \log\sigma(-z)`, finite and with
    finite gradients for any finite logit. The loss is the mean of :math:`\phi(x)` over anchor
    patches. Shapes and ``reduction`` as in :func:`matchnet_rank_loss`.

    Returns
    -------
    torch.Tensor

    Notebook: 04_losses.ipynb
    """
    return _matchnet_reduce(_per_anchor_contrastive, z_pos, z_neg, reduction)


def matchnet_loss(z_pos, z_neg, reduction: str = "mean", return_parts: bool = False):
    r"""Triplet MatchNet loss: :math:`\frac{1}{|\{x\}|}\sum_x \big(\psi(x) + \phi(x)\big)`.

    The sum of :func:`matchnet_rank_loss` and :func:`matchnet_contrastive_loss` (Lu et al.
    2017, "Final loss"), for one song triplet ``(chi, chi+, chi-)`` or a batch of them.

    Parameters
    ----------
    z_pos, z_neg, reduction
        As in :func:`matchnet_rank_loss`.
    return_parts : bool, default False
        Also return ``{"rank": psi, "contrastive": phi}`` (detached), for logging.

    Returns
    -------
    loss : torch.Tensor
    parts : dict, only with ``return_parts=True``

    Notebook: 04_losses.ipynb
    """
    psi = matchnet_rank_loss(z_pos, z_neg, reduction)
    phi = matchnet_contrastive_loss(z_pos, z_neg, reduction)
    if return_parts:
        return psi + phi, {"rank": psi.detach(), "contrastive": phi.detach()}
    return psi + phi


def bce_loss(outputs: torch.Tensor, targets: torch.Tensor, threshold: float | None = 0.5,
             from_logits: bool = True, reduction: str = "mean") -> torch.Tensor:
    r"""Binary cross-entropy for the auto-tagging baseline (AT).

    .. math::

        \ell = -\frac{1}{Bm}\sum_{b,k} \big[y_{bk}\log\sigma(z_{bk}) + (1 - y_{bk})\log\sigma(-z_{bk})\big]

    The 2020 paper trains on tag likelihoods binarised at 0.5 (``threshold=0.5``);
    ``threshold=None`` keeps the soft likelihoods as targets.

    Parameters
    ----------
    outputs : torch.Tensor, float, shape (B, m)
        Logits (``from_logits=True``, numerically safe: use :meth:`ATBaseline.logits`) or
        probabilities in [0, 1] (``from_logits=False``).
    targets : torch.Tensor, shape (B, m)
        Tag likelihoods in [0, 1] (or {0, 1}).
    threshold : float in (0, 1) or None, default 0.5
        Targets ``>= threshold`` become 1, the others 0.
    from_logits : bool, default True
    reduction : {"mean", "sum", "none"}
        ``"mean"`` averages over batch and tags (Keras' convention); ``"none"`` gives (B, m).

    Returns
    -------
    torch.Tensor

    Notebook: 04_losses.ipynb
    """
    _check_float("outputs", outputs)
    if not isinstance(targets, torch.Tensor):
        raise TypeError(f"targets must be a torch.Tensor, got {type(targets).__name__}")
    if outputs.shape != targets.shape:
        raise ValueError(f"outputs {tuple(outputs.shape)} and targets {tuple(targets.shape)} "
                         "must have the same shape")
    check_choice("reduction", reduction, _REDUCE)
    y = targets.to(device=outputs.device, dtype=outputs.dtype)
    if not ((y >= 0) & (y <= 1)).all():   # written so that NaN fails too
        raise ValueError("targets must lie in [0, 1] (NaN is refused)")
    if threshold is not None:
        if not isinstance(threshold, numbers.Real) or not 0 < threshold < 1:
            raise ValueError(f"threshold must be in (0, 1) or None, got {threshold!r}")
        y = (y >= threshold).to(outputs.dtype)
    if not from_logits and not ((outputs >= 0) & (outputs <= 1)).all():   # NaN fails too
        raise ValueError("with from_logits=False, outputs must be probabilities in [0, 1]")
    bce = F.binary_cross_entropy_with_logits if from_logits else F.binary_cross_entropy
    return _REDUCE[reduction](bce(outputs, y, reduction="none"))
