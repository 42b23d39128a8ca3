"""Statistics of per-query scores: confidence intervals, paired tests, Holm, tag AUC, CFR.

The intervals and paired tests turn per-query retrieval scores into the ``mean ± half-width``
cells of the paper's Table 2 and their comparisons; the mean-over-tags ROC AUC scores the
auto-tagging baseline; the Constraints Fulfillment Rate (Lu et al. 2017) scores a metric
learned from triplets.

Notebook: 07_evaluation.ipynb
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from scipy import stats

from mrlib.checks import as_float_matrix, as_vector, check_choice, check_int, check_level, is_real
from mrlib.folds import kfold_indices

__all__ = ["CI", "mean_variance", "mean_ci", "format_ci", "PairedTest", "paired_test", "signed_rank_p", "holm", "TagAUC",
           "tag_auc", "CFR", "constraints_fulfillment_rate", "kfold_indices"]


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


def _bootstrap_interval(x: np.ndarray, level: float, n_boot, seed: int) -> tuple[float, float]:
    """Percentile interval of the means of ``n_boot`` seeded resamples of ``x`` (with
    replacement), resampled in memory-bounded blocks."""
    n_boot = check_int("n_boot", n_boot, minimum=100)
    rng = np.random.default_rng(check_int("seed", seed, 0))
    n = x.size
    per = max(1, 2**22 // n)
    means = np.empty(n_boot)
    for s in range(0, n_boot, per):
        e = min(s + per, n_boot)
        means[s:e] = x[rng.integers(0, n, size=(e - s, n))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def mean_variance(x, groups=None) -> tuple[float, int]:
    r"""Variance of the mean of per-unit scores, and its degrees of freedom.

    Independent units: $s^2/n$ with $n - 1$ degrees of freedom. Units in groups (queries of one
    artist, which an artist-disjoint split keeps together and which resemble each other): the
    cluster-robust variance $\frac{G}{G-1}\sum_g \big(\sum_{i \in g} (x_i - \bar x)\big)^2 / n^2$
    with $G - 1$ degrees of freedom, so a group counts as one draw, however many units it holds.

    Parameters
    ----------
    x : float array (n,), n ≥ 2
    groups : array_like (n,), optional
        The group of each unit (any labels); at least two groups.

    Returns
    -------
    (float, int)
        The variance of $\bar x$ and the degrees of freedom of its Student interval.

    Notebook: 07_evaluation.ipynb
    """
    x = as_vector("x", x)
    if x.size < 2:
        raise ValueError(f"a variance needs at least 2 values, got {x.size}")
    if groups is None:
        return float(x.var(ddof=1)) / x.size, x.size - 1
    groups = np.asarray(groups)
    if groups.shape != x.shape:
        raise ValueError(f"groups must hold one label per unit ({x.size}), got shape {groups.shape}")
    _, g = np.unique(groups, return_inverse=True)
    n_groups = int(g.max()) + 1
    if n_groups < 2:
        raise ValueError("clustered units need at least 2 groups")
    sums = np.bincount(g, weights=x - x.mean())
    return float((sums ** 2).sum()) / x.size ** 2 * n_groups / (n_groups - 1), n_groups - 1


def mean_ci(x, level: float = 0.95, method: str = "t", *, n_boot: int = 10_000, seed: int = 0,
            groups=None) -> CI:
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
    groups : array_like (n,), optional
        The group of each query (its artist): the variance is :func:`mean_variance`'s
        clustered one, with one degree of freedom per group ("t" and "normal" only).

    Returns
    -------
    CI
        ``(mean, low, high, level, method)``; ``.half_width`` is the ``±``.

    Notebook: 07_evaluation.ipynb
    """
    x = as_vector("x", x)
    level = check_level(level)
    if x.size < 2:
        raise ValueError(f"a confidence interval needs at least 2 values, got {x.size}")
    check_choice("method", method, ("t", "normal", "bootstrap"))
    m = float(x.mean())
    if method in ("t", "normal"):
        if groups is None:           # the plain formula: the same bits as ever
            se, df = float(x.std(ddof=1)) / math.sqrt(x.size), x.size - 1
        else:
            var, df = mean_variance(x, groups)
            se = math.sqrt(var)
        q = stats.t.ppf((1 + level) / 2, df) if method == "t" else stats.norm.ppf((1 + level) / 2)
        return CI(m, m - q * se, m + q * se, level, method)
    if groups is not None:
        raise ValueError("groups apply to the 't' and 'normal' intervals")
    return CI(m, *_bootstrap_interval(x, level, n_boot, seed), level, method)


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
    decimals = check_int("decimals", decimals, minimum=0)
    for name, value in (("mean", mean), ("half_width", half_width), ("scale", scale)):
        # a 0-d array or tensor (a reduced metric) is a number too; a str's dtype is not numeric
        if not (is_real(value) or (np.ndim(value) == 0
                                   and np.issubdtype(np.asarray(value).dtype, np.number))):
            raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
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
    the two-sided p-value; if every difference is zero the p-value is 1. Differences that
    agree to 12 significant digits of the scores count as equal (floating-point residue is
    neither a difference nor a way to break a tie).

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
    x, y = as_vector("x", x), as_vector("y", y)
    if x.shape != y.shape:
        raise ValueError(f"paired scores need the same queries: x has {x.size}, y has {y.size}")
    if x.size < 2:
        raise ValueError(f"a paired comparison needs at least 2 queries, got {x.size}")
    level = check_level(level)
    d = x - y
    lo, hi = _bootstrap_interval(d, level, n_boot, seed)
    scale = max(np.abs(x).max(), np.abs(y).max())
    nz = int(np.count_nonzero(_rank_steps(d, scale)))
    return PairedTest(float(d.mean()), lo, hi, signed_rank_p(d, scale), int(x.size), nz, level)


def signed_rank_p(d, scale: float, *, method: str = "auto") -> float:
    """Two-sided Wilcoxon signed-rank p-value of paired differences, blind to rounding residue.

    Parameters
    ----------
    d : array_like of float, shape (n,)
        Paired differences of scores.
    scale : float
        The size of the scores themselves (their largest absolute value): differences that
        agree to 12 significant digits of it count as equal, and smaller ones as zero.
    method : {"auto", "exact", "asymptotic"}, default "auto"
        ``scipy.stats.wilcoxon``'s.

    Returns
    -------
    float
        The p-value, zero differences dropped; 1.0 when every difference is zero.

    Notebook: 07_evaluation.ipynb
    """
    steps = _rank_steps(np.asarray(d, dtype=np.float64), scale)
    return float(stats.wilcoxon(steps, method=method).pvalue) if np.count_nonzero(steps) else 1.0


def _rank_steps(d: np.ndarray, scale: float) -> np.ndarray:
    """Differences ``d`` of scores of size ``scale`` as whole steps of ``10⁻¹²·scale`` (rounded),
    for the signed-rank test: two equal differences, or a zero one, computed from different
    pairs of scores differ by rounding residue (0.3 − 0.2 ≠ 0.2 − 0.1 in floating point, a
    mean of differences leaves 10⁻¹⁷ for 0), which the test would rank apart or count as a
    difference; in steps they tie, and a zero is dropped."""
    step = 10.0 ** (math.floor(math.log10(scale)) - 12) if scale > 0 else 1.0
    return np.round(d / step)


def holm(pvalues) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values (step-down; controls the family-wise error rate).

    With the ``m`` p-values sorted, ``p_(1) ≤ … ≤ p_(m)``, the adjusted value of ``p_(i)`` is
    ``max_{j ≤ i} min(1, (m − j + 1) p_(j))``; reject where it is below the level.

    Parameters
    ----------
    pvalues : float array (m,), values in [0, 1]

    Returns
    -------
    float64 array (m,), in the input's order.

    Notebook: 07_evaluation.ipynb
    """
    p = as_vector("pvalues", pvalues)
    if ((p < 0) | (p > 1)).any():
        raise ValueError("p-values must lie in [0, 1]")
    order = np.argsort(p, kind="stable")
    adjusted = np.minimum(1.0, np.maximum.accumulate((p.size - np.arange(p.size)) * p[order]))
    return adjusted[np.argsort(order)]                     # back in the input's order


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
    track scores above a random negative one, ties counting 1/2 — that is, the U of
    ``scipy.stats.mannwhitneyu`` (positives against negatives) over the number of pairs
    (equal to ``sklearn.metrics.roc_auc_score``). A tag that is
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
    yp = as_float_matrix("y_prob", y_prob)
    if yt.shape != yp.shape or yt.ndim != 2:
        raise ValueError(f"y_true and y_prob must be the same 2-D shape, got {yt.shape} and {yp.shape}")
    if not np.isin(yt, (0, 1)).all():
        raise ValueError("y_true must be binary (0/1 or bool); binarise tag likelihoods first, e.g. T >= 0.5")
    yt = yt.astype(bool)
    n_pos = yt.sum(axis=0)
    n_neg = yt.shape[0] - n_pos
    valid = (n_pos > 0) & (n_neg > 0)
    per_tag = np.full(yt.shape[1], np.nan)
    if valid.any():     # each tag's positives and negatives, the other tracks masked as NaN
        pos, neg = np.where(yt, yp, np.nan)[:, valid], np.where(yt, np.nan, yp)[:, valid]
        u = stats.mannwhitneyu(pos, neg, nan_policy="omit").statistic
        per_tag[valid] = u / (n_pos[valid] * n_neg[valid])
    mean = float(np.nanmean(per_tag)) if valid.any() else float("nan")
    return TagAUC(mean, per_tag, int((~valid).sum()), int(yt.shape[1]))


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
    d_ap, d_an = as_vector("d_ap", d_ap), as_vector("d_an", d_an)
    if d_ap.shape != d_an.shape:
        raise ValueError(f"d_ap and d_an must have one value per triplet, got {d_ap.size} and {d_an.size}")
    if d_ap.size == 0:
        raise ValueError("no triplets given")
    rate = float(np.mean(d_ap < d_an))
    return CFR(rate, math.sqrt(rate * (1.0 - rate) / d_ap.size), int(d_ap.size))
