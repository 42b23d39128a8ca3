"""Evaluation: retrieval metrics, confidence intervals, paired tests, tag AUC, CFR, search at scale.

Retrieval protocol (Prétet et al. 2020, §4.2): every test track is a query against all the
other test tracks. The ground truth is the oracle ranked list R^S(t) restricted to the test
split (self excluded, ties broken by index); its first ``n_relevant = 5`` tracks are the
relevant ones, graded 5, 4, 3, 2, 1 for nDCG; a system's ranked list is cut at ``k = 20``.
Per-query scores are in [0, 1]; tables report them as percentages with a 95 % confidence
interval, in the form of the paper's Table 2 (``"5.98 ± 0.40"``).

The statistics (intervals, paired tests, tag AUC, the Constraints Fulfillment Rate of Lu et
al. 2017) live in :mod:`mrlib.stats` and exact / approximate (FAISS) search in
:mod:`mrlib.search`; both are re-exported here, so ``mrlib.evaluate`` is the one import a
notebook needs. The training configurations of Table 2's rows are in :mod:`mrlib.table2`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
import pandas as pd

from mrlib.checks import as_float_matrix, as_index_matrix, check_choice, check_int, check_level
from mrlib.search import (FaissIndex, build_faiss_index, exact_topk, rank_by_distance, rank_by_similarity,
                          recall_at_k)
from mrlib.stats import (CFR, CI, PairedTest, TagAUC, constraints_fulfillment_rate, format_ci, holm,
                         kfold_indices, mean_ci, paired_test, tag_auc)

__all__ = [
    "METRICS", "retrieval_metrics", "rank_by_distance", "rank_by_similarity", "RetrievalResult",
    "evaluate_embeddings", "evaluate_similarity", "results_table", "CI", "mean_ci", "format_ci",
    "PairedTest", "paired_test", "TagAUC", "tag_auc", "CFR", "constraints_fulfillment_rate",
    "kfold_indices", "exact_topk", "FaissIndex", "build_faiss_index",
    "recall_at_k", "PAPER_TABLE2", "PAPER_AT_AUC", "PAPER_N_TEST_QUERIES", "random_ranking", "holm",
    "compare_systems",
]

#: Keys of :func:`retrieval_metrics`' dict, in the column order of the paper's Table 2.
METRICS: tuple[str, ...] = ("map", "recall", "rr", "ndcg")
_LABELS = {"map": "MAP", "recall": "Recall", "rr": "RR", "ndcg": "nDCG"}


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
    k = check_int("k", k)
    n_relevant = check_int("n_relevant", n_relevant)
    pred = as_index_matrix("pred_ranked", pred_ranked)[:, :k]
    rel = as_index_matrix("true_ranked", true_ranked)[:, :n_relevant]   # the relevant tracks
    if pred.shape[0] != rel.shape[0]:
        raise ValueError(f"pred_ranked has {pred.shape[0]} queries but true_ranked has {rel.shape[0]}")
    if rel.shape[1] < n_relevant:
        raise ValueError(f"true_ranked has {rel.shape[1]} columns, fewer than n_relevant={n_relevant}")
    if (rel < 0).any():
        raise ValueError("true_ranked's first n_relevant columns must be valid (non-negative) indices")
    for name, a in (("pred_ranked", pred), ("true_ranked", rel)):
        s = np.sort(a, axis=1)
        dup = ((s[:, 1:] == s[:, :-1]) & (s[:, 1:] >= 0)).any(axis=1)   # negatives are padding
        if dup.any():
            raise ValueError(f"{name} repeats a track within a list (first in query {int(np.argmax(dup))})")

    # match[q, i, j]: the system's i-th track is the oracle's j-th: (n_q, k, R) booleans,
    # 2,900 x 20 x 5 at paper scale, so the broadcast is cheap and needs no per-query loop.
    match = pred[:, :, None] == rel[:, None, :]
    hits = match.any(axis=2).astype(np.float64)                     # (n_q, depth)
    gains = match.astype(np.float64) @ np.arange(n_relevant, 0, -1, dtype=np.float64)
    ranks = np.arange(1, pred.shape[1] + 1, dtype=np.float64)
    n_ideal = min(k, n_relevant)
    ideal_ranks = np.arange(1, n_ideal + 1, dtype=np.float64)
    idcg = float(np.sum(np.arange(n_relevant, n_relevant - n_ideal, -1) / np.log2(1.0 + ideal_ranks)))
    # RR: hits / ranks is 1 / i at a hit and 0 elsewhere, so its row maximum is 1 / (first hit),
    # and 0 for a row without one (or without columns)
    return {"map": (hits * (np.cumsum(hits, axis=1) / ranks)).sum(axis=1) / n_ideal,
            "recall": hits.sum(axis=1) / n_relevant,
            "rr": (hits / ranks).max(axis=1, initial=0.0),
            "ndcg": gains @ (1.0 / np.log2(1.0 + ranks)) / idcg}


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

    def summary(self) -> pd.DataFrame:
        """One row per metric: ``mean``, ``low``, ``high``, ``half_width`` of the 95 % t interval
        (:func:`mean_ci`), in percent.

        Returns
        -------
        pandas.DataFrame, index ``MAP@k, Recall@k, RR@k, nDCG@k``.

        Notebook: 07_evaluation.ipynb
        """
        cis = [mean_ci(self.per_query[m]) for m in METRICS]
        return pd.DataFrame({k: [100 * getattr(ci, k) for ci in cis]
                             for k in ("mean", "low", "high", "half_width")},
                            index=[self.columns[m] for m in METRICS])

    def row(self) -> dict[str, str]:
        """Table 2 cells: ``{"MAP@20": "5.98 ± 0.40", …}`` (percent to 2 decimals, ± = the
        half-width of :meth:`summary`'s interval).

        Returns
        -------
        dict column name -> str

        Notebook: 07_evaluation.ipynb
        """
        s = self.summary()   # already in percent
        return {col: format_ci(s.at[col, "mean"], s.at[col, "half_width"], scale=1.0) for col in s.index}


def results_table(results: Mapping[str, RetrievalResult]) -> pd.DataFrame:
    """The paper's Table 2: one row per system, ``"mean ± half-width"`` percent cells
    (:meth:`RetrievalResult.row`).

    Parameters
    ----------
    results : mapping system name -> RetrievalResult
        All evaluated with the same ``k``.

    Returns
    -------
    pandas.DataFrame, index = system names, columns ``MAP@k, Recall@k, RR@k, nDCG@k``.

    Notebook: 07_evaluation.ipynb
    """
    if not results:
        raise ValueError("results is empty; pass {system name: RetrievalResult}")
    _check_results(results)
    ks = {r.k for r in results.values()}
    if len(ks) != 1:
        raise ValueError(f"all systems must share one cut-off k, got {sorted(ks)}")
    return pd.DataFrame.from_dict({name: r.row() for name, r in results.items()}, orient="index")


def _check_results(results) -> None:
    """``TypeError`` unless ``results`` maps system names to :class:`RetrievalResult`."""
    if not isinstance(results, Mapping):
        raise TypeError(f"results must be a mapping {{system name: RetrievalResult}}, got {type(results).__name__}")
    for name, r in results.items():
        if not isinstance(r, RetrievalResult):
            raise TypeError(f"results[{name!r}] must be a RetrievalResult (from evaluate_embeddings or "
                            f"evaluate_similarity), got {type(r).__name__}")


def _scored(rank, S_true: np.ndarray, k, n_relevant) -> RetrievalResult:
    """The lists ``rank(depth)`` scored against the top ``n_relevant`` of the oracle ``S_true``
    ((n, n)), once ``k`` and ``n_relevant`` are checked against the ``n`` test tracks (each query
    has ``n - 1`` others, and its ``n_relevant`` relevant tracks must be among them)."""
    n = len(S_true)
    k = check_int("k", k)
    n_relevant = check_int("n_relevant", n_relevant)
    if n - 1 < n_relevant:
        raise ValueError(f"{n} test tracks leave each query {n - 1} other(s), fewer than its "
                         f"n_relevant={n_relevant} relevant tracks: evaluate at least "
                         f"{n_relevant + 1} tracks")
    true = rank_by_similarity(S_true, k=n_relevant)
    return RetrievalResult(retrieval_metrics(rank(min(k, n - 1)), true, k=k, n_relevant=n_relevant),
                           k, n_relevant)


def evaluate_embeddings(embeddings, S_true, k: int = 20, n_relevant: int = 5) -> RetrievalResult:
    """Retrieval evaluation of track embeddings against the oracle (the TL systems).

    Parameters
    ----------
    embeddings : float array (n, d)
        Test-split track embeddings (e.g. mean over 8 patches), in test-split order.
    S_true : float array (n, n)
        The oracle similarity among the same test tracks, same order.
    k, n_relevant : int
        Cut-off (20) and relevant-set size (5).

    Returns
    -------
    RetrievalResult

    Notebook: 07_evaluation.ipynb
    """
    S_true = as_float_matrix("S_true", S_true)
    n = np.shape(embeddings)[0]
    if S_true.shape != (n, n):
        raise ValueError(f"S_true must be ({n}, {n}) to match {n} embeddings, got {S_true.shape}")
    return _scored(lambda depth: rank_by_distance(embeddings, k=depth), S_true, k, n_relevant)


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
    S_pred = as_float_matrix("S_pred", S_pred)
    S_true = as_float_matrix("S_true", S_true)
    if S_pred.shape != S_true.shape or S_pred.shape[0] != S_pred.shape[1]:
        raise ValueError(f"S_pred and S_true must be the same square shape, got {S_pred.shape} and {S_true.shape}")
    return _scored(lambda depth: rank_by_similarity(S_pred, k=depth), S_true, k, n_relevant)


# ----------------------------------------------------------------------------------------
# Table 2: the paper's numbers, reference rows, paired comparisons
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


#: Random keys held at a time by :func:`random_ranking` (float64: 128 MiB).
_RANDOM_BLOCK_KEYS = 2**24


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
    n = check_int("n", n, minimum=2)
    k = n - 1 if k is None else check_int("k", k)
    if k > n - 1:
        raise ValueError(f"k={k} exceeds the {n - 1} other tracks")
    rng = np.random.default_rng(check_int("seed", seed, 0))
    # the argsort of i.i.d. uniforms is a uniform random permutation; the query's own key is
    # set to +inf so that it sorts last and is cut off. The keys are drawn in row blocks (the same
    # stream as one (n, n) draw) so that the keys' memory stays bounded whatever n is.
    out = np.empty((n, k), dtype=np.int64)
    rows = max(1, _RANDOM_BLOCK_KEYS // n)
    for start in range(0, n, rows):
        keys = rng.random((min(rows, n - start), n))
        keys[np.arange(len(keys)), np.arange(start, start + len(keys))] = np.inf
        out[start:start + len(keys)] = np.argsort(keys, axis=1, kind="stable")[:, :k]
    return out


def compare_systems(results: Mapping[str, RetrievalResult], reference: str, *,
                    metrics=METRICS, level: float = 0.95, alpha: float = 0.05, n_boot: int = 10_000,
                    seed: int = 0) -> pd.DataFrame:
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
    metrics : sequence of str (or one str), default :data:`METRICS`
    level : float, default 0.95
    alpha : float, default 0.05
        Level of the ``significant`` column (on the adjusted p-value).
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
    _check_results(results)
    check_choice("reference", reference, results)
    metrics = (metrics,) if isinstance(metrics, str) else metrics   # one name, not its letters
    for m in metrics:
        check_choice("metrics", m, METRICS)
    if len(set(metrics)) != len(metrics):   # a metric twice would be one more test for Holm
        raise ValueError(f"metrics must not repeat a name, got {list(metrics)}")
    level = check_level(level)
    check_level(alpha, "alpha", 0.05)
    ref = results[reference]
    rows = {}   # (system, metric column) -> that pair's comparison
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
            rows[name, res.columns[m]] = {"mean_diff": 100 * t.mean_diff, "low": 100 * t.low,
                                          "high": 100 * t.high, "p_wilcoxon": t.p_wilcoxon,
                                          "ci_disjoint": bool(cx.low > cy.high or cx.high < cy.low)}
    if not rows:
        raise ValueError("results holds only the reference: nothing to compare")
    df = pd.DataFrame.from_dict(rows, orient="index").rename_axis(["system", "metric"])
    df["p_adjusted"] = holm(df["p_wilcoxon"].to_numpy())
    df["significant"] = df["p_adjusted"] < alpha
    df["better"] = df["significant"] & (df["mean_diff"] > 0)
    return df[["mean_diff", "low", "high", "p_wilcoxon", "p_adjusted", "significant", "ci_disjoint", "better"]]
