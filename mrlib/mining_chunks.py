"""How one chunk of anchors is mined: the train-restricted source of ranked lists and
similarity rows, the per-block random streams, and the drawer of each offline strategy.

A drawer takes a :class:`Chunk` and returns its positives ``(c, Kp)`` and negatives
``(c, Kp, Nn)`` as training positions; where a positive's suffix is shorter than ``Nn`` it
comes whole first, then filler that :func:`mine_chunk` masks out. :mod:`mrlib.mining`
registers each drawer with its strategy, next to the plain loop it must agree with
(:mod:`mrlib.mining_reference`).

For each chunk the similarity rows are fetched once (from a matrix, or a callable so that
``S`` is never held whole) and only the *head* of each ranked list is sorted (a threshold
keeps a few candidates per row, then a sort of the first ``Np`` or ``Np + Nn``) — uniform
and distance-based draws are about *sets*, so the tracks beyond the head stay in catalog
order (:mod:`mrlib.mining_draws`).

Randomness comes from one generator per block of 16 anchors, seeded by ``(seed, strategy
code, block)``; chunks hold whole blocks, so the result depends on the seed only — not on
the chunk size, the number of threads, nor on streaming or not.

Notebook: 03_mining.ipynb
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from mrlib.checks import as_index_matrix, check_indices
from mrlib.mining_draws import _RNG_BLOCK, _BlockRNG, _draw_distance, _draw_uniform

# --------------------------------------------------------------------------------------
# The similarity / ranked-list source, restricted to the training split
# --------------------------------------------------------------------------------------
def _numpy(a) -> np.ndarray:
    """A numpy array of ``a``, a torch tensor moved to the CPU first."""
    return np.asarray(a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else a)


class TrainSplitSource:
    """Train-restricted access to ranked lists and similarity rows, chunk by chunk."""

    def __init__(self, ranked, train_idx, S, need_S: str | None = None):
        # need_S: the name of a strategy that reads S, for the error message
        if ranked is None and S is None:
            raise ValueError("give the ranked lists (ranked=) or the similarity (S=), or both")
        if need_S and S is None:
            raise ValueError(f"strategy {need_S!r} needs the similarity S (a matrix or a callable)")
        # the full-catalog ranked lists: 2-D, integer, (N, N-1)
        if ranked is not None:
            try:
                ranked = as_index_matrix("ranked", _numpy(ranked), "(N, N-1)")
            except TypeError as err:   # not integers: a similarity matrix, as mine's first argument?
                raise TypeError(f"{err}: a similarity matrix goes in S=") from None
        self.ranked = ranked
        self.S_fn: Callable[[np.ndarray], np.ndarray] | None = S if callable(S) else None
        self.S_mat = S = None if S is None or callable(S) else _numpy(S)
        if ranked is not None and ranked.shape[1] != ranked.shape[0] - 1:
            raise ValueError(f"ranked must have shape (N, N-1), got {ranked.shape}")
        if S is not None and (S.ndim != 2 or S.shape[0] != S.shape[1]):
            raise ValueError(f"S must be a square (N, N) similarity matrix, got shape {S.shape}")
        if S is not None and S.dtype.kind not in "fiu":
            raise TypeError(f"S must be numeric, got dtype {S.dtype}")
        if S is not None and ranked is not None and S.shape[0] != ranked.shape[0]:
            raise ValueError(f"S is {S.shape} but ranked has N = {ranked.shape[0]} lists")
        train = np.asarray(train_idx)
        if train.ndim != 1 or train.size == 0:
            raise ValueError(f"train_idx must be a non-empty 1-D array of catalog indices, got shape {train.shape}")
        if ranked is not None or S is not None:
            N = (ranked if ranked is not None else S).shape[0]
        else:   # only a callable S: learn N from one row (track 0 is in every catalog)
            probe = np.asarray(self.S_fn(np.zeros(1, dtype=np.int64)))
            if probe.ndim != 2 or probe.shape[0] != 1:
                raise ValueError(f"the S callable must return (len(rows), N) arrays, got shape {probe.shape}")
            N = probe.shape[1]
        self.N = N = int(N)
        self.train = np.unique(check_indices("train_idx", train, N, "the catalog's tracks"))
        if self.train.size != train.size:
            raise ValueError("train_idx contains duplicates")
        if train.size < 2:
            raise ValueError(f"need at least 2 training tracks to rank, got {train.size}")
        self.n = train.size
        self.L = self.n - 1
        self.pos_of = np.full(N, -1, dtype=np.int64)  # catalog index -> train position
        self.pos_of[self.train] = np.arange(self.n)

    def s_rows(self, apos: np.ndarray) -> np.ndarray:
        """(c, n) similarity of the chunk's anchors to every training track (float32/64).

        Read-only for the caller: it may be a view of an array the S callable returned.
        """
        rows = self.train[apos]
        if self.S_mat is not None:
            block = self.S_mat[rows]
        else:
            block = _numpy(self.S_fn(rows))
            if block.shape != (rows.size, self.N):
                raise ValueError(f"the S callable returned shape {block.shape}, expected {(rows.size, self.N)}")
        if self.n != self.N:
            block = block[:, self.train]
        if block.dtype not in (np.float32, np.float64):
            block = block.astype(np.float64)
        # one pass, on torch's threads (a view, no copy); NaN propagates into both
        lo, hi = (float(x) for x in torch.aminmax(torch.from_numpy(np.ascontiguousarray(block))))
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise ValueError("S holds NaN or infinite values")
        if lo < 0:
            raise ValueError(f"S must be >= 0 (it weights the distance-based draws); min is {lo}")
        return block

    def head(self, apos: np.ndarray, K: int, srows: np.ndarray | None) -> np.ndarray:
        """(c, K) train positions of r_1 ... r_K for each anchor, in rank order."""
        c = apos.size
        if self.ranked is not None:
            lists = self.ranked[self.train[apos]]
            # a negative entry would wrap around to another track's position without an error
            lists = check_indices("ranked", lists, self.N, f"in the lists of tracks "
                                  f"{int(self.train[apos[0]])}..{int(self.train[apos[-1]])}")
            tpos = self.pos_of[lists]
            keep = tpos >= 0
            counts = keep.sum(axis=1)
            if (counts != self.L).any():
                bad = int(self.train[apos][np.flatnonzero(counts != self.L)[0]])
                raise ValueError(f"ranked list of track {bad} does not list every other training track once")
            return tpos[keep].reshape(c, self.L)[:, :K]
        # Sort only the head. A threshold keeps a few candidates per row — the exact K-th
        # value for a short head, else the r-th largest value of a strided sample of the
        # columns (r chosen so that about 4K values pass) — and those are sorted by
        # (-S, index), the ranked_list tie rule. Rows where fewer than K pass the sampled
        # threshold get the exact K-th value (np.partition).
        # The anchor is not in its own list: take the first K + 1 of the whole row and drop
        # the anchor, or the last one if the anchor is not among them.
        n = self.n
        ar = np.arange(c)
        K1 = K + 1                              # K <= L = n - 1, so K1 <= n
        if K1 <= 32 and n > 4096:
            # a short head of long rows: the exact K1-th value from torch.topk (no copy)
            thr = torch.topk(torch.from_numpy(srows), K1, dim=1).values.numpy().min(axis=1)
        else:
            step = max(1, n // (4 * K1))
            sample = srows[:, ::step]
            expect = K1 / step                  # top values expected in the sample
            r = min(sample.shape[1], int(np.ceil(expect + 3.0 * np.sqrt(expect))) + 1)
            thr = np.partition(sample, sample.shape[1] - r, axis=1)[:, sample.shape[1] - r]
        sel = srows >= thr[:, None]
        short = np.flatnonzero(sel.sum(axis=1) < K1)
        if short.size:
            kth = np.partition(srows[short], n - K1, axis=1)[:, n - K1]
            sel[short] = srows[short] >= kth[:, None]
        flat = np.flatnonzero(sel)
        row, col = np.divmod(flat, n)
        vals = srows.ravel()[flat] if srows.flags.c_contiguous else srows[row, col]
        row, col = _by_row_then_rank(row, vals, col, c, n)
        starts = np.searchsorted(row, ar)
        top = col[(starts[:, None] + np.arange(K1)).ravel()].reshape(c, K1)
        keep = top != apos[:, None]
        keep[keep.all(axis=1), K1 - 1] = False
        return top[keep].reshape(c, K)


def _by_row_then_rank(row: np.ndarray, vals: np.ndarray, col: np.ndarray, c: int,
                      n: int) -> tuple[np.ndarray, np.ndarray]:
    """(row, col) sorted by row, then decreasing value, then column (the ranked_list rule).

    float32 values >= 0 order like their bit patterns, so (row, -value, col) packs into one
    int64 key and a plain integer sort does it (several times faster than a 3-key lexsort);
    other dtypes, or keys too wide, take the lexsort.
    """
    cb, rb = max(1, int(n - 1).bit_length()), max(1, int(c - 1).bit_length())
    if vals.dtype == np.float32 and rb + 31 + cb <= 63:
        bits = (vals + np.float32(0.0)).view(np.int32).astype(np.int64)   # -0.0 -> +0.0
        key = row.astype(np.int64) << (31 + cb)
        key |= (0x7FFFFFFF - bits) << cb
        key |= col
        key.sort()
        return key >> (31 + cb), key & ((1 << cb) - 1)
    order = np.lexsort((col, -vals, row))
    return row[order], col[order]



# --------------------------------------------------------------------------------------
# One chunk of anchors
# --------------------------------------------------------------------------------------
@dataclass
class Chunk:
    """One chunk of anchors, as a drawer sees it.

    Attributes
    ----------
    src : TrainSplitSource
        The training split's ranked lists and similarity rows.
    apos : numpy.ndarray of int
        Training positions of the chunk's anchors (ascending).
    n_pos, n_neg : int
        ``Kp = min(Np, L)`` positives per anchor, ``Nn`` negatives per pair.
    srows : numpy.ndarray or None
        ``(c, n)`` similarity rows (when the strategy needs ``S`` or no ranked lists came).
    rngs : _BlockRNG
        The anchors' random streams.
    max_rounds : int
        Duplicate-redraw rounds before the Gumbel-top-k completion.

    Notebook: 03_mining.ipynb
    """

    src: Any
    apos: np.ndarray
    n_pos: int
    n_neg: int
    srows: np.ndarray | None
    rngs: _BlockRNG
    max_rounds: int

    def head(self, K: int) -> np.ndarray:
        """(c, K) training positions of ``r_1 ... r_K`` of each anchor, in rank order."""
        return self.src.head(self.apos, K, self.srows)


def draw_neighbors(ch: Chunk) -> tuple[np.ndarray, np.ndarray]:
    """Neighbors: the negatives of positive ``i`` are ``r_{i+1} ... r_{i+Nn}`` (clipped).

    Notebook: 03_mining.ipynb
    """
    Kp, n_neg = ch.n_pos, ch.n_neg
    head = ch.head(min(Kp + n_neg, ch.src.L)).astype(np.int32)
    # a list shorter than Kp + Nn repeats r_L past its end (clipped slots, masked by mine_chunk);
    # then the negatives of pair i are the window r_{i+1} ... r_{i+Nn}: a view, no gather
    if head.shape[1] < Kp + n_neg:     # np.pad copies even when it adds nothing
        head = np.pad(head, ((0, 0), (0, Kp + n_neg - head.shape[1])), mode="edge")
    return head[:, :Kp], np.lib.stride_tricks.sliding_window_view(head, n_neg, axis=1)[:, 1:Kp + 1]


def draw_uniform(ch: Chunk) -> tuple[np.ndarray, np.ndarray]:
    """Random uniform: ``Nn`` negatives uniformly over ``{r_j : j > i}``, without replacement.

    Notebook: 03_mining.ipynb
    """
    head = ch.head(ch.n_pos)
    return head, _draw_uniform(head, ch.apos, ch.src.n, ch.n_neg, ch.rngs, ch.max_rounds)


def draw_distance(ch: Chunk) -> tuple[np.ndarray, np.ndarray]:
    """Distance-based: ``Nn`` negatives over ``{r_j : j > i}`` with ``P(n) ∝ S(t, n)``, without
    replacement (successive sampling; zero weights last).

    Notebook: 03_mining.ipynb
    """
    head = ch.head(ch.n_pos)
    return head, _draw_distance(head, ch.apos, ch.srows, ch.src.n, ch.n_neg, ch.rngs, ch.max_rounds)


def mine_chunk(src: TrainSplitSource, apos: np.ndarray, strategy, n_pos: int, n_neg: int, seed: int,
               max_rounds: int, out: np.ndarray | None = None) -> np.ndarray:
    """The triplets of one chunk of anchors, catalog indices ``(m_chunk, 3)`` int32.

    ``strategy`` is a registry entry (:class:`mrlib.mining.Strategy`): its ``draw`` picks the
    positives and negatives, its ``seed_code`` separates its random streams from the other
    strategies', ``needs_S`` says whether it reads similarity rows. ``apos`` are consecutive
    training positions (a chunk); ``out``, when given, is the final array, and the chunk writes
    its own rows there in place.

    Notebook: 03_mining.ipynb
    """
    c, L = apos.size, src.L
    Kp = min(n_pos, L)
    k = np.minimum(n_neg, L - np.arange(1, Kp + 1))   # negatives per pair after clipping
    valid = np.arange(n_neg)[None, :] < k[:, None]    # (Kp, Nn)
    srows = src.s_rows(apos) if (strategy.needs_S or src.ranked is None) else None
    rngs = _BlockRNG(seed, strategy.seed_code, apos)
    pos_p, pos_n = strategy.draw(Chunk(src, apos, Kp, n_neg, srows, rngs, max_rounds))

    m = int(k.sum())                                  # triplets per anchor, the same for all
    dest = np.empty((c * m, 3), np.int32) if out is None else out[apos[0] * m:(apos[-1] + 1) * m]
    full = valid.all()
    grid = dest.reshape(c, Kp, n_neg, 3) if full else np.empty((c, Kp, n_neg, 3), dtype=np.int32)
    # training positions -> catalog indices (nothing to do when every track is training)
    cat = (lambda x: x) if src.n == src.N else (lambda x: src.train[x])
    grid[..., 0] = cat(apos).astype(np.int32)[:, None, None]   # int32 sources: no cast per element
    grid[..., 1] = cat(pos_p).astype(np.int32)[:, :, None]
    grid[..., 2] = cat(pos_n)
    if not full:
        dest[:] = grid[np.broadcast_to(valid, (c, Kp, n_neg))]
    return dest


def chunk_stream(src: TrainSplitSource, strategy, n_pos: int, n_neg: int, seed: int,
                 chunk_size: int, max_rounds: int, n_jobs: int, progress: bool,
                 out: np.ndarray | None = None) -> Iterator[np.ndarray]:
    """Mine the chunks in order, on ``n_jobs`` threads (numpy releases the GIL in its
    loops, and every chunk writes its own rows), yielding each chunk's array.

    ``strategy`` is a registry entry (:class:`mrlib.mining.Strategy`); ``out``, when given,
    is the final array, each chunk writing its own rows.

    Notebook: 03_mining.ipynb
    """
    chunk_size = -(-chunk_size // _RNG_BLOCK) * _RNG_BLOCK   # whole random-stream blocks
    starts = range(0, src.n, chunk_size)

    def work(start: int) -> np.ndarray:
        apos = np.arange(start, min(start + chunk_size, src.n))
        return mine_chunk(src, apos, strategy, n_pos, n_neg, seed, max_rounds, out)

    def chunks() -> Iterator[np.ndarray]:
        if n_jobs == 1:
            yield from map(work, starts)
            return
        with ThreadPoolExecutor(max_workers=n_jobs) as pool:
            pending: deque = deque()
            for start in starts:
                pending.append(pool.submit(work, start))
                if len(pending) > n_jobs:  # bounded look-ahead: memory stays ~n_jobs+1 chunks
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()

    with tqdm(total=src.n, desc=f"mining ({strategy.name})", unit="anchor", disable=not progress) as bar:
        # anchors counted from the chunk's start: with 2 training tracks a chunk has no rows
        for start, chunk in zip(starts, chunks()):
            bar.update(min(chunk_size, src.n - start))
            yield chunk
