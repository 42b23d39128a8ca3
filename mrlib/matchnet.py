r"""The 2017 protocol: Triplet MatchNet trained on song triplets, scored by CFR in k-fold CV.

Lu et al. (ICASSP 2017) learn a dissimilarity :math:`f(x, y) \in (0, 1)` between two patches
with a network of two parts (:class:`mrlib.models.TripletMatchNet`): a residual *tower* that
embeds each patch, and a *metric* network on the concatenated pair. A training example is a
song triplet :math:`(\chi, \chi^+, \chi^-)` — "the anchor song sounds more like the positive
than like the negative", from the odd-one-out votes (:mod:`mrlib.comparisons`) — represented by
patch sets :math:`\{x\}, \{x^+\}, \{x^-\}`; the loss is the rank loss :math:`\psi` plus the
contrastive loss :math:`\phi` over all patch pairs (:func:`mrlib.losses.matchnet_loss`). A song
pair is decided by the mean of :math:`f` over its patch pairs.

:mod:`mrlib.train` trains Triplet MatchNet on triplets *mined from the oracle* over a catalog's
training split (the 2020 protocol). The 2017 protocol instead trains on a *given* list of
constraints — the training part of one cross-validation fold — and scores the held-out
constraints, ten times. This module provides that loop:

* :class:`MatchNetConfig` — the knobs (patch length, patches per song, width, epochs, ...);
* :func:`train_matchnet` — train on song triplets (catalog indices), return the model and a
  per-epoch log;
* :func:`embed_songs`, :func:`pair_dissimilarities`, :func:`triplet_dissimilarities` — the
  song-level decision: 8 seeded test patches per song (the same ones :mod:`mrlib.train` uses),
  mean of :math:`f` over the 8 x 8 patch pairs;
* :func:`cross_validate_matchnet` — k-fold CFR (fit on each fold's training triplets, score its
  test triplets), in the :class:`mrlib.baselines.CVResult` form the baselines use, keeping each
  fold's tower embeddings so that the baselines can be run on them (the slides' "Proposed"
  features, :func:`cross_validate_features`);
* :func:`generalization_curve_matchnet` — CFR against the share of training triplets, on the
  very training subsets :func:`mrlib.baselines.generalization_curve` draws for the same seed.

Notebook: 08_triplet_matchnet.ipynb
"""
from __future__ import annotations

import dataclasses
import math
import numbers
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

__all__ = [
    "CoarseFeatures",
    "coarsen_features",
    "MatchNetConfig",
    "MatchNetRun",
    "MatchNetCV",
    "train_matchnet",
    "embed_songs",
    "pair_dissimilarities",
    "triplet_dissimilarities",
    "cross_validate_matchnet",
    "cross_validate_features",
    "generalization_curve_matchnet",
]


# =============================================================================================
# A coarser time-frequency grid for CPU lessons
# =============================================================================================
class CoarseFeatures:
    """Log-CQT features pooled onto a coarser grid, indexed by catalog index like a FeatureSet.

    Attributes
    ----------
    freq_pool, time_pool : int
        Bins and frames merged into one.
    available : numpy.ndarray of bool, shape (N,)
        Tracks that have features.

    Notes
    -----
    ``features[i]`` is a float32 array ``(n_bins // freq_pool, T_i // time_pool)`` in dB;
    indexing a track without features raises ``KeyError``. Plain arrays inside, so it pickles
    cheaply to worker processes.

    Notebook: 08_triplet_matchnet.ipynb
    """

    def __init__(self, arrays: Sequence[np.ndarray | None], freq_pool: int, time_pool: int):
        self._arrays = list(arrays)
        self.freq_pool, self.time_pool = int(freq_pool), int(time_pool)
        self.available = np.array([a is not None for a in self._arrays], dtype=bool)

    def __len__(self) -> int:
        return len(self._arrays)

    def __getitem__(self, i) -> np.ndarray:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise TypeError(f"CoarseFeatures is indexed by an integer catalog index, got {i!r}")
        a = self._arrays[int(i)]
        if a is None:
            raise KeyError(f"track {int(i)} has no features (skipped when extracting)")
        return a

    @property
    def n_bins(self) -> int:
        """Bins of the coarse grid (0 if no track has features)."""
        first = next((a for a in self._arrays if a is not None), None)
        return 0 if first is None else int(first.shape[0])

    def __repr__(self) -> str:
        return (f"CoarseFeatures({int(self.available.sum())}/{len(self)} tracks, "
                f"{self.n_bins} bins, pool=({self.freq_pool}, {self.time_pool}))")


def coarsen_features(features, freq_pool: int = 4, time_pool: int = 8, *,
                     progress: bool = False) -> CoarseFeatures:
    r"""Pool log-CQT features over blocks of ``freq_pool`` bins x ``time_pool`` frames.

    Each block's *power* is averaged and taken back to dB,
    :math:`10 \log_{10}\big(\operatorname{mean}\, 10^{X/10}\big)`, so a merged bin holds the
    energy of the bins it replaces (a mean of dB values would be a geometric mean of powers,
    biased towards the quiet bins). Trailing frames that do not fill a block are dropped.

    Why: the tower's cost grows with the patch area. With ``(4, 8)`` the default grid (96 bins,
    12 per octave, 43.07 frames/s) becomes 24 bins (3 per octave) at 5.38 frames/s, so a
    3-second patch costs 32 times less — what lets ten-fold cross-validation of Triplet
    MatchNet run in minutes on a laptop CPU. Timbre (spectral envelope), loudness and slow
    rhythm survive; pitch detail does not. ``(1, 1)`` keeps the grid (the paper's setting).

    Parameters
    ----------
    features : mrlib.features.FeatureSet or sequence of arrays
        ``features[i]`` -> (n_bins, T_i) log-power in dB; tracks without features (``available``
        False) stay without.
    freq_pool : int, default 4
        Must divide ``n_bins``.
    time_pool : int, default 8
        At most the shortest track's frame count.
    progress : bool, default False

    Returns
    -------
    CoarseFeatures
        ``[i]`` -> float32 (n_bins // freq_pool, T_i // time_pool).

    Notebook: 08_triplet_matchnet.ipynb
    """
    _check_features(features)
    for name, value in (("freq_pool", freq_pool), ("time_pool", time_pool)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    available = getattr(features, "available", None)
    available = np.ones(len(features), bool) if available is None else np.asarray(available, bool)
    out: list[np.ndarray | None] = []
    for i in tqdm(range(len(features)), desc="coarsen", unit="track", disable=not progress):
        if not available[i]:
            out.append(None)
            continue
        x = np.asarray(features[i], dtype=np.float64)
        if x.ndim != 2:
            raise ValueError(f"feature {i} must be (n_bins, T), got shape {x.shape}")
        F, T = x.shape
        if F % freq_pool:
            raise ValueError(f"freq_pool={freq_pool} must divide the {F} bins")
        if T < time_pool:
            raise ValueError(f"track {i} has {T} frames, fewer than time_pool={time_pool}")
        T2 = T // time_pool
        power = 10.0 ** (x[:, :T2 * time_pool] / 10.0)
        power = power.reshape(F // freq_pool, freq_pool, T2, time_pool).mean(axis=(1, 3))
        out.append((10.0 * np.log10(power)).astype(np.float32))
    return CoarseFeatures(out, freq_pool, time_pool)


# =============================================================================================
# Configuration
# =============================================================================================
@dataclass
class MatchNetConfig:
    """Everything that defines one Triplet MatchNet training on song triplets.

    Parameters
    ----------
    patch_len : int, default 32
        Patch length in CQT frames (32 frames = 0.74 s at 43.07 frames/s; the 2020 paper's
        patches are 512 frames).
    patches_per_song : int, default 4
        Patches drawn at random from each song of a training triplet (``|{x}|``, ``|{x+}|``,
        ``|{x-}|``); the loss sees ``P x P`` positive and ``P x P`` negative pairs per triplet.
        Fresh patches are drawn at every step.
    test_patches : int, default 8
        Seeded patches per song at test time (``mrlib.features.test_patches`` with
        ``seed = catalog index``: the same as :mod:`mrlib.train`); a song pair is scored by the
        mean of ``f`` over the ``test_patches ** 2`` patch pairs.
    width : float, default 0.0625
        Channel multiplier of :class:`mrlib.models.TripletMatchNet` (1.0: tower widths 64, 128,
        256, 512 and a 512-unit metric network; 0.0625: 4, 8, 16, 32 and 32 units).
    embedding_dim : int, default 32
        Size of the tower's patch embedding.
    metric_hidden : int, default 512
        Hidden units of the metric network at ``width=1`` (scaled by ``width``).
    epochs : int, default 10
        Passes over the training triplets.
    batch_size : int, default 16
        Song triplets per optimiser step (the last batch of an epoch may be smaller).
    lr : float, default 1e-3
        Adam's learning rate.
    weight_decay : float, default 0.0
        Adam's L2 penalty.
    seed : int, default 0
        Seeds the weights, the triplet order and the training patches.
    device : str, default "cpu"
        ``"auto"`` (:func:`mrlib.train.pick_device`), ``"cpu"``, ``"cuda"``, ``"mps"``...
    eval_batch : int, default 512
        Patches per forward pass when embedding test patches.

    Notebook: 08_triplet_matchnet.ipynb
    """

    patch_len: int = 32
    patches_per_song: int = 4
    test_patches: int = 8
    width: float = 0.0625
    embedding_dim: int = 32
    metric_hidden: int = 512
    epochs: int = 10
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 0
    device: str = "cpu"
    eval_batch: int = 512

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> "MatchNetConfig":
        """Check every field; raise ``TypeError``/``ValueError`` naming the bad one.

        Notebook: 08_triplet_matchnet.ipynb
        """
        for name, low in (("patch_len", 1), ("patches_per_song", 1), ("test_patches", 1),
                          ("embedding_dim", 1), ("metric_hidden", 1), ("epochs", 0),
                          ("batch_size", 1), ("seed", 0), ("eval_batch", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise TypeError(f"MatchNetConfig.{name} must be an int, got {value!r}")
            if value < low:
                raise ValueError(f"MatchNetConfig.{name} must be >= {low}, got {value}")
            setattr(self, name, int(value))
        for name in ("width", "lr", "weight_decay"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
                raise TypeError(f"MatchNetConfig.{name} must be a finite number, got {value!r}")
            setattr(self, name, float(value))
        if self.width <= 0:
            raise ValueError(f"MatchNetConfig.width must be > 0 (1.0 = full size), got {self.width}")
        if not 0 < self.lr < 1:
            raise ValueError(f"MatchNetConfig.lr must be in (0, 1), got {self.lr}")
        if self.weight_decay < 0:
            raise ValueError(f"MatchNetConfig.weight_decay must be >= 0, got {self.weight_decay}")
        if not isinstance(self.device, str) or not self.device:
            raise TypeError(f"MatchNetConfig.device must be a device string such as 'cpu' or "
                            f"'auto', got {self.device!r}")
        return self

    def replace(self, **changes) -> "MatchNetConfig":
        """A validated copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """The fields as a plain dict (for ``mrlib.suite.record``)."""
        return dataclasses.asdict(self)


# =============================================================================================
# Input checks
# =============================================================================================
def _check_config(config) -> "MatchNetConfig":
    """The default config for None; a validated MatchNetConfig, or a TypeError."""
    config = MatchNetConfig() if config is None else config
    if not isinstance(config, MatchNetConfig):
        raise TypeError(f"config must be a MatchNetConfig, got {type(config).__name__}")
    config.validate()
    return config


def _check_features(features) -> None:
    if not hasattr(features, "__getitem__") or not hasattr(features, "__len__"):
        raise TypeError("features must be indexable by catalog index (a mrlib.features.FeatureSet "
                        f"or a sequence of (n_bins, T) arrays), got {type(features).__name__}")
    if len(features) == 0:
        raise ValueError("features is empty")


def _check_triplets(triplets, n: int, name: str = "triplets", allow_empty: bool = False) -> np.ndarray:
    t = np.asarray(triplets)
    if t.ndim != 2 or t.shape[1] != 3 or (len(t) == 0 and not allow_empty):
        raise ValueError(f"{name} must be a non-empty (M, 3) array of catalog indices "
                         f"(anchor, positive, negative), got shape {t.shape}")
    if len(t) and not np.issubdtype(t.dtype, np.integer):
        raise TypeError(f"{name} must hold integer catalog indices, got dtype {t.dtype}")
    if len(t) and (t.min() < 0 or t.max() >= n):
        raise ValueError(f"{name} indices must lie in [0, {n}) (the features' tracks), got "
                         f"[{t.min()}, {t.max()}]")
    if len(t) and ((t[:, 0] == t[:, 1]) | (t[:, 0] == t[:, 2]) | (t[:, 1] == t[:, 2])).any():
        raise ValueError(f"every row of {name} needs three different songs")
    return t.astype(np.int64, copy=False)


def _check_available(features, idx: np.ndarray) -> None:
    """Fail early, naming the tracks, when some of ``idx`` have no features (skipped audio)."""
    available = getattr(features, "available", None)
    if available is None:
        return
    missing = idx[~np.asarray(available, dtype=bool)[idx]]
    if len(missing):
        raise ValueError(f"{len(missing)} song(s) of the triplets have no features (skipped when "
                         f"extracting: see FeatureSet.report), e.g. catalog indices "
                         f"{missing[:5].tolist()}; drop the triplets that use them")


def _n_bins(features, idx: np.ndarray) -> int:
    first = np.asarray(features[int(idx[0])])
    if first.ndim != 2:
        raise ValueError(f"each feature must be a (n_bins, T) array, got shape {first.shape}")
    return int(first.shape[0])


def _device(name: str) -> torch.device:
    from mrlib.train import pick_device

    return pick_device(name)


# =============================================================================================
# Training
# =============================================================================================
@dataclass
class MatchNetRun:
    """A trained Triplet MatchNet and how its training went.

    Attributes
    ----------
    model : mrlib.models.TripletMatchNet
        In eval mode, on the configured device.
    history : pandas.DataFrame
        One row per epoch: ``epoch`` (1-based), ``loss`` (mean of psi + phi over the epoch's
        steps), ``rank`` (psi), ``contrastive`` (phi), ``active`` (share of (anchor patch,
        negative patch) pairs that still pay rank loss, i.e. ``f(x, x-) < max f(x, x+)``: the
        sign that training is alive), ``seconds`` and ``patches_per_s`` (wall clock).
    config : MatchNetConfig
    n_triplets : int
        Training triplets.

    Notebook: 08_triplet_matchnet.ipynb
    """

    model: Any
    history: pd.DataFrame
    config: MatchNetConfig
    n_triplets: int


def _batch_patches(features, songs: np.ndarray, patch_len: int, n: int,
                   rng: np.random.Generator) -> np.ndarray:
    """``(len(songs), n, n_bins, patch_len)`` float32 random patches, one draw per song."""
    from mrlib.features import random_patches

    return np.stack([random_patches(features[int(s)], patch_len, n, rng) for s in songs]
                    ).astype(np.float32, copy=False)


def train_matchnet(
    features,
    triplets,
    config: MatchNetConfig | None = None,
    *,
    progress: bool = True,
) -> MatchNetRun:
    r"""Train a Triplet MatchNet on song triplets (Lu et al. 2017).

    Each step takes ``batch_size`` song triplets :math:`(\chi, \chi^+, \chi^-)`, draws
    ``P = patches_per_song`` random patches from each of the three songs, embeds the ``3 B P``
    patches with the tower, scores every (anchor patch, positive patch) and (anchor patch,
    negative patch) pair with the metric network — logits ``z_pos``, ``z_neg`` of shape
    ``(B, P, P)`` — and takes one Adam step on

    .. math:: \frac{1}{B}\sum_{\text{triplets}} \frac{1}{P}\sum_{x}\big(\psi(x) + \phi(x)\big)

    (:func:`mrlib.losses.matchnet_loss`, computed from logits). The triplets are shuffled at
    every epoch.

    Parameters
    ----------
    features : mrlib.features.FeatureSet or sequence of arrays
        ``features[i]`` is song ``i``'s log-CQT, shape ``(n_bins, T_i)`` (float16 or float32, dB).
    triplets : numpy.ndarray of int, shape (M, 3)
        Training constraints (anchor, positive, negative) as catalog indices: "the anchor is
        closer to the positive than to the negative".
    config : MatchNetConfig, optional
        Default ``MatchNetConfig()``.
    progress : bool, default True
        A tqdm bar over epochs.

    Returns
    -------
    MatchNetRun
        The model (eval mode) and its per-epoch log.

    Notes
    -----
    Seeded and, on the CPU with a fixed number of threads, repeatable bit for bit: the weights
    come from ``build_model(seed=config.seed)`` (the global torch RNG is not touched), and the
    triplet order and the patches from ``numpy.random.default_rng(config.seed)``.

    Notebook: 08_triplet_matchnet.ipynb
    """
    from mrlib import losses
    from mrlib.models import build_model

    config = _check_config(config)
    _check_features(features)
    t = _check_triplets(triplets, len(features))
    _check_available(features, np.unique(t))
    device = _device(config.device)
    n_bins = _n_bins(features, t[0])

    model = build_model("matchnet", width=config.width, n_bins=n_bins, patch_len=config.patch_len,
                        embedding_dim=config.embedding_dim, seed=config.seed,
                        metric_hidden=config.metric_hidden).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    rng = np.random.default_rng(config.seed)
    B, P, L = config.batch_size, config.patches_per_song, config.patch_len
    rows = []
    model.train()
    for epoch in tqdm(range(1, config.epochs + 1), desc="MatchNet epochs", unit="epoch",
                      disable=not progress, leave=False):
        t0 = time.perf_counter()
        order = rng.permutation(len(t))
        sums = np.zeros(4)
        n_steps = n_patches = 0
        for s in range(0, len(order), B):
            batch = t[order[s:s + B]]                                     # (b, 3)
            b = len(batch)
            x = _batch_patches(features, batch.reshape(-1), L, P, rng)    # (3b, P, F, L)
            x = torch.from_numpy(x.reshape(-1, n_bins, L)).to(device)
            e = model.embed(x).reshape(b, 3, P, -1)
            z_pos = model.metric_pairs(e[:, 0], e[:, 1])                  # (b, P, P)
            z_neg = model.metric_pairs(e[:, 0], e[:, 2])                  # (b, P, P)
            loss, parts = losses.matchnet_loss(z_pos, z_neg, return_parts=True)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                # sigmoid is monotone: compare logits. Pairs (x, x-) whose f is below the
                # anchor patch's hardest positive still cost rank loss.
                active = (z_neg < z_pos.amax(dim=-1, keepdim=True)).float().mean()
            sums += [loss.item(), parts["rank"].item(), parts["contrastive"].item(), active.item()]
            n_steps += 1
            n_patches += x.shape[0]
        seconds = time.perf_counter() - t0
        mean = sums / max(n_steps, 1)
        rows.append({"epoch": epoch, "loss": mean[0], "rank": mean[1], "contrastive": mean[2],
                     "active": mean[3], "seconds": seconds,
                     "patches_per_s": n_patches / seconds if seconds > 0 else float("nan")})
    model.eval()
    history = pd.DataFrame(rows, columns=["epoch", "loss", "rank", "contrastive", "active",
                                          "seconds", "patches_per_s"])
    return MatchNetRun(model, history, config, int(len(t)))


# =============================================================================================
# Song-level scoring
# =============================================================================================
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
    from mrlib.features import test_patches

    _check_features(features)
    idx = np.asarray(idx)
    if idx.ndim != 1 or (len(idx) and not np.issubdtype(idx.dtype, np.integer)):
        raise ValueError(f"idx must be a 1-D array of catalog indices, got shape {idx.shape}")
    if len(idx) and (idx.min() < 0 or idx.max() >= len(features)):
        raise ValueError(f"idx must lie in [0, {len(features)}), got [{idx.min()}, {idx.max()}]")
    _check_available(features, idx.astype(np.int64))
    if isinstance(n_patches, bool) or not isinstance(n_patches, numbers.Integral) or n_patches < 1:
        raise ValueError(f"n_patches must be a positive int, got {n_patches!r}")
    patch_len = int(getattr(model, "patch_len")) if patch_len is None else int(patch_len)
    dev = next(model.parameters()).device
    was_training = model.training
    model.eval()
    per_chunk = max(1, int(batch_size) // int(n_patches))
    out = []
    try:
        for s in tqdm(range(0, len(idx), per_chunk), desc="embed songs", unit="chunk",
                      disable=not progress, leave=False):
            chunk = idx[s:s + per_chunk]
            x = np.stack([test_patches(features[int(i)], patch_len, n=n_patches, seed=int(i))
                          for i in chunk]).astype(np.float32)
            e = model.embed(torch.from_numpy(x.reshape(-1, *x.shape[2:])).to(dev)).float()
            out.append(e.reshape(len(chunk), n_patches, -1).cpu().numpy())
    finally:
        model.train(was_training)
    if not out:
        return np.zeros((0, n_patches, int(getattr(model, "embedding_dim", 1))), dtype=np.float32)
    return np.concatenate(out).astype(np.float32, copy=False)


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
    a = np.asarray(a, dtype=np.int64).ravel()
    b = np.asarray(b, dtype=np.int64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same length, got {a.shape} and {b.shape}")
    if len(a) and (min(a.min(), b.min()) < 0 or max(a.max(), b.max()) >= len(E)):
        raise ValueError(f"pair indices must lie in [0, {len(E)}) (rows of E)")
    dev = next(model.parameters()).device
    E = E.to(dev, dtype=next(model.parameters()).dtype)
    was_training = model.training
    model.eval()
    out = np.empty(len(a), dtype=np.float64)
    try:
        for s in range(0, len(a), block):
            ia = torch.as_tensor(a[s:s + block], device=dev)
            ib = torch.as_tensor(b[s:s + block], device=dev)
            z = model.metric_pairs(E[ia], E[ib])                         # (m, P_a, P_b)
            out[s:s + block] = torch.sigmoid(z.float()).mean(dim=(-2, -1)).double().cpu().numpy()
    finally:
        model.train(was_training)
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
    t = _check_triplets(triplets, len(E))
    return (pair_dissimilarities(model, E, t[:, 0], t[:, 1]),
            pair_dissimilarities(model, E, t[:, 0], t[:, 2]))


# =============================================================================================
# Cross-validation
# =============================================================================================
def _check_folds(folds, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    if not isinstance(folds, Sequence) or len(folds) == 0:
        raise ValueError("folds must be a non-empty sequence of (train_idx, test_idx)")
    out = []
    for f, fold in enumerate(folds):
        try:
            train_idx, test_idx = fold
        except (TypeError, ValueError):
            raise ValueError(f"fold {f} must be a pair (train_idx, test_idx)") from None
        tr, te = np.asarray(train_idx, np.int64), np.asarray(test_idx, np.int64)
        if len(tr) == 0:
            raise ValueError(f"fold {f} has no training triplets")
        for name, ix in (("train", tr), ("test", te)):
            if len(ix) and (ix.min() < 0 or ix.max() >= n):
                raise ValueError(f"fold {f}: {name} indices must lie in [0, {n}) (rows of triplets)")
        if np.intersect1d(tr, te).size:
            raise ValueError(f"fold {f}: a triplet is in both its training and its test set")
        out.append((tr, te))
    return out


@dataclass
class MatchNetCV:
    """Per-fold CFR of Triplet MatchNet, in the form of :class:`mrlib.baselines.CVResult`.

    Attributes
    ----------
    name : str
    per_fold : numpy.ndarray of float64, shape (n_folds,)
        Test CFR of each fold (NaN for a fold without test triplets).
    train : numpy.ndarray of float64, shape (n_folds,)
        CFR on the fold's own training triplets (how well it fits them).
    n_test : numpy.ndarray of int64, shape (n_folds,)
    mean, std : float
        Over the folds with test triplets; ``std`` with ddof = 1 (the slides' "mean ± std").
    embeddings : numpy.ndarray of float32, shape (n_folds, N, P, e) or None
        Each fold's tower embeddings of every song's test patches (rows = catalog indices;
        NaN for songs without features), for :func:`cross_validate_features`.
    histories : list of pandas.DataFrame
        Each fold's per-epoch training log (:class:`MatchNetRun`).
    d_test : list of (d_ap, d_an)
        Each fold's song-level dissimilarities of its test triplets.
    config : MatchNetConfig

    Notebook: 08_triplet_matchnet.ipynb
    """

    name: str
    per_fold: np.ndarray
    train: np.ndarray
    n_test: np.ndarray
    mean: float
    std: float
    embeddings: np.ndarray | None = field(default=None, repr=False)
    histories: list = field(default_factory=list, repr=False)
    d_test: list = field(default_factory=list, repr=False)
    config: MatchNetConfig | None = None

    def __str__(self) -> str:
        return (f"{self.name}: CFR {100 * self.mean:.1f} ± {100 * self.std:.1f} % "
                f"({len(self.per_fold)} folds)")

    def as_cv_result(self):
        """The same numbers as a :class:`mrlib.baselines.CVResult` (for tables and plots)."""
        from mrlib.baselines import CVResult

        return CVResult(self.name, self.per_fold, self.train, self.n_test, self.mean, self.std)

    def mean_embeddings(self, fold: int) -> np.ndarray:
        """Song-level tower features of one fold: mean over test patches, float32 (N, e)."""
        if self.embeddings is None:
            raise ValueError("no embeddings kept: run cross_validate_matchnet(keep_embeddings=True)")
        return self.embeddings[fold].mean(axis=1)


def _summarise(per_fold: np.ndarray) -> tuple[float, float]:
    valid = per_fold[~np.isnan(per_fold)]
    if len(valid) < len(per_fold):
        warnings.warn(f"{len(per_fold) - len(valid)} fold(s) had no test triplets and are left "
                      "out of the mean", RuntimeWarning, stacklevel=3)
    mean = float(valid.mean()) if len(valid) else float("nan")
    std = float(valid.std(ddof=1)) if len(valid) > 1 else float("nan")
    return mean, std


def _all_rows(features) -> np.ndarray:
    available = getattr(features, "available", None)
    if available is None:
        return np.arange(len(features), dtype=np.int64)
    return np.flatnonzero(np.asarray(available, dtype=bool)).astype(np.int64)


def _embed_all(model, features, config: MatchNetConfig) -> np.ndarray:
    """(N, P, e) test-patch embeddings by catalog index; NaN rows for songs without features."""
    rows = _all_rows(features)
    E = embed_songs(model, features, rows, config.patch_len, config.test_patches,
                    batch_size=config.eval_batch)
    full = np.full((len(features),) + E.shape[1:], np.nan, dtype=np.float32)
    full[rows] = E
    return full


def _fit_score_fold(features, t: np.ndarray, train_idx: np.ndarray, test_idx: np.ndarray,
                    config: MatchNetConfig, keep_embeddings: bool, threads: int | None) -> dict:
    """Train on one fold and score it (runs in-process or in a joblib worker)."""
    from mrlib.evaluate import constraints_fulfillment_rate

    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        run = train_matchnet(features, t[train_idx], config, progress=False)
        E = _embed_all(run.model, features, config)
        d_ap, d_an = triplet_dissimilarities(run.model, E, t[train_idx])
        train_cfr = constraints_fulfillment_rate(d_ap, d_an).rate
        if len(test_idx):
            d_ap, d_an = triplet_dissimilarities(run.model, E, t[test_idx])
            test_cfr = constraints_fulfillment_rate(d_ap, d_an).rate
        else:
            d_ap = d_an = np.zeros(0)
            test_cfr = float("nan")
    finally:
        torch.set_num_threads(before)
    return {"test": test_cfr, "train": train_cfr, "n_test": len(test_idx), "history": run.history,
            "d_test": (d_ap, d_an), "E": E if keep_embeddings else None}


def _run_jobs(fn, jobs: list, n_jobs: int, desc: str, progress: bool) -> list:
    """``[fn(*job) for job in jobs]``, in order, in ``n_jobs`` processes (joblib/loky)."""
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, numbers.Integral) or n_jobs == 0 or n_jobs < -1:
        raise ValueError(f"n_jobs must be a positive int or -1, got {n_jobs!r}")
    bar = tqdm(total=len(jobs), desc=desc, unit="fold", disable=not progress)
    out = []
    if n_jobs == 1 or len(jobs) <= 1:
        for job in jobs:
            out.append(fn(*job))
            bar.update(1)
    else:
        from joblib import Parallel, delayed

        for res in Parallel(n_jobs=n_jobs, return_as="generator")(delayed(fn)(*job) for job in jobs):
            out.append(res)
            bar.update(1)
    bar.close()
    return out


def cross_validate_matchnet(
    features,
    triplets,
    folds: Sequence,
    config: MatchNetConfig | None = None,
    *,
    name: str = "Triplet MatchNet",
    keep_embeddings: bool = True,
    n_jobs: int = 1,
    progress: bool = True,
) -> MatchNetCV:
    """k-fold Constraints Fulfillment Rate of Triplet MatchNet (the 2017 protocol).

    For each fold a fresh network (same seed every fold, so folds differ only by their data)
    is trained on the fold's training triplets (:func:`train_matchnet`) and scores the fold's
    test triplets by the song-level decision d(a, p) < d(a, n) (ties not fulfilled,
    :func:`mrlib.evaluate.constraints_fulfillment_rate`).

    Parameters
    ----------
    features : FeatureSet, CoarseFeatures or sequence of (n_bins, T) arrays
    triplets : numpy.ndarray of int, shape (M, 3)
        All constraints, catalog indices.
    folds : sequence of (train_idx, test_idx)
        Indices into ``triplets`` (:func:`mrlib.comparisons.triplet_folds`, by triplet or by
        clip); the same folds as the baselines make the per-fold scores comparable pairwise.
    config : MatchNetConfig, optional
    name : str, default "Triplet MatchNet"
    keep_embeddings : bool, default True
        Keep every fold's (N, P, e) tower embeddings (for :func:`cross_validate_features`).
    n_jobs : int, default 1
        Folds trained at once in separate processes (joblib), each with one torch thread so
        that they do not fight over the cores; 1 trains them here, with the current torch
        thread setting. Results do not depend on ``n_jobs`` when that setting is one thread.
    progress : bool, default True
        A bar over folds.

    Returns
    -------
    MatchNetCV
        ``per_fold``, ``train``, ``n_test``, ``mean``, ``std`` as in
        :class:`mrlib.baselines.CVResult`, plus the embeddings, training logs and test
        dissimilarities.

    Notebook: 08_triplet_matchnet.ipynb
    """
    config = _check_config(config)
    _check_features(features)
    t = _check_triplets(triplets, len(features))
    fl = _check_folds(folds, len(t))
    threads = None if n_jobs == 1 else 1
    jobs = [(features, t, tr, te, config, keep_embeddings, threads) for tr, te in fl]
    res = _run_jobs(_fit_score_fold, jobs, n_jobs, f"{name} folds", progress)
    per_fold = np.asarray([r["test"] for r in res], dtype=np.float64)
    mean, std = _summarise(per_fold)
    return MatchNetCV(name, per_fold, np.asarray([r["train"] for r in res], np.float64),
                      np.asarray([r["n_test"] for r in res], np.int64), mean, std,
                      np.stack([r["E"] for r in res]) if keep_embeddings else None,
                      [r["history"] for r in res], [r["d_test"] for r in res], config)


def cross_validate_features(
    method_factory: Callable,
    X_per_fold,
    triplets,
    folds: Sequence,
    *,
    name: str | None = None,
    progress: bool = True,
):
    """k-fold CFR of a baseline on features that differ per fold (learned inside each fold).

    :func:`mrlib.baselines.cross_validate` takes one feature matrix for all folds. Features
    learned by a network trained inside the cross-validation — Triplet MatchNet's tower, the
    slides' "Proposed" column — must come from the fold's own network, or the test triplets
    would have shaped the features. Fold ``f`` fits a fresh baseline on ``X_per_fold[f]`` with
    its training triplets and scores its test triplets.

    Parameters
    ----------
    method_factory : class, callable or unfitted instance
        Makes a fresh baseline (:class:`mrlib.baselines.MetricBaseline`), e.g.
        ``lambda: TripletSVM(C=0.1)``.
    X_per_fold : array (n_folds, N, D) or sequence of (N, D) arrays
        Features by catalog index for each fold (e.g. ``cv.mean_embeddings(f)``).
    triplets : numpy.ndarray of int, shape (M, 3)
    folds : sequence of (train_idx, test_idx)
        The folds the features were learned with.
    name : str, optional
    progress : bool, default True

    Returns
    -------
    mrlib.baselines.CVResult

    Notebook: 08_triplet_matchnet.ipynb
    """
    from mrlib.baselines import CVResult, cross_validate

    if len(X_per_fold) != len(folds):
        raise ValueError(f"need one feature matrix per fold: got {len(X_per_fold)} for "
                         f"{len(folds)} folds")
    t = np.asarray(triplets)
    fl = _check_folds(folds, len(t))
    per_fold, train, n_test, label = [], [], [], name
    with warnings.catch_warnings():
        # one fold at a time: cross_validate's own mean/std over a single fold is meaningless
        warnings.simplefilter("ignore", RuntimeWarning)
        for X, fold in tqdm(list(zip(X_per_fold, fl)), desc="folds", unit="fold", disable=not progress):
            r = cross_validate(method_factory, X, t, [fold], name=label, progress=False)
            label = r.name
            per_fold.append(r.per_fold[0])
            train.append(r.train[0])
            n_test.append(r.n_test[0])
    per_fold = np.asarray(per_fold, dtype=np.float64)
    mean, std = _summarise(per_fold)
    return CVResult(label, per_fold, np.asarray(train, np.float64), np.asarray(n_test, np.int64),
                    mean, std)


def _fit_score_subset(features, t: np.ndarray, train_idx: np.ndarray, test_idx: np.ndarray,
                      config: MatchNetConfig, threads: int | None) -> float:
    """Test CFR of a network trained on ``t[train_idx]`` (curve point; worker-safe)."""
    from mrlib.evaluate import constraints_fulfillment_rate

    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        run = train_matchnet(features, t[train_idx], config, progress=False)
        songs = np.unique(t[test_idx])
        E = embed_songs(run.model, features, songs, config.patch_len, config.test_patches,
                        batch_size=config.eval_batch)
        local = np.searchsorted(songs, t[test_idx])          # rows of E for the test triplets
        d_ap = pair_dissimilarities(run.model, E, local[:, 0], local[:, 1])
        d_an = pair_dissimilarities(run.model, E, local[:, 0], local[:, 2])
    finally:
        torch.set_num_threads(before)
    return constraints_fulfillment_rate(d_ap, d_an).rate


def generalization_curve_matchnet(
    features,
    triplets,
    folds: Sequence,
    shares: Sequence[float] = (0.25, 0.5, 1.0),
    config: MatchNetConfig | None = None,
    *,
    seed: int = 0,
    full: MatchNetCV | None = None,
    n_jobs: int = 1,
    progress: bool = True,
) -> pd.DataFrame:
    """Test CFR of Triplet MatchNet against the share of each fold's training triplets.

    The training subsets are the ones :func:`mrlib.baselines.generalization_curve` uses with
    the same ``seed`` and folds (each fold's training triplets permuted once by
    ``numpy.random.default_rng(seed)``, fold after fold; the first ``ceil(share * n_train)``
    kept, so the sets are nested), so the curves of MatchNet and the baselines are measured
    on the same data.

    Parameters
    ----------
    features, triplets, folds, config
        As in :func:`cross_validate_matchnet`.
    shares : sequence of float in (0, 1], default (0.25, 0.5, 1.0)
    seed : int, default 0
    full : MatchNetCV, optional
        A finished :func:`cross_validate_matchnet` on the same folds and config: the points
        that use a fold's whole training set are taken from it instead of trained again.
    n_jobs : int, default 1
        As in :func:`cross_validate_matchnet`.
    progress : bool, default True

    Returns
    -------
    pandas.DataFrame
        Columns ``share, fold, n_train, cfr`` (as the baselines' curve).

    Notebook: 08_triplet_matchnet.ipynb
    """
    config = _check_config(config)
    _check_features(features)
    t = _check_triplets(triplets, len(features))
    fl = _check_folds(folds, len(t))
    shares = np.asarray(shares, dtype=float)
    if shares.ndim != 1 or shares.size == 0 or (shares <= 0).any() or (shares > 1).any():
        raise ValueError(f"shares must be numbers in (0, 1], got {shares.tolist()}")
    if full is not None and len(full.per_fold) != len(fl):
        raise ValueError(f"full has {len(full.per_fold)} folds, folds has {len(fl)}")
    rng = np.random.default_rng(seed)
    rows, jobs, slots = [], [], []
    threads = None if n_jobs == 1 else 1
    for f, (train_idx, test_idx) in enumerate(fl):
        # Same draws, in the same order, as mrlib.baselines.generalization_curve.
        order = rng.permutation(train_idx)
        for share in shares:
            n_train = max(1, int(np.ceil(share * len(order))))
            row = {"share": float(share), "fold": f, "n_train": n_train, "cfr": float("nan")}
            if full is not None and n_train == len(order):
                row["cfr"] = float(full.per_fold[f])
            elif len(test_idx):
                jobs.append((features, t, order[:n_train], test_idx, config, threads))
                slots.append(len(rows))
            rows.append(row)
    for slot, score in zip(slots, _run_jobs(_fit_score_subset, jobs, n_jobs, "MatchNet curve", progress)):
        rows[slot]["cfr"] = float(score)
    return pd.DataFrame(rows, columns=["share", "fold", "n_train", "cfr"])
