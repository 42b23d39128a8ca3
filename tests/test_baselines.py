"""Tests of mrlib.baselines: handcrafted features, the metric baselines, CFR and its
cross-validation."""
from __future__ import annotations

import types
import warnings

import numpy as np
import pandas as pd
import pytest

from mrlib.baselines import (
    Euclidean,
    Mahalanobis,
    TripletSVM,
    catalog_features,
    cfr,
    cross_validate,
    generalization_curve,
)
from mrlib.handcrafted import feature_names, handcrafted_features
from mrlib.odd_one_out import comparisons_to_triplets, simulate_votes, triplet_folds

SR = 22050


# --------------------------------------------------------------------------------------------
# handcrafted features
# --------------------------------------------------------------------------------------------
def _tone(freq, seconds=3.0, sr=SR):
    t = np.arange(int(seconds * sr)) / sr
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_feature_vector_layout_and_values():
    names = feature_names()
    v = handcrafted_features(_tone(1000.0), SR)
    assert v.dtype == np.float32 and v.shape == (len(names),) == (131,)
    assert np.isfinite(v).all()
    f = dict(zip(names, v))
    # A pure 1 kHz tone: centroid and roll-off sit at 1 kHz, flatness near 0.
    assert abs(f["centroid_mean"] - 1000) < 30 and abs(f["rolloff_mean"] - 1000) < 50
    assert f["flatness_mean"] < 0.01
    # A 440 Hz tone has chroma A strongest.
    g = dict(zip(names, handcrafted_features(_tone(440.0), SR)))
    chroma = {k: g[k] for k in names if k.startswith("chroma_") and k.endswith("_mean")}
    assert max(chroma, key=chroma.get) == "chroma_A_mean"
    # Same input, same bytes; brighter sound, higher centroid.
    np.testing.assert_array_equal(v, handcrafted_features(_tone(1000.0), SR))
    assert g["centroid_mean"] < f["centroid_mean"]


def test_click_track_tempo():
    y = np.zeros(8 * SR, dtype=np.float32)
    rng = np.random.default_rng(0)
    for onset in np.arange(0.0, 8.0, 0.5):                 # 120 BPM
        start = int(onset * SR)
        y[start:start + 300] = rng.uniform(-1, 1, 300)
    f = dict(zip(feature_names(), handcrafted_features(y, SR)))
    assert abs(f["tempo_bpm"] - 120) < 6


def test_feature_options_and_edge_cases():
    assert len(handcrafted_features(_tone(300, 1.0, 16000), 16000)) == 131     # MTAT's rate
    assert len(handcrafted_features(_tone(300, 1.0, 8000), 8000)) == 131       # contrast adapts
    short = handcrafted_features(np.full(100, 0.1, np.float32), SR)            # padded
    assert np.isfinite(short).all()
    v = handcrafted_features(_tone(300, 1.0), SR, n_mfcc=13)
    assert v.shape == (len(feature_names(13)),) == (4 * 13 + 51,)
    with pytest.raises(ValueError, match="1-D"):
        handcrafted_features(np.zeros((2, 100), np.float32), SR)
    with pytest.raises(ValueError, match="finite"):
        handcrafted_features(np.array([0.0, np.nan] * 2000, np.float32), SR)
    with pytest.raises(ValueError, match="sr must be >= 4000, got 100"):
        handcrafted_features(_tone(300, 1.0), 100)
    with pytest.raises(TypeError, match="sr must be an int"):
        handcrafted_features(_tone(300, 1.0), 22050.0)


def test_catalog_features_skip_report_and_cache(tmp_path, monkeypatch):
    from mrlib.mtat import catalog_frames, write_fixture

    info = write_fixture(tmp_path / "mtat", n_clips=8, n_artists=3, n_comparisons=4,
                         duration_s=1.5, n_broken=1, seed=1)
    tracks, tags, _, _ = catalog_frames(tmp_path / "mtat", check_audio=False)   # keep the broken clip
    catalog = types.SimpleNamespace(name="mtat", root=tmp_path / "mtat", tracks=tracks)
    feats = catalog_features(catalog, sr=16000, progress=False, cache_dir=tmp_path / "cache")
    assert feats.X.shape == (7, 131) and feats.X.dtype == np.float32
    broken = int(np.flatnonzero(tracks.track_id == info.broken[0])[0])
    np.testing.assert_array_equal(feats.index, np.delete(np.arange(8), broken))
    assert feats.report.count == 1 and feats.report.ids == [str(info.broken[0])]
    assert feats.report.by_kind() == {"empty": 1}
    full = feats.full()
    assert np.isnan(full[broken]).all() and np.isfinite(np.delete(full, broken, 0)).all()
    t = np.array([[0, 1, 2], [broken, 1, 2], [3, 4, broken]])
    np.testing.assert_array_equal(feats.triplet_mask(t), [broken not in (0, 1, 2), False, False])
    # the features of a clip are those of its decoded audio
    from mrlib.audio import load_audio

    y, _ = load_audio(catalog.root / tracks.path.iat[feats.index[0]], 16000, min_duration_s=1.0)
    np.testing.assert_allclose(feats.X[0], handcrafted_features(y, 16000), rtol=1e-5, atol=1e-4)
    # the second call reads the cache: extraction is not run again
    monkeypatch.setattr("mrlib.handcrafted._features_of",
                        lambda *a, **k: pytest.fail("cache not used"))
    again = catalog_features(catalog, sr=16000, progress=False, cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(again.X, feats.X)
    np.testing.assert_array_equal(again.index, feats.index)
    assert again.report.skipped == feats.report.skipped
    # a numpy rate names the same cache file as the Python int of equal value
    again = catalog_features(catalog, sr=np.int64(16000), progress=False, cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(again.X, feats.X)
    with pytest.raises(ValueError, match=r"^n_jobs must be a positive int or -1 \(every core\)"):
        catalog_features(catalog, n_jobs=0)
    with pytest.raises(TypeError, match="Catalog"):
        catalog_features(tracks)


@pytest.mark.slow
def test_catalog_features_parallel_equals_serial(tmp_path):
    from mrlib.mtat import catalog_frames, write_fixture

    write_fixture(tmp_path / "m", n_clips=6, n_artists=2, n_comparisons=3, duration_s=1.0, seed=2)
    tracks = catalog_frames(tmp_path / "m")[0]
    catalog = types.SimpleNamespace(name="m", root=tmp_path / "m", tracks=tracks)
    a = catalog_features(catalog, sr=16000, progress=False, cache=False)
    b = catalog_features(catalog, sr=16000, progress=False, cache=False, n_jobs=2)
    np.testing.assert_allclose(a.X, b.X, rtol=1e-5, atol=1e-5)   # BLAS order may differ per process


# --------------------------------------------------------------------------------------------
# CFR
# --------------------------------------------------------------------------------------------
def _relevant_dims_problem(n=150, d=10, n_relevant=3, m=600, seed=0):
    """Triplets ordered by a distance that only sees the first dims; the rest is loud noise."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    X[:, n_relevant:] *= 3.0
    w = np.r_[np.ones(n_relevant), np.zeros(d - n_relevant)]
    t = rng.integers(0, n, size=(2 * m, 3))
    t = t[(t[:, 0] != t[:, 1]) & (t[:, 0] != t[:, 2]) & (t[:, 1] != t[:, 2])][:m]

    def dist(a, b):
        return ((X[a] - X[b]) ** 2 * w).sum(axis=1)

    swap = dist(t[:, 0], t[:, 1]) > dist(t[:, 0], t[:, 2])
    t[swap] = t[swap][:, [0, 2, 1]]
    return X, t, w


def test_cfr_reversed_oracle_random_and_constant():
    X, t, w = _relevant_dims_problem()

    true_distance = ((X[:, None] - X[None]) ** 2 * w).sum(axis=-1)
    assert cfr(true_distance, None, t).rate == 1.0
    assert cfr(-true_distance, None, t).rate == 0.0                # every one reversed
    assert cfr(np.zeros_like(true_distance), None, t).rate == 0.0  # ties are failures
    D = np.random.default_rng(1).random((len(X), len(X)))
    r = cfr(D, None, t)
    assert r.n == len(t) and abs(r.rate - 0.5) < 3 * np.sqrt(0.25 / len(t))
    # a fitted baseline is scored by its distances
    fitted = Euclidean().fit(X, t)
    d = fitted.distance(X, t[:, 0], t[:, 1]) < fitted.distance(X, t[:, 0], t[:, 2])
    assert cfr(fitted, X, t).rate == d.mean()
    with pytest.raises(TypeError, match="distance_fn must be a fitted baseline or an"):
        cfr(lambda X_, a, b: np.zeros(len(a)), X, t)


def test_oracle_scores_one_on_noise_free_votes():
    rng = np.random.default_rng(2)
    Z = rng.normal(size=(60, 4))
    S = np.exp(-((Z[:, None] - Z[None]) ** 2).sum(-1) / 4)
    t, _ = comparisons_to_triplets(simulate_votes(S, 400, noise=0.0, seed=0))
    assert cfr(1.0 - S, None, t).rate == 1.0
    noisy, _ = comparisons_to_triplets(simulate_votes(S, 400, noise=0.2, seed=0), min_margin=1)
    assert 0.5 < cfr(1.0 - S, None, noisy).rate < 1.0           # noisy players disagree sometimes


def test_one_code_path_for_the_synthetic_catalog():
    """Votes simulated from the suite's oracle on synthetic tags: the oracle scores CFR 1."""
    from mrlib.similarity import oracle
    from mrlib.synth import sample_catalog

    tags = np.asarray(sample_catalog(200, seed=0).tags, dtype=np.float32)
    S = oracle(tags, tags)
    t, report = comparisons_to_triplets(simulate_votes(S, 300, noise=0.0, seed=1))
    assert report.n_triplets > 0
    assert cfr(1.0 - S, None, t).rate == 1.0


# --------------------------------------------------------------------------------------------
# the baselines
# --------------------------------------------------------------------------------------------
def test_interface_distance_transform_and_standardisation():
    X, t, _ = _relevant_dims_problem(n=60, m=200)
    X = X * 5 + 3
    train = t[:150]
    for method in (Euclidean(), TripletSVM(), Mahalanobis(max_iter=50)):
        with pytest.raises(RuntimeError, match="not fitted"):
            method.transform(X)
        method.fit(X, train)
        rows = np.unique(train)
        np.testing.assert_allclose(method.mean_, X[rows].mean(axis=0))       # training clips only
        E = method.transform(X)
        pairs = t[150:, :2]
        d = method.distance(X, pairs[:, 0], pairs[:, 1])
        np.testing.assert_allclose(d, ((E[pairs[:, 0]] - E[pairs[:, 1]]) ** 2).sum(axis=1))
    e = Euclidean().fit(X, train)
    Zs = (X - X[np.unique(train)].mean(0)) / X[np.unique(train)].std(0)
    np.testing.assert_allclose(e.distance(X, [0], [1]), ((Zs[0] - Zs[1]) ** 2).sum())
    assert Euclidean(pca=3).fit(X, train).transform(X).shape == (60, 3)
    assert Euclidean(pca=100).fit(X, train).transform(X).shape == (60, X.shape[1])  # at most D
    with pytest.raises(ValueError, match="pca must be >= 1"):
        Euclidean(pca=0)
    with pytest.raises(TypeError, match="pca must be an int"):        # a number of components
        Euclidean(pca=0.5)
    bad = X.copy()
    bad[t[0, 0]] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        Euclidean().fit(bad, train)
    with pytest.raises(ValueError, match=r"\[0, 60\)"):
        Euclidean().fit(X, t + 100)


def test_learned_metrics_beat_euclidean_when_few_dims_matter():
    X, t, _ = _relevant_dims_problem()
    folds = triplet_folds(t, 5, seed=0)
    scores = {}
    for name, factory in {"euclid": Euclidean, "svm": lambda: TripletSVM(C=1.0),
                          "lsml": lambda: Mahalanobis()}.items():
        scores[name] = cross_validate(factory, X, t, folds, progress=False)
    base = scores["euclid"].mean
    assert 0.55 < base < 0.8                    # the loud irrelevant dims hide the structure
    assert scores["svm"].mean > base + 0.2
    assert scores["lsml"].mean > base + 0.1
    # per fold too, not only on average
    for name in ("svm", "lsml"):
        assert (scores[name].per_fold > scores["euclid"].per_fold).all()


def test_triplet_svm_weights():
    X, t, _ = _relevant_dims_problem()
    clip = TripletSVM(C=1.0).fit(X, t)
    assert (clip.weights_ >= 0).all()
    # the relevant dims carry the weight
    assert clip.weights_[:3].min() > 5 * clip.weights_[3:].max()
    with pytest.raises(ValueError, match="C must be a finite number > 0, got 0"):
        TripletSVM(C=0)
    with pytest.raises(TypeError, match="C must be a number"):
        TripletSVM(C="1")


def test_negative_weights_are_clipped_to_zero():
    # Constraints that reward a negative weight on dim 1: d must shrink when dim 1 differs more.
    rng = np.random.default_rng(3)
    X = rng.normal(size=(80, 2))
    t = rng.integers(0, 80, size=(400, 3))
    t = t[(t[:, 0] != t[:, 1]) & (t[:, 0] != t[:, 2]) & (t[:, 1] != t[:, 2])]
    score = lambda a, b: (X[a, 0] - X[b, 0]) ** 2 - 0.5 * (X[a, 1] - X[b, 1]) ** 2  # noqa: E731
    swap = score(t[:, 0], t[:, 1]) > score(t[:, 0], t[:, 2])
    t[swap] = t[swap][:, [0, 2, 1]]
    clip = TripletSVM(C=1.0).fit(X, t)
    assert clip.raw_weights_[1] < 0 and clip.weights_[1] == 0.0 and clip.weights_[0] > 0


def test_mahalanobis_checks_and_bridge():
    from mrlib.baselines import _metric_learn

    ml = _metric_learn()
    assert _metric_learn() is ml                               # idempotent
    assert Mahalanobis().name == "Mahalanobis (LSML)"
    with pytest.raises(TypeError, match="max_iter"):
        Mahalanobis(max_iter=2.5)
    X, t, _ = _relevant_dims_problem(n=40, d=10, m=5)
    m = Mahalanobis(max_iter=20).fit(X, t)
    assert m.components_.shape == (10, 10)


# --------------------------------------------------------------------------------------------
# cross-validation
# --------------------------------------------------------------------------------------------
def test_cross_validate_bookkeeping():
    X, t, _ = _relevant_dims_problem(n=80, m=200)
    folds = triplet_folds(t, 4, seed=1)
    res = cross_validate(Euclidean, X, t, folds, progress=False)
    by_hand = [cfr(Euclidean().fit(X, t[tr]), X, t[te]).rate for tr, te in folds]
    np.testing.assert_allclose(res.per_fold, by_hand)
    assert res.mean == pytest.approx(np.mean(by_hand))
    assert res.std == pytest.approx(np.std(by_hand, ddof=1))
    np.testing.assert_array_equal(res.n_test, [len(te) for _, te in folds])
    assert res.name == "Euclidean"
    res2 = cross_validate(lambda: TripletSVM(C=0.5), X, t, folds, progress=False)
    assert res2.name == "SVM"
    with pytest.raises(TypeError, match="method_factory must be a class or a zero-argument"):
        cross_validate(TripletSVM(C=0.5), X, t, folds, progress=False)
    # a fold without test triplets is left out of the mean, with a warning
    empty = [(folds[0][0], np.array([], dtype=np.int64))] + list(folds[1:])
    with pytest.warns(RuntimeWarning, match="no test triplets"):
        res3 = cross_validate(Euclidean, X, t, empty, progress=False)
    assert np.isnan(res3.per_fold[0]) and res3.mean == pytest.approx(np.mean(by_hand[1:]))


def test_generalization_curve_nested_training_sets():
    X, t, _ = _relevant_dims_problem(n=80, m=300)
    folds = triplet_folds(t, 3, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        curve = generalization_curve(lambda: TripletSVM(C=1.0), X, t, folds,
                                     shares=(0.1, 0.5, 1.0), progress=False)
    assert list(curve.columns) == ["share", "fold", "n_train", "cfr"] and len(curve) == 9
    for _, g in curve.groupby("fold"):
        assert g.n_train.is_monotonic_increasing
    full = curve[curve.share == 1.0].n_train.to_numpy()
    np.testing.assert_array_equal(full, [len(tr) for tr, _ in folds])
    mean = curve.groupby("share").cfr.mean()
    assert mean[1.0] >= mean[0.1] - 0.02                      # more data does not hurt
    with pytest.raises(ValueError, match="shares"):
        generalization_curve(Euclidean, X, t, folds, shares=(0.0, 1.0))
    assert isinstance(curve, pd.DataFrame)


def test_nested_subsets_keep_the_exact_ceiling_of_the_share():
    from mrlib.baselines import nested_subsets

    folds = [(np.arange(100), np.arange(100, 110)), (np.arange(25), np.arange(25, 30))]
    sizes = [len(train) for _, _, train, _ in nested_subsets(folds, [0.28, 0.55, 0.56, 1.0], 0)]
    # ceil(0.55 * 100) = 55, not 56 (floating point gives 55.00000000000001)
    assert sizes == [28, 55, 56, 100, 7, 14, 14, 25]


def test_bad_shares_seeds_and_max_iter_are_refused_at_the_door():
    rng = np.random.default_rng(0)
    X = rng.random((12, 5))
    T = np.unique(np.array([[i, (i + 1) % 12, (i + 5) % 12] for i in range(12)]), axis=0)
    folds = triplet_folds(T, 3)
    with pytest.raises(ValueError, match="shares must be numbers in"):   # "cannot convert float NaN"
        generalization_curve(Euclidean, X, T, folds, shares=(float("nan"),), progress=False)
    with pytest.raises(TypeError, match="seed must be an int"):          # numpy's SeedSequence error
        generalization_curve(Euclidean, X, T, folds, seed="a", progress=False)
    with pytest.raises(ValueError, match=r"fold 0: test indices must lie in \[0, "):  # IndexError
        generalization_curve(Euclidean, X, T, [(folds[0][0], [len(T)])], progress=False)
    with pytest.raises(TypeError, match="seed must be an int"):          # was accepted
        Euclidean(seed="a")
    with pytest.raises(ValueError, match="max_iter must be >= 1"):       # was accepted
        TripletSVM(max_iter=0)


def test_printed_baseline_names_its_method_and_pca():
    from mrlib.baselines import Euclidean, TripletSVM
    assert repr(Euclidean(pca=3)) == "Euclidean(pca=3)"
    assert repr(TripletSVM()) == "TripletSVM(pca=None)"
