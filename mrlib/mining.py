"""Triplet mining from ranked lists (Prétet et al. 2020, §3.2), batch samplers, online mining.

For a training anchor ``t`` with ranked list ``R(t) = [r_1 ... r_L]`` (the other *training*
tracks by decreasing oracle similarity ``S(t, .)``, ties broken by catalog index,
``L = n_train - 1``) the positives are ``r_1 ... r_Np`` and, for the positive at rank ``i``,
``Nn`` negatives are taken from the ranks ``j > i``:

* ``"neighbors"`` — ranks ``i+1 ... i+Nn`` (clipped at the end of the list);
* ``"uniform"``   — uniformly over ``{r_j : j > i}``, without replacement;
* ``"distance"``  — over ``{r_j : j > i}`` with ``P(n) ∝ S(t, n)``, without replacement
  (successive sampling: the first negative of a pair follows ``P(n) ∝ S(t, n)`` exactly,
  each next one the same law over the tracks not drawn yet). Zero weights come last: when
  fewer than ``Nn`` candidates have ``S > 0`` all of them are taken and the rest is drawn
  uniformly among the zero-weight ones (so all-zero weights fall back to uniform).

The output is an ``int32`` array ``(M, 3)`` of catalog indices ``(anchor, positive,
negative)``, grouped by anchor, then positive rank, with ``M = n_train · Np · Nn`` (fewer
only where lists run out, see :func:`n_triplets`).

How it stays fast at paper scale (N = 14,246, 53.4 M triplets) without a pass over the
whole list for each of the 213,690 (anchor, positive) pairs:

* anchors are processed in chunks (optionally on several threads); for each chunk the
  similarity rows are fetched once (from a matrix, or a callable so that ``S`` is never
  held whole) and only the *head* of each ranked list is sorted (a threshold keeps a few
  candidates per row, then a sort of the first ``Np`` or ``Np + Nn``) — uniform and
  distance-based draws are about *sets*, so the tracks beyond the head stay in catalog
  order;
* each anchor's candidates ``[r_1 ... r_Np, the others in catalog order]`` and their
  cumulative weights are computed once and shared by its ``Np`` positives, whose candidate
  sets are suffixes of that order; only the ``Nn`` needed draws are made (inverse CDF on
  the suffix through a guide table; a uniform draw is one index into a per-anchor table of
  its candidates, rejecting the anchor and the head), and duplicates are redrawn —
  keeping the first ``Nn`` distinct values of an i.i.d. stream is exactly sampling
  without replacement. Rows whose law is concentrated draw ``d / (1 - F)``
  values at once (``F``: mass already drawn), and the few rows still unsettled after
  ``max_rounds`` are completed by Gumbel-top-k over their remaining candidates (exact too).

Randomness comes from one generator per block of 16 anchors, seeded by ``(seed, strategy,
block)``; chunks hold whole blocks, so the result depends on the seed only — not on the
chunk size, the number of threads, nor on streaming or not.

Samplers (:class:`PaperBatchSampler`, :class:`ShuffledTripletSampler`,
:class:`TrackBatchSampler`) are seedable, resumable mid-epoch (``state_dict`` /
``load_state_dict``) and split across DDP ranks. :func:`online_triplets` mines hard or
semi-hard triplets inside a batch of tracks (the paper's future work).
"""
from __future__ import annotations

import mmap
import numbers
import os
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

__all__ = [
    "STRATEGIES",
    "ONLINE_STRATEGIES",
    "ALL_STRATEGIES",
    "canonical_strategy",
    "is_online",
    "n_triplets",
    "paper_shares",
    "mine",
    "iter_mine",
    "triplet_ranks",
    "check_triplets",
    "PaperBatchSampler",
    "ShuffledTripletSampler",
    "TrackBatchSampler",
    "rank_matrix",
    "batch_ranks",
    "online_triplets",
]

STRATEGIES: tuple[str, ...] = ("neighbors", "uniform", "distance")
ONLINE_STRATEGIES: tuple[str, ...] = ("online-hard", "online-semihard")
ALL_STRATEGIES: tuple[str, ...] = STRATEGIES + ONLINE_STRATEGIES

_ALIASES = {
    "neighbors": "neighbors", "neighbours": "neighbors", "neighbor": "neighbors",
    "uniform": "uniform", "random": "uniform", "random-uniform": "uniform",
    "random_uniform": "uniform",
    "distance": "distance", "distance-based": "distance", "distance_based": "distance",
    "online-hard": "online-hard", "online_hard": "online-hard", "hard": "online-hard",
    "online-semihard": "online-semihard", "online_semihard": "online-semihard",
    "semihard": "online-semihard", "semi-hard": "online-semihard",
    "online-semi-hard": "online-semihard",
}
# Part of every anchor's seed, so the three strategies never share random streams.
_STRATEGY_CODE = {"neighbors": 0, "uniform": 1, "distance": 2}
# Gumbel keys of positive-weight candidates get this offset so that they always rank
# before zero-weight ones (log w >= -745 in float64, |Gumbel| < 40 at double precision).
_KEY_OFFSET = 2000.0


# --------------------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------------------
def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def canonical_strategy(name: str) -> str:
    """The canonical name of a mining strategy (aliases such as ``"random"`` accepted).

    Parameters
    ----------
    name : str
        One of ``"neighbors"``, ``"uniform"`` (``"random"``, ``"random-uniform"``),
        ``"distance"`` (``"distance-based"``), ``"online-hard"`` (``"hard"``),
        ``"online-semihard"`` (``"semihard"``, ``"semi-hard"``); case-insensitive.

    Returns
    -------
    str
        An element of :data:`ALL_STRATEGIES`.

    Notebook: 03_mining.ipynb
    """
    if not isinstance(name, str):
        raise TypeError(f"strategy must be a str, got {type(name).__name__}")
    key = name.strip().lower().replace(" ", "-")
    if key not in _ALIASES:
        raise ValueError(f"unknown mining strategy {name!r}; expected one of {ALL_STRATEGIES}")
    return _ALIASES[key]


def is_online(strategy: str) -> bool:
    """Whether a strategy mines inside the batch during training (``online-*``).

    Offline strategies (:data:`STRATEGIES`) are mined once with :func:`mine` and fed by
    :class:`PaperBatchSampler` or :class:`ShuffledTripletSampler`; online ones draw batches
    of tracks with :class:`TrackBatchSampler` and pick triplets with :func:`online_triplets`.

    Notebook: 03_mining.ipynb
    """
    return canonical_strategy(strategy) in ONLINE_STRATEGIES


#: The 2020 paper's training list: 60 % of its N = 14,246 tracks (§4.1), mined with Np = 15
#: positives and Nn = 250 negatives (§3.2).
PAPER_N_TRAIN, PAPER_N_POS, PAPER_N_NEG = round(0.6 * 14246), 15, 250


def paper_shares(n_train: int) -> tuple[int, int]:
    """``Np`` and ``Nn`` taking the same share of a ranked list as the paper's.

    The paper's 15 and 250 are 0.18 % and 2.9 % of its training list (``L = 8,547`` other
    tracks). Kept as counts on a list of 1,199, Nn = 250 would reach 21 % of it, so deep that
    Neighbors and Distance-based draw nearly the same negatives; scaled, each strategy keeps
    the part of the list it is meant to draw from.

    Parameters
    ----------
    n_train : int
        Training tracks (>= 2); the list has ``n_train - 1``.

    Returns
    -------
    (int, int)
        ``round(15 · L / 8547)`` and ``round(250 · L / 8547)`` with ``L = n_train - 1``, at
        least 1 each (e.g. 2 and 35 for 1,200 training tracks).

    Notebook: 03_mining.ipynb
    """
    n_train = _check_int("n_train", n_train, 2)
    share = (n_train - 1) / (PAPER_N_TRAIN - 1)
    return max(1, round(PAPER_N_POS * share)), max(1, round(PAPER_N_NEG * share))


def n_triplets(n_train: int, n_pos: int = 15, n_neg: int = 250) -> int:
    """Exact number of triplets mined from ``n_train`` training tracks (any strategy).

    ``M = n_train · Σ_{i=1}^{min(Np, L)} min(Nn, L - i)`` with ``L = n_train - 1``: equal to
    ``n_train · Np · Nn`` whenever ``n_train > Np + Nn``, smaller where lists run out.

    Parameters
    ----------
    n_train : int
        Number of training tracks (>= 2).
    n_pos, n_neg : int
        ``Np`` positives per anchor and ``Nn`` negatives per (anchor, positive) pair.

    Returns
    -------
    int

    Notebook: 03_mining.ipynb
    """
    n_train = _check_int("n_train", n_train, 2)
    n_pos = _check_int("n_pos", n_pos, 1)
    n_neg = _check_int("n_neg", n_neg, 1)
    L = n_train - 1
    i = np.arange(1, min(n_pos, L) + 1)
    return int(n_train * np.minimum(n_neg, L - i).sum())


# --------------------------------------------------------------------------------------
# The similarity / ranked-list source, restricted to the training split
# --------------------------------------------------------------------------------------
class _Source:
    """Train-restricted access to ranked lists and similarity rows, chunk by chunk."""

    def __init__(self, ranked, train_idx, S, need_S: bool):
        if ranked is None and S is None:
            raise ValueError("give the ranked lists (ranked=) or the similarity (S=), or both")
        if need_S and S is None:
            raise ValueError("strategy 'distance' needs the similarity S (a matrix or a callable)")
        self.S_fn: Callable[[np.ndarray], np.ndarray] | None = None
        self.S_mat: np.ndarray | None = None
        N = None
        if ranked is not None:
            if isinstance(ranked, torch.Tensor):
                ranked = ranked.cpu().numpy()
            ranked = np.asarray(ranked)
            if ranked.ndim != 2 or ranked.shape[1] != ranked.shape[0] - 1:
                raise ValueError(
                    f"ranked must be the full-catalog ranked lists, shape (N, N-1), got {ranked.shape}")
            if not np.issubdtype(ranked.dtype, np.integer):
                raise TypeError(f"ranked must hold integer catalog indices, got dtype {ranked.dtype}"
                                " (a similarity matrix goes in S=)")
            N = ranked.shape[0]
        if S is not None:
            if callable(S):
                self.S_fn = S
            else:
                if isinstance(S, torch.Tensor):
                    S = S.detach().cpu().numpy()
                S = np.asarray(S)
                if S.ndim != 2 or S.shape[0] != S.shape[1]:
                    raise ValueError(f"S must be a square (N, N) similarity matrix, got shape {S.shape}")
                if not np.issubdtype(S.dtype, np.floating) and not np.issubdtype(S.dtype, np.integer):
                    raise TypeError(f"S must be numeric, got dtype {S.dtype}")
                if N is not None and S.shape[0] != N:
                    raise ValueError(f"S is {S.shape} but ranked has N = {N} lists")
                N = S.shape[0]
                self.S_mat = S
        self.ranked = ranked
        train = np.asarray(train_idx)
        if train.ndim != 1 or train.size == 0:
            raise ValueError(f"train_idx must be a non-empty 1-D array of catalog indices, got shape {train.shape}")
        if not np.issubdtype(train.dtype, np.integer):
            raise TypeError(f"train_idx must hold integers, got dtype {train.dtype}")
        train = np.unique(train.astype(np.int64))
        if train.size != np.asarray(train_idx).size:
            raise ValueError("train_idx contains duplicates")
        if train.size < 2:
            raise ValueError(f"need at least 2 training tracks to rank, got {train.size}")
        if train[0] < 0:
            raise ValueError(f"train_idx has a negative index {train[0]}")
        if N is None:  # only a callable S: learn N from one row
            probe = np.asarray(self.S_fn(train[:1]))
            if probe.ndim != 2 or probe.shape[0] != 1:
                raise ValueError(f"the S callable must return (len(rows), N) arrays, got shape {probe.shape}")
            N = probe.shape[1]
        if train[-1] >= N:
            raise ValueError(f"train_idx has index {train[-1]} but the catalog has N = {N} tracks")
        self.N = int(N)
        self.train = train
        self.n = train.size
        self.L = self.n - 1
        self.pos_of = np.full(self.N, -1, dtype=np.int64)  # catalog index -> train position
        self.pos_of[train] = np.arange(self.n)

    def s_rows(self, apos: np.ndarray) -> np.ndarray:
        """(c, n) similarity of the chunk's anchors to every training track (float32/64).

        Read-only for the caller: it may be a view of the user's matrix.
        """
        rows = self.train[apos]
        if self.S_mat is not None:
            if self.n == self.N and apos.size and apos[-1] - apos[0] == apos.size - 1:
                block = self.S_mat[apos[0]:apos[-1] + 1]     # contiguous rows: a view, no copy
            else:
                block = self.S_mat[rows]
        else:
            block = self.S_fn(rows)
            if isinstance(block, torch.Tensor):
                block = block.detach().cpu().numpy()
            block = np.asarray(block)
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
            tpos = self.pos_of[self.ranked[self.train[apos]]]
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


# Anchors share a random stream in blocks of this many training positions; chunks are
# aligned to blocks, so the draws do not depend on chunk_size or n_jobs.
_RNG_BLOCK = 16


class _BlockRNG:
    """The random streams of a chunk's anchors: one generator per block of anchors, seeded
    by ``(seed, strategy, block)`` (creating one generator per anchor costs more than the
    draws of the uniform strategy)."""

    def __init__(self, seed: int, strategy: str, apos: np.ndarray):
        code = _STRATEGY_CODE[strategy]
        self.block = apos // _RNG_BLOCK
        first = self.block[0]
        self.local = self.block - first                      # block of each anchor in the chunk
        self.gens = [np.random.default_rng([seed, code, int(b)])
                     for b in range(first, self.block[-1] + 1)]
        self.bounds = np.searchsorted(self.local, np.arange(len(self.gens) + 1))

    def blocks(self) -> Iterator[tuple[int, int, np.random.Generator]]:
        """(start, stop, generator) of each block's anchors in the chunk, in order."""
        for b, g in enumerate(self.gens):
            yield int(self.bounds[b]), int(self.bounds[b + 1]), g

    def first(self, shape: tuple[int, ...]) -> np.ndarray:
        """Uniform [0, 1) array of shape (c, *shape), block by block."""
        U = np.empty((self.local.size, *shape))
        for s, e, g in self.blocks():
            U[s:e] = g.random((e - s, *shape))
        return U

    def per_anchor(self, counts: np.ndarray) -> np.ndarray:
        """counts[j] uniforms for each anchor j, concatenated in anchor order."""
        per_block = np.add.reduceat(counts, self.bounds[:-1]) if counts.size else counts
        return np.concatenate([self.gens[b].random(int(k)) for b, k in enumerate(per_block) if k]
                              or [np.empty(0)])


# --------------------------------------------------------------------------------------
# One chunk of anchors
# --------------------------------------------------------------------------------------
def _mine_chunk(src: _Source, apos: np.ndarray, strategy: str, n_pos: int, n_neg: int,
                seed: int, max_rounds: int, dest: np.ndarray | None = None) -> np.ndarray:
    c, L = apos.size, src.L
    Kp = min(n_pos, L)
    i = np.arange(1, Kp + 1)                  # positive ranks (1-based)
    k = np.minimum(n_neg, L - i)              # negatives per pair after clipping
    slot = np.arange(n_neg)
    valid = slot[None, :] < k[:, None]        # (Kp, Nn)
    srows = src.s_rows(apos) if (strategy == "distance" or src.ranked is None) else None

    if strategy == "neighbors":
        head = src.head(apos, min(Kp + n_neg, L), srows).astype(np.int32)
        # negative of pair i, slot s is r_{i+1+s}: head column i + s (clipped ones masked)
        pos_p = head[:, :Kp]
        if head.shape[1] == Kp + n_neg:   # nothing clipped: windows of the head, no gather
            pos_n = np.lib.stride_tricks.sliding_window_view(head, n_neg, axis=1)[:, 1:Kp + 1]
        else:
            cols = np.minimum(i[:, None] + slot[None, :], head.shape[1] - 1)
            pos_n = head[:, cols.ravel()].reshape(c, Kp, n_neg)
    else:
        head = src.head(apos, Kp, srows)
        rngs = _BlockRNG(seed, strategy, apos)
        if strategy == "uniform":
            v = _draw_uniform(head, apos, src.n, n_neg, rngs, max_rounds)
        else:
            v = _draw_distance(head, apos, srows, src.n, n_neg, rngs, max_rounds)
        pos_p = head
        pos_n = v

    m_chunk = c * int(k.sum())
    if dest is None:
        dest = np.empty((m_chunk, 3), dtype=np.int32)
    elif dest.shape != (m_chunk, 3):  # pragma: no cover - guarded by construction
        raise RuntimeError(f"chunk buffer {dest.shape} != {(m_chunk, 3)}")
    # write straight into the destination (the caller's slice of the final array)
    full = valid.all()
    out = dest.reshape(c, Kp, n_neg, 3) if full else np.empty((c, Kp, n_neg, 3), dtype=np.int32)
    # training positions -> catalog indices (nothing to do when every track is training)
    cat = (lambda x: x) if src.n == src.N else (lambda x: src.train[x])
    out[..., 0] = cat(apos).astype(np.int32)[:, None, None]   # int32 sources: no cast per element
    out[..., 1] = cat(pos_p).astype(np.int32)[:, :, None]
    out[..., 2] = cat(pos_n)
    if not full:
        dest[:] = out[np.broadcast_to(valid, (c, Kp, n_neg))]
    return dest


def _chunk_stream(src: _Source, strategy: str, n_pos: int, n_neg: int, seed: int,
                  chunk_size: int, max_rounds: int, n_jobs: int, progress: bool,
                  out: np.ndarray | None = None) -> Iterator[np.ndarray]:
    """Mine the chunks in order, on ``n_jobs`` threads (numpy releases the GIL in its
    loops, and every chunk writes its own rows), yielding each chunk's array."""
    per_anchor = n_triplets(src.n, n_pos, n_neg) // src.n   # the same for every anchor
    chunk_size = -(-chunk_size // _RNG_BLOCK) * _RNG_BLOCK   # whole random-stream blocks
    starts = range(0, src.n, chunk_size)

    def work(start: int) -> np.ndarray:
        apos = np.arange(start, min(start + chunk_size, src.n))
        dest = None if out is None else out[start * per_anchor:(start + apos.size) * per_anchor]
        return _mine_chunk(src, apos, strategy, n_pos, n_neg, seed, max_rounds, dest)

    with tqdm(total=src.n, desc=f"mining ({strategy})", unit="anchor", disable=not progress) as bar:
        if n_jobs == 1:
            for start in starts:
                chunk = work(start)
                bar.update(chunk.shape[0] // per_anchor)
                yield chunk
            return
        with ThreadPoolExecutor(max_workers=n_jobs) as pool:
            pending: deque = deque()
            for start in starts:
                pending.append(pool.submit(work, start))
                if len(pending) > n_jobs:  # bounded look-ahead: memory stays ~n_jobs+1 chunks
                    chunk = pending.popleft().result()
                    bar.update(chunk.shape[0] // per_anchor)
                    yield chunk
            while pending:
                chunk = pending.popleft().result()
                bar.update(chunk.shape[0] // per_anchor)
                yield chunk


def _draw_uniform(head: np.ndarray, apos: np.ndarray, n: int, n_neg: int, rngs: _BlockRNG,
                  max_rounds: int) -> np.ndarray:
    """Draw, for each (anchor, positive i), n_neg distinct negatives uniformly from
    {r_j : j > i}, without replacement.

    Each anchor's candidates are laid out once in a table of ``n + Kp`` entries: the
    training positions in catalog order with the anchor and the head marked -1, then the
    head reversed. The candidates of positive ``i`` are then the first ``n + Kp - i``
    entries less the -1 ones, so a draw is one uniform index and one lookup. Rejections
    (-1, and in the first round indices past row i's prefix: every row draws over the widest
    one, positive 1's) and later copies of a value are redrawn. Every rule that keeps
    distinct values and redraws the rest treats all candidates alike, so the result is a
    uniform ordered sample without replacement; rows still short after ``max_rounds``
    are completed by Gumbel-top-k over their remaining candidates (exact too).

    Returns (c, Kp, n_neg) int32 training positions; where the suffix is shorter than
    n_neg it comes whole (in rank order, then catalog order), then filler that the caller
    masks out.
    """
    c, Kp = head.shape
    L = n - 1
    i = np.arange(1, Kp + 1)
    h = Kp - i                                         # head columns in each suffix
    width = n + Kp
    ar = np.arange(c)
    tbl = np.empty((c, width), dtype=np.int32)
    tbl[:, :n] = np.arange(n, dtype=np.int32)
    tbl[ar[:, None], head] = -1
    tbl[ar, apos] = -1
    tbl[:, n:] = head[:, ::-1]
    flat_tbl = tbl.ravel()
    out = np.empty((c, Kp, n_neg), dtype=np.int32)

    # The last positives may have a suffix no longer than n_neg: they take it whole.
    Ks = int(np.count_nonzero(L - i > n_neg))          # the first Ks positives are sampled
    if Ks < Kp:
        outside = tbl[:, :n][tbl[:, :n] >= 0].reshape(c, L - Kp)
        ranked = np.concatenate([head, outside], axis=1)   # r_1 ... r_L (catalog order after Kp)
        cols = np.minimum(i[Ks:, None] + np.arange(n_neg)[None, :], L - 1)   # r_{i+1+s}
        out[:, Ks:] = ranked[:, cols]
    if Ks == 0:
        return out

    # First round: n_neg indices per row over the widest prefix, one gather.
    R = c * Ks
    hi = n + int(h[0])
    vals = np.empty((c, Ks, n_neg), dtype=np.int32)
    lim = (n + h[:Ks])[:, None]                        # positive i's candidates: the first lim
    for s0, s1, g in rngs.blocks():                    # block by block: all of it stays in cache
        K = g.random((s1 - s0, Ks, n_neg))
        K *= hi
        K = K.astype(np.intp)                          # floor (u >= 0)
        past = K >= lim          # beyond positive i's candidates; K == hi (u * hi rounding up)
        K += (np.arange(s0, s1) * width)[:, None, None]   # is caught too, inside the table row
        v = flat_tbl.take(K)
        v[past] = -1
        vals[s0:s1] = v
    vals = vals.reshape(R, n_neg)

    # Later copies of a value and rejections, from one sort of (value + 1, slot) keys.
    shift = max(1, (n_neg - 1).bit_length())
    key_t = np.int32 if (n + 1) << shift < 2 ** 31 else np.int64
    key = np.left_shift(vals, shift, dtype=key_t)
    key += np.arange(n_neg, dtype=key_t) + (1 << shift)
    key.sort(axis=1)
    v = key >> shift                                   # value + 1 in sorted order; 0: rejected
    bad = np.empty((R, n_neg), dtype=bool)
    bad[:, 0] = v[:, 0] == 0
    np.equal(v[:, 1:], v[:, :-1], out=bad[:, 1:])      # equal values sit in slot order
    flat = np.flatnonzero(bad)
    rows, slots = flat // n_neg, key.ravel()[flat] & ((1 << shift) - 1)
    del key, bad
    vals[rows, slots] = -1
    # each row's values, rows apart: one sorted array to look the redraws up in
    stride = n + 1
    base_t = np.int32 if R * stride < 2 ** 31 else np.int64
    base = (v.astype(base_t, copy=False) + (np.arange(R, dtype=base_t) * stride)[:, None]).ravel()
    del v

    for rnd in range(max_rounds):
        if rows.size == 0:
            break
        a = rows // Ks
        lim = n + h[rows % Ks]
        u = rngs.per_anchor(np.bincount(a, minlength=c))
        y = flat_tbl[a * width + np.minimum((u * lim).astype(np.int64), lim - 1)]
        if rnd == 0:
            at = rows
        else:  # the few rows left: their current values (holes are -1), sorted again
            urows, at = np.unique(rows, return_inverse=True)
            base = (np.sort(vals[urows], axis=1) + 1
                    + (np.arange(urows.size, dtype=np.int64) * stride)[:, None]).ravel()
        target = (at * stride + y + 1).astype(base.dtype, copy=False)   # no cast of base
        pos = np.minimum(np.searchsorted(base, target), base.size - 1)
        ok = (y >= 0) & (base[pos] != target)
        order = np.argsort(target, kind="stable")      # two new draws of one value: keep one
        again = np.zeros(target.size, dtype=bool)
        again[order[1:]] = target[order[1:]] == target[order[:-1]]
        ok &= ~again
        vals[rows[ok], slots[ok]] = y[ok]
        rows, slots = rows[~ok], slots[~ok]

    if rows.size:                                      # Gumbel-top-k completion
        stuck_rows = np.unique(rows)
        row_a, row_i = np.repeat(ar, Ks), np.tile(i[:Ks], c)
        _complete_rows(stuck_rows, vals, vals[stuck_rows] < 0, np.ones(stuck_rows.size, dtype=bool),
                       row_a, row_i, head, apos, None, n, n_neg, rngs)
    out[:, :Ks] = vals.reshape(c, Ks, n_neg)
    return out


def _draw_distance(head: np.ndarray, apos: np.ndarray, srows: np.ndarray, n: int,
                   n_neg: int, rngs: _BlockRNG, max_rounds: int) -> np.ndarray:
    """Draw, for each (anchor, positive i), n_neg distinct negatives from {r_j : j > i}
    with P(n) ∝ S(t, n) (successive sampling).

    The candidates of positive ``i`` are the head columns ``i ... Kp-1`` (``r_{i+1} ...
    r_Kp``) plus every training track outside the head and other than the anchor, taken
    in catalog order: one sort and one set of cumulative weights per anchor serve all its
    positives.

    Returns (c, Kp, n_neg) int64 training positions; where the suffix is shorter than
    n_neg it comes whole first, then filler that the caller masks out.
    """
    c, Kp = head.shape
    L = n - 1
    i = np.arange(1, Kp + 1)
    m = L - i                                          # suffix sizes
    R = c * Kp
    row_i = np.tile(i, c)                              # positive rank of each pair row
    row_a = np.repeat(np.arange(c), Kp)                # anchor (in chunk) of each pair row
    ar = np.arange(c)
    draws = np.zeros((R, n_neg), dtype=np.int64)

    # The f-th track outside the head (in catalog order), without listing them: with the
    # excluded positions sorted, e'_q = e_q - q, it is f + #{q : e'_q <= f}.
    E = np.sort(np.concatenate([head, apos[:, None]], axis=1), axis=1)   # (c, Kp+1)
    Ep = E - np.arange(Kp + 1)
    Eg = (Ep + (n + 1) * ar[:, None]).ravel()  # one sorted array for all rows (exact offsets)

    def outside(a: np.ndarray, f: np.ndarray) -> np.ndarray:
        return f + np.searchsorted(Eg, f + (n + 1) * a, side="right") - (Kp + 1) * a

    # Rows whose suffix is no longer than n_neg take it whole (nothing random).
    take_all = np.tile(m <= n_neg, c)
    if take_all.any():
        r = np.flatnonzero(take_all)
        ii = row_i[r][:, None]
        s = np.minimum(np.arange(n_neg)[None, :], L - ii - 1)
        f = np.maximum(s - (Kp - ii), 0)
        ja = np.broadcast_to(row_a[r][:, None], f.shape)
        draws[r] = np.where(s < Kp - ii, head[ja, np.minimum(ii + s, Kp - 1)], outside(ja, f))

    w_head = srows[ar[:, None], head].astype(np.float64)               # (c, Kp)
    cwh = np.cumsum(w_head, axis=1)
    Hm = cwh[:, -1:] - cwh                        # head mass of columns i .. Kp-1, (c, Kp)
    last_head = Kp - 1 - np.argmax(w_head[:, ::-1] > 0, axis=1)
    cum = srows.astype(np.float64)                # catalog order, excluded set to 0
    cum[ar[:, None], E] = 0.0
    np.cumsum(cum, axis=1, out=cum)
    W = cum[:, -1]
    # Guide table (Chen's method) for the inverse CDF: guide[j, g] is the first position
    # whose bucket floor(cum·n/W) is >= g; a target t starts there and scans forward
    # about one step on average — instead of a binary search with a cache miss per
    # step. Both sides use the same monotone float expression, so the start is never
    # past the answer.
    scale = np.where(W > 0, n / np.where(W > 0, W, 1.0), 0.0)
    bucket = (cum * scale[:, None]).astype(np.int64)
    np.minimum(bucket, n - 1, out=bucket)
    bucket += (n * ar)[:, None]
    guide = np.bincount(bucket.ravel(), minlength=c * n).reshape(c, n)
    del bucket
    guide = np.cumsum(guide, axis=1) - guide
    cum_flat = cum.ravel()
    last_out = (cum < W[:, None]).sum(axis=1)   # last positive-weight position (W reached)
    # positive-weight candidates of each pair: outside ones + head columns i .. Kp-1
    p_head = np.cumsum((w_head > 0)[:, ::-1], axis=1)[:, ::-1]       # columns j .. Kp-1
    p_head = np.concatenate([p_head[:, 1:], np.zeros((c, 1), dtype=p_head.dtype)], axis=1)
    p_out = (srows > 0).sum(axis=1) - (w_head > 0).sum(axis=1) - (srows[ar, apos] > 0)
    n_positive = (p_head + p_out[:, None]).ravel()
    # fewer positive-weight candidates than needed (all-zero included): keyed path
    keyed = (~take_all) & (n_positive < n_neg)

    def search_out(a: np.ndarray, t: np.ndarray) -> np.ndarray:
        """First outside position whose cumulative weight exceeds t (flat arrays)."""
        g = (t * scale[a]).astype(np.int64)
        np.minimum(g, n - 1, out=g)
        base = a * n
        x = guide.ravel()[base + g]
        todo = np.arange(t.size)
        for _ in range(8):
            xx = x[todo]
            step = (xx < n) & (cum_flat[base[todo] + np.minimum(xx, n - 1)] <= t[todo])
            todo = todo[step]
            if todo.size == 0:
                break
            x[todo] += 1
        if todo.size:  # long runs of tiny or zero weights: binary search, per anchor
            at = a[todo]
            for j in np.unique(at):
                q = todo[at == j]
                x[q] = np.searchsorted(cum[j], t[q], side="right")
        # a positive-weight, non-excluded track (zero weights never exceed t); past the
        # end only by rounding -> the last positive-weight position
        return np.where(x < n, x, last_out[a])

    def head_col(a: np.ndarray, ii: np.ndarray, uu: np.ndarray) -> np.ndarray:
        target = cwh[a, ii - 1] + uu
        vh = (cwh[a] <= target[:, None]).sum(axis=1)  # first column whose cum exceeds
        return head[a, np.minimum(vh, last_head[a])]

    def to_v(rows: np.ndarray, u: np.ndarray) -> np.ndarray:
        a, ii = row_a[rows], row_i[rows]
        hm = Hm[a, ii - 1]
        uu = u * (hm + W[a])                      # uniform on the suffix mass
        in_head = (uu < hm) | (W[a] == 0)
        out = np.empty(rows.size, dtype=np.int64)
        hs = np.flatnonzero(in_head)
        if hs.size:
            out[hs] = head_col(a[hs], ii[hs], uu[hs])
        os_ = np.flatnonzero(~in_head)
        if os_.size:
            out[os_] = search_out(a[os_], uu[os_] - hm[os_])
        return out

    def first_round(a_s: np.ndarray, U: np.ndarray) -> np.ndarray:
        hm = Hm[a_s][:, :, None]
        uu = U * (hm + W[a_s][:, None, None])
        in_head = uu < hm
        in_head |= (W[a_s] == 0)[:, None, None]
        t = uu - hm
        np.maximum(t, 0.0, out=t)
        Q = Kp * n_neg
        t = t.reshape(a_s.size, Q)
        x = np.empty((a_s.size, Q), dtype=np.int64)
        for q, j in enumerate(a_s):
            # one anchor at a time: its cumulative weights and guide table stay in cache
            tj, cj = t[q], cum[j]
            xj = guide[j][np.minimum((tj * scale[j]).astype(np.int64), n - 1)]
            for _ in range(8):
                step = (xj < n) & (cj[np.minimum(xj, n - 1)] <= tj)
                if not step.any():
                    break
                xj += step
            else:
                left = np.flatnonzero((xj < n) & (cj[np.minimum(xj, n - 1)] <= tj))
                xj[left] = np.searchsorted(cj, tj[left], side="right")
            x[q] = np.where(xj < n, xj, last_out[j])
        x = x.ravel()
        hq = np.flatnonzero(in_head)
        if hq.size:
            x[hq] = head_col(a_s[hq // Q], i[(hq % Q) // n_neg], uu.ravel()[hq])
        return x.reshape(U.shape)

    # First round: n_neg draws per pair.
    sample = ~take_all & ~keyed
    if sample.any():
        U = rngs.first((Kp, n_neg))
        whole = sample.reshape(c, Kp).all(axis=1)        # anchors with every row sampled
        a_s = np.flatnonzero(whole)
        if a_s.size:
            draws.reshape(c, Kp, n_neg)[a_s] = first_round(a_s, U[a_s] if a_s.size < c else U)
        part = np.flatnonzero(sample & ~np.repeat(whole, Kp))
        if part.size:
            draws[part] = to_v(np.repeat(part, n_neg), U.reshape(R, n_neg)[part].ravel()).reshape(-1, n_neg)
    sample = np.flatnonzero(sample)

    # Redraw duplicates: keeping the first n_neg distinct values of an i.i.d. stream is
    # exactly sampling without replacement (successive sampling). Slot 0 is never marked
    # (the earliest slot of a value is kept), so it is the first draw. A row missing d values
    # whose kept values already hold a share F of its candidates' mass needs about d/(1-F)
    # more draws: they are drawn in one go and the first d new distinct ones are kept (the
    # rest of the stream is simply not looked at), so a law concentrated on a few tracks
    # settles in a few rounds instead of dozens.
    active = sample
    for _ in range(max_rounds):
        redo, active = _duplicates(draws, active)
        if active.size == 0:
            break
        d = redo.sum(axis=1)
        kept = np.where(redo, -1, draws[active])
        ka = np.repeat(row_a[active], n_neg).reshape(kept.shape)
        kept_mass = np.where(kept >= 0, srows[ka, np.maximum(kept, 0)], 0.0).sum(axis=1)
        F = kept_mass / (Hm[row_a[active], row_i[active] - 1] + W[row_a[active]])
        # rows whose kept values hold little of the mass: just redraw the missing slots
        simple = F < 0.5
        if simple.any():
            rr, ss = np.nonzero(redo & simple[:, None])
            rows = active[rr]
            draws[rows, ss] = to_v(rows, rngs.per_anchor(np.bincount(row_a[rows], minlength=c)))
            if simple.all():
                continue
            active_s, kept, redo, d, F = active, kept[~simple], redo[~simple], d[~simple], F[~simple]
            active = active[~simple]
        else:
            active_s = active
        q = np.minimum(np.ceil(1.25 * d / np.maximum(1.0 - F, 1e-3)).astype(np.int64) + 2,
                       4 * n_neg + 16)
        rows = np.repeat(active, q)
        new = to_v(rows, rngs.per_anchor(np.bincount(row_a[rows], minlength=c)))
        starts = np.cumsum(q) - q
        # each row's stream as a padded matrix (-2 = no draw); rows grouped by the stream
        # length's power of two so that a few long streams do not widen every row
        group = np.ceil(np.log2(q)).astype(np.int64)
        for gval in np.unique(group):
            sel = np.flatnonzero(group == gval)
            qg = q[sel]
            qmax = int(qg.max())
            col = np.arange(qmax)[None, :]
            stream = np.where(col < qg[:, None], new[np.minimum(starts[sel][:, None] + col, new.size - 1)], -2)
            draws[active[sel]] = _take_new(kept[sel], stream, redo[sel], d[sel])
        active = active_s
    stuck = np.zeros(R, dtype=bool)
    if active.size:
        _, active = _duplicates(draws, active)
        stuck[active] = True

    # Keyed completion (Gumbel-top-k on log w, zero weights after positive ones): rows with
    # too few positive weights, and rows whose duplicates did not settle (a law concentrated
    # on a few tracks makes redraws hit the same ones again and again). Conditioned on the
    # distinct values already drawn, the rest of a successive sample is a successive sample
    # of the remaining candidates, so completing a row this way is exact.
    krows = np.flatnonzero(keyed | stuck)
    redo_all = np.zeros((R, n_neg), dtype=bool)
    if stuck.any():
        redo_st, rows_st = _duplicates(draws, np.flatnonzero(stuck))
        redo_all[rows_st] = redo_st
    _complete_rows(krows, draws, redo_all[krows], stuck[krows], row_a, row_i, head, apos, srows,
                   n, n_neg, rngs)
    return draws.reshape(c, Kp, n_neg)


def _complete_rows(rows: np.ndarray, draws: np.ndarray, redo: np.ndarray, stuck: np.ndarray,
                   row_a: np.ndarray, row_i: np.ndarray, head: np.ndarray, apos: np.ndarray,
                   srows: np.ndarray | None, n: int, n_neg: int, rngs: _BlockRNG) -> None:
    """Gumbel-top-k over the remaining candidates of some pair rows, vectorised (in place).

    ``redo`` (r, n_neg) and ``stuck`` (r,) are aligned with ``rows``. Rows go in parts of 128:
    each part holds (part, n) candidate and key matrices, so memory stays bounded however many
    rows are left.
    """
    for part in np.array_split(np.arange(rows.size), -(-rows.size // 128)) if rows.size else ():
        _complete_part(rows[part], draws, redo[part], stuck[part], row_a, row_i, head, apos,
                       srows, n, n_neg, rngs)


def _complete_part(rows: np.ndarray, draws: np.ndarray, redo: np.ndarray, stuck: np.ndarray,
                   row_a: np.ndarray, row_i: np.ndarray, head: np.ndarray, apos: np.ndarray,
                   srows: np.ndarray | None, n: int, n_neg: int, rngs: _BlockRNG) -> None:
    """One part of :func:`_complete_rows`."""
    nr = rows.size
    a, ii = row_a[rows], row_i[rows]
    lr = np.arange(nr)
    cand = np.ones((nr, n), dtype=bool)
    cand[lr, apos[a]] = False                                    # not the anchor
    before = np.arange(head.shape[1])[None, :] < ii[:, None]    # r_1 .. r_i: not after p
    rr, cc = np.nonzero(before)
    cand[rr, head[a[rr], cc]] = False
    rk, sk = np.nonzero(stuck[:, None] & ~redo)                  # values already drawn
    cand[rk, draws[rows[rk], sk]] = False
    need = np.where(stuck, redo.sum(axis=1), n_neg)
    u = rngs.per_anchor(np.bincount(a, minlength=head.shape[0]) * n).reshape(nr, n)
    key = -np.log(-np.log(np.clip(u, 1e-300, 1.0 - 2.0 ** -53)))  # standard Gumbel
    if srows is not None:
        w = srows[a].astype(np.float64)
        with np.errstate(divide="ignore"):
            key += np.where(w > 0, np.log(w) + _KEY_OFFSET, 0.0)
    key[~cand] = -np.inf
    kmax = int(need.max())
    top = np.argpartition(-key, kmax - 1, axis=1)[:, :kmax]
    top = np.take_along_axis(top, np.argsort(-np.take_along_axis(key, top, axis=1), axis=1, kind="stable"),
                             axis=1)
    first = np.arange(kmax)[None, :] < need[:, None]
    fill = np.where(stuck[:, None], redo, True)
    sub = draws[rows]
    sub[fill] = top[first]             # both row-major: the k-th slot to fill gets the k-th key
    draws[rows] = sub


def _take_new(kept: np.ndarray, stream: np.ndarray, redo: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Fill each row's redo slots with the first new distinct values of its stream.

    kept (r, w): the row's values, -1 in the slots to redo; stream (r, q): new draws in
    order (-1 rejected, -2 padding). Slots left without a value get -1 (redone later).
    """
    r, w = kept.shape
    comb = np.concatenate([kept, stream], axis=1)
    width = comb.shape[1]
    # sort (value, column): a value's first column comes first, kept columns before the stream
    key = np.sort((comb + 3) * width + np.arange(width), axis=1)
    vals, cols = np.divmod(key, width)
    first = np.ones_like(vals, dtype=bool)
    first[:, 1:] = vals[:, 1:] != vals[:, :-1]
    ok = np.zeros((r, width), dtype=bool)
    rr, kk = np.nonzero(first & (vals >= 3) & (cols >= w))     # new, valid, not seen before
    ok[rr, cols[rr, kk]] = True
    ok = ok[:, w:]
    ok &= np.cumsum(ok, axis=1) <= d[:, None]                  # the first d of them, in order
    got = ok.sum(axis=1)
    out = kept.copy()
    fill = redo & (np.cumsum(redo, axis=1) <= got[:, None])    # the first got[r] redo slots
    out[fill] = stream[ok]                                     # row-major on both sides
    return out


def _duplicates(draws: np.ndarray, active: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Slots to redraw in the active rows that have any (later occurrences of a value, and
    rejected draws marked -1), and those rows."""
    if active.size == 0:
        return np.zeros((0, draws.shape[1]), dtype=bool), active
    width = draws.shape[1]
    sub = draws[active]
    # sort value*width + slot: equal values end up adjacent in slot order (a plain integer
    # sort, several times faster than a stable argsort; int32 when it fits)
    dtype = np.int32 if (int(sub.max()) + 2) * width < 2 ** 31 else np.int64
    key = (sub.astype(dtype) + 1) * width + np.arange(width, dtype=dtype)
    key.sort(axis=1)
    vals = key // width
    dup_sorted = vals[:, 1:] == vals[:, :-1]
    redo = sub < 0
    redo[np.nonzero(dup_sorted)[0], key[:, 1:][dup_sorted] % width] = True
    has = redo.any(axis=1)
    return redo[has], active[has]


# --------------------------------------------------------------------------------------
# Public mining API
# --------------------------------------------------------------------------------------
def _check_jobs(n_jobs: int) -> int:
    n_jobs = _check_int("n_jobs", n_jobs, -1)
    if n_jobs == 0:
        raise ValueError("n_jobs must be >= 1, or -1 for every core")
    return (os.cpu_count() or 1) if n_jobs == -1 else n_jobs


def _prepare(ranked, train_idx, strategy, n_pos, n_neg, S, seed, chunk_size, max_rounds, n_jobs):
    if train_idx is None:
        raise ValueError("train_idx is required: mining happens on the training split only")
    strategy = canonical_strategy(strategy)
    if strategy in ONLINE_STRATEGIES:
        raise ValueError(f"{strategy!r} mines inside each batch during training: use "
                         "TrackBatchSampler and online_triplets(), not mine()")
    n_pos = _check_int("n_pos", n_pos, 1)
    n_neg = _check_int("n_neg", n_neg, 1)
    seed = _check_int("seed", seed, 0)
    chunk_size = _check_int("chunk_size", chunk_size, 1)
    max_rounds = _check_int("max_rounds", max_rounds, 0)
    n_jobs = _check_jobs(n_jobs)
    src = _Source(ranked, train_idx, S, need_S=strategy == "distance")
    return src, strategy, n_pos, n_neg, seed, chunk_size, max_rounds, n_jobs


def _empty_mapped(shape: tuple[int, ...], dtype) -> np.ndarray:
    """``np.empty`` whose pages are mapped up front where the OS can (Linux MAP_POPULATE).

    At paper scale the output weighs 0.64 GB; mapping it in one call is 2-3x cheaper than
    a page fault per 4 KiB page as the chunks first write it (0.28 s vs 0.76 s measured on
    the 2-core VM this suite is developed on), and it is an ordinary writable array.
    """
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    populate = getattr(mmap, "MAP_POPULATE", 0)
    if nbytes < 2 ** 26 or not populate:
        return np.empty(shape, dtype=dtype)
    buf = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | populate)
    return np.frombuffer(buf, dtype=dtype).reshape(shape)


def iter_mine(ranked: np.ndarray | None = None, train_idx: np.ndarray | None = None,
              strategy: str = "distance", n_pos: int = 15, n_neg: int = 250,
              S: np.ndarray | Callable[[np.ndarray], np.ndarray] | None = None, seed: int = 0,
              chunk_size: int = 256, progress: bool = True, max_rounds: int = 8,
              n_jobs: int = 1) -> Iterator[np.ndarray]:
    """Mine triplets chunk by chunk: the streaming form of :func:`mine`.

    Yields the same rows as :func:`mine`, in the same order, one chunk of anchors at a
    time, so that the 53.4 M × 3 paper-scale array need not be held (write each chunk to
    disk, count it, or feed it to a sampler). Pair it with a callable ``S`` so that the
    similarity matrix is not held either. The inputs are checked on the first ``next()``.

    Parameters
    ----------
    ranked, train_idx, strategy, n_pos, n_neg, S, seed, max_rounds, n_jobs
        As in :func:`mine`.
    chunk_size : int
        Anchors per chunk (memory per chunk is about ``chunk_size · n_train · 50`` bytes
        for the uniform and distance-based strategies). Does not change the result.
    progress : bool
        Show a tqdm bar over anchors.

    Yields
    ------
    numpy.ndarray, int32, shape (m_chunk, 3)
        Catalog indices (anchor, positive, negative); anchors in ascending catalog order.

    Notebook: 03_mining.ipynb
    """
    args = _prepare(ranked, train_idx, strategy, n_pos, n_neg, S, seed, chunk_size, max_rounds, n_jobs)
    src, strategy, n_pos, n_neg, seed, chunk_size, max_rounds, n_jobs = args
    yield from _chunk_stream(src, strategy, n_pos, n_neg, seed, chunk_size, max_rounds, n_jobs, progress)


def mine(ranked: np.ndarray | None = None, train_idx: np.ndarray | None = None,
         strategy: str = "distance", n_pos: int = 15, n_neg: int = 250,
         S: np.ndarray | Callable[[np.ndarray], np.ndarray] | None = None, seed: int = 0,
         chunk_size: int = 256, progress: bool = True, max_rounds: int = 8,
         n_jobs: int = 1) -> np.ndarray:
    """Mine training triplets from oracle ranked lists (Prétet et al. 2020, §3.2).

    For every training anchor ``t`` and each of its first ``Np`` tracks ``r_i(t)`` (the
    positives), ``Nn`` negatives are chosen among ``{r_j(t) : j > i}`` by the strategy:

    * ``"neighbors"``: ``r_{i+1} ... r_{i+Nn}``, clipped at the end of the list;
    * ``"uniform"``: uniformly, without replacement;
    * ``"distance"``: with ``P(n) ∝ S(t, n)``, without replacement (successive sampling:
      the first negative of each pair follows ``P(n) ∝ S(t, n)`` exactly); when fewer than
      ``Nn`` candidates have ``S > 0`` all of those are taken and the rest drawn uniformly
      among the zero-weight ones.

    Ranked lists are restricted to the training split: ``R(t)`` lists the other training
    tracks only, by decreasing ``S(t, .)``, ties broken by catalog index.

    Parameters
    ----------
    ranked : numpy.ndarray of int, shape (N, N-1), optional
        Full-catalog ranked lists (``mrlib.similarity.ranked_lists(S)``): row ``t`` lists
        the catalog indices of the other tracks by decreasing similarity. If omitted, the
        head of each list is computed from ``S`` inside each chunk (cheaper: at paper scale
        the lists alone weigh 0.8 GB).
    train_idx : array-like of int, shape (n_train,)
        Catalog indices of the training tracks (the only anchors, positives, negatives).
    strategy : str
        ``"neighbors"``, ``"uniform"`` or ``"distance"`` (aliases: see
        :func:`canonical_strategy`).
    n_pos : int, default 15
        ``Np``, positives per anchor (the paper's 15).
    n_neg : int, default 250
        ``Nn``, negatives per (anchor, positive) pair (the paper's 250).
    S : numpy.ndarray (N, N), torch.Tensor or callable, optional
        Oracle similarity, values >= 0 (``mrlib.similarity.oracle``), or a function
        ``S(rows) -> (len(rows), N)`` giving the rows of the given catalog indices so that
        the matrix is never held whole (it must be thread-safe when ``n_jobs > 1``).
        Required for ``"distance"`` and when ``ranked`` is omitted.
    seed : int
        Seed; each anchor draws from its own generator seeded by ``(seed, strategy,
        anchor)``, so the result is the same whatever ``chunk_size`` and ``n_jobs``.
    chunk_size : int, default 256
        Anchors processed together (vectorised); see :func:`iter_mine`.
    progress : bool, default True
        Show a tqdm progress bar.
    max_rounds : int, default 8
        Duplicate-redraw rounds before the unsettled rows are completed by Gumbel-top-k
        over their remaining candidates (either way the draws are exact).
    n_jobs : int, default 1
        Threads working on chunks at once (-1: every core).

    Returns
    -------
    numpy.ndarray, int32, shape (M, 3)
        Catalog indices ``(anchor, positive, negative)``, grouped by anchor (ascending),
        then positive rank, then draw order; ``M = n_triplets(n_train, Np, Nn)``.

    Raises
    ------
    ValueError, TypeError
        On malformed inputs, an online strategy, or ``"distance"`` without ``S``.

    Examples
    --------
    >>> S = np.random.default_rng(0).random((50, 50))
    >>> T = mine(None, np.arange(0, 50, 2), "uniform", n_pos=3, n_neg=5, S=S, progress=False)
    >>> T.shape, T.dtype
    ((375, 3), dtype('int32'))

    Notebook: 03_mining.ipynb
    """
    args = _prepare(ranked, train_idx, strategy, n_pos, n_neg, S, seed, chunk_size, max_rounds, n_jobs)
    src, strategy, n_pos, n_neg, seed, chunk_size, max_rounds, n_jobs = args
    # every chunk writes its rows straight into the final array: no concatenation, no 2x peak
    out = _empty_mapped((n_triplets(src.n, n_pos, n_neg), 3), np.int32)
    for _ in _chunk_stream(src, strategy, n_pos, n_neg, seed, chunk_size, max_rounds, n_jobs,
                           progress, out=out):
        pass
    return out


# --------------------------------------------------------------------------------------
# Checking mined triplets
# --------------------------------------------------------------------------------------
def triplet_ranks(triplets: np.ndarray, train_idx: np.ndarray, S: np.ndarray | None = None,
                  ranked: np.ndarray | None = None, chunk_size: int = 256) -> np.ndarray:
    """Ranks of each triplet's positive and negative in the anchor's train-restricted list.

    The rank of ``x`` in ``R(t)`` (restricted to the training split, ties by catalog
    index) is 1 for the most similar other training track, ``n_train - 1`` for the least.

    Parameters
    ----------
    triplets : array-like of int, shape (M, 3)
        Catalog indices (anchor, positive, negative).
    train_idx : array-like of int, shape (n_train,)
        The training split used for mining.
    S : numpy.ndarray (N, N), optional
        Similarity (one of ``S`` and ``ranked`` is needed; ``ranked`` wins if both).
    ranked : numpy.ndarray of int, shape (N, N-1), optional
        Full-catalog ranked lists.
    chunk_size : int
        Anchors whose full ranks are computed together (memory ``chunk_size · n_train``).

    Returns
    -------
    numpy.ndarray, int64, shape (M, 2)
        ``(rank of p, rank of n)``; ``-1`` where the track is not a training track other
        than the anchor (an invalid triplet). Anchors outside ``train_idx`` raise.

    Notebook: 03_mining.ipynb
    """
    T = np.asarray(triplets)
    if T.ndim != 2 or T.shape[1] != 3:
        raise ValueError(f"triplets must have shape (M, 3), got {T.shape}")
    src = _Source(ranked, train_idx, S, need_S=False)
    chunk_size = _check_int("chunk_size", chunk_size, 1)
    out = np.full((T.shape[0], 2), -1, dtype=np.int64)
    if T.shape[0] == 0:
        return out
    if T.min() < 0 or T.max() >= src.N:
        raise ValueError(f"triplets hold indices outside 0..{src.N - 1}")
    a_pos = src.pos_of[T[:, 0]]
    if (a_pos < 0).any():
        raise ValueError(f"anchor {int(T[np.argmax(a_pos < 0), 0])} is not a training track")
    order = np.argsort(a_pos, kind="stable")
    bounds = np.searchsorted(a_pos[order], np.arange(0, src.n + chunk_size, chunk_size))
    for b in range(len(bounds) - 1):
        rows = order[bounds[b]:bounds[b + 1]]
        if rows.size == 0:
            continue
        lo = b * chunk_size
        apos = np.arange(lo, min(lo + chunk_size, src.n))
        full = src.head(apos, src.L, src.s_rows(apos) if src.ranked is None else None)
        rank = np.zeros((apos.size, src.n), dtype=np.int64)       # 0 marks the anchor itself
        rank[np.arange(apos.size)[:, None], full] = np.arange(1, src.L + 1)
        local = a_pos[rows] - lo
        for col in (1, 2):
            tp = src.pos_of[T[rows, col]]
            r = np.where(tp >= 0, rank[local, np.maximum(tp, 0)], 0)
            out[rows, col - 1] = np.where(r > 0, r, -1)
    return out


def check_triplets(triplets: np.ndarray, train_idx: np.ndarray, n_pos: int = 15,
                   S: np.ndarray | None = None, ranked: np.ndarray | None = None,
                   raise_on_error: bool = True) -> dict[str, bool]:
    """Check that mined triplets are valid: the bars every strategy must meet.

    Checks: ``int32`` ``(M, 3)``; anchors, positives and negatives are training tracks
    (no validation/test track anywhere); no anchor is its own positive or negative; each
    positive is among the anchor's first ``Np``; each negative is ranked after its
    positive; no triplet appears twice (sampling is without replacement).

    Parameters
    ----------
    triplets : numpy.ndarray, shape (M, 3)
    train_idx : array-like of int
    n_pos : int
        ``Np`` used for mining.
    S, ranked
        The oracle, as in :func:`triplet_ranks`.
    raise_on_error : bool
        Raise ``ValueError`` naming the failed checks (default) instead of only reporting.

    Returns
    -------
    dict of str to bool
        One entry per check.

    Notebook: 03_mining.ipynb
    """
    T = np.asarray(triplets)
    train = np.unique(np.asarray(train_idx))
    checks = {"int32 (M, 3)": T.dtype == np.int32 and T.ndim == 2 and T.shape[1] == 3}
    if not checks["int32 (M, 3)"]:
        if raise_on_error:
            raise ValueError(f"triplets must be int32 (M, 3), got {T.dtype} {T.shape}")
        return checks
    checks["all training tracks"] = bool(np.isin(T, train).all())
    checks["no self"] = bool(((T[:, 0] != T[:, 1]) & (T[:, 0] != T[:, 2])).all())
    if checks["all training tracks"]:
        ranks = triplet_ranks(T, train, S=S, ranked=ranked)
        checks["positive in first Np"] = bool(((ranks[:, 0] >= 1) & (ranks[:, 0] <= n_pos)).all())
        checks["negative after positive"] = bool((ranks[:, 1] > ranks[:, 0]).all())
    key = (T[:, 0].astype(np.int64) * (T.max() + 1) + T[:, 1]) * (T.max() + 1) + T[:, 2]
    checks["no duplicate triplet"] = bool(np.unique(key).size == key.size)
    failed = [k for k, ok in checks.items() if not ok]
    if failed and raise_on_error:
        raise ValueError(f"invalid triplets: failed {failed}")
    return checks


# --------------------------------------------------------------------------------------
# Samplers
# --------------------------------------------------------------------------------------
def _fingerprint(a: np.ndarray) -> int:
    """Cheap identity of a large index array (size + 64 spread-out rows)."""
    picks = np.linspace(0, a.shape[0] - 1, num=min(64, a.shape[0])).astype(np.int64)
    return zlib.crc32(np.ascontiguousarray(a[picks]).tobytes() + str(a.shape).encode())


class _EpochSampler:
    """Shared machinery: seeded epochs, a position inside the epoch, DDP rank shares.

    Epoch ``e``'s batch order is a function of ``(seed, e)`` only; every rank computes the
    same global order and keeps its own contiguous slice, all slices of equal length (the
    few batches that do not divide evenly are left out of that epoch), so ranks stay in
    lockstep and never see the same batch.
    """

    def __init__(self, seed: int, rank: int, world_size: int):
        self.seed = _check_int("seed", seed, 0)
        self.world_size = _check_int("world_size", world_size, 1)
        self.rank = _check_int("rank", rank, 0)
        if self.rank >= self.world_size:
            raise ValueError(f"rank must be < world_size ({self.world_size}), got {rank}")
        self.epoch = 0
        self.position = 0           # batches of this epoch already handed out (per rank)
        self._plan_epoch: int | None = None

    # subclasses: _n_global() -> batches per epoch over all ranks; _make_plan(rng) ->
    # object; _batch(plan, b) -> batch number b (global) of the epoch
    def _n_global(self) -> int:
        raise NotImplementedError

    def __len__(self) -> int:
        """Batches per epoch for this rank."""
        return self._n_global() // self.world_size

    def _epoch_rng(self) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch])

    def _plan(self):
        if self._plan_epoch != self.epoch:
            self._cached = self._make_plan(self._epoch_rng())
            self._plan_epoch = self.epoch
        return self._cached

    def set_epoch(self, epoch: int) -> None:
        """Move to ``epoch`` (from its start, unless it is already the current epoch).

        Like ``DistributedSampler.set_epoch``: a trainer may call it at the top of every
        epoch; after :meth:`load_state_dict` the restored mid-epoch position is kept.

        Notebook: 03_mining.ipynb
        """
        epoch = _check_int("epoch", epoch, 0)
        if epoch != self.epoch:
            self.epoch, self.position = epoch, 0

    def __iter__(self):
        plan = self._plan()
        n = len(self)
        offset = self.rank * n
        while self.position < n:
            b = offset + self.position
            # count the batch as handed out before yielding it: a state_dict() taken while
            # the trainer works on it resumes at the next one
            self.position += 1
            yield self._batch(plan, b)
        self.epoch += 1
        self.position = 0

    def _config(self) -> dict[str, Any]:
        raise NotImplementedError

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
        if state.get("sampler") != type(self).__name__:
            raise ValueError(f"state is for {state.get('sampler')!r}, not {type(self).__name__}")
        mine_ = {"world_size": self.world_size, **self._config()}
        diff = {k: (state.get(k), v) for k, v in mine_.items() if state.get(k) != v}
        if diff:
            raise ValueError(f"state does not match this sampler (saved, current): {diff}")
        self.seed = _check_int("seed", state["seed"], 0)
        self.epoch = _check_int("epoch", state["epoch"], 0)
        position = _check_int("position", state["position"], 0)
        if position > len(self):
            raise ValueError(f"position {position} is past the epoch's {len(self)} batches")
        self.position = position
        self._plan_epoch = None


class ShuffledTripletSampler(_EpochSampler):
    """Plain shuffled mini-batches of mined triplets.

    Each epoch is a fresh permutation of the ``M`` rows (seeded by ``(seed, epoch)``) cut
    into batches of ``batch_size`` triplets; with ``world_size > 1`` each rank takes an
    equal, disjoint share of the permutation.

    Parameters
    ----------
    triplets : numpy.ndarray of int, shape (M, 3)
        Output of :func:`mine`.
    batch_size : int, default 42
        Triplets per batch (the paper's batch holds 42 triplets of patches).
    seed : int
    rank, world_size : int
        DDP rank and number of ranks (``torch.distributed.get_rank()``/``get_world_size()``).
    drop_last : bool
        Drop the last incomplete batch of each rank's share.
    yield_rows : bool
        Yield the row indices into ``triplets`` (``int64 (B,)``, e.g. for a DataLoader's
        ``batch_sampler``) instead of the triplets (``int64 (B, 3)``).

    Notebook: 03_mining.ipynb
    """

    def __init__(self, triplets: np.ndarray, batch_size: int = 42, seed: int = 0, rank: int = 0,
                 world_size: int = 1, drop_last: bool = False, yield_rows: bool = False):
        super().__init__(seed, rank, world_size)
        T = np.asarray(triplets)
        if T.ndim != 2 or T.shape[1] != 3 or T.shape[0] == 0 or not np.issubdtype(T.dtype, np.integer):
            raise ValueError(f"triplets must be a non-empty integer (M, 3) array, got {T.dtype} {T.shape}")
        self.triplets = T
        self.batch_size = _check_int("batch_size", batch_size, 1)
        self.drop_last = bool(drop_last)
        self.yield_rows = bool(yield_rows)
        self._per_rank = T.shape[0] // self.world_size
        if self._per_rank == 0:
            raise ValueError(f"{T.shape[0]} triplets cannot be shared by {self.world_size} ranks")

    def __len__(self) -> int:
        whole, part = divmod(self._per_rank, self.batch_size)
        return whole + (0 if self.drop_last or part == 0 else 1)

    def _make_plan(self, rng):
        # in-place shuffle of an int32 range: half the memory of rng.permutation (int64)
        dtype = np.int32 if self.triplets.shape[0] < 2 ** 31 else np.int64
        perm = np.arange(self.triplets.shape[0], dtype=dtype)
        rng.shuffle(perm)
        return perm[self.rank * self._per_rank:(self.rank + 1) * self._per_rank]

    def __iter__(self):
        plan = self._plan()
        while self.position < len(self):
            s = self.position * self.batch_size
            self.position += 1
            rows = plan[s:s + self.batch_size].astype(np.int64)
            yield rows if self.yield_rows else self.triplets[rows].astype(np.int64)
        self.epoch += 1
        self.position = 0

    def _config(self) -> dict[str, Any]:
        return {"n_triplets": int(self.triplets.shape[0]), "batch_size": self.batch_size,
                "drop_last": self.drop_last, "fingerprint": _fingerprint(self.triplets)}


class PaperBatchSampler(_EpochSampler):
    """The paper's batches: one anchor track, one positive track, 42 negative tracks.

    The mined triplets of each (anchor, positive) pair (``Nn`` = 250 rows) are shuffled
    and cut into batches of ``n_neg_per_batch`` negatives (250 = 5 × 42 + 40: six batches,
    the last of 40 unless ``drop_last``); the batches of all pairs are shuffled together.
    Each epoch reshuffles both (seeded by ``(seed, epoch)``). The trainer then draws one
    random patch per row (``mrlib.features.random_patches``), giving 42 triplets of patches
    that share the anchor and positive *tracks* (Prétet et al. 2020, §4.3).

    Parameters
    ----------
    triplets : numpy.ndarray of int, shape (M, 3)
        Output of :func:`mine` (rows of a pair need not be contiguous).
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

    def __init__(self, triplets: np.ndarray, n_neg_per_batch: int = 42, seed: int = 0,
                 rank: int = 0, world_size: int = 1, drop_last: bool = False,
                 yield_rows: bool = False):
        super().__init__(seed, rank, world_size)
        T = np.asarray(triplets)
        if T.ndim != 2 or T.shape[1] != 3 or T.shape[0] == 0 or not np.issubdtype(T.dtype, np.integer):
            raise ValueError(f"triplets must be a non-empty integer (M, 3) array, got {T.dtype} {T.shape}")
        self.triplets = T
        self.batch_size = _check_int("n_neg_per_batch", n_neg_per_batch, 1)
        self.drop_last = bool(drop_last)
        self.yield_rows = bool(yield_rows)
        # Group the rows by (anchor, positive). mine() writes each pair contiguously; only
        # if the rows were reordered is a (stable) sort needed.
        key = T[:, 0].astype(np.int64) * (int(T[:, 1].max()) + 1) + T[:, 1]
        starts = np.r_[0, np.flatnonzero(key[1:] != key[:-1]) + 1]
        if np.unique(key[starts]).size != starts.size:
            self._rows = np.argsort(key, kind="stable")
            key = key[self._rows]
            starts = np.r_[0, np.flatnonzero(key[1:] != key[:-1]) + 1]
        else:
            self._rows = None
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

    def _n_global(self) -> int:
        return int(self._b_group.size)

    def _make_plan(self, rng):
        return rng.permutation(self._b_group.size)

    def _batch(self, plan, b):
        g = self._b_group[plan[b]]
        q = self._b_chunk[plan[b]]
        # the pair's own shuffle for this epoch, derived on demand (no M-sized state)
        within = np.random.default_rng([self.seed, self.epoch, int(g)]).permutation(self._g_size[g])
        rows = self._g_start[g] + within[q * self.batch_size:(q + 1) * self.batch_size]
        if self._rows is not None:
            rows = self._rows[rows]
        rows = rows.astype(np.int64)
        return rows if self.yield_rows else self.triplets[rows].astype(np.int64)

    def _config(self) -> dict[str, Any]:
        return {"n_triplets": int(self.triplets.shape[0]), "n_neg_per_batch": self.batch_size,
                "drop_last": self.drop_last, "fingerprint": _fingerprint(self.triplets)}


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
        idx = np.asarray(track_idx)
        if idx.ndim != 1 or idx.size == 0 or not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(f"track_idx must be a non-empty 1-D integer array, got {idx.dtype} {idx.shape}")
        super().__init__(np.repeat(idx[:, None], 3, axis=1), batch_size, seed, rank, world_size,
                         drop_last, yield_rows=False)
        self.track_idx = idx
        if len(self) == 0:
            raise ValueError(f"{idx.size} tracks make no full batch of {batch_size} per rank")

    def __iter__(self):
        for batch in super().__iter__():
            yield batch[:, 0]


# --------------------------------------------------------------------------------------
# Online mining (beyond the paper)
# --------------------------------------------------------------------------------------
def rank_matrix(ranked: np.ndarray) -> np.ndarray:
    """Invert ranked lists: ``rank[t, x]`` is the position (1-based) of ``x`` in ``R(t)``.

    Parameters
    ----------
    ranked : numpy.ndarray of int, shape (N, N-1)

    Returns
    -------
    numpy.ndarray, int32, shape (N, N)
        With 0 on the diagonal. ``rank[np.ix_(b, b)]`` is the ``oracle`` of
        :func:`online_triplets` with ``oracle_kind="ranks"``.

    Notebook: 03_mining.ipynb
    """
    ranked = np.asarray(ranked)
    if ranked.ndim != 2 or ranked.shape[1] != ranked.shape[0] - 1:
        raise ValueError(f"ranked must have shape (N, N-1), got {ranked.shape}")
    N = ranked.shape[0]
    rank = np.zeros((N, N), dtype=np.int32)
    rank[np.arange(N)[:, None], ranked] = np.arange(1, N, dtype=np.int32)[None, :]
    return rank


def batch_ranks(S_batch: torch.Tensor, batch_idx: torch.Tensor) -> torch.Tensor:
    """Ranks inside a batch: position (1-based) of ``y`` in ``x``'s list restricted to the batch.

    Ordered by decreasing similarity, ties by catalog index — the same rule as the full
    ranked lists, so the restriction keeps their order.

    Parameters
    ----------
    S_batch : torch.Tensor, float, shape (B, B)
        ``S[batch][:, batch]``.
    batch_idx : torch.Tensor, int, shape (B,)
        Catalog indices of the batch (distinct).

    Returns
    -------
    torch.Tensor, int64, shape (B, B)
        0 on the diagonal, 1 ... B-1 elsewhere; on ``S_batch``'s device.

    Notebook: 03_mining.ipynb
    """
    S_batch = torch.as_tensor(S_batch)
    if S_batch.ndim != 2 or S_batch.shape[0] != S_batch.shape[1]:
        raise ValueError(f"S_batch must be (B, B), got {tuple(S_batch.shape)}")
    B = S_batch.shape[0]
    dev = S_batch.device
    batch_idx = torch.as_tensor(batch_idx, device=dev)
    if batch_idx.shape != (B,):
        raise ValueError(f"batch_idx must have shape ({B},), got {tuple(batch_idx.shape)}")
    # sort columns by catalog index first, so a stable sort on -S breaks ties by index;
    # float32 at least, never float64 (MPS has none)
    by_idx = torch.argsort(batch_idx, stable=True)
    key = -S_batch[:, by_idx].to(torch.promote_types(S_batch.dtype, torch.float32))
    key[torch.arange(B, device=dev), torch.argsort(by_idx)] = float("inf")  # self goes last
    order = by_idx[torch.sort(key, dim=1, stable=True).indices]
    ranks = torch.empty((B, B), dtype=torch.int64, device=dev)
    ranks.scatter_(1, order, torch.arange(1, B + 1, device=dev).expand(B, B))
    ranks.fill_diagonal_(0)
    return ranks


def online_triplets(embeddings: torch.Tensor, oracle: torch.Tensor | np.ndarray,
                    batch_idx: torch.Tensor | np.ndarray | None = None, mode: str = "semihard",
                    margin: float = 0.5, n_pos: int = 15, oracle_kind: str = "similarity",
                    positives: str = "batch", fallback: bool = True,
                    return_info: bool = False):
    """Mine triplets inside a batch of tracks: the oracle decides validity, embeddings hardness.

    A triplet ``(a, p, n)`` of batch positions is *valid* when ``p`` is among ``a``'s first
    ``Np`` (in ``a``'s ranked list restricted to the batch — ``positives="batch"`` — or in
    the full-catalog list — ``positives="catalog"``, which needs ``oracle_kind="ranks"``)
    and ``n`` is ranked after ``p``. With the squared Euclidean distances
    ``d(x, y) = ||f(x) - f(y)||²`` of the current embeddings (as in the triplet loss):

    * ``"hard"``: ``d(a, n) < d(a, p)`` (the negative is closer than the positive);
    * ``"semihard"``: ``d(a, p) < d(a, n) < d(a, p) + margin`` (ordered but within the margin);
    * ``"all"``: every valid triplet.

    If no valid triplet is hard/semi-hard, all valid ones are returned (``fallback``).
    Selection is done without gradient; compute the loss on ``embeddings[t[:, 0]]`` etc.
    Memory is ``O(B³)`` booleans (B = 128: 2 MB).

    Parameters
    ----------
    embeddings : torch.Tensor, float, shape (B, d)
        Current embeddings of the batch's tracks (any device).
    oracle : torch.Tensor or numpy.ndarray, shape (B, B)
        ``oracle_kind="similarity"``: ``S[batch][:, batch]``; ``"ranks"``: the catalog
        ranks ``rank_matrix(ranked)[batch][:, batch]`` (lower is more similar).
    batch_idx : torch.Tensor or numpy.ndarray of int, shape (B,), optional
        Catalog indices of the batch (breaks similarity ties as the ranked lists do);
        defaults to ``0 ... B-1``.
    mode : str
        ``"hard"``, ``"semihard"`` or ``"all"`` (``"online-hard"``, ``"online-semihard"``
        accepted).
    margin : float
        The triplet-loss margin α (0.5 in the paper).
    n_pos : int
        ``Np``.
    oracle_kind : {"similarity", "ranks"}
    positives : {"batch", "catalog"}
    fallback : bool
        Return all valid triplets when none is hard/semi-hard (else an empty (0, 3)).
    return_info : bool
        Also return a dict: ``n_valid``, ``n_selected``, ``fell_back``.

    Returns
    -------
    torch.Tensor, int64, shape (K, 3)
        Batch positions ``(a, p, n)`` on ``embeddings.device``, sorted lexicographically.

    Notebook: 03_mining.ipynb
    """
    if not isinstance(embeddings, torch.Tensor) or not embeddings.is_floating_point() or embeddings.ndim != 2:
        raise TypeError("embeddings must be a floating-point torch.Tensor of shape (B, d)")
    B, dev = embeddings.shape[0], embeddings.device
    mode_key = mode.lower().replace("online-", "").replace("online_", "").replace("-", "")
    if mode_key not in ("hard", "semihard", "all"):
        raise ValueError(f"mode must be 'hard', 'semihard' or 'all' (or 'online-…'), got {mode!r}")
    if oracle_kind not in ("similarity", "ranks"):
        raise ValueError(f"oracle_kind must be 'similarity' or 'ranks', got {oracle_kind!r}")
    if positives not in ("batch", "catalog"):
        raise ValueError(f"positives must be 'batch' or 'catalog', got {positives!r}")
    if positives == "catalog" and oracle_kind != "ranks":
        raise ValueError("positives='catalog' needs the catalog ranks (oracle_kind='ranks')")
    n_pos = _check_int("n_pos", n_pos, 1)
    if not isinstance(margin, numbers.Real) or margin < 0:
        raise ValueError(f"margin must be a non-negative number, got {margin!r}")
    oracle = torch.as_tensor(oracle)
    if oracle.is_floating_point() and dev.type == "mps":
        oracle = oracle.float()                 # MPS has no float64
    oracle = oracle.to(dev)
    if oracle.shape != (B, B):
        raise ValueError(f"oracle must be (B, B) = {(B, B)}, got {tuple(oracle.shape)}")
    if batch_idx is None:
        batch_idx = torch.arange(B, device=dev)
    batch_idx = torch.as_tensor(batch_idx, device=dev).long()
    if batch_idx.shape != (B,) or torch.unique(batch_idx).numel() != B:
        raise ValueError(f"batch_idx must hold B = {B} distinct catalog indices")

    with torch.no_grad():
        if oracle_kind == "similarity":
            order_rank = batch_ranks(oracle, batch_idx)
            pos_rank = order_rank
        else:
            r = oracle.long().clone()
            r.fill_diagonal_(torch.iinfo(torch.int64).max)   # the anchor itself goes last
            # position of each track in the batch-restricted list (catalog ranks are distinct)
            order_rank = torch.empty((B, B), dtype=torch.int64, device=dev)
            order_rank.scatter_(1, torch.argsort(r, dim=1, stable=True),
                                torch.arange(1, B + 1, device=dev).expand(B, B))
            order_rank.fill_diagonal_(0)
            pos_rank = oracle.long() if positives == "catalog" else order_rank
        eye = torch.eye(B, dtype=torch.bool, device=dev)
        is_pos = (pos_rank >= 1) & (pos_rank <= n_pos) & ~eye                         # (a, p)
        later = order_rank[:, None, :] > order_rank[:, :, None]                        # (a, p, n)
        valid = is_pos[:, :, None] & later & ~eye[:, None, :]
        x = embeddings.detach().to(torch.float32)
        sq = (x * x).sum(1)
        d = (sq[:, None] + sq[None, :] - 2.0 * x @ x.T).clamp_min(0)                 # (B, B)
        d_ap, d_an = d[:, :, None], d[:, None, :]
        if mode_key == "hard":
            chosen = valid & (d_an < d_ap)
        elif mode_key == "semihard":
            chosen = valid & (d_an > d_ap) & (d_an < d_ap + margin)
        else:
            chosen = valid
        n_valid = int(valid.sum())
        fell_back = bool(fallback and mode_key != "all" and not chosen.any())
        if fell_back:
            chosen = valid
        idx = chosen.nonzero()
    if return_info:
        return idx, {"n_valid": n_valid, "n_selected": int(idx.shape[0]), "fell_back": fell_back}
    return idx
