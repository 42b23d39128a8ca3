"""Plain loops: the teaching version of every mining strategy, the yardstick of the fast ones.

Each strategy of :data:`mrlib.mining.STRATEGIES` holds one of these as its ``reference``:

* an offline strategy, a function ``negatives(suffix, w, k, rng)`` choosing the ``k``
  negatives of one (anchor, positive) pair among ``suffix = [r_{i+1} ... r_L]`` (the ranks
  after the positive's), ``w`` their similarities ``S(t, ·)`` to the anchor;
  :func:`mine_reference` loops it over anchors and positives;
* an online strategy, a predicate ``keep(d_ap, d_an, margin)`` on the distances of one
  valid triplet; :func:`online_reference` loops it over a batch.

They are written to be read, not to be fast: a sort per anchor, a loop per pair.

Notebook: 03_mining.ipynb
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mrlib.similarity import ranked_list

__all__ = ["ranked_list_train", "neighbors_negatives", "uniform_negatives", "distance_negatives",
           "mine_reference", "hard_keep", "semihard_keep", "online_reference"]


def ranked_list_train(S: np.ndarray, t: int, train_idx: np.ndarray) -> np.ndarray:
    """``R(t)`` restricted to the training split: the other training tracks by decreasing
    ``S(t, ·)``, ties by catalog index.

    Notebook: 03_mining.ipynb
    """
    others = np.sort(np.asarray(train_idx))
    others = others[others != t]
    return others[ranked_list(S[t, others])]                 # ranked_list: ties by index


def neighbors_negatives(suffix: np.ndarray, w: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Neighbors: the ``k`` tracks right after the positive, in rank order.

    Notebook: 03_mining.ipynb
    """
    return suffix[:k]


def uniform_negatives(suffix: np.ndarray, w: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Random uniform: ``k`` of the suffix, uniformly, without replacement.

    Notebook: 03_mining.ipynb
    """
    return rng.choice(suffix, size=k, replace=False)


def distance_negatives(suffix: np.ndarray, w: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Distance-based: ``k`` of the suffix with ``P(n) ∝ S(t, n)``, without replacement.

    Gumbel-top-k on ``log S`` is successive sampling (each next negative follows the same
    law over the tracks not drawn yet); zero weights come after all others, in uniform order.

    Notebook: 03_mining.ipynb
    """
    w = np.asarray(w, dtype=np.float64)
    with np.errstate(divide="ignore"):
        key = np.where(w > 0, np.log(w) + 1e3, 0.0) + rng.gumbel(size=suffix.size)
    return suffix[np.argsort(-key)[:k]]


def mine_reference(S: np.ndarray, train_idx: np.ndarray, negatives: Callable, n_pos: int, n_neg: int,
                   seed: int = 0, anchors=None) -> np.ndarray:
    """Mine with a plain loop: for each anchor and each of its first ``Np`` tracks, ``Nn``
    negatives among the later ranks, chosen by ``negatives`` (a strategy's ``reference``).

    Returns int32 ``(M, 3)`` catalog indices (anchor, positive, negative), in the order of
    :func:`mrlib.mining.mine` (anchor, then positive rank).

    Notebook: 03_mining.ipynb
    """
    rng = np.random.default_rng(seed)
    out = [np.zeros((0, 3), dtype=np.int64)]
    for t in (np.sort(np.asarray(train_idx)) if anchors is None else anchors):
        R = ranked_list_train(S, t, train_idx)
        for i in range(1, min(n_pos, R.size) + 1):
            neg = negatives(R[i:], S[t, R[i:]], min(n_neg, R.size - i), rng)
            out.append(np.column_stack([np.full(neg.size, t), np.full(neg.size, R[i - 1]), neg]))
    return np.concatenate(out).astype(np.int32)


def hard_keep(d_ap: float, d_an: float, margin: float) -> bool:
    """Online hard: the negative is closer to the anchor than the positive.

    Notebook: 03_mining.ipynb
    """
    return d_an < d_ap


def semihard_keep(d_ap: float, d_an: float, margin: float) -> bool:
    """Online semi-hard: the negative is farther than the positive, but within the margin.

    Notebook: 03_mining.ipynb
    """
    return d_ap < d_an < d_ap + margin


def online_reference(E: np.ndarray, S_b: np.ndarray, idx: np.ndarray, keep: Callable, margin: float,
                     n_pos: int) -> np.ndarray:
    """Online mining by plain loops: valid triplets of a batch, kept by ``keep``.

    ``(a, p, n)`` is valid when ``p`` is among ``a``'s first ``Np`` in ``a``'s list restricted
    to the batch (decreasing ``S_b``, ties by catalog index ``idx``) and ``n`` comes after
    ``p``; distances are squared Euclidean. When no valid triplet is kept, all valid ones are
    returned (the fallback of :func:`mrlib.mining.online_triplets`).

    Returns int64 ``(K, 3)`` batch positions, sorted lexicographically.

    Notebook: 03_mining.ipynb
    """
    B = len(idx)
    d = [[float(((E[a] - E[b]) ** 2).sum()) for b in range(B)] for a in range(B)]
    valid, kept = [], []
    for a in range(B):
        lst = sorted((x for x in range(B) if x != a), key=lambda x: (-float(S_b[a, x]), int(idx[x])))
        for r, p in enumerate(lst[:n_pos]):
            for n in lst[r + 1:]:
                valid.append((a, p, n))
                if keep(d[a][p], d[a][n], margin):
                    kept.append((a, p, n))
    return np.array(sorted(kept or valid), dtype=np.int64).reshape(-1, 3)
