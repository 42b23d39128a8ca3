"""Tests of mrlib.matchnet_cv: Triplet MatchNet trained on song triplets and scored by k-fold CFR."""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from mrlib import matchnet_cv as mn
from mrlib.baselines import Euclidean, cross_validate, generalization_curve
from mrlib.evaluate import constraints_fulfillment_rate
from mrlib.features import random_patches, test_patches
from mrlib.losses import matchnet_loss
from mrlib.models import build_model

N_BINS = 16
TINY = dict(patch_len=8, patches_per_song=2, test_patches=3, width=0.0625, embedding_dim=8,
            metric_hidden=128, batch_size=8, lr=3e-3)


def _songs(n=24, n_bins=N_BINS, frames=40, seed=0):
    """Two audible classes of songs: energy in the low or the high half of the bins."""
    rng = np.random.default_rng(seed)
    label = np.arange(n) % 2
    feats = []
    for c in label:
        # centred values: an untrained network (eval-mode BatchNorm at its initial running
        # statistics) then gives unsaturated f, a fair "before" for the learning test
        x = rng.normal(0.0, 1.0, size=(n_bins, frames))
        band = slice(0, n_bins // 2) if c == 0 else slice(n_bins // 2, n_bins)
        x[band] += 2.0
        feats.append(x.astype(np.float16))
    return feats, label


def _class_triplets(label, songs, n, seed):
    """(a, p, n): a and p of one class, n of the other, all drawn from ``songs``."""
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        a, p, q = rng.choice(songs, 3, replace=False)
        if label[a] == label[p] != label[q]:
            out.append((a, p, q))
    return np.array(out, dtype=np.int64)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    # The networks here are tiny: a second thread only adds synchronisation (costly on a busy
    # 2-core CI machine), and one thread makes the arithmetic order fixed.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class _Masked(list):
    """A feature list with a FeatureSet-like ``available`` mask."""

    def __init__(self, items, available):
        super().__init__(items)
        self.available = np.asarray(available, dtype=bool)


# --------------------------------------------------------------------------------------------
# the coarse grid
# --------------------------------------------------------------------------------------------
def test_coarsen_features_averages_power_per_block():
    rng = np.random.default_rng(0)
    x = rng.uniform(-80, 0, size=(6, 11)).astype(np.float16)
    masked = _Masked([x, x[:, :9], np.zeros((6, 11), np.float16)], [True, True, False])
    cf = mn.coarsen_features(masked, freq_pool=2, time_pool=4)
    assert len(cf) == 3 and cf.available.tolist() == [True, True, False]
    assert cf[0].shape == (3, 2) and cf[1].shape == (3, 2) and cf[0].dtype == np.float32
    ref = np.empty((3, 2))
    for i in range(3):
        for j in range(2):                      # trailing frames 8..10 do not fill a block
            block = x[2 * i:2 * i + 2, 4 * j:4 * j + 4].astype(np.float64)
            ref[i, j] = 10 * np.log10(np.mean(10 ** (block / 10)))
    np.testing.assert_allclose(cf[0], ref, rtol=1e-6)
    # a hand-worked block: 0 dB and -inf-ish 10 dB lower -> 10 log10((1 + 0.1) / 2)
    two = mn.coarsen_features([np.array([[0.0, -10.0]])], freq_pool=1, time_pool=2)
    assert two[0][0, 0] == pytest.approx(10 * np.log10(0.55), abs=1e-5)
    # (1, 1) is the identity (up to float32)
    np.testing.assert_allclose(mn.coarsen_features([x], 1, 1)[0], x.astype(np.float32), atol=1e-4)
    with pytest.raises(KeyError, match="no features"):
        cf[2]
    with pytest.raises(ValueError, match="divide"):
        mn.coarsen_features([x], freq_pool=4)
    with pytest.raises(ValueError, match="fewer than time_pool"):
        mn.coarsen_features([x], freq_pool=1, time_pool=12)
    with pytest.raises(ValueError, match="freq_pool must be >= 1"):
        mn.coarsen_features([x], freq_pool=0)
    assert "pool=(2, 4)" in repr(cf)


# --------------------------------------------------------------------------------------------
# configuration and input checks
# --------------------------------------------------------------------------------------------
def test_config_defaults_and_validation():
    cfg = mn.MatchNetConfig()
    assert cfg.test_patches == 8 and cfg.device == "cpu"
    assert dataclasses.replace(cfg, epochs=3).epochs == 3 and cfg.epochs == 10
    for bad, err in ((dict(patch_len=0), ValueError), (dict(epochs=-1), ValueError),
                     (dict(batch_size=2.5), TypeError), (dict(width=0.0), ValueError),
                     (dict(lr=1.5), ValueError), (dict(lr="1e-3"), TypeError),
                     (dict(device=None), TypeError),
                     (dict(patches_per_song=True), TypeError)):
        with pytest.raises(err):
            mn.MatchNetConfig(**bad)


def test_bad_inputs_are_refused():
    feats, label = _songs(8)
    cfg = mn.MatchNetConfig(**TINY, epochs=1)
    with pytest.raises(ValueError, match="three different"):
        mn.train_matchnet(feats, np.array([[0, 0, 1]]), cfg, progress=False)
    with pytest.raises(ValueError, match=r"\[0, 8\)"):
        mn.train_matchnet(feats, np.array([[0, 1, 8]]), cfg, progress=False)
    with pytest.raises(ValueError, match=r"\(M, 3\)"):
        mn.train_matchnet(feats, np.array([0, 1, 2]), cfg, progress=False)
    with pytest.raises(TypeError, match="integer"):
        mn.train_matchnet(feats, np.array([[0.0, 1.0, 2.0]]), cfg, progress=False)
    with pytest.raises(TypeError, match="MatchNetConfig"):
        mn.train_matchnet(feats, np.array([[0, 1, 2]]), {"epochs": 1}, progress=False)
    masked = _Masked(feats, [True] * 7 + [False])
    with pytest.raises(ValueError, match="no features"):
        mn.train_matchnet(masked, np.array([[0, 1, 7]]), cfg, progress=False)
    t = np.array([[0, 2, 1], [1, 3, 0], [2, 4, 1]])
    with pytest.raises(ValueError, match="both its training and its test"):
        mn.cross_validate_matchnet(feats, t, [(np.array([0, 1]), np.array([1, 2]))], cfg, progress=False)
    with pytest.raises(ValueError, match="no training"):
        mn.cross_validate_matchnet(feats, t, [(np.array([], int), np.array([1]))], cfg, progress=False)
    with pytest.raises(ValueError, match="one feature matrix per fold"):
        mn.cross_validate_features(Euclidean, [np.zeros((8, 2))], t, [(np.array([0]), np.array([1]))] * 2)
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        mn.generalization_curve_matchnet(feats, t, [(np.array([0, 1]), np.array([2]))], shares=(0.0, 1.0),
                                         config=cfg, progress=False)


# --------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------
def test_one_step_loss_is_the_matchnet_loss_of_the_drawn_patches():
    """The logged loss of a one-batch epoch equals psi + phi recomputed by hand on the same
    patches and the same initial weights: the loop wires patches, pairs and loss correctly."""
    feats, label = _songs(12)
    t = _class_triplets(label, np.arange(12), 5, seed=1)
    cfg = mn.MatchNetConfig(**{**TINY, "batch_size": 8}, epochs=1, seed=3)
    run = mn.train_matchnet(feats, t, cfg, progress=False)

    rng = np.random.default_rng(3)
    order = rng.permutation(len(t))
    P, L = cfg.patches_per_song, cfg.patch_len
    songs = t[order].reshape(-1)
    x = np.stack([random_patches(feats[s], L, P, rng) for s in songs]).astype(np.float32)
    model = build_model("matchnet", width=cfg.width, n_bins=N_BINS, patch_len=L,
                        embedding_dim=cfg.embedding_dim, metric_hidden=cfg.metric_hidden, seed=3)
    model.train()
    e = model.embed(torch.from_numpy(x.reshape(-1, N_BINS, L))).reshape(len(t), 3, P, -1)
    z_pos = torch.stack([torch.stack([torch.stack([model.metric_logits(e[k, 0, i], e[k, 1, j])
                                                   for j in range(P)]) for i in range(P)])
                         for k in range(len(t))])
    z_neg = torch.stack([torch.stack([torch.stack([model.metric_logits(e[k, 0, i], e[k, 2, j])
                                                   for j in range(P)]) for i in range(P)])
                         for k in range(len(t))])
    expected = matchnet_loss(z_pos, z_neg).item()
    assert run.history.loc[0, "loss"] == pytest.approx(expected, rel=1e-5)
    assert run.history.loc[0, "loss"] == pytest.approx(run.history.loc[0, "rank"]
                                                       + run.history.loc[0, "contrastive"], rel=1e-6)
    assert 0.0 <= run.history.loc[0, "active"] <= 1.0
    assert not run.model.training


def test_training_is_seeded_and_repeatable():
    feats, label = _songs(12)
    t = _class_triplets(label, np.arange(12), 10, seed=2)
    cfg = mn.MatchNetConfig(**TINY, epochs=2, seed=5)
    a = mn.train_matchnet(feats, t, cfg, progress=False)
    b = mn.train_matchnet(feats, t, cfg, progress=False)
    c = mn.train_matchnet(feats, t, dataclasses.replace(cfg, seed=6), progress=False)
    for pa, pb in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(pa, pb)
    pd.testing.assert_frame_equal(a.history.drop(columns=["seconds", "patches_per_s"]),
                                  b.history.drop(columns=["seconds", "patches_per_s"]))
    assert any(not torch.equal(pa, pc) for pa, pc in zip(a.model.parameters(), c.model.parameters()))
    # The global torch RNG is left alone.
    torch.manual_seed(0)
    before = torch.rand(3)
    torch.manual_seed(0)
    mn.train_matchnet(feats, t, dataclasses.replace(cfg, epochs=1), progress=False)
    assert torch.equal(torch.rand(3), before)


def test_epochs_zero_is_the_untrained_network():
    feats, label = _songs(6)
    cfg = mn.MatchNetConfig(**TINY, epochs=0, seed=4)
    run = mn.train_matchnet(feats, np.array([[0, 2, 1]]), cfg, progress=False)
    ref = build_model("matchnet", width=cfg.width, n_bins=N_BINS, patch_len=cfg.patch_len,
                      embedding_dim=cfg.embedding_dim, metric_hidden=cfg.metric_hidden, seed=4)
    for p, q in zip(run.model.state_dict().values(), ref.state_dict().values()):
        assert torch.equal(p, q)
    assert len(run.history) == 0


def test_learns_an_audible_distinction_on_unseen_songs():
    """Two classes of songs told apart by their spectra: trained on triplets over 16 songs,
    the song-level decision fulfils held-out triplets over 8 other songs far above chance,
    and far above the untrained network."""
    feats, label = _songs(24, seed=0)
    train_songs, test_songs = np.arange(16), np.arange(16, 24)
    t_train = _class_triplets(label, train_songs, 64, seed=0)
    t_test = _class_triplets(label, test_songs, 60, seed=1)
    cfg = mn.MatchNetConfig(**TINY, epochs=6, seed=0)
    scores = {}
    for epochs in (0, 6):
        run = mn.train_matchnet(feats, t_train, dataclasses.replace(cfg, epochs=epochs), progress=False)
        E = mn.embed_songs(run.model, feats, np.arange(24), n_patches=cfg.test_patches)
        scores[epochs] = constraints_fulfillment_rate(*mn.triplet_dissimilarities(run.model, E, t_test)).rate
        if epochs:
            hist = run.history
    assert scores[6] >= 0.9, scores
    assert scores[6] > scores[0] + 0.2, scores
    assert hist["loss"].iloc[-1] < hist["loss"].iloc[0]


# --------------------------------------------------------------------------------------------
# song-level scoring
# --------------------------------------------------------------------------------------------
def test_embed_songs_uses_the_seeded_test_patches():
    feats, _ = _songs(6)
    model = build_model("matchnet", width=0.0625, n_bins=N_BINS, patch_len=8, embedding_dim=8, seed=0).eval()
    idx = np.array([4, 1, 5])
    E = mn.embed_songs(model, feats, idx, n_patches=3, batch_size=4)   # chunks of one song
    assert E.shape == (3, 3, 8) and E.dtype == np.float32
    with torch.no_grad():
        for row, i in enumerate(idx):
            x = torch.from_numpy(test_patches(feats[i], 8, n=3, seed=int(i)).astype(np.float32))
            np.testing.assert_allclose(E[row], model.embed(x).numpy(), rtol=1e-5, atol=1e-6)
    assert model.training is False
    with pytest.raises(ValueError, match=r"\[0, 6\)"):
        mn.embed_songs(model, feats, np.array([6]))
    with pytest.raises(ValueError, match=r"^idx must be 1-D catalog indices, got shape \(1, 3\)"):
        mn.embed_songs(model, feats, idx[None])
    with pytest.raises(ValueError, match="n_patches must be >= 1, got 0"):
        mn.embed_songs(model, feats, idx, n_patches=0)
    with pytest.raises(TypeError, match="n_patches must be an int"):
        mn.embed_songs(model, feats, idx, n_patches=2.0)


def test_pair_dissimilarities_match_a_plain_loop_and_the_model():
    feats, _ = _songs(5)
    model = build_model("matchnet", width=0.0625, n_bins=N_BINS, patch_len=8, embedding_dim=8, seed=1).eval()
    E = mn.embed_songs(model, feats, np.arange(5), n_patches=3)
    a, b = np.array([0, 1, 4, 2, 3]), np.array([1, 0, 2, 2, 4])
    got = mn.pair_dissimilarities(model, E, a, b, block=2)
    with torch.no_grad():
        for k in range(len(a)):
            fs = [torch.sigmoid(model.metric_logits(torch.from_numpy(E[a[k], i]), torch.from_numpy(E[b[k], j]))).item()
                  for i in range(3) for j in range(3)]
            assert got[k] == pytest.approx(np.mean(fs), rel=1e-5)
            # the model's own song-level decision on the same patches
            xa = torch.from_numpy(test_patches(feats[a[k]], 8, n=3, seed=int(a[k])).astype(np.float32))
            xb = torch.from_numpy(test_patches(feats[b[k]], 8, n=3, seed=int(b[k])).astype(np.float32))
            assert got[k] == pytest.approx(torch.sigmoid(model.pair_logits(xa, xb)).mean().item(), rel=1e-5)
    assert ((got > 0) & (got < 1)).all()
    t = np.stack([a, b, (b + 1) % 5], axis=1)
    t = t[(t[:, 0] != t[:, 1]) & (t[:, 0] != t[:, 2]) & (t[:, 1] != t[:, 2])]
    d_ap, d_an = mn.triplet_dissimilarities(model, E, t)
    np.testing.assert_allclose(d_ap, mn.pair_dissimilarities(model, E, t[:, 0], t[:, 1]))
    np.testing.assert_allclose(d_an, mn.pair_dissimilarities(model, E, t[:, 0], t[:, 2]))
    with pytest.raises(ValueError, match="same length"):
        mn.pair_dissimilarities(model, E, a, b[:2])


# --------------------------------------------------------------------------------------------
# cross-validation
# --------------------------------------------------------------------------------------------
def _small_problem():
    feats, label = _songs(16)
    t = _class_triplets(label, np.arange(16), 30, seed=3)
    folds = [(np.arange(10, 30), np.arange(0, 10)), (np.r_[0:10, 20:30], np.arange(10, 20)),
             (np.arange(0, 20), np.arange(20, 30))]
    return feats, t, folds


def test_cross_validate_matchnet_equals_fold_by_fold_training():
    feats, t, folds = _small_problem()
    cfg = mn.MatchNetConfig(**TINY, epochs=1, seed=0)
    cv = mn.cross_validate_matchnet(feats, t, folds, cfg, progress=False)
    assert cv.per_fold.shape == cv.train.shape == (3,)
    np.testing.assert_array_equal(cv.n_test, [10, 10, 10])
    assert cv.embeddings.shape == (3, 16, cfg.test_patches, cfg.embedding_dim)
    assert cv.mean == pytest.approx(np.mean(cv.per_fold))
    assert cv.std == pytest.approx(np.std(cv.per_fold, ddof=1))
    assert len(cv.histories) == 3 and "Triplet MatchNet" in str(cv)
    for f, (tr, te) in enumerate(folds):
        run = mn.train_matchnet(feats, t[tr], cfg, progress=False)
        E = mn.embed_songs(run.model, feats, np.arange(16), n_patches=cfg.test_patches)
        np.testing.assert_array_equal(E, cv.embeddings[f])
        d_ap, d_an = mn.triplet_dissimilarities(run.model, E, t[te])
        assert cv.per_fold[f] == np.mean(d_ap < d_an)
        np.testing.assert_array_equal(cv.d_test[f][0], d_ap)
    np.testing.assert_allclose(cv.mean_embeddings(1), cv.embeddings[1].mean(axis=1))


def test_cross_validate_matchnet_empty_test_fold_and_missing_songs():
    feats, t, folds = _small_problem()
    masked = _Masked(feats + [np.zeros((N_BINS, 40), np.float16)], [True] * 16 + [False])
    cfg = mn.MatchNetConfig(**TINY, epochs=0)
    with pytest.warns(RuntimeWarning, match="no test triplets"):
        cv = mn.cross_validate_matchnet(masked, t, folds[:2] + [(np.arange(30), np.array([], int))], cfg,
                                        progress=False)
    assert np.isnan(cv.per_fold[2]) and cv.mean == pytest.approx(np.mean(cv.per_fold[:2]))
    # the song without features gets a NaN row, the others real embeddings
    assert np.isnan(cv.embeddings[0, 16]).all() and np.isfinite(cv.embeddings[0, :16]).all()


def test_cross_validate_features_equals_baselines_on_shared_features():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(16, 5))
    _, t, folds = _small_problem()
    ref = cross_validate(Euclidean, X, t, folds, progress=False)
    got = mn.cross_validate_features(Euclidean, [X] * 3, t, folds, progress=False)
    np.testing.assert_array_equal(got.per_fold, ref.per_fold)
    np.testing.assert_array_equal(got.train, ref.train)
    assert (got.mean, got.std, got.name) == (ref.mean, ref.std, ref.name)
    # per-fold features: fold f is scored on its own matrix only
    Xs = [rng.normal(size=(16, 5)) for _ in folds]
    got = mn.cross_validate_features(Euclidean, np.stack(Xs), t, folds, progress=False)
    for f, (tr, te) in enumerate(folds):
        one = cross_validate(Euclidean, Xs[f], t, [(tr, te)], progress=False)
        assert got.per_fold[f] == one.per_fold[0]


def test_generalization_curve_uses_the_baselines_training_subsets(monkeypatch):
    """MatchNet's curve trains on exactly the subsets mrlib.baselines.generalization_curve
    fits on (same seed, same folds), and reuses the full run for share 1.0."""
    feats, t, folds = _small_problem()
    shares = (0.25, 0.5, 1.0)

    seen_baseline = []

    class Recorder(Euclidean):
        def fit(self, X, triplets):
            seen_baseline.append(np.asarray(triplets).copy())
            return super().fit(X, triplets)

    X = np.random.default_rng(1).normal(size=(16, 3))
    ref = generalization_curve(Recorder, X, t, folds, shares, seed=7, progress=False)

    seen_matchnet = []
    real_train = mn.train_matchnet

    def recording_train(features, triplets, config=None, *, progress=True):
        seen_matchnet.append(np.asarray(triplets).copy())
        return real_train(features, triplets, config, progress=False)

    monkeypatch.setattr(mn, "train_matchnet", recording_train)
    cfg = mn.MatchNetConfig(**TINY, epochs=0)
    curve = mn.generalization_curve_matchnet(feats, t, folds, shares, cfg, seed=7, progress=False)
    assert list(curve.columns) == ["share", "fold", "n_train", "cfr"]
    np.testing.assert_array_equal(curve["n_train"], ref["n_train"])
    np.testing.assert_array_equal(curve["share"], ref["share"])
    assert len(seen_matchnet) == len(seen_baseline) == 9
    for a, b in zip(seen_matchnet, seen_baseline):
        np.testing.assert_array_equal(a, b)
    # the curve's scores are the CFR of the network trained on that subset
    cv = mn.cross_validate_matchnet(feats, t, folds, cfg, progress=False)
    full_rows = curve[curve.share == 1.0]
    np.testing.assert_allclose(full_rows["cfr"], cv.per_fold)

    seen_matchnet.clear()
    curve2 = mn.generalization_curve_matchnet(feats, t, folds, shares, cfg, seed=7, full=cv, progress=False)
    assert len(seen_matchnet) == 6                       # share 1.0 not trained again
    pd.testing.assert_frame_equal(curve, curve2)
    # another config's folds would stand in for share 1.0: refused (where it ran may differ)
    with pytest.raises(ValueError, match=r"another config: lr=0\.003 \(here 0\.01\)"):
        mn.generalization_curve_matchnet(feats, t, folds, shares, dataclasses.replace(cfg, lr=1e-2),
                                         seed=7, full=cv, progress=False)
    curve3 = mn.generalization_curve_matchnet(feats, t, folds, (1.0,),
                                              dataclasses.replace(cfg, eval_batch=64),
                                              seed=7, full=cv, progress=False)
    np.testing.assert_allclose(curve3["cfr"], cv.per_fold)


@pytest.mark.slow  # starts two worker processes that import torch (a few seconds)
def test_parallel_folds_equal_sequential_folds():
    feats, t, folds = _small_problem()
    cfg = mn.MatchNetConfig(**TINY, epochs=1, seed=0)
    # workers run one thread each, as this process does here (the autouse fixture)
    seq = mn.cross_validate_matchnet(feats, t, folds, cfg, progress=False)
    par = mn.cross_validate_matchnet(feats, t, folds, cfg, n_jobs=2, progress=False)
    np.testing.assert_array_equal(seq.per_fold, par.per_fold)
    np.testing.assert_array_equal(seq.embeddings, par.embeddings)
    assert torch.get_num_threads() == 1
