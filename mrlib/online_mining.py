"""Online mining inside a batch of tracks (the paper's future work): the batch's ranks, its
valid triplets and the tensor rules that pick the hard or semi-hard ones.

:func:`mrlib.mining.online_triplets` puts these together for the online strategy named in
its ``mode``; each online strategy of :data:`mrlib.mining.STRATEGIES` holds its rule here
as its fast drawer (``select_hard``, ``select_semihard``) and a plain predicate of
:mod:`mrlib.mining_reference` as its reference.

Notebook: 03_mining.ipynb
"""
from __future__ import annotations

import torch

from mrlib.checks import check_margin

__all__ = ["valid_triplets", "triplet_distances", "select_hard",
           "select_semihard", "check_batch"]


def _batch_ranks(S_batch: torch.Tensor, batch_idx: torch.Tensor) -> torch.Tensor:
    """Ranks inside a batch, (B, B) int64: position (1-based) of ``y`` in ``x``'s list
    restricted to the batch, 0 on the diagonal; by decreasing similarity, ties by catalog
    index (the rule of the full ranked lists, so the restriction keeps their order).

    Both arguments come checked by :func:`check_batch`, on one device.
    """
    B, dev = S_batch.shape[0], S_batch.device
    # sort columns by catalog index first, so a stable sort on -S breaks ties by index;
    # float32 at least, never float64 (MPS has none)
    by_idx = torch.argsort(batch_idx, stable=True)
    key = -S_batch[:, by_idx].to(torch.promote_types(S_batch.dtype, torch.float32))
    key[torch.arange(B, device=dev), torch.argsort(by_idx)] = float("inf")  # self goes last
    order = by_idx[torch.sort(key, dim=1, stable=True).indices]
    ranks = torch.empty((B, B), dtype=torch.int64, device=dev)
    ranks.scatter_(1, order, torch.arange(1, B + 1, device=dev).expand(B, B))
    ranks.fill_diagonal_(0)
    return ranks


def check_batch(embeddings: torch.Tensor, oracle, batch_idx,
                margin: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate online mining's inputs; returns the oracle (similarities) and the batch's
    catalog indices as tensors on the embeddings' device.

    Notebook: 03_mining.ipynb
    """
    if not isinstance(embeddings, torch.Tensor) or not embeddings.is_floating_point() or embeddings.ndim != 2:
        raise TypeError("embeddings must be a floating-point torch.Tensor of shape (B, d)")
    B, dev = embeddings.shape[0], embeddings.device
    check_margin(margin)
    oracle = torch.as_tensor(oracle)
    if oracle.is_floating_point() and dev.type == "mps":
        oracle = oracle.float()                 # MPS has no float64
    oracle = oracle.to(dev)
    if oracle.shape != (B, B):
        raise ValueError(f"oracle must be (B, B) = {(B, B)}, got {tuple(oracle.shape)}")
    if batch_idx is None:
        batch_idx = torch.arange(B, device=dev)
    batch_idx = torch.as_tensor(batch_idx, device=dev).long()
    if batch_idx.shape != (B,) or torch.unique(batch_idx).numel() != B:
        raise ValueError(f"batch_idx must hold B = {B} distinct catalog indices")
    return oracle, batch_idx


def valid_triplets(oracle: torch.Tensor, batch_idx: torch.Tensor, n_pos: int) -> torch.Tensor:
    """(B, B, B) bool: ``p`` among ``a``'s first ``Np``, ``n`` ranked after ``p`` (in the
    lists of the batch's similarities ``oracle``).

    Notebook: 03_mining.ipynb
    """
    B, dev = oracle.shape[0], oracle.device
    order_rank = _batch_ranks(oracle, batch_idx)
    eye = torch.eye(B, dtype=torch.bool, device=dev)
    is_pos = (order_rank >= 1) & (order_rank <= n_pos) & ~eye                     # (a, p)
    later = order_rank[:, None, :] > order_rank[:, :, None]                        # (a, p, n)
    return is_pos[:, :, None] & later & ~eye[:, None, :]


def triplet_distances(embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``d(a, p)`` as (B, B, 1) and ``d(a, n)`` as (B, 1, B): squared Euclidean, as in the loss.

    Notebook: 03_mining.ipynb
    """
    x = embeddings.detach().to(torch.float32)
    sq = (x * x).sum(1)
    d = (sq[:, None] + sq[None, :] - 2.0 * x @ x.T).clamp_min(0)                 # (B, B)
    return d[:, :, None], d[:, None, :]


def select_hard(valid: torch.Tensor, d_ap: torch.Tensor, d_an: torch.Tensor, margin: float) -> torch.Tensor:
    """Hard: valid triplets whose negative is closer than the positive.

    Notebook: 03_mining.ipynb
    """
    return valid & (d_an < d_ap)


def select_semihard(valid: torch.Tensor, d_ap: torch.Tensor, d_an: torch.Tensor,
                    margin: float) -> torch.Tensor:
    """Semi-hard: valid triplets ordered but within the margin, ``d_ap < d_an < d_ap + margin``.

    Notebook: 03_mining.ipynb
    """
    return valid & (d_an > d_ap) & (d_an < d_ap + margin)
