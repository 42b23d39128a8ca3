"""Tests of mrlib.similarity: the oracle S (against a plain-loop reference and hand-worked
cases), its invariances, chunking, ranked lists with deterministic ties, and the Fig.-1 shape."""
from __future__ import annotations

import json
import math
import types

import numpy as np
import pandas as pd
import pytest

from mrlib import similarity as sim

CATEGORY_SIZES = [("Genre", 10), ("Recording", 12), ("Mood", 9), ("Movement", 7), ("Lyrics", 8)]


def structured_tags(n: int, seed: int = 0):
    """Random tag likelihoods shaped like an annotated catalog: one main genre (with false
    positives and the odd miss), genre-dependent instrumentation/mood/movement tags, lyrics
    for about two thirds of the tracks."""
    rng = np.random.default_rng(seed)
    blocks, cats = [], []
    genre = rng.integers(0, 10, n)
    for name, k in CATEGORY_SIZES:
        if name == "Genre":
            b = np.zeros((n, k))
            b[np.arange(n), genre] = rng.uniform(0.6, 1.0, n)
            fp = rng.random((n, k)) < 0.08
            b[fp] = np.maximum(b[fp], rng.uniform(0.1, 0.5, fp.sum()))
            b[rng.random(n) < 0.03] = 0.0  # the annotator forgot the genre
        else:
            prior = rng.dirichlet(np.full(k, 0.4), size=10)[genre]          # (n, k)
            n_tags = {"Recording": 3.0, "Mood": 1.5, "Movement": 1.2, "Lyrics": 1.0}[name]
            p = np.clip(prior * n_tags, 0, 0.95)
            b = np.where(rng.random((n, k)) < p, rng.uniform(0.4, 1.0, (n, k)), 0.0)
            if name == "Lyrics":
                b[rng.random(n) < 0.33] = 0.0  # instrumentals
        blocks.append(b)
        cats += [name] * k
    return np.concatenate(blocks, axis=1).astype(np.float32), np.array(cats), genre


def reference_oracle(T_a, T_b, cats, w):
    """Plain-Python loop over pairs and categories: the formula of the module docstring."""
    names = list(dict.fromkeys(cats))
    out = np.zeros((len(T_a), len(T_b)))
    g = w["gate"]
    for i, a in enumerate(T_a):
        for j, b in enumerate(T_b):
            num = den = 0.0
            s_gate = 0.0
            for c in names:
                idx = [t for t in range(len(cats)) if cats[t] == c]
                va = [float(a[t]) for t in idx]
                vb = [float(b[t]) for t in idx]
                na = math.sqrt(sum(x * x for x in va))
                nb = math.sqrt(sum(x * x for x in vb))
                s = sum(x * y for x, y in zip(va, vb)) / (na * nb) if na > 0 and nb > 0 else 0.0
                wc = w["categories"].get(c, w["default_weight"])
                if na > 0 and nb > 0:
                    num += wc * s
                    den += wc
                if c == g["category"]:
                    s_gate = s
            mean = num / den if den > 0 else 0.0
            gate = g["floor"] + (1 - g["floor"]) * s_gate ** g["power"]
            out[i, j] = (gate * mean) ** w["sharpness"]
    return out


@pytest.fixture(scope="module")
def catalog_tags():
    return structured_tags(600, seed=1)


@pytest.fixture(scope="module")
def S(catalog_tags):
    T, cats, _ = catalog_tags
    return sim.oracle(T, categories=cats)


# ---------------------------------------------------------------------------------------------
# weights
# ---------------------------------------------------------------------------------------------

def test_weights_file_documents_every_field():
    w = sim.load_weights()
    assert set(w["categories"]) == set(sim.CATEGORIES)
    assert all(v >= 0 for v in w["categories"].values())
    for field in ("categories", "gate", "sharpness", "default_weight", "per_category"):
        assert field in w["fields"], f"field {field} undocumented"
    assert w["gate"]["category"] == "Genre" and 0 <= w["gate"]["floor"] <= 1


@pytest.mark.parametrize("bad", [
    {"gate": None, "sharpness": 1.0},                                     # no categories
    {"categories": {"Genre": -1.0}, "gate": None, "sharpness": 1.0},      # negative weight
    {"categories": {"Genre": 1.0}, "gate": {"category": "Genre", "floor": 2, "power": 1},
     "sharpness": 1.0},                                                   # floor > 1
    {"categories": {"Genre": 1.0}, "gate": None, "sharpness": 0.0},       # sharpness 0
    {"categories": {"Genre": 1.0}, "gate": None, "sharpness": 1.0, "per_category": "jaccard"},
])
def test_bad_weights_are_refused(bad):
    with pytest.raises(ValueError):
        sim.oracle(np.eye(3), categories=["Genre"] * 3, weights=bad)


def test_numpy_numbers_are_weights():
    w = sim.load_weights()
    numpy_w = {**w, "sharpness": np.float32(w["sharpness"]),
               "gate": {**w["gate"], "floor": np.float32(0.25), "power": np.int64(2)}}
    plain = {**w, "sharpness": float(np.float32(w["sharpness"])),
             "gate": {**w["gate"], "floor": float(np.float32(0.25)), "power": 2.0}}
    T, cats, _ = structured_tags(20, seed=3)
    np.testing.assert_array_equal(sim.oracle(T, categories=cats, weights=numpy_w),
                                  sim.oracle(T, categories=cats, weights=plain))


def test_weights_from_a_path(tmp_path):
    w = sim.load_weights()
    w["sharpness"] = 1.0
    path = tmp_path / "w.json"
    path.write_text(json.dumps(w))
    T, cats, _ = structured_tags(20, seed=3)
    np.testing.assert_array_equal(sim.oracle(T, categories=cats, weights=path),
                                  sim.oracle(T, categories=cats, weights=w))
    with pytest.raises(FileNotFoundError):
        sim.load_weights(tmp_path / "missing.json")


# ---------------------------------------------------------------------------------------------
# the oracle
# ---------------------------------------------------------------------------------------------

def test_oracle_matches_plain_loop_reference():
    T, cats, _ = structured_tags(40, seed=2)
    T[3] = 0.0                     # a track with no tags at all
    T[5, cats == "Mood"] = 0.0     # missing categories
    w = sim.load_weights()
    got = sim.oracle(T[:25], T[10:], categories=cats)
    want = reference_oracle(T[:25], T[10:], cats, w)
    np.testing.assert_allclose(got, want, atol=2e-6, rtol=0)


def test_hand_worked_case():
    # Two categories. Genre cosine of a = (1, 0) and b = (0.6, 0.8) is 0.6; Mood vectors are
    # parallel (cosine 1). Weights 3 and 1: mean = (3 * 0.6 + 1 * 1) / 4 = 0.7.
    # Gate = 0.2 + 0.8 * 0.6**2 = 0.488; S = (0.488 * 0.7) ** 2 = 0.11669...
    w = {"categories": {"Genre": 3.0, "Mood": 1.0}, "gate": {"category": "Genre", "floor": 0.2,
                                                            "power": 2.0}, "sharpness": 2.0}
    T = np.array([[1.0, 0.0, 0.5, 0.5], [0.6, 0.8, 0.2, 0.2]])
    S = sim.oracle(T, categories=["Genre", "Genre", "Mood", "Mood"], weights=w)
    assert S[0, 1] == pytest.approx((0.488 * 0.7) ** 2, abs=1e-7)
    assert S[0, 0] == S[1, 1] == 1.0


def test_range_dtype_symmetry_and_self_similarity(catalog_tags, S):
    T, cats, _ = catalog_tags
    assert S.dtype == np.float32 and S.shape == (len(T), len(T))
    assert S.min() >= 0.0 and S.max() <= 1.0
    np.testing.assert_allclose(S, S.T, atol=1e-6, rtol=0)
    has_genre = T[:, cats == "Genre"].max(axis=1) > 0
    np.testing.assert_allclose(np.diagonal(S)[has_genre], 1.0, atol=1e-6)
    # Explicit T_b gives the same numbers as T_b=None.
    np.testing.assert_array_equal(sim.oracle(T[:50], T, categories=cats), S[:50])


def test_chunked_equals_unchunked(catalog_tags, S):
    T, cats, _ = catalog_tags
    np.testing.assert_array_equal(sim.oracle(T, categories=cats, chunk_size=7), S)


def test_permutation_equivariance(catalog_tags, S):
    T, cats, _ = catalog_tags
    perm = np.random.default_rng(0).permutation(len(T))
    np.testing.assert_allclose(sim.oracle(T[perm], categories=cats), S[perm][:, perm], atol=1e-6)


def test_genre_gate_and_monotonicity():
    cats = ["Genre"] * 3 + ["Mood"] * 3
    w = sim.load_weights()
    same = np.array([[1, 0, 0, 1, 0, 0], [1, 0, 0, 1, 0, 0.0]])
    other = np.array([[1, 0, 0, 1, 0, 0], [0, 1, 0, 1, 0, 0.0]])
    assert sim.oracle(same, categories=cats)[0, 1] == pytest.approx(1.0)
    # Different genres, identical mood: capped by the gate's floor.
    assert sim.oracle(other, categories=cats)[0, 1] <= w["gate"]["floor"] ** w["sharpness"] + 1e-7
    # Moving b's genre towards a's raises S.
    values = []
    for t in np.linspace(0, 1, 6):
        T = np.array([[1, 0, 0, 1, 0, 0], [t, 1 - t, 0, 1, 0, 0]])
        values.append(sim.oracle(T, categories=cats)[0, 1])
    assert np.all(np.diff(values) > 0)


def test_catalog_and_dataframe_inputs(catalog_tags, S):
    T, cats, _ = catalog_tags
    vocab = pd.DataFrame({"tag": [f"t{i}" for i in range(len(cats))], "category": cats})
    cat = types.SimpleNamespace(tags=T, vocabulary=vocab)
    np.testing.assert_array_equal(sim.oracle(cat), S)
    np.testing.assert_array_equal(sim.oracle(cat, T[:5]), S[:, :5])
    np.testing.assert_array_equal(sim.oracle(T, categories=vocab), S)


def test_unknown_category_uses_default_weight():
    T, cats, _ = structured_tags(30, seed=4)
    renamed = np.where(cats == "Lyrics", "Theme", cats)
    w = sim.load_weights()
    w["default_weight"] = w["categories"]["Lyrics"]
    np.testing.assert_allclose(sim.oracle(T, categories=renamed, weights=w),
                               sim.oracle(T, categories=cats), atol=1e-7)


def test_without_categories_is_sharpened_cosine():
    rng = np.random.default_rng(5)
    T = rng.random((20, 8))
    U = T / np.linalg.norm(T, axis=1, keepdims=True)
    p = sim.load_weights()["sharpness"]
    np.testing.assert_allclose(sim.oracle(T), np.clip(U @ U.T, 0, 1) ** p, atol=1e-6)


def test_category_similarities_are_the_ingredients():
    T, cats, _ = structured_tags(15, seed=6)
    parts = sim.category_similarities(T, categories=cats)
    assert list(parts) == [c for c, _ in CATEGORY_SIZES]
    g = T[:, cats == "Genre"].astype(np.float64)
    n = np.linalg.norm(g, axis=1)
    ok = n > 0
    ref = (g[ok] / n[ok, None]) @ (g[ok] / n[ok, None]).T
    np.testing.assert_allclose(parts["Genre"][np.ix_(ok, ok)], ref, atol=1e-6)


@pytest.mark.parametrize("T, msg", [
    (np.full((3, 4), 1.5), r"\[0, 1\]"),
    (np.array([[np.nan, 0, 0, 0]]), r"T_a has 1 non-finite value\(s\), first at \[0, 0\]"),
    (np.zeros(4), r"T_a must be a 2-D float array, got shape \(4,\)"),
])
def test_bad_tag_matrices(T, msg):
    with pytest.raises(ValueError, match=msg):
        sim.oracle(T, categories=["Genre"] * 4)


def test_bad_shapes_and_chunks():
    T = np.eye(4)
    with pytest.raises(ValueError, match="one category per tag"):
        sim.oracle(T, categories=["Genre"] * 3)
    with pytest.raises(ValueError, match="vocabulary"):
        sim.oracle(T, np.eye(3), categories=None)
    with pytest.raises(ValueError, match="chunk_size"):
        sim.oracle(T, chunk_size=0)


# ---------------------------------------------------------------------------------------------
# ranked lists
# ---------------------------------------------------------------------------------------------

def test_ranked_list_ties_by_index():
    row = np.array([0.5, 0.9, 0.5, 1.0, 0.9, 0.5], dtype=np.float32)
    assert sim.ranked_list(row).tolist() == [3, 1, 4, 0, 2, 5]
    assert sim.ranked_list(row, exclude=3).tolist() == [1, 4, 0, 2, 5]
    assert sim.ranked_list(row, exclude=[1, 5]).tolist() == [3, 4, 0, 2]
    assert sim.ranked_list(row).dtype == np.int64
    with pytest.raises(ValueError):
        sim.ranked_list(row, exclude=6)
    with pytest.raises(ValueError, match=r"in \[0, 6\)"):
        sim.ranked_list(row, exclude=-1)          # not the last track: a query index is >= 0


def test_duplicate_tracks_tie_deterministically():
    T, cats, _ = structured_tags(50, seed=7)
    T = np.concatenate([T, T[[3, 3, 10]]])      # tracks 50, 51 duplicate 3; 52 duplicates 10
    S = sim.oracle(T, categories=cats)
    assert S[0, 3] == S[0, 50] == S[0, 51]      # exact ties, not merely close
    R = sim.ranked_lists(S)
    row = R[0].tolist()
    assert row.index(3) < row.index(50) < row.index(51)
    # The query is removed by index: duplicate 50 of query 3 stays, first (S = 1, lower index).
    assert R[3][0] == 50 and 3 not in R[3]
    assert R[50][0] == 3 and R[50][1] == 51


def test_ranked_lists_equal_row_by_row_reference(S):
    R = sim.ranked_lists(S)
    n = len(S)
    assert R.shape == (n, n - 1) and R.dtype == np.int64
    for q in range(0, n, 37):
        np.testing.assert_array_equal(R[q], sim.ranked_list(S[q], exclude=q))
    others = np.array([np.delete(np.arange(n), q) for q in range(n)])
    np.testing.assert_array_equal(np.sort(R, axis=1), others)  # every other track exactly once
    np.testing.assert_array_equal(sim.ranked_lists(S, k=15, chunk_size=50), R[:, :15])
    for f in (sim.ranked_lists, sim.mean_similarity_by_rank, sim.rank_profile):
        with pytest.raises(ValueError, match=r"S must be a square \(N, N\) matrix, got shape \(10, 20\)"):
            f(S[:10, :20])


def test_ranked_lists_exclude_the_query_by_index_even_next_to_infinite_similarities():
    # +inf (e.g. a similarity that overflowed) must not tie with the query's own slot
    S = np.array([[1.0, np.inf, 0.3], [np.inf, 1.0, 0.5], [0.3, 0.5, 1.0]])
    R = sim.ranked_lists(S)
    assert R.tolist() == [sim.ranked_list(S[q], exclude=q).tolist() for q in range(3)]
    assert R.tolist() == [[1, 2], [0, 2], [1, 0]]


def test_mean_similarity_by_rank_matches_loop(S):
    curve = sim.mean_similarity_by_rank(S, chunk_size=64)
    ref = np.mean([np.sort(np.delete(S[q], q))[::-1] for q in range(len(S))], axis=0)
    np.testing.assert_allclose(curve, ref, atol=1e-6)
    assert np.all(np.diff(curve) <= 1e-12)


def test_fig1_shape_on_a_structured_catalog(S):
    """Paper Fig. 1 (top): a few first tracks very similar, most of the list below 0.5."""
    profile = sim.rank_profile(S, ranks=(1, 5, 50))
    m = profile["mean_at_rank"]
    assert m[1] > 0.7
    assert m[1] > m[5] > m[50]
    assert m[1] - m[50] > 0.4
    assert profile["share_below"] > 0.9
    # Tracks of the query's own genre fill the top of its list.
    T, cats, genre = structured_tags(600, seed=1)
    R = sim.ranked_lists(S, k=5)
    assert np.mean(genre[R] == genre[:, None]) > 0.9


def test_rank_profile_and_empty_S_are_refused_at_the_door(monkeypatch):
    S = sim.oracle(np.random.default_rng(0).random((6, 4)))
    # a float rank was truncated, a NaN threshold gave share_below 0.0, a str one a numpy error
    with pytest.raises(TypeError, match="ranks must be an int"):
        sim.rank_profile(S, ranks=(1.5,))
    with pytest.raises(TypeError, match="ranks must be a sequence"):
        sim.rank_profile(S, ranks=3)
    with pytest.raises(ValueError, match="threshold must be a finite number"):
        sim.rank_profile(S, ranks=(1,), threshold=float("nan"))
    with pytest.raises(TypeError, match="threshold must be a number"):
        sim.rank_profile(S, ranks=(1,), threshold="0.5")
    # refused before the curve's sort of every row (its cost on the paper's matrix: seconds)
    calls = []
    real_curve = sim.mean_similarity_by_rank
    monkeypatch.setattr(sim, "mean_similarity_by_rank", lambda *a, **k: calls.append(1) or real_curve(*a, **k))
    with pytest.raises(ValueError, match="outside the lists"):
        sim.rank_profile(S, ranks=(1, 6))
    with pytest.raises(ValueError, match="ranks must be >= 1"):
        sim.rank_profile(S, ranks=(0, 1))
    assert calls == []
    assert sim.rank_profile(S, ranks=(1, 5))["list_length"] == 5 and calls == [1]
    assert sim.rank_profile(S, ranks=np.array([1, 3]))["mean_at_rank"].keys() == {1, 3}
    # an empty S made numpy fail with "negative dimensions are not allowed"
    for f in (sim.ranked_lists, sim.mean_similarity_by_rank):
        with pytest.raises(ValueError, match="S is empty"):
            f(np.zeros((0, 0)))
