"""Tests of mrlib.odd_one_out: the comparisons_final.csv format, votes -> triplets, simulated
players and cross-validation folds."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from mrlib.odd_one_out import (
    COMPARISON_COLUMNS,
    PAPER_N_CLIPS,
    PAPER_N_TRIPLETS,
    comparisons_to_triplets,
    fold_summary,
    read_comparisons,
    simulate_votes,
    triplet_folds,
    write_comparisons,
)


def _table(rows):
    """Comparisons from (ids, votes) pairs, with paths derived from the ids."""
    data = []
    for ids, votes in rows:
        data.append(list(ids) + list(votes) + [f"{i % 16:x}/clip-{i}.mp3" for i in ids])
    return pd.DataFrame(data, columns=list(COMPARISON_COLUMNS))


# Hand-worked cases: (clip ids, votes for each clip as the odd one out).
HAND = _table([
    ((10, 20, 30), (1, 1, 5)),   # 0: odd 30            -> (10,20,30), (20,10,30)
    ((11, 21, 31), (4, 0, 1)),   # 1: odd 11 (first)    -> (21,31,11), (31,21,11)
    ((12, 22, 32), (2, 2, 0)),   # 2: tie for the most  -> dropped
    ((13, 23, 33), (0, 0, 0)),   # 3: nobody voted      -> dropped
    ((14, 24, 34), (3, 3, 3)),   # 4: three-way tie     -> dropped
    ((15, 25, 35), (0, 2, 1)),   # 5: odd 25, margin 1  -> (15,35,25), (35,15,25)
    ((16, 26, 36), (0, 0, 1)),   # 6: odd 36, one vote  -> (16,26,36), (26,16,36)
])


def test_hand_worked_triplets_and_report():
    t, r = comparisons_to_triplets(HAND)
    expected = np.array([
        [10, 20, 30], [20, 10, 30],
        [21, 31, 11], [31, 21, 11],
        [15, 35, 25], [35, 15, 25],
        [16, 26, 36], [26, 16, 36],
    ])
    np.testing.assert_array_equal(t, expected)
    assert t.dtype == np.int64
    assert (r.n_rows, r.n_no_votes, r.n_ties, r.n_low_margin, r.n_too_few_votes) == (7, 1, 2, 0, 0)
    assert (r.n_kept_rows, r.n_triplets, r.n_unique_clips) == (4, 8, 12)
    assert (r.n_duplicates, r.n_conflicts, r.n_missing_clips) == (0, 0, 0)
    np.testing.assert_array_equal(r.rows, [0, 0, 1, 1, 5, 5, 6, 6])
    text = str(r)
    assert "tied top vote: 2" in text and "8 over 12 unique clips" in text
    paper = r.vs_paper()
    assert str(PAPER_N_TRIPLETS) in paper and str(PAPER_N_CLIPS) in paper and "8 triplets" in paper


def test_margin_votes_and_one_per_comparison():
    t, r = comparisons_to_triplets(HAND, min_margin=2)
    np.testing.assert_array_equal(t, [[10, 20, 30], [20, 10, 30], [21, 31, 11], [31, 21, 11]])
    assert r.n_low_margin == 2 and r.n_ties == 2 and r.n_kept_rows == 2

    t, r = comparisons_to_triplets(HAND, min_votes=3)
    assert r.n_too_few_votes == 1                      # row 6 (one vote); row 5 has three
    assert [10, 20, 30] in t.tolist() and [16, 26, 36] not in t.tolist()

    t, r = comparisons_to_triplets(HAND, per_comparison="one")
    np.testing.assert_array_equal(t, [[10, 20, 30], [21, 31, 11], [15, 35, 25], [16, 26, 36]])
    np.testing.assert_array_equal(r.rows, [0, 1, 5, 6])


def test_id_to_index_maps_and_drops_unknown_clips():
    catalog_ids = [30, 20, 10, 11, 21, 31, 15, 25, 35]      # clips of row 6 are absent
    t, r = comparisons_to_triplets(HAND, id_to_index=catalog_ids)
    assert r.n_missing_clips == 1 and r.n_kept_rows == 3
    pos = {c: i for i, c in enumerate(catalog_ids)}
    ids_t, _ = comparisons_to_triplets(HAND.iloc[:6])
    np.testing.assert_array_equal(t, np.vectorize(pos.get)(ids_t))
    t2, _ = comparisons_to_triplets(HAND, id_to_index=pos)  # dict form, same result
    np.testing.assert_array_equal(t, t2)


def test_duplicates_and_conflicts_are_counted():
    df = _table([((1, 2, 3), (0, 0, 4)), ((1, 2, 3), (0, 0, 2)), ((1, 3, 2), (0, 0, 3))])
    t, r = comparisons_to_triplets(df)
    # rows 0 and 1 repeat (1,2,3),(2,1,3); row 2 says (1,3,2),(3,1,2): (1,3,2) contradicts (1,2,3)
    assert r.n_duplicates == 2
    assert r.n_conflicts == 1


def test_write_read_round_trip_and_exact_format(tmp_path):
    path = write_comparisons(HAND, tmp_path / "sub" / "comparisons_final.csv")
    raw = path.read_bytes()
    header = raw.split(b"\r\n")[0]
    assert header == b"\t".join(b'"%s"' % c.encode() for c in COMPARISON_COLUMNS)
    assert raw.count(b"\r\n") == len(HAND) + 1
    assert b'"10"\t"20"\t"30"\t"1"\t"1"\t"5"\t"a/clip-10.mp3"' in raw
    back = read_comparisons(path)
    pd.testing.assert_frame_equal(back, read_comparisons(path))
    assert back[list(COMPARISON_COLUMNS[:6])].equals(HAND[list(COMPARISON_COLUMNS[:6])].astype("int64"))
    assert back["clip3_mp3_path"].tolist() == HAND["clip3_mp3_path"].tolist()


def test_read_accepts_bare_fields_and_lf(tmp_path):
    path = tmp_path / "c.csv"
    lines = ["\t".join(COMPARISON_COLUMNS), "1\t2\t3\t0\t4\t1\ta.mp3\tb.mp3\tc.mp3"]
    path.write_text("\n".join(lines) + "\n")
    df = read_comparisons(path)
    assert df.iloc[0, :6].tolist() == [1, 2, 3, 0, 4, 1]
    t, _ = comparisons_to_triplets(df)
    np.testing.assert_array_equal(t, [[1, 3, 2], [3, 1, 2]])


def test_bad_input_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="comparisons_final"):
        read_comparisons(tmp_path / "nope.csv")
    with pytest.raises(ValueError, match="missing column"):
        comparisons_to_triplets(HAND.drop(columns=["clip2_numvotes"]))
    bad = HAND.copy()
    bad.loc[0, "clip1_numvotes"] = -1
    with pytest.raises(ValueError, match=">= 0"):
        comparisons_to_triplets(bad)
    for value in ("x", 1.5):
        bad = HAND.astype(object)
        bad.loc[1, "clip3_numvotes"] = value
        with pytest.raises(ValueError, match=rf"'clip3_numvotes' must hold integers, found e.g. \['?{value}"):
            comparisons_to_triplets(bad)
    bad = HAND.copy()
    bad.loc[0, "clip2_id"] = 10
    with pytest.raises(ValueError, match="three different clips"):
        comparisons_to_triplets(bad)
    with pytest.raises(ValueError, match="min_margin"):
        comparisons_to_triplets(HAND, min_margin=0)
    with pytest.raises(ValueError, match="per_comparison"):
        comparisons_to_triplets(HAND, per_comparison="two")
    with pytest.raises(TypeError):
        write_comparisons(HAND.to_numpy(), tmp_path / "x.csv")


# --------------------------------------------------------------------------------------------
# simulated players
# --------------------------------------------------------------------------------------------
def _oracle(n=40, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 3))
    d2 = ((z[:, None] - z[None]) ** 2).sum(-1)
    return np.exp(-d2 / 4.0)


def test_noise_free_votes_are_unanimous_and_agree_with_the_oracle():
    S = _oracle()
    df = simulate_votes(S, 300, n_players=9, noise=0.0, seed=3)
    assert list(df.columns) == list(COMPARISON_COLUMNS) and len(df) == 300
    votes = df[["clip1_numvotes", "clip2_numvotes", "clip3_numvotes"]].to_numpy()
    assert ((np.sort(votes, axis=1) == [0, 0, 9]).all())
    keys = np.sort(df[["clip1_id", "clip2_id", "clip3_id"]].to_numpy(), axis=1)
    assert len(np.unique(keys, axis=0)) == 300                       # distinct triples
    t, r = comparisons_to_triplets(df)
    assert r.n_triplets == 600 and r.n_ties == 0
    # the odd clip is outside the most similar pair: every constraint holds under S
    assert (S[t[:, 0], t[:, 1]] > S[t[:, 0], t[:, 2]]).all()


def test_noise_free_players_split_on_exact_ties():
    # Clips 0-3, all pairs at similarity 0 except S(0, 3) = 0.9: the triples {0,1,3} and
    # {0,2,3} have a clear odd one (1, resp. 2); {0,1,2} and {1,2,3} are three-way ties.
    S = np.zeros((4, 4))
    np.fill_diagonal(S, 1.0)
    S[0, 3] = S[3, 0] = 0.9
    df = simulate_votes(S, 4, n_players=7, noise=0.0, seed=0)        # all C(4, 3) triples
    t, r = comparisons_to_triplets(df)
    assert r.n_ties == 2 and r.n_kept_rows == 2
    votes = df[["clip1_numvotes", "clip2_numvotes", "clip3_numvotes"]].to_numpy()
    assert sorted(map(tuple, np.sort(votes, axis=1))) == [(0, 0, 7)] * 2 + [(2, 2, 2)] * 2
    assert sorted(map(tuple, t)) == [(0, 3, 1), (0, 3, 2), (3, 0, 1), (3, 0, 2)]
    assert (S[t[:, 0], t[:, 1]] > S[t[:, 0], t[:, 2]]).all()


def test_simulation_is_seeded_and_keeps_ids_and_paths():
    S = _oracle(12)
    ids = np.arange(100, 112)
    paths = [f"x/{i}.mp3" for i in ids]
    a = simulate_votes(S, 50, noise=0.1, seed=5, clip_ids=ids, paths=paths)
    b = simulate_votes(S, 50, noise=0.1, seed=5, clip_ids=ids, paths=paths)
    c = simulate_votes(S, 50, noise=0.1, seed=6, clip_ids=ids, paths=paths)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)
    assert set(a.clip1_id) <= set(ids)
    assert (a.clip2_mp3_path == "x/" + a.clip2_id.astype(str) + ".mp3").all()


def test_vote_shares_follow_the_logit_choice_model():
    # Three clips, one triple: oddness u = similarity of the two others.
    S = np.array([[1.0, 0.8, 0.3], [0.8, 1.0, 0.5], [0.3, 0.5, 1.0]])
    tau, n_players = 0.2, 20000
    df = simulate_votes(S, 1, n_players=n_players, noise=tau, seed=11)
    ids = df[["clip1_id", "clip2_id", "clip3_id"]].to_numpy()[0]
    counts = np.zeros(3)
    counts[ids] = df[["clip1_numvotes", "clip2_numvotes", "clip3_numvotes"]].to_numpy()[0]
    u = np.array([S[1, 2], S[0, 2], S[0, 1]])                       # oddness of clips 0, 1, 2
    p = np.exp(u / tau) / np.exp(u / tau).sum()
    assert stats.chisquare(counts, n_players * p).pvalue > 1e-3
    # very noisy players are close to uniform
    df = simulate_votes(S, 1, n_players=30000, noise=100.0, seed=12)
    votes = df[["clip1_numvotes", "clip2_numvotes", "clip3_numvotes"]].to_numpy()[0]
    assert stats.chisquare(votes).pvalue > 1e-3


def test_simulation_checks_its_arguments():
    S = _oracle(5)
    with pytest.raises(ValueError, match="square"):
        simulate_votes(S[:4], 3)
    with pytest.raises(ValueError, match="distinct"):
        simulate_votes(S, 11)                               # C(5, 3) = 10 triples only
    with pytest.raises(ValueError, match="noise"):
        simulate_votes(S, 3, noise=-1)
    with pytest.raises(ValueError, match="finite"):
        simulate_votes(np.full((5, 5), np.nan), 3)
    with pytest.raises(ValueError, match="S must be a 2-D"):
        simulate_votes(S[0], 3)
    with pytest.raises(TypeError, match="S must be numeric"):
        simulate_votes(S.astype(str), 3)
    with pytest.raises(ValueError, match="n_comparisons=1 exceeds the 0 distinct triples of N=2"):
        simulate_votes(S[:2, :2], 1)
    for name, bad in (("clip_ids", {"clip_ids": np.arange(4)}), ("paths", {"paths": ["a.mp3"] * 6})):
        with pytest.raises(ValueError, match=f"{name} must have length N=5"):
            simulate_votes(S, 3, **bad)
    assert len(simulate_votes(S, 10, seed=0)) == 10


# --------------------------------------------------------------------------------------------
# folds
# --------------------------------------------------------------------------------------------
def _sparse_triplets(n_comparisons=120, n_clips=300, seed=0):
    """MTAT-like: two constraints per comparison, clips shared by few comparisons."""
    df = simulate_votes(_oracle(n_clips, seed), n_comparisons, n_players=5, noise=0.0, seed=seed)
    return comparisons_to_triplets(df)


def test_triplet_folds_partition_and_match_evaluate():
    from mrlib.evaluate import kfold_indices

    t, _ = _sparse_triplets()
    folds = triplet_folds(t, 10, by="triplet", seed=4)
    tests = np.concatenate([f.test for f in folds])
    np.testing.assert_array_equal(np.sort(tests), np.arange(len(t)))
    for (train, test), (tr, te) in zip(folds, kfold_indices(len(t), 10, seed=4)):
        assert not set(train) & set(test) and len(train) + len(test) == len(t)
        np.testing.assert_array_equal(np.sort(te), test)
    summary = fold_summary(folds, len(t))
    assert (summary.n_dropped == 0).all() and summary.n_test.sum() == len(t)


def test_comparison_folds_keep_a_comparisons_constraints_together():
    t, r = _sparse_triplets()
    for train, test in triplet_folds(t, 5, by="comparison", seed=1):
        assert not set(r.rows[train]) & set(r.rows[test])


def test_triplet_folds_name_the_shape_of_triplets():
    for bad in ([1, 2, 3], np.zeros((4, 2), dtype=int)):
        with pytest.raises(ValueError, match=r"triplets must .*\(M, 3\)"):
            triplet_folds(bad, 3)


def test_comparison_folds_keep_a_clip_set_together_where_triplet_folds_split_twins():
    t, _ = _sparse_triplets()
    t = np.concatenate([t, t[:7, [0, 2, 1]]])           # contradicting votes on seven clip sets
    sets = [frozenset(x) for x in t.tolist()]

    def twins_trained(folds):
        return sum(sets[i] in {sets[j] for j in train} for train, test in folds for i in test)

    by_comparison = triplet_folds(t, 10, by="comparison", seed=3)
    tests = np.sort(np.concatenate([f.test for f in by_comparison]))
    np.testing.assert_array_equal(tests, np.arange(len(t)))
    assert twins_trained(by_comparison) == 0
    # single-triplet folds put most twins on both sides: the leak the comparison folds close
    assert twins_trained(triplet_folds(t, 10, by="triplet", seed=3)) > 0.8 * len(t)


def test_clip_disjoint_folds_share_no_clip():
    t, _ = _sparse_triplets()
    folds = triplet_folds(t, 10, by="clip", seed=2)
    seen_test = []
    for train, test in folds:
        assert not set(t[train].ravel()) & set(t[test].ravel())
        seen_test.append(test)
    all_test = np.concatenate(seen_test)
    assert len(all_test) == len(np.unique(all_test))        # each triplet tested at most once
    summary = fold_summary(folds, len(t))
    np.testing.assert_array_equal(summary.n_train + summary.n_test + summary.n_dropped, len(t))
    again = triplet_folds(t, 10, by="clip", seed=2)
    for f, g in zip(folds, again):
        np.testing.assert_array_equal(f.train, g.train)
        np.testing.assert_array_equal(f.test, g.test)


def test_greedy_partition_keeps_sparse_comparisons_testable():
    t, _ = _sparse_triplets()
    greedy = fold_summary(triplet_folds(t, 10, by="clip", seed=0), len(t))
    # Clips dealt at random would put a triple's three clips together about 1 time in 100.
    assert greedy.n_test.sum() > 0.5 * len(t)


def test_fold_arguments_are_checked():
    t, _ = _sparse_triplets(20, 60)
    with pytest.raises(ValueError, match="n_folds"):
        triplet_folds(t, 1)
    with pytest.raises(ValueError, match="by"):
        triplet_folds(t, 3, by="song")
    with pytest.raises(ValueError, match="shape"):
        triplet_folds(t[:, :2], 3)
    with pytest.raises(TypeError, match="integer"):
        triplet_folds(t.astype(float), 3)


def test_a_bad_seed_is_named():
    S = np.random.default_rng(0).random((6, 6))
    S = (S + S.T) / 2
    t, _ = comparisons_to_triplets(simulate_votes(S, 15))
    # numpy's "SeedSequence expects int ..." / "expected non-negative integer" named no argument
    for call in (lambda s: simulate_votes(S, 5, seed=s), lambda s: triplet_folds(t, 2, seed=s),
                 lambda s: triplet_folds(t, 2, by="clip", seed=s)):
        with pytest.raises(TypeError, match="seed must be an int"):
            call("a")
        with pytest.raises(ValueError, match="seed must be >= 0"):
            call(-1)
