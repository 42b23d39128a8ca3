"""Seeded k-fold splits of items (triplets), optionally keeping groups of items together.

A low module with no mrlib imports, so that both the comparisons (triplet folds) and the
evaluation (k-fold CFR) can use it.
"""
from __future__ import annotations

import numpy as np

from mrlib.checks import check_int

__all__ = ["kfold_indices"]


def kfold_indices(n: int, n_folds: int = 10, *, groups=None, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Seeded k-fold split of ``n`` items (triplets), optionally keeping groups together.

    Parameters
    ----------
    n : int
        Number of items.
    n_folds : int, default 10
    groups : array (n,), optional
        A group label per item (e.g. the anchor song): a group never straddles train and
        test, so a model cannot score by memorising a song it was trained on. Groups are
        shuffled and dealt to folds greedily by size, so folds are balanced in items.
    seed : int, default 0

    Returns
    -------
    list of ``(train_idx, test_idx)`` int64 arrays, one per fold; the test sets partition
    ``range(n)``.

    Notebook: 08_triplet_matchnet.ipynb
    """
    n = check_int("n", n)
    n_folds = check_int("n_folds", n_folds, minimum=2)
    rng = np.random.default_rng(check_int("seed", seed, 0))
    if groups is None:
        if n_folds > n:
            raise ValueError(f"n_folds={n_folds} exceeds the {n} items")
        fold_of = np.empty(n, dtype=np.int64)
        fold_of[rng.permutation(n)] = np.arange(n) % n_folds
    else:
        groups = np.asarray(groups)
        if groups.shape != (n,):
            raise ValueError(f"groups must have shape ({n},), got {groups.shape}")
        labels, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
        if n_folds > labels.size:
            raise ValueError(f"n_folds={n_folds} exceeds the {labels.size} distinct groups")
        # shuffle, then biggest groups first into the currently smallest fold (stable
        # sort keeps the shuffled order among equal sizes, so the seed matters)
        order = rng.permutation(labels.size)
        order = order[np.argsort(-counts[order], kind="stable")]
        sizes = np.zeros(n_folds, dtype=np.int64)
        group_fold = np.empty(labels.size, dtype=np.int64)
        for g in order:
            f = int(np.argmin(sizes))
            group_fold[g] = f
            sizes[f] += counts[g]
        fold_of = group_fold[inverse]
    return [(np.flatnonzero(fold_of != f), np.flatnonzero(fold_of == f)) for f in range(n_folds)]
