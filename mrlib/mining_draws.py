"""The fast random drawers: uniform and distance-based negatives of a chunk of anchors.

Both draw, for each (anchor, positive ``i``), ``Nn`` distinct negatives from
``{r_j : j > i}`` without replacement, and return ``(c, Kp, Nn)`` training positions (where
a suffix is shorter than ``Nn`` it comes whole first, then filler the caller masks out).

How they stay fast at paper scale (N = 14,246, 53.4 M triplets) without a pass over the
whole list for each of the 213,690 (anchor, positive) pairs: each anchor's candidates
``[r_1 ... r_Np, the others in catalog order]`` and their cumulative weights are computed
once and shared by its ``Np`` positives, whose candidate sets are suffixes of that order;
only the ``Nn`` needed draws are made (inverse CDF on the suffix through a guide table; a
uniform draw is one index into a per-anchor table of its candidates, rejecting the anchor
and the head), and duplicates are redrawn — keeping the first ``Nn`` distinct values of an
i.i.d. stream is exactly sampling without replacement. Rows whose law is concentrated draw
``d / (1 - F)`` values at once (``F``: mass already drawn), and the few rows still
unsettled after ``max_rounds`` are completed by Gumbel-top-k over their remaining
candidates (exact too).

Notebook: 03_mining.ipynb
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

# Gumbel keys of positive-weight candidates get this offset so that they always rank
# before zero-weight ones (log w >= -745 in float64, |Gumbel| < 40 at double precision).
_KEY_OFFSET = 2000.0


# Anchors share a random stream in blocks of this many training positions; chunks are
# aligned to blocks, so the draws do not depend on chunk_size or n_jobs.
_RNG_BLOCK = 16


class _BlockRNG:
    """The random streams of a chunk's anchors: one generator per block of anchors, seeded
    by ``(seed, strategy code, block)`` (creating one generator per anchor costs more than the
    draws of the uniform strategy)."""

    def __init__(self, seed: int, code: int, apos: np.ndarray):
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
# Random uniform
# --------------------------------------------------------------------------------------
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
    i = np.arange(1, Kp + 1)
    out = np.empty((c, Kp, n_neg), dtype=np.int32)
    # The last positives may have a suffix no longer than n_neg: they take it whole.
    Ks = int(np.count_nonzero(n - 1 - i > n_neg))      # the first Ks positives are sampled
    if Ks < Kp:
        out[:, Ks:] = _whole_suffix(head, apos, n, n_neg, Ks)
    if Ks == 0:
        return out
    tbl = _uniform_table(head, apos, n)
    h = Kp - i                                         # head columns in each suffix
    vals = _uniform_first_round(tbl.ravel(), n + h[:Ks], rngs, c, n_neg)
    rows, slots, base = _uniform_rejects(vals, n)
    rows, slots = _uniform_redraws(vals, rows, slots, base, tbl, n + h, rngs, max_rounds)
    if rows.size:                                      # Gumbel-top-k completion
        stuck_rows = np.unique(rows)
        row_a, row_i = np.repeat(np.arange(c), Ks), np.tile(i[:Ks], c)
        _complete_rows(stuck_rows, vals, vals[stuck_rows] < 0, np.ones(stuck_rows.size, dtype=bool),
                       row_a, row_i, head, apos, None, n, n_neg, rngs)
    out[:, :Ks] = vals.reshape(c, Ks, n_neg)
    return out


def _uniform_table(head: np.ndarray, apos: np.ndarray, n: int) -> np.ndarray:
    """(c, n + Kp) int32: positions in catalog order (anchor and head -1), then the head reversed."""
    c, Kp = head.shape
    ar = np.arange(c)
    tbl = np.empty((c, n + Kp), dtype=np.int32)
    tbl[:, :n] = np.arange(n, dtype=np.int32)
    tbl[ar[:, None], head] = -1
    tbl[ar, apos] = -1
    tbl[:, n:] = head[:, ::-1]
    return tbl


def _uniform_first_round(flat_tbl: np.ndarray, lim: np.ndarray, rngs: _BlockRNG, c: int,
                         n_neg: int) -> np.ndarray:
    """(c * Ks, n_neg) first draws: n_neg indices per row over the widest prefix, one gather.

    ``lim[i - 1]`` is the prefix of the table holding positive i's candidates; indices past
    it are rejected (-1).
    """
    Ks = lim.size
    width = flat_tbl.size // c
    hi = int(lim[0])
    lim = lim[:, None]
    vals = np.empty((c, Ks, n_neg), dtype=np.int32)
    for s0, s1, g in rngs.blocks():                    # block by block: all of it stays in cache
        K = g.random((s1 - s0, Ks, n_neg))
        K *= hi
        K = K.astype(np.intp)                          # floor (u >= 0)
        past = K >= lim          # beyond positive i's candidates; K == hi (u * hi rounding up)
        K += (np.arange(s0, s1) * width)[:, None, None]   # is caught too, inside the table row
        v = flat_tbl.take(K)
        v[past] = -1
        vals[s0:s1] = v
    return vals.reshape(c * Ks, n_neg)


def _uniform_rejects(vals: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mark rejections and later copies of a value -1 (in place), from one sort of
    (value + 1, slot) keys.

    Returns the (row, slot) pairs to redraw and each row's values + 1, sorted, offset by
    ``row · (n + 1)``: one sorted array to look the redraws up in.
    """
    R, n_neg = vals.shape
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
    stride = n + 1
    base_t = np.int32 if R * stride < 2 ** 31 else np.int64
    base = (v.astype(base_t, copy=False) + (np.arange(R, dtype=base_t) * stride)[:, None]).ravel()
    return rows, slots, base


def _uniform_redraws(vals: np.ndarray, rows: np.ndarray, slots: np.ndarray, base: np.ndarray,
                     tbl: np.ndarray, lim_all: np.ndarray, rngs: _BlockRNG,
                     max_rounds: int) -> tuple[np.ndarray, np.ndarray]:
    """Redraw the (row, slot) pairs until each row holds distinct values (in place), at
    most ``max_rounds`` rounds; returns the pairs still to fill."""
    c, width = tbl.shape
    n = lim_all[-1]
    Ks = vals.shape[0] // c
    flat_tbl, stride = tbl.ravel(), n + 1
    for rnd in range(max_rounds):
        if rows.size == 0:
            break
        a = rows // Ks
        lim = lim_all[rows % Ks]
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
    return rows, slots


# --------------------------------------------------------------------------------------
# Distance-based
# --------------------------------------------------------------------------------------
@dataclass
class _DistanceLaw:
    """A chunk's distance-based law, laid out once per anchor and shared by its positives.

    Positive ``i``'s candidates are the head columns ``i ... Kp-1`` (``r_{i+1} ... r_Kp``)
    plus every training track outside the head and other than the anchor, in catalog order.
    Pair rows (one per (anchor, positive)) are numbered ``a · Kp + (i - 1)``.
    """

    head: np.ndarray        # (c, Kp) r_1 ... r_Kp
    n: int                  # training tracks
    row_a: np.ndarray       # (R,) anchor (in chunk) of each pair row
    row_i: np.ndarray       # (R,) positive rank of each pair row
    cwh: np.ndarray         # (c, Kp) cumulative head weights
    Hm: np.ndarray          # (c, Kp) head mass of columns i .. Kp-1
    last_head: np.ndarray   # (c,) last positive-weight head column
    cum: np.ndarray         # (c, n) cumulative weights outside the head, catalog order
    W: np.ndarray           # (c,) mass outside the head
    scale: np.ndarray       # (c,) n / W (0 where W = 0): a target's guide bucket
    guide: np.ndarray       # (c, n) first position of each bucket (Chen's guide table)
    last_out: np.ndarray    # (c,) last positive-weight outside position


def _distance_law(head: np.ndarray, apos: np.ndarray, srows: np.ndarray, n: int) -> _DistanceLaw:
    c, Kp = head.shape
    ar = np.arange(c)
    w_head = srows[ar[:, None], head].astype(np.float64)               # (c, Kp)
    cwh = np.cumsum(w_head, axis=1)
    last_head = Kp - 1 - np.argmax(w_head[:, ::-1] > 0, axis=1)
    cum = srows.astype(np.float64)                # catalog order, excluded set to 0
    cum[ar[:, None], _excluded(head, apos)] = 0.0
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
    last_out = (cum < W[:, None]).sum(axis=1)   # last positive-weight position (W reached)
    return _DistanceLaw(head, n, np.repeat(ar, Kp), np.tile(np.arange(1, Kp + 1), c), cwh,
                        cwh[:, -1:] - cwh, last_head, cum, W, scale, guide, last_out)


def _n_positive(head: np.ndarray, apos: np.ndarray, srows: np.ndarray) -> np.ndarray:
    """(R,) positive-weight candidates of each pair: outside ones + head columns i .. Kp-1."""
    c = head.shape[0]
    ar = np.arange(c)
    pos_head = srows[ar[:, None], head] > 0
    p_head = np.cumsum(pos_head[:, ::-1], axis=1)[:, ::-1]       # columns j .. Kp-1
    p_head = np.concatenate([p_head[:, 1:], np.zeros((c, 1), dtype=p_head.dtype)], axis=1)
    p_out = (srows > 0).sum(axis=1) - pos_head.sum(axis=1) - (srows[ar, apos] > 0)
    return (p_head + p_out[:, None]).ravel()


def _search_out(law: _DistanceLaw, a: np.ndarray, t: np.ndarray) -> np.ndarray:
    """First outside position whose cumulative weight exceeds t (flat arrays)."""
    n = law.n
    g = (t * law.scale[a]).astype(np.int64)
    np.minimum(g, n - 1, out=g)
    base = a * n
    x = law.guide.ravel()[base + g]
    cum_flat = law.cum.ravel()
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
            x[q] = np.searchsorted(law.cum[j], t[q], side="right")
    # a positive-weight, non-excluded track (zero weights never exceed t); past the
    # end only by rounding -> the last positive-weight position
    return np.where(x < n, x, law.last_out[a])


def _search_anchor(law: _DistanceLaw, j: int, tj: np.ndarray) -> np.ndarray:
    """:func:`_search_out` for many targets of one anchor: its tables stay in cache."""
    n, cj = law.n, law.cum[j]
    xj = law.guide[j][np.minimum((tj * law.scale[j]).astype(np.int64), n - 1)]
    for _ in range(8):
        step = (xj < n) & (cj[np.minimum(xj, n - 1)] <= tj)
        if not step.any():
            break
        xj += step
    else:
        left = np.flatnonzero((xj < n) & (cj[np.minimum(xj, n - 1)] <= tj))
        xj[left] = np.searchsorted(cj, tj[left], side="right")
    return np.where(xj < n, xj, law.last_out[j])


def _head_col(law: _DistanceLaw, a: np.ndarray, ii: np.ndarray, uu: np.ndarray) -> np.ndarray:
    """The head track at mass ``uu`` past column ``ii - 1`` of anchor a."""
    target = law.cwh[a, ii - 1] + uu
    vh = (law.cwh[a] <= target[:, None]).sum(axis=1)  # first column whose cum exceeds
    return law.head[a, np.minimum(vh, law.last_head[a])]


def _to_v(law: _DistanceLaw, rows: np.ndarray, u: np.ndarray) -> np.ndarray:
    """One draw per entry of ``rows`` (pair rows) from the uniforms ``u``."""
    a, ii = law.row_a[rows], law.row_i[rows]
    hm = law.Hm[a, ii - 1]
    uu = u * (hm + law.W[a])                      # uniform on the suffix mass
    in_head = (uu < hm) | (law.W[a] == 0)
    out = np.empty(rows.size, dtype=np.int64)
    hs = np.flatnonzero(in_head)
    out[hs] = _head_col(law, a[hs], ii[hs], uu[hs])
    os_ = np.flatnonzero(~in_head)
    out[os_] = _search_out(law, a[os_], uu[os_] - hm[os_])
    return out


def _distance_first_round(law: _DistanceLaw, a_s: np.ndarray, U: np.ndarray) -> np.ndarray:
    """(len(a_s), Kp, n_neg) draws of anchors a_s, every pair row sampled, from uniforms U."""
    Kp, n_neg = U.shape[1], U.shape[2]
    hm = law.Hm[a_s][:, :, None]
    uu = U * (hm + law.W[a_s][:, None, None])
    in_head = uu < hm
    in_head |= (law.W[a_s] == 0)[:, None, None]
    t = uu - hm
    np.maximum(t, 0.0, out=t)
    Q = Kp * n_neg
    t = t.reshape(a_s.size, Q)
    x = np.empty((a_s.size, Q), dtype=np.int64)
    for q, j in enumerate(a_s):
        x[q] = _search_anchor(law, j, t[q])
    x = x.ravel()
    hq = np.flatnonzero(in_head)
    x[hq] = _head_col(law, a_s[hq // Q], (hq % Q) // n_neg + 1, uu.ravel()[hq])
    return x.reshape(U.shape)


def _draw_distance(head: np.ndarray, apos: np.ndarray, srows: np.ndarray, n: int,
                   n_neg: int, rngs: _BlockRNG, max_rounds: int) -> np.ndarray:
    """Draw, for each (anchor, positive i), n_neg distinct negatives from {r_j : j > i}
    with P(n) ∝ S(t, n) (successive sampling).

    One sort and one set of cumulative weights per anchor serve all its positives
    (:class:`_DistanceLaw`). Rows whose suffix is no longer than n_neg take it whole;
    rows with fewer positive-weight candidates than n_neg, and rows whose duplicates do not
    settle within ``max_rounds``, are completed by Gumbel-top-k.

    Returns (c, Kp, n_neg) int64 training positions; where the suffix is shorter than
    n_neg it comes whole first, then filler that the caller masks out.
    """
    c, Kp = head.shape
    R = c * Kp
    law = _distance_law(head, apos, srows, n)
    draws = np.zeros((R, n_neg), dtype=np.int64)
    whole = n - 1 - np.arange(1, Kp + 1) <= n_neg     # the last positives: suffix <= n_neg
    Ks = Kp - int(whole.sum())
    if Ks < Kp:
        draws.reshape(c, Kp, n_neg)[:, Ks:] = _whole_suffix(head, apos, n, n_neg, Ks)
    take_all = np.tile(whole, c)
    # fewer positive-weight candidates than needed (all-zero included): keyed path
    keyed = (~take_all) & (_n_positive(head, apos, srows) < n_neg)
    sample = ~take_all & ~keyed
    if sample.any():
        _distance_first_draws(law, draws, sample, rngs, n_neg)
    stuck = _distance_redraws(law, draws, np.flatnonzero(sample), srows, rngs, max_rounds)

    # Keyed completion (Gumbel-top-k on log w, zero weights after positive ones): rows with
    # too few positive weights, and rows whose duplicates did not settle (a law concentrated
    # on a few tracks makes redraws hit the same ones again and again). Conditioned on the
    # distinct values already drawn, the rest of a successive sample is a successive sample
    # of the remaining candidates, so completing a row this way is exact.
    krows = np.flatnonzero(keyed | stuck)
    redo_all = np.zeros((R, n_neg), dtype=bool)
    redo_st, rows_st = _duplicates(draws, np.flatnonzero(stuck))
    redo_all[rows_st] = redo_st
    _complete_rows(krows, draws, redo_all[krows], stuck[krows], law.row_a, law.row_i, head, apos,
                   srows, n, n_neg, rngs)
    return draws.reshape(c, Kp, n_neg)


def _distance_first_draws(law: _DistanceLaw, draws: np.ndarray, sample: np.ndarray,
                          rngs: _BlockRNG, n_neg: int) -> None:
    """n_neg draws for each sampled pair row (in place): whole anchors one at a time, the
    pair rows of partly sampled anchors together."""
    c, Kp = law.head.shape
    U = rngs.first((Kp, n_neg))
    whole = sample.reshape(c, Kp).all(axis=1)        # anchors with every row sampled
    a_s = np.flatnonzero(whole)
    if a_s.size:
        draws.reshape(c, Kp, n_neg)[a_s] = _distance_first_round(law, a_s, U[a_s] if a_s.size < c else U)
    part = np.flatnonzero(sample & ~np.repeat(whole, Kp))
    if part.size:
        u = U.reshape(c * Kp, n_neg)[part].ravel()
        draws[part] = _to_v(law, np.repeat(part, n_neg), u).reshape(-1, n_neg)


def _distance_redraws(law: _DistanceLaw, draws: np.ndarray, active: np.ndarray, srows: np.ndarray,
                      rngs: _BlockRNG, max_rounds: int) -> np.ndarray:
    """Redraw duplicates (in place); returns the (R,) mask of rows still unsettled.

    Keeping the first n_neg distinct values of an i.i.d. stream is exactly sampling without
    replacement (successive sampling). Slot 0 is never marked (the earliest slot of a value
    is kept), so it is the first draw; the other slots hold the row's set, not the stream's
    order (a redrawn slot keeps its place before later slots that were kept, and a redraw
    equal to a later slot's value sends that later slot to be redrawn). A row missing d
    values whose kept values already hold a share F of its candidates' mass needs about
    d/(1-F) more draws: they are drawn in one go and the first d new distinct ones are kept
    (the rest of the stream is simply not looked at), so a law concentrated on a few tracks
    settles in a few rounds instead of dozens.
    """
    c = law.head.shape[0]
    for _ in range(max_rounds):
        redo, active = _duplicates(draws, active)
        if active.size == 0:
            break
        d = redo.sum(axis=1)
        kept = np.where(redo, -1, draws[active])
        a = law.row_a[active]
        kept_mass = np.where(kept >= 0, srows[a[:, None], np.maximum(kept, 0)], 0.0).sum(axis=1)
        F = kept_mass / (law.Hm[a, law.row_i[active] - 1] + law.W[a])
        # rows whose kept values hold little of the mass: just redraw the missing slots
        simple = F < 0.5
        if simple.any():
            rr, ss = np.nonzero(redo & simple[:, None])
            rows = active[rr]
            draws[rows, ss] = _to_v(law, rows, rngs.per_anchor(np.bincount(law.row_a[rows], minlength=c)))
        hard = ~simple
        if hard.any():
            _distance_streams(law, draws, active[hard], kept[hard], redo[hard], d[hard], F[hard], rngs)
    stuck = np.zeros(draws.shape[0], dtype=bool)
    stuck[_duplicates(draws, active)[1]] = True
    return stuck


def _distance_streams(law: _DistanceLaw, draws: np.ndarray, active: np.ndarray, kept: np.ndarray,
                      redo: np.ndarray, d: np.ndarray, F: np.ndarray, rngs: _BlockRNG) -> None:
    """Rows whose kept values hold much of the mass: about d / (1 - F) draws each, the first
    d new distinct ones kept (in place)."""
    c, n_neg = law.head.shape[0], draws.shape[1]
    q = np.minimum(np.ceil(1.25 * d / np.maximum(1.0 - F, 1e-3)).astype(np.int64) + 2,
                   4 * n_neg + 16)
    rows = np.repeat(active, q)
    new = _to_v(law, rows, rngs.per_anchor(np.bincount(law.row_a[rows], minlength=c)))
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


# --------------------------------------------------------------------------------------
# Completion and duplicates, shared by the random drawers
# --------------------------------------------------------------------------------------
def _excluded(head: np.ndarray, apos: np.ndarray) -> np.ndarray:
    """(c, Kp + 1) the head and the anchor of each row, sorted."""
    return np.sort(np.concatenate([head, apos[:, None]], axis=1), axis=1)


def _whole_suffix(head: np.ndarray, apos: np.ndarray, n: int, n_neg: int, Ks: int) -> np.ndarray:
    """(c, Kp - Ks, n_neg): the whole suffix r_{i+1} ... of the positives after the first Ks
    (nothing random), r_L repeated as filler past its end."""
    c, Kp = head.shape
    L = n - 1
    outside = np.ones((c, n), dtype=bool)
    outside[np.arange(c)[:, None], _excluded(head, apos)] = False
    ranked = np.concatenate([head, np.nonzero(outside)[1].reshape(c, L - Kp)], axis=1)  # r_1 ... r_L
    cols = np.minimum(np.arange(Ks + 1, Kp + 1)[:, None] + np.arange(n_neg)[None, :], L - 1)
    return ranked[:, cols]


def _complete_rows(rows: np.ndarray, draws: np.ndarray, redo: np.ndarray, stuck: np.ndarray,
                   row_a: np.ndarray, row_i: np.ndarray, head: np.ndarray, apos: np.ndarray,
                   srows: np.ndarray | None, n: int, n_neg: int, rngs: _BlockRNG) -> None:
    """Gumbel-top-k over the remaining candidates of some pair rows, vectorised (in place).

    ``redo`` (r, n_neg) and ``stuck`` (r,) are aligned with ``rows``. Rows go in parts of 128:
    each part holds (part, n) candidate and key matrices, so memory stays bounded however many
    rows are left.
    """
    for part in np.array_split(np.arange(rows.size), -(-rows.size // 128)) if rows.size else ():
        rows_p, redo_p, stuck_p = rows[part], redo[part], stuck[part]
        nr = rows_p.size
        a, ii = row_a[rows_p], row_i[rows_p]
        lr = np.arange(nr)
        cand = np.ones((nr, n), dtype=bool)
        cand[lr, apos[a]] = False                                    # not the anchor
        before = np.arange(head.shape[1])[None, :] < ii[:, None]    # r_1 .. r_i: not after p
        rr, cc = np.nonzero(before)
        cand[rr, head[a[rr], cc]] = False
        rk, sk = np.nonzero(stuck_p[:, None] & ~redo_p)              # values already drawn
        cand[rk, draws[rows_p[rk], sk]] = False
        need = np.where(stuck_p, redo_p.sum(axis=1), n_neg)
        u = rngs.per_anchor(np.bincount(a, minlength=head.shape[0]) * n).reshape(nr, n)
        key = -np.log(-np.log(np.clip(u, 1e-300, 1.0 - 2.0 ** -53)))  # standard Gumbel
        if srows is not None:
            w = srows[a].astype(np.float64)
            with np.errstate(divide="ignore"):
                key += np.where(w > 0, np.log(w) + _KEY_OFFSET, 0.0)
        key[~cand] = -np.inf
        kmax = int(need.max())
        top = np.argpartition(-key, kmax - 1, axis=1)[:, :kmax]
        order = np.argsort(-np.take_along_axis(key, top, axis=1), axis=1, kind="stable")
        top = np.take_along_axis(top, order, axis=1)
        first = np.arange(kmax)[None, :] < need[:, None]
        fill = np.where(stuck_p[:, None], redo_p, True)
        sub = draws[rows_p]
        sub[fill] = top[first]             # both row-major: the k-th slot to fill gets the k-th key
        draws[rows_p] = sub


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
