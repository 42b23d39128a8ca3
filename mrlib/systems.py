r"""The systems the trainer knows: one small object each, in one registry.

A :class:`System` holds what differs between systems — the network it builds, the batches it
trains on, its objective, the validation metrics it can be stopped on, and how its tracks are
represented for retrieval — so that the trainer (:mod:`mrlib.train`) never asks which system it
runs. Adding a system, or a system with another loss, is one subclass and one :func:`register`
call; ``TrainConfig(system=key)`` then trains it.

* ``"at"`` — the auto-tagging baseline (FCN-5, BCE on tags binarised at 0.5);
* ``"tl"`` — the triplet-loss CNN, offline mining (Prétet et al. 2020, §3.2) or online mining
  inside a batch of tracks;
* ``"tl_autopool"`` — the same with AutoPool over time;
* ``"matchnet"`` — Triplet MatchNet (Lu et al. 2017): rank loss ψ + contrastive loss φ on all
  patch pairs of song triplets.

**Batches.** The paper's TL batch (§3.4) is one anchor track, one positive track and 42
negative tracks, mined offline (:class:`mrlib.mining.PaperBatchSampler`), with one random patch
per row: 42 triplets of patches, 126 patches. ``sampler="shuffled"`` draws the 42 triplets from
all mined ones instead (:class:`mrlib.mining.ShuffledTripletSampler`). AT and online mining draw
batches of ``batch_tracks`` training tracks (one patch each); online mining then keeps the hard
or semi-hard valid triplets of the batch (:func:`mrlib.mining.online_triplets`). MatchNet takes
the offline batches as song triplets :math:`(\chi, \chi^+, \chi^-_j)`, with
``matchnet_patches`` patches per song.

Every objective is an ``nn.Module`` whose ``forward(x, y, S, idx, n_triplets, shared)`` returns
``(loss, active_fraction, n_triplets, loss_all)``: wrapping the loss in a module lets DDP hook
the complete forward pass, including calls to ``logits``/``embed``/``metric_pairs`` that are not
the model's own ``forward``.

Notebook: 06_training.ipynb
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from mrlib import losses
from mrlib.devices import amp_dtype
from mrlib.features import test_patches, tracks_patches
from mrlib.layers import eval_mode
from mrlib.mining import (PaperBatchSampler, ShuffledTripletSampler, TrackBatchSampler, is_online,
                          online_triplets)
from mrlib.models import build_model
from mrlib.similarity import oracle

__all__ = ["System", "AutoTagging", "TripletLoss", "TripletLossAutopool", "TripletMatchNetSystem",
           "SYSTEMS", "register", "BatchMaker", "test_patch_batches", "embed_tracks", "song_dissimilarities"]


def _nan(device: torch.device) -> torch.Tensor:
    return torch.full((), float("nan"), device=device)


# =============================================================================================
# Objectives
# =============================================================================================
class _Objective(nn.Module):
    """An objective's state: the model it trains (a submodule, for DDP) and the run's config."""

    def __init__(self, model: nn.Module, config) -> None:
        super().__init__()
        self.model, self.config = model, config


class TagObjective(_Objective):
    """BCE of the tag logits against the tags binarised at 0.5 (no triplets: NaN fractions).

    Notebook: 06_training.ipynb
    """

    def forward(self, x, y=None, S=None, idx=None, n_triplets: int = 0, shared: bool = True):
        logits = self.model.logits(x).float()
        loss = losses.bce_loss(logits, y, threshold=0.5, from_logits=True)
        return loss, _nan(x.device), x.shape[0], _nan(x.device)


class TripletObjective(_Objective):
    """The triplet loss on offline triplets (anchors, positives, negatives in a row).

    With online mining it keeps the batch's hard or semi-hard valid triplets, and measures
    ``active_fraction`` and ``loss_all`` over *every* valid triplet: semi-hard triplets all
    cost something by construction, so their share would be 1 whatever the state of training.

    Notebook: 06_training.ipynb
    """

    def forward(self, x, y=None, S=None, idx=None, n_triplets: int = 0, shared: bool = True):
        emb = self.model(x).float()
        margin, n_pos = self.config.margin, self.config.n_pos
        if not self.config.online:
            a, p, n = emb.split(n_triplets)
            loss, active = losses.triplet_loss(a, p, n, margin=margin)
            return loss, active, n_triplets, loss.detach()
        trip = online_triplets(emb, S, idx, mode=self.config.mining, margin=margin, n_pos=n_pos)
        with torch.no_grad():   # the state of training, over every valid triplet
            every = online_triplets(emb, S, idx, mode="all", margin=margin, n_pos=n_pos)
            if every.shape[0]:
                loss_all, active = losses.triplet_loss(emb[every[:, 0]], emb[every[:, 1]],
                                                       emb[every[:, 2]], margin=margin)
            else:
                loss_all = active = _nan(x.device)
        if trip.shape[0] == 0:
            # no valid triplet in this batch: a zero loss that still touches every
            # parameter, so DDP's gradient all-reduce sees the same graph on every rank
            return emb.sum() * 0.0, active, 0, loss_all
        loss, _ = losses.triplet_loss(emb[trip[:, 0]], emb[trip[:, 1]], emb[trip[:, 2]],
                                      margin=margin)
        return loss, active, int(trip.shape[0]), loss_all


class MatchNetObjective(_Objective):
    """Triplet MatchNet's ψ + φ on every patch pair of the song triplets.

    Notebook: 06_training.ipynb
    """

    def forward(self, x, y=None, S=None, idx=None, n_triplets: int = 0, shared: bool = True):
        P, B = self.config.matchnet_patches, n_triplets
        e = self.model.embed(x).float()
        if shared:                                             # ((2 + B) P, e)
            ea, ep, en = e[:P], e[P:2 * P], e[2 * P:].reshape(B, P, -1)
            z_pos = self.model.metric_pairs(ea, ep).float().expand(B, P, P)   # shared by all rows
            z_neg = self.model.metric_pairs(ea.expand(B, P, ea.shape[-1]), en).float()
        else:                                                  # (3 B P, e)
            ea, ep, en = e.reshape(3, B, P, -1)
            z_pos = self.model.metric_pairs(ea, ep).float()    # (B, P, P)
            z_neg = self.model.metric_pairs(ea, en).float()
        loss = losses.matchnet_loss(z_pos, z_neg)
        # share of (anchor patch, negative patch) pairs that still cost rank loss psi
        # (compared on logits: sigmoid is monotone)
        d_pos_max = z_pos.detach().amax(dim=-1, keepdim=True)  # (B, P, 1)
        active = (d_pos_max > z_neg.detach()).float().mean()
        return loss, active, B, loss.detach()


# =============================================================================================
# Batches
# =============================================================================================
class BatchMaker:
    """Turns sampler output into numpy batches of random patches (runs in the prefetch thread).

    What a batch holds is the system's (:meth:`System.make_batch`); this object draws the
    patches from the run's patch stream.

    Notebook: 06_training.ipynb
    """

    def __init__(self, data, config, rng: np.random.Generator) -> None:
        self.data = data
        self.config = config
        self.rng = rng
        self.system = SYSTEMS[config.system]

    def patches(self, tracks, n: int) -> np.ndarray:
        """``n`` random patches of each of ``tracks``, track by track."""
        return tracks_patches(self.data.features, tracks, self.config.patch_len, n, self.rng)

    def __call__(self, item: np.ndarray) -> dict:
        return self.system.make_batch(np.asarray(item, dtype=np.int64), self)


def _is_shared(trip: np.ndarray) -> bool:
    """The paper's batch: one anchor and one positive track for every row."""
    return bool((trip[:, 0] == trip[0, 0]).all() and (trip[:, 1] == trip[0, 1]).all())


# =============================================================================================
# Track representations (from seeded test patches)
# =============================================================================================
def test_patch_batches(data, idx: np.ndarray, patch_len: int, n_patches: int = 8,
                       tracks_per_batch: int = 32, device: str | torch.device = "cpu"):
    """The seeded test patches of tracks ``idx``, a few tracks at a time.

    Track ``i``'s patches are ``test_patches(features[i], patch_len, n_patches, seed=i)``:
    every model and run sees the same ones.

    Yields
    ------
    chunk : numpy.ndarray of int64
        The catalog indices of the batch (at most ``tracks_per_batch``).
    x : torch.Tensor, float32, shape (len(chunk) * n_patches, n_bins, patch_len), on ``device``
        Their patches, track by track.

    Notebook: 06_training.ipynb
    """
    for s in range(0, len(idx), tracks_per_batch):
        chunk = idx[s:s + tracks_per_batch]
        x = np.stack([test_patches(data.features[int(i)], patch_len, n=n_patches, seed=int(i))
                      for i in chunk])
        yield chunk, torch.from_numpy(x.astype(np.float32)).to(device).reshape(-1, *x.shape[2:])


@torch.no_grad()
def embed_tracks(model: nn.Module, data, idx: Sequence[int], patch_len: int,
                 n_patches: int = 8, batch_size: int = 256, device: str | torch.device | None = None,
                 amp: bool = False, per_patch: bool = False, progress: bool = False) -> np.ndarray:
    """Track representations from 8 seeded test patches: embeddings or tag probabilities.

    Track ``i``'s patches are ``test_patches(features[i], patch_len, n_patches, seed=i)``, so
    every model and run sees the same ones. TL / TL Autopool: mean of the unit-norm patch
    embeddings, L2-normalised again (the 2020 paper, §3.4, says only that the 8 embeddings
    are averaged; back on the sphere, Euclidean ranking is cosine ranking of the means);
    AT: mean tag probabilities; MatchNet: mean tower embedding (or every patch's with
    ``per_patch=True``, which the learned metric needs).

    Parameters
    ----------
    model : nn.Module
        A model of :mod:`mrlib.models` (its ``system`` attribute decides the head).
    data : TrainData
    idx : sequence of int
        Catalog indices.
    patch_len : int
    n_patches : int, default 8
    batch_size : int, default 256
        Patches per forward pass.
    device : device, optional
        Default: the model's.
    amp : bool
        Autocast on CUDA (see :func:`amp_dtype`).
    per_patch : bool
        Return ``(n, n_patches, d)`` instead of the mean.
    progress : bool

    Returns
    -------
    numpy.ndarray, float32, shape (len(idx), d) — or (len(idx), n_patches, d)

    Notebook: 06_training.ipynb
    """
    idx = np.asarray(idx, dtype=np.int64)
    if idx.ndim != 1:
        raise ValueError(f"idx must be 1-D catalog indices, got shape {idx.shape}")
    dev = next(model.parameters()).device if device is None else torch.device(device)
    dtype = amp_dtype(dev, amp)
    tracks_per_chunk = max(1, batch_size // n_patches)
    out = []
    with eval_mode(model):
        for chunk, x in tqdm(test_patch_batches(data, idx, patch_len, n_patches, tracks_per_chunk, dev),
                             total=-(-len(idx) // tracks_per_chunk), desc="embed", unit="chunk",
                             disable=not progress, leave=False):
            with torch.autocast(dev.type, dtype=dtype, enabled=dtype is not None):
                e = model.embed(x).float()
            out.append(e.reshape(len(chunk), n_patches, -1).cpu())
    E = torch.cat(out) if out else torch.zeros((0, n_patches, 1))
    if per_patch:
        return E.numpy().astype(np.float32)
    mean = E.mean(dim=1)
    if getattr(model, "unit_norm", True):   # unit-norm embeddings: the mean goes back on the sphere
        mean = torch.nn.functional.normalize(mean, dim=1)
    return mean.numpy().astype(np.float32)


@torch.no_grad()
def song_dissimilarities(model: nn.Module, E: np.ndarray | torch.Tensor, chunk_mb: float = 256.0,
                         device: str | torch.device | None = None) -> np.ndarray:
    """Triplet MatchNet song-level dissimilarity of every pair of songs: mean of ``f = sigmoid(z)``
    over their patch pairs.

    Parameters
    ----------
    model : mrlib.models.TripletMatchNet
    E : array (n, P, e)
        Tower embeddings of the patches of each song (``embed_tracks(..., per_patch=True)``).
    chunk_mb : float
        Memory budget of one block of pairs.

    Returns
    -------
    numpy.ndarray, float32, shape (n, n), values in (0, 1): 0 similar, 1 dissimilar.

    Notebook: 06_training.ipynb
    """
    dev = next(model.parameters()).device if device is None else torch.device(device)
    E = torch.as_tensor(np.asarray(E, dtype=np.float32), device=dev)
    if E.ndim != 3:
        raise ValueError(f"E must be (n, P, e) patch embeddings, got shape {tuple(E.shape)}")
    n, p, e = E.shape
    flat = E.reshape(n * p, e)
    # one block holds c*p x n*p concatenated pairs of 2e floats
    c = max(1, int(chunk_mb * 2**20 // max(p * n * p * 2 * e * 4, 1)))
    out = np.empty((n, n), dtype=np.float32)
    with eval_mode(model):
        for s in range(0, n, c):
            blk = E[s:s + c]
            z = model.metric_pairs(blk.reshape(-1, e), flat)              # (c*p, n*p)
            f = torch.sigmoid(z.float()).reshape(blk.shape[0], p, n, p).mean(dim=(1, 3))
            out[s:s + c] = f.cpu().numpy()
    return out


# =============================================================================================
# Systems
# =============================================================================================
class System:
    """What one system does differently from the others; the trainer asks it, never its name.

    Attributes
    ----------
    key : str
        Its ``TrainConfig.system``.
    network : str
        The :func:`mrlib.models.build_model` network it trains.
    paper_lr, default_lr : float
        The papers' learning rate, and one that works at the notebook's defaults.
    mining : {"none", "offline", "any"}
        Whether it ignores ``TrainConfig.mining`` (trains on tracks), takes offline mining
        only, or offline and online mining.
    has_dropout, takes_pooling : bool
        Whether ``TrainConfig.dropout`` / ``pooling`` and ``alpha_lr`` apply.
    monitors : tuple of str
        Validation metrics it can be stopped on; the first is the default.
    representation : {"embeddings", "tag_probabilities"}
        What ``embeddings.npy`` holds; tag probabilities are compared through the oracle.
    per_patch : bool
        Retrieval needs every patch's embedding (a learned metric compares them).
    triplet_stats : bool
        It reports ``active_fraction`` and ``loss_all``.
    objective : type
        The ``nn.Module`` of its loss (see :mod:`mrlib.systems`), built as
        ``objective(model, config)``; its ``forward(x, y, S, idx, n_triplets, shared)`` returns
        ``(loss, active, n_triplets, loss_all)``.

    Notebook: 06_training.ipynb
    """

    key = ""
    network = ""
    # The 2020 paper's rates (§3.4): 1e-4 for AT, 1e-6 for TL; TL Autopool is trained "as the TL
    # network"; the 2017 slides give no rate for Triplet MatchNet (Adam's usual 1e-4).
    paper_lr = 1e-4
    # At the notebook's defaults (06_training.ipynb: synthetic catalog of 600 tracks, width
    # 0.125, 64-frame patches, 150 Adam steps, online semi-hard mining with 64 tracks per batch)
    # sweeping 5e-4 ... 4e-3 for TL and TL Autopool gave best validation MAP@20 between 0.22 and
    # 0.26 against 0.13-0.15 untrained, the rates within each other's 95 % CIs; 1e-3 is the
    # middle of that plateau (the table is in the notebook). The paper's 1e-6 barely moves the
    # network in that budget: it was set for ~1e6 steps of a width-1 network.
    default_lr = 1e-3
    mining = "offline"
    has_dropout = True
    takes_pooling = False
    monitors: tuple[str, ...] = ("val_map",)
    representation = "embeddings"
    per_patch = False
    triplet_stats = True
    objective: type = TripletObjective

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.key!r})"

    @property
    def tags(self) -> bool:
        """Whether its tracks are represented by tag probabilities (scored with a tag AUC too)."""
        return self.representation == "tag_probabilities"

    # -- configuration -------------------------------------------------------------------------
    def online(self, config) -> bool:
        """Whether it mines its triplets inside each batch of tracks."""
        return self.mining == "any" and is_online(config.mining)

    def run_name(self, config) -> str:
        """The default run label."""
        mining = "" if self.mining == "none" else f"_{config.mining}"
        return f"{config.system}{mining}_s{config.seed}"

    # -- model and loss ------------------------------------------------------------------------
    def build(self, config, data) -> nn.Module:
        """The run's network, shaped by its config and its data (tags, CQT bins)."""
        extra = {k: getattr(config, k) for k in ("dropout", "pooling") if getattr(config, k) is not None}
        return build_model(self.network, n_tags=data.tags.shape[1], width=config.width,
                           n_bins=data.n_bins, patch_len=config.patch_len,
                           embedding_dim=config.embedding_dim, seed=config.seed, **extra)

    def optimizer(self, model: nn.Module, config) -> torch.optim.Adam:
        """Adam at the run's rate; AutoPool's α in a group of its own when ``alpha_lr`` is set.

        Adam moves a parameter by about its learning rate per step whatever the gradient's size,
        so at 10⁻³ and 200 steps α typically stays within [-0.2, 0.2]: close to the mean.
        """
        if config.alpha_lr is None:
            return torch.optim.Adam(model.parameters(), lr=config.learning_rate)
        alpha = [p for n, p in model.named_parameters() if n.endswith("autopool.alpha")]
        rest = [p for n, p in model.named_parameters() if not n.endswith("autopool.alpha")]
        return torch.optim.Adam([{"params": rest}, {"params": alpha, "lr": config.alpha_lr}],
                                lr=config.learning_rate)

    # -- batches -------------------------------------------------------------------------------
    def track_batches(self, config) -> bool:
        """Whether it trains on batches of tracks (else on offline-mined triplets)."""
        return self.mining == "none" or self.online(config)

    def sampler(self, config, train_idx: np.ndarray, triplets: np.ndarray | None, batch_tracks: int,
                rank: int, world_size: int):
        """The batch sampler: of tracks, or of the mined ``triplets``."""
        share = dict(seed=config.seed, rank=rank, world_size=world_size)
        if self.track_batches(config):
            return TrackBatchSampler(train_idx, batch_size=batch_tracks, drop_last=True, **share)
        if config.sampler == "shuffled":
            return ShuffledTripletSampler(triplets, batch_size=config.negatives_per_batch,
                                          drop_last=True, **share)
        return PaperBatchSampler(triplets, n_neg_per_batch=config.negatives_per_batch, **share)

    def patches_per_batch(self, config, batch_tracks: int | None = None) -> int:
        """Patches of one batch (``batch_tracks``: the tracks of a track batch, clipped); without
        ``batch_tracks``, a bound known before the data (the memory check)."""
        if self.track_batches(config):
            return config.batch_tracks if batch_tracks is None else batch_tracks
        return 3 * config.negatives_per_batch

    def make_batch(self, item: np.ndarray, maker: BatchMaker) -> dict:
        """A sampler item (tracks, or triplet rows) -> the numpy batch the objective takes."""
        if self.online(maker.config):
            data = maker.data
            S = oracle(data.tags[item], None, data.categories)
            return {"x": maker.patches(item, 1), "S": S, "idx": item, "n_patches": len(item)}
        B = item.shape[0]
        shared = _is_shared(item)
        if shared:
            # one random patch per row: B anchor patches, B positive patches, B negatives
            x = np.concatenate([maker.patches(item[0, :2], B), maker.patches(item[:, 2], 1)])
        else:
            x = maker.patches(item.T.ravel(), 1)   # anchors, positives, negatives
        return {"x": x, "n_triplets": B, "shared": shared, "n_patches": x.shape[0]}

    # -- retrieval -----------------------------------------------------------------------------
    def similarity(self, model: nn.Module, E: np.ndarray, categories, device) -> np.ndarray | None:
        """Track similarities from its representations ``E``; None: cosine of the embeddings."""
        return None


class TripletLoss(System):
    """TL: the triplet-loss CNN (Prétet et al. 2020), offline or online mining.

    Notebook: 06_training.ipynb
    """

    key = network = "tl"
    paper_lr = 1e-6
    mining = "any"


class TripletLossAutopool(TripletLoss):
    """TL Autopool: TL with AutoPool over time (its pooling and α's rate configurable).

    Notebook: 06_training.ipynb
    """

    key = network = "tl_autopool"
    takes_pooling = True


class AutoTagging(System):
    """AT: the auto-tagging baseline (FCN-5); its tracks are compared by their tags (oracle).

    Notebook: 06_training.ipynb
    """

    key = network = "at"
    mining = "none"
    monitors = ("val_map", "val_auc")
    representation = "tag_probabilities"
    triplet_stats = False
    objective = TagObjective

    def make_batch(self, item: np.ndarray, maker: BatchMaker) -> dict:
        return {"x": maker.patches(item, 1), "y": maker.data.tags[item], "n_patches": len(item)}

    def similarity(self, model, E, categories, device):
        return oracle(E, None, categories)


class TripletMatchNetSystem(System):
    """Triplet MatchNet (Lu et al. 2017): a learned metric on patch pairs of song triplets.

    Notebook: 06_training.ipynb
    """

    key = network = "matchnet"
    has_dropout = False
    per_patch = True
    objective = MatchNetObjective

    def patches_per_batch(self, config, batch_tracks: int | None = None) -> int:
        # the paper's batch shares its anchor and positive songs; the bound is unshared rows
        shared = config.sampler == "paper" and batch_tracks is not None
        songs = 2 + config.negatives_per_batch if shared else 3 * config.negatives_per_batch
        return songs * config.matchnet_patches

    def make_batch(self, item: np.ndarray, maker: BatchMaker) -> dict:
        B, P = item.shape[0], maker.config.matchnet_patches
        shared = _is_shared(item)
        # P patches of the anchor, of the positive and of each negative; unshared: of every
        # row's anchor, then every row's positive, then every row's negative
        tracks = [item[0, 0], item[0, 1], *item[:, 2]] if shared else item.T.ravel()
        x = maker.patches(tracks, P)
        return {"x": x, "n_triplets": B, "shared": shared, "n_patches": x.shape[0]}

    def similarity(self, model, E, categories, device):
        return 1.0 - song_dissimilarities(model, E, device=device)


#: The registry: ``TrainConfig.system`` -> :class:`System`.
SYSTEMS: dict[str, System] = {}


def register(system: System) -> System:
    """Add a system to :data:`SYSTEMS` under its ``key`` (a new key; returns the system).

    Notebook: 06_training.ipynb
    """
    if not isinstance(system, System) or not system.key:
        raise TypeError(f"expected a System with a key, got {system!r}")
    if system.key in SYSTEMS:
        raise ValueError(f"system {system.key!r} is registered already")
    SYSTEMS[system.key] = system
    return system


for _system in (AutoTagging(), TripletLoss(), TripletLossAutopool(), TripletMatchNetSystem()):
    register(_system)
