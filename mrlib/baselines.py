"""The 2017 comparison: handcrafted features and classic metric learning, scored by CFR.

Lu et al. (ICASSP 2017) compare Triplet MatchNet with metric-learning baselines on song-level
features — handcrafted, their PCA, and the network's own — by the Constraints Fulfillment
Rate (CFR) under 10-fold cross-validation. This module provides

* :func:`catalog_features` (from :mod:`mrlib.handcrafted`, re-exported here) — a song-level
  vector of MFCC/delta/chroma/spectral/ZCR/RMS statistics and tempo (librosa) for every clip
  of a catalog;
* metric baselines sharing one small interface — ``fit(X, triplets)``, ``transform(X)``,
  ``distance(X, a, b)`` — :class:`Euclidean`, :class:`TripletSVM` (Schultz & Joachims 2003)
  and :class:`Mahalanobis` (metric-learn's LSML), each on standardised and
  optionally PCA-reduced features fitted on the training clips only;
* :func:`cfr`, :func:`cross_validate` and :func:`generalization_curve`.
"""
from __future__ import annotations

import functools
import inspect
import warnings
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from mrlib.checks import check_indices, check_int, check_positive
from mrlib.handcrafted import catalog_features
from mrlib.stats import constraints_fulfillment_rate

__all__ = [
    "catalog_features", "MetricBaseline", "Euclidean", "TripletSVM", "Mahalanobis", "cfr",
    "CVResult", "cross_validate", "generalization_curve"
]


# --------------------------------------------------------------------------------------------
# metric baselines
# --------------------------------------------------------------------------------------------
def _check_X(X) -> np.ndarray:
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"X must be a non-empty (N, D) feature matrix, got shape {X.shape}")
    if not np.issubdtype(X.dtype, np.number):
        raise TypeError(f"X must be numeric, got dtype {X.dtype}")
    return X.astype(np.float64, copy=False)


def check_triplets(triplets, n: int, *, distinct: bool = False) -> np.ndarray:
    """``triplets`` as int64 (M, 3) indices into the ``n`` rows of the features (rows of X, or
    catalog indices); with ``distinct``, a triplet must name three different rows."""
    t = np.asarray(triplets)
    if t.ndim != 2 or t.shape[1] != 3 or len(t) == 0:
        raise ValueError(f"triplets must be a non-empty (M, 3) array of row indices "
                         f"(anchor, positive, negative), got shape {t.shape}")
    t = check_indices("triplets", t, n, "the rows of the features")
    if distinct and ((t[:, 0] == t[:, 1]) | (t[:, 0] == t[:, 2]) | (t[:, 1] == t[:, 2])).any():
        raise ValueError("a triplet (a, p, n) needs three different rows; some repeat one")
    return t


def _pairs(a, b) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of row indices as two int64 arrays: ``a`` and ``b`` of one length
    (:mod:`mrlib.songlevel` checks its pairs here too)."""
    a, b = np.asarray(a, dtype=np.int64).ravel(), np.asarray(b, dtype=np.int64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same length, got {a.shape} and {b.shape}")
    return a, b


class MetricBaseline:
    """The interface shared by the baselines: a learned map to a space where the distance is
    squared Euclidean.

    * ``fit(X, triplets)`` — learn from constraints (a, p, n) = rows of ``X``, "a closer to p
      than to n". The features are standardised (zero mean, unit variance per feature;
      constant features are left at 0) and optionally PCA-reduced (``pca``), both fitted on the
      clips of the training triplets only, so cross-validation does not leak test clips.
    * ``transform(X)`` — (N, D') embedding.
    * ``distance(X, a, b)`` — (M,) float64 distances between rows ``a[i]`` and ``b[i]``.

    Parameters
    ----------
    pca : int or None, default None
        After standardising, keep this many principal components (at most one per training
        clip and per feature); fitted on the training clips.
    seed : int, default 0

    Notebook: 08_triplet_matchnet.ipynb
    """

    name = "metric"

    def __init__(self, *, pca: int | None = None, seed: int = 0):
        self.pca = None if pca is None else check_int("pca", pca)
        self.seed = check_int("seed", seed, 0)
        self._fitted = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}(pca={self.pca})"

    def _prep(self, X: np.ndarray) -> np.ndarray:
        Z = (X - self.mean_) / self.std_
        return self.pca_.transform(Z) if self.pca_ is not None else Z

    # -- interface -------------------------------------------------------------------------
    def fit(self, X, triplets) -> "MetricBaseline":
        """Learn from constraints (a, p, n): "row a of X is closer to row p than to row n".

        Parameters
        ----------
        X : numpy.ndarray, shape (N, D)
            Features by row; only the rows the triplets use are read (they must be finite).
        triplets : numpy.ndarray of int, shape (M, 3)
            Row indices, three different rows per triplet.

        Returns
        -------
        self

        Notebook: 08_triplet_matchnet.ipynb
        """
        X = _check_X(X)
        t = check_triplets(triplets, len(X), distinct=True)
        rows = np.unique(t)
        ref = X[rows]
        if not np.isfinite(ref).all():
            bad = rows[~np.isfinite(ref).all(axis=1)][:5].tolist()
            raise ValueError(f"the triplets use rows of X with non-finite features (e.g. {bad}): "
                             "skipped tracks? Keep the triplets where "
                             "BaselineFeatures.triplet_mask(triplets) is True")
        # standardised and PCA-reduced by the training clips only
        self.mean_ = ref.mean(axis=0)
        std = ref.std(axis=0)
        self.std_ = np.where(std > 1e-12, std, 1.0)
        self.pca_ = None
        if self.pca is not None:
            from sklearn.decomposition import PCA

            # at most one component per training clip and per feature
            n_comp = min(self.pca, len(ref), X.shape[1])
            self.pca_ = PCA(n_components=n_comp, random_state=self.seed)
            self.pca_.fit((ref - self.mean_) / self.std_)
        self._fit(self._prep(X), t)
        self._fitted = True
        return self

    def _fit(self, Z: np.ndarray, t: np.ndarray) -> None:       # overridden by learners
        pass

    def _embed(self, Z: np.ndarray) -> np.ndarray:               # overridden by learners
        return Z

    def transform(self, X) -> np.ndarray:
        """Map features to the learned space, where the distance is squared Euclidean.

        Parameters
        ----------
        X : numpy.ndarray, shape (N, D)

        Returns
        -------
        numpy.ndarray of float64, shape (N, D')
            D' = D, or the number of PCA components.

        Notebook: 08_triplet_matchnet.ipynb
        """
        if not self._fitted:
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit(X, triplets) first")
        return self._embed(self._prep(_check_X(X)))

    def distance(self, X, a, b) -> np.ndarray:
        """Learned distances between rows ``a[i]`` and ``b[i]`` of ``X``.

        Parameters
        ----------
        X : numpy.ndarray, shape (N, D)
        a, b : array-like of int, shape (M,)

        Returns
        -------
        numpy.ndarray of float64, shape (M,)
            Squared Euclidean distances in the space of :meth:`transform`.

        Notebook: 08_triplet_matchnet.ipynb
        """
        a, b = _pairs(a, b)
        X = _check_X(X)
        # Embed only the rows asked for: distances on a few pairs of a large catalog stay cheap.
        rows, inv = np.unique(np.concatenate([a, b]), return_inverse=True)
        E = self.transform(X[rows])[inv]                        # the rows of a, then of b
        return ((E[:len(a)] - E[len(a):]) ** 2).sum(axis=1)


class Euclidean(MetricBaseline):
    """Squared Euclidean distance on (standardised, optionally PCA-reduced) features: no learning
    from the constraints beyond the feature statistics of the training clips.

    Notebook: 08_triplet_matchnet.ipynb
    """

    name = "Euclidean"


class TripletSVM(MetricBaseline):
    """Schultz & Joachims (2003): a linear SVM on triplet difference vectors, giving a weighted
    squared Euclidean distance ``d_w(x, y) = sum_k w_k (x_k - y_k)^2`` with ``w >= 0``.

    A constraint (a, p, n) asks d_w(a, p) < d_w(a, n), i.e. ``w . z > 0`` with the difference
    vector ``z = (x_a - x_n)^2 - (x_a - x_p)^2`` (element-wise squares). With a unit margin and
    squared-hinge slack this is the linear SVM

    .. math:: \\min_{w \\ge 0} \\tfrac12 \\lVert w \\rVert^2 + 2C \\sum_{(a,p,n)} \\max(0, 1 - w \\cdot z)^2 .

    It is solved with scikit-learn's ``LinearSVC`` (liblinear, no intercept) on the rows ``z``
    labelled +1 and ``-z`` labelled -1 — the two classes are mirror images, so the fit equals
    the one-class problem above with ``C`` counted twice — and negative weights are then clipped
    to 0, an approximation of the constraint ``w >= 0`` that liblinear cannot impose.

    Parameters
    ----------
    C : float, default 1.0
        Slack penalty (> 0).
    max_iter : int, default 10000
    pca, seed
        See :class:`MetricBaseline`.

    Attributes
    ----------
    weights_ : numpy.ndarray of float64, shape (D',)
        The learned ``w >= 0`` (per feature, after standardising/PCA). If every weight clips to
        zero the metric falls back to uniform weights (plain Euclidean) with a warning.

    Notebook: 08_triplet_matchnet.ipynb
    """

    name = "SVM"

    def __init__(self, C: float = 1.0, *, max_iter: int = 10000, pca: int | None = None,
                 seed: int = 0):
        super().__init__(pca=pca, seed=seed)
        self.C, self.max_iter = check_positive("C", C), check_int("max_iter", max_iter)

    def _fit(self, Z: np.ndarray, t: np.ndarray) -> None:
        from sklearn.svm import LinearSVC

        # the difference vectors: w fulfils triplet m exactly when w . z[m] > 0
        z = (Z[t[:, 0]] - Z[t[:, 2]]) ** 2 - (Z[t[:, 0]] - Z[t[:, 1]]) ** 2
        svm = LinearSVC(C=self.C, loss="squared_hinge", fit_intercept=False, dual="auto",
                        max_iter=self.max_iter, random_state=self.seed)
        # liblinear's ConvergenceWarning, if any, is left visible: raise max_iter then.
        svm.fit(np.vstack([z, -z]), np.r_[np.ones(len(z)), -np.ones(len(z))])
        self.raw_weights_ = svm.coef_.ravel().astype(np.float64)
        w = np.clip(self.raw_weights_, 0.0, None)
        if not (w > 0).any():
            warnings.warn("TripletSVM: all weights are zero; falling back to uniform weights",
                          RuntimeWarning, stacklevel=3)
            w = np.ones_like(w)
        self.weights_ = w

    def _embed(self, Z: np.ndarray) -> np.ndarray:
        return Z * np.sqrt(self.weights_)


def _metric_learn():
    """Import metric-learn, bridging its 0.7.0 release to scikit-learn >= 1.8.

    metric-learn 0.7.0 (the latest on PyPI) calls ``check_array(..., force_all_finite=...)``;
    scikit-learn renamed that argument ``ensure_all_finite`` in 1.6 and removed the old name
    in 1.8, so every fit fails with a TypeError (metric-learn issue #359, fixed upstream by
    PR #360 but not released). When the installed scikit-learn lacks the old name, the two
    validators that ``metric_learn._util`` imported are wrapped to rename the argument; the
    behaviour is otherwise unchanged, and nothing else of scikit-learn is touched.
    """
    import metric_learn
    import metric_learn._util as util
    from sklearn.utils.validation import check_array

    if getattr(util, "_mrlib_bridged", False) or \
            "force_all_finite" in inspect.signature(check_array).parameters:
        return metric_learn

    def renamed(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            if "force_all_finite" in kwargs:
                kwargs["ensure_all_finite"] = kwargs.pop("force_all_finite")
            return fn(*args, **kwargs)
        return wrapper

    for name in ("check_array", "check_X_y"):
        if hasattr(util, name):
            setattr(util, name, renamed(getattr(util, name)))
    util._mrlib_bridged = True
    return metric_learn


class Mahalanobis(MetricBaseline):
    """A full Mahalanobis metric ``d_M(x, y) = (x - y)^T M (x - y)``, ``M = L^T L``, learned from
    relative constraints with `metric-learn <https://contrib.scikit-learn.org/metric-learn/>`_'s
    LSML (Liu et al., ICDM 2012): it minimises the squared residuals
    ``(sqrt d_M(a, p) - sqrt d_M(a, n))^2`` of the violated constraints plus the LogDet
    divergence of M from the identity (the prior), by projected gradient descent. A triplet
    (a, p, n) is passed as the quadruplet (a, p, a, n).

    What it stands in for: the 2017 slides compare MLR (McFee & Lanckriet 2010), RMLR (Lim et
    al. 2013) and RITML (Wolff et al. 2015). None of these is in a maintained Python library,
    and LSML is none of them. It is the closest to RITML in kind — a Mahalanobis matrix learned
    from relative comparisons with a LogDet (ITML-style) pull towards a prior — but RITML
    iterates ITML with constraints re-derived from the current metric, whereas LSML minimises
    one objective. MLR/RMLR optimise a ranking measure with a structural SVM (RMLR adds group
    sparsity); nothing here does.

    metric-learn averages the residuals (constraint weights summing to 1); the standardised
    inputs are scaled by ``sqrt(n_triplets)``, which multiplies the data term by the number of
    training triplets (the LogDet term is scale-free) and so turns the average back into a sum:
    one unit of weight per constraint against one LogDet term.

    Parameters
    ----------
    max_iter : int, default 1000
        LSML's iterations.
    pca, seed
        See :class:`MetricBaseline`.

    Notes
    -----
    metric-learn 0.7.0 does not run with scikit-learn >= 1.8 as released; see
    ``_metric_learn`` in this module for the small bridge applied on first use.

    Notebook: 08_triplet_matchnet.ipynb
    """

    name = "Mahalanobis (LSML)"

    def __init__(self, *, max_iter: int = 1000, pca: int | None = None, seed: int = 0):
        super().__init__(pca=pca, seed=seed)
        self.max_iter = check_int("max_iter", max_iter)

    def _fit(self, Z: np.ndarray, t: np.ndarray) -> None:
        from threadpoolctl import threadpool_limits

        # LSML divides by the pair distances: a pair of identical feature vectors (duplicate
        # clips) would make its gradient NaN, so such constraints are left out.
        same = (np.all(Z[t[:, 0]] == Z[t[:, 1]], axis=1) | np.all(Z[t[:, 0]] == Z[t[:, 2]], axis=1))
        if same.all():
            raise ValueError("every triplet pairs identical feature vectors; nothing to learn")
        if same.any():
            warnings.warn(f"LSML: {int(same.sum())} triplet(s) pair identical feature vectors "
                          "and are left out", RuntimeWarning, stacklevel=3)
            t = t[~same]
        self.input_scale_ = float(np.sqrt(len(t)))
        learner = _metric_learn().LSML(prior="identity", max_iter=self.max_iter,
                                       preprocessor=Z * self.input_scale_, random_state=self.seed)
        # LSML works on D x D matrices with D ~ 100: one BLAS thread is fastest, and a
        # multi-threaded BLAS on a busy machine can be many times slower (spinning threads).
        with threadpool_limits(limits=1, user_api="blas"):
            learner.fit(t[:, [0, 1, 0, 2]])
        self.components_ = np.asarray(learner.components_, dtype=np.float64)

    def _embed(self, Z: np.ndarray) -> np.ndarray:
        return (Z * self.input_scale_) @ self.components_.T


# --------------------------------------------------------------------------------------------
# evaluation
# --------------------------------------------------------------------------------------------
def cfr(distance_fn, X, triplets):
    """Constraints Fulfillment Rate of a distance on triplets (a, p, n).

    Scored by :func:`mrlib.evaluate.constraints_fulfillment_rate`, so the whole suite counts
    CFR one way: the share of triplets with d(a, p) < d(a, n), ties not fulfilled.

    Parameters
    ----------
    distance_fn : MetricBaseline or numpy.ndarray
        A fitted baseline (its ``distance``) or a precomputed (N, N) distance matrix (then ``X``
        is ignored; pass ``None``). For a similarity S pass ``-S`` or ``1 - S``.
    X : numpy.ndarray, shape (N, D), or None
    triplets : numpy.ndarray of int, shape (M, 3)
        Row indices (a, p, n).

    Returns
    -------
    mrlib.evaluate.CFR
        ``rate`` in [0, 1], its binomial standard error ``se``, and ``n`` triplets. Ties count
        as violations, so a constant distance scores 0 and random distances about 0.5.

    Notebook: 08_triplet_matchnet.ipynb
    """
    if isinstance(distance_fn, np.ndarray):
        D = distance_fn
        if D.ndim != 2 or D.shape[0] != D.shape[1]:
            raise ValueError(f"a distance matrix must be square (N, N), got {D.shape}")
        t = check_triplets(triplets, len(D))
        return constraints_fulfillment_rate(D[t[:, 0], t[:, 1]], D[t[:, 0], t[:, 2]])
    if not hasattr(distance_fn, "distance"):
        raise TypeError("distance_fn must be a fitted baseline or an (N, N) distance matrix, "
                        f"got {type(distance_fn).__name__}")
    t = check_triplets(triplets, len(_check_X(X)))
    return constraints_fulfillment_rate(distance_fn.distance(X, t[:, 0], t[:, 1]),
                                        distance_fn.distance(X, t[:, 0], t[:, 2]))


@dataclass
class CVResult:
    """Per-fold CFR of one method.

    Attributes
    ----------
    name : str
    per_fold : numpy.ndarray of float64, shape (n_folds,)
        Test CFR per fold (NaN for a fold without test triplets).
    train : numpy.ndarray of float64, shape (n_folds,)
        CFR on each fold's own training triplets (how well it fits).
    n_test : numpy.ndarray of int64, shape (n_folds,)
    mean, std : float
        Over the folds with test triplets; ``std`` is the sample standard deviation (ddof=1).

    Notebook: 08_triplet_matchnet.ipynb
    """

    name: str
    per_fold: np.ndarray
    train: np.ndarray
    n_test: np.ndarray
    mean: float
    std: float


def nested_subsets(folds: Sequence, shares: Sequence[float], seed: int):
    """``(fold, share, train subset, test_idx)`` for every fold, in order, and every share.

    Each fold's training triplets are permuted once by ``numpy.random.default_rng(seed)``, fold
    after fold, and the first ``ceil(share * n_train)`` (at least one) are kept, so the subsets
    are nested as the share grows. The baselines' curve, MatchNet's curve
    (:func:`mrlib.matchnet_cv.generalization_curve_matchnet`) and the stored curve experiment
    (:func:`mrlib.cfr2017.share_folds`) all draw their subsets here, so they train on the same
    triplets for the same seed.

    Notebook: 08_triplet_matchnet.ipynb
    """
    rng = np.random.default_rng(check_int("seed", seed, 0))
    for f, (train_idx, test_idx) in enumerate(folds):
        order = rng.permutation(np.asarray(train_idx, np.int64))
        for share in shares:
            # rounded before the ceiling: 0.55 * 100 is 55.00000000000001 in floating point
            n_keep = int(np.ceil(round(share * len(order), 9)))
            yield f, share, order[:max(1, n_keep)], test_idx


def check_folds(folds, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The folds as int64 ``(train_idx, test_idx)`` pairs of rows of ``n`` triplets, each with
    training triplets and none in both sets."""
    if not isinstance(folds, Sequence) or len(folds) == 0:
        raise ValueError("folds must be a non-empty sequence of (train_idx, test_idx)")
    out = []
    for f, fold in enumerate(folds):
        try:
            train_idx, test_idx = fold
        except (TypeError, ValueError):
            raise ValueError(f"fold {f} must be a pair (train_idx, test_idx)") from None
        tr, te = np.asarray(train_idx, np.int64), np.asarray(test_idx, np.int64)
        if len(tr) == 0:
            raise ValueError(f"fold {f} has no training triplets")
        for name, ix in (("train", tr), ("test", te)):
            check_indices(f"fold {f}: {name} indices", ix, n, "rows of triplets")
        if np.intersect1d(tr, te).size:
            raise ValueError(f"fold {f}: a triplet is in both its training and its test set")
        out.append((tr, te))
    return out


def cross_validate(
    method_factory: Callable[[], MetricBaseline],
    X,
    triplets,
    folds: Sequence,
    *,
    progress: bool = True,
) -> CVResult:
    """K-fold CFR: fit a fresh method on each fold's training triplets, score its test triplets.

    Parameters
    ----------
    method_factory : class or callable
        Makes a fresh :class:`MetricBaseline`-like object (``fit`` and ``distance``), e.g.
        ``lambda: TripletSVM(C=0.1)``.
    X : numpy.ndarray, shape (N, D)
        Features by row index (the triplets index rows).
    triplets : numpy.ndarray of int, shape (M, 3)
    folds : sequence of (train_idx, test_idx)
        Indices into ``triplets`` (:func:`mrlib.odd_one_out.triplet_folds`).
    progress : bool, default True

    Returns
    -------
    CVResult
        Labelled by the method's ``name``: per-fold test and train CFR, mean and sample std
        over folds.

    Notebook: 08_triplet_matchnet.ipynb
    """
    X = _check_X(X)
    t = check_triplets(triplets, len(X))
    folds = check_folds(folds, len(t))
    return _cross_validate(method_factory, [X] * len(folds), t, folds, progress)


def _fold_fits(method_factory, X_per_fold: list, t: np.ndarray, folds: list, *,
               progress: bool = False):
    """For each fold ``(train_idx, test_idx)``, in order, a fresh method fitted on
    ``t[train_idx]`` with the fold's features ``X``: ``(method, X, (d_ap, d_an))``, the distances
    of the fold's test triplets (empty arrays for a fold without any). The one fold loop of the
    baselines: :func:`cross_validate`, :func:`generalization_curve`,
    :func:`mrlib.matchnet_cv.cross_validate_features` and :func:`mrlib.cfr2017.run`."""
    if not callable(method_factory):
        raise TypeError("method_factory must be a class or a zero-argument callable making a "
                        f"baseline, got {type(method_factory).__name__}")
    for X, (train_idx, test_idx) in tqdm(list(zip(X_per_fold, folds)), desc="folds",
                                         disable=not progress):
        method = method_factory()
        method.fit(X, t[train_idx])
        te = t[test_idx]
        yield method, X, ((method.distance(X, te[:, 0], te[:, 1]),
                           method.distance(X, te[:, 0], te[:, 2])) if len(te)
                          else (np.zeros(0), np.zeros(0)))


def _cross_validate(method_factory, X_per_fold: list, t: np.ndarray, folds: list,
                    progress: bool) -> CVResult:
    """:func:`cross_validate` with fold ``f`` on ``X_per_fold[f]``, all checked (also
    :func:`mrlib.matchnet_cv.cross_validate_features`)."""
    test_cfr, train_cfr = [], []
    fits = _fold_fits(method_factory, X_per_fold, t, folds, progress=progress)
    for (method, X, d), (train_idx, _) in zip(fits, folds):
        train_cfr.append(cfr(method, X, t[train_idx]).rate)
        test_cfr.append(constraints_fulfillment_rate(*d).rate if len(d[0]) else np.nan)
    label = getattr(method, "name", type(method).__name__)        # the folds are not empty
    return _cv_result(label, test_cfr, train_cfr, folds, stacklevel=4)


def _cv_result(name: str, test_cfr, train_cfr, folds: list, *extra, cls: type = CVResult,
              stacklevel: int) -> CVResult:
    """A :class:`CVResult` (or ``cls``, with its ``extra`` fields) of the folds' test and
    training CFR. The mean and sample std (ddof = 1) leave out, with a warning ``stacklevel``
    frames up (the public function's caller), the folds without test triplets (NaN)."""
    per_fold = np.asarray(test_cfr, dtype=np.float64)
    valid = per_fold[~np.isnan(per_fold)]
    if len(valid) < len(per_fold):
        warnings.warn(f"{len(per_fold) - len(valid)} fold(s) had no test triplets and are left "
                      "out of the mean", RuntimeWarning, stacklevel=stacklevel)
    mean = float(valid.mean()) if len(valid) else float("nan")
    std = float(valid.std(ddof=1)) if len(valid) > 1 else float("nan")
    return cls(name, per_fold, np.asarray(train_cfr, np.float64),
               np.asarray([len(te) for _, te in folds], np.int64), mean, std, *extra)


def _curve_frame(folds: list, shares, seed: int, score: Callable, desc: str, progress: bool,
                known=None) -> pd.DataFrame:
    """The points ``share, fold, n_train, cfr`` of a generalisation curve (the baselines' and
    MatchNet's): ``score(train, test_idx)`` on each of :func:`nested_subsets`, in order; NaN for
    a fold without test triplets, and ``known[f]`` for fold ``f``'s whole training set when
    given. ``shares`` must be numbers in (0, 1]."""
    shares = np.asarray(shares, dtype=float)
    # written as "not in (0, 1]" so that NaN is refused too
    if shares.ndim != 1 or shares.size == 0 or not ((shares > 0) & (shares <= 1)).all():
        raise ValueError(f"shares must be numbers in (0, 1], got {shares.tolist()}")
    rows, todo = [], []
    for f, share, train, test_idx in nested_subsets(folds, shares, seed):
        rows.append({"share": float(share), "fold": f, "n_train": len(train), "cfr": np.nan})
        if known is not None and len(train) == len(folds[f][0]):
            rows[-1]["cfr"] = float(known[f])
        elif len(test_idx):
            todo.append((rows[-1], train, test_idx))
    for row, train, test_idx in tqdm(todo, desc=desc, unit="point", disable=not progress):
        row["cfr"] = float(score(train, test_idx))
    return pd.DataFrame(rows, columns=["share", "fold", "n_train", "cfr"])


def generalization_curve(
    method_factory,
    X,
    triplets,
    folds: Sequence,
    shares: Sequence[float] = (0.1, 0.2, 0.4, 0.6, 0.8, 1.0),
    *,
    seed: int = 0,
    progress: bool = True,
) -> pd.DataFrame:
    """Test CFR against the share of each fold's training triplets used (the 2017
    "generalization capability" figure).

    For each fold the training triplets are shuffled once (seeded) and the first
    ``ceil(share * n_train)`` are used, so the training sets are nested as the share grows
    (:func:`nested_subsets`).

    Parameters
    ----------
    method_factory, X, triplets, folds
        As in :func:`cross_validate`.
    shares : sequence of float in (0, 1], default (0.1, 0.2, 0.4, 0.6, 0.8, 1.0)
    seed : int, default 0
    progress : bool, default True

    Returns
    -------
    pandas.DataFrame
        Columns ``share, fold, n_train, cfr`` (one row per share and fold); average over
        ``fold`` for the curve.

    Notebook: 08_triplet_matchnet.ipynb
    """
    X = _check_X(X)
    t = check_triplets(triplets, len(X))

    def score(train, test_idx):
        (_, _, d), = _fold_fits(method_factory, [X], t, [(train, test_idx)])
        return constraints_fulfillment_rate(*d).rate

    return _curve_frame(check_folds(folds, len(t)), shares, seed, score, "curve", progress)
