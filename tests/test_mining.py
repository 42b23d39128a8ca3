"""Tests of mrlib.mining: validity, exactness against plain loops, distributions, samplers,
online mining. Every random check uses a fixed seed, so the tests are deterministic."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import stats

from mrlib import mining as mm
from mrlib import mining_reference
from mrlib import online_mining as om
from mrlib.mining_draws import _RNG_BLOCK


# --------------------------------------------------------------------------------------
# Fixtures and plain-loop references
# --------------------------------------------------------------------------------------
def random_S(N: int, seed: int = 0, levels: int | None = None, zeros: float = 0.0) -> np.ndarray:
    """Asymmetric random similarity in [0, 1]; ``levels`` quantises it (ties)."""
    rng = np.random.default_rng(seed)
    S = rng.random((N, N)) ** 3  # most values small, a few large (the shape of Fig. 1, top)
    if levels:
        S = np.round(S * levels) / levels
    if zeros:
        S[rng.random((N, N)) < zeros] = 0.0
    np.fill_diagonal(S, 1.0)
    return S.astype(np.float32)


def ref_ranked_list(S: np.ndarray, t: int, train: np.ndarray) -> list[int]:
    """R(t) restricted to the training tracks, by a plain Python sort: (-S, index)."""
    return sorted((int(x) for x in train if x != t), key=lambda x: (-float(S[t, x]), x))


def ref_neighbors(S, train, n_pos, n_neg) -> np.ndarray:
    rows = []
    for t in sorted(int(x) for x in train):
        R = ref_ranked_list(S, t, train)
        for i in range(1, min(n_pos, len(R)) + 1):
            for n in R[i:i + n_neg]:
                rows.append((t, R[i - 1], n))
    return np.array(rows, dtype=np.int32).reshape(-1, 3)


def full_ranked(S: np.ndarray) -> np.ndarray:
    """Full-catalog ranked lists (N, N-1), ties by index (the mrlib.similarity rule)."""
    N = S.shape[0]
    out = np.empty((N, N - 1), dtype=np.int64)
    for t in range(N):
        out[t] = ref_ranked_list(S, t, np.arange(N))
    return out


def circulant_S(w_by_offset: np.ndarray) -> np.ndarray:
    """S(a, b) = w[(b - a) mod N]: every anchor sees the same weights by rank."""
    N = w_by_offset.size
    idx = (np.arange(N)[None, :] - np.arange(N)[:, None]) % N
    return w_by_offset[idx]


def successive_set_probs(w: np.ndarray, k: int) -> dict[frozenset, float]:
    """Exact probabilities of the k-sets drawn by successive sampling with weights w."""
    probs: dict[frozenset, float] = {}
    for seq in itertools.permutations(range(w.size), k):
        p, left = 1.0, w.sum()
        for x in seq:
            p *= w[x] / left
            left -= w[x]
        key = frozenset(seq)
        probs[key] = probs.get(key, 0.0) + p
    return probs


@pytest.fixture(scope="module")
def catalog():
    """60 tracks, quantised S (ties), some zeros; a 36-track training split."""
    N = 60
    S = random_S(N, seed=1, levels=20, zeros=0.1)
    rng = np.random.default_rng(2)
    train = np.sort(rng.choice(N, size=36, replace=False))
    return S, train


# --------------------------------------------------------------------------------------
# Validity and exactness
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("strategy", mm.OFFLINE_STRATEGIES)
def test_every_strategy_returns_only_valid_triplets(catalog, strategy):
    S, train = catalog
    n_pos, n_neg = 5, 12
    T = mm.mine(None, train, strategy, n_pos=n_pos, n_neg=n_neg, S=S, seed=3, progress=False)
    assert T.dtype == np.int32 and T.shape == (len(train) * n_pos * n_neg, 3)
    assert T.shape[0] == mm.n_triplets(len(train), n_pos, n_neg)
    checks = mm.check_triplets(T, train, n_pos, S=S)
    assert all(checks.values()), checks
    # no validation/test track anywhere
    held_out = np.setdiff1d(np.arange(S.shape[0]), train)
    assert not np.isin(T, held_out).any()
    # ranks are those of the train-restricted list, checked against a plain Python sort
    ranks = mm.triplet_ranks(T, train, S=S)
    for (a, p, n), (rp, rn) in zip(T[::37], ranks[::37]):
        R = ref_ranked_list(S, a, train)
        assert R[rp - 1] == p and R[rn - 1] == n and rn > rp
    # every anchor has exactly n_pos positives, its first n_pos tracks, in rank order
    for a in train[:5]:
        R = ref_ranked_list(S, a, train)
        pos = T[T[:, 0] == a, 1]
        assert list(dict.fromkeys(pos.tolist())) == R[:n_pos]


def test_neighbors_equals_plain_loop_reference(catalog):
    S, train = catalog
    T = mm.mine(None, train, "neighbors", n_pos=4, n_neg=9, S=S, progress=False)
    np.testing.assert_array_equal(T, ref_neighbors(S, train, 4, 9))
    # negatives of the positive at rank i are exactly ranks i+1 .. i+Nn
    ranks = mm.triplet_ranks(T, train, S=S).reshape(len(train), 4, 9, 2)
    i = np.arange(1, 5)
    np.testing.assert_array_equal(ranks[..., 0], np.broadcast_to(i[None, :, None], (len(train), 4, 9)))
    np.testing.assert_array_equal(ranks[..., 1], np.broadcast_to(i[None, :, None] + np.arange(1, 10), (len(train), 4, 9)))


def test_neighbors_long_head_with_ties_matches_reference():
    # heavy ties (5 levels) at the head threshold exercise the tie-filling branch
    S = random_S(80, seed=5, levels=5)
    train = np.arange(80)
    T = mm.mine(None, train, "neighbors", n_pos=15, n_neg=40, S=S, progress=False, chunk_size=17)
    np.testing.assert_array_equal(T, ref_neighbors(S, train, 15, 40))


def test_head_order_same_for_float32_keys_and_float64_lexsort():
    # float32 rows are ordered through packed integer keys, float64 rows through lexsort;
    # both must give the ranked_list order, ties and -0.0 (== 0.0, ties by index) included
    S = random_S(90, seed=11, levels=6, zeros=0.3)
    S[S == 0] = -0.0
    assert np.signbit(S).any()
    train = np.arange(90)
    T32 = mm.mine(None, train, "neighbors", n_pos=5, n_neg=60, S=S, progress=False, chunk_size=20)
    np.testing.assert_array_equal(T32, ref_neighbors(S, train, 5, 60))
    T64 = mm.mine(None, train, "neighbors", n_pos=5, n_neg=60, S=S.astype(np.float64), progress=False)
    np.testing.assert_array_equal(T32, T64)


@pytest.mark.parametrize("diag", [0.0, 0.4])
def test_anchor_excluded_wherever_it_ranks(diag):
    # S(t, t) is not always the largest value of its row (an oracle need not be 1 on the
    # diagonal): the anchor must still never appear in its own list
    S = random_S(70, seed=6, levels=10)
    np.fill_diagonal(S, diag)
    train = np.arange(70)
    np.testing.assert_array_equal(mm.mine(None, train, "neighbors", n_pos=5, n_neg=30, S=S, progress=False),
                                  ref_neighbors(S, train, 5, 30))
    for strategy in ("uniform", "distance"):
        T = mm.mine(None, train, strategy, n_pos=5, n_neg=30, S=S, progress=False)
        mm.check_triplets(T, train, 5, S=S)


def test_head_threshold_fallback_on_adversarial_columns():
    # the head is found from a strided sample of the columns; here the sampled columns hold
    # the largest values, so the sample's threshold lets fewer than K through and the exact
    # fallback must take over. Quantised values add ties at the threshold.
    N = 1200
    S = random_S(N, seed=8, levels=50) * 0.5
    S[:, ::30] += 0.5
    np.fill_diagonal(S, 1.0)
    train = np.arange(N)
    T = mm.mine(None, train, "neighbors", n_pos=4, n_neg=6, S=S, progress=False)
    np.testing.assert_array_equal(T, ref_neighbors(S, train, 4, 6))
    Tu = mm.mine(None, train, "uniform", n_pos=4, n_neg=6, S=S, progress=False)
    np.testing.assert_array_equal(Tu[:, :2], T[:, :2])   # same positives, in rank order


def test_lists_running_out_are_clipped():
    S = random_S(12, seed=0)
    train = np.arange(0, 12, 1)[:10]        # n_train = 10, L = 9 < Np + Nn
    for strategy in mm.OFFLINE_STRATEGIES:
        T = mm.mine(None, train, strategy, n_pos=15, n_neg=250, S=S, progress=False)
        # Np is clipped to L = 9; positive i keeps the L - i tracks after it
        assert T.shape[0] == mm.n_triplets(10, 15, 250) == 10 * sum(9 - i for i in range(1, 10))
        mm.check_triplets(T, train, 15, S=S)
        # every pair takes its whole suffix: the set of (a, p, n) is the same for all strategies
        key = np.sort(T.astype(np.int64) @ np.array([144, 12, 1]))
        np.testing.assert_array_equal(key, np.sort(ref_neighbors(S, train, 15, 250).astype(np.int64)
                                                   @ np.array([144, 12, 1])))


@pytest.mark.parametrize("strategy", mm.OFFLINE_STRATEGIES)
def test_two_training_tracks_mine_no_triplet(strategy):
    # L = 1: the only other track is the positive, nothing is left after it (n_triplets = 0)
    S = random_S(6, seed=1)
    for progress in (False, True):
        T = mm.mine(None, np.array([1, 4]), strategy, n_pos=3, n_neg=5, S=S, progress=progress)
        assert T.shape == (mm.n_triplets(2, 3, 5), 3) == (0, 3) and T.dtype == np.int32
        assert all(mm.check_triplets(T, np.array([1, 4]), 3, S=S).values())


@pytest.mark.parametrize("strategy", mm.OFFLINE_STRATEGIES)
def test_deterministic_chunk_invariant_and_streaming(catalog, strategy):
    S, train = catalog
    kw = dict(n_pos=5, n_neg=12, S=S, progress=False)
    T = mm.mine(None, train, strategy, seed=11, **kw)
    np.testing.assert_array_equal(T, mm.mine(None, train, strategy, seed=11, **kw))
    np.testing.assert_array_equal(T, mm.mine(None, train, strategy, seed=11, chunk_size=7, **kw))
    chunks = list(mm.iter_mine(None, train, strategy, seed=11, chunk_size=5, **kw))
    # chunks are whole blocks of the per-block random streams
    assert len(chunks) == math.ceil(len(train) / _RNG_BLOCK) and all(c.dtype == np.int32 for c in chunks)
    np.testing.assert_array_equal(T, np.concatenate(chunks))
    if mm.STRATEGIES[strategy].random:
        assert not np.array_equal(T, mm.mine(None, train, strategy, seed=12, **kw))


@pytest.mark.parametrize("strategy", mm.OFFLINE_STRATEGIES)
def test_ranked_lists_callable_and_tensor_inputs_agree(catalog, strategy):
    S, train = catalog
    kw = dict(n_pos=5, n_neg=12, seed=4, progress=False)
    T = mm.mine(None, train, strategy, S=S, **kw)
    ranked = full_ranked(S)
    S_arg = S if mm.STRATEGIES[strategy].needs_S else None
    np.testing.assert_array_equal(T, mm.mine(ranked, train, strategy, S=S_arg, **kw))
    np.testing.assert_array_equal(T, mm.mine(None, train, strategy, S=lambda rows: S[rows], **kw))
    np.testing.assert_array_equal(T, mm.mine(None, train, strategy, S=torch.from_numpy(S), **kw))
    # the callable's storage is left untouched
    S2 = S.copy()
    mm.mine(None, np.arange(S.shape[0]), strategy, S=lambda rows: S2[rows] if rows.size > 1 else S2[rows],
            **kw)
    np.testing.assert_array_equal(S2, S)


def test_input_validation(catalog):
    S, train = catalog
    for bad in (0, -2, 1.5, True):        # as features.extract and catalog_features word it
        message = rf"^n_jobs must be a positive int or -1 \(every core\), got {bad}$"
        with pytest.raises(ValueError, match=message):
            mm.mine(None, train, "uniform", S=S, n_jobs=bad)
    with pytest.raises(ValueError, match="needs the similarity"):
        mm.mine(full_ranked(S), train, "distance", progress=False)
    with pytest.raises(ValueError, match="online"):
        mm.mine(None, train, "online-semihard", S=S)
    with pytest.raises(ValueError, match="unknown mining strategy"):
        mm.mine(None, train, "hardest", S=S)
    with pytest.raises(ValueError, match="train_idx is required"):
        mm.mine(None, None, "uniform", S=S)
    with pytest.raises(ValueError, match=r"train_idx must lie in \[0, 60\)"):
        mm.mine(None, np.array([1, 2, 99]), "uniform", S=S)
    with pytest.raises(ValueError, match="duplicates"):
        mm.mine(None, np.array([1, 2, 2]), "uniform", S=S)
    with pytest.raises(ValueError, match="square"):
        mm.mine(None, train, "uniform", S=S[:, :10])
    with pytest.raises(TypeError, match="ranked must hold integer track indices.*a similarity matrix goes in S="):
        mm.mine(S[:, 1:], train, "uniform")
    bad = S.copy()
    bad[train[0], train[1]] = -0.5
    with pytest.raises(ValueError, match=">= 0"):
        mm.mine(None, train, "distance", S=bad, progress=False)
    bad[train[0], train[1]] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        mm.mine(None, train, "distance", S=bad, progress=False)
    with pytest.raises(TypeError, match="n_neg"):
        mm.mine(None, train, "uniform", n_neg=2.5, S=S)
    with pytest.raises(ValueError, match="n_pos"):
        mm.mine(None, train, "uniform", n_pos=0, S=S)
    assert mm.canonical_strategy("Distance-based") == "distance"
    assert mm.canonical_strategy("random") == "uniform"
    assert mm.is_online("semi-hard") and not mm.is_online("neighbours")


# --------------------------------------------------------------------------------------
# The registry: every strategy against its plain reference; a new one plugs in
# --------------------------------------------------------------------------------------
def _set_counts(T: np.ndarray, N: int, k: int, sets: dict) -> np.ndarray:
    """Counts of each anchor's set of negative offsets (circulant S: offsets 2 .. N-1)."""
    offsets = ((T[:, 2].astype(int) - T[:, 0]) % N).reshape(-1, k)
    counts = np.zeros(len(sets))
    for row in offsets:
        counts[sets[frozenset(row.tolist())]] += 1
    return counts


def _fast_vs_reference_sets(fast: str, reference: str, n_seeds: int = 300) -> float:
    """p-value of a two-sample chi-square: sets drawn by ``mine`` with one strategy against
    sets drawn by the plain reference of another (3 of 6 candidates, contrasted weights)."""
    N, k = 8, 3
    S = circulant_S(np.array([1.0, 0.9, 0.8, 0.6, 0.4, 0.2, 0.1, 0.05]))
    train = np.arange(N)
    sets = {frozenset(c): j for j, c in enumerate(itertools.combinations(range(2, N), k))}
    negatives = mm.STRATEGIES[reference].reference
    got, want = np.zeros(len(sets)), np.zeros(len(sets))
    for seed in range(n_seeds):
        got += _set_counts(mm.mine(None, train, fast, n_pos=1, n_neg=k, S=S, seed=seed, progress=False),
                           N, k, sets)
        want += _set_counts(mining_reference.mine_reference(S, train, negatives, 1, k, seed=seed), N, k, sets)
    table = np.array([got, want])
    return stats.chi2_contingency(table[:, table.sum(axis=0) > 0]).pvalue


@pytest.mark.parametrize("name", list(mm.STRATEGIES))
def test_every_strategy_matches_its_plain_reference(catalog, name):
    strategy = mm.STRATEGIES[name]
    assert mm.canonical_strategy(name) == name and mm.is_online(name) == strategy.online
    assert all(mm.canonical_strategy(a.upper()) == name for a in strategy.aliases)
    if strategy.online:             # deterministic: the same triplets as the plain loops
        rng = np.random.default_rng(0)
        S = random_S(100, seed=3, levels=10)
        for trial in range(3):
            idx = rng.choice(100, size=12, replace=False)
            S_b = S[np.ix_(idx, idx)]
            E = torch.nn.functional.normalize(torch.from_numpy(rng.standard_normal((12, 4)).astype(np.float32)), dim=1)
            got = mm.online_triplets(E, S_b, idx, mode=name, margin=0.5, n_pos=4)
            ref = mining_reference.online_reference(E.double().numpy(), S_b, idx, strategy.reference, 0.5, 4)
            np.testing.assert_array_equal(got.numpy(), ref)
    elif not strategy.random:       # deterministic offline: the reference's triplets exactly
        S, train = catalog
        T = mm.mine(None, train, name, n_pos=5, n_neg=12, S=S, progress=False)
        np.testing.assert_array_equal(T, mining_reference.mine_reference(S, train, strategy.reference, 5, 12))
    else:                           # random: the same law of drawn sets as the reference
        assert _fast_vs_reference_sets(name, name) > 0.01


def test_reference_comparison_tells_strategies_apart():
    # the distribution check above has the power to see a strategy that is not its reference
    assert _fast_vs_reference_sets("uniform", "distance", n_seeds=150) < 1e-6


def _draw_farthest(ch):
    # the last Nn tracks of the list, farthest first (a toy strategy)
    full = ch.head(ch.src.L)
    cols = np.maximum(ch.src.L - 1 - np.arange(ch.n_neg), 0)
    neg = np.broadcast_to(full[:, None, cols], (ch.apos.size, ch.n_pos, ch.n_neg))
    return full[:, :ch.n_pos], neg


def test_a_registered_strategy_is_mined_without_edits_elsewhere(catalog, monkeypatch):
    monkeypatch.setattr(mm, "STRATEGIES", dict(mm.STRATEGIES))
    toy = mm.register_strategy(mm.Strategy("farthest", "Farthest", _draw_farthest,
                                           lambda suffix, w, k, rng: suffix[::-1][:k],
                                           aliases=("toy-farthest",), random=False))
    assert toy.seed_code not in {s.seed_code for s in mm.STRATEGIES.values() if s is not toy}
    assert mm.canonical_strategy("Toy_Farthest") == "farthest" and not mm.is_online("farthest")
    S, train = catalog
    for tr, n_pos, n_neg in ((train, 5, 12), (train[:10], 15, 250)):      # the second runs out
        T = mm.mine(None, tr, "toy-farthest", n_pos=n_pos, n_neg=n_neg, S=S, progress=False, chunk_size=7)
        mm.check_triplets(T, tr, n_pos, S=S)
        np.testing.assert_array_equal(T, mining_reference.mine_reference(S, tr, toy.reference, n_pos, n_neg))
    with pytest.raises(ValueError, match="already registered"):
        mm.register_strategy(mm.Strategy("far", "Far", _draw_farthest, toy.reference, aliases=("farthest",)))


# --------------------------------------------------------------------------------------
# Distributions
# --------------------------------------------------------------------------------------
def _chisquare_binned(observed: np.ndarray, expected: np.ndarray, min_expected: float = 5.0):
    """Chi-square goodness of fit after merging consecutive cells until each expects >= 5."""
    expected = np.asarray(expected, dtype=float) * observed.sum() / np.sum(expected)
    obs_b, exp_b, o, e = [], [], 0.0, 0.0
    for oi, ei in zip(observed, expected):
        o, e = o + oi, e + ei
        if e >= min_expected:
            obs_b.append(o), exp_b.append(e)
            o, e = 0.0, 0.0
    if e > 0:
        obs_b[-1] += o
        exp_b[-1] += e
    obs_b, exp_b = np.array(obs_b), np.array(exp_b)
    return stats.chisquare(obs_b, exp_b * obs_b.sum() / exp_b.sum())


def test_uniform_negative_ranks_are_uniform():
    n, n_pos, n_neg = 300, 3, 20
    S = random_S(n, seed=7)
    train = np.arange(n)
    T = mm.mine(None, train, "uniform", n_pos=n_pos, n_neg=n_neg, S=S, seed=0, progress=False)
    ranks = mm.triplet_ranks(T, train, S=S).reshape(n, n_pos, n_neg, 2)
    L = n - 1
    for i in range(1, n_pos + 1):
        r = ranks[:, i - 1, :, 1].ravel()
        counts = np.bincount(r, minlength=L + 1)[i + 1:]
        res = stats.chisquare(counts)              # uniform over ranks i+1 .. L
        assert res.pvalue > 0.01, (i, res)
    # power: the same test rejects distance-based ranks (which favour the head) at once
    Td = mm.mine(None, train, "distance", n_pos=n_pos, n_neg=n_neg, S=S, seed=0, progress=False)
    rd = mm.triplet_ranks(Td, train, S=S).reshape(n, n_pos, n_neg, 2)[:, 0, :, 1].ravel()
    assert stats.chisquare(np.bincount(rd, minlength=L + 1)[2:]).pvalue < 1e-6


def test_distance_first_draws_follow_S():
    # circulant S: every anchor's list has the same weights by rank, so draws pool over anchors
    N, n_pos, n_neg = 250, 2, 30
    rng = np.random.default_rng(3)
    w = np.r_[1.0, rng.random(N - 1) ** 2 + 1e-3]
    S = circulant_S(w)
    w_by_rank = np.sort(w[1:])[::-1]                # r_1 .. r_L
    train = np.arange(N)
    firsts = {i: [] for i in range(1, n_pos + 1)}
    for seed in range(12):
        T = mm.mine(None, train, "distance", n_pos=n_pos, n_neg=n_neg, S=S, seed=seed, progress=False)
        ranks = mm.triplet_ranks(T, train, S=S).reshape(N, n_pos, n_neg, 2)
        for i in firsts:
            firsts[i].append(ranks[:, i - 1, 0, 1])  # slot 0 = the pair's first draw
    L = N - 1
    for i, r in firsts.items():
        counts = np.bincount(np.concatenate(r), minlength=L + 1)[i + 1:]
        expected = w_by_rank[i:] / w_by_rank[i:].sum()   # P(n) ∝ S(t, n) over ranks > i
        res = _chisquare_binned(counts, expected)
        assert res.pvalue > 0.01, (i, res)
        # power: the same draws reject uniform, and a nearby law P(n) ∝ S(t, n)²
        assert _chisquare_binned(counts, np.ones_like(expected)).pvalue < 1e-6
        assert _chisquare_binned(counts, expected ** 2).pvalue < 1e-6


@pytest.mark.parametrize("strategy,max_rounds,profile", [
    ("distance", 8, "flat"), ("distance", 0, "flat"), ("distance", 8, "concentrated"),
    ("uniform", 8, "flat"), ("uniform", 0, "flat"),
])
def test_without_replacement_sets_are_exact(strategy, max_rounds, profile):
    """k of 6 candidates: the drawn sets follow successive sampling exactly (enumerated) —
    through the duplicate-redraw rounds, through the Gumbel-top-k completion (rounds = 0),
    and for a law so concentrated that the third draw needs many redraws."""
    N, k = 8, 3
    w = {"flat": np.array([1.0, 0.9, 0.8, 0.7, 0.5, 0.4, 0.3, 0.2]),           # r_1 = the positive
         "concentrated": np.array([1.0, 0.99, 0.98, 0.97, 0.02, 0.01, 0.005, 0.002])}[profile]
    S = circulant_S(w)
    cand_w = w[2:] if strategy == "distance" else np.ones(6)
    probs = successive_set_probs(cand_w, k)
    sets = sorted(probs, key=probs.get)
    index = {s: j for j, s in enumerate(sets)}
    counts = np.zeros(len(sets))
    train = np.arange(N)
    for seed in range(1000):
        T = mm.mine(None, train, strategy, n_pos=1, n_neg=k, S=S, seed=seed, progress=False,
                    max_rounds=max_rounds)
        offsets = ((T[:, 2].astype(int) - T[:, 0]) % N).reshape(N, k) - 2   # candidate index 0..5
        for row in offsets:
            counts[index[frozenset(row.tolist())]] += 1
    expected = np.array([probs[s] for s in sets])
    res = _chisquare_binned(counts, expected)      # rare sets pooled until each cell expects >= 5
    assert res.pvalue > 0.01, res


def test_zero_weights_come_last_and_all_zero_is_uniform():
    N = 40
    rng = np.random.default_rng(0)
    S = rng.random((N, N)).astype(np.float32)
    S[:, 30:] = 0.0                                  # 10 zero-weight tracks for most anchors
    np.fill_diagonal(S, 1.0)
    train = np.arange(N)
    # Nn larger than the positive-weight candidates: all of them are taken, the rest uniform
    T = mm.mine(None, train, "distance", n_pos=2, n_neg=33, S=S, seed=1, progress=False)
    mm.check_triplets(T, train, 2, S=S)
    for a in range(30):
        for p in T[T[:, 0] == a, 1][::33]:
            neg = T[(T[:, 0] == a) & (T[:, 1] == p), 2]
            R = ref_ranked_list(S, a, train)
            suffix = R[R.index(int(p)) + 1:]
            positive = {x for x in suffix if S[a, x] > 0}
            assert positive <= set(neg.tolist()) and len(neg) == 33
    # an anchor whose weights are all zero: distance-based = uniform (chi-square on ranks)
    Z = np.zeros((200, 200), dtype=np.float32)    # all ties: lists in index order
    T = mm.mine(None, np.arange(200), "distance", n_pos=1, n_neg=10, S=Z, seed=2, progress=False)
    ranks = mm.triplet_ranks(T, np.arange(200), S=Z)[:, 1]
    assert stats.chisquare(np.bincount(ranks, minlength=200)[2:]).pvalue > 0.01


# --------------------------------------------------------------------------------------
# Samplers
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mined():
    S = random_S(120, seed=9)
    return mm.mine(None, np.arange(120), "uniform", n_pos=3, n_neg=100, S=S, progress=False)


def test_paper_sampler_batches(mined):
    s = mm.PaperBatchSampler(mined, n_neg_per_batch=42, seed=0)
    assert s.n_pairs == 120 * 3 and len(s) == 120 * 3 * 3      # 100 = 42 + 42 + 16
    rows = list(mm.PaperBatchSampler(mined, 42, seed=0, yield_rows=True))
    batches = list(s)
    assert s.epoch == 1 and s.position == 0
    for b, r in zip(batches, rows):
        assert b.shape[1] == 3 and 1 <= len(b) <= 42 and b.dtype == np.int64
        assert (b[:, 0] == b[0, 0]).all() and (b[:, 1] == b[0, 1]).all()   # one anchor, one positive
        np.testing.assert_array_equal(b, mined[r])
    allrows = np.concatenate(rows)
    np.testing.assert_array_equal(np.sort(allrows), np.arange(len(mined)))   # each row once
    assert sorted(len(b) for b in batches).count(16) == 360
    # next epoch: a different order and different splits of each pair's negatives
    again = list(s)
    assert not all(np.array_equal(x, y) for x, y in zip(again, batches))
    # drop_last keeps full batches only
    full = mm.PaperBatchSampler(mined, 42, seed=0, drop_last=True)
    assert len(full) == 720 and all(len(b) == 42 for b in full)
    # rows not grouped by pair (shuffled) are grouped again
    perm = np.random.default_rng(0).permutation(len(mined))
    shuffled = mm.PaperBatchSampler(mined[perm], 42, seed=0)
    assert len(shuffled) == len(s)
    for b in shuffled:
        assert (b[:, :2] == b[0, :2]).all()


@pytest.mark.parametrize("make", [
    lambda T, **k: mm.PaperBatchSampler(T, 42, **k),
    lambda T, **k: mm.ShuffledTripletSampler(T, batch_size=50, **k),
    lambda T, **k: mm.TrackBatchSampler(np.arange(103), batch_size=8, **k),
])
def test_samplers_seeded_resumable_and_ddp(mined, make):
    ref = make(mined, seed=5)
    epoch0 = [b.copy() for b in ref]
    epoch1 = [b.copy() for b in ref]
    same = make(mined, seed=5)
    assert all(np.array_equal(x, y) for x, y in zip(epoch0, list(same)))
    other = make(mined, seed=6)
    assert not all(np.array_equal(x, y) for x, y in zip(epoch0, list(other)))
    # resume mid-epoch 1 from a state taken while batch k is in use
    s = make(mined, seed=5)
    list(s)                                    # epoch 0
    it = iter(s)
    k = len(epoch1) // 3
    for _ in range(k):
        next(it)
    state = s.state_dict()
    assert state["epoch"] == 1 and state["position"] == k
    resumed = make(mined, seed=0)              # a sampler built with another seed adopts the state's
    resumed.load_state_dict(state)
    rest = list(resumed)
    assert len(rest) == len(epoch1) - k
    assert all(np.array_equal(x, y) for x, y in zip(rest, epoch1[k:]))
    assert resumed.epoch == 2 and resumed.position == 0
    # DDP: disjoint shares, the same number of batches on every rank
    world = 3
    shares = [list(make(mined, seed=5, rank=r, world_size=world)) for r in range(world)]
    assert len({len(x) for x in shares}) == 1 and len(shares[0]) > 0
    keys = [np.concatenate([b.reshape(len(b), -1) for b in sh]) for sh in shares]
    if keys[0].shape[1] == 3:
        keys = [k_ @ np.array([10 ** 6, 10 ** 3, 1]) for k_ in keys]
    else:
        keys = [k_.ravel() for k_ in keys]
    for a, b in itertools.combinations(range(world), 2):
        if make(mined, seed=5).__class__ is not mm.PaperBatchSampler:
            assert not np.intersect1d(keys[a], keys[b]).size
    # loading a state of another world size is refused
    with pytest.raises(ValueError, match="does not match"):
        make(mined, seed=5, rank=0, world_size=2).load_state_dict(state)


def test_paper_sampler_ddp_rows_disjoint(mined):
    world = 4
    rows = [np.concatenate(list(mm.PaperBatchSampler(mined, 42, seed=1, rank=r, world_size=world,
                                                     yield_rows=True))) for r in range(world)]
    allrows = np.concatenate(rows)
    assert np.unique(allrows).size == allrows.size          # disjoint
    lens = [len(list(mm.PaperBatchSampler(mined, 42, seed=1, rank=r, world_size=world))) for r in range(world)]
    assert len(set(lens)) == 1 and lens[0] == (120 * 3 * 3) // world


def test_shuffled_sampler_covers_rows_and_validates(mined):
    s = mm.ShuffledTripletSampler(mined, batch_size=64, seed=2, yield_rows=True)
    rows = np.concatenate(list(s))
    np.testing.assert_array_equal(np.sort(rows), np.arange(len(mined)))
    assert len(s) == math.ceil(len(mined) / 64)
    with pytest.raises(ValueError, match="rank must be"):
        mm.ShuffledTripletSampler(mined, rank=2, world_size=2)
    with pytest.raises(ValueError, match=r"does not match this sampler .*'sampler': \('PaperBatchSampler', "
                                         r"'ShuffledTripletSampler'\)"):
        s.load_state_dict(mm.PaperBatchSampler(mined).state_dict())
    with pytest.raises(ValueError, match=r"\(M, 3\)"):
        mm.ShuffledTripletSampler(mined[:, :2])
    t = mm.TrackBatchSampler(np.arange(10, 30), batch_size=6, seed=0)
    batches = list(t)
    assert len(batches) == 3 and all(b.shape == (6,) for b in batches)
    assert np.unique(np.concatenate(batches)).size == 18 and np.isin(np.concatenate(batches), np.arange(10, 30)).all()
    # drop_last drops an incomplete last batch, never the only one: a share smaller than one
    # batch is one smaller batch (each rank's share of 50 rows on 2 ranks: 25 < 48)
    assert [len(b) for b in mm.ShuffledTripletSampler(mined[:100], 48, drop_last=True)] == [48, 48]
    for rank in (0, 1):
        small = mm.ShuffledTripletSampler(mined[:50], 48, rank=rank, world_size=2, drop_last=True, yield_rows=True)
        assert [len(b) for b in small] == [25]
    assert [b.shape for b in mm.TrackBatchSampler(np.arange(10, 30), batch_size=64)] == [(20,)]


# --------------------------------------------------------------------------------------
# Online mining
# --------------------------------------------------------------------------------------
def ref_online(E, S_b, idx, mode, margin, n_pos):
    """Plain loops: batch-restricted ranks by (-S, catalog index); squared distances."""
    B = len(idx)
    d = [[float(((E[a] - E[b]) ** 2).sum()) for b in range(B)] for a in range(B)]
    out = []
    for a in range(B):
        lst = sorted((x for x in range(B) if x != a), key=lambda x: (-float(S_b[a, x]), int(idx[x])))
        rank = {x: r + 1 for r, x in enumerate(lst)}
        for p in lst[:n_pos]:
            for n in lst:
                if rank[n] <= rank[p]:
                    continue
                if mode == "hard" and not d[a][n] < d[a][p]:
                    continue
                if mode == "semihard" and not (d[a][p] < d[a][n] < d[a][p] + margin):
                    continue
                out.append((a, p, n))
    return sorted(out)


@pytest.mark.parametrize("mode", ["hard", "semihard", "all"])
def test_online_triplets_match_plain_loops(mode):
    rng = np.random.default_rng(0)
    B, N = 14, 100
    S = random_S(N, seed=3, levels=10)
    idx = rng.choice(N, size=B, replace=False)
    S_b = S[np.ix_(idx, idx)]
    E = torch.nn.functional.normalize(torch.from_numpy(rng.standard_normal((B, 4)).astype(np.float32)), dim=1)
    got = mm.online_triplets(E, S_b, idx, mode=mode, margin=0.5, n_pos=4)
    ref = ref_online(E.double().numpy(), S_b, idx, mode, 0.5, 4)
    assert ref, "the reference found no triplet: pick another seed"
    assert sorted(map(tuple, got.tolist())) == ref
    assert got.dtype == torch.int64 and got.device == E.device


def test_online_batch_ranks_and_fallback():
    rng = np.random.default_rng(1)
    N, B = 50, 10
    S = random_S(N, seed=4)
    idx = np.sort(rng.choice(N, size=B, replace=False))
    E = torch.nn.functional.normalize(torch.randn(B, 3, generator=torch.Generator().manual_seed(0)), dim=1)
    a = mm.online_triplets(E, S[np.ix_(idx, idx)], idx, mode="online-semihard", n_pos=3)
    assert torch.equal(a, mm.online_triplets(E, S[np.ix_(idx, idx)], idx, mode="semihard", n_pos=3))
    # batch ranks agree with the plain sort
    br = om._batch_ranks(torch.from_numpy(S[np.ix_(idx, idx)]), torch.from_numpy(idx))
    for x in range(B):
        lst = sorted((y for y in range(B) if y != x), key=lambda y: (-float(S[idx[x], idx[y]]), idx[y]))
        assert [int(br[x, y]) for y in lst] == list(range(1, B))
    # identical embeddings: nothing is hard or semi-hard -> all valid triplets, flagged
    same = torch.ones(B, 3)
    t, info = mm.online_triplets(same, S[np.ix_(idx, idx)], idx, mode="hard", n_pos=3, return_info=True)
    assert info["fell_back"] and info["n_selected"] == info["n_valid"] == B * sum(B - 1 - i for i in range(1, 4))
    with pytest.raises(ValueError, match="mode"):
        mm.online_triplets(E, S[np.ix_(idx, idx)], idx, mode="easy")
    # selection does not touch autograd
    Eg = E.clone().requires_grad_(True)
    mm.online_triplets(Eg, S[np.ix_(idx, idx)], idx)
    assert Eg.grad is None


# --------------------------------------------------------------------------------------
# The benchmark script runs (tiny scale)
# --------------------------------------------------------------------------------------
@pytest.mark.slow
def test_benchmark_runs_small(tmp_path, capsys):
    import json
    import runpy

    from mrlib.paths import repo_root

    bench = runpy.run_path(str(repo_root() / "benchmarks" / "mining.py"), run_name="bench_mining")
    out = tmp_path / "mining.json"
    status = bench["main"](["--n", "300", "--n-neg", "20", "--strategy", "distance", "--ref-anchors", "2",
                            "--n-jobs", "1", "--json", str(out)])
    assert status == 0
    text = capsys.readouterr().out
    assert "both valid" in text and "identical (checksum)" in text
    res = json.loads(out.read_text())
    assert res["M"] == mm.n_triplets(300, 15, 20)
    assert {r["mode"] for r in res["results"]} == {"whole", "stream"}
    assert all(r["M"] == res["M"] and r["peak_rss_mb"] > 0 and r["speedup_wall"] > 0 for r in res["results"])


def test_paper_shares_keep_the_papers_share_of_the_list():
    from mrlib.mining import PAPER_N_TRAIN, paper_shares

    assert PAPER_N_TRAIN == 8548 and paper_shares(PAPER_N_TRAIN) == (15, 250)
    assert paper_shares(1200) == (2, 35)
    for n in (50, 1200, 5000, 20000):
        n_pos, n_neg = paper_shares(n)
        assert abs(n_neg / (n - 1) - 250 / (PAPER_N_TRAIN - 1)) <= 0.5 / (n - 1) + 1e-12
        assert n_pos >= 1 and n_neg >= 1
    assert paper_shares(2) == (1, 1)
    with pytest.raises(ValueError):
        paper_shares(1)


def test_an_empty_set_of_triplets_has_no_ranks_and_is_valid():
    S = np.random.default_rng(0).random((12, 12))
    for empty in (np.zeros((0, 3), np.int32), np.zeros((0, 3))):
        ranks = mm.triplet_ranks(empty, np.arange(12), S=S)
        assert ranks.shape == (0, 2) and ranks.dtype == np.int64
    assert all(mm.check_triplets(np.zeros((0, 3), np.int32), np.arange(12), S=S).values())


def test_out_of_range_ranked_lists_and_track_indices_are_refused():
    from mrlib import similarity
    rng = np.random.default_rng(0)
    S = rng.random((12, 12))
    R = similarity.ranked_lists((S + S.T) / 2)
    bad = R.copy()
    bad[0, 0] = -1          # wrapped around to track 11 and mined wrong triplets silently
    with pytest.raises(ValueError, match=r"ranked must lie in \[0, 12\)"):
        mm.mine(bad, np.arange(12), "neighbors", n_pos=2, n_neg=3, progress=False)
    with pytest.raises(ValueError, match=r"ranked must lie in \[0, 12\)"):   # was IndexError
        mm.mine(R + 100, np.arange(12), "neighbors", n_pos=2, n_neg=3, progress=False)
    with pytest.raises(TypeError, match="ranked must hold integer"):
        mm.mine(R.astype(float), np.arange(12), "neighbors", n_pos=2, n_neg=3, progress=False)
    t = mm.mine(R, np.arange(12), "neighbors", n_pos=2, n_neg=3, progress=False)
    with pytest.raises(ValueError, match="n_pos must be >= 1"):                 # "failed ['positive in first Np']"
        mm.check_triplets(t, np.arange(12), n_pos=0, ranked=R)
    with pytest.raises(ValueError, match=r"track_idx must lie in \[0, inf\) \(catalog indices\)"):
        mm.TrackBatchSampler(np.arange(-3, 3), batch_size=2)
    with pytest.raises(TypeError, match="track_idx must hold integer indices"):
        mm.TrackBatchSampler(np.arange(6.0), batch_size=2)
    with pytest.raises(ValueError, match="track_idx must be a non-empty 1-D array"):
        mm.TrackBatchSampler(np.arange(6).reshape(2, 3), batch_size=2)
    with pytest.raises(ValueError, match="track_idx contains duplicates"):
        mm.TrackBatchSampler(np.array([1, 1, 2, 3]), batch_size=2)


def test_every_door_words_an_out_of_range_index_alike():
    """One check (mrlib.checks.check_indices) names the argument and the range [0, n) everywhere."""
    from mrlib import baselines, similarity, songlevel
    R = full_ranked(random_S(12))
    doors = [
        ("train_idx", lambda: mm.mine(R, np.array([0, 1, 12]), "neighbors", n_pos=2, n_neg=3,
                                      progress=False)),
        ("train_idx", lambda: mm.mine(None, np.array([-1, 0, 1]), "distance", S=lambda r: np.ones((len(r), 12)),
                                      progress=False)),
        ("triplets", lambda: mm.triplet_ranks(np.array([[0, 1, -1]]), np.arange(12), ranked=R)),
        ("exclude", lambda: similarity.ranked_list(np.ones(12), exclude=12)),
        ("triplets", lambda: baselines.check_triplets(np.array([[0, 1, 12]]), 12)),
        ("fold 0: test indices", lambda: baselines.check_folds([(np.array([0]), np.array([12]))], 12)),
        ("pair indices a, b", lambda: songlevel.pair_dissimilarities(None, np.zeros((12, 2, 4)), [0], [12])),
    ]
    for name, call in doors:
        with pytest.raises(ValueError, match=rf"^{name} must lie in \[0, 12\)"):
            call()
    with pytest.raises(TypeError, match="triplets must hold integer indices"):
        mm.triplet_ranks(np.array([[0.0, 1.0, 2.0]]), np.arange(12), ranked=R)
    # an unsigned 0 - 1 would become -1 when converted: refused even without an upper bound
    with pytest.raises(ValueError, match=r"^track_idx must lie in"):
        mm.TrackBatchSampler(np.array([0, 1, 2, 2**64 - 1], dtype=np.uint64), batch_size=2)
