r"""One trainer for the four systems, on any device, resumable, and distributed with torchrun.

:func:`train` takes a :class:`TrainConfig` and trains

* ``"at"`` — the auto-tagging baseline (FCN-5, BCE on tags binarised at 0.5);
* ``"tl"`` — the triplet-loss CNN, with offline mining (``"neighbors"``, ``"uniform"``,
  ``"distance"``: Prétet et al. 2020, §3.2) or online mining inside a batch of tracks
  (``"online-semihard"``, ``"online-hard"``: the paper's future work);
* ``"tl_autopool"`` — the same with AutoPool over time;
* ``"matchnet"`` — Triplet MatchNet (Lu et al. 2017): rank loss ψ + contrastive loss φ on all
  patch pairs of song triplets.

**Batches.** The paper's TL batch (§4.3) is one anchor track, one positive track and 42
negative tracks, mined offline (:class:`mrlib.mining.PaperBatchSampler`), with one random patch
per row: 42 triplets of patches, 126 patches. ``sampler="shuffled"`` draws the 42 triplets from
all mined ones instead (:class:`mrlib.mining.ShuffledTripletSampler`). AT and online mining draw
batches of ``batch_tracks`` training tracks (one patch each); online mining then keeps the hard
or semi-hard valid triplets of the batch (:func:`mrlib.mining.online_triplets`). MatchNet takes
the offline batches as song triplets :math:`(\chi, \chi^+, \chi^-_j)`, with
``matchnet_patches`` patches per song.

**What is logged.** ``loss`` is the optimised objective; ``loss_all`` and ``active_fraction``
(the share of triplets with a non-zero loss: near 1 with a loss near the margin is collapse,
near 0 nothing is left to learn) are over every valid triplet of the batch — for online mining
that is more than the selected ones, which all cost something by construction.

**An epoch** is ``steps_per_epoch`` batches: at paper scale the 53.4 M mined triplets make
1.3 M batches, which no one waits for. After each epoch: the validation metric (MAP@20 on the
validation split, the oracle restricted to it; ROC AUC for AT too), early stopping on it
(the best weights are kept), an atomic checkpoint (model, optimiser, AMP scaler, sampler, every
RNG state of every rank, the early-stopping state and the metrics so far) and one row of
``metrics.jsonl``. ``resume=True`` continues the same run: the weights and metrics at every
later epoch equal those of an uninterrupted run (CPU, same seed).

**At the end** the best weights embed every track of the catalog with its 8 seeded test
patches (:func:`mrlib.features.test_patches` with ``seed = catalog index``, so every system sees
the same patches), averaged — L2-normalised for TL — or tag probabilities for AT, written to
``embeddings.npy`` with ``tracks.csv`` (catalog index, track id, split); ``summary.json`` holds
throughput (patches/s), the share of step time spent waiting for data and the peak memory.
``epochs=0`` writes the untrained network's embeddings: the reference row of Table 2.

**Devices.** :func:`pick_device` takes CUDA, then Apple MPS, then the CPU. On CUDA, mixed
precision (``amp=True``) uses bfloat16 where the GPU supports it, else float16 with a
``GradScaler``. On the CPU the run is deterministic (``torch.use_deterministic_algorithms``).

**Distributed.** Launched as ``torchrun --nproc_per_node=K -m mrlib.train ...`` the same code
runs PyTorch DDP (NCCL on CUDA, gloo on CPU): each rank draws its own share of the batches
(the samplers take ``rank``/``world_size``), gradients are averaged, rank 0 alone validates,
logs and writes files. Without torchrun nothing changes.

Run folder (``out_dir``, default ``runs/train/<folder_name>``: the run name, or
``<system>_<mining>_s<seed>-<hash of every field that shapes the result>``)::

    .mrlib.lock        while a run writes here: its pid, host and command (one writer at a time)
    .previous-run/     a replaced run's files, until the new run's first checkpoint
    config.json        the TrainConfig
    metrics.jsonl      one JSON row per epoch (epoch 0 = the untrained network)
    checkpoint.pt      latest checkpoint (SHA-256 checked); checkpoint.prev.pt the one before
    model.pt           best weights + model config (for mrlib.models.build_model)
    embeddings.npy     float32 (N, d): embeddings, or tag probabilities for AT
    patch_embeddings.npy   MatchNet only: float32 (N, 8, e) patch embeddings
    tracks.csv         catalog_index, track_id, split of each row of embeddings.npy
    summary.json       throughput, data-wait share, peak memory, best epoch, final metrics

Notebook: 06_training.ipynb
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import io
import json
import math
import numbers
import os
import queue
import random
import shutil
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

__all__ = [
    "SYSTEMS",
    "DEFAULT_LR",
    "PAPER_LR",
    "TrainConfig",
    "TrainData",
    "RunResult",
    "CheckpointError",
    "RunExistsError",
    "pick_device",
    "amp_dtype",
    "prepare_data",
    "paper_config",
    "train",
    "load_run",
    "load_checkpoint",
    "save_checkpoint",
    "embed_tracks",
    "song_dissimilarities",
    "measure_throughput",
    "config_from_args",
    "main",
]

SYSTEMS = ("at", "tl", "tl_autopool", "matchnet")

#: Learning rates of the 2020 paper (§4.3): 1e-4 for AT, 1e-6 for TL. TL Autopool is trained
#: "as the TL network"; the 2017 slides give no rate for Triplet MatchNet (Adam's usual 1e-4).
PAPER_LR: dict[str, float] = {"at": 1e-4, "tl": 1e-6, "tl_autopool": 1e-6, "matchnet": 1e-4}

#: Rates that work at the notebook's defaults (06_training.ipynb: synthetic catalog of 600
#: tracks, width 0.125, 64-frame patches, 150 Adam steps, online semi-hard mining with 64 tracks
#: per batch). Sweeping 5e-4 ... 4e-3 for TL and TL Autopool gave best validation MAP@20 between
#: 0.22 and 0.26 against 0.13-0.15 untrained, the rates within each other's 95 % CIs; 1e-3 is the
#: middle of that plateau (the table is in the notebook). The paper's 1e-6 barely moves the network
#: in that budget: it was set for ~1e6 steps of a width-1 network.
DEFAULT_LR: dict[str, float] = {"at": 1e-3, "tl": 1e-3, "tl_autopool": 1e-3, "matchnet": 1e-3}

# Files of a run folder that train() owns (a fresh run removes the previous run's copies).
_RUN_FILES = ("config.json", "metrics.jsonl", "checkpoint.pt", "checkpoint.prev.pt",
              "checkpoint.pt.tmp", "checkpoint.corrupt.pt", "model.pt", "embeddings.npy",
              "patch_embeddings.npy", "tracks.csv", "summary.json", "ddp_verify.json")
_CKPT = "checkpoint.pt"
_CKPT_PREV = "checkpoint.prev.pt"
_MAGIC = b"MRLIB-CKPT-1\n"
_CKPT_FORMAT = 1

# Config fields that may change when a run is resumed: where and how fast it runs, how long it
# lasts. Everything else shapes the trajectory and must match the checkpoint.
# Options whose None means "the model's (or optimiser's) own choice" and that enter the folder
# hash only when set, so that runs which do not use them keep their folders.
_HASHED_WHEN_SET = {"pooling", "alpha_lr"}
_RESUMABLE_CHANGES = {"epochs", "device", "n_jobs", "prefetch", "out_dir", "run_name",
                      "verify_ddp", "eval_batch", "embed_all"}
# Fields that do not change what a run produces (only where and how fast): a folder holding a
# run whose config differs from a new one only in these holds "the same run".
_SAME_RUN_IGNORES = {"device", "n_jobs", "prefetch", "out_dir", "run_name", "verify_ddp",
                     "eval_batch"}
# Where a replaced run's files wait until the new run has written its first checkpoint.
_ASIDE = ".previous-run"


# =============================================================================================
# Configuration
# =============================================================================================
@dataclass
class TrainConfig:
    """Everything that defines a training run; JSON-serialisable (:meth:`to_json`).

    Parameters
    ----------
    system : {"at", "tl", "tl_autopool", "matchnet"}, default "tl"
    mining : str, default "distance"
        Offline ``"neighbors"``, ``"uniform"``, ``"distance"`` or online ``"online-semihard"``,
        ``"online-hard"`` (TL and TL Autopool). Ignored by AT; MatchNet takes offline ones.
    catalog : str, default "synthetic"
        Name or folder for :func:`mrlib.catalog.load`.
    n_tracks : int, default 200
        Catalog size (generated catalogs; 200 is the default catalog of ``make catalog``).
    catalog_seed : int, default 0
        Seed of the generated catalog (kept apart from ``seed`` so that changing the training
        seed does not change the data).
    catalog_kwargs : dict
        Further keyword arguments for :func:`mrlib.catalog.load` (e.g. ``duration_s``).
    features : dict
        Keyword arguments of :class:`mrlib.features.FeatureConfig` (default: its defaults).
    patch_len : int, default 128
        Patch length in CQT frames (paper: 512 = 11.9 s).
    width : float, default 0.125
        Channel multiplier (1.0 = the paper's Table 1).
    embedding_dim : int, default 128
        ``d`` (TL, TL Autopool) or the tower embedding (MatchNet).
    dropout : float in [0, 1) or None, default None
        Dropout after each convolution block of AT, TL and TL Autopool; ``None`` keeps the
        model's own (AT 0.5, as FCN; TL and TL Autopool 0). MatchNet has none.
    pooling : {"autopool", "mean", "max"} or None, default None
        TL Autopool's pooling over time (``mrlib.models.POOLINGS``); ``None`` keeps the learned
        AutoPool. Other systems refuse it.
    alpha_lr : float in (0, 1) or None, default None
        Adam's learning rate of the learned AutoPool's α (``None``: ``lr``, as every weight).
    n_pos, n_neg : int, default 15, 250
        ``Np`` positives per anchor and ``Nn`` negatives per pair for offline mining.
    negatives_per_batch : int, default 42
        Triplets per batch of offline mining: with ``sampler="paper"`` the negative tracks that
        share one anchor and one positive track (§4.3).
    sampler : {"paper", "shuffled"}, default "paper"
        Offline batches: the paper's (one anchor track, one positive track, 42 negative
        tracks; :class:`mrlib.mining.PaperBatchSampler`) or 42 triplets drawn at random from
        all mined ones (:class:`mrlib.mining.ShuffledTripletSampler`), which averages the
        gradient over many anchors.
    batch_tracks : int, default 64
        Tracks per batch for AT and online mining (clipped to the training tracks per rank).
    matchnet_patches : int, default 2
        Patches per song in a MatchNet song triplet.
    margin : float, default 0.5
        Triplet-loss margin α.
    lr : float or None
        Adam's learning rate; ``None`` = :data:`DEFAULT_LR` of the system
        (:data:`PAPER_LR` holds the papers').
    epochs : int, default 10
        Epochs to train (0: only embed with the untrained network).
    steps_per_epoch : int, default 50
        Batches per epoch (per rank).
    patience : int, default 5
        Stop after this many epochs without a better validation metric (0: never stop early).
    monitor : {"val_map", "val_auc"}, default "val_map"
        The early-stopping metric (``"val_auc"`` for AT only).
    val_patches : int, default 8
        Test patches per track for validation and the final embeddings.
    eval_batch : int, default 256
        Patches per forward pass when embedding.
    device : str, default "auto"
        ``"auto"`` (:func:`pick_device`), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``.
    amp : bool, default True
        Mixed precision on CUDA (bf16 where supported, else fp16 + GradScaler); no effect
        elsewhere.
    deterministic : bool or None, default None
        ``torch.use_deterministic_algorithms``; ``None`` = on for CPU, off on GPUs (speed).
    seed : int, default 0
        Seeds weights, mining, samplers, patches and dropout.
    out_dir : str or None
        Run folder; default ``runs_dir() / "train" / folder_name``: ``run_name`` when given,
        else ``"<system>_<mining>_s<seed>-<hash>"`` where the hash covers every field that
        shapes the result (:attr:`fingerprint`), so runs with another lr, width, catalog ...
        never share a default folder.
    run_name : str or None
        Label of the run; default ``"<system>_<mining>_s<seed>"`` (``"at_s<seed>"`` for AT).
    n_jobs : int, default 2
        Processes for feature extraction.
    prefetch : int, default 2
        Batches prepared ahead by a background thread (0: in the training loop).
    embed_all : bool, default True
        At the end, embed every track of the catalog (``embeddings.npy``); False skips it
        (quick experiments that only need the metrics).
    verify_ddp : bool, default False
        Under DDP, compare parameter checksums across ranks after every step (all_gather) and
        record which files each rank wrote; the report goes to ``ddp_verify.json``.

    Notebook: 06_training.ipynb
    """

    system: str = "tl"
    mining: str = "distance"
    catalog: str = "synthetic"
    n_tracks: int = 200
    catalog_seed: int = 0
    catalog_kwargs: dict = field(default_factory=dict)
    features: dict = field(default_factory=dict)
    patch_len: int = 128
    width: float = 0.125
    embedding_dim: int = 128
    dropout: float | None = None
    pooling: str | None = None
    alpha_lr: float | None = None
    n_pos: int = 15
    n_neg: int = 250
    negatives_per_batch: int = 42
    sampler: str = "paper"
    batch_tracks: int = 64
    matchnet_patches: int = 2
    margin: float = 0.5
    lr: float | None = None
    epochs: int = 10
    steps_per_epoch: int = 50
    patience: int = 5
    monitor: str = "val_map"
    val_patches: int = 8
    eval_batch: int = 256
    device: str = "auto"
    amp: bool = True
    deterministic: bool | None = None
    seed: int = 0
    out_dir: str | None = None
    run_name: str | None = None
    n_jobs: int = 2
    prefetch: int = 2
    embed_all: bool = True
    verify_ddp: bool = False

    def __post_init__(self) -> None:
        self.validate()

    # -- checks ---------------------------------------------------------------------------
    def validate(self) -> "TrainConfig":
        """Check every field; raise ``ValueError``/``TypeError`` naming the bad one.

        Also canonicalises ``mining`` (aliases such as ``"random"`` → ``"uniform"``).

        Notebook: 06_training.ipynb
        """
        from mrlib.mining import ALL_STRATEGIES, canonical_strategy, is_online

        if self.system not in SYSTEMS:
            raise ValueError(f"TrainConfig.system must be one of {SYSTEMS}, got {self.system!r}")
        if not isinstance(self.mining, str):
            raise TypeError(f"TrainConfig.mining must be a str, got {self.mining!r}")
        if self.dropout is not None:
            if self.system == "matchnet":
                raise ValueError("TrainConfig.dropout: the MatchNet system has no dropout; leave it None")
            if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) \
                    or not 0.0 <= float(self.dropout) < 1.0:
                raise ValueError(f"TrainConfig.dropout must be None or a float in [0, 1), got {self.dropout!r}")
            self.dropout = float(self.dropout)
        if self.pooling is not None:
            from mrlib.models import POOLINGS

            if self.system != "tl_autopool":
                raise ValueError(f"TrainConfig.pooling is TL Autopool's; system {self.system!r} "
                                 "pools its own way: leave it None")
            if self.pooling not in POOLINGS:
                raise ValueError(f"TrainConfig.pooling must be None or one of {POOLINGS}, "
                                 f"got {self.pooling!r}")
        if self.alpha_lr is not None:
            if self.system != "tl_autopool" or self.pooling not in (None, "autopool"):
                raise ValueError("TrainConfig.alpha_lr is the learned AutoPool's; leave it None "
                                 f"for system {self.system!r} with pooling {self.pooling!r}")
            if isinstance(self.alpha_lr, bool) or not isinstance(self.alpha_lr, numbers.Real) \
                    or not 0 < self.alpha_lr < 1:
                raise ValueError(f"TrainConfig.alpha_lr must be None or in (0, 1), got {self.alpha_lr!r}")
            self.alpha_lr = float(self.alpha_lr)
        try:
            self.mining = canonical_strategy(self.mining)
        except ValueError:
            raise ValueError(f"TrainConfig.mining must be one of {ALL_STRATEGIES}, "
                             f"got {self.mining!r}") from None
        if self.system == "matchnet" and is_online(self.mining):
            raise ValueError("matchnet trains on offline-mined song triplets; choose mining from "
                             "'neighbors', 'uniform', 'distance'")
        for name, low in (("n_tracks", 2), ("patch_len", 1), ("embedding_dim", 1), ("n_pos", 1),
                          ("n_neg", 1), ("negatives_per_batch", 1), ("batch_tracks", 2),
                          ("matchnet_patches", 1), ("epochs", 0), ("steps_per_epoch", 1),
                          ("patience", 0), ("val_patches", 1), ("eval_batch", 1), ("seed", 0),
                          ("catalog_seed", 0), ("prefetch", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise TypeError(f"TrainConfig.{name} must be an int, got {value!r}")
            if value < low:
                raise ValueError(f"TrainConfig.{name} must be >= {low}, got {value}")
            setattr(self, name, int(value))
        if isinstance(self.n_jobs, bool) or not isinstance(self.n_jobs, numbers.Integral) or \
                self.n_jobs == 0 or self.n_jobs < -1:
            raise ValueError(f"TrainConfig.n_jobs must be a positive int or -1, got {self.n_jobs!r}")
        for name in ("width", "margin"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
                raise TypeError(f"TrainConfig.{name} must be a finite number, got {value!r}")
            setattr(self, name, float(value))
        if self.width <= 0:
            raise ValueError(f"TrainConfig.width must be > 0 (1.0 = the paper), got {self.width}")
        if self.margin < 0:
            raise ValueError(f"TrainConfig.margin must be >= 0, got {self.margin}")
        if self.lr is not None:
            if isinstance(self.lr, bool) or not isinstance(self.lr, numbers.Real) or \
                    not (0 < self.lr < 1):
                raise ValueError(f"TrainConfig.lr must be None or in (0, 1), got {self.lr!r}")
            self.lr = float(self.lr)
        if self.sampler not in ("paper", "shuffled"):
            raise ValueError(f"TrainConfig.sampler must be 'paper' or 'shuffled', got {self.sampler!r}")
        if self.monitor not in ("val_map", "val_auc"):
            raise ValueError(f"TrainConfig.monitor must be 'val_map' or 'val_auc', got {self.monitor!r}")
        if self.monitor == "val_auc" and self.system != "at":
            raise ValueError("monitor='val_auc' is for the auto-tagging system only")
        for name in ("amp", "verify_ddp", "embed_all"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"TrainConfig.{name} must be a bool, got {getattr(self, name)!r}")
        if self.deterministic is not None and not isinstance(self.deterministic, bool):
            raise TypeError(f"TrainConfig.deterministic must be None or a bool, got {self.deterministic!r}")
        for name in ("catalog_kwargs", "features"):
            if not isinstance(getattr(self, name), dict):
                raise TypeError(f"TrainConfig.{name} must be a dict, got {getattr(self, name)!r}")
        self._check_features()
        if not isinstance(self.catalog, str) or not self.catalog:
            raise TypeError(f"TrainConfig.catalog must be a non-empty str, got {self.catalog!r}")
        if not isinstance(self.device, str):
            raise TypeError(f"TrainConfig.device must be a str such as 'auto' or 'cuda:0', "
                            f"got {self.device!r}")
        for name in ("out_dir", "run_name"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, (str, os.PathLike)):
                raise TypeError(f"TrainConfig.{name} must be None or a path string, got {value!r}")
            if value is not None:
                setattr(self, name, os.fspath(value))
        try:
            json.dumps(self.to_dict())
        except TypeError as err:
            raise TypeError(f"TrainConfig must be JSON-serialisable: {err}") from None
        return self

    def _check_features(self) -> None:
        """``features`` must be keyword arguments that :class:`FeatureConfig` accepts."""
        from mrlib.features import FeatureConfig

        known = [f.name for f in dataclasses.fields(FeatureConfig)]
        unknown = sorted(set(self.features) - set(known))
        if unknown:
            raise ValueError(f"TrainConfig.features has unknown key(s) {unknown}; "
                             f"FeatureConfig takes {known}")
        try:
            FeatureConfig(**self.features)
        except (TypeError, ValueError) as err:
            raise ValueError(f"TrainConfig.features={self.features!r}: {err}") from None

    # -- derived ----------------------------------------------------------------------------
    @property
    def learning_rate(self) -> float:
        """``lr``, or the system's :data:`DEFAULT_LR` when ``lr`` is None."""
        return float(self.lr) if self.lr is not None else DEFAULT_LR[self.system]

    @property
    def online(self) -> bool:
        """Whether TL mines its triplets inside each batch."""
        from mrlib.mining import is_online

        return self.system in ("tl", "tl_autopool") and is_online(self.mining)

    @property
    def name(self) -> str:
        """``run_name`` or a label built from system, mining and seed."""
        if self.run_name:
            return self.run_name
        if self.system == "at":
            return f"at_s{self.seed}"
        return f"{self.system}_{self.mining}_s{self.seed}"

    @property
    def fingerprint(self) -> str:
        """SHA-256 (hex) of every field that shapes the run's trajectory.

        Leaves out the fields a resumed run may change (:data:`_RESUMABLE_CHANGES`: epochs,
        device, I/O), so that the folder of a default-named run is the same when it is
        resumed with more epochs.
        """
        fields = {k: v for k, v in self.to_dict().items()
                  if k not in _RESUMABLE_CHANGES and not (k in _HASHED_WHEN_SET and v is None)}
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()

    @property
    def folder_name(self) -> str:
        """``run_name``, or ``<name>-<first 8 hex digits of the fingerprint>``.

        Two runs that differ in any field that changes the result (lr, width, n_tracks,
        catalog, features ...) get different default folders.
        """
        return self.run_name if self.run_name else f"{self.name}-{self.fingerprint[:8]}"

    def run_dir(self) -> Path:
        """The run folder (``out_dir`` or ``runs_dir()/train/<folder_name>``), not created here."""
        if self.out_dir:
            return Path(self.out_dir)
        from mrlib.paths import runs_dir

        return runs_dir() / "train" / self.folder_name

    # -- serialisation ----------------------------------------------------------------------
    def to_dict(self) -> dict:
        """The fields as a plain dict."""
        return dataclasses.asdict(self)

    def to_json(self, path: str | os.PathLike | None = None) -> str:
        """JSON text of the config; also written to ``path`` when given."""
        text = json.dumps(self.to_dict(), indent=1, sort_keys=True)
        if path is not None:
            Path(path).write_text(text + "\n")
        return text

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """Build from a dict; unknown keys are an error (a typo should not pass silently)."""
        if not isinstance(d, dict):
            raise TypeError(f"expected a dict of TrainConfig fields, got {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s) {unknown}; known: {sorted(known)}")
        return cls(**d)

    @classmethod
    def from_json(cls, text_or_path: str | os.PathLike) -> "TrainConfig":
        """Inverse of :meth:`to_json` (JSON text or a path to a JSON file)."""
        text = str(text_or_path)
        if not text.lstrip().startswith("{"):
            text = Path(text_or_path).read_text()
        return cls.from_dict(json.loads(text))

    def replace(self, **changes) -> "TrainConfig":
        """A copy with some fields changed (validated)."""
        return dataclasses.replace(self, **changes)


def paper_config(system: str = "tl", mining: str = "distance", **overrides) -> TrainConfig:
    """The papers' scale, for a GPU: width 1.0, 96 × 512 patches, AMP, the papers' rates.

    ``n_tracks = 14246`` (the 2020 catalog's size), ``Np = 15``, ``Nn = 250``, 42 negatives per
    batch, ``lr = PAPER_LR[system]``, 100 epochs of 2000 batches with patience 10, features at
    44.1 kHz / hop 1024. Any field can be overridden.

    Returns
    -------
    TrainConfig

    Notebook: 06_training.ipynb
    """
    base = dict(system=system, mining=mining, n_tracks=14246, patch_len=512, width=1.0,
                n_pos=15, n_neg=250, negatives_per_batch=42, lr=PAPER_LR[system], epochs=100,
                steps_per_epoch=2000, patience=10, amp=True, device="auto",
                features={"sr": 44100, "hop_length": 1024}, batch_tracks=128, prefetch=4)
    base.update(overrides)
    return TrainConfig(**base)


# =============================================================================================
# Devices and precision
# =============================================================================================
def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """The device to train on: CUDA, then Apple MPS, then the CPU — or the one asked for.

    Parameters
    ----------
    device : str, torch.device or None
        ``None`` or ``"auto"`` picks; anything else (``"cpu"``, ``"cuda"``, ``"cuda:1"``,
        ``"mps"``) is checked to exist.

    Returns
    -------
    torch.device

    Raises
    ------
    ValueError
        For an unknown device string, or a device this machine does not have.

    Examples
    --------
    >>> pick_device("cpu")
    device(type='cpu')

    Notebook: 06_training.ipynb
    """
    if device is None or (isinstance(device, str) and device.strip().lower() == "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"device must be None, 'auto', a device string or a torch.device, got {device!r}")
    try:
        dev = torch.device(device.strip().lower() if isinstance(device, str) else device)
    except RuntimeError as err:
        raise ValueError(f"unknown device {device!r} ({err}); use 'auto', 'cpu', 'cuda', "
                         "'cuda:N' or 'mps'") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} asked for, but CUDA is not available here; "
                             "use device='auto' or 'cpu'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r}: this machine has {torch.cuda.device_count()} GPU(s)")
    elif dev.type == "mps":
        if not _mps_available():
            raise ValueError(f"device {device!r} asked for, but MPS is not available here")
    elif dev.type != "cpu":
        raise ValueError(f"device type {dev.type!r} is not supported; use 'cpu', 'cuda' or 'mps'")
    return dev


def amp_dtype(device: torch.device, amp: bool = True) -> torch.dtype | None:
    """The autocast dtype for mixed precision, or None when training in float32.

    bfloat16 on CUDA GPUs that support it (Ampere and later: same exponent range as float32,
    no loss scaling), float16 on older CUDA GPUs (with a ``GradScaler``), None on CPU and MPS
    (CPU autocast is slower than float32 on most CPUs; MPS autocast is not used here).

    Notebook: 06_training.ipynb
    """
    if not amp or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _peak_memory(device: torch.device) -> tuple[int, str]:
    """Peak memory in bytes and what it measures."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device)), "torch.cuda.max_memory_allocated"
    if device.type == "mps" and hasattr(torch, "mps"):
        with contextlib.suppress(Exception):
            return int(torch.mps.driver_allocated_memory()), "torch.mps.driver_allocated_memory"
    try:
        import resource

        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        # Linux reports KiB, macOS bytes.
        return int(rss if sys.platform == "darwin" else rss * 1024), "peak RSS of the process"
    except ImportError:  # pragma: no cover - Windows
        return 0, "unavailable"


# =============================================================================================
# Data
# =============================================================================================
@dataclass
class TrainData:
    """What training needs from a catalog and its features, by catalog index.

    Attributes
    ----------
    features : FeatureSet or sequence
        ``features[i]`` -> float16/float32 array (n_bins, T_i), log-CQT in dB.
    tags : numpy.ndarray, float32 (N, m)
        Tag likelihoods in [0, 1].
    categories : list of str or None, length m
        Category of each tag (for the oracle); None = one category.
    split : numpy.ndarray of str (N,)
        ``"train"``, ``"val"`` or ``"test"``.
    track_ids : numpy.ndarray of str (N,)
    available : numpy.ndarray of bool (N,)
        Tracks that have features (skipped tracks are left out everywhere).
    n_bins : int
    name : str

    Notebook: 06_training.ipynb
    """

    features: Any
    tags: np.ndarray
    categories: list | None
    split: np.ndarray
    track_ids: np.ndarray
    available: np.ndarray
    n_bins: int
    name: str = ""

    def __post_init__(self) -> None:
        self.tags = np.asarray(self.tags, dtype=np.float32)
        self.split = np.asarray(self.split).astype(str)
        self.track_ids = np.asarray(self.track_ids).astype(str)
        self.available = np.asarray(self.available, dtype=bool)
        n = self.tags.shape[0]
        if self.tags.ndim != 2:
            raise ValueError(f"tags must be (N, m), got shape {self.tags.shape}")
        for name in ("split", "track_ids", "available"):
            if getattr(self, name).shape != (n,):
                raise ValueError(f"{name} must have shape ({n},) like tags, got {getattr(self, name).shape}")
        if len(self.features) != n:
            raise ValueError(f"features hold {len(self.features)} tracks, tags {n}")
        if self.categories is not None and len(self.categories) != self.tags.shape[1]:
            raise ValueError(f"categories has {len(self.categories)} entries for {self.tags.shape[1]} tags")

    def __len__(self) -> int:
        return int(self.tags.shape[0])

    def indices(self, split: str | None = None) -> np.ndarray:
        """Catalog indices (int64) of the available tracks of a split (all splits: None)."""
        mask = self.available.copy()
        if split is not None:
            if split not in ("train", "val", "test"):
                raise ValueError(f"split must be 'train', 'val', 'test' or None, got {split!r}")
            mask &= self.split == split
        return np.flatnonzero(mask).astype(np.int64)

    @classmethod
    def from_catalog(cls, catalog, features) -> "TrainData":
        """From a :class:`mrlib.catalog.Catalog` and its :class:`mrlib.features.FeatureSet`."""
        tracks = catalog.tracks
        vocab = getattr(catalog, "vocabulary", None)
        categories = list(vocab["category"]) if vocab is not None and "category" in vocab else None
        available = np.asarray(getattr(features, "available", np.ones(len(tracks), bool)), dtype=bool)
        n_bins = int(getattr(getattr(features, "config", None), "n_bins", 0)) or \
            int(np.asarray(features[int(np.flatnonzero(available)[0])]).shape[0])
        return cls(features=features, tags=np.asarray(catalog.tags, dtype=np.float32),
                   categories=categories, split=tracks["split"].to_numpy(),
                   track_ids=tracks["track_id"].to_numpy(), available=available, n_bins=n_bins,
                   name=str(getattr(catalog, "name", "")))


def prepare_data(config: TrainConfig, progress: bool = True, preload_limit_gb: float = 8.0) -> TrainData:
    """Load (building if needed) the catalog, extract its features, and wrap them for training.

    Parameters
    ----------
    config : TrainConfig
        Uses ``catalog``, ``n_tracks``, ``catalog_seed``, ``catalog_kwargs``, ``features``,
        ``n_jobs``.
    progress : bool
        Progress bars of the catalog build and the feature extraction.
    preload_limit_gb : float
        Features are read into memory when they weigh less than this (else memory-mapped).

    Returns
    -------
    TrainData

    Notebook: 06_training.ipynb
    """
    from mrlib import catalog as catalog_mod
    from mrlib import features as features_mod

    kwargs = dict(config.catalog_kwargs)
    if config.catalog in ("synthetic", "music21"):  # the generated catalogs: built when missing
        kwargs.setdefault("n_tracks", config.n_tracks)
        kwargs.setdefault("seed", config.catalog_seed)
        kwargs.setdefault("n_jobs", config.n_jobs)
        kwargs.setdefault("progress", progress)
    cat = catalog_mod.load(config.catalog, **kwargs)
    fcfg = features_mod.FeatureConfig(**config.features)
    fs = features_mod.extract(cat, fcfg, n_jobs=config.n_jobs, progress=progress)
    size_gb = float(np.sum(fs.n_frames)) * fcfg.n_bins * 2 / 1e9
    if size_gb < preload_limit_gb:
        fs.preload(progress=False)
    return TrainData.from_catalog(cat, fs)


# =============================================================================================
# Checkpoints
# =============================================================================================
class CheckpointError(RuntimeError):
    """A checkpoint file is missing, truncated, corrupt or not an mrlib checkpoint."""


class RunExistsError(FileExistsError):
    """The run folder holds another run that only ``replace=True`` (``--replace``) may replace."""


def save_checkpoint(state: dict, path: str | os.PathLike, keep_previous: bool = True) -> Path:
    """Write a checkpoint atomically, with a SHA-256 of its payload, keeping the previous one.

    The payload (``torch.save`` of ``state``) is written to ``<path>.tmp`` with a header (magic
    line + SHA-256), flushed and fsync'ed; then the current file becomes ``checkpoint.prev.pt``
    and the new one takes its place with ``os.replace`` (atomic on POSIX and Windows). A crash
    at any point leaves a complete checkpoint: the new one, or the previous one.

    Parameters
    ----------
    state : dict
        Tensors, state dicts and plain Python values (loadable with ``weights_only=True``).
    path : path
        Target file (``.../checkpoint.pt``).
    keep_previous : bool, default True
        Rotate the current file to ``<stem>.prev.pt`` instead of overwriting it.

    Returns
    -------
    pathlib.Path of the written file.

    Notebook: 06_training.ipynb
    """
    path = Path(path)
    buf = io.BytesIO()
    torch.save(state, buf)
    payload = buf.getvalue()
    digest = hashlib.sha256(payload).hexdigest().encode()
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(_MAGIC + digest + b" " + str(len(payload)).encode() + b"\n")
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    if keep_previous and path.exists():
        os.replace(path, path.with_name(path.stem + ".prev" + path.suffix))
    os.replace(tmp, path)
    with contextlib.suppress(OSError):  # make the renames durable (POSIX)
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read and verify one checkpoint file written by :func:`save_checkpoint`.

    Parameters
    ----------
    path : path
        A checkpoint file.
    map_location : str or torch.device
        Where tensors go (``torch.load``'s ``map_location``).

    Returns
    -------
    dict
        The saved state.

    Raises
    ------
    CheckpointError
        Missing file, wrong magic (not an mrlib checkpoint), truncated payload, SHA-256
        mismatch (corrupt bytes), or a payload torch cannot read — with the reason.

    Notebook: 06_training.ipynb
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    data = path.read_bytes()
    if not data.startswith(_MAGIC):
        raise CheckpointError(f"{path} is not an mrlib checkpoint (bad header; "
                              f"{len(data)} bytes) — truncated or overwritten")
    header_end = data.find(b"\n", len(_MAGIC))
    try:
        digest, length = data[len(_MAGIC):header_end].split(b" ")
        length = int(length)
    except ValueError:
        raise CheckpointError(f"{path}: unreadable checkpoint header (truncated?)") from None
    payload = data[header_end + 1:]
    if len(payload) != length:
        raise CheckpointError(f"{path} is truncated: payload has {len(payload)} of {length} bytes")
    if hashlib.sha256(payload).hexdigest().encode() != digest:
        raise CheckpointError(f"{path} is corrupt: SHA-256 of its payload does not match the header")
    try:
        state = torch.load(io.BytesIO(payload), map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means a bad file
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path}: torch cannot read the payload ({first})") from None
    if not isinstance(state, dict) or state.get("format") != _CKPT_FORMAT:
        raise CheckpointError(f"{path}: unexpected checkpoint content (format "
                              f"{state.get('format') if isinstance(state, dict) else type(state).__name__})")
    return state


def _load_latest_checkpoint(run_dir: Path, log) -> dict | None:
    """The newest good checkpoint of a run folder, falling back to the previous one.

    A bad latest file is renamed ``checkpoint.corrupt.pt`` so that the next rotation can never
    promote it over the good previous one. Returns None when the folder has no checkpoint;
    raises CheckpointError when every candidate is bad.
    """
    latest, prev = run_dir / _CKPT, run_dir / _CKPT_PREV
    if not latest.exists() and not prev.exists():
        return None
    problems = []
    for candidate in (latest, prev):
        if not candidate.exists():
            problems.append(f"{candidate.name}: missing")
            continue
        try:
            state = load_checkpoint(candidate)
        except CheckpointError as err:
            problems.append(str(err))
            log(f"[train] WARNING: {err}")
            continue
        if candidate is prev:
            log(f"[train] resuming from the previous good checkpoint {prev.name} "
                f"(epoch {state['epoch']}); the bad one is kept as checkpoint.corrupt.pt")
            if latest.exists():
                os.replace(latest, run_dir / "checkpoint.corrupt.pt")
            os.replace(prev, latest)
        return state
    raise CheckpointError("no usable checkpoint in " + str(run_dir) + ":\n  " + "\n  ".join(problems))


# =============================================================================================
# RNG state capture (JSON strings + tensors, so checkpoints load with weights_only=True)
# =============================================================================================
def _capture_rng(patch_rng: np.random.Generator, device: torch.device) -> dict:
    py = random.getstate()
    npst = np.random.get_state()
    return {
        "python": json.dumps([py[0], list(py[1]), py[2]]),
        "numpy": json.dumps([npst[0], npst[1].tolist(), int(npst[2]), int(npst[3]), float(npst[4])]),
        "patches": json.dumps(patch_rng.bit_generator.state),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
    }


def _restore_rng(state: dict, patch_rng: np.random.Generator, device: torch.device) -> None:
    v, internal, gauss = json.loads(state["python"])
    random.setstate((v, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = json.loads(state["numpy"])
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    patch_rng.bit_generator.state = json.loads(state["patches"])
    torch.set_rng_state(state["torch"].cpu())
    if device.type == "cuda" and state.get("cuda") is not None:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)


# =============================================================================================
# Distributed context
# =============================================================================================
@dataclass
class _Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.active:
            torch.distributed.barrier()

    def broadcast(self, obj):
        if not self.active:
            return obj
        box = [obj]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj) -> list:
        if not self.active:
            return [obj]
        out = [None] * self.world_size
        torch.distributed.all_gather_object(out, obj)
        return out

    def close(self) -> None:
        if self.owns_group and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _init_distributed(device_pref: str) -> _Dist:
    """Join the torchrun process group when launched by torchrun (WORLD_SIZE > 1)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return _Dist(dist.get_rank(), dist.get_world_size(),
                     int(os.environ.get("LOCAL_RANK", dist.get_rank())), owns_group=False)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    wants_cuda = device_pref.startswith("cuda") or (device_pref == "auto" and torch.cuda.is_available())
    backend = "nccl" if wants_cuda and dist.is_nccl_available() else "gloo"
    dist.init_process_group(backend=backend)
    return _Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")),
                 owns_group=True)


class _WriteAudit:
    """Record the files this process opens for writing under a folder (``verify_ddp``).

    Python audit hooks cannot be removed, so one hook is installed once per process and
    only records while a folder is set.
    """

    _installed = False
    folder: str | None = None
    seen: list = []

    @classmethod
    def start(cls, folder: Path) -> None:
        cls.folder, cls.seen = str(Path(folder).resolve()), []
        if not cls._installed:
            sys.addaudithook(cls._hook)
            cls._installed = True

    @classmethod
    def stop(cls) -> list:
        cls.folder = None
        return sorted(set(cls.seen))

    @classmethod
    def _hook(cls, event: str, args) -> None:
        if cls.folder is None:
            return
        if event == "open":
            path, mode = args[0], args[1]
            writing = isinstance(mode, str) and any(c in mode for c in "wax+")
            if isinstance(args[2], int):
                writing = writing or bool(args[2] & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
        elif event in ("os.rename", "os.replace", "os.remove", "os.unlink"):
            path, writing = args[0], True
        else:
            return
        if writing and isinstance(path, (str, bytes, os.PathLike)):
            p = os.fsdecode(path)
            full = os.path.abspath(p)
            if full.startswith(cls.folder):
                cls.seen.append(os.path.relpath(full, cls.folder))


# =============================================================================================
# Objectives: one nn.Module per system so that DDP sees the whole loss computation
# =============================================================================================
class _Objective(nn.Module):
    """``forward(batch tensors) -> (loss, active_fraction, n_triplets, loss_all)`` for one system.

    ``loss`` is what is optimised. For online mining ``active_fraction`` and ``loss_all`` are
    measured over *every valid* triplet of the batch, not only the selected ones: semi-hard
    triplets all cost something by construction, so their share would be 1 whatever the
    state of training. Elsewhere ``loss_all`` is ``loss`` (NaN for AT, like the fraction).

    Wrapping the loss in a module lets DDP hook the complete forward pass, including calls to
    ``logits``/``embed``/``metric_pairs`` that are not the model's own ``forward``.
    """

    def __init__(self, model: nn.Module, config: TrainConfig) -> None:
        super().__init__()
        self.model = model
        self.system = config.system
        self.online = config.online
        self.mode = config.mining
        self.margin = config.margin
        self.n_pos = config.n_pos
        self.P = config.matchnet_patches

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, S: torch.Tensor | None = None,
                idx: torch.Tensor | None = None, n_triplets: int = 0, shared: bool = True):
        from mrlib import losses

        if self.system == "at":
            logits = self.model.logits(x).float()
            loss = losses.bce_loss(logits, y, threshold=0.5, from_logits=True)
            nan = torch.full((), float("nan"), device=x.device)
            return loss, nan, x.shape[0], nan
        if self.system == "matchnet":
            return self._matchnet(x, n_triplets, shared)
        emb = self.model(x).float()
        if self.online:
            from mrlib.mining import online_triplets

            trip = online_triplets(emb, S, idx, mode=self.mode, margin=self.margin, n_pos=self.n_pos)
            with torch.no_grad():   # the state of training, over every valid triplet
                every = online_triplets(emb, S, idx, mode="all", margin=self.margin, n_pos=self.n_pos)
                if every.shape[0]:
                    loss_all, active = losses.triplet_loss(
                        emb[every[:, 0]], emb[every[:, 1]], emb[every[:, 2]], margin=self.margin)
                else:
                    loss_all = active = torch.full((), float("nan"), device=x.device)
            if trip.shape[0] == 0:
                # no valid triplet in this batch: a zero loss that still touches every
                # parameter, so DDP's gradient all-reduce sees the same graph on every rank
                return emb.sum() * 0.0, active, 0, loss_all
            loss, _ = losses.triplet_loss(emb[trip[:, 0]], emb[trip[:, 1]], emb[trip[:, 2]],
                                          margin=self.margin)
            return loss, active, int(trip.shape[0]), loss_all
        a, p, n = emb.split(n_triplets)
        loss, active = losses.triplet_loss(a, p, n, margin=self.margin)
        return loss, active, n_triplets, loss.detach()

    def _matchnet(self, x: torch.Tensor, B: int, shared: bool):
        from mrlib import losses

        P = self.P
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
def _build_model(cfg: TrainConfig, data: TrainData) -> nn.Module:
    """The run's network, shaped by its config and its data (tags, CQT bins)."""
    from mrlib.models import build_model

    extra = {k: getattr(cfg, k) for k in ("dropout", "pooling") if getattr(cfg, k) is not None}
    return build_model(cfg.system, n_tags=data.tags.shape[1], width=cfg.width, n_bins=data.n_bins,
                       patch_len=cfg.patch_len, embedding_dim=cfg.embedding_dim, seed=cfg.seed,
                       **extra)


def _adam(model: nn.Module, cfg: TrainConfig) -> torch.optim.Adam:
    """Adam at the run's rate; AutoPool's α in a group of its own when ``alpha_lr`` is set.

    Adam moves a parameter by about its learning rate per step whatever the gradient's size,
    so at 10⁻³ and 200 steps α cannot leave [-0.2, 0.2]: close to the mean, far from the max.
    """
    if cfg.alpha_lr is None:
        return torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)
    alpha = [p for n, p in model.named_parameters() if n.endswith("autopool.alpha")]
    rest = [p for n, p in model.named_parameters() if not n.endswith("autopool.alpha")]
    return torch.optim.Adam([{"params": rest}, {"params": alpha, "lr": cfg.alpha_lr}],
                            lr=cfg.learning_rate)


class _BatchMaker:
    """Turns sampler output into numpy batches (runs in the prefetch thread)."""

    def __init__(self, data: TrainData, config: TrainConfig, rng: np.random.Generator) -> None:
        self.data = data
        self.config = config
        self.rng = rng
        self.L = config.patch_len

    def _patches(self, track: int, n: int) -> np.ndarray:
        from mrlib.features import random_patches

        return random_patches(self.data.features[int(track)], self.L, n, self.rng)

    def __call__(self, item: np.ndarray) -> dict:
        cfg = self.config
        if cfg.system == "at":
            idx = np.asarray(item, dtype=np.int64)
            x = np.stack([self._patches(t, 1)[0] for t in idx])
            return {"x": x, "y": self.data.tags[idx], "n_patches": len(idx)}
        if cfg.online:
            from mrlib.similarity import oracle

            idx = np.asarray(item, dtype=np.int64)
            x = np.stack([self._patches(t, 1)[0] for t in idx])
            S = oracle(self.data.tags[idx], None, self.data.categories)
            return {"x": x, "S": S, "idx": idx, "n_patches": len(idx)}
        trip = np.asarray(item, dtype=np.int64)
        B = trip.shape[0]
        # "shared": the paper's batch, one anchor and one positive track for every row
        shared = bool((trip[:, 0] == trip[0, 0]).all() and (trip[:, 1] == trip[0, 1]).all())
        if cfg.system == "matchnet":
            P = cfg.matchnet_patches
            if shared:   # P patches of the anchor, of the positive, of each negative
                tracks = [trip[0, 0], trip[0, 1], *trip[:, 2]]
            else:        # P patches of every row's anchor, positive and negative
                tracks = [*trip[:, 0], *trip[:, 1], *trip[:, 2]]
            parts = [self._patches(t, P) for t in tracks]
        elif shared:
            # one random patch per row: B anchor patches, B positive patches, B negatives
            parts = [self._patches(trip[0, 0], B), self._patches(trip[0, 1], B)] + \
                [self._patches(t, 1) for t in trip[:, 2]]
        else:
            parts = [self._patches(t, 1) for t in trip.T.ravel()]   # anchors, positives, negatives
        x = np.concatenate(parts, axis=0)
        return {"x": x, "n_triplets": B, "shared": shared, "n_patches": x.shape[0]}


def _stream(sampler) -> Iterator:
    """Endless batches: the sampler's epochs one after another (its state says where we are)."""
    while True:
        empty = True
        for item in sampler:
            empty = False
            yield item
        if empty and len(sampler) == 0:  # pragma: no cover - guarded by the sampler
            raise RuntimeError("the sampler yields no batch")


def _tensor_batch(make, item, pin: bool) -> dict:
    """A sampler item -> batch dict with the patches as a float32 CPU tensor (pinned for CUDA)."""
    batch = make(item)
    x = torch.from_numpy(batch["x"].astype(np.float32, copy=False))
    batch["x"] = x.pin_memory() if pin else x
    return batch


class _Prefetcher:
    """Produce exactly ``n`` batches in a background thread (or inline when ``depth == 0``).

    Exactly ``n``: the sampler and patch-RNG states at the end of an epoch are those after its
    last batch, so a checkpoint taken then resumes exactly.
    """

    def __init__(self, stream: Iterator, make, n: int, depth: int, pin: bool) -> None:
        self.stream, self.make, self.n, self.depth, self.pin = stream, make, n, depth, pin
        self.wait_s = 0.0
        self._q: queue.Queue | None = None
        self._thread = None
        self._stop = threading.Event()

    def _produce(self) -> dict:
        return _tensor_batch(self.make, next(self.stream), self.pin)

    def _worker(self) -> None:
        try:
            for _ in range(self.n):
                if self._stop.is_set():
                    return
                item = self._produce()
                while not self._stop.is_set():
                    try:
                        self._q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
        except BaseException as err:  # noqa: BLE001 - handed to the consumer
            self._q.put(err)

    def __iter__(self):
        if self.depth > 0:
            self._q = queue.Queue(maxsize=self.depth)
            self._thread = threading.Thread(target=self._worker, name="mrlib-prefetch", daemon=True)
            self._thread.start()
        try:
            for _ in range(self.n):
                t0 = time.perf_counter()
                item = self._q.get() if self.depth > 0 else self._produce()
                self.wait_s += time.perf_counter() - t0
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self._stop.set()
            if self._thread is not None:
                self._thread.join()


# =============================================================================================
# Embedding and evaluation
# =============================================================================================
def _eval_patches(data: TrainData, idx: np.ndarray, patch_len: int, n: int) -> np.ndarray:
    from mrlib.features import test_patches

    return np.stack([test_patches(data.features[int(i)], patch_len, n=n, seed=int(i)) for i in idx])


@torch.no_grad()
def embed_tracks(model: nn.Module, data: TrainData, idx: Sequence[int], patch_len: int,
                 n_patches: int = 8, batch_size: int = 256, device: str | torch.device | None = None,
                 amp: bool = False, per_patch: bool = False, progress: bool = False) -> np.ndarray:
    """Track representations from 8 seeded test patches: embeddings or tag probabilities.

    Track ``i``'s patches are ``test_patches(features[i], patch_len, n_patches, seed=i)``, so
    every model and run sees the same ones. TL / TL Autopool: mean of the unit-norm patch
    embeddings, L2-normalised again; AT: mean tag probabilities; MatchNet: mean tower
    embedding (or every patch's with ``per_patch=True``, which the learned metric needs).

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
    system = getattr(model, "system", "tl")
    was_training = model.training
    model.eval()
    dtype = amp_dtype(dev, amp)
    tracks_per_chunk = max(1, batch_size // n_patches)
    out = []
    try:
        for s in tqdm(range(0, len(idx), tracks_per_chunk), desc="embed", unit="chunk",
                      disable=not progress, leave=False):
            chunk = idx[s:s + tracks_per_chunk]
            x = torch.from_numpy(_eval_patches(data, chunk, patch_len, n_patches)
                                 .astype(np.float32)).to(dev)
            x = x.reshape(-1, *x.shape[2:])
            with torch.autocast(dev.type, dtype=dtype, enabled=dtype is not None):
                e = model.embed(x).float()
            out.append(e.reshape(len(chunk), n_patches, -1).cpu())
    finally:
        model.train(was_training)
    E = torch.cat(out) if out else torch.zeros((0, n_patches, 1))
    if per_patch:
        return E.numpy().astype(np.float32)
    mean = E.mean(dim=1)
    if system in ("tl", "tl_autopool"):
        mean = torch.nn.functional.normalize(mean, dim=1)
    return mean.numpy().astype(np.float32)


@torch.no_grad()
def song_dissimilarities(model: nn.Module, Ea: np.ndarray | torch.Tensor,
                         Eb: np.ndarray | torch.Tensor | None = None, chunk_mb: float = 256.0,
                         device: str | torch.device | None = None) -> np.ndarray:
    """Triplet MatchNet song-level dissimilarity: mean of ``f = sigmoid(z)`` over patch pairs.

    Parameters
    ----------
    model : mrlib.models.TripletMatchNet
    Ea : array (n_a, P_a, e)
        Tower embeddings of the patches of each song (``embed_tracks(..., per_patch=True)``).
    Eb : array (n_b, P_b, e), optional
        Default ``Ea``.
    chunk_mb : float
        Memory budget of one block of pairs.

    Returns
    -------
    numpy.ndarray, float32, shape (n_a, n_b), values in (0, 1): 0 similar, 1 dissimilar.

    Notebook: 06_training.ipynb
    """
    dev = next(model.parameters()).device if device is None else torch.device(device)
    Ea = torch.as_tensor(np.asarray(Ea, dtype=np.float32), device=dev)
    Eb = Ea if Eb is None else torch.as_tensor(np.asarray(Eb, dtype=np.float32), device=dev)
    if Ea.ndim != 3 or Eb.ndim != 3 or Ea.shape[2] != Eb.shape[2]:
        raise ValueError(f"Ea and Eb must be (n, P, e) with the same e, got {tuple(Ea.shape)} "
                         f"and {tuple(Eb.shape)}")
    was_training = model.training
    model.eval()
    na, pa, e = Ea.shape
    nb, pb, _ = Eb.shape
    flat_b = Eb.reshape(nb * pb, e)
    # one block holds c*pa x nb*pb concatenated pairs of 2e floats
    per_track = pa * nb * pb * 2 * e * 4
    c = max(1, int(chunk_mb * 2**20 // max(per_track, 1)))
    out = np.empty((na, nb), dtype=np.float32)
    try:
        for s in range(0, na, c):
            blk = Ea[s:s + c]
            z = model.metric_pairs(blk.reshape(-1, e), flat_b)            # (c*pa, nb*pb)
            f = torch.sigmoid(z.float()).reshape(blk.shape[0], pa, nb, pb).mean(dim=(1, 3))
            out[s:s + c] = f.cpu().numpy()
    finally:
        model.train(was_training)
    return out


def _validate(model: nn.Module, data: TrainData, val_idx: np.ndarray, S_val: np.ndarray,
              config: TrainConfig, device: torch.device) -> dict:
    """Validation metrics of the current weights (MAP@20 with its 95 % CI; AUC for AT)."""
    from mrlib import evaluate
    from mrlib.similarity import oracle

    amp = config.amp
    if config.system == "matchnet":
        E = embed_tracks(model, data, val_idx, config.patch_len, config.val_patches,
                         config.eval_batch, device, amp, per_patch=True)
        D = song_dissimilarities(model, E, device=device)
        res = evaluate.evaluate_similarity(1.0 - D, S_val)
    else:
        E = embed_tracks(model, data, val_idx, config.patch_len, config.val_patches,
                         config.eval_batch, device, amp)
        if config.system == "at":
            res = evaluate.evaluate_similarity(oracle(E, None, data.categories), S_val)
        else:
            res = evaluate.evaluate_embeddings(E, S_val)
    ci = evaluate.mean_ci(res.per_query["map"])
    # MAP lies in [0, 1]: a normal-approximation interval that crosses a bound is cut there
    out = {"val_map": ci.mean, "val_map_low": float(np.clip(ci.low, 0.0, 1.0)),
           "val_map_high": float(np.clip(ci.high, 0.0, 1.0)),
           "val_recall": float(res.per_query["recall"].mean()),
           "val_rr": float(res.per_query["rr"].mean()),
           "val_ndcg": float(res.per_query["ndcg"].mean()), "val_auc": None}
    if config.system == "at":
        auc = evaluate.tag_auc(data.tags[val_idx] >= 0.5, E)
        out["val_auc"] = auc.mean
    return out


# =============================================================================================
# The run
# =============================================================================================
@dataclass
class RunResult:
    """A finished (or loaded) training run.

    Attributes
    ----------
    path : pathlib.Path
        The run folder.
    config : TrainConfig
    metrics : pandas.DataFrame
        One row per epoch (epoch 0 = untrained): ``loss`` (the optimised objective), ``loss_all``
        and ``active_fraction`` (over every valid triplet of the batch: differs from ``loss``
        for online mining), ``triplets_per_batch``, ``val_map``
        (+ ``val_map_low``/``val_map_high``, 95 % CI), ``val_recall``, ``val_rr``, ``val_ndcg``,
        ``val_auc`` (AT), ``lr``, ``train_s``, ``patches_per_s``, ``data_wait_share``,
        ``peak_memory_mb``, ``elapsed_s``, ``is_best``.
    summary : dict
        ``summary.json``.

    Notebook: 06_training.ipynb
    """

    path: Path
    config: TrainConfig
    metrics: pd.DataFrame
    summary: dict

    @property
    def embeddings(self) -> np.ndarray:
        """float32 (N', d): one row per track of :attr:`tracks` (tag probabilities for AT)."""
        f = self.path / "embeddings.npy"
        if not f.exists():
            raise FileNotFoundError(f"{f} was not written (the run had embed_all=False)")
        return np.load(f)

    @property
    def patch_embeddings(self) -> np.ndarray:
        """MatchNet: float32 (N', 8, e) patch embeddings."""
        f = self.path / "patch_embeddings.npy"
        if not f.exists():
            raise FileNotFoundError(f"{f} exists for MatchNet runs only")
        return np.load(f)

    @property
    def tracks(self) -> pd.DataFrame:
        """``catalog_index, track_id, split`` of each embedding row."""
        return pd.read_csv(self.path / "tracks.csv", dtype={"track_id": str})

    @property
    def track_ids(self) -> np.ndarray:
        """Track ids of the embedding rows."""
        return self.tracks["track_id"].to_numpy()

    @property
    def catalog_index(self) -> np.ndarray:
        """Catalog indices (int64) of the embedding rows."""
        return self.tracks["catalog_index"].to_numpy().astype(np.int64)

    def model(self, device: str | torch.device = "cpu") -> nn.Module:
        """The best weights as a model of :mod:`mrlib.models` (eval mode)."""
        from mrlib.models import build_model

        saved = torch.load(self.path / "model.pt", map_location=device, weights_only=True)
        m = build_model(**saved["model_config"]).to(device)
        m.load_state_dict(saved["state_dict"])
        return m.eval()

    def __repr__(self) -> str:
        best = self.summary.get("best", {})
        return (f"RunResult({self.config.name!r}, epochs={self.summary.get('epochs_run')}, "
                f"best val MAP@20={best.get('val_map', float('nan')):.4f}, path={str(self.path)!r})")


def load_run(path: str | os.PathLike) -> RunResult:
    """Load a run folder written by :func:`train`.

    Parameters
    ----------
    path : path
        The run folder (``RunResult.path``).

    Returns
    -------
    RunResult

    Raises
    ------
    FileNotFoundError
        When the folder lacks ``config.json`` or ``summary.json`` (the run did not finish).

    Notebook: 06_training.ipynb
    """
    path = Path(path)
    for name in ("config.json", "summary.json"):
        if not (path / name).is_file():
            raise FileNotFoundError(f"{path / name} not found: not a finished training run "
                                    "(train(config, resume=True) finishes an interrupted one)")
    config = TrainConfig.from_json(path / "config.json")
    return RunResult(path=path, config=config, metrics=_read_metrics(path / "metrics.jsonl"),
                     summary=json.loads((path / "summary.json").read_text()))


def _read_metrics(path: Path) -> pd.DataFrame:
    """metrics.jsonl as a DataFrame; missing values (JSON null) become NaN."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] \
        if path.exists() else []
    df = pd.DataFrame(rows)
    for col in df.columns:
        if col in ("epoch", "step"):
            df[col] = df[col].astype(np.int64)
        elif col == "is_best":
            df[col] = df[col].astype(bool)
        else:
            df[col] = pd.to_numeric(df[col]).astype(np.float64)
    return df


def _jsonable(v):
    if isinstance(v, (np.floating, np.integer)):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


class _Run:
    """The state of one training run; :func:`train` drives it."""

    _det_before: tuple | None = None   # set by setup(); close() restores it

    def __init__(self, config: TrainConfig, data: TrainData | None, progress: bool) -> None:
        self.config = config
        self.progress = progress
        self.dist = _init_distributed(config.device)
        self.device = self._device()
        self.log = (lambda msg: print(msg, flush=True)) if self.dist.is_main else (lambda msg: None)
        self.run_dir = config.run_dir()
        self.data = data
        self.lock = None
        self.aside: Path | None = None      # the replaced run's files, until the first checkpoint
        self.ckpt = None
        self._created = False

    # -- set-up -------------------------------------------------------------------------------
    def _device(self) -> torch.device:
        dev = pick_device(self.config.device)
        if dev.type == "cuda" and self.dist.active:
            dev = torch.device("cuda", self.dist.local_rank)
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        return dev

    def _set_determinism(self) -> None:
        cfg = self.config
        self.deterministic = cfg.deterministic if cfg.deterministic is not None else self.device.type == "cpu"
        self._det_before = (torch.are_deterministic_algorithms_enabled(),
                            torch.is_deterministic_algorithms_warn_only_enabled())
        torch.use_deterministic_algorithms(self.deterministic, warn_only=True)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = not self.deterministic

    def _build_step(self) -> None:
        """Model, objective (DDP-wrapped on several processes), optimiser and AMP scaler."""
        cfg = self.config
        self.model = _build_model(cfg, self.data).to(self.device)
        self.objective = _Objective(self.model, cfg).to(self.device)
        if self.dist.active:
            from torch.nn.parallel import DistributedDataParallel as DDP

            self.step_module = DDP(self.objective,
                                   device_ids=[self.device.index] if self.device.type == "cuda" else None)
        else:
            self.step_module = self.objective
        self.optimizer = _adam(self.model, cfg)
        self.amp_dtype = amp_dtype(self.device, cfg.amp)
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None

    def _seed_and_sample(self) -> None:
        """Seeds (python/numpy/torch globals, the patch stream, per rank), sampler, batch maker."""
        cfg = self.config
        rank_seed = cfg.seed * 1000 + self.dist.rank
        random.seed(rank_seed)
        np.random.seed(rank_seed % 2**32)
        torch.manual_seed(rank_seed)
        self.patch_rng = np.random.default_rng([cfg.seed, self.dist.rank, 0x5EED])
        self.sampler = self._sampler()
        self.maker = _BatchMaker(self.data, cfg, self.patch_rng)

    def setup_for_benchmark(self) -> None:
        """:meth:`setup` without a run folder, validation or resume: what a step needs."""
        self._set_determinism()
        if self.data is None:
            self.data = prepare_data(self.config, progress=False)
        self.train_idx = self.data.indices("train")
        self._build_step()
        self._seed_and_sample()
        self._stream = _stream(self.sampler)
        self.epoch = 0
        self.global_step = 0

    def reference_step(self, batch: dict) -> None:
        """One optimiser step of the objective alone on a batch already on the device."""
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            loss, _, _, _ = self.objective(batch["x"], batch.get("y"), batch.get("S"), batch.get("idx"),
                                           batch["n_triplets"], batch["shared"])
        self._optimise(loss)

    def _optimise(self, loss: torch.Tensor) -> None:
        """Backward and one Adam step (through the GradScaler under fp16 AMP)."""
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()

    def setup(self, resume: bool) -> None:
        cfg = self.config
        self._set_determinism()

        # ---- data (every input checked before the run folder is touched) ----
        if self.data is None:
            self.data = prepare_data(cfg, progress=self.progress and self.dist.is_main)
        data = self.data
        self._check_bounds()

        # ---- the run folder: resume, or start fresh (the old run moved aside) ----
        if self.dist.is_main:
            if self.ckpt is None:
                self._move_aside()
            cfg.to_json(self.run_dir / "config.json")
        self.dist.barrier()
        if self.dist.active and not self.dist.is_main:
            # every rank reads the same (already verified and possibly rotated) file
            self.ckpt = load_checkpoint(self.run_dir / _CKPT) if resume and \
                (self.run_dir / _CKPT).exists() else None
            if self.ckpt is not None:
                self._check_resumable(self.ckpt)
        if cfg.verify_ddp:
            _WriteAudit.start(self.run_dir)

        self.train_idx = data.indices("train")
        self.val_idx = data.indices("val")
        if len(self.train_idx) < 3:
            raise ValueError(f"only {len(self.train_idx)} training tracks with features: need >= 3")
        if len(self.val_idx) < 6:
            raise ValueError(f"only {len(self.val_idx)} validation tracks with features: need >= 6 "
                             "for MAP@20 against the top 5 (use a larger catalog)")
        from mrlib.similarity import oracle

        self.S_val = oracle(data.tags[self.val_idx], None, data.categories)

        # ---- model, objective, optimiser; then seeds, sampler and batches ----
        self._build_step()
        self._seed_and_sample()

        # ---- state ----
        self.epoch = 0
        self.global_step = 0
        self.rows: list[dict] = []
        self.best = {"value": -math.inf, "epoch": -1, "bad_epochs": 0, "state": None}
        self.stopped_early = False
        self.elapsed_before = 0.0
        self.ddp_check = {"steps": 0, "max_abs_diff": 0.0, "mismatch_steps": 0}
        if self.ckpt is not None:
            self._restore(self.ckpt)
            self.ckpt = None  # free the memory
        # one endless stream of batches for the whole run; the sampler's state says where it is
        self._stream = _stream(self.sampler)

    # -- the run folder: lock, recover, decide -------------------------------------------------
    def open_folder(self, resume: bool, replace: bool) -> RunResult | None:
        """Lock the run folder and decide what this call does with what it holds.

        Returns the finished run when ``resume=True`` meets a finished run of the same config;
        otherwise None (train). Raises before touching anything when the folder holds another
        run and ``replace`` is False. Rank 0 decides; the other ranks follow its decision.
        """
        result = None
        if self.dist.is_main:
            from mrlib.paths import FolderLock

            self._created = not self.run_dir.exists()
            self.lock = FolderLock(self.run_dir, "training run", log=self.log).acquire()
            self._recover_aside()
            result = self._decide(resume, replace)
        finished = self.dist.broadcast(result is not None)
        return result if finished else None

    def _recover_aside(self) -> None:
        """Finish what a killed predecessor left: restore or drop a moved-aside run."""
        aside = self.run_dir / _ASIDE
        if not aside.is_dir():
            return
        if (self.run_dir / _CKPT).exists() or (self.run_dir / _CKPT_PREV).exists():
            shutil.rmtree(aside, ignore_errors=True)
            self.log(f"[train] {self.run_dir}: the run that replaced the one in {_ASIDE}/ had "
                     f"written its first checkpoint; the replaced run is now deleted")
            return
        for n in _RUN_FILES:
            (self.run_dir / n).unlink(missing_ok=True)
        for f in aside.iterdir():
            os.replace(f, self.run_dir / f.name)
        aside.rmdir()
        self.log(f"[train] {self.run_dir}: a run that was replacing this folder's run stopped "
                 "before its first checkpoint; the previous run is restored from "
                 f"{_ASIDE}/")

    def _saved_config(self) -> TrainConfig | None:
        try:
            return TrainConfig.from_json(self.run_dir / "config.json")
        except Exception:  # noqa: BLE001 - missing, unreadable or from another version
            return None

    def _same_run(self, saved: TrainConfig | None) -> tuple[bool, dict]:
        if saved is None:
            return False, {"config.json": ("unreadable or missing", "")}
        a, b = saved.to_dict(), self.config.to_dict()
        diff = {k: (a.get(k), v) for k, v in b.items() if k not in _SAME_RUN_IGNORES and a.get(k) != v}
        return not diff, diff

    def _decide(self, resume: bool, replace: bool) -> RunResult | None:
        d = self.run_dir
        present = [n for n in _RUN_FILES if (d / n).exists()]
        has_ckpt = (d / _CKPT).exists() or (d / _CKPT_PREV).exists()
        finished = (d / "summary.json").is_file()
        if not present:
            if resume:
                self.log(f"[train] resume=True but {d} holds no run: starting from scratch")
            return None
        saved = self._saved_config()
        same, diff = self._same_run(saved)
        if resume and finished and same:
            if has_ckpt:  # a damaged folder is reported, not passed off as a finished run
                _load_latest_checkpoint(d, self.log)
            self.log(f"[train] {d} holds a finished run of this configuration: returning it "
                     "(nothing retrained)")
            return load_run(d)
        if resume and has_ckpt:
            self.ckpt = _load_latest_checkpoint(d, self.log)
            if self.ckpt is not None:
                self._check_resumable(self.ckpt)
                return None
        if not finished and not has_ckpt and saved is not None:
            return None  # a run that stopped before its first checkpoint: nothing to keep
        kind = "finished" if finished else ("interrupted" if has_ckpt else "unrecognised")
        if same and saved is not None:
            self.log(f"[train] {d} holds a {kind} run of the same configuration: training it "
                     f"again from scratch (the old files wait in {_ASIDE}/ until the first "
                     "checkpoint)")
            return None
        if not replace:
            shown = dict(list(diff.items())[:8])
            raise RunExistsError(
                f"{d} holds a {kind} training run of another configuration (saved, given: "
                f"{shown}); nothing was changed. Pass replace=True (--replace) to replace it "
                f"(kept in {_ASIDE}/ until the new run's first checkpoint), resume=True "
                "(--resume) to continue a run of the same configuration, or another out_dir")
        self.log(f"[train] replacing the {kind} run in {d} (replace=True); its files wait in "
                 f"{_ASIDE}/ until the new run's first checkpoint")
        return None

    def _move_aside(self) -> None:
        """Move the previous run's files into ``.previous-run/`` (a fresh run starts)."""
        present = [n for n in _RUN_FILES if (self.run_dir / n).exists()]
        if not present:
            return
        aside = self.run_dir / _ASIDE
        if aside.exists():
            shutil.rmtree(aside)
        aside.mkdir()
        for n in present:
            os.replace(self.run_dir / n, aside / n)
        self.aside = aside

    def drop_aside(self) -> None:
        """The new run has a checkpoint: the replaced run's files go."""
        if self.aside is not None:
            shutil.rmtree(self.aside, ignore_errors=True)
            self.aside = None

    def restore_aside(self) -> None:
        """The new run failed before its first checkpoint: put the previous run back."""
        if self.aside is None or not self.aside.is_dir():
            return
        for n in _RUN_FILES:
            (self.run_dir / n).unlink(missing_ok=True)
        for f in self.aside.iterdir():
            os.replace(f, self.run_dir / f.name)
        self.aside.rmdir()
        self.aside = None
        self.log(f"[train] the new run stopped before its first checkpoint: the previous run in "
                 f"{self.run_dir} is restored")

    # -- bounds: a run that cannot fit stops before it allocates --------------------------
    def _check_bounds(self) -> None:
        cfg, data = self.config, self.data
        avail = np.flatnonzero(data.available)
        if avail.size == 0:
            raise ValueError(f"no track of catalog {data.name or cfg.catalog!r} has features")
        frames = getattr(data.features, "n_frames", None)
        if frames is not None:
            frames = np.asarray(frames)[avail]
        else:
            frames = np.array([np.shape(data.features[int(i)])[-1] for i in avail])
        longest = int(frames.max())
        if cfg.patch_len > longest:
            raise ValueError(
                f"patch_len={cfg.patch_len} frames is longer than the longest track "
                f"({longest} frames, median {int(np.median(frames))}): every patch would repeat "
                f"its track; choose patch_len <= {longest}")
        need, what = self._memory_estimate(), self._memory_available()
        if what is not None and need > what:
            raise MemoryError(
                f"this run needs roughly {need / 2**30:.1f} GiB ({self.patches_per_batch_estimate} "
                f"patches of {data.n_bins} x {cfg.patch_len} per batch, width {cfg.width}) but "
                f"{what / 2**30:.1f} GiB are free on {self.device}; lower patch_len, width, "
                "batch_tracks or negatives_per_batch")

    @property
    def patches_per_batch_estimate(self) -> int:
        cfg = self.config
        if cfg.system == "at" or cfg.online:
            return cfg.batch_tracks
        per_song = cfg.matchnet_patches if cfg.system == "matchnet" else 1
        return 3 * cfg.negatives_per_batch * per_song

    def _memory_estimate(self) -> float:
        """Bytes for one training step: the batches in flight and the first block's activations
        (full resolution: conv, BatchNorm and ReLU outputs kept for backward, then about half
        as much again for the pooled blocks). A rough upper bound, not a measurement."""
        from mrlib.models import _scale

        cfg, n_bins = self.config, self.data.n_bins
        elem = 2 if amp_dtype(self.device, cfg.amp) is not None else 4
        patch = n_bins * cfg.patch_len
        batch = self.patches_per_batch_estimate * patch
        first = _scale(128, cfg.width)
        return batch * 4 * (cfg.prefetch + 2) + batch * elem * first * 4.5

    def _memory_available(self) -> float | None:
        if self.device.type == "cuda":
            with contextlib.suppress(Exception):
                return float(torch.cuda.mem_get_info(self.device)[0])
            return None
        if self.device.type == "cpu":
            with contextlib.suppress(Exception):
                import psutil

                return float(psutil.virtual_memory().available)
        return None

    def _sampler(self):
        from mrlib import mining

        cfg, data = self.config, self.data
        ws, rk = self.dist.world_size, self.dist.rank
        if cfg.system == "at" or cfg.online:
            per_rank = len(self.train_idx) // ws
            bt = min(cfg.batch_tracks, per_rank)
            if bt < cfg.batch_tracks:
                self.log(f"[train] batch_tracks={cfg.batch_tracks} > {per_rank} training tracks per "
                         f"rank: using batches of {bt}")
            if bt < 2:
                raise ValueError(f"{len(self.train_idx)} training tracks cannot make batches for "
                                 f"{ws} ranks")
            self.patches_per_batch = bt
            return mining.TrackBatchSampler(self.train_idx, batch_size=bt, seed=cfg.seed,
                                            rank=rk, world_size=ws, drop_last=True)
        from mrlib.similarity import oracle

        T, cats = data.tags, data.categories

        def S_rows(rows):  # rows of S on demand: the N x N matrix is never held
            return oracle(T[rows], T, cats)

        triplets = mining.mine(None, self.train_idx, cfg.mining, n_pos=cfg.n_pos, n_neg=cfg.n_neg,
                               S=S_rows, seed=cfg.seed, progress=self.progress and self.dist.is_main)
        self.n_mined = int(triplets.shape[0])
        B = cfg.negatives_per_batch
        if cfg.sampler == "shuffled":
            self.patches_per_batch = 3 * B * (cfg.matchnet_patches if cfg.system == "matchnet" else 1)
            return mining.ShuffledTripletSampler(triplets, batch_size=B, seed=cfg.seed, rank=rk,
                                                 world_size=ws, drop_last=True)
        self.patches_per_batch = (2 + B) * cfg.matchnet_patches if cfg.system == "matchnet" else 3 * B
        return mining.PaperBatchSampler(triplets, n_neg_per_batch=B, seed=cfg.seed, rank=rk,
                                        world_size=ws)

    def _check_resumable(self, ckpt: dict) -> None:
        saved = json.loads(ckpt["config"])
        now = self.config.to_dict()
        diff = {k: (saved.get(k), v) for k, v in now.items()
                if k not in _RESUMABLE_CHANGES and saved.get(k) != v}
        if diff:
            raise ValueError("resume=True with a different configuration than the checkpoint's "
                             f"(saved, now): {diff}; only {sorted(_RESUMABLE_CHANGES)} may change")
        if int(ckpt["world_size"]) != self.dist.world_size:
            raise ValueError(f"the checkpoint was written by {ckpt['world_size']} rank(s); resuming "
                             f"with {self.dist.world_size} would not continue the same run")

    def _restore(self, ckpt: dict) -> None:
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if self.scaler is not None and ckpt.get("scaler") is not None:
            self.scaler.load_state_dict(ckpt["scaler"])
        self.sampler.load_state_dict(json.loads(ckpt["sampler"]))
        _restore_rng(ckpt["rng"][self.dist.rank], self.patch_rng, self.device)
        self.epoch = int(ckpt["epoch"])
        self.global_step = int(ckpt["global_step"])
        self.rows = json.loads(ckpt["metrics"])
        es = ckpt["early_stopping"]
        self.best = {"value": float(es["value"]), "epoch": int(es["epoch"]),
                     "bad_epochs": int(es["bad_epochs"]), "state": es["state"]}
        self.stopped_early = bool(ckpt["stopped_early"])
        self.elapsed_before = float(ckpt["elapsed_s"])
        self.ddp_check = json.loads(ckpt.get("ddp_check", json.dumps(self.ddp_check)))
        self.log(f"[train] resumed {self.run_dir.name} at epoch {self.epoch} "
                 f"(step {self.global_step})")

    # -- one epoch ---------------------------------------------------------------------------
    def _to_device(self, batch: dict) -> dict:
        dev, nb = self.device, self.device.type == "cuda"
        out = {"x": batch["x"].to(dev, non_blocking=nb)}
        if "y" in batch:
            out["y"] = torch.from_numpy(batch["y"]).to(dev, non_blocking=nb)
        if "S" in batch:
            out["S"] = torch.from_numpy(batch["S"]).to(dev)
            out["idx"] = torch.from_numpy(batch["idx"]).to(dev)
        out["n_triplets"] = int(batch.get("n_triplets", 0))
        out["shared"] = bool(batch.get("shared", True))
        return out

    def _param_checksum(self) -> torch.Tensor:
        # one float64 sum and one position-weighted sum per parameter: a differing element
        # changes at least one of them
        sums = []
        for p in self.model.parameters():
            v = p.detach().double().flatten()
            w = torch.arange(1, v.numel() + 1, device=v.device, dtype=torch.float64) / v.numel()
            sums.append(torch.stack([v.sum(), (v * w).sum()]))
        return torch.cat(sums).cpu()

    def _verify_ranks(self) -> None:
        mine = self._param_checksum()
        everyone = [torch.zeros_like(mine) for _ in range(self.dist.world_size)]
        torch.distributed.all_gather(everyone, mine.to(self._gather_device()))
        everyone = [t.cpu() for t in everyone]
        diff = max(float((t - everyone[0]).abs().max()) for t in everyone)
        self.ddp_check["steps"] += 1
        self.ddp_check["max_abs_diff"] = max(self.ddp_check["max_abs_diff"], diff)
        if diff != 0.0:
            self.ddp_check["mismatch_steps"] += 1
            raise RuntimeError(f"verify_ddp: parameters differ across ranks after step "
                               f"{self.global_step} (max |checksum difference| = {diff:.3e})")

    def _gather_device(self) -> torch.device:
        return self.device if self.device.type == "cuda" else torch.device("cpu")

    def train_epoch(self, steps: int | None = None) -> dict:
        cfg = self.config
        steps = cfg.steps_per_epoch if steps is None else steps
        self.objective.train()
        pre = _Prefetcher(self._stream, self.maker, steps, cfg.prefetch,
                          pin=self.device.type == "cuda")
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        loss_sum = torch.zeros((), device=self.device, dtype=torch.float64)
        loss_all_sum = torch.zeros((), device=self.device, dtype=torch.float64)
        active_sum = torch.zeros((), device=self.device, dtype=torch.float64)
        n_trip = 0
        n_patches = 0
        bar = tqdm(total=steps, desc=f"epoch {self.epoch + 1}", unit="step", leave=False,
                   disable=not (self.progress and self.dist.is_main))
        t0 = time.perf_counter()
        for i, batch in enumerate(pre):
            b = self._to_device(batch)
            with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                loss, active, k, loss_all = self.step_module(b["x"], b.get("y"), b.get("S"),
                                                             b.get("idx"), b["n_triplets"], b["shared"])
            self._optimise(loss)
            self.global_step += 1
            loss_sum += loss.detach().double()
            loss_all_sum += torch.nan_to_num(loss_all.detach().double(), nan=0.0)
            active_sum += torch.nan_to_num(active.detach().double(), nan=0.0)
            n_trip += int(k)
            n_patches += int(batch["n_patches"])
            if cfg.verify_ddp and self.dist.active:
                self._verify_ranks()
            if bar.disable is False and (i % 10 == 0 or i == steps - 1):
                bar.set_postfix(loss=f"{float(loss):.4f}")
            bar.update(1)
        bar.close()
        loss_mean = float(loss_sum) / steps   # float() waits for the GPU: timing is complete
        train_s = time.perf_counter() - t0
        active_mean = None if cfg.system == "at" else float(active_sum) / steps
        loss_all_mean = None if cfg.system == "at" else float(loss_all_sum) / steps
        if self.dist.active:  # every rank's losses and counts, for the log
            t = torch.tensor([loss_mean, active_mean or 0.0, loss_all_mean or 0.0, n_trip, n_patches,
                              pre.wait_s, train_s], dtype=torch.float64, device=self._gather_device())
            torch.distributed.all_reduce(t)
            t = t.cpu().tolist()
            ws = self.dist.world_size
            loss_mean, a, la = t[0] / ws, t[1] / ws, t[2] / ws
            n_trip, n_patches, wait, train_s = int(t[3]), int(t[4]), t[5] / ws, t[6] / ws
            active_mean = None if cfg.system == "at" else a
            loss_all_mean = None if cfg.system == "at" else la
        else:
            wait = pre.wait_s
        peak, _ = _peak_memory(self.device)
        return {"loss": loss_mean, "loss_all": loss_all_mean, "active_fraction": active_mean,
                "triplets_per_batch": n_trip / (steps * self.dist.world_size),
                "train_s": train_s, "patches_per_s": n_patches / train_s if train_s > 0 else None,
                "data_wait_share": wait / train_s if train_s > 0 else None,
                "peak_memory_mb": peak / 2**20}

    # -- validation, early stopping, checkpoint ---------------------------------------------
    def evaluate(self) -> dict:
        return _validate(self.model, self.data, self.val_idx, self.S_val, self.config, self.device)

    def _monitor(self, metrics: dict) -> float:
        v = metrics.get(self.config.monitor)
        return -math.inf if v is None else float(v)

    def record_epoch(self, train_stats: dict | None, t_epoch: float) -> bool:
        """Validate (rank 0), update early stopping, log, checkpoint. Returns 'stop now'."""
        cfg = self.config
        stop = False
        row = None
        if self.dist.is_main:
            val = self.evaluate()
            value = self._monitor(val)
            improved = value > self.best["value"]
            if improved:
                self.best.update(value=value, epoch=self.epoch, bad_epochs=0,
                                 state={k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()})
            else:
                self.best["bad_epochs"] += 1
            stop = cfg.patience > 0 and self.best["bad_epochs"] >= cfg.patience
            row = {"epoch": self.epoch, "step": self.global_step,
                   **{k: None for k in ("loss", "loss_all", "active_fraction", "triplets_per_batch",
                                        "train_s",
                                        "patches_per_s", "data_wait_share", "peak_memory_mb")},
                   **(train_stats or {}), **val, "lr": self.optimizer.param_groups[0]["lr"],
                   "epoch_s": time.perf_counter() - t_epoch,
                   "elapsed_s": self.elapsed_before + (time.perf_counter() - self._t_start),
                   "is_best": bool(improved)}
            row = {k: _jsonable(v) for k, v in row.items()}
            self.rows.append(row)
        stop, self.best["epoch"] = self.dist.broadcast((stop, self.best["epoch"]))
        self.stopped_early = bool(stop)
        self._checkpoint()
        if self.dist.is_main:
            with open(self.run_dir / "metrics.jsonl", "w") as f:  # rewritten whole: stays in
                for r in self.rows:                                 # step with the checkpoint
                    f.write(json.dumps(r) + "\n")
            msg = (f"[train] epoch {self.epoch:3d}  val MAP@20 {row['val_map']:.4f} "
                   f"[{row['val_map_low']:.4f}, {row['val_map_high']:.4f}]")
            if row["loss"] is not None:
                msg += f"  loss {row['loss']:.4f}"
            if row["active_fraction"] is not None:
                msg += f"  active {row['active_fraction']:.3f}"
            if row["val_auc"] is not None:
                msg += f"  AUC {row['val_auc']:.4f}"
            if self.progress:
                tqdm.write(msg)
        self.dist.barrier()
        return bool(stop)

    def _checkpoint(self) -> None:
        rng = self.dist.gather(_capture_rng(self.patch_rng, self.device))
        if not self.dist.is_main:
            return
        state = {
            "format": _CKPT_FORMAT,
            "epoch": self.epoch,
            "global_step": self.global_step,
            "world_size": self.dist.world_size,
            "config": json.dumps(self.config.to_dict()),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "sampler": json.dumps(self.sampler.state_dict()),
            "rng": rng,
            "early_stopping": {"value": self.best["value"], "epoch": self.best["epoch"],
                               "bad_epochs": self.best["bad_epochs"], "state": self.best["state"]},
            "metrics": json.dumps(self.rows),
            "stopped_early": self.stopped_early,
            "elapsed_s": self.elapsed_before + (time.perf_counter() - self._t_start),
            "ddp_check": json.dumps(self.ddp_check),
            "torch_version": str(torch.__version__),
        }
        save_checkpoint(state, self.run_dir / _CKPT)
        self.drop_aside()

    # -- the loop ----------------------------------------------------------------------------
    def fit(self, stop_after_epoch: int | None = None) -> None:
        cfg = self.config
        self._t_start = time.perf_counter()
        if not self.rows:  # epoch 0: the untrained network, the reference row
            self.record_epoch(None, time.perf_counter())
        bar = tqdm(total=cfg.epochs, initial=min(self.epoch, cfg.epochs), desc=f"train {cfg.name}",
                   unit="epoch", disable=not (self.progress and self.dist.is_main))
        while self.epoch < cfg.epochs and not self.stopped_early:
            t_epoch = time.perf_counter()
            stats = self.train_epoch()
            self.epoch += 1
            stop = self.record_epoch(stats, t_epoch)
            bar.update(1)
            if stop:
                self.log(f"[train] early stop after epoch {self.epoch}: no better {cfg.monitor} for "
                         f"{cfg.patience} epochs (best: epoch {self.best['epoch']})")
            if stop_after_epoch is not None and self.epoch >= stop_after_epoch:
                bar.close()
                self.log(f"[train] simulated interruption after epoch {self.epoch}")
                sys.stdout.flush()
                os._exit(3)  # like a kill: no clean-up, no final files
        bar.close()

    def finalize(self) -> RunResult | None:
        cfg = self.config
        result = None
        if self.dist.is_main:
            if self.best["state"] is not None:
                self.model.load_state_dict(self.best["state"])
            idx = self.data.indices()
            per_patch = cfg.system == "matchnet"
            E = None
            if cfg.embed_all:
                E = embed_tracks(self.model, self.data, idx, cfg.patch_len, cfg.val_patches,
                                 cfg.eval_batch, self.device, cfg.amp, per_patch=per_patch,
                                 progress=self.progress)
                if per_patch:
                    np.save(self.run_dir / "patch_embeddings.npy", E)
                    E = E.mean(axis=1)
                np.save(self.run_dir / "embeddings.npy", E.astype(np.float32))
                pd.DataFrame({"catalog_index": idx, "track_id": self.data.track_ids[idx],
                              "split": self.data.split[idx]}).to_csv(self.run_dir / "tracks.csv",
                                                                     index=False)
            buf = io.BytesIO()  # through Python's open(), so verify_ddp's write audit sees it
            torch.save({"model_config": dict(self.model.config),
                        "state_dict": {k: v.cpu() for k, v in self.model.state_dict().items()}}, buf)
            (self.run_dir / "model.pt").write_bytes(buf.getvalue())
            summary = self._summary(E)
            (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=1))
        if cfg.verify_ddp:
            writes = self.dist.gather(_WriteAudit.stop())
            if self.dist.is_main:
                report = {"world_size": self.dist.world_size, **self.ddp_check,
                          "identical": self.ddp_check["mismatch_steps"] == 0,
                          "writes_by_rank": {str(r): w for r, w in enumerate(writes)}}
                (self.run_dir / "ddp_verify.json").write_text(json.dumps(report, indent=1))
        self.dist.barrier()
        if self.dist.is_main:
            result = load_run(self.run_dir)
        return result

    def _summary(self, E: np.ndarray | None) -> dict:
        cfg = self.config
        trained = [r for r in self.rows if r["epoch"] > 0]
        train_s = sum(r["train_s"] for r in trained)
        patches = sum(r["patches_per_s"] * r["train_s"] for r in trained)
        waits = sum(r["data_wait_share"] * r["train_s"] for r in trained)
        peak, what = _peak_memory(self.device)
        best_row = next((r for r in self.rows if r["epoch"] == self.best["epoch"]), self.rows[-1])
        return {
            "name": cfg.name,
            "system": cfg.system,
            "mining": None if cfg.system == "at" else cfg.mining,
            "device": str(self.device),
            "device_name": torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else
            self.device.type,
            "world_size": self.dist.world_size,
            "amp_dtype": str(self.amp_dtype).replace("torch.", "") if self.amp_dtype else None,
            "deterministic": self.deterministic,
            "lr": cfg.learning_rate,
            "epochs_run": self.epoch,
            "global_steps": self.global_step,
            "stopped_early": self.stopped_early,
            "best_epoch": self.best["epoch"],
            "best": {k: best_row.get(k) for k in ("val_map", "val_map_low", "val_map_high",
                                                  "val_recall", "val_rr", "val_ndcg", "val_auc")},
            "untrained": {k: self.rows[0].get(k) for k in ("val_map", "val_map_low", "val_map_high",
                                                           "val_auc")},
            "final_loss": trained[-1]["loss"] if trained else None,
            "final_loss_all": trained[-1]["loss_all"] if trained else None,
            "final_active_fraction": trained[-1]["active_fraction"] if trained else None,
            "patches_per_batch": self.patches_per_batch,
            "n_mined_triplets": getattr(self, "n_mined", None),
            "throughput_patches_per_s": patches / train_s if train_s > 0 else None,
            "data_wait_share": waits / train_s if train_s > 0 else None,
            "train_s": train_s,
            "peak_memory_bytes": peak,
            "peak_memory_kind": what,
            "n_params": int(sum(p.numel() for p in self.model.parameters())),
            "n_tracks_embedded": 0 if E is None else int(E.shape[0]),
            "embedding_dim": None if E is None else int(E.shape[1]),
            "representation": "tag_probabilities" if cfg.system == "at" else "embeddings",
            "n_skipped_tracks": int((~self.data.available).sum()),
            "torch": str(torch.__version__),
        }

    def close(self) -> None:
        if self._det_before is not None:
            with contextlib.suppress(Exception):
                torch.use_deterministic_algorithms(self._det_before[0], warn_only=self._det_before[1])
        if self.lock is not None:
            self.lock.release()
            if self._created:  # a folder this call made and left empty goes again
                with contextlib.suppress(OSError):
                    self.run_dir.rmdir()
        self.dist.close()


def train(config: TrainConfig, resume: bool = False, progress: bool = True, *,
          data: TrainData | None = None, stop_after_epoch: int | None = None,
          replace: bool = False) -> RunResult | None:
    """Train one system; write checkpoints, metrics, embeddings and a summary to the run folder.

    Every input (config fields, features, catalog, device, patch length against the tracks and
    the free memory) is checked before the run folder is touched, and the folder is locked
    while the run lives (a second writer gets :class:`mrlib.paths.LockedError` naming the
    holder; the lock of a dead process is recovered, with a message).

    Parameters
    ----------
    config : TrainConfig
    resume : bool, default False
        Continue the run in ``config.run_dir()`` from its latest good checkpoint (falling back
        to the previous one when the latest is truncated or corrupt). Only ``epochs``,
        ``device`` and the I/O fields may differ from the checkpoint's config. A finished run
        of the same config is returned as it is (nothing retrained); an empty folder starts
        from scratch.
    replace : bool, default False
        Allow a fresh run (``resume=False``) to replace a run of *another* configuration (or
        an unrecognised one) in the folder. Without it that is a :class:`RunExistsError` and
        nothing is touched. A run of the same configuration is trained again without it.
        Either way the old files wait in ``.previous-run/`` until the new run has written its
        first checkpoint, and come back if it stops before.
    progress : bool, default True
        Progress bars and a line per epoch (rank 0).
    data : TrainData, optional
        Pre-loaded data (default: :func:`prepare_data` from the config).
    stop_after_epoch : int, optional
        Simulate a crash: end the process (``os._exit(3)``) right after this epoch's
        checkpoint — to demonstrate and test ``resume``.

    Returns
    -------
    RunResult
        The run folder, the metrics DataFrame and ``summary.json`` (None on DDP ranks > 0).

    Examples
    --------
    >>> cfg = TrainConfig(system="tl", mining="distance", n_tracks=200, epochs=3)  # doctest: +SKIP
    >>> run = train(cfg)                                                           # doctest: +SKIP
    >>> run.metrics[["epoch", "loss", "val_map"]]                                  # doctest: +SKIP

    Notebook: 06_training.ipynb
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    config.validate()
    if data is not None and not isinstance(data, TrainData):
        raise TypeError(f"data must be a TrainData (or None), got {type(data).__name__}")
    if stop_after_epoch is not None and (isinstance(stop_after_epoch, bool) or
                                         not isinstance(stop_after_epoch, numbers.Integral)
                                         or stop_after_epoch < 1):
        raise ValueError(f"stop_after_epoch must be None or an int >= 1, got {stop_after_epoch!r}")
    if not isinstance(replace, bool):
        raise TypeError(f"replace must be a bool, got {replace!r}")
    if data is None:
        _check_catalog_name(config.catalog)
    run = _Run(config, data, progress)
    try:
        finished = run.open_folder(resume, replace)
        if finished is not None:
            return finished
        run.setup(resume)
        run.fit(stop_after_epoch)
        return run.finalize()
    except BaseException:
        if run.dist.is_main:
            run.restore_aside()
        raise
    finally:
        run.close()


def _check_catalog_name(catalog: str) -> None:
    """A catalog that :func:`mrlib.catalog.load` can find, checked without building anything."""
    from mrlib.paths import data_dir

    if catalog in ("synthetic", "music21", "mtat", "folder"):
        return
    for cand in (Path(catalog).expanduser(), data_dir() / catalog):
        if (cand / "tracks.csv").is_file():
            return
    raise FileNotFoundError(
        f"TrainConfig.catalog={catalog!r} is not a catalog: expected 'synthetic', 'music21', "
        f"'mtat', 'folder', or a folder holding tracks.csv (looked in {Path(catalog)} and "
        f"{data_dir() / catalog})")


# =============================================================================================
# Throughput (for the benchmark and the notebook)
# =============================================================================================
def measure_throughput(config: TrainConfig, steps: int = 20, warmup: int = 3, *,
                       data: TrainData | None = None, reference: bool = True) -> dict:
    """Training throughput of a configuration, and the model-only ceiling for comparison.

    Runs ``warmup`` then ``steps`` training steps through the trainer's own data pipeline
    (sampler, patches, prefetch thread) — no validation, nothing written — and, with
    ``reference=True``, the same number of steps of the objective alone on one pre-made batch
    already on the device (the ceiling with no data wait).

    Parameters
    ----------
    config : TrainConfig
    steps, warmup : int
    data : TrainData, optional
    reference : bool

    Returns
    -------
    dict
        ``patches_per_s``, ``data_wait_share``, ``step_ms``, ``patches_per_batch``, and with the
        reference ``ceiling_patches_per_s`` and ``ratio`` (pipeline / ceiling); ``device``.

    Notebook: 06_training.ipynb
    """
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    if isinstance(warmup, bool) or not isinstance(warmup, numbers.Integral) or warmup < 0:
        raise ValueError(f"warmup must be an int >= 0, got {warmup!r}")
    cfg = config.replace(verify_ddp=False)
    run = _Run(cfg, data, progress=False)
    if run.dist.active:
        run.close()
        raise RuntimeError("measure_throughput runs on one process; launch it without torchrun")
    try:
        run.setup_for_benchmark()
        if warmup:
            run.train_epoch(warmup)
        stats = run.train_epoch(steps)
        out = {"device": str(run.device), "patches_per_batch": run.patches_per_batch,
               "patches_per_s": stats["patches_per_s"], "data_wait_share": stats["data_wait_share"],
               "step_ms": 1000 * stats["train_s"] / steps}
        if reference:
            batch = run._to_device(_tensor_batch(run.maker, next(run._stream), pin=False))
            for _ in range(warmup):
                run.reference_step(batch)
            _sync(run.device)
            t0 = time.perf_counter()
            for _ in range(steps):
                run.reference_step(batch)
            _sync(run.device)
            dt = time.perf_counter() - t0
            out["ceiling_patches_per_s"] = steps * batch["x"].shape[0] / dt
            out["ratio"] = out["patches_per_s"] / out["ceiling_patches_per_s"]
        return out
    finally:
        run.close()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


# =============================================================================================
# Command line (python -m mrlib.train, torchrun -m mrlib.train, papermill and notebooks)
# =============================================================================================
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m mrlib.train",
        description="Train AT, TL (any mining), TL Autopool or Triplet MatchNet. The same command "
                    "runs DDP under torchrun: torchrun --nproc_per_node=K -m mrlib.train ...",
        epilog="Config flags left out keep the value of --config, of --paper, or TrainConfig's "
               "default, in that order.")
    defaults = TrainConfig()
    # SUPPRESS: only the flags actually given reach the namespace, so they override a saved
    # config (--config) or the paper profile (--paper) without clobbering the rest.
    S = argparse.SUPPRESS
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        value = getattr(defaults, f.name)
        help_ = f"(default: {value!r})"
        if f.name == "out_dir":
            p.add_argument("--out", "--out-dir", dest="out_dir", default=S,
                           help="run folder (default: runs/train/<run-name>)")
        elif f.name == "deterministic":
            p.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=S,
                           help="torch.use_deterministic_algorithms (default: on for CPU only)")
        elif isinstance(value, bool):
            p.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=S,
                           help=help_)
        elif isinstance(value, dict):
            p.add_argument(flag, dest=f.name, type=json.loads, default=S,
                           help="JSON object, e.g. '{\"duration_s\": 12}' " + help_)
        elif f.name == "lr":
            p.add_argument(flag, dest=f.name, type=float, default=S,
                           help="Adam's learning rate (default: DEFAULT_LR of the system)")
        elif f.name == "dropout":
            p.add_argument(flag, dest=f.name, type=float, default=S,
                           help="dropout after each conv block (default: the model's own)")
        elif f.name == "alpha_lr":
            p.add_argument(flag, dest=f.name, type=float, default=S,
                           help="Adam's rate for AutoPool's alpha (default: --lr)")
        elif f.name == "pooling":
            p.add_argument(flag, dest=f.name, default=S, choices=("autopool", "mean", "max"),
                           help="TL Autopool's pooling over time (default: learned AutoPool)")
        elif f.name == "run_name":
            p.add_argument(flag, dest=f.name, default=S,
                           help="(default: <system>_<mining>_s<seed>; its folder adds a hash of "
                                "every field that changes the result)")
        else:
            p.add_argument(flag, dest=f.name, type=type(value), default=S, help=help_)
    p.add_argument("--config", dest="config_file", default=None,
                   help="start from a saved config.json; the run goes to a new folder (named "
                        "from its fields) unless --out is given or --resume continues that run")
    p.add_argument("--paper", action="store_true",
                   help="start from paper_config(system, mining): width 1, 96 x 512, AMP")
    p.add_argument("--resume", action="store_true", help="continue the run from its checkpoint")
    p.add_argument("--replace", action="store_true",
                   help="allow replacing a run of another configuration in the run folder (kept "
                        "in .previous-run/ until the new run's first checkpoint)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    p.add_argument("--stop-after-epoch", type=int, default=None,
                   help="simulate a crash right after this epoch's checkpoint (exit status 3)")
    return p


def config_from_args(argv: Sequence[str] | None = None) -> tuple[TrainConfig, argparse.Namespace]:
    """Parse the command line into a :class:`TrainConfig` (and the other options).

    Notebook: 06_training.ipynb
    """
    parser = _parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    given = {k: v for k, v in vars(args).items() if k in fields}
    try:
        if args.config_file:
            base = TrainConfig.from_json(args.config_file).to_dict()
            if not args.resume:
                # a replay (often with a changed field) is a new run: it must not land in,
                # and replace, the saved run's folder unless --out says so
                base["out_dir"] = None
                base["run_name"] = None
        elif args.paper:
            base = paper_config(given.get("system", "tl"), given.get("mining", "distance")).to_dict()
        else:
            base = TrainConfig().to_dict()
        base.update(given)
        config = TrainConfig.from_dict(base)
    except (TypeError, ValueError, FileNotFoundError) as err:
        parser.error(str(err))
    return config, args


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m mrlib.train --system tl --mining distance --epochs 5 [--resume]``.

    Every :class:`TrainConfig` field is a flag (``--steps-per-epoch``, ``--patch-len``,
    ``--no-amp`` …; ``--out`` sets ``out_dir``); ``--config run/config.json`` starts from a
    saved config and ``--paper`` from :func:`paper_config`. Under
    ``torchrun --nproc_per_node=K -m mrlib.train ...`` the same command trains with DDP.

    Returns
    -------
    int
        Exit status: 0, or 2 when the run could not start or was refused (a locked or
        occupied run folder, a missing catalog, an invalid value, not enough memory), with the
        reason on stderr.

    Notebook: 06_training.ipynb
    """
    from mrlib.paths import LockedError

    config, args = config_from_args(argv)
    try:
        run = train(config, resume=args.resume, progress=args.progress,
                    stop_after_epoch=args.stop_after_epoch, replace=args.replace)
    except (LockedError, RunExistsError, FileNotFoundError, MemoryError, ValueError) as err:
        print(f"[train] error: {err}", file=sys.stderr, flush=True)
        return 2
    if run is not None:
        s = run.summary
        wait = s["data_wait_share"]
        print(f"[train] done: {run.path}  best epoch {s['best_epoch']}  val MAP@20 "
              f"{s['best']['val_map']:.4f}  throughput {s['throughput_patches_per_s'] or 0:.0f} "
              f"patches/s  data wait {'n/a' if wait is None else f'{100 * wait:.1f} %'}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
