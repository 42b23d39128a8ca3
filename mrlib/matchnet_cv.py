r"""The 2017 protocol: Triplet MatchNet trained on song triplets, scored by CFR in k-fold CV.

Lu et al. (ICASSP 2017) learn a dissimilarity :math:`f(x, y) \in (0, 1)` between two patches
with a network of two parts (:class:`mrlib.models.TripletMatchNet`): a residual *tower* that
embeds each patch, and a *metric* network on the concatenated pair. A training example is a
song triplet :math:`(\chi, \chi^+, \chi^-)` — "the anchor song sounds more like the positive
than like the negative", from the odd-one-out votes (:mod:`mrlib.odd_one_out`) — represented by
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
* :func:`embed_songs`, :func:`pair_dissimilarities`, :func:`triplet_dissimilarities` (from
  :mod:`mrlib.songlevel`) — the song-level decision: 8 seeded test patches per song (the same
  ones :mod:`mrlib.train` uses), mean of :math:`f` over the 8 x 8 patch pairs;
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
import functools
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch
from joblib import Parallel, delayed
from tqdm.auto import tqdm

from mrlib import losses
from mrlib.baselines import (_check_X, _cross_validate, _curve_frame, _cv_result, CVResult,
                             check_folds, check_triplets)
from mrlib.checks import FINITE, check_n_jobs, int_at_least, rule, validate_fields
from mrlib.devices import pick_device, torch_threads
from mrlib.features import _available, check_features, coarsen_features, tracks_patches
from mrlib.models import build_model
from mrlib.songlevel import (check_available, embed_songs, pair_dissimilarities,
                             triplet_dissimilarities)
from mrlib.stats import constraints_fulfillment_rate

__all__ = [
    "coarsen_features", "MatchNetConfig", "MatchNetRun", "MatchNetCV",
    "train_matchnet", "embed_songs", "pair_dissimilarities", "triplet_dissimilarities",
    "cross_validate_matchnet", "cross_validate_features", "generalization_curve_matchnet"
]


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
        Adam's learning rate (no weight decay).
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
    seed: int = 0
    device: str = "cpu"
    eval_batch: int = 512

    def validate(self) -> "MatchNetConfig":
        """Check every field; raise ``TypeError``/``ValueError`` naming the bad one.

        Notebook: 08_triplet_matchnet.ipynb
        """
        validate_fields(self, _MATCHNET_CHECKS)
        return self

    __post_init__ = validate                    # checked when made, and again at every door


#: Field -> its checks, in order (:func:`mrlib.checks.validate_fields`); ints and floats are
#: converted to Python's.
_MATCHNET_CHECKS: dict[str, tuple] = {
    **dict.fromkeys(("patch_len", "patches_per_song", "test_patches", "embedding_dim",
                     "metric_hidden", "batch_size", "eval_batch"), int_at_least(1)),
    **dict.fromkeys(("epochs", "seed"), int_at_least(0)),
    "width": (FINITE, rule(lambda v: v > 0, "> 0 (1.0 = full size)")),
    "lr": (FINITE, rule(lambda v: 0 < v < 1, "in (0, 1)")),
    "device": (rule(lambda v: isinstance(v, str) and bool(v),
                    "a device string such as 'cpu' or 'auto'", TypeError),),
}


# =============================================================================================
# Input checks
# =============================================================================================
def _check_inputs(features, triplets, config) -> tuple["MatchNetConfig", np.ndarray]:
    """The checks every public door makes: the config (the default one for None, validated),
    the features, and the triplets as distinct catalog indices (int64 (M, 3))."""
    config = MatchNetConfig() if config is None else config
    if not isinstance(config, MatchNetConfig):
        raise TypeError(f"config must be a MatchNetConfig, got {type(config).__name__}")
    config.validate()
    check_features(features)
    return config, check_triplets(triplets, len(features), distinct=True)


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

    Notebook: 08_triplet_matchnet.ipynb
    """

    model: Any
    history: pd.DataFrame


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
    config, t = _check_inputs(features, triplets, config)
    check_available(features, np.unique(t))
    device = pick_device(config.device)
    n_bins = np.shape(features[int(t[0, 0])])[0]        # random_patches checks (n_bins, T)

    model = build_model("matchnet", width=config.width, n_bins=n_bins, patch_len=config.patch_len,
                        embedding_dim=config.embedding_dim, seed=config.seed,
                        metric_hidden=config.metric_hidden).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    rng = np.random.default_rng(config.seed)
    rows = []
    model.train()
    for epoch in tqdm(range(1, config.epochs + 1), desc="MatchNet epochs", unit="epoch",
                      disable=not progress, leave=False):
        rows.append({"epoch": epoch, **_train_epoch(model, opt, features, t, rng, config, device)})
    model.eval()
    history = pd.DataFrame(rows, columns=["epoch", "loss", "rank", "contrastive", "active",
                                          "seconds", "patches_per_s"])
    return MatchNetRun(model, history)


def _train_epoch(model, opt, features, t: np.ndarray, rng: np.random.Generator, config: MatchNetConfig,
                 device: torch.device) -> dict:
    """One pass over the shuffled triplets; the epoch's mean losses, active share and speed."""
    B, P, L = config.batch_size, config.patches_per_song, config.patch_len
    t0 = time.perf_counter()
    order = rng.permutation(len(t))
    sums = np.zeros(4)
    steps = range(0, len(order), B)
    for s in steps:
        batch = t[order[s:s + B]]                                     # (b, 3)
        b = len(batch)
        # P random patches of each of the 3b songs, song by song: (3b P, F, L)
        x = tracks_patches(features, batch.reshape(-1), L, P, rng)
        x = torch.from_numpy(x.astype(np.float32, copy=False)).to(device)
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
    seconds = time.perf_counter() - t0
    n_patches = 3 * P * len(t)                                        # every triplet once
    return {**dict(zip(("loss", "rank", "contrastive", "active"), sums / max(len(steps), 1))),
            "seconds": seconds,
            "patches_per_s": n_patches / seconds if seconds > 0 else float("nan")}


# =============================================================================================
# Cross-validation
# =============================================================================================
@dataclass
class MatchNetCV(CVResult):
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
        NaN for songs without features), for :func:`cross_validate_features`; None in a
        result built by hand without them.
    histories : list of pandas.DataFrame
        Each fold's per-epoch training log (:class:`MatchNetRun`).
    d_test : list of (d_ap, d_an)
        Each fold's song-level dissimilarities of its test triplets.
    config : MatchNetConfig

    Notebook: 08_triplet_matchnet.ipynb
    """

    embeddings: np.ndarray | None = field(default=None, repr=False)
    histories: list = field(default_factory=list, repr=False)
    d_test: list = field(default_factory=list, repr=False)
    config: MatchNetConfig | None = None

    def mean_embeddings(self, fold: int) -> np.ndarray:
        """Song-level tower features of one fold: mean over test patches, float32 (N, e)."""
        if self.embeddings is None:
            raise ValueError("no embeddings kept: cross_validate_matchnet keeps them")
        return self.embeddings[fold].mean(axis=1)


def _fit_score_fold(features, t: np.ndarray, train_idx: np.ndarray, test_idx: np.ndarray,
                    config: MatchNetConfig, threads: int | None) -> dict:
    """Train on one fold and score it (runs in-process or in a joblib worker)."""
    with torch_threads(threads):
        run = train_matchnet(features, t[train_idx], config, progress=False)
        # (N, P, e) test-patch embeddings by catalog index; NaN rows for songs without features
        rows = np.flatnonzero(_available(features))
        E_rows = embed_songs(run.model, features, rows, config.patch_len, config.test_patches,
                             batch_size=config.eval_batch)
        E = np.full((len(features),) + E_rows.shape[1:], np.nan, dtype=np.float32)
        E[rows] = E_rows
        train_cfr = constraints_fulfillment_rate(
            *triplet_dissimilarities(run.model, E, t[train_idx])).rate
        d_ap, d_an = (triplet_dissimilarities(run.model, E, t[test_idx]) if len(test_idx)
                      else (np.zeros(0), np.zeros(0)))
        test_cfr = constraints_fulfillment_rate(d_ap, d_an).rate if len(test_idx) else float("nan")
    return {"test": test_cfr, "train": train_cfr, "n_test": len(test_idx), "history": run.history,
            "d_test": (d_ap, d_an), "E": E}


def _fit_score_subset(features, t: np.ndarray, train_idx: np.ndarray, test_idx: np.ndarray,
                      config: MatchNetConfig) -> float:
    """Test CFR of a network trained on ``t[train_idx]`` (a curve point). Only the test
    triplets' songs are embedded: a point needs neither the training CFR nor ``E``."""
    run = train_matchnet(features, t[train_idx], config, progress=False)
    songs = np.unique(t[test_idx])
    E = embed_songs(run.model, features, songs, config.patch_len, config.test_patches,
                    batch_size=config.eval_batch)
    local = np.searchsorted(songs, t[test_idx])          # rows of E for the test triplets
    return constraints_fulfillment_rate(*triplet_dissimilarities(run.model, E, local)).rate


def cross_validate_matchnet(
    features,
    triplets,
    folds: Sequence,
    config: MatchNetConfig | None = None,
    *,
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
        Indices into ``triplets`` (:func:`mrlib.odd_one_out.triplet_folds`, by triplet or by
        clip); the same folds as the baselines make the per-fold scores comparable pairwise.
    config : MatchNetConfig, optional
    n_jobs : int, default 1
        Folds trained at once in separate processes (joblib), each with one torch thread so
        that they do not fight over the cores; 1 trains them here, with the current torch
        thread setting. Results do not depend on ``n_jobs`` when that setting is one thread.
    progress : bool, default True
        A bar over folds.

    Returns
    -------
    MatchNetCV
        Named "Triplet MatchNet": ``per_fold``, ``train``, ``n_test``, ``mean``, ``std`` as in
        :class:`mrlib.baselines.CVResult`, plus the embeddings, training logs and test
        dissimilarities; every fold's (N, P, e) tower embeddings are kept (for
        :func:`cross_validate_features`).

    Notebook: 08_triplet_matchnet.ipynb
    """
    config, t = _check_inputs(features, triplets, config)
    fl = check_folds(folds, len(t))
    jobs = [(features, t, tr, te, config, None if n_jobs == 1 else 1) for tr, te in fl]
    outs = ((_fit_score_fold(*job) for job in jobs) if check_n_jobs(n_jobs) == 1 or len(jobs) <= 1
            else Parallel(n_jobs=n_jobs, return_as="generator")(
                delayed(_fit_score_fold)(*job) for job in jobs))
    res = list(tqdm(outs, total=len(jobs), desc="Triplet MatchNet folds", unit="fold",
                    disable=not progress))
    return _cv_result("Triplet MatchNet", [r["test"] for r in res], [r["train"] for r in res], fl,
                      np.stack([r["E"] for r in res]), [r["history"] for r in res],
                      [r["d_test"] for r in res], config, cls=MatchNetCV, stacklevel=3)


def cross_validate_features(
    method_factory: Callable,
    X_per_fold,
    triplets,
    folds: Sequence,
    *,
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
    method_factory : class or callable
        Makes a fresh baseline (:class:`mrlib.baselines.MetricBaseline`), e.g.
        ``lambda: TripletSVM(C=0.1)``.
    X_per_fold : array (n_folds, N, D) or sequence of (N, D) arrays
        Features by catalog index for each fold (e.g. ``cv.mean_embeddings(f)``).
    triplets : numpy.ndarray of int, shape (M, 3)
    folds : sequence of (train_idx, test_idx)
        The folds the features were learned with.
    progress : bool, default True

    Returns
    -------
    mrlib.baselines.CVResult
        Labelled by the baseline's ``name``.

    Notebook: 08_triplet_matchnet.ipynb
    """
    if len(X_per_fold) != len(folds):
        raise ValueError(f"need one feature matrix per fold: got {len(X_per_fold)} for "
                         f"{len(folds)} folds")
    fl = check_folds(folds, len(np.asarray(triplets)))
    Xs = [_check_X(X) for X in X_per_fold]
    t = check_triplets(triplets, min(len(X) for X in Xs))       # rows of every fold's features
    return _cross_validate(method_factory, Xs, t, fl, progress)


def generalization_curve_matchnet(
    features,
    triplets,
    folds: Sequence,
    shares: Sequence[float] = (0.25, 0.5, 1.0),
    config: MatchNetConfig | None = None,
    *,
    seed: int = 0,
    full: MatchNetCV | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Test CFR of Triplet MatchNet against the share of each fold's training triplets.

    The training subsets are the ones :func:`mrlib.baselines.generalization_curve` uses with
    the same ``seed`` and folds (each fold's training triplets permuted once by
    ``numpy.random.default_rng(seed)``, fold after fold; the first ``ceil(share * n_train)``
    kept, so the sets are nested), so the curves of MatchNet and the baselines are measured
    on the same data. The points train one after the other, here.

    Parameters
    ----------
    features, triplets, folds, config
        As in :func:`cross_validate_matchnet`.
    shares : sequence of float in (0, 1], default (0.25, 0.5, 1.0)
    seed : int, default 0
    full : MatchNetCV, optional
        A finished :func:`cross_validate_matchnet` on the same folds and config: the points
        that use a fold's whole training set are taken from it instead of trained again.
    progress : bool, default True

    Returns
    -------
    pandas.DataFrame
        Columns ``share, fold, n_train, cfr`` (as the baselines' curve).

    Notebook: 08_triplet_matchnet.ipynb
    """
    config, t = _check_inputs(features, triplets, config)
    fl = check_folds(folds, len(t))
    if full is not None and len(full.per_fold) != len(fl):
        raise ValueError(f"full has {len(full.per_fold)} folds, folds has {len(fl)}")
    if full is not None and full.config is not None:   # where it ran may differ, not what
        differ = [f"{k}={getattr(full.config, k)!r} (here {v!r})"
                  for k, v in dataclasses.asdict(config).items()
                  if k not in ("device", "eval_batch") and getattr(full.config, k) != v]
        if differ:
            raise ValueError("full was trained with another config: " + ", ".join(differ))
    score = functools.partial(_fit_score_subset, features, t, config=config)
    return _curve_frame(fl, shares, seed, score, "MatchNet curve", progress,
                        None if full is None else full.per_fold)
