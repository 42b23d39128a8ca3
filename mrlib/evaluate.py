"""Evaluation: retrieval metrics, confidence intervals, paired tests, tag AUC, CFR, search at scale.

Retrieval protocol (Prétet et al. 2020, §4.2): every test track is a query against all the
other test tracks. The ground truth is the oracle ranked list R^S(t) restricted to the test
split (self excluded, ties broken by index); its first ``n_relevant = 5`` tracks are the
relevant ones, graded 5, 4, 3, 2, 1 for nDCG; a system's ranked list is cut at ``k = 20``.
Per-query scores are in [0, 1]; tables report them as percentages with a 95 % confidence
interval, in the form of the paper's Table 2 (``"5.98 ± 0.40"``).

Also here: the Constraints Fulfillment Rate of Lu et al. 2017 with k-fold cross-validation,
the mean-over-tags ROC AUC of the auto-tagging baseline, and exact / approximate (FAISS)
top-k search for catalogs far beyond the course data.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Callable, Mapping, NamedTuple

import numpy as np
import pandas as pd
import torch
from scipy import stats
from tqdm.auto import tqdm

__all__ = [
    "METRICS",
    "retrieval_metrics",
    "rank_by_distance",
    "rank_by_similarity",
    "RetrievalResult",
    "evaluate_embeddings",
    "evaluate_similarity",
    "results_table",
    "CI",
    "mean_ci",
    "format_ci",
    "PairedTest",
    "paired_test",
    "TagAUC",
    "tag_auc",
    "CFR",
    "constraints_fulfillment_rate",
    "kfold_indices",
    "KFoldCFR",
    "kfold_cfr",
    "exact_topk",
    "FaissIndex",
    "build_faiss_index",
    "recall_at_k",
    "PAPER_TABLE2",
    "PAPER_AT_AUC",
    "PAPER_N_TEST_QUERIES",
    "TABLE2_DEFAULTS",
    "TABLE2_ROWS",
    "table2_systems",
    "random_ranking",
    "holm",
    "compare_systems",
    "results_record",
]

#: Keys of :func:`retrieval_metrics`' dict, in the column order of the paper's Table 2.
METRICS: tuple[str, ...] = ("map", "recall", "rr", "ndcg")
_LABELS = {"map": "MAP", "recall": "Recall", "rr": "RR", "ndcg": "nDCG"}

# Elements of a (queries x base) score block held at once by the chunked searches:
# 2**26 float32 = 256 MiB, half the 512 MiB of a 1M x 128 catalog; larger blocks keep the
# matrix product efficient (64 queries per block at 1M rows).
_BLOCK_ELEMENTS = 2**26


# ----------------------------------------------------------------------------------------
# validation helpers
# ----------------------------------------------------------------------------------------
def _check_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _check_level(level) -> float:
    if not isinstance(level, (float, int, np.floating)) or not 0.0 < float(level) < 1.0:
        raise ValueError(f"level must be a float in (0, 1), e.g. 0.95; got {level!r}")
    return float(level)


def _as_index_matrix(name: str, a) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D integer array (n_queries, list_length); got shape {a.shape}")
    if a.size and not np.issubdtype(a.dtype, np.integer):
        raise TypeError(f"{name} must hold integer track indices, got dtype {a.dtype}")
    return a.astype(np.int64, copy=False)


def _as_float_matrix(name: str, a) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D float array, got shape {a.shape}")
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise TypeError(f"{name} must be numeric, got dtype {a.dtype}")
    if a.dtype not in (np.float32, np.float64):
        a = a.astype(np.float32 if a.dtype == np.float16 else np.float64)
    bad = ~np.isfinite(a)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise ValueError(f"{name} has {int(bad.sum())} non-finite value(s), first at [{r}, {c}]")
    return a


def _as_vector(name: str, x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one value per query/triplet), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} has {int((~np.isfinite(x)).sum())} non-finite value(s)")
    return x


def _tensor(a: np.ndarray, device: torch.device) -> torch.Tensor:
    """A tensor view of ``a`` (no copy on CPU); read-only arrays (memory maps) are copied."""
    a = np.ascontiguousarray(a)
    if not a.flags.writeable:
        a = a.copy()
    return torch.from_numpy(a).to(device)


def _has_duplicates(rows: np.ndarray) -> np.ndarray:
    """Per row: does a non-negative index occur twice? Negative entries are padding."""
    s = np.sort(rows, axis=1)
    dup = (s[:, 1:] == s[:, :-1]) & (s[:, 1:] >= 0)
    return dup.any(axis=1)


# ----------------------------------------------------------------------------------------
# retrieval metrics
# ----------------------------------------------------------------------------------------
def retrieval_metrics(pred_ranked, true_ranked, k: int = 20, n_relevant: int = 5) -> dict[str, np.ndarray]:
    r"""Per-query MAP, Recall, RR and nDCG at ``k`` against the oracle's top ``n_relevant``.

    With ``h_i = 1`` when the system's i-th track is one of the relevant tracks
    ``r_1 … r_R`` (R = ``n_relevant``) and ``g_i = R − j + 1`` when it is ``r_j``:

    $$\mathrm{AP@k} = \frac{1}{\min(k, R)} \sum_{i \le k} h_i \, \frac{\sum_{l \le i} h_l}{i},
    \qquad \mathrm{Recall@k} = \frac{1}{R}\sum_{i \le k} h_i,
    \qquad \mathrm{RR@k} = \frac{1}{\min\{i \le k : h_i = 1\}} \ (0 \text{ if none}),$$

    $$\mathrm{nDCG@k} = \frac{\sum_{i \le k} g_i / \log_2(1 + i)}
    {\sum_{i \le \min(k, R)} (R - i + 1) / \log_2(1 + i)}.$$

    For k ≥ R (the paper: k = 20, R = 5) AP's normaliser is R, as in ``trec_eval``'s
    ``map_cut`` and ``ranx``'s ``map@k``; nDCG has linear gain (trec_eval ``ndcg_cut``,
    ranx ``ndcg``, not ``ndcg_burges``). Vectorised over queries.

    Parameters
    ----------
    pred_ranked : int array (n_queries, L)
        Each query's retrieved track indices, best first (e.g. :func:`rank_by_distance`).
        Only the first ``k`` columns are read; ``L < k`` means a shorter list (the missing
        ranks count as misses). Negative entries are padding (FAISS's ``-1``) and never hit.
    true_ranked : int array (n_queries, L') with L' ≥ ``n_relevant``
        Each query's ground-truth ranked list R^S(t) (e.g. :func:`rank_by_similarity`);
        only its first ``n_relevant`` columns are read.
    k : int, default 20
        Cut-off of the system's list.
    n_relevant : int, default 5
        Size R of the relevant set (the first R tracks of the ground truth).

    Returns
    -------
    dict str -> float64 array (n_queries,)
        Keys :data:`METRICS` = ``"map"`` (per-query AP@k; its mean is MAP@k), ``"recall"``,
        ``"rr"``, ``"ndcg"``; values in [0, 1].

    Raises
    ------
    ValueError
        On shape mismatches, a ground truth shorter than ``n_relevant``, or a duplicated
        index inside one list.

    Notebook: 07_evaluation.ipynb
    """
    k = _check_int("k", k)
    n_relevant = _check_int("n_relevant", n_relevant)
    pred = _as_index_matrix("pred_ranked", pred_ranked)
    true = _as_index_matrix("true_ranked", true_ranked)
    if pred.shape[0] != true.shape[0]:
        raise ValueError(f"pred_ranked has {pred.shape[0]} queries but true_ranked has {true.shape[0]}")
    if true.shape[1] < n_relevant:
        raise ValueError(f"true_ranked has {true.shape[1]} columns, fewer than n_relevant={n_relevant}")
    pred = pred[:, :k]
    rel = true[:, :n_relevant]
    if (rel < 0).any():
        raise ValueError("true_ranked's first n_relevant columns must be valid (non-negative) indices")
    for name, a in (("pred_ranked", pred), ("true_ranked", rel)):
        dup = _has_duplicates(a)
        if dup.any():
            raise ValueError(f"{name} repeats a track within a list (first in query {int(np.argmax(dup))})")

    n_q, depth = pred.shape
    # match[q, i, j]: the system's i-th track is the oracle's j-th: (n_q, k, R) booleans,
    # 2,900 x 20 x 5 at paper scale, so the broadcast is cheap and needs no per-query loop.
    match = pred[:, :, None] == rel[:, None, :]
    hits = match.any(axis=2).astype(np.float64)                     # (n_q, depth)
    gains = match.astype(np.float64) @ np.arange(n_relevant, 0, -1, dtype=np.float64)
    ranks = np.arange(1, depth + 1, dtype=np.float64)

    precision_at_i = np.cumsum(hits, axis=1) / ranks
    ap = (hits * precision_at_i).sum(axis=1) / min(k, n_relevant)
    recall = hits.sum(axis=1) / n_relevant
    first = np.argmax(hits > 0, axis=1)                             # 0 when no hit: masked below
    rr = np.where(hits.any(axis=1), 1.0 / (first + 1.0), 0.0) if depth else np.zeros(n_q)
    discount = 1.0 / np.log2(1.0 + ranks)
    dcg = gains @ discount if depth else np.zeros(n_q)
    n_ideal = min(k, n_relevant)
    ideal_ranks = np.arange(1, n_ideal + 1, dtype=np.float64)
    idcg = float(np.sum(np.arange(n_relevant, n_relevant - n_ideal, -1) / np.log2(1.0 + ideal_ranks)))
    return {"map": ap, "recall": recall, "rr": rr, "ndcg": dcg / idcg}


# ----------------------------------------------------------------------------------------
# exact ranking and top-k
# ----------------------------------------------------------------------------------------
def _stable_topk(key: torch.Tensor, k: int, largest: bool) -> np.ndarray:
    """Indices of the ``k`` smallest (or largest) entries of each row, best first, ties by
    lower index — what a stable full sort gives, at the cost of a partial selection.

    ``torch.topk`` is fast but leaves the order among equal values unspecified. Taking
    ``k + 1`` candidates and sorting them by (value, index) is exact unless the k-th and
    (k+1)-th values tie, in which case an equal value may hide outside the candidates: those
    (rare) rows fall back to a stable sort of the whole row.
    """
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


def _default_chunk(n_base: int) -> int:
    return max(1, min(4096, _BLOCK_ELEMENTS // max(n_base, 1)))


def exact_topk(
    queries,
    base,
    k: int,
    *,
    metric: str = "l2",
    chunk_size: int | None = None,
    exclude_self: bool = False,
    query_ids=None,
    device: str | torch.device = "cpu",
    progress: bool = False,
):
    r"""Exact top-``k`` neighbours of each query in ``base``, computed in chunks of queries.

    For ``metric="l2"`` the distance is the squared Euclidean distance
    $\|q\|^2 + \|b\|^2 - 2\,q^\top b$ (clipped at 0), smallest first, as FAISS's
    ``IndexFlatL2`` reports it; for ``"ip"`` the inner product $q^\top b$, largest first.
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
    k : int
        Neighbours per query, ``1 ≤ k ≤ n_base`` (``n_base − 1`` with ``exclude_self``).
    metric : {"l2", "ip"}, default "l2"
    chunk_size : int, optional
        Queries per block; default ``≈ 2**26 / n_base`` (at most 4096).
    exclude_self : bool, default False
        Never return query ``i``'s own base row ``query_ids[i]``.
    query_ids : int array (n_queries,), optional
        The base row of each query, for ``exclude_self``; default ``arange(n_queries)``
        (queries are the first rows of ``base``, e.g. ``exact_topk(X, X, ...)``).
    device : str or torch.device, default "cpu"
        Where the distance blocks are computed (``"cuda"`` works the same).
    progress : bool, default False
        Show a tqdm bar over chunks.

    Returns
    -------
    dist : array (n_queries, k), dtype of the inputs
        Squared L2 distances (ascending) or inner products (descending).
    idx : int64 array (n_queries, k)
        Base row indices.

    Notebook: 07_evaluation.ipynb
    """
    if metric not in ("l2", "ip"):
        raise ValueError(f"metric must be 'l2' or 'ip', got {metric!r}")
    q = _as_float_matrix("queries", queries)
    b = _as_float_matrix("base", base)
    if q.shape[1] != b.shape[1]:
        raise ValueError(f"queries have dimension {q.shape[1]} but base has {b.shape[1]}")
    dtype = np.float64 if (q.dtype == np.float64 or b.dtype == np.float64) else np.float32
    q, b = q.astype(dtype, copy=False), b.astype(dtype, copy=False)
    n_q, n_b = q.shape[0], b.shape[0]
    available = n_b - (1 if exclude_self else 0)
    k = _check_int("k", k)
    if k > available:
        raise ValueError(f"k={k} exceeds the {available} base rows available per query")
    chunk = _default_chunk(n_b) if chunk_size is None else _check_int("chunk_size", chunk_size)
    if exclude_self:
        if query_ids is None:
            if n_q > n_b:
                raise ValueError(
                    f"exclude_self without query_ids needs queries to be the first rows of base, "
                    f"but there are {n_q} queries and {n_b} base rows"
                )
            query_ids = np.arange(n_q)
        query_ids = np.asarray(query_ids)
        if query_ids.shape != (n_q,) or not np.issubdtype(query_ids.dtype, np.integer):
            raise ValueError(
                f"query_ids must be an int array of shape ({n_q},), got {query_ids.dtype} {query_ids.shape}"
            )
        if n_q and (query_ids.min() < 0 or query_ids.max() >= n_b):
            raise ValueError(f"query_ids must lie in [0, {n_b}), got range [{query_ids.min()}, {query_ids.max()}]")

    device = torch.device(device)
    bt = _tensor(b, device)
    b_sq = (bt * bt).sum(dim=1) if metric == "l2" else None
    largest = metric == "ip"
    excluded = -math.inf if largest else math.inf
    dist_out = np.empty((n_q, k), dtype=dtype)
    idx_out = np.empty((n_q, k), dtype=np.int64)
    for s in tqdm(range(0, n_q, chunk), desc="exact top-k", unit="chunk", disable=not progress):
        e = min(s + chunk, n_q)
        qt = _tensor(q[s:e], device)
        if metric == "l2":
            # rank by ||b||^2 - 2 q.b: one fused pass (addmm), and ||q||^2, constant along
            # the row, is added to the k winners only; no (chunk, n_base, d) difference tensor
            key = torch.addmm(b_sq, qt, bt.T, beta=1.0, alpha=-2.0)
        else:
            key = qt @ bt.T
        if exclude_self:
            key[torch.arange(e - s, device=device), _tensor(query_ids[s:e], device)] = excluded
        idx = _stable_topk(key, k, largest)
        val = torch.gather(key, 1, _tensor(idx, device))
        if metric == "l2":
            # clip the tiny negatives that float cancellation leaves for near-identical vectors
            val = (val + (qt * qt).sum(dim=1, keepdim=True)).clamp_(min=0.0)
        dist_out[s:e] = val.cpu().numpy()
        idx_out[s:e] = idx
    return dist_out, idx_out


def rank_by_distance(
    embeddings,
    metric: str = "euclidean",
    exclude_self: bool = True,
    k: int | None = None,
    *,
    chunk_size: int | None = None,
    progress: bool = False,
) -> np.ndarray:
    """Every track's ranked list of the other tracks by increasing embedding distance.

    Parameters
    ----------
    embeddings : float array (n, d)
        One embedding per track (e.g. the mean over 8 test patches).
    metric : {"euclidean", "sqeuclidean", "cosine", "ip"}, default "euclidean"
        ``euclidean`` and ``sqeuclidean`` give the same order; ``cosine`` ranks by
        decreasing cosine similarity (rows are L2-normalised first; a zero row is an error);
        ``ip`` by decreasing inner product.
    exclude_self : bool, default True
        Leave each track out of its own list (the retrieval protocol).
    k : int, optional
        Keep only the first ``k`` of each list; default the whole list.
    chunk_size : int, optional
        Queries per block (see :func:`exact_topk`).
    progress : bool, default False

    Returns
    -------
    int64 array (n, k) — or (n, n − 1) with ``exclude_self`` and (n, n) without when ``k``
    is None — of track indices, nearest first, ties broken by lower index.

    Notebook: 07_evaluation.ipynb
    """
    x = _as_float_matrix("embeddings", embeddings)
    kinds = {"euclidean": "l2", "sqeuclidean": "l2", "cosine": "ip", "ip": "ip"}
    if metric not in kinds:
        raise ValueError(f"metric must be one of {sorted(kinds)}, got {metric!r}")
    if metric == "cosine":
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        if (norms == 0).any():
            raise ValueError(f"cosine metric: {int((norms == 0).sum())} embedding(s) are all zeros")
        x = x / norms
    n = x.shape[0]
    full = n - 1 if exclude_self else n
    k = full if k is None else _check_int("k", k)
    _, idx = exact_topk(x, x, k, metric=kinds[metric], chunk_size=chunk_size,
                        exclude_self=exclude_self, progress=progress)
    return idx


def rank_by_similarity(
    S, exclude_self: bool = True, k: int | None = None, *, chunk_size: int | None = None
) -> np.ndarray:
    """Ranked lists from a similarity matrix: decreasing ``S``, ties broken by lower index.

    With the oracle ``S`` restricted to the test split this is the ground truth R^S(t);
    with ``S`` applied to predicted tag probabilities it is the AT baseline's ranking.

    Parameters
    ----------
    S : float array (n_queries, n)
        Similarities, finite (any scale; only the order matters).
    exclude_self : bool, default True
        Leave query ``i`` (column ``i``) out of row ``i``; needs ``n_queries ≤ n``.
    k : int, optional
        Keep the first ``k`` of each list; default the whole list.
    chunk_size : int, optional
        Rows per block.

    Returns
    -------
    int64 array (n_queries, k) (or the whole list) of column indices, most similar first.

    Notebook: 07_evaluation.ipynb
    """
    S = _as_float_matrix("S", S)
    n_q, n = S.shape
    if exclude_self and n_q > n:
        raise ValueError(f"exclude_self needs at least as many columns as rows, got S of shape {S.shape}")
    full = n - 1 if exclude_self else n
    k = full if k is None else _check_int("k", k)
    if k > full:
        raise ValueError(f"k={k} exceeds the {full} tracks available per query")
    chunk = _default_chunk(n) if chunk_size is None else _check_int("chunk_size", chunk_size)
    out = np.empty((n_q, k), dtype=np.int64)
    for s in range(0, n_q, chunk):
        e = min(s + chunk, n_q)
        block = S[s:e].copy() if exclude_self else S[s:e]  # never write into the caller's S
        key = _tensor(block, torch.device("cpu"))
        if exclude_self:
            # S is finite, so -inf puts each query strictly after every other track
            key[torch.arange(e - s), torch.arange(s, e)] = -math.inf
        out[s:e] = _stable_topk(key, k, largest=True)
    return out


# ----------------------------------------------------------------------------------------
# confidence intervals and paired comparisons
# ----------------------------------------------------------------------------------------
class CI(NamedTuple):
    """A mean with its confidence interval (same units as the data).

    Attributes
    ----------
    mean, low, high : float
    level : float
        Confidence level, e.g. 0.95.
    method : str
        ``"t"``, ``"normal"`` or ``"bootstrap"``.

    Notebook: 07_evaluation.ipynb
    """

    mean: float
    low: float
    high: float
    level: float
    method: str

    @property
    def half_width(self) -> float:
        """Half the interval's width: the ``±`` of a table (symmetric for ``t``/``normal``).

        Notebook: 07_evaluation.ipynb
        """
        return (self.high - self.low) / 2.0


def _bootstrap_means(x: np.ndarray, n_boot: int, rng: np.random.Generator, block: int = 2**22) -> np.ndarray:
    """Means of ``n_boot`` resamples of ``x`` (with replacement), in memory-bounded blocks."""
    n = x.size
    per = max(1, block // n)
    out = np.empty(n_boot)
    for s in range(0, n_boot, per):
        e = min(s + per, n_boot)
        out[s:e] = x[rng.integers(0, n, size=(e - s, n))].mean(axis=1)
    return out


def mean_ci(x, level: float = 0.95, method: str = "t", *, n_boot: int = 10_000, seed: int = 0) -> CI:
    r"""Mean of per-query scores with a confidence interval.

    * ``"t"`` (default): $\bar x \pm t_{n-1,(1+\ell)/2}\, s/\sqrt n$ — the usual interval
      for a mean, close to exact for the thousands of queries of a test split;
    * ``"normal"``: the same with the normal quantile;
    * ``"bootstrap"``: percentile interval of ``n_boot`` resampled means (seeded); no
      symmetry assumed, useful for skewed scores such as RR on few queries.

    Parameters
    ----------
    x : float array (n,), n ≥ 2
    level : float, default 0.95
    method : {"t", "normal", "bootstrap"}
    n_boot : int, default 10000
        Resamples for the bootstrap.
    seed : int, default 0
        Seed of the bootstrap resampling.

    Returns
    -------
    CI
        ``(mean, low, high, level, method)``; ``.half_width`` is the ``±``.

    Notebook: 07_evaluation.ipynb
    """
    x = _as_vector("x", x)
    level = _check_level(level)
    if x.size < 2:
        raise ValueError(f"a confidence interval needs at least 2 values, got {x.size}")
    m = float(x.mean())
    if method in ("t", "normal"):
        se = float(x.std(ddof=1)) / math.sqrt(x.size)
        q = stats.t.ppf((1 + level) / 2, x.size - 1) if method == "t" else stats.norm.ppf((1 + level) / 2)
        return CI(m, m - q * se, m + q * se, level, method)
    if method == "bootstrap":
        n_boot = _check_int("n_boot", n_boot, minimum=100)
        means = _bootstrap_means(x, n_boot, np.random.default_rng(seed))
        lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
        return CI(m, float(lo), float(hi), level, method)
    raise ValueError(f"method must be 't', 'normal' or 'bootstrap', got {method!r}")


def format_ci(mean: float, half_width: float, decimals: int = 2, scale: float = 100.0) -> str:
    """``"5.98 ± 0.40"``: a mean and its ± as in the paper's Table 2 (percent by default).

    Parameters
    ----------
    mean, half_width : float
        In the data's units (fractions for the retrieval metrics).
    decimals : int, default 2
    scale : float, default 100
        Multiplier applied to both (100: fractions to percent).

    Returns
    -------
    str

    Notebook: 07_evaluation.ipynb
    """
    decimals = _check_int("decimals", decimals, minimum=0)
    return f"{mean * scale:.{decimals}f} ± {half_width * scale:.{decimals}f}"


class PairedTest(NamedTuple):
    """System x vs system y on the same queries (difference = x − y).

    Attributes
    ----------
    mean_diff, low, high : float
        Mean per-query difference and its paired-bootstrap interval.
    p_wilcoxon : float
        Two-sided Wilcoxon signed-rank p-value (1.0 when every difference is zero).
    n, n_nonzero : int
        Queries, and queries whose difference is not zero.
    level : float

    Notebook: 07_evaluation.ipynb
    """

    mean_diff: float
    low: float
    high: float
    p_wilcoxon: float
    n: int
    n_nonzero: int
    level: float


def paired_test(x, y, level: float = 0.95, *, n_boot: int = 10_000, seed: int = 0) -> PairedTest:
    r"""Compare two systems on the same queries: paired bootstrap CI and Wilcoxon test.

    The bootstrap resamples *queries* (the same indices for both systems), so the
    interval of $\overline{x - y}$ keeps the pairing that makes it far narrower than the two
    systems' separate intervals. The Wilcoxon signed-rank test (``scipy.stats.wilcoxon``,
    zero differences dropped — common here, when both systems miss a query entirely) gives
    the two-sided p-value; if every difference is zero the p-value is 1.

    Parameters
    ----------
    x, y : float arrays (n,)
        Per-query scores of the two systems, same query order (e.g. ``res.per_query["map"]``).
    level : float, default 0.95
    n_boot : int, default 10000
    seed : int, default 0

    Returns
    -------
    PairedTest
        ``mean_diff`` (x − y), ``low``/``high`` (bootstrap percentile interval),
        ``p_wilcoxon``, ``n`` queries, ``n_nonzero`` differences, ``level``.

    Notebook: 07_evaluation.ipynb
    """
    x, y = _as_vector("x", x), _as_vector("y", y)
    if x.shape != y.shape:
        raise ValueError(f"paired scores need the same queries: x has {x.size}, y has {y.size}")
    if x.size < 2:
        raise ValueError(f"a paired comparison needs at least 2 queries, got {x.size}")
    level = _check_level(level)
    n_boot = _check_int("n_boot", n_boot, minimum=100)
    d = x - y
    means = _bootstrap_means(d, n_boot, np.random.default_rng(seed))
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    nz = int(np.count_nonzero(d))
    p = float(stats.wilcoxon(d, zero_method="wilcox").pvalue) if nz else 1.0
    return PairedTest(float(d.mean()), float(lo), float(hi), p, int(x.size), nz, level)


# ----------------------------------------------------------------------------------------
# a system's retrieval result and Table 2
# ----------------------------------------------------------------------------------------
@dataclass
class RetrievalResult:
    """Per-query retrieval scores of one system, with Table-2 style summaries.

    Attributes
    ----------
    per_query : dict str -> float64 array (n_queries,)
        :func:`retrieval_metrics`' output (fractions in [0, 1]).
    k, n_relevant : int
        The cut-off and the relevant-set size used.
    columns : dict str -> str
        Metric key -> Table 2 column name (``"map"`` -> ``"MAP@20"`` …); derived.

    Examples
    --------
    >>> res = evaluate_embeddings(emb_test, S_test)            # doctest: +SKIP
    >>> res.row()                                               # doctest: +SKIP
    {'MAP@20': 'mean ± half-width', 'Recall@20': ..., 'RR@20': ..., 'nDCG@20': ...}
    >>> paired_test(res.per_query["map"], other.per_query["map"])  # doctest: +SKIP

    Notebook: 07_evaluation.ipynb
    """

    per_query: dict[str, np.ndarray]
    k: int = 20
    n_relevant: int = 5
    columns: dict[str, str] = field(init=False, repr=False)

    def __post_init__(self):
        missing = [m for m in METRICS if m not in self.per_query]
        if missing:
            raise ValueError(f"per_query lacks {missing}; expected keys {METRICS}")
        self.columns = {m: f"{_LABELS[m]}@{self.k}" for m in METRICS}

    @property
    def n_queries(self) -> int:
        """Number of queries evaluated.

        Notebook: 07_evaluation.ipynb
        """
        return int(self.per_query["map"].size)

    def means(self) -> dict[str, float]:
        """Mean of each metric, in percent, keyed by column name (``"MAP@20"`` …).

        Notebook: 07_evaluation.ipynb
        """
        return {self.columns[m]: 100.0 * float(self.per_query[m].mean()) for m in METRICS}

    def summary(self, level: float = 0.95, method: str = "t", **ci_kwargs) -> pd.DataFrame:
        """One row per metric: ``mean``, ``low``, ``high``, ``half_width``, in percent.

        Parameters
        ----------
        level, method, **ci_kwargs
            Passed to :func:`mean_ci`.

        Returns
        -------
        pandas.DataFrame, index ``MAP@k, Recall@k, RR@k, nDCG@k``.

        Notebook: 07_evaluation.ipynb
        """
        rows = {}
        for m in METRICS:
            ci = mean_ci(self.per_query[m], level=level, method=method, **ci_kwargs)
            rows[self.columns[m]] = {"mean": 100 * ci.mean, "low": 100 * ci.low,
                                     "high": 100 * ci.high, "half_width": 100 * ci.half_width}
        return pd.DataFrame.from_dict(rows, orient="index")

    def row(self, level: float = 0.95, method: str = "t", decimals: int = 2, **ci_kwargs) -> dict[str, str]:
        """Table 2 cells: ``{"MAP@20": "5.98 ± 0.40", …}`` (percent, ± = CI half-width).

        Parameters
        ----------
        level, method, **ci_kwargs
            Passed to :func:`mean_ci`.
        decimals : int, default 2

        Returns
        -------
        dict column name -> str

        Notebook: 07_evaluation.ipynb
        """
        out = {}
        for m in METRICS:
            ci = mean_ci(self.per_query[m], level=level, method=method, **ci_kwargs)
            out[self.columns[m]] = format_ci(ci.mean, ci.half_width, decimals=decimals)
        return out


def results_table(results: Mapping[str, RetrievalResult], level: float = 0.95, method: str = "t",
                  decimals: int = 2) -> pd.DataFrame:
    """The paper's Table 2: one row per system, ``"mean ± half-width"`` percent cells.

    Parameters
    ----------
    results : mapping system name -> RetrievalResult
        All evaluated with the same ``k``.
    level, method, decimals
        Passed to :func:`mean_ci` / :func:`format_ci`.

    Returns
    -------
    pandas.DataFrame, index = system names, columns ``MAP@k, Recall@k, RR@k, nDCG@k``.

    Notebook: 07_evaluation.ipynb
    """
    if not results:
        raise ValueError("results is empty; pass {system name: RetrievalResult}")
    ks = {r.k for r in results.values()}
    if len(ks) != 1:
        raise ValueError(f"all systems must share one cut-off k, got {sorted(ks)}")
    return pd.DataFrame.from_dict(
        {name: r.row(level=level, method=method, decimals=decimals) for name, r in results.items()},
        orient="index",
    )


def evaluate_embeddings(embeddings, S_true, k: int = 20, n_relevant: int = 5, metric: str = "euclidean",
                        *, progress: bool = False) -> RetrievalResult:
    """Retrieval evaluation of track embeddings against the oracle (the TL systems).

    Parameters
    ----------
    embeddings : float array (n, d)
        Test-split track embeddings (e.g. mean over 8 patches), in test-split order.
    S_true : float array (n, n)
        The oracle similarity among the same test tracks, same order.
    k, n_relevant : int
        Cut-off (20) and relevant-set size (5).
    metric : str, default "euclidean"
        See :func:`rank_by_distance`.
    progress : bool, default False

    Returns
    -------
    RetrievalResult

    Notebook: 07_evaluation.ipynb
    """
    S_true = _as_float_matrix("S_true", S_true)
    n = np.shape(embeddings)[0]
    if S_true.shape != (n, n):
        raise ValueError(f"S_true must be ({n}, {n}) to match {n} embeddings, got {S_true.shape}")
    pred = rank_by_distance(embeddings, metric=metric, exclude_self=True, k=min(k, n - 1), progress=progress)
    true = rank_by_similarity(S_true, exclude_self=True, k=n_relevant)
    return RetrievalResult(retrieval_metrics(pred, true, k=k, n_relevant=n_relevant), k, n_relevant)


def evaluate_similarity(S_pred, S_true, k: int = 20, n_relevant: int = 5) -> RetrievalResult:
    """Retrieval evaluation of a predicted similarity matrix (e.g. S on predicted tags: AT).

    Parameters
    ----------
    S_pred, S_true : float arrays (n, n)
        Predicted and oracle similarities among the test tracks, same order.
    k, n_relevant : int

    Returns
    -------
    RetrievalResult

    Notebook: 07_evaluation.ipynb
    """
    S_pred = _as_float_matrix("S_pred", S_pred)
    S_true = _as_float_matrix("S_true", S_true)
    if S_pred.shape != S_true.shape or S_pred.shape[0] != S_pred.shape[1]:
        raise ValueError(f"S_pred and S_true must be the same square shape, got {S_pred.shape} and {S_true.shape}")
    n = S_pred.shape[0]
    pred = rank_by_similarity(S_pred, exclude_self=True, k=min(k, n - 1))
    true = rank_by_similarity(S_true, exclude_self=True, k=n_relevant)
    return RetrievalResult(retrieval_metrics(pred, true, k=k, n_relevant=n_relevant), k, n_relevant)


# ----------------------------------------------------------------------------------------
# auto-tagging: mean-over-tags ROC AUC
# ----------------------------------------------------------------------------------------
class TagAUC(NamedTuple):
    """Mean ROC AUC over the tags that have both classes in the evaluation set.

    Attributes
    ----------
    mean : float
    per_tag : float64 array (n_tags,)
        NaN for skipped tags.
    n_skipped, n_tags : int

    Notebook: 07_evaluation.ipynb
    """

    mean: float
    per_tag: np.ndarray
    n_skipped: int
    n_tags: int


def tag_auc(y_true, y_prob) -> TagAUC:
    r"""Mean-over-tags ROC AUC of tag predictions (the auto-tagging baseline).

    Each tag's AUC is the Mann–Whitney statistic — the probability that a random positive
    track scores above a random negative one, ties counting 1/2 — computed for all tags at
    once from average ranks (equal to ``sklearn.metrics.roc_auc_score``). A tag that is
    all-positive or all-negative on the evaluation tracks has no AUC: it is skipped (NaN in
    ``per_tag``) and counted in ``n_skipped``.

    Parameters
    ----------
    y_true : {0, 1} or bool array (n_tracks, n_tags)
        Binary ground truth (binarise tag likelihoods first, e.g. ``T >= 0.5``).
    y_prob : float array (n_tracks, n_tags)
        Predicted scores (probabilities or logits; only their order matters per tag).

    Returns
    -------
    TagAUC
        ``mean`` over evaluated tags, ``per_tag`` float64 (n_tags,), ``n_skipped``, ``n_tags``.

    Notebook: 07_evaluation.ipynb
    """
    yt = np.asarray(y_true)
    yp = _as_float_matrix("y_prob", y_prob)
    if yt.shape != yp.shape or yt.ndim != 2:
        raise ValueError(f"y_true and y_prob must be the same 2-D shape, got {yt.shape} and {yp.shape}")
    if not np.isin(yt, (0, 1)).all():
        raise ValueError("y_true must be binary (0/1 or bool); binarise tag likelihoods first, e.g. T >= 0.5")
    yt = yt.astype(bool)
    n_pos = yt.sum(axis=0)
    n_neg = yt.shape[0] - n_pos
    valid = (n_pos > 0) & (n_neg > 0)
    per_tag = np.full(yt.shape[1], np.nan)
    if valid.any():
        ranks = stats.rankdata(yp[:, valid], axis=0)  # average ranks: ties count one half
        pos_rank_sum = (ranks * yt[:, valid]).sum(axis=0)
        p, q = n_pos[valid].astype(np.float64), n_neg[valid].astype(np.float64)
        per_tag[valid] = (pos_rank_sum - p * (p + 1) / 2) / (p * q)
    n_skipped = int((~valid).sum())
    mean = float(np.nanmean(per_tag)) if valid.any() else float("nan")
    return TagAUC(mean, per_tag, n_skipped, int(yt.shape[1]))


# ----------------------------------------------------------------------------------------
# Constraints Fulfillment Rate (Lu et al. 2017)
# ----------------------------------------------------------------------------------------
class CFR(NamedTuple):
    """Share of fulfilled constraints with its binomial standard error.

    Attributes
    ----------
    rate, se : float
        In [0, 1] (not percent).
    n : int
        Triplets.

    Notebook: 08_triplet_matchnet.ipynb
    """

    rate: float
    se: float
    n: int


def constraints_fulfillment_rate(d_ap, d_an) -> CFR:
    r"""Constraints Fulfillment Rate: the share of triplets with $d(a, p) < d(a, n)$.

    A tie is *not* fulfilled (a constant metric scores 0, not 0.5). The standard error is
    the binomial one, $\sqrt{\hat c(1 - \hat c)/n}$, treating triplets as independent.

    Parameters
    ----------
    d_ap, d_an : float arrays (n_triplets,)
        Dissimilarity of anchor–positive and anchor–negative of each triplet (a distance,
        or Triplet MatchNet's f ∈ (0, 1); for a *similarity*, pass its negation).

    Returns
    -------
    CFR
        ``rate`` in [0, 1], ``se``, ``n``.

    Notebook: 08_triplet_matchnet.ipynb
    """
    d_ap, d_an = _as_vector("d_ap", d_ap), _as_vector("d_an", d_an)
    if d_ap.shape != d_an.shape:
        raise ValueError(f"d_ap and d_an must have one value per triplet, got {d_ap.size} and {d_an.size}")
    if d_ap.size == 0:
        raise ValueError("no triplets given")
    rate = float(np.mean(d_ap < d_an))
    return CFR(rate, math.sqrt(rate * (1.0 - rate) / d_ap.size), int(d_ap.size))


def kfold_indices(n: int, n_folds: int = 10, *, groups=None, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Seeded k-fold split of ``n`` items (triplets), optionally keeping groups together.

    Parameters
    ----------
    n : int
        Number of items.
    n_folds : int, default 10
    groups : array (n,), optional
        A group label per item (e.g. the anchor song): a group never straddles train and
        test, so a model cannot score by memorising a song it was trained on. Groups are
        shuffled and dealt to folds greedily by size, so folds are balanced in items.
    seed : int, default 0

    Returns
    -------
    list of ``(train_idx, test_idx)`` int64 arrays, one per fold; the test sets partition
    ``range(n)``.

    Notebook: 08_triplet_matchnet.ipynb
    """
    n = _check_int("n", n)
    n_folds = _check_int("n_folds", n_folds, minimum=2)
    rng = np.random.default_rng(seed)
    if groups is None:
        if n_folds > n:
            raise ValueError(f"n_folds={n_folds} exceeds the {n} items")
        fold_of = np.empty(n, dtype=np.int64)
        fold_of[rng.permutation(n)] = np.arange(n) % n_folds
    else:
        groups = np.asarray(groups)
        if groups.shape != (n,):
            raise ValueError(f"groups must have shape ({n},), got {groups.shape}")
        labels, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
        if n_folds > labels.size:
            raise ValueError(f"n_folds={n_folds} exceeds the {labels.size} distinct groups")
        # shuffle, then biggest groups first into the currently smallest fold (stable
        # sort keeps the shuffled order among equal sizes, so the seed matters)
        order = rng.permutation(labels.size)
        order = order[np.argsort(-counts[order], kind="stable")]
        sizes = np.zeros(n_folds, dtype=np.int64)
        group_fold = np.empty(labels.size, dtype=np.int64)
        for g in order:
            f = int(np.argmin(sizes))
            group_fold[g] = f
            sizes[f] += counts[g]
        fold_of = group_fold[inverse]
    all_idx = np.arange(n)
    return [(all_idx[fold_of != f], all_idx[fold_of == f]) for f in range(n_folds)]


class KFoldCFR(NamedTuple):
    """CFR over k folds: mean ± standard deviation across folds (Lu et al. 2017's form).

    Attributes
    ----------
    mean, std : float
        Over folds; ``std`` with ddof = 1.
    per_fold : float64 array (n_folds,)
    n_test : int array (n_folds,)
        Test triplets per fold.

    Notebook: 08_triplet_matchnet.ipynb
    """

    mean: float
    std: float
    per_fold: np.ndarray
    n_test: np.ndarray


def kfold_cfr(
    fit_predict: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
    n: int,
    n_folds: int = 10,
    *,
    groups=None,
    train_fraction: float = 1.0,
    seed: int = 0,
    progress: bool = True,
) -> KFoldCFR:
    """k-fold cross-validated Constraints Fulfillment Rate of a metric-learning method.

    For each fold, ``fit_predict(train_idx, test_idx)`` learns a metric on the training
    triplets and returns ``(d_ap, d_an)`` for the test triplets; the fold's CFR is
    :func:`constraints_fulfillment_rate` of those. ``train_fraction < 1`` keeps a seeded
    random share of each fold's training triplets: CFR against that share is the 2017
    slides' generalisation curve.

    Parameters
    ----------
    fit_predict : callable ``(train_idx, test_idx) -> (d_ap, d_an)``
        Indices into the caller's triplet array; the arrays returned have ``len(test_idx)``
        entries.
    n : int
        Number of triplets.
    n_folds : int, default 10
    groups : array (n,), optional
        See :func:`kfold_indices`.
    train_fraction : float in (0, 1], default 1.0
    seed : int, default 0
        Seeds the folds and the training subsample.
    progress : bool, default True

    Returns
    -------
    KFoldCFR
        ``mean`` and ``std`` (ddof = 1) over folds, ``per_fold`` CFRs, ``n_test`` per fold.

    Notebook: 08_triplet_matchnet.ipynb
    """
    if not callable(fit_predict):
        raise TypeError(f"fit_predict must be callable (train_idx, test_idx) -> (d_ap, d_an), got {fit_predict!r}")
    if not isinstance(train_fraction, (float, int)) or not 0.0 < train_fraction <= 1.0:
        raise ValueError(f"train_fraction must be in (0, 1], got {train_fraction!r}")
    folds = kfold_indices(n, n_folds, groups=groups, seed=seed)
    rng = np.random.default_rng([seed, 1])  # a stream of its own, apart from the folds'
    rates, sizes = [], []
    for f, (train_idx, test_idx) in enumerate(tqdm(folds, desc="k-fold CFR", unit="fold", disable=not progress)):
        if train_fraction < 1.0:
            m = max(1, int(round(train_fraction * train_idx.size)))
            train_idx = np.sort(rng.choice(train_idx, size=m, replace=False))
        d_ap, d_an = fit_predict(train_idx, test_idx)
        if np.shape(d_ap) != (test_idx.size,) or np.shape(d_an) != (test_idx.size,):
            raise ValueError(
                f"fold {f}: fit_predict must return two arrays of shape ({test_idx.size},), "
                f"got {np.shape(d_ap)} and {np.shape(d_an)}"
            )
        rates.append(constraints_fulfillment_rate(d_ap, d_an).rate)
        sizes.append(test_idx.size)
    rates = np.asarray(rates)
    return KFoldCFR(float(rates.mean()), float(rates.std(ddof=1)), rates, np.asarray(sizes))


# ----------------------------------------------------------------------------------------
# approximate search: FAISS
# ----------------------------------------------------------------------------------------
def _faiss():
    try:
        import faiss
    except ImportError as err:  # pragma: no cover - faiss-cpu is in requirements.txt
        raise ImportError("approximate search needs FAISS: pip install faiss-cpu (see requirements.txt)") from err
    return faiss


class FaissIndex:
    """A FAISS index with the search parameters and the metric convention of :func:`exact_topk`.

    Build it with :func:`build_faiss_index`. ``search`` returns squared L2 distances
    (ascending) or inner products (descending), as :func:`exact_topk` does, and ``-1``
    indices where the index found fewer than ``k`` neighbours.

    Attributes
    ----------
    index : faiss.Index
        The underlying FAISS object (``IndexHNSWFlat``, ``IndexIVFFlat`` or ``IndexFlat``).
    kind : {"hnsw", "ivf", "flat"}
    metric : {"l2", "ip"}

    Notebook: 07_evaluation.ipynb
    """

    def __init__(self, index, kind: str, metric: str, _owned=None):
        self.index, self.kind, self.metric = index, kind, metric
        self._owned = _owned

    def __repr__(self) -> str:
        return (f"FaissIndex(kind={self.kind!r}, metric={self.metric!r}, ntotal={self.ntotal}, "
                f"dim={self.dim}, params={self.params()})")

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
        if self.kind == "ivf":
            return {"nprobe": int(self.index.nprobe), "nlist": int(self.index.nlist)}
        return {}

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
            self.index.hnsw.efSearch = _check_int("ef_search", ef_search)
        if nprobe is not None:
            if self.kind != "ivf":
                raise ValueError(f"nprobe applies to an IVF index, this one is {self.kind!r}")
            self.index.nprobe = min(_check_int("nprobe", nprobe), int(self.index.nlist))
        return self

    def search(self, queries, k: int, *, chunk_size: int = 4096, progress: bool = False):
        """Approximate top-``k`` neighbours of each query.

        Parameters
        ----------
        queries : float array (n_queries, dim)
            Converted to float32.
        k : int
            ``1 ≤ k ≤ ntotal``.
        chunk_size : int, default 4096
            Queries per FAISS call (drives the progress bar).
        progress : bool, default False

        Returns
        -------
        dist : float32 array (n_queries, k)
            Squared L2 distances (ascending) or inner products (descending).
        idx : int64 array (n_queries, k)
            Base rows; ``-1`` where fewer than ``k`` were found.

        Notebook: 07_evaluation.ipynb
        """
        q = np.ascontiguousarray(_as_float_matrix("queries", queries), dtype=np.float32)
        if q.shape[1] != self.dim:
            raise ValueError(f"queries have dimension {q.shape[1]} but the index holds {self.dim}-d vectors")
        k = _check_int("k", k)
        if k > self.ntotal:
            raise ValueError(f"k={k} exceeds the {self.ntotal} vectors in the index")
        dist = np.empty((q.shape[0], k), dtype=np.float32)
        idx = np.empty((q.shape[0], k), dtype=np.int64)
        for s in tqdm(range(0, q.shape[0], chunk_size), desc="faiss search", unit="chunk", disable=not progress):
            dist[s:s + chunk_size], idx[s:s + chunk_size] = self.index.search(q[s:s + chunk_size], k)
        return dist, idx


def build_faiss_index(
    base,
    kind: str = "hnsw",
    metric: str = "l2",
    *,
    M: int = 32,
    ef_construction: int = 80,
    ef_search: int = 128,
    nlist: int | None = None,
    nprobe: int = 16,
    train_size: int | None = None,
    seed: int = 0,
    chunk_size: int = 100_000,
    progress: bool = False,
) -> FaissIndex:
    """Build an approximate nearest-neighbour index (FAISS) over ``base``.

    * ``"hnsw"`` — ``IndexHNSWFlat``: a navigable small-world graph with ``M`` links per
      node; no training; recall rises with ``ef_construction`` (build) and ``ef_search``
      (query; the default 128 is several times k = 20: with a beam close to k, recall on
      hard, high-dimensional data drops well below 0.9). The graph built by several threads
      depends on their timing, so results can differ slightly between runs.
    * ``"ivf"`` — ``IndexIVFFlat``: k-means into ``nlist`` cells (default ``4·√n``, a
      common rule), a query scans its ``nprobe`` nearest cells; k-means is seeded and
      trained on ``train_size`` seeded rows (default ``min(n, 64·nlist)``).
    * ``"flat"`` — ``IndexFlat``: exact brute force, FAISS's own peer for :func:`exact_topk`.

    Parameters
    ----------
    base : float array (n, d)
        Converted to contiguous float32 (FAISS's type).
    kind : {"hnsw", "ivf", "flat"}, default "hnsw"
    metric : {"l2", "ip"}, default "l2"
        For L2-normalised embeddings both give the same order.
    M, ef_construction, ef_search : int
        HNSW parameters.
    nlist, nprobe, train_size : int
        IVF parameters.
    seed : int, default 0
    chunk_size : int, default 100000
        Rows added per call (bounds the float32 copy, drives the progress bar).
    progress : bool, default False

    Returns
    -------
    FaissIndex

    Notebook: 07_evaluation.ipynb
    """
    faiss = _faiss()
    if kind not in ("hnsw", "ivf", "flat"):
        raise ValueError(f"kind must be 'hnsw', 'ivf' or 'flat', got {kind!r}")
    if metric not in ("l2", "ip"):
        raise ValueError(f"metric must be 'l2' or 'ip', got {metric!r}")
    base = np.asarray(base)
    if base.ndim != 2 or base.shape[0] == 0:
        raise ValueError(f"base must be a non-empty 2-D array (n, d), got shape {base.shape}")
    n, d = base.shape
    fmetric = faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT
    chunk_size = _check_int("chunk_size", chunk_size)

    def rows(s: int, e: int) -> np.ndarray:
        return np.ascontiguousarray(_as_float_matrix("base", base[s:e]), dtype=np.float32)

    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, _check_int("M", M, minimum=2), fmetric)
        index.hnsw.efConstruction = _check_int("ef_construction", ef_construction)
        index.hnsw.efSearch = _check_int("ef_search", ef_search)
    elif kind == "ivf":
        nlist = max(1, int(round(4 * math.sqrt(n)))) if nlist is None else _check_int("nlist", nlist)
        if nlist > n:
            raise ValueError(f"nlist={nlist} exceeds the {n} vectors to index")
        quantizer = faiss.IndexFlatL2(d) if metric == "l2" else faiss.IndexFlatIP(d)
        index = faiss.IndexIVFFlat(quantizer, d, nlist, fmetric)
        index.cp.seed = int(seed)
        n_train = min(n, 64 * nlist) if train_size is None else min(n, _check_int("train_size", train_size))
        if n_train < nlist:
            raise ValueError(f"train_size={n_train} is below nlist={nlist}: k-means needs one point per cell")
        pick = np.sort(np.random.default_rng(seed).choice(n, size=n_train, replace=False))
        train = np.ascontiguousarray(_as_float_matrix("base", base[pick]), dtype=np.float32)
        index.train(train)
        del train
        index.nprobe = min(_check_int("nprobe", nprobe), nlist)
    else:
        index = faiss.IndexFlatL2(d) if metric == "l2" else faiss.IndexFlatIP(d)
    for s in tqdm(range(0, n, chunk_size), desc=f"faiss {kind} add", unit="chunk", disable=not progress):
        index.add(rows(s, min(s + chunk_size, n)))
    # the wrapper also holds the IVF quantizer: the C++ index points to it, so it must live
    # as long as the index does
    return FaissIndex(index, kind, metric, _owned=quantizer if kind == "ivf" else None)


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
    a = _as_index_matrix("approx_idx", approx_idx)
    e = _as_index_matrix("exact_idx", exact_idx)
    if a.shape[0] != e.shape[0]:
        raise ValueError(f"approx_idx has {a.shape[0]} queries but exact_idx has {e.shape[0]}")
    k = e.shape[1] if k is None else _check_int("k", k)
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


# ----------------------------------------------------------------------------------------
# Table 2: the systems and their training configs, the paper's numbers, reference rows,
# paired comparisons
# ----------------------------------------------------------------------------------------
#: The paper's Table 2 (Prétet et al. 2020, §4.3): percent, ``(mean, 95 % CI half-width)``
#: over the ≈ 2,900 test queries of a 14,246-track private catalog.
PAPER_TABLE2: dict[str, dict[str, tuple[float, float]]] = {
    "AT Baseline": {"MAP@20": (4.50, 0.34), "Recall@20": (12.57, 0.66),
                    "RR@20": (15.62, 1.07), "nDCG@20": (11.30, 0.69)},
    "TL Neighbors": {"MAP@20": (5.58, 0.41), "Recall@20": (12.73, 0.67),
                     "RR@20": (19.18, 1.23), "nDCG@20": (13.41, 0.80)},
    "TL Random uniform": {"MAP@20": (5.39, 0.38), "Recall@20": (15.01, 0.70),
                          "RR@20": (17.86, 1.12), "nDCG@20": (13.50, 0.76)},
    "TL Distance-based": {"MAP@20": (5.98, 0.40), "Recall@20": (15.79, 0.73),
                          "RR@20": (19.89, 1.19), "nDCG@20": (14.41, 0.78)},
    "TL Autopool": {"MAP@20": (7.99, 0.51), "Recall@20": (17.74, 0.79),
                    "RR@20": (24.68, 1.34), "nDCG@20": (17.95, 0.92)},
}

#: Mean-over-tag ROC AUC of the paper's AT baseline on its own tagging task (§4.3).
PAPER_AT_AUC: float = 0.79

#: Test queries behind the paper's Table 2 ("approximately 2,900 test tracks", §4.3).
PAPER_N_TEST_QUERIES: int = 2900

#: Training fields shared by every row of Table 2, at notebook 07's defaults: a CPU lesson
#: that trains six systems in a few minutes (see 07_evaluation.ipynb for what it takes to
#: beat the untrained network). The papers' scale is :func:`mrlib.train.paper_config`.
TABLE2_DEFAULTS: dict = {
    "catalog": "synthetic",
    "n_tracks": 2000,
    "catalog_seed": 0,
    "catalog_kwargs": {"duration_s": 15.0},
    "patch_len": 64,
    "width": 0.125,
    "lr": 1e-3,
    "epochs": 16,
    "steps_per_epoch": 25,
    "patience": 0,
    "sampler": "shuffled",
    # 48 triplets (144 patches) per offline step, 144 tracks per online / AT step: every row
    # sees the same number of patches per step (16 triplets were too few for Distance-based
    # and Neighbors mining to learn in 400 steps: validation MAP@20 0.084 vs 0.118 with 48)
    "negatives_per_batch": 48,
    "batch_tracks": 144,
    "seed": 0,
}

# What makes each row the row it is (system, mining; the untrained reference trains for 0
# epochs), and its run folder's name. ``common`` may not change these.
_TABLE2_ROWS: dict[str, dict] = {
    "AT Baseline": {"system": "at", "mining": "distance", "run_name": "at"},
    "TL Neighbors": {"system": "tl", "mining": "neighbors", "run_name": "tl_neighbors"},
    "TL Random uniform": {"system": "tl", "mining": "uniform", "run_name": "tl_uniform"},
    "TL Distance-based": {"system": "tl", "mining": "distance", "run_name": "tl_distance"},
    "TL Autopool": {"system": "tl_autopool", "mining": "distance", "run_name": "tl_autopool"},
    "TL Online semi-hard": {"system": "tl", "mining": "online-semihard", "run_name": "tl_online_semihard"},
    "TL untrained": {"system": "tl", "mining": "distance", "epochs": 0, "run_name": "tl_untrained"},
}

#: Row names of :func:`table2_systems`, in table order.
TABLE2_ROWS: tuple[str, ...] = tuple(_TABLE2_ROWS)


def table2_systems(*, rows=None, **common) -> dict[str, dict]:
    """The trained rows of Table 2 as :class:`mrlib.train.TrainConfig` fields: one source of truth.

    Rows (Prétet et al. 2020, Table 2, plus the reference and the paper's future work):

    ==========================  ===============  ====================  =============
    row                         ``system``       ``mining``            ``run_name``
    ==========================  ===============  ====================  =============
    AT Baseline                 ``at``           (unused)              ``at``
    TL Neighbors                ``tl``           ``neighbors``         ``tl_neighbors``
    TL Random uniform           ``tl``           ``uniform``           ``tl_uniform``
    TL Distance-based           ``tl``           ``distance``          ``tl_distance``
    TL Autopool                 ``tl_autopool``  ``distance`` (§3.3)   ``tl_autopool``
    TL Online semi-hard         ``tl``           ``online-semihard``   ``tl_online_semihard``
    TL untrained                ``tl``           ``epochs = 0``        ``tl_untrained``
    ==========================  ===============  ====================  =============

    Every row shares :data:`TABLE2_DEFAULTS` (catalog, size, patch length, width, learning
    rate, training budget, seed …), updated by ``common``; so ``TrainConfig(**cfg)`` trains a
    row, and a sweep that runs ``06_training.ipynb`` once per row with these fields (each
    in ``<table2_dir>/<run_name>``) reproduces notebook 07's table exactly (same seeds, same
    numbers on the same device). The untrained row keeps ``epochs = 0`` whatever ``common``
    says: it is the network at initialisation, embedded with the same test patches.

    Parameters
    ----------
    rows : sequence of str, optional
        A subset of :data:`TABLE2_ROWS` (default all, in table order).
    **common
        :class:`~mrlib.train.TrainConfig` fields applied to every row, e.g. ``n_tracks=1000,
        epochs=20, device="cuda"``. ``system``, ``mining`` and ``run_name`` define the rows
        and are refused here.

    Returns
    -------
    dict row name -> dict of TrainConfig fields
        Plain, JSON-serialisable dicts with the same keys for every row (print them as a
        table, record them beside the results). Each is validated by building its
        ``TrainConfig``.

    Raises
    ------
    ValueError
        For an unknown row, a row-defining field in ``common``, or a field value that
        ``TrainConfig`` rejects.
    TypeError
        For an unknown field name.

    Examples
    --------
    >>> cfgs = table2_systems(epochs=2)
    >>> cfgs["TL Distance-based"]["mining"], cfgs["TL untrained"]["epochs"]
    ('distance', 0)

    Notebook: 07_evaluation.ipynb
    """
    from mrlib.train import TrainConfig  # lazy: evaluation alone does not need the trainer

    if rows is None:
        rows = TABLE2_ROWS
    if isinstance(rows, str):
        rows = [rows]
    unknown = [r for r in rows if r not in _TABLE2_ROWS]
    if unknown:
        raise ValueError(f"unknown Table 2 row(s) {unknown}; rows are {list(TABLE2_ROWS)}")
    fixed = {"system", "mining", "run_name"} & set(common)
    if fixed:
        raise ValueError(f"{sorted(fixed)} define the rows of Table 2 and cannot be set for all "
                         f"of them; choose rows with rows=[...] instead")
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    typos = sorted(set(common) - known)
    if typos:
        raise TypeError(f"unknown TrainConfig field(s) {typos}; known: {sorted(known)}")
    out = {}
    for name in rows:
        cfg = {**TABLE2_DEFAULTS, **common, **_TABLE2_ROWS[name]}
        try:
            TrainConfig(**cfg)
        except (TypeError, ValueError) as err:
            raise ValueError(f"Table 2 row {name!r}: {err}") from None
        # copies: a caller editing one row must not edit the others (or the defaults)
        out[name] = json.loads(json.dumps(cfg))
    return out


def random_ranking(n: int, k: int | None = None, *, seed: int = 0) -> np.ndarray:
    """A random system: each query's list is a seeded random order of the other tracks.

    The floor of Table 2: expected Recall@k is ``k / (n − 1)``, expected RR@k is
    ``Σ_{i ≤ k} P(first hit at i) / i``.

    Parameters
    ----------
    n : int, n ≥ 2
        Tracks (each is a query against the other ``n − 1``).
    k : int, optional
        Keep the first ``k`` of each list (default ``n − 1``).
    seed : int, default 0

    Returns
    -------
    int64 array (n, k)
        Row ``i`` never contains ``i`` and has no repeated index.

    Notebook: 07_evaluation.ipynb
    """
    n = _check_int("n", n, minimum=2)
    k = n - 1 if k is None else _check_int("k", k)
    if k > n - 1:
        raise ValueError(f"k={k} exceeds the {n - 1} other tracks")
    rng = np.random.default_rng(seed)
    # the argsort of i.i.d. uniforms is a uniform random permutation; the query's own key is
    # set to +inf so that it sorts last and is cut off
    keys = rng.random((n, n))
    np.fill_diagonal(keys, np.inf)
    return np.argsort(keys, axis=1, kind="stable")[:, :k].astype(np.int64)


def holm(pvalues) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values (step-down; controls the family-wise error rate).

    With the ``m`` p-values sorted, ``p_(1) ≤ … ≤ p_(m)``, the adjusted value of ``p_(i)`` is
    ``max_{j ≤ i} min(1, (m − j + 1) p_(j))``; reject where it is below α.

    Parameters
    ----------
    pvalues : float array (m,), values in [0, 1]

    Returns
    -------
    float64 array (m,), in the input's order.

    Notebook: 07_evaluation.ipynb
    """
    p = _as_vector("pvalues", pvalues)
    if ((p < 0) | (p > 1)).any():
        raise ValueError("p-values must lie in [0, 1]")
    m = p.size
    order = np.argsort(p, kind="stable")
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = adjusted
    return out


def compare_systems(results: Mapping[str, RetrievalResult], reference: str, *,
                    metrics=METRICS, level: float = 0.95, alpha: float = 0.05,
                    correction: str | None = "holm", n_boot: int = 10_000, seed: int = 0) -> pd.DataFrame:
    """Every system against one reference, paired over the same queries (Table 2's marks).

    For each other system and metric: the mean per-query difference (system − reference, in
    percent) with its paired-bootstrap interval and the Wilcoxon signed-rank p-value
    (:func:`paired_test`), the p-value adjusted for the number of comparisons in the table
    (Holm), and whether the two systems' own ``level`` confidence intervals (Student t,
    :func:`mean_ci`) are disjoint — the stricter, visual criterion of a table with ± columns.

    Parameters
    ----------
    results : mapping name -> RetrievalResult
        Evaluated on the same queries in the same order.
    reference : str
        A key of ``results``.
    metrics : sequence of str, default :data:`METRICS`
    level : float, default 0.95
    alpha : float, default 0.05
        Level of the ``significant`` column (on the adjusted p-value).
    correction : {"holm", None}, default "holm"
    n_boot : int, default 10000
    seed : int, default 0
        Seed of the bootstrap (the same for every pair).

    Returns
    -------
    pandas.DataFrame
        Index ``(system, metric column)``; columns ``mean_diff``, ``low``, ``high`` (percent),
        ``p_wilcoxon``, ``p_adjusted``, ``significant`` (bool), ``ci_disjoint`` (bool),
        ``better`` (bool: significant and ``mean_diff > 0``).

    Notebook: 07_evaluation.ipynb
    """
    if reference not in results:
        raise ValueError(f"reference {reference!r} is not one of the systems {list(results)}")
    bad = [m for m in metrics if m not in METRICS]
    if bad:
        raise ValueError(f"unknown metric(s) {bad}; choose from {METRICS}")
    if correction not in ("holm", None):
        raise ValueError(f"correction must be 'holm' or None, got {correction!r}")
    level = _check_level(level)
    _check_level(alpha)
    ref = results[reference]
    rows, index = [], []
    for name, res in results.items():
        if name == reference:
            continue
        if res.n_queries != ref.n_queries:
            raise ValueError(f"{name!r} has {res.n_queries} queries, the reference {ref.n_queries}: "
                             "paired tests need the same queries")
        for m in metrics:
            x, y = res.per_query[m], ref.per_query[m]
            t = paired_test(x, y, level=level, n_boot=n_boot, seed=seed)
            cx, cy = mean_ci(x, level=level), mean_ci(y, level=level)
            rows.append({"mean_diff": 100 * t.mean_diff, "low": 100 * t.low, "high": 100 * t.high,
                         "p_wilcoxon": t.p_wilcoxon,
                         "ci_disjoint": bool(cx.low > cy.high or cx.high < cy.low)})
            index.append((name, res.columns[m]))
    if not rows:
        raise ValueError("results holds only the reference: nothing to compare")
    df = pd.DataFrame(rows, index=pd.MultiIndex.from_tuples(index, names=["system", "metric"]))
    p = df["p_wilcoxon"].to_numpy()
    df["p_adjusted"] = holm(p) if correction == "holm" else p
    df["significant"] = df["p_adjusted"] < alpha
    df["better"] = df["significant"] & (df["mean_diff"] > 0)
    return df[["mean_diff", "low", "high", "p_wilcoxon", "p_adjusted", "significant", "ci_disjoint", "better"]]


def results_record(results: Mapping[str, RetrievalResult], level: float = 0.95, method: str = "t",
                   decimals: int | None = 4) -> dict:
    """Table 2 as plain JSON for :func:`mrlib.suite.record`: row -> metric -> mean and CI.

    Parameters
    ----------
    results : mapping name -> RetrievalResult
    level, method
        Passed to :func:`mean_ci`.
    decimals : int or None, default 4
        Rounding of the percentages (None: full precision).

    Returns
    -------
    dict
        ``{row: {"MAP@20": {"mean": 5.98, "ci": 0.40, "low": …, "high": …}, …,
        "n_queries": n}}``, values in percent; ``ci`` is the half-width (the table's ±).

    Notebook: 07_evaluation.ipynb
    """
    if not results:
        raise ValueError("results is empty; pass {system name: RetrievalResult}")

    def r(v: float) -> float:
        return float(v) if decimals is None else round(float(v), decimals)

    out = {}
    for name, res in results.items():
        s = res.summary(level=level, method=method)
        row = {col: {"mean": r(s.loc[col, "mean"]), "ci": r(s.loc[col, "half_width"]),
                     "low": r(s.loc[col, "low"]), "high": r(s.loc[col, "high"])} for col in s.index}
        row["n_queries"] = res.n_queries
        out[str(name)] = row
    return out
