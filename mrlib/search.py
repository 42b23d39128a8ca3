"""Exact and approximate nearest-neighbour search: exact top-k, ranked lists, FAISS.

Exact search is exhaustive and chunked (one block of query x base scores at a time), with
ties broken by the lower index so its results equal a stable full sort; the FAISS indexes
(HNSW, IVF) trade recall for speed on catalogs far beyond the course data, and
:func:`recall_at_k` measures what they lose against the exact lists.

Notebook: 07_evaluation.ipynb
"""
from __future__ import annotations

import math

import numpy as np
import torch
from tqdm.auto import tqdm

from mrlib.checks import as_float_matrix, as_index_matrix, check_choice, check_int

__all__ = ["exact_topk", "rank_by_distance", "rank_by_similarity", "FaissIndex", "build_faiss_index",
           "recall_at_k"]

# Elements of a (queries x base) score block held at once by the chunked searches:
# 2**26 float32 = 256 MiB, half the 512 MiB of a 1M x 128 catalog; larger blocks keep the
# matrix product efficient (64 queries per block at 1M rows).
_BLOCK_ELEMENTS = 2**26
# Rows added to a FAISS index per call: bounds the float32 copy (and drives the progress bar).
_ADD_ROWS = 100_000


# ----------------------------------------------------------------------------------------
# exact ranking and top-k
# ----------------------------------------------------------------------------------------
def _stable_topk(key: torch.Tensor, k: int, largest: bool, first: int | None = None) -> np.ndarray:
    """Indices of the ``k`` smallest (or largest) entries of each row, best first, ties by
    lower index — what a stable full sort gives, at the cost of a partial selection. With
    ``first``, row ``i`` is the query of column ``first + i``, which is left out (``key`` is
    written: the caller passes its own block).

    ``torch.topk`` is fast but leaves the order among equal values unspecified. Taking
    ``k + 1`` candidates and sorting them by (value, index) is exact unless the k-th and
    (k+1)-th values tie, in which case an equal value may hide outside the candidates: those
    (rare) rows fall back to a stable sort of the whole row.
    """
    if first is not None:   # finite keys: ±inf ranks the query after every other column
        rows = torch.arange(key.shape[0], device=key.device)
        key[rows, rows + first] = -math.inf if largest else math.inf
    n = key.shape[1]
    if k + 1 > n:  # the whole row is wanted: a stable sort is the definition
        return torch.sort(key, dim=1, descending=largest, stable=True).indices[:, :k].cpu().numpy()
    vals, ids = torch.topk(key, k + 1, dim=1, largest=largest, sorted=False)
    vals, ids = vals.cpu().numpy(), ids.cpu().numpy()
    order = np.lexsort((ids, -vals if largest else vals), axis=1)
    vals = np.take_along_axis(vals, order, axis=1)
    out = np.take_along_axis(ids, order, axis=1)[:, :k].astype(np.int64)
    for r in np.flatnonzero(vals[:, k - 1] == vals[:, k]):
        out[r] = torch.sort(key[r], descending=largest, stable=True).indices[:k].cpu().numpy()
    return out


def as_tensor(a: np.ndarray, device: torch.device) -> torch.Tensor:
    """A tensor view of ``a`` (no copy on CPU); read-only arrays (memory maps) are copied, and
    float64 is refused on MPS, which has none.

    Notebook: 07_evaluation.ipynb
    """
    a = np.ascontiguousarray(a)
    if a.dtype == np.float64 and torch.device(device).type == "mps":
        raise ValueError("MPS has no float64: pass float32 arrays, or device='cpu'")
    if not a.flags.writeable:
        a = a.copy()
    return torch.from_numpy(a).to(device)


def _float32(name: str, a) -> np.ndarray:
    """``a`` checked as a finite float matrix, as the contiguous float32 FAISS takes."""
    return np.ascontiguousarray(as_float_matrix(name, a), dtype=np.float32)


def _default_chunk(n_base: int) -> int:
    return max(1, min(4096, _BLOCK_ELEMENTS // max(n_base, 1)))


def _list_length(k, n_q: int, n: int, exclude_self: bool, of: str) -> int:
    """``k`` (None: the whole list) checked against the ``n`` candidates (``of``) that each of
    ``n_q`` queries ranks; with ``exclude_self`` the queries are the first candidates, left out."""
    if exclude_self and (n_q > n or n == 0):
        raise ValueError(f"queries left out of their own lists must be the first {of} "
                         f"(n_queries <= n, n >= 1), got {n_q} queries and {n} {of}")
    full = n - 1 if exclude_self else n
    k = full if k is None else check_int("k", k)
    if k > full:
        raise ValueError(f"k={k} exceeds the {full} {of} available per query")
    return k


def exact_topk(
    queries,
    base,
    k: int | None,
    *,
    chunk_size: int | None = None,
    exclude_self: bool = False,
    device: str | torch.device = "cpu",
    progress: bool = False,
):
    r"""Exact top-``k`` neighbours of each query in ``base``, computed in chunks of queries.

    The distance is the squared Euclidean distance $\|q\|^2 + \|b\|^2 - 2\,q^\top b$
    (clipped at 0), smallest first, as FAISS's ``IndexFlatL2`` reports it.
    The ranking key is $\|b\|^2 - 2\,q^\top b$ (the distance minus a per-query constant: one
    fused matrix product per block, no difference tensor); ties in the key go to the lower
    base index, so the result equals a stable full sort (``torch.topk`` pre-selects
    ``k + 1`` candidates per row; a row whose k-th and (k+1)-th values tie is re-sorted
    whole). Exact means exhaustive: distances are float32 for float32 inputs, so two
    neighbours closer than float32 rounding may come in either order. Memory: one ``chunk_size × n_base`` block at a
    time (default: about 256 MiB of float32 scores).

    Parameters
    ----------
    queries : float array (n_queries, d)
    base : float array (n_base, d)
        float32 stays float32 (faster), float64 stays float64; other numeric dtypes are
        converted. Must be finite.
    k : int or None
        Neighbours per query, ``1 ≤ k ≤ n_base`` (``n_base − 1`` with ``exclude_self``); None:
        all of them.
    chunk_size : int, optional
        Queries per block; default ``≈ 2**26 / n_base`` (at most 4096).
    exclude_self : bool, default False
        Never return query ``i``'s own base row ``i``: the queries are the first rows of
        ``base`` (e.g. ``exact_topk(X, X, ...)``).
    device : str or torch.device, default "cpu"
        Where the distance blocks are computed (``"cuda"`` works the same).
    progress : bool, default False
        Show a tqdm bar over chunks.

    Returns
    -------
    dist : array (n_queries, k), dtype of the inputs
        Squared L2 distances (ascending).
    idx : int64 array (n_queries, k)
        Base row indices.

    Notebook: 07_evaluation.ipynb
    """
    q = as_float_matrix("queries", queries)
    b = as_float_matrix("base", base)
    if q.shape[1] != b.shape[1]:
        raise ValueError(f"queries have dimension {q.shape[1]} but base has {b.shape[1]}")
    dtype = np.float64 if (q.dtype == np.float64 or b.dtype == np.float64) else np.float32
    q, b = q.astype(dtype, copy=False), b.astype(dtype, copy=False)
    n_q, n_b = q.shape[0], b.shape[0]
    k = _list_length(k, n_q, n_b, exclude_self, "base rows")
    chunk = _default_chunk(n_b) if chunk_size is None else check_int("chunk_size", chunk_size)
    device = torch.device(device)
    bt = as_tensor(b, device)
    b_sq = (bt * bt).sum(dim=1)
    dist_out = np.empty((n_q, k), dtype=dtype)
    idx_out = np.empty((n_q, k), dtype=np.int64)
    for s in tqdm(range(0, n_q, chunk), desc="exact top-k", unit="chunk", disable=not progress):
        qt = as_tensor(q[s:s + chunk], device)
        # rank by ||b||^2 - 2 q.b: one fused pass (addmm), and ||q||^2, constant along the
        # row, is added to the k winners only; no (chunk, n_base, d) difference tensor
        key = torch.addmm(b_sq, qt, bt.T, beta=1.0, alpha=-2.0)
        idx_out[s:s + chunk] = _stable_topk(key, k, False, s if exclude_self else None)
        val = torch.gather(key, 1, as_tensor(idx_out[s:s + chunk], device))
        # clip the tiny negatives that float cancellation leaves for near-identical vectors
        val = (val + (qt * qt).sum(dim=1, keepdim=True)).clamp_(min=0.0)
        dist_out[s:s + chunk] = val.cpu().numpy()
    return dist_out, idx_out


def rank_by_distance(embeddings, k: int | None = None) -> np.ndarray:
    """Every track's ranked list of the other tracks by increasing Euclidean embedding distance
    (each track is left out of its own list: the retrieval protocol).

    Parameters
    ----------
    embeddings : float array (n, d)
        One embedding per track (e.g. the mean over 8 test patches); for unit-norm embeddings
        the order is that of decreasing cosine similarity.
    k : int, optional
        Keep only the first ``k`` of each list; default the whole list.

    Returns
    -------
    int64 array (n, k) — or (n, n − 1) when ``k`` is None — of track indices, nearest first,
    ties broken by lower index.

    Notebook: 07_evaluation.ipynb
    """
    x = as_float_matrix("embeddings", embeddings)
    if k is None and x.shape[0] < 2:   # else exact_topk would blame a k the caller did not pass
        raise ValueError(f"embeddings needs at least 2 rows to rank, got shape {x.shape}")
    return exact_topk(x, x, k, exclude_self=True)[1]   # k None: the whole list


def rank_by_similarity(S, k: int | None = None, *, chunk_size: int | None = None) -> np.ndarray:
    """Ranked lists from a similarity matrix: decreasing ``S``, ties broken by lower index,
    query ``i`` (column ``i``) left out of row ``i``.

    With the oracle ``S`` restricted to the test split this is the ground truth R^S(t);
    with ``S`` applied to predicted tag probabilities it is the AT baseline's ranking.

    Parameters
    ----------
    S : float array (n_queries, n)
        Similarities, finite (any scale; only the order matters); ``n_queries ≤ n``.
    k : int, optional
        Keep the first ``k`` of each list; default the whole list.
    chunk_size : int, optional
        Rows per block.

    Returns
    -------
    int64 array (n_queries, k) (or the whole list) of column indices, most similar first.

    Notebook: 07_evaluation.ipynb
    """
    S = as_float_matrix("S", S)
    n_q, n = S.shape
    k = _list_length(k, n_q, n, True, "columns of S")
    chunk = _default_chunk(n) if chunk_size is None else check_int("chunk_size", chunk_size)
    out = np.empty((n_q, k), dtype=np.int64)
    for s in range(0, n_q, chunk):
        # a copy of the block: the query's own column is written, never the caller's S
        key = torch.from_numpy(S[s:s + chunk].copy())
        out[s:s + chunk] = _stable_topk(key, k, True, s)
    return out


# ----------------------------------------------------------------------------------------
# approximate search: FAISS
# ----------------------------------------------------------------------------------------
class FaissIndex:
    """A FAISS index with the search parameters and the distance convention of :func:`exact_topk`.

    Build it with :func:`build_faiss_index`. ``search`` returns squared L2 distances
    (ascending), as :func:`exact_topk` does, and ``-1`` indices where the index found fewer
    than ``k`` neighbours.

    Attributes
    ----------
    index : faiss.Index
        The underlying FAISS object (``IndexHNSWFlat`` or ``IndexIVFFlat``).
    kind : {"hnsw", "ivf"}

    Notebook: 07_evaluation.ipynb
    """

    def __init__(self, index, kind: str):
        self.index, self.kind = index, kind

    def __repr__(self) -> str:
        return (f"FaissIndex(kind={self.kind!r}, ntotal={self.ntotal}, dim={self.dim}, "
                f"params={self.params()})")

    @property
    def ntotal(self) -> int:
        """Number of indexed vectors.

        Notebook: 07_evaluation.ipynb
        """
        return int(self.index.ntotal)

    @property
    def dim(self) -> int:
        """Vector dimension.

        Notebook: 07_evaluation.ipynb
        """
        return int(self.index.d)

    def params(self) -> dict[str, int]:
        """The current search-time parameters (``ef_search``, or ``nprobe`` and ``nlist``).

        Notebook: 07_evaluation.ipynb
        """
        if self.kind == "hnsw":
            return {"ef_search": int(self.index.hnsw.efSearch)}
        return {"nprobe": int(self.index.nprobe), "nlist": int(self.index.nlist)}

    def set_params(self, *, ef_search: int | None = None, nprobe: int | None = None) -> "FaissIndex":
        """Trade speed for recall: HNSW's ``ef_search`` or IVF's ``nprobe`` (capped at nlist).

        Parameters
        ----------
        ef_search : int, optional
            HNSW search beam width.
        nprobe : int, optional
            IVF cells scanned per query.

        Returns
        -------
        FaissIndex
            ``self``, for chaining.

        Notebook: 07_evaluation.ipynb
        """
        if ef_search is not None:
            if self.kind != "hnsw":
                raise ValueError(f"ef_search applies to an HNSW index, this one is {self.kind!r}")
            self.index.hnsw.efSearch = check_int("ef_search", ef_search)
        if nprobe is not None:
            if self.kind != "ivf":
                raise ValueError(f"nprobe applies to an IVF index, this one is {self.kind!r}")
            self.index.nprobe = min(check_int("nprobe", nprobe), int(self.index.nlist))
        return self

    def search(self, queries, k: int):
        """Approximate top-``k`` neighbours of each query.

        Parameters
        ----------
        queries : float array (n_queries, dim)
            Converted to float32.
        k : int
            ``1 ≤ k ≤ ntotal``.

        Returns
        -------
        dist : float32 array (n_queries, k)
            Squared L2 distances (ascending).
        idx : int64 array (n_queries, k)
            Base rows; ``-1`` where fewer than ``k`` were found.

        Notebook: 07_evaluation.ipynb
        """
        q = _float32("queries", queries)
        if q.shape[1] != self.dim:
            raise ValueError(f"queries have dimension {q.shape[1]} but the index holds {self.dim}-d vectors")
        k = _list_length(check_int("k", k), q.shape[0], self.ntotal, False, "vectors in the index")
        return self.index.search(q, k)


def build_faiss_index(
    base,
    kind: str = "hnsw",
    *,
    M: int = 32,
    ef_construction: int = 80,
    ef_search: int = 128,
    nlist: int | None = None,
    nprobe: int = 16,
    seed: int = 0,
    progress: bool = False,
) -> FaissIndex:
    """Build an approximate nearest-neighbour index (FAISS) over ``base``.

    * ``"hnsw"`` — ``IndexHNSWFlat``: a navigable small-world graph with ``M`` links per
      node; no training; recall rises with ``ef_construction`` (build) and ``ef_search``
      (query; the default 128 is several times k = 20: with a beam close to k, recall on
      hard, high-dimensional data drops well below 0.9). The graph built by several threads
      depends on their timing, so results can differ slightly between runs.
    * ``"ivf"`` — ``IndexIVFFlat``: k-means into ``nlist`` cells (default ``4·√n``, a
      common rule, capped at ``n / 39`` so that k-means has the 39 points per cell FAISS asks
      for: below about 24,000 vectors), a query scans its ``nprobe`` nearest cells; k-means is
      seeded and trained on ``min(n, 64·nlist)`` seeded rows.

    Parameters
    ----------
    base : float array (n, d)
        Converted to contiguous float32 (FAISS's type).
    kind : {"hnsw", "ivf"}, default "hnsw"
    M, ef_construction, ef_search : int
        HNSW parameters.
    nlist, nprobe : int
        IVF parameters.
    seed : int, default 0
    progress : bool, default False

    Returns
    -------
    FaissIndex

    Notebook: 07_evaluation.ipynb
    """
    import faiss   # here, not at the top: exact search does without it (faiss-cpu, requirements.txt)

    check_choice("kind", kind, ("hnsw", "ivf"))
    base = np.asarray(base)
    if base.ndim != 2 or base.shape[0] == 0:
        raise ValueError(f"base must be a non-empty 2-D array (n, d), got shape {base.shape}")
    n, d = base.shape
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, check_int("M", M, minimum=2), faiss.METRIC_L2)
        index.hnsw.efConstruction = check_int("ef_construction", ef_construction)
        index.hnsw.efSearch = check_int("ef_search", ef_search)
    else:
        if nlist is None:
            # 4·√n, but never more cells than FAISS's k-means has points for: with fewer than
            # min_points_per_centroid (39) per cell it trains anyway and prints a WARNING to stderr
            per_cell = faiss.ClusteringParameters().min_points_per_centroid
            nlist = max(1, min(int(round(4 * math.sqrt(n))), n // per_cell))
        else:
            nlist = check_int("nlist", nlist)
        if nlist > n:
            raise ValueError(f"nlist={nlist} exceeds the {n} vectors to index")
        # FAISS's Python constructor keeps a reference to the quantizer the C++ index points to
        index = faiss.IndexIVFFlat(faiss.IndexFlat(d, faiss.METRIC_L2), d, nlist, faiss.METRIC_L2)
        index.cp.seed = int(seed)
        # k-means trained on a seeded sample of at most 64 rows per cell
        pick = np.sort(np.random.default_rng(seed).choice(n, size=min(n, 64 * nlist), replace=False))
        index.train(_float32("base", base[pick]))
        index.nprobe = min(check_int("nprobe", nprobe), nlist)
    for s in tqdm(range(0, n, _ADD_ROWS), desc=f"faiss {kind} add", unit="chunk", disable=not progress):
        index.add(_float32("base", base[s:s + _ADD_ROWS]))
    return FaissIndex(index, kind)


def recall_at_k(approx_idx, exact_idx, k: int | None = None, *, per_query: bool = False):
    """Recall of approximate neighbours against exact ones: ``|A_k ∩ E_k| / k``, averaged.

    Parameters
    ----------
    approx_idx : int array (n_queries, ≥ k)
        Approximate neighbours (``-1`` padding never counts).
    exact_idx : int array (n_queries, ≥ k)
        Exact neighbours, e.g. from :func:`exact_topk`.
    k : int, optional
        Default: ``exact_idx.shape[1]``.
    per_query : bool, default False
        Return the (n_queries,) array instead of its mean.

    Returns
    -------
    float in [0, 1], or float64 array (n_queries,)

    Notebook: 07_evaluation.ipynb
    """
    a = as_index_matrix("approx_idx", approx_idx)
    e = as_index_matrix("exact_idx", exact_idx)
    if a.shape[0] != e.shape[0]:
        raise ValueError(f"approx_idx has {a.shape[0]} queries but exact_idx has {e.shape[0]}")
    if k is None and e.shape[1] == 0:
        raise ValueError(f"exact_idx has no columns (shape {e.shape}): pass lists of at least one neighbour")
    k = e.shape[1] if k is None else check_int("k", k)
    if not per_query and a.shape[0] == 0:   # the mean of no queries would be NaN
        raise ValueError("approx_idx and exact_idx hold no queries (0 rows): there is no recall to average")
    if a.shape[1] < k or e.shape[1] < k:
        raise ValueError(f"both lists need at least k={k} columns, got {a.shape[1]} and {e.shape[1]}")
    a, e = a[:, :k], e[:, :k]
    hits = np.empty(a.shape[0])
    step = max(1, 2**24 // (k * k))  # bound the (rows, k, k) comparison block
    for s in range(0, a.shape[0], step):
        blk = (a[s:s + step, :, None] == e[s:s + step, None, :]) & (a[s:s + step, :, None] >= 0)
        hits[s:s + step] = blk.any(axis=2).sum(axis=1)
    r = hits / k
    return r if per_query else float(r.mean())
