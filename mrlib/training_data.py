"""The data a training run reads: catalog features and tags by index, a stream of batches
made in a background thread, and track representations from seeded test patches.

Notebook: 06_training.ipynb
"""
from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from mrlib.devices import amp_dtype
from mrlib.features import FeatureConfig, extract, test_patches

__all__ = ["TrainData", "prepare_data", "batch_stream", "tensor_batch", "Prefetcher", "embed_tracks",
           "song_dissimilarities"]

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


def prepare_data(config, progress: bool = True, preload_limit_gb: float = 8.0) -> TrainData:
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
    from mrlib import catalog as catalog_mod   # lazy: the catalogs' builders are heavy

    kwargs = dict(config.catalog_kwargs)
    if config.catalog in ("synthetic", "music21"):  # the generated catalogs: built when missing
        kwargs.setdefault("n_tracks", config.n_tracks)
        kwargs.setdefault("seed", config.catalog_seed)
        kwargs.setdefault("n_jobs", config.n_jobs)
        kwargs.setdefault("progress", progress)
    cat = catalog_mod.load(config.catalog, **kwargs)
    fcfg = FeatureConfig(**config.features)
    fs = extract(cat, fcfg, n_jobs=config.n_jobs, progress=progress)
    size_gb = float(np.sum(fs.n_frames)) * fcfg.n_bins * 2 / 1e9
    if size_gb < preload_limit_gb:
        fs.preload(progress=False)
    return TrainData.from_catalog(cat, fs)



def batch_stream(sampler) -> Iterator:
    """Endless batches: the sampler's epochs one after another (its state says where we are)."""
    while True:
        empty = True
        for item in sampler:
            empty = False
            yield item
        if empty and len(sampler) == 0:  # pragma: no cover - guarded by the sampler
            raise RuntimeError("the sampler yields no batch")


def tensor_batch(make, item, pin: bool) -> dict:
    """A sampler item -> batch dict with the patches as a float32 CPU tensor (pinned for CUDA)."""
    batch = make(item)
    x = torch.from_numpy(batch["x"].astype(np.float32, copy=False))
    batch["x"] = x.pin_memory() if pin else x
    return batch


class Prefetcher:
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
        return tensor_batch(self.make, next(self.stream), self.pin)

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



def _eval_patches(data: TrainData, idx: np.ndarray, patch_len: int, n: int) -> np.ndarray:
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
    if getattr(model, "unit_norm", True):   # unit-norm embeddings: the mean goes back on the sphere
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

