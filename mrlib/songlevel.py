r"""Triplet MatchNet's song-level decision: seeded test patches, mean f over patch pairs.

A song is represented by its 8 seeded test patches (the ones :mod:`mrlib.train` uses), each
embedded by the tower; a song pair's dissimilarity is the mean of :math:`f = \sigma(z)` over
the pairs of their patches, scored by the metric network; a triplet is fulfilled when
d(a, p) < d(a, n). Training is in :mod:`mrlib.matchnet_cv`, which re-exports these functions.

Notebook: 08_triplet_matchnet.ipynb
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch

from mrlib.baselines import _pairs, check_triplets
from mrlib.checks import check_indices, check_int
from mrlib.features import _available, check_features
from mrlib.layers import eval_mode
from mrlib.systems import embed_tracks

__all__ = ["embed_songs", "pair_dissimilarities", "triplet_dissimilarities"]


def check_available(features, idx: np.ndarray) -> None:
    """Fail early, naming the tracks, when some of ``idx`` have no features (skipped audio)."""
    missing = idx[~_available(features)[idx]]
    if len(missing):
        raise ValueError(f"{len(missing)} song(s) of the triplets have no features (skipped when "
                         f"extracting: see FeatureSet.report), e.g. catalog indices "
                         f"{missing[:5].tolist()}; drop the triplets that use them")


@torch.no_grad()
def embed_songs(model, features, idx, patch_len: int | None = None, n_patches: int = 8, *,
                batch_size: int = 512, progress: bool = False) -> np.ndarray:
    """Tower embeddings of each song's seeded test patches.

    Song ``i`` is represented by ``mrlib.features.test_patches(features[i], patch_len,
    n_patches, seed=i)`` — the patches :func:`mrlib.train.embed_tracks` uses too, so every
    system is scored on the same audio.

    Parameters
    ----------
    model : mrlib.models.TripletMatchNet
    features : FeatureSet or sequence of (n_bins, T) arrays
    idx : array_like of int, shape (n,)
        Catalog indices of the songs.
    patch_len : int, optional
        Default: the model's ``patch_len``.
    n_patches : int, default 8
    batch_size : int, default 512
        Patches per forward pass.
    progress : bool, default False

    Returns
    -------
    numpy.ndarray of float32, shape (n, n_patches, embedding_dim)

    Notebook: 08_triplet_matchnet.ipynb
    """
    check_features(features)
    idx = check_indices("idx", idx, len(features), "the tracks of features")
    check_available(features, idx)      # embed_tracks refuses an idx that is not 1-D
    check_int("n_patches", n_patches)
    patch_len = int(getattr(model, "patch_len")) if patch_len is None else int(patch_len)
    E = embed_tracks(model, SimpleNamespace(features=features), idx, patch_len, n_patches, int(batch_size),
                     per_patch=True, progress=progress)
    return E if len(E) else np.zeros((0, n_patches, int(getattr(model, "embedding_dim", 1))), dtype=np.float32)


@torch.no_grad()
def pair_dissimilarities(model, E, a, b, *, block: int = 4096) -> np.ndarray:
    """Song-level dissimilarity of song pairs: mean of ``f = sigmoid(z)`` over patch pairs.

    Parameters
    ----------
    model : mrlib.models.TripletMatchNet
    E : numpy.ndarray or torch.Tensor, shape (N, P, e)
        Patch embeddings of the songs (:func:`embed_songs`), row ``i`` = song ``i``.
    a, b : array_like of int, shape (M,)
        Rows of ``E``: the pairs ``(a[k], b[k])``.
    block : int, default 4096
        Song pairs per forward pass of the metric network.

    Returns
    -------
    numpy.ndarray of float64, shape (M,)
        ``mean_{i, j} f(x_i, y_j)`` in (0, 1): near 0 similar, near 1 dissimilar.

    Notebook: 08_triplet_matchnet.ipynb
    """
    E = torch.as_tensor(np.asarray(E, dtype=np.float32) if not isinstance(E, torch.Tensor) else E)
    if E.ndim != 3:
        raise ValueError(f"E must be (N, P, e) patch embeddings, got shape {tuple(E.shape)}")
    a, b = _pairs(a, b)
    check_indices("pair indices a, b", np.concatenate([a, b]), len(E), "rows of E")
    dev = next(model.parameters()).device
    E = E.to(dev, dtype=next(model.parameters()).dtype)
    out = np.empty(len(a), dtype=np.float64)
    with eval_mode(model):
        for s in range(0, len(a), block):
            ia = torch.as_tensor(a[s:s + block], device=dev)
            ib = torch.as_tensor(b[s:s + block], device=dev)
            z = model.metric_pairs(E[ia], E[ib])                         # (m, P_a, P_b)
            out[s:s + block] = torch.sigmoid(z.float()).mean(dim=(-2, -1)).cpu().numpy()
    return out


def triplet_dissimilarities(model, E, triplets) -> tuple[np.ndarray, np.ndarray]:
    """``(d(a, p), d(a, n))`` of each triplet by the song-level MatchNet decision.

    Parameters
    ----------
    model : mrlib.models.TripletMatchNet
    E : array, shape (N, P, e)
        Patch embeddings, row = catalog index (:func:`embed_songs` over all songs).
    triplets : numpy.ndarray of int, shape (M, 3)

    Returns
    -------
    d_ap, d_an : numpy.ndarray of float64, shape (M,)
        Feed them to :func:`mrlib.evaluate.constraints_fulfillment_rate`.

    Notebook: 08_triplet_matchnet.ipynb
    """
    t = check_triplets(triplets, len(E), distinct=True)
    return (pair_dissimilarities(model, E, t[:, 0], t[:, 1]),
            pair_dissimilarities(model, E, t[:, 0], t[:, 2]))
