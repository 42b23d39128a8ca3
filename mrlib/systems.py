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

Every objective is an ``nn.Module`` whose ``forward(x, y, S, idx, n_triplets, shared)`` returns
``(loss, active_fraction, n_triplets, loss_all)``: wrapping the loss in a module lets DDP hook
the complete forward pass, including calls to ``logits``/``embed``/``metric_pairs`` that are not
the model's own ``forward``.

Notebook: 06_training.ipynb
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from mrlib import losses
from mrlib.features import random_patches
from mrlib.mining import (PaperBatchSampler, ShuffledTripletSampler, TrackBatchSampler, is_online,
                          online_triplets)
from mrlib.models import build_model
from mrlib.similarity import oracle
from mrlib.training_data import TrainData, song_dissimilarities

__all__ = ["System", "AutoTagging", "TripletLoss", "TripletLossAutopool", "TripletMatchNetSystem",
           "SYSTEMS", "register", "BatchMaker"]


def _nan(device: torch.device) -> torch.Tensor:
    return torch.full((), float("nan"), device=device)


# =============================================================================================
# Objectives
# =============================================================================================
class TagObjective(nn.Module):
    """BCE of the tag logits against the tags binarised at 0.5 (no triplets: NaN fractions)."""

    def __init__(self, model: nn.Module, config) -> None:
        super().__init__()
        self.model = model

    def forward(self, x, y=None, S=None, idx=None, n_triplets: int = 0, shared: bool = True):
        logits = self.model.logits(x).float()
        loss = losses.bce_loss(logits, y, threshold=0.5, from_logits=True)
        return loss, _nan(x.device), x.shape[0], _nan(x.device)


class TripletObjective(nn.Module):
    """The triplet loss on offline triplets (anchors, positives, negatives in a row).

    With online mining it keeps the batch's hard or semi-hard valid triplets, and measures
    ``active_fraction`` and ``loss_all`` over *every* valid triplet: semi-hard triplets all
    cost something by construction, so their share would be 1 whatever the state of training.
    """

    def __init__(self, model: nn.Module, config) -> None:
        super().__init__()
        self.model = model
        self.online = SYSTEMS[config.system].online(config)
        self.mode = config.mining
        self.margin = config.margin
        self.n_pos = config.n_pos

    def forward(self, x, y=None, S=None, idx=None, n_triplets: int = 0, shared: bool = True):
        emb = self.model(x).float()
        if not self.online:
            a, p, n = emb.split(n_triplets)
            loss, active = losses.triplet_loss(a, p, n, margin=self.margin)
            return loss, active, n_triplets, loss.detach()
        trip = online_triplets(emb, S, idx, mode=self.mode, margin=self.margin, n_pos=self.n_pos)
        with torch.no_grad():   # the state of training, over every valid triplet
            every = online_triplets(emb, S, idx, mode="all", margin=self.margin, n_pos=self.n_pos)
            if every.shape[0]:
                loss_all, active = losses.triplet_loss(
                    emb[every[:, 0]], emb[every[:, 1]], emb[every[:, 2]], margin=self.margin)
            else:
                loss_all = active = _nan(x.device)
        if trip.shape[0] == 0:
            # no valid triplet in this batch: a zero loss that still touches every
            # parameter, so DDP's gradient all-reduce sees the same graph on every rank
            return emb.sum() * 0.0, active, 0, loss_all
        loss, _ = losses.triplet_loss(emb[trip[:, 0]], emb[trip[:, 1]], emb[trip[:, 2]],
                                      margin=self.margin)
        return loss, active, int(trip.shape[0]), loss_all


class MatchNetObjective(nn.Module):
    """Triplet MatchNet's ψ + φ on every patch pair of the song triplets."""

    def __init__(self, model: nn.Module, config) -> None:
        super().__init__()
        self.model = model
        self.P = config.matchnet_patches

    def forward(self, x, y=None, S=None, idx=None, n_triplets: int = 0, shared: bool = True):
        P, B = self.P, n_triplets
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

    def __init__(self, data: TrainData, config, rng: np.random.Generator) -> None:
        self.data = data
        self.config = config
        self.rng = rng
        self.system = SYSTEMS[config.system]

    def patches(self, track: int, n: int) -> np.ndarray:
        """``n`` random patches of one track."""
        return random_patches(self.data.features[int(track)], self.config.patch_len, n, self.rng)

    def __call__(self, item: np.ndarray) -> dict:
        return self.system.make_batch(np.asarray(item, dtype=np.int64), self)


def _track_patches(idx: np.ndarray, maker: BatchMaker) -> np.ndarray:
    return np.stack([maker.patches(t, 1)[0] for t in idx])


def _is_shared(trip: np.ndarray) -> bool:
    """The paper's batch: one anchor and one positive track for every row."""
    return bool((trip[:, 0] == trip[0, 0]).all() and (trip[:, 1] == trip[0, 1]).all())


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
    objective_class : type
        The ``nn.Module`` of its loss (see :mod:`mrlib.systems`).

    Notebook: 06_training.ipynb
    """

    key = ""
    network = ""
    paper_lr = 1e-4
    default_lr = 1e-3
    mining = "offline"
    has_dropout = True
    takes_pooling = False
    monitors: tuple[str, ...] = ("val_map",)
    representation = "embeddings"
    per_patch = False
    triplet_stats = True
    objective_class: type = TripletObjective

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.key!r})"

    # -- configuration -------------------------------------------------------------------------
    def online(self, config) -> bool:
        """Whether it mines its triplets inside each batch of tracks."""
        return self.mining == "any" and is_online(config.mining)

    def run_name(self, config) -> str:
        """The default run label."""
        if self.mining == "none":
            return f"{config.system}_s{config.seed}"
        return f"{config.system}_{config.mining}_s{config.seed}"

    # -- model and loss ------------------------------------------------------------------------
    def build(self, config, data: TrainData) -> nn.Module:
        """The run's network, shaped by its config and its data (tags, CQT bins)."""
        extra = {k: getattr(config, k) for k in ("dropout", "pooling") if getattr(config, k) is not None}
        return build_model(self.network, n_tags=data.tags.shape[1], width=config.width,
                           n_bins=data.n_bins, patch_len=config.patch_len,
                           embedding_dim=config.embedding_dim, seed=config.seed, **extra)

    def objective(self, model: nn.Module, config) -> nn.Module:
        """``forward(x, y, S, idx, n_triplets, shared) -> (loss, active, n_triplets, loss_all)``."""
        return self.objective_class(model, config)

    # -- batches -------------------------------------------------------------------------------
    def track_batches(self, config) -> bool:
        """Whether it trains on batches of tracks (else on offline-mined triplets)."""
        return self.mining == "none" or self.online(config)

    def sampler(self, config, train_idx: np.ndarray, triplets: np.ndarray | None, batch_tracks: int,
                rank: int, world_size: int):
        """The batch sampler: of tracks, or of the mined ``triplets``."""
        if self.track_batches(config):
            return TrackBatchSampler(train_idx, batch_size=batch_tracks, seed=config.seed, rank=rank,
                                     world_size=world_size, drop_last=True)
        if config.sampler == "shuffled":
            return ShuffledTripletSampler(triplets, batch_size=config.negatives_per_batch,
                                          seed=config.seed, rank=rank, world_size=world_size,
                                          drop_last=True)
        return PaperBatchSampler(triplets, n_neg_per_batch=config.negatives_per_batch,
                                 seed=config.seed, rank=rank, world_size=world_size)

    def patches_per_song(self, config) -> int:
        return 1

    def max_patches_per_batch(self, config) -> int:
        """A bound on a batch's patches, known before the data (the memory check)."""
        if self.track_batches(config):
            return config.batch_tracks
        return 3 * config.negatives_per_batch * self.patches_per_song(config)

    def patches_per_batch(self, config, batch_tracks: int) -> int:
        """Patches of one batch (``batch_tracks``: the tracks of a track batch, clipped)."""
        return batch_tracks if self.track_batches(config) else self.max_patches_per_batch(config)

    def make_batch(self, item: np.ndarray, maker: BatchMaker) -> dict:
        """A sampler item (tracks, or triplet rows) -> the numpy batch the objective takes."""
        if self.online(maker.config):
            data = maker.data
            S = oracle(data.tags[item], None, data.categories)
            return {"x": _track_patches(item, maker), "S": S, "idx": item, "n_patches": len(item)}
        B = item.shape[0]
        shared = _is_shared(item)
        if shared:
            # one random patch per row: B anchor patches, B positive patches, B negatives
            parts = [maker.patches(item[0, 0], B), maker.patches(item[0, 1], B)] + \
                [maker.patches(t, 1) for t in item[:, 2]]
        else:
            parts = [maker.patches(t, 1) for t in item.T.ravel()]   # anchors, positives, negatives
        x = np.concatenate(parts, axis=0)
        return {"x": x, "n_triplets": B, "shared": shared, "n_patches": x.shape[0]}

    # -- retrieval -----------------------------------------------------------------------------
    def similarity(self, model: nn.Module, E: np.ndarray, categories, device) -> np.ndarray | None:
        """Track similarities from its representations ``E``; None: cosine of the embeddings."""
        return None


class TripletLoss(System):
    """TL: the triplet-loss CNN (Prétet et al. 2020), offline or online mining."""

    key = network = "tl"
    paper_lr = 1e-6
    mining = "any"


class TripletLossAutopool(TripletLoss):
    """TL Autopool: TL with AutoPool over time (its pooling and α's rate configurable)."""

    key = network = "tl_autopool"
    takes_pooling = True


class AutoTagging(System):
    """AT: the auto-tagging baseline (FCN-5); its tracks are compared by their tags (oracle)."""

    key = network = "at"
    mining = "none"
    monitors = ("val_map", "val_auc")
    representation = "tag_probabilities"
    triplet_stats = False
    objective_class = TagObjective

    def make_batch(self, item: np.ndarray, maker: BatchMaker) -> dict:
        return {"x": _track_patches(item, maker), "y": maker.data.tags[item], "n_patches": len(item)}

    def similarity(self, model, E, categories, device):
        return oracle(E, None, categories)


class TripletMatchNetSystem(System):
    """Triplet MatchNet (Lu et al. 2017): a learned metric on patch pairs of song triplets."""

    key = network = "matchnet"
    has_dropout = False
    per_patch = True
    objective_class = MatchNetObjective

    def patches_per_song(self, config) -> int:
        return config.matchnet_patches

    def patches_per_batch(self, config, batch_tracks: int) -> int:
        if config.sampler == "shuffled":
            return super().patches_per_batch(config, batch_tracks)
        return (2 + config.negatives_per_batch) * config.matchnet_patches

    def make_batch(self, item: np.ndarray, maker: BatchMaker) -> dict:
        B, P = item.shape[0], maker.config.matchnet_patches
        shared = _is_shared(item)
        if shared:   # P patches of the anchor, of the positive, of each negative
            tracks = [item[0, 0], item[0, 1], *item[:, 2]]
        else:        # P patches of every row's anchor, positive and negative
            tracks = [*item[:, 0], *item[:, 1], *item[:, 2]]
        x = np.concatenate([maker.patches(t, P) for t in tracks], axis=0)
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
