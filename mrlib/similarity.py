r"""The oracle similarity S between tag-likelihood vectors, and ranked lists from it.

Prétet et al. (2020, §4.1) rank tracks with a private "non-linear combination of weighted tags".
This module builds an open one with the same ingredients. For two tracks with tag
likelihoods :math:`a, b \in [0, 1]^m` and the vocabulary split into categories
:math:`c \in \{\text{Genre, Recording, Mood, Movement, Lyrics}\}`:

.. math::

    s_c(a, b) = \frac{\langle a_c, b_c \rangle}{\lVert a_c \rVert\,\lVert b_c \rVert}
    \qquad \pi_c(a, b) = [a_c \neq 0]\,[b_c \neq 0]

    \mu(a, b) = \frac{\sum_c w_c\, \pi_c\, s_c}{\sum_c w_c\, \pi_c}
    \qquad g(a, b) = g_0 + (1 - g_0)\, s_G^{\,\gamma}

    S(a, b) = \bigl(g(a, b)\, \mu(a, b)\bigr)^{\kappa}

* :math:`s_c` is the cosine of the likelihood vectors restricted to category *c* (in [0, 1]
  because likelihoods are non-negative); a category where one track has no tag at all is left
  out of that pair's mean (:math:`\pi_c = 0`) — an instrumental track is not "dissimilar in
  lyrics", it is unknown.
* :math:`g` is the non-linearity: genre agreement gates the rest. With floor :math:`g_0` small,
  two tracks of different genres stay dissimilar however much instrumentation they share.
* :math:`\kappa \ge 1` sharpens: most of a ranked list falls below 0.5 while identical tag vectors
  keep S = 1 (the shape of the paper's Fig. 1, top).

The weights :math:`w_c, g_0, \gamma, \kappa` live in ``data/oracle_weights.json`` (:func:`load_weights`).
Everything is matrix products: one row block of S costs one (chunk × m) · (m × N_b) product, so the
paper's 14,246 × 14,246 matrix is computed block by block (``chunk_size`` rows at a time).

Notebook: 02_similarity.ipynb
"""
from __future__ import annotations

import copy
import json
import math
import numbers
import os
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np
from tqdm.auto import tqdm

from mrlib.checks import as_float_matrix, check_indices, check_int, is_int, is_real, rule
from mrlib.paths import repo_root

__all__ = [
    "CATEGORIES", "load_weights", "oracle", "category_similarities",
    "ranked_list", "ranked_lists", "mean_similarity_by_rank", "rank_profile"
]

#: The five tag categories of the 2020 paper (§4.1), in the order they are reported.
CATEGORIES = ("Genre", "Recording", "Mood", "Movement", "Lyrics")

_ALL = "all"  # the single pseudo-category used when no vocabulary is given


def load_weights(path: str | os.PathLike | None = None) -> dict:
    """Read and validate the oracle's weights (``data/oracle_weights.json`` by default).

    Parameters
    ----------
    path : str or os.PathLike, optional
        Another weights file in the same format.

    Returns
    -------
    dict
        ``{"version": 1, "per_category": "cosine", "categories": {name: w_c},
        "default_weight": float, "gate": {"category": str, "floor": float, "power": float},
        "sharpness": float, "fields": {...documentation...}}``.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If a field is missing or out of range.

    Notebook: 02_similarity.ipynb
    """
    path = Path(path) if path is not None else repo_root() / "data" / "oracle_weights.json"
    if not path.is_file():
        raise FileNotFoundError(f"oracle weights file not found: {path}")
    return _validate_weights(json.loads(path.read_text(encoding="utf-8")), source=str(path))


#: A category weight or the default weight, the sharpness and the gate's floor and power: finite
#: numbers (Python's or numpy's), as floats.
_NON_NEGATIVE = rule(lambda v: isinstance(v, numbers.Real) and math.isfinite(v) and v >= 0,
                     "a finite number >= 0", convert=float)
_POSITIVE = rule(lambda v: isinstance(v, numbers.Real) and math.isfinite(v) and v > 0,
                 "a finite number > 0", convert=float)
_FRACTION = rule(lambda v: isinstance(v, numbers.Real) and 0 <= v <= 1, "a number in [0, 1]",
                 convert=float)


def _validate_weights(weights: Any, source: str = "weights") -> dict:
    if not isinstance(weights, Mapping):
        raise TypeError(f"{source}: weights must be a dict (or a path), got {type(weights).__name__}")
    w = copy.deepcopy(dict(weights))
    for key in ("categories", "gate", "sharpness"):
        if key not in w:
            raise ValueError(f"{source}: missing field {key!r}")
    if w.get("per_category", "cosine") != "cosine":
        raise ValueError(f"{source}: per_category must be 'cosine', got {w['per_category']!r}")
    cats = w["categories"]
    if not isinstance(cats, Mapping) or not cats:
        raise ValueError(f"{source}: 'categories' must map category names to weights")
    w["categories"] = {str(k): _NON_NEGATIVE(f"{source}: weight of {k!r}", v) for k, v in cats.items()}
    w["default_weight"] = _NON_NEGATIVE(f"{source}: default_weight", w.get("default_weight", 0.0))
    gate = w["gate"]
    if gate is not None:
        if not isinstance(gate, Mapping) or not {"category", "floor", "power"} <= set(gate):
            raise ValueError(f"{source}: gate must be null or {{'category', 'floor', 'power'}}, got {gate!r}")
        w["gate"] = {"category": str(gate["category"]),
                     "floor": _FRACTION(f"{source}: gate.floor", gate["floor"]),
                     "power": _POSITIVE(f"{source}: gate.power", gate["power"])}
    w["sharpness"] = _POSITIVE(f"{source}: sharpness", w["sharpness"])
    return w


def _tags_and_categories(T, categories, name: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(tags float64 (N, m), categories (m,) or None) from a Catalog, a DataFrame or an array."""
    cats = None
    if hasattr(T, "tags") and hasattr(T, "vocabulary"):  # a mrlib.catalog.Catalog
        cats, T = T.vocabulary["category"], T.tags
    try:
        arr = np.asarray(T.to_numpy() if hasattr(T, "to_numpy") else T, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{name} must be a Catalog or a numeric (N, m) tag matrix: {error}") from None
    arr = as_float_matrix(name, arr)   # 2-D and finite (float64 stays the same array)
    if arr.shape[1] == 0:
        raise ValueError(f"{name} has no tag columns (shape {arr.shape})")
    lo, hi = (arr.min(), arr.max()) if arr.size else (0.0, 0.0)
    if lo < -1e-6 or hi > 1 + 1e-6:
        raise ValueError(f"{name} must hold likelihoods in [0, 1], found values in [{lo:.4g}, {hi:.4g}]")
    np.clip(arr, 0.0, 1.0, out=arr)  # float noise from a sigmoid, e.g. 1.0000001
    if categories is not None:   # a Catalog, a vocabulary DataFrame, or the categories
        cats = getattr(categories, "vocabulary", categories)
        if "category" in getattr(cats, "columns", ()):
            cats = cats["category"]
    if cats is not None:
        cats = np.asarray(cats, dtype=object)
        if cats.ndim != 1 or len(cats) != arr.shape[1]:
            raise ValueError(f"categories must give one category per tag column: {arr.shape[1]} "
                             f"tags in {name}, got {cats.shape}")
        cats = np.array([str(c) for c in cats], dtype=object)
    return arr, cats


class _Prepared(NamedTuple):
    """Per-category unit-normalised blocks of a tag matrix, ready for matrix products."""

    blocks: list             # per category (n, m_c): unit rows, zero where the category is absent
    present: np.ndarray      # (n, n_categories) float64: 1.0 where the track has the category


def _prepare(T: np.ndarray, cats: np.ndarray, names: list[str]) -> _Prepared:
    blocks, present = [], []
    for name in names:
        block = T[:, cats == name]
        norm = np.sqrt(np.einsum("ij,ij->i", block, block))[:, None]
        blocks.append(np.divide(block, norm, out=np.zeros_like(block), where=norm > 0))
        present.append(norm[:, 0] > 0)
    return _Prepared(blocks, np.stack(present, axis=1).astype(np.float64))


class _Oracle:
    """The oracle's weights and the two prepared tag matrices; computes blocks of S."""

    def __init__(self, T_a, T_b, categories, weights):
        A, cats_a = _tags_and_categories(T_a, categories, "T_a")
        B, cats_b = (A, cats_a) if T_b is None else _tags_and_categories(T_b, categories, "T_b")
        if A.shape[1] != B.shape[1]:
            raise ValueError(f"T_a and T_b must share the tag vocabulary: {A.shape[1]} vs {B.shape[1]} tags")
        if cats_a is not None and cats_b is not None and not np.array_equal(cats_a, cats_b):
            raise ValueError("T_a and T_b come with different tag categories")
        cats = cats_a if cats_a is not None else cats_b
        from_file = weights is None or isinstance(weights, (str, os.PathLike))
        w = load_weights(weights) if from_file else _validate_weights(weights)
        if cats is None:
            # No vocabulary: one pseudo-category, so S is a sharpened cosine of the whole vector.
            cats = np.full(A.shape[1], _ALL, dtype=object)
        self.names = names = list(dict.fromkeys(cats))  # order of first appearance
        self.cat_weights = np.array([1.0 if n == _ALL else
                                     w["categories"].get(n, w["default_weight"])
                                     for n in names], dtype=np.float64)
        gate = w["gate"]
        # the single pseudo-category has nothing to gate on (floor 1: no gate, power unused)
        gated = gate is not None and gate["category"] in names and names != [_ALL]
        self.gate_index = names.index(gate["category"]) if gated else None
        self.floor, self.power = (gate["floor"], gate["power"]) if gated else (1.0, 1.0)
        self.sharpness = w["sharpness"]
        self.A = _prepare(A, cats, names)
        self.B = self.A if T_b is None else _prepare(B, cats, names)

    def block(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` of S as float32 (computed in float64, then rounded)."""
        A, B = self.A, self.B
        num = np.zeros((stop - start, B.present.shape[0]))
        gate_sim = None
        for j, (ua, ub) in enumerate(zip(A.blocks, B.blocks)):
            # cosine: rows are unit vectors (or zero where the category is absent)
            s = ua[start:stop] @ ub.T
            np.clip(s, 0.0, 1.0, out=s)
            if j == self.gate_index:
                gate_sim = s.copy()
            if self.cat_weights[j] > 0:
                num += self.cat_weights[j] * s
        # Weights of the categories both tracks have: one small matrix product.
        den = (A.present[start:stop] * self.cat_weights) @ B.present.T
        mean = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
        if self.floor < 1.0:
            mean *= self.floor + (1.0 - self.floor) * (gate_sim ** self.power)
        if self.sharpness != 1.0:
            np.power(mean, self.sharpness, out=mean)
        np.clip(mean, 0.0, 1.0, out=mean)
        return mean.astype(np.float32)


def oracle(
    T_a,
    T_b=None,
    categories=None,
    weights=None,
    chunk_size: int = 2048,
    progress: bool = False,
) -> np.ndarray:
    r"""The oracle similarity S between the tracks of ``T_a`` and those of ``T_b``.

    :math:`S(a, b) = \bigl(g\,\mu\bigr)^\kappa` with the per-category cosine mean :math:`\mu`, the genre
    gate :math:`g` and the sharpness :math:`\kappa` described in :mod:`mrlib.similarity`.

    Parameters
    ----------
    T_a : Catalog or array_like, shape (N_a, m)
        Tag likelihoods in [0, 1]. A :class:`mrlib.catalog.Catalog` brings its tags and the
        categories of its vocabulary.
    T_b : Catalog or array_like, shape (N_b, m), optional
        The other side; ``None`` means ``T_a`` (a square, symmetric S).
    categories : sequence of str, shape (m,), or a vocabulary DataFrame / Catalog, optional
        Category of each tag column (``Genre``, ``Recording``, ``Mood``, ``Movement``, ``Lyrics``).
        Taken from the catalog when one is given. Without any, all tags form one category and S is
        the sharpened cosine of the whole vectors (no genre gate).
    weights : dict or path, optional
        Oracle weights; default :func:`load_weights` (``data/oracle_weights.json``).
    chunk_size : int, default 2048
        Rows of S computed at a time (memory ~ 4 · chunk_size · N_b · 8 bytes).
    progress : bool, default False
        Show a tqdm bar over row blocks.

    Returns
    -------
    S : numpy.ndarray of float32, shape (N_a, N_b), values in [0, 1]
        S(a, a) = 1 for any track with a genre tag; symmetric when ``T_b`` is None (up to
        float32 rounding of a float64 computation).

    Raises
    ------
    ValueError
        Shapes that disagree, likelihoods outside [0, 1], NaN, bad weights or chunk size.

    Examples
    --------
    >>> T = [[1.0, 0.0], [0.8, 0.1], [0.0, 1.0]]
    >>> S = oracle(T, categories=["Genre", "Genre"])
    >>> S.shape, float(S[0, 0]), bool(S[0, 1] > S[0, 2])
    ((3, 3), 1.0, True)

    Notebook: 02_similarity.ipynb
    """
    chunk_size = check_int("chunk_size", chunk_size, 1)
    core = _Oracle(T_a, T_b, categories, weights)
    n_a, n_b = core.A.present.shape[0], core.B.present.shape[0]
    S = np.empty((n_a, n_b), dtype=np.float32)
    starts = range(0, n_a, chunk_size)
    for start in tqdm(starts, desc="oracle S", unit="block", disable=not progress):
        S[start:start + chunk_size] = core.block(start, min(start + chunk_size, n_a))
    return S


def category_similarities(T_a, T_b=None, categories=None) -> dict[str, np.ndarray]:
    """Per-category cosine similarities :math:`s_c` (the oracle's ingredients), for teaching.

    Parameters
    ----------
    T_a, T_b, categories
        As in :func:`oracle` (keep them small: one (N_a, N_b) matrix per category).

    Returns
    -------
    dict of str -> numpy.ndarray of float32, shape (N_a, N_b)
        Category name -> cosine in [0, 1] (0 where either track has no tag in the category).

    Notebook: 02_similarity.ipynb
    """
    core = _Oracle(T_a, T_b, categories, {"categories": {"x": 1.0}, "gate": None, "sharpness": 1.0})
    return {name: np.clip(ua @ ub.T, 0.0, 1.0).astype(np.float32)
            for name, ua, ub in zip(core.names, core.A.blocks, core.B.blocks)}


def _check_S(S, name="S") -> np.ndarray:
    S = np.asarray(S)
    if S.dtype.kind not in "fiu":
        raise TypeError(f"{name} must be a numeric array, got dtype {S.dtype}")
    if np.isnan(S).any():
        raise ValueError(f"{name} contains NaN; similarities must be comparable")
    return S


def _check_matrix(S) -> np.ndarray:
    """``S`` checked as a square similarity matrix (each query leaves itself out by index)."""
    S = _check_S(S)
    if S.ndim != 2 or S.shape[0] != S.shape[1]:
        raise ValueError(f"S must be a square (N, N) matrix, got shape {S.shape}")
    if S.shape[0] == 0:   # its lists would have length -1
        raise ValueError(f"S is empty (shape {S.shape}): there is no list to rank")
    return S


def ranked_list(S_row, exclude=None) -> np.ndarray:
    """Indices of the tracks by decreasing similarity; ties go to the lower index.

    Parameters
    ----------
    S_row : array_like, shape (N,)
        Similarities of one query to every track.
    exclude : int or sequence of int, optional
        Indices left out of the list (the query itself, usually).

    Returns
    -------
    numpy.ndarray of int64, shape (N - len(exclude),)
        ``R(t) = [r_1, r_2, ...]``: a stable argsort of ``-S_row`` (equal values keep index order),
        so the list is deterministic.

    Examples
    --------
    >>> ranked_list([0.2, 0.9, 0.2, 1.0], exclude=3).tolist()
    [1, 0, 2]

    Notebook: 02_similarity.ipynb
    """
    row = _check_S(S_row, "S_row")
    if row.ndim != 1:
        raise ValueError(f"S_row must be 1-D (N,), got shape {row.shape}")
    order = np.argsort(-row.astype(np.float64), kind="stable")
    if exclude is not None:
        order = order[~np.isin(order, check_indices("exclude", exclude, len(row), "the tracks"))]
    return order.astype(np.int64, copy=False)


def ranked_lists(S, k: int | None = None, chunk_size: int = 4096) -> np.ndarray:
    """Ranked lists of all queries at once (vectorised, deterministic ties).

    Parameters
    ----------
    S : array_like, shape (N, N)
        Similarities; row q holds the query q's similarities. The query is dropped from its own
        list by index, not by value, so a duplicate track with S = 1 stays in the list.
    k : int, optional
        Keep only the first k of each list.
    chunk_size : int, default 4096
        Rows sorted at a time (bounds the temporary copy).

    Returns
    -------
    numpy.ndarray of int64, shape (N, N - 1), or (N, k)
        Row q equals ``ranked_list(S[q], exclude=q)``.

    Notebook: 02_similarity.ipynb
    """
    S = _check_matrix(S)
    n = S.shape[0]
    width = n - 1
    if k is not None:
        if not is_int(k) or not 1 <= k <= width:
            raise ValueError(f"k must be an integer in [1, {width}], got {k!r}")
        width = int(k)
    chunk_size = check_int("chunk_size", chunk_size, 1)
    out = np.empty((n, width), dtype=np.int64)
    for start in range(0, n, chunk_size):
        out[start:start + chunk_size] = _block_order(S[start:start + chunk_size], start)[:, :width]
    return out


def _block_order(block: np.ndarray, start: int) -> np.ndarray:
    """Columns of each row of ``block`` (rows ``start …`` of S) by decreasing similarity, ties
    by lower index, without the query's own column."""
    order = np.argsort(-block.astype(np.float64), axis=1, kind="stable")
    # drop the query's own column by index, not by a sentinel value: a -inf key would tie
    # with a +inf similarity of a lower column and leave the query in its own list
    keep = order != (start + np.arange(block.shape[0]))[:, None]
    return order[keep].reshape(block.shape[0], block.shape[1] - 1)


def mean_similarity_by_rank(S, chunk_size: int = 4096) -> np.ndarray:
    """The paper's Fig. 1 (top): mean over queries of S(t, r_i(t)) as a function of rank i.

    Parameters
    ----------
    S : array_like, shape (N, N)
        Oracle similarities; each query is left out of its own list (by index).
    chunk_size : int, default 4096
        Rows sorted at a time.

    Returns
    -------
    numpy.ndarray of float64, shape (N - 1,)
        Element i-1 is the mean similarity at rank i (non-increasing).

    Notebook: 02_similarity.ipynb
    """
    S = _check_matrix(S)
    n = S.shape[0]
    chunk_size = check_int("chunk_size", chunk_size, 1)
    total = np.zeros(n - 1)
    for start in range(0, n, chunk_size):
        block = S[start:start + chunk_size].astype(np.float64)
        # each row's values in its ranked list's order (equal values are equal: ties do not matter)
        total += np.take_along_axis(block, _block_order(block, start), axis=1).sum(axis=0)
    return total / n


def rank_profile(S, ranks: Sequence[int] = (1, 5, 15, 50), threshold: float = 0.5) -> dict:
    """Numbers that describe the Fig.-1 curve of S.

    Parameters
    ----------
    S : array_like, shape (N, N)
        Oracle similarities; each query is left out of its own list.
    ranks : sequence of int, default (1, 5, 15, 50)
        Ranks (1-based) at which to report the mean similarity.
    threshold : float, default 0.5
        Report the share of list entries (over all queries and ranks) below it.

    Returns
    -------
    dict
        ``{"mean_at_rank": {rank: float}, "share_below": float, "threshold": float,
        "list_length": int}``.

    Notebook: 02_similarity.ipynb
    """
    S = _check_matrix(S)
    length = S.shape[1] - 1
    # the arguments are checked before the sort of every row that the curve costs
    if not np.iterable(ranks):
        raise TypeError(f"ranks must be a sequence of int ranks (1-based), got {ranks!r}")
    ranks = [check_int("ranks", r, 1) for r in ranks]   # 1-based
    if ranks and max(ranks) > length:
        raise ValueError(f"ranks must be <= {length}: rank {max(ranks)} is outside the lists")
    if not is_real(threshold):
        raise TypeError(f"threshold must be a number, got {threshold!r}")
    if not math.isfinite(threshold):
        raise ValueError(f"threshold must be a finite number, got {threshold!r}")
    curve = mean_similarity_by_rank(S)
    below = int((S < threshold).sum()) - int((np.diagonal(S) < threshold).sum())
    return {
        "mean_at_rank": {r: float(curve[r - 1]) for r in ranks},
        "share_below": below / (S.size - S.shape[0]),
        "threshold": float(threshold),
        "list_length": len(curve),
    }
