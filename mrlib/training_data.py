"""The data a training run reads: catalog features and tags by index, and a stream of batches
made in a background thread.

Notebook: 06_training.ipynb
"""
from __future__ import annotations

import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from mrlib import catalog as catalog_mod
from mrlib.checks import check_choice
from mrlib.features import FeatureConfig, extract
from mrlib.paths import data_dir

__all__ = ["TrainData", "prepare_data", "check_catalog_name", "batch_stream", "tensor_batch", "Prefetcher"]

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
    artist_ids : numpy.ndarray of str (N,), optional
        The artist of each track (what an artist-disjoint split keeps together).

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
    artist_ids: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.tags = np.asarray(self.tags, dtype=np.float32)
        self.split = np.asarray(self.split).astype(str)
        self.track_ids = np.asarray(self.track_ids).astype(str)
        self.available = np.asarray(self.available, dtype=bool)
        if self.artist_ids is not None:
            self.artist_ids = np.asarray(self.artist_ids).astype(str)
        n = self.tags.shape[0]
        if self.tags.ndim != 2:
            raise ValueError(f"tags must be (N, m), got shape {self.tags.shape}")
        for name in ("split", "track_ids", "available", "artist_ids"):
            if getattr(self, name) is not None and getattr(self, name).shape != (n,):
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
            mask &= self.split == check_choice("split", split, ("train", "val", "test"))
        return np.flatnonzero(mask).astype(np.int64)

    def check_patch_len(self, patch_len: int, catalog: str = "") -> None:
        """Refuse a patch longer than the longest track (every patch would repeat its track)."""
        avail = np.flatnonzero(self.available)
        if avail.size == 0:
            report = getattr(self.features, "report", None)
            why = f"; the first skipped: {report.skipped[0][1]}" if report and report.skipped else ""
            raise ValueError(f"no track of catalog {self.name or catalog!r} has features{why}")
        frames = getattr(self.features, "n_frames", None)
        frames = (np.array([np.shape(self.features[int(i)])[-1] for i in avail]) if frames is None
                  else np.asarray(frames)[avail])
        longest = int(frames.max())
        if patch_len > longest:
            raise ValueError(
                f"patch_len={patch_len} frames is longer than the longest track "
                f"({longest} frames, median {int(np.median(frames))}): every patch would repeat "
                f"its track; choose patch_len <= {longest}")


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
    kwargs = dict(config.catalog_kwargs)
    if config.catalog in catalog_mod.BUILDERS:  # the generated catalogs: built when missing
        kwargs = {"n_tracks": config.n_tracks, "seed": config.catalog_seed, "n_jobs": config.n_jobs,
                  "progress": progress, **kwargs}
    try:
        cat = catalog_mod.load(config.catalog, **kwargs)
    except TypeError as err:
        if "keyword" not in str(err):   # a fault of the loader itself, not of the user's keys
            raise
        raise ValueError(f"TrainConfig.catalog_kwargs {config.catalog_kwargs!r} do not fit catalog "
                         f"{config.catalog!r}: {err}") from err
    fcfg = FeatureConfig(**config.features)
    fs = extract(cat, fcfg, n_jobs=config.n_jobs, progress=progress)
    size_gb = float(np.sum(fs.n_frames)) * fcfg.n_bins * 2 / 1e9
    if size_gb < preload_limit_gb:
        fs.preload(progress=False)
    tracks = cat.tracks
    return TrainData(features=fs, tags=cat.tags, categories=list(cat.vocabulary["category"]),
                     split=tracks["split"].to_numpy(), track_ids=tracks["track_id"].to_numpy(),
                     available=fs.available, n_bins=fs.config.n_bins, name=cat.name,
                     artist_ids=tracks["artist_id"].to_numpy())



def check_catalog_name(catalog: str) -> None:
    """A catalog that :func:`mrlib.catalog.load` can find, checked without building anything.

    Notebook: 06_training.ipynb
    """
    if catalog in catalog_mod.LOADERS:
        return
    places = dict.fromkeys((Path(catalog).expanduser(), data_dir() / catalog))  # one, if absolute
    if any((cand / "tracks.csv").is_file() for cand in places):
        return
    names = ", ".join(repr(name) for name in catalog_mod.LOADERS)
    raise FileNotFoundError(
        f"{catalog!r} is not a catalog: expected {names}, or a folder holding tracks.csv "
        f"(looked in {' and '.join(str(p) for p in places)})")


def batch_stream(sampler) -> Iterator:
    """Endless batches: the sampler's epochs one after another (its state says where we are).

    Notebook: 06_training.ipynb
    """
    while True:
        # by its length, not by a pass that yields nothing: a sampler resumed at the end of an
        # epoch has no batch left in that epoch, and its next pass starts the next one
        if len(sampler) == 0:   # an endless loop over nothing would hang the run
            raise RuntimeError("the sampler yields no batch")
        yield from sampler


def tensor_batch(make, item, pin: bool) -> dict:
    """A sampler item -> batch dict with the patches as a float32 CPU tensor (pinned for CUDA).

    Notebook: 06_training.ipynb
    """
    batch = make(item)
    x = torch.from_numpy(batch["x"].astype(np.float32, copy=False))
    batch["x"] = x.pin_memory() if pin else x
    return batch


class Prefetcher:
    """Produce exactly ``n`` batches in a background thread (or inline when ``depth == 0``).

    Exactly ``n``: the sampler and patch-RNG states at the end of an epoch are those after its
    last batch, so a checkpoint taken then resumes exactly. One worker thread makes them in
    order, at most ``depth`` ahead of the batch the trainer is working on.

    Notebook: 06_training.ipynb
    """

    def __init__(self, stream: Iterator, make, n: int, depth: int, pin: bool) -> None:
        self.stream, self.make, self.n, self.depth, self.pin = stream, make, n, depth, pin
        self.wait_s = 0.0

    def _produce(self) -> dict:
        return tensor_batch(self.make, next(self.stream), self.pin)

    def __iter__(self):
        pool = ThreadPoolExecutor(1, thread_name_prefix="mrlib-prefetch") if self.depth > 0 else None
        ahead: deque = deque()
        try:
            for i in range(self.n):
                while pool is not None and len(ahead) <= self.depth and i + len(ahead) < self.n:
                    ahead.append(pool.submit(self._produce))
                t0 = time.perf_counter()
                # a batch the worker failed to make raises its error here, in order
                item = ahead.popleft().result() if pool is not None else self._produce()
                self.wait_s += time.perf_counter() - t0
                yield item
        finally:
            if pool is not None:   # a stopped run: the batches not begun are never made
                pool.shutdown(cancel_futures=True)
