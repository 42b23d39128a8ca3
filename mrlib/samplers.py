"""Seedable, resumable batch samplers for the trainer, split across DDP ranks.

:class:`PaperBatchSampler` gives the paper's batches (one anchor, one positive, 42 negative
tracks) from mined triplets, :class:`ShuffledTripletSampler` plain shuffled batches of them,
and :class:`TrackBatchSampler` batches of tracks for online mining. Each is resumable
mid-epoch (``state_dict`` / ``load_state_dict``); :mod:`mrlib.mining` re-exports them.

Notebook: 03_mining.ipynb
"""
from __future__ import annotations

import zlib
from typing import Any

import numpy as np

from mrlib.checks import check_indices, check_int

__all__ = ["PaperBatchSampler", "ShuffledTripletSampler", "TrackBatchSampler"]


def _fingerprint(a: np.ndarray) -> int:
    """Cheap identity of a large index array (size + 64 spread-out rows)."""
    picks = np.linspace(0, a.shape[0] - 1, num=min(64, a.shape[0])).astype(np.int64)
    return zlib.crc32(np.ascontiguousarray(a[picks]).tobytes() + str(a.shape).encode())


class _EpochSampler:
    """Shared machinery: batches of mined triplets (their row indices with ``yield_rows``, else
    the triplets), seeded epochs, a position inside the epoch, DDP rank shares.

    Epoch ``e``'s batch order is a function of ``(seed, e)`` only; every rank computes the
    same global order and keeps its own contiguous slice, all slices of equal length (the
    few batches that do not divide evenly are left out of that epoch), so ranks stay in
    lockstep and never see the same batch.
    """

    _size_name = "batch_size"   # the batch size's argument and state_dict key

    def __init__(self, triplets, batch_size: int, seed: int, rank: int, world_size: int,
                 drop_last: bool, yield_rows: bool):
        self.seed = check_int("seed", seed, 0)
        self.world_size = check_int("world_size", world_size, 1)
        self.rank = check_int("rank", rank, 0)
        if self.rank >= self.world_size:
            raise ValueError(f"rank must be < world_size ({self.world_size}), got {rank}")
        T = self.triplets = np.asarray(triplets)
        if T.ndim != 2 or T.shape[1] != 3 or T.shape[0] == 0 or not np.issubdtype(T.dtype, np.integer):
            raise ValueError(f"triplets must be a non-empty integer (M, 3) array, got {T.dtype} {T.shape}")
        self.batch_size = check_int(self._size_name, batch_size, 1)
        self.drop_last = bool(drop_last)
        self.yield_rows = bool(yield_rows)
        self.epoch = 0
        self.position = 0           # batches of this epoch already handed out (per rank)

    # subclasses: __len__() -> batches per epoch for this rank; _make_plan(rng) -> this rank's
    # contiguous slice of the epoch's global order; _batch(plan, b) -> batch number b of it

    def __iter__(self):
        # the epoch's order is a function of (seed, epoch): a resumed epoch draws it again
        plan = self._make_plan(np.random.default_rng([self.seed, self.epoch]))
        while self.position < len(self):
            b = self.position
            # count the batch as handed out before yielding it: a state_dict() taken while
            # the trainer works on it resumes at the next one
            self.position += 1
            yield self._batch(plan, b)
        self.epoch += 1
        self.position = 0

    def _rows_out(self, rows: np.ndarray) -> np.ndarray:
        rows = rows.astype(np.int64)
        return rows if self.yield_rows else self.triplets[rows].astype(np.int64)

    def _config(self) -> dict[str, Any]:
        return {"n_triplets": int(self.triplets.shape[0]), self._size_name: self.batch_size,
                "drop_last": self.drop_last, "fingerprint": _fingerprint(self.triplets)}

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume exactly: seed, epoch, position and the set-up.

        Notebook: 03_mining.ipynb
        """
        return {"sampler": type(self).__name__, "seed": self.seed, "epoch": self.epoch,
                "position": self.position, "world_size": self.world_size, **self._config()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from :meth:`state_dict`: the next batch is the one that would have come.

        The sampler must be built on the same data with the same batch set-up and world
        size (any rank may load any rank's state: ranks share epoch and position).

        Notebook: 03_mining.ipynb
        """
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict from state_dict(), got {type(state).__name__}")
        mine_ = {"sampler": type(self).__name__, "world_size": self.world_size, **self._config()}
        diff = {k: (state.get(k), v) for k, v in mine_.items() if state.get(k) != v}
        if diff:
            raise ValueError(f"state does not match this sampler (saved, current): {diff}")
        self.seed = check_int("seed", state["seed"], 0)
        self.epoch = check_int("epoch", state["epoch"], 0)
        position = check_int("position", state["position"], 0)
        if position > len(self):
            raise ValueError(f"position {position} is past the epoch's {len(self)} batches")
        self.position = position


class ShuffledTripletSampler(_EpochSampler):
    """Plain shuffled mini-batches of mined triplets.

    Each epoch is a fresh permutation of the ``M`` rows (seeded by ``(seed, epoch)``) cut
    into batches of ``batch_size`` triplets; with ``world_size > 1`` each rank takes an
    equal, disjoint share of the permutation.

    Parameters
    ----------
    triplets : numpy.ndarray of int, shape (M, 3)
        Output of :func:`mrlib.mining.mine`.
    batch_size : int, default 42
        Triplets per batch (the paper's batch holds 42 triplets of patches).
    seed : int
    rank, world_size : int
        DDP rank and number of ranks (``torch.distributed.get_rank()``/``get_world_size()``).
    drop_last : bool
        Drop the last incomplete batch of each rank's share, unless it is the share's only
        batch: a share smaller than one batch is one smaller batch, never an empty epoch.
    yield_rows : bool
        Yield the row indices into ``triplets`` (``int64 (B,)``, e.g. for a DataLoader's
        ``batch_sampler``) instead of the triplets (``int64 (B, 3)``).

    Notebook: 03_mining.ipynb
    """

    def __init__(self, triplets: np.ndarray, batch_size: int = 42, seed: int = 0, rank: int = 0,
                 world_size: int = 1, drop_last: bool = False, yield_rows: bool = False):
        super().__init__(triplets, batch_size, seed, rank, world_size, drop_last, yield_rows)
        M = self.triplets.shape[0]
        self._per_rank = M // self.world_size
        if self._per_rank == 0:
            raise ValueError(f"{M} triplets cannot be shared by {self.world_size} ranks")

    def __len__(self) -> int:
        whole, part = divmod(self._per_rank, self.batch_size)
        return whole + (0 if part == 0 or (self.drop_last and whole) else 1)

    def _make_plan(self, rng):
        # in-place shuffle of an int32 range: half the memory of rng.permutation (int64)
        dtype = np.int32 if self.triplets.shape[0] < 2 ** 31 else np.int64
        perm = np.arange(self.triplets.shape[0], dtype=dtype)
        rng.shuffle(perm)
        return perm[self.rank * self._per_rank:(self.rank + 1) * self._per_rank]

    def _batch(self, plan, b):
        return self._rows_out(plan[b * self.batch_size:(b + 1) * self.batch_size])


class PaperBatchSampler(_EpochSampler):
    """The paper's batches: one anchor track, one positive track, 42 negative tracks.

    The mined triplets of each (anchor, positive) pair (``Nn`` = 250 rows) are shuffled
    and cut into batches of ``n_neg_per_batch`` negatives (250 = 5 × 42 + 40: six batches,
    the last of 40 unless ``drop_last``); the batches of all pairs are shuffled together.
    Each epoch reshuffles both (seeded by ``(seed, epoch)``). The trainer then draws one
    random patch per row (``mrlib.features.random_patches``), giving 42 triplets of patches
    that share the anchor and positive *tracks* (Prétet et al. 2020, §3.4).

    Parameters
    ----------
    triplets : numpy.ndarray of int, shape (M, 3)
        Output of :func:`mrlib.mining.mine` (rows of a pair need not be contiguous).
    n_neg_per_batch : int, default 42
    seed : int
    rank, world_size : int
        DDP share: each rank gets ``n_batches // world_size`` batches, disjoint.
    drop_last : bool
        Drop each pair's incomplete last batch.
    yield_rows : bool
        Yield row indices into ``triplets`` instead of the triplets.

    Yields
    ------
    numpy.ndarray, int64, shape (B, 3)
        Triplets of catalog indices; column 0 and 1 are constant within a batch.
        (``(B,)`` row indices with ``yield_rows=True``.)

    Notebook: 03_mining.ipynb
    """

    _size_name = "n_neg_per_batch"

    def __init__(self, triplets: np.ndarray, n_neg_per_batch: int = 42, seed: int = 0,
                 rank: int = 0, world_size: int = 1, drop_last: bool = False,
                 yield_rows: bool = False):
        super().__init__(triplets, n_neg_per_batch, seed, rank, world_size, drop_last, yield_rows)
        T = self.triplets
        # Group the rows by (anchor, positive). mine() writes each pair contiguously; only
        # if the rows were reordered is a (stable) sort needed.
        key = T[:, 0].astype(np.int64) * (int(T[:, 1].max()) + 1) + T[:, 1]
        self._rows = None
        # more runs of equal keys than pairs: some pair's rows are not contiguous
        if np.count_nonzero(key[1:] != key[:-1]) + 1 != np.unique(key).size:
            self._rows = np.argsort(key, kind="stable")
            key = key[self._rows]
        starts = np.r_[0, np.flatnonzero(key[1:] != key[:-1]) + 1]
        sizes = np.diff(np.r_[starts, T.shape[0]])
        per_group = sizes // self.batch_size if self.drop_last else -(-sizes // self.batch_size)
        self._g_start, self._g_size = starts, sizes
        self._b_group = np.repeat(np.arange(starts.size), per_group)
        self._b_chunk = np.arange(self._b_group.size) - np.repeat(np.cumsum(per_group) - per_group, per_group)
        if len(self) == 0:
            raise ValueError(f"{self._b_group.size} batches cannot be shared by {self.world_size} ranks")

    @property
    def n_pairs(self) -> int:
        """Number of (anchor, positive) pairs."""
        return int(self._g_start.size)

    def __len__(self) -> int:
        """Batches per epoch for this rank."""
        return int(self._b_group.size) // self.world_size

    def _make_plan(self, rng):
        n = len(self)
        return rng.permutation(self._b_group.size)[self.rank * n:(self.rank + 1) * n]

    def _batch(self, plan, b):
        k = plan[b]
        g, q = self._b_group[k], self._b_chunk[k]
        # the pair's own shuffle for this epoch, derived on demand (no M-sized state)
        within = np.random.default_rng([self.seed, self.epoch, int(g)]).permutation(self._g_size[g])
        rows = self._g_start[g] + within[q * self.batch_size:(q + 1) * self.batch_size]
        if self._rows is not None:
            rows = self._rows[rows]
        return self._rows_out(rows)


class TrackBatchSampler(ShuffledTripletSampler):
    """Shuffled batches of training *tracks*, for online mining.

    Parameters
    ----------
    track_idx : array-like of int, shape (n,)
        Catalog indices to draw from (the training split).
    batch_size : int, default 64
        Tracks per batch.
    seed, rank, world_size, drop_last
        As in :class:`ShuffledTripletSampler` (``drop_last`` defaults to True here: online
        mining wants full batches).

    Yields
    ------
    numpy.ndarray, int64, shape (batch_size,)
        Catalog indices.

    Notebook: 03_mining.ipynb
    """

    def __init__(self, track_idx: np.ndarray, batch_size: int = 64, seed: int = 0, rank: int = 0,
                 world_size: int = 1, drop_last: bool = True):
        # No upper bound: the sampler does not know the catalog's size.
        idx = check_indices("track_idx", track_idx, np.inf, "catalog indices")
        if idx.ndim != 1 or idx.size == 0:
            raise ValueError(f"track_idx must be a non-empty 1-D array, got shape {idx.shape}")
        if np.unique(idx).size != idx.size:   # a repeated track could meet itself in a batch
            raise ValueError("track_idx contains duplicates")
        super().__init__(np.repeat(idx[:, None], 3, axis=1), batch_size, seed, rank, world_size,
                         drop_last, yield_rows=False)

    def __iter__(self):
        for batch in super().__iter__():
            yield batch[:, 0]
