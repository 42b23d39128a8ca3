"""Triplet mining from ranked lists (Prétet et al. 2020, §3.2): the strategies' registry,
offline mining, checks, and online mining inside a batch.

For a training anchor ``t`` with ranked list ``R(t) = [r_1 ... r_L]`` (the other *training*
tracks by decreasing oracle similarity ``S(t, .)``, ties broken by catalog index,
``L = n_train - 1``) the positives are ``r_1 ... r_Np`` and, for the positive at rank ``i``,
``Nn`` negatives are taken from the ranks ``j > i`` by the strategy. Every strategy is an
entry of :data:`STRATEGIES` (:class:`Strategy`): its name and aliases, the label plots and
tables show, whether it mines online, its fast drawer and the plain loop it is checked
against (:mod:`mrlib.mining_reference`). Registered offline:

* ``"neighbors"`` — ranks ``i+1 ... i+Nn`` (clipped at the end of the list);
* ``"uniform"``   — uniformly over ``{r_j : j > i}``, without replacement;
* ``"distance"``  — over ``{r_j : j > i}`` with ``P(n) ∝ S(t, n)``, without replacement
  (successive sampling: the first negative of a pair follows ``P(n) ∝ S(t, n)`` exactly,
  each next one the same law over the tracks not drawn yet; the pair's set of negatives is
  such a sample, but after the first one they are not stored in that order: read them as
  a set). Zero weights come last: when fewer than ``Nn`` candidates have ``S > 0`` all of
  them are taken and the rest is drawn uniformly among the zero-weight ones (so all-zero
  weights fall back to uniform);

and online (the paper's future work), chosen inside each batch of tracks by
:func:`online_triplets`: ``"online-hard"`` and ``"online-semihard"``.

The output of :func:`mine` is an ``int32`` array ``(M, 3)`` of catalog indices (anchor,
positive, negative), grouped by anchor, then positive rank, with ``M = n_train · Np · Nn``
(fewer only where lists run out, see :func:`n_triplets`). How it stays fast at paper scale:
:mod:`mrlib.mining_chunks` and :mod:`mrlib.mining_draws`. The batch samplers live in
:mod:`mrlib.samplers` and are importable from here too.

Notebook: 03_mining.ipynb
"""
from __future__ import annotations

import dataclasses
import mmap
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from joblib import effective_n_jobs

from mrlib import mining_reference as ref
from mrlib import online_mining as om
from mrlib.checks import check_indices, check_int, check_n_jobs
from mrlib.mining_chunks import TrainSplitSource, chunk_stream, draw_distance, draw_neighbors, draw_uniform
from mrlib.paper_scale import PAPER_SCALE
from mrlib.samplers import PaperBatchSampler, ShuffledTripletSampler, TrackBatchSampler

__all__ = [
    "Strategy",
    "STRATEGIES",
    "OFFLINE_STRATEGIES",
    "register_strategy",
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
    "online_triplets",
]


# --------------------------------------------------------------------------------------
# The strategies' registry
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Strategy:
    """A mining strategy: everything mrlib and the notebooks need to know about it.

    Attributes
    ----------
    name : str
        Canonical name (``TrainConfig.mining``, run names).
    label : str
        Name in plots and tables (Table 2's row is ``"TL " + label``).
    draw : callable
        The fast drawer. Offline: ``draw(chunk) -> (positives (c, Kp), negatives (c, Kp,
        Nn))`` in training positions, for a :class:`mrlib.mining_chunks.Chunk` of anchors.
        Online: ``draw(valid, d_ap, d_an, margin) -> chosen`` on (B, B, B) tensors.
    reference : callable
        The plain loop ``draw`` must agree with (:mod:`mrlib.mining_reference`). Offline:
        ``reference(suffix, w, k, rng)`` -> the ``k`` negatives of one pair; online:
        ``reference(d_ap, d_an, margin) -> bool`` for one valid triplet.
    aliases : tuple of str
        Other accepted spellings (compared lower-case, ``_`` and spaces read as ``-``).
    online : bool
        Mined inside each batch during training instead of once by :func:`mine`.
    random : bool
        Uses random streams: checked against its reference in distribution (same seed,
        other streams); a deterministic one must give the reference's triplets exactly.
    needs_S : bool
        Reads the similarity values, not only the ranked lists (``mine`` then needs ``S``).
    seed_code : int, optional
        Part of every anchor's seed, so that strategies never share random streams;
        :func:`register_strategy` assigns a free one when omitted (offline only).

    Notebook: 03_mining.ipynb
    """

    name: str
    label: str
    draw: Callable
    reference: Callable
    aliases: tuple[str, ...] = ()
    online: bool = False
    random: bool = True
    needs_S: bool = False
    seed_code: int | None = None


#: The registry, in plot order: canonical name -> :class:`Strategy`.
STRATEGIES: dict[str, Strategy] = {}


def _key(name: str) -> str:
    return name.strip().lower().replace(" ", "-").replace("_", "-")


def register_strategy(strategy: Strategy) -> Strategy:
    """Add a strategy to :data:`STRATEGIES`; :func:`mine` (or the online trainer), notebook
    03's plots and notebook 07's table then take it without edits.

    Parameters
    ----------
    strategy : Strategy
        Its name and aliases must be new; an offline one without ``seed_code`` gets the
        next free code.

    Returns
    -------
    Strategy
        The registered entry (with its ``seed_code``).

    Notebook: 03_mining.ipynb
    """
    taken = {_key(a) for s in STRATEGIES.values() for a in (s.name, *s.aliases)}
    clash = sorted(taken & {_key(a) for a in (strategy.name, *strategy.aliases)})
    if clash:
        raise ValueError(f"strategy names already registered: {clash}")
    codes = {s.seed_code for s in STRATEGIES.values() if s.seed_code is not None}
    if not strategy.online and strategy.seed_code is None:
        strategy = dataclasses.replace(strategy, seed_code=max(codes, default=-1) + 1)
    elif strategy.seed_code in codes:
        raise ValueError(f"seed_code {strategy.seed_code} is already used")
    STRATEGIES[strategy.name] = strategy
    return strategy


for _s in (
    Strategy("neighbors", "Neighbors", draw_neighbors, ref.neighbors_negatives,
             ("neighbours", "neighbor"), random=False, seed_code=0),
    Strategy("uniform", "Random uniform", draw_uniform, ref.uniform_negatives,
             ("random", "random-uniform"), seed_code=1),
    Strategy("distance", "Distance-based", draw_distance, ref.distance_negatives,
             ("distance-based",), needs_S=True, seed_code=2),
    Strategy("online-hard", "Online hard", om.select_hard, ref.hard_keep, ("hard",),
             online=True, random=False),
    Strategy("online-semihard", "Online semi-hard", om.select_semihard, ref.semihard_keep,
             ("semihard", "semi-hard", "online-semi-hard"), online=True, random=False),
):
    register_strategy(_s)

#: Names of the offline strategies registered with mrlib (:data:`STRATEGIES` holds later ones too).
OFFLINE_STRATEGIES: tuple[str, ...] = tuple(s.name for s in STRATEGIES.values() if not s.online)


def canonical_strategy(name: str) -> str:
    """The canonical name of a mining strategy (aliases such as ``"random"`` accepted).

    Parameters
    ----------
    name : str
        A name or alias of a :data:`STRATEGIES` entry, e.g. ``"random"`` (uniform),
        ``"distance-based"``, ``"semi-hard"``; case-insensitive, ``_`` or spaces for ``-``.

    Returns
    -------
    str
        A key of :data:`STRATEGIES`.

    Notebook: 03_mining.ipynb
    """
    if not isinstance(name, str):
        raise TypeError(f"strategy must be a str, got {type(name).__name__}")
    key = _key(name)
    for s in STRATEGIES.values():
        if key in {_key(a) for a in (s.name, *s.aliases)}:
            return s.name
    raise ValueError(f"unknown mining strategy {name!r}; expected one of {tuple(STRATEGIES)}")


def is_online(strategy: str) -> bool:
    """Whether a strategy mines inside the batch during training (``online-*``).

    Offline strategies are mined once with :func:`mine` and fed by
    :class:`PaperBatchSampler` or :class:`ShuffledTripletSampler`; online ones draw batches
    of tracks with :class:`TrackBatchSampler` and pick triplets with :func:`online_triplets`.

    Notebook: 03_mining.ipynb
    """
    return STRATEGIES[canonical_strategy(strategy)].online


#: The 2020 paper's catalog (N = 14,246 tracks), its training list (60 % of them, §4.1), mined
#: with Np = 15 positives and Nn = 250 negatives (§3.2, the values in §3.4);
#: :data:`mrlib.paper_scale.PAPER_SCALE`.
PAPER_N_TRACKS, PAPER_N_POS, PAPER_N_NEG = (PAPER_SCALE[k] for k in ("n_tracks", "n_pos", "n_neg"))
PAPER_N_TRAIN = round(0.6 * PAPER_N_TRACKS)


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
    n_train = check_int("n_train", n_train, 2)
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
    n_train = check_int("n_train", n_train, 2)
    n_pos = check_int("n_pos", n_pos, 1)
    n_neg = check_int("n_neg", n_neg, 1)
    L = n_train - 1
    i = np.arange(1, min(n_pos, L) + 1)
    return int(n_train * np.minimum(n_neg, L - i).sum())



# --------------------------------------------------------------------------------------
# Public mining API
# --------------------------------------------------------------------------------------
def _prepare(ranked, train_idx, strategy, n_pos, n_neg, S, seed, chunk_size, max_rounds, n_jobs):
    """The checked arguments of :func:`mine`, in the order :func:`chunk_stream` takes them."""
    if train_idx is None:
        raise ValueError("train_idx is required: mining happens on the training split only")
    strategy = STRATEGIES[canonical_strategy(strategy)]
    if strategy.online:
        raise ValueError(f"{strategy.name!r} mines inside each batch during training: use "
                         "TrackBatchSampler and online_triplets(), not mine()")
    n_pos = check_int("n_pos", n_pos, 1)
    n_neg = check_int("n_neg", n_neg, 1)
    seed = check_int("seed", seed, 0)
    chunk_size = check_int("chunk_size", chunk_size, 1)
    max_rounds = check_int("max_rounds", max_rounds, 0)
    n_jobs = effective_n_jobs(check_n_jobs(n_jobs))   # -1: joblib's count of usable cores
    src = TrainSplitSource(ranked, train_idx, S, need_S=strategy.name if strategy.needs_S else None)
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
    yield from chunk_stream(*_prepare(ranked, train_idx, strategy, n_pos, n_neg, S, seed,
                                      chunk_size, max_rounds, n_jobs), progress)


def mine(ranked: np.ndarray | None = None, train_idx: np.ndarray | None = None,
         strategy: str = "distance", n_pos: int = 15, n_neg: int = 250,
         S: np.ndarray | Callable[[np.ndarray], np.ndarray] | None = None, seed: int = 0,
         chunk_size: int = 256, progress: bool = True, max_rounds: int = 8,
         n_jobs: int = 1) -> np.ndarray:
    """Mine training triplets from oracle ranked lists (Prétet et al. 2020, §3.2).

    For every training anchor ``t`` and each of its first ``Np`` tracks ``r_i(t)`` (the
    positives), ``Nn`` negatives are chosen among ``{r_j(t) : j > i}`` by an offline
    strategy of :data:`STRATEGIES` (see the module's docstring).

    Ranked lists are restricted to the training split: ``R(t)`` lists the other training
    tracks only, by decreasing ``S(t, .)``, ties broken by catalog index.

    Parameters
    ----------
    ranked : numpy.ndarray of int, shape (N, N-1), optional
        Full-catalog ranked lists (``mrlib.similarity.ranked_lists(S)``): row ``t`` lists
        the catalog indices of the other tracks by decreasing similarity. If omitted, the
        head of each list is computed from ``S`` inside each chunk (cheaper: at paper scale
        the lists alone weigh 1.6 GB).
    train_idx : array-like of int, shape (n_train,)
        Catalog indices of the training tracks (the only anchors, positives, negatives).
    strategy : str
        An offline strategy's name or alias (:func:`canonical_strategy`).
    n_pos : int, default 15
        ``Np``, positives per anchor (the paper's 15).
    n_neg : int, default 250
        ``Nn``, negatives per (anchor, positive) pair (the paper's 250).
    S : numpy.ndarray (N, N), torch.Tensor or callable, optional
        Oracle similarity, values >= 0 (``mrlib.similarity.oracle``), or a function
        ``S(rows) -> (len(rows), N)`` giving the rows of the given catalog indices so that
        the matrix is never held whole (it must be thread-safe when ``n_jobs > 1``).
        Required for strategies that read it (``"distance"``) and when ``ranked`` is omitted.
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
        then positive rank; ``M = n_triplets(n_train, Np, Nn)``. A pair's negatives are
        a set: Neighbors' come in rank order, the random strategies' in no order that means
        anything (Distance-based's first is its first draw, the others are not in draw
        order), so a subset of them is a fair sample only if it is drawn at random.

    Raises
    ------
    ValueError, TypeError
        On malformed inputs, an online strategy, or one that reads ``S`` without it.

    Examples
    --------
    >>> S = np.random.default_rng(0).random((50, 50))
    >>> T = mine(None, np.arange(0, 50, 2), "uniform", n_pos=3, n_neg=5, S=S, progress=False)
    >>> T.shape, T.dtype
    ((375, 3), dtype('int32'))

    Notebook: 03_mining.ipynb
    """
    args = _prepare(ranked, train_idx, strategy, n_pos, n_neg, S, seed, chunk_size, max_rounds, n_jobs)
    src, _, n_pos, n_neg, *_ = args
    # every chunk writes its rows straight into the final array: no concatenation, no 2x peak
    out = _empty_mapped((n_triplets(src.n, n_pos, n_neg), 3), np.int32)
    for _ in chunk_stream(*args, progress, out=out):
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
    src = TrainSplitSource(ranked, train_idx, S)
    chunk_size = check_int("chunk_size", chunk_size, 1)
    out = np.full((T.shape[0], 2), -1, dtype=np.int64)
    T = check_indices("triplets", T, src.N, "the tracks")
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
        tp = src.pos_of[T[rows, 1:]]                              # (m, 2) positive, negative
        r = np.where(tp >= 0, rank[(a_pos[rows] - lo)[:, None], np.maximum(tp, 0)], 0)
        out[rows] = np.where(r > 0, r, -1)
    return out


def check_triplets(triplets: np.ndarray, train_idx: np.ndarray, n_pos: int = 15,
                   S: np.ndarray | None = None, ranked: np.ndarray | None = None) -> dict[str, bool]:
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

    Returns
    -------
    dict of str to bool
        One entry per check (all true: a failed check raises ``ValueError`` naming it).

    Notebook: 03_mining.ipynb
    """
    n_pos = check_int("n_pos", n_pos, 1)
    T = np.asarray(triplets)
    train = np.unique(np.asarray(train_idx))
    checks = {"int32 (M, 3)": T.dtype == np.int32 and T.ndim == 2 and T.shape[1] == 3}
    if not checks["int32 (M, 3)"]:
        raise ValueError(f"triplets must be int32 (M, 3), got {T.dtype} {T.shape}")
    checks["all training tracks"] = bool(np.isin(T, train).all())
    checks["no self"] = bool(((T[:, 0] != T[:, 1]) & (T[:, 0] != T[:, 2])).all())
    if checks["all training tracks"]:
        ranks = triplet_ranks(T, train, S=S, ranked=ranked)
        checks["positive in first Np"] = bool(((ranks[:, 0] >= 1) & (ranks[:, 0] <= n_pos)).all())
        checks["negative after positive"] = bool((ranks[:, 1] > ranks[:, 0]).all())
    checks["no duplicate triplet"] = len(np.unique(T, axis=0)) == len(T)
    failed = [k for k, ok in checks.items() if not ok]
    if failed:
        raise ValueError(f"invalid triplets: failed {failed}")
    return checks


# --------------------------------------------------------------------------------------
# Online mining (beyond the paper)
# --------------------------------------------------------------------------------------
def _online_rule(mode: str) -> Callable | None:
    """The selection rule of an online strategy's name or alias; None for ``"all"``."""
    if isinstance(mode, str) and _key(mode) in ("all", "online-all"):
        return None
    online = {s.name: s for s in STRATEGIES.values() if s.online}
    try:
        return online[canonical_strategy(mode)].draw
    except (TypeError, ValueError, KeyError):   # not a str, unknown, or an offline strategy
        names = [name.removeprefix("online-") for name in online]
        raise ValueError(f"mode must be one of {names} or 'all' (or 'online-…'), "
                         f"got {mode!r}") from None


def online_triplets(embeddings: torch.Tensor, oracle: torch.Tensor | np.ndarray,
                    batch_idx: torch.Tensor | np.ndarray | None = None, mode: str = "semihard",
                    margin: float = 0.5, n_pos: int = 15, return_info: bool = False):
    """Mine triplets inside a batch of tracks: the oracle decides validity, embeddings hardness.

    A triplet ``(a, p, n)`` of batch positions is *valid* when ``p`` is among ``a``'s first
    ``Np`` in ``a``'s ranked list restricted to the batch and ``n`` is ranked after ``p``. The online strategy named by ``mode`` then keeps some
    of them by the squared Euclidean distances ``d(x, y) = ||f(x) - f(y)||²`` of the current
    embeddings (as in the triplet loss): ``"hard"``, ``d(a, n) < d(a, p)``; ``"semihard"``,
    ``d(a, p) < d(a, n) < d(a, p) + margin``; ``"all"`` keeps every valid triplet.

    If no valid triplet is kept, all valid ones are returned (a fallback). Selection is
    done without gradient; compute the loss on ``embeddings[t[:, 0]]`` etc. Memory is
    ``O(B³)`` booleans (B = 128: 2 MB).

    Parameters
    ----------
    embeddings : torch.Tensor, float, shape (B, d)
        Current embeddings of the batch's tracks (any device).
    oracle : torch.Tensor or numpy.ndarray, shape (B, B)
        The batch's similarities ``S[batch][:, batch]``.
    batch_idx : torch.Tensor or numpy.ndarray of int, shape (B,), optional
        Catalog indices of the batch (breaks similarity ties as the ranked lists do);
        defaults to ``0 ... B-1``.
    mode : str
        An online strategy of :data:`STRATEGIES` (``"hard"``, ``"semihard"``, or their
        ``"online-…"`` names), or ``"all"``.
    margin : float
        The triplet-loss margin δ (0.5 in the paper, which writes it α).
    n_pos : int
        ``Np``.
    return_info : bool
        Also return a dict: ``n_valid``, ``n_selected``, ``fell_back``.

    Returns
    -------
    torch.Tensor, int64, shape (K, 3)
        Batch positions ``(a, p, n)`` on ``embeddings.device``, sorted lexicographically.

    Notebook: 03_mining.ipynb
    """
    rule = _online_rule(mode)
    n_pos = check_int("n_pos", n_pos, 1)
    oracle, batch_idx = om.check_batch(embeddings, oracle, batch_idx, margin)
    with torch.no_grad():
        valid = om.valid_triplets(oracle, batch_idx, n_pos)
        chosen = valid if rule is None else rule(valid, *om.triplet_distances(embeddings), margin)
        n_valid = int(valid.sum())
        fell_back = bool(rule is not None and not chosen.any())
        idx = (valid if fell_back else chosen).nonzero()
    if return_info:
        return idx, {"n_valid": n_valid, "n_selected": int(idx.shape[0]), "fell_back": fell_back}
    return idx
