"""Tests of mrlib.evaluate: retrieval metrics against ranx and trec_eval (pytrec_eval), plain-loop
references and hand-worked cases; rankings and exact top-k against brute-force sorts; CIs,
paired tests, tag AUC, CFR and k-fold CV; FAISS recall."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import stats

from mrlib import evaluate as ev

LOG2 = np.log2
# ideal DCG@20 with gains 5, 4, 3, 2, 1 at ranks 1..5 (worked out by hand)
IDCG5 = 5 / 1 + 4 / LOG2(3) + 3 / 2 + 2 / LOG2(5) + 1 / LOG2(6)


# --------------------------------------------------------------------------------------------
# helpers: random runs and plain-loop references
# --------------------------------------------------------------------------------------------
def random_runs(n_queries, n_items, depth, rng, n_relevant=5, pad=False):
    """Random ground truths and system lists with plenty of hits (and misses, and hits past k).

    Each system list draws its first ``depth`` items from a pool that holds the relevant
    tracks plus a random number of distractors, shuffled: pools of 5 give perfect recall,
    large pools few hits.
    """
    true = np.empty((n_queries, n_relevant), dtype=np.int64)
    pred = np.empty((n_queries, depth), dtype=np.int64)
    for q in range(n_queries):
        perm = rng.permutation(n_items)
        true[q] = perm[:n_relevant]
        pool = perm[: n_relevant + rng.integers(0, n_items - n_relevant + 1)]
        pool = pool[rng.permutation(pool.size)]
        rest = np.setdiff1d(perm, pool, assume_unique=True)
        ranked = np.concatenate([pool, rng.permutation(rest)])[:depth]
        pred[q] = ranked
        if pad and rng.random() < 0.1:  # FAISS-style -1 padding at the end of some lists
            cut = rng.integers(1, depth)
            pred[q, cut:] = -1
    return pred, true


def loop_metrics(pred, true, k, n_relevant):
    """Per-query metrics, one query and one rank at a time, straight from the definitions."""
    out = {m: [] for m in ev.METRICS}
    idcg = sum((n_relevant - i) / math.log2(i + 2) for i in range(min(k, n_relevant)))
    for p, t in zip(pred, true):
        rel = list(t[:n_relevant])
        hits, ap, dcg, rr = 0, 0.0, 0.0, 0.0
        for i, item in enumerate(p[:k]):
            if item in rel:
                hits += 1
                ap += hits / (i + 1)
                dcg += (n_relevant - rel.index(item)) / math.log2(i + 2)
                if rr == 0.0:
                    rr = 1.0 / (i + 1)
        out["map"].append(ap / min(k, n_relevant))
        out["recall"].append(hits / n_relevant)
        out["rr"].append(rr)
        out["ndcg"].append(dcg / idcg)
    return {m: np.array(v) for m, v in out.items()}


# --------------------------------------------------------------------------------------------
# retrieval metrics
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def runs_1000():
    rng = np.random.default_rng(2020)
    return random_runs(1000, 60, 25, rng)  # lists of 25 so that some hits fall past k = 20


def _as_trec(pred, true, k_run=None):
    qrels = {f"q{q:05d}": {f"d{d}": int(5 - j) for j, d in enumerate(t)} for q, t in enumerate(true)}
    run = {}
    for q, p in enumerate(pred):
        p = p[:k_run] if k_run else p
        # strictly decreasing scores: both libraries sort by score, so the order is ours
        run[f"q{q:05d}"] = {f"d{d}": float(len(p) - i) for i, d in enumerate(p) if d >= 0}
    return qrels, run


@pytest.mark.parametrize("k", [20, 10, 5])
def test_metrics_match_ranx(runs_1000, k):
    ranx = pytest.importorskip("ranx")
    pred, true = runs_1000
    qrels, run = _as_trec(pred, true)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numba's type-safety chatter inside ranx
        got = ranx.evaluate(ranx.Qrels(qrels), ranx.Run(run),
                            [f"map@{k}", f"recall@{k}", f"mrr@{k}", f"ndcg@{k}"], return_mean=False)
    ours = ev.retrieval_metrics(pred, true, k=k)
    # ranx's "ndcg" is Järvelin's linear gain (its "ndcg_burges" is 2^rel - 1)
    for ours_key, ranx_key in [("map", "map"), ("recall", "recall"), ("rr", "mrr"), ("ndcg", "ndcg")]:
        np.testing.assert_allclose(ours[ours_key], got[f"{ranx_key}@{k}"], rtol=0, atol=1e-12,
                                   err_msg=f"{ours_key}@{k} differs from ranx")


@pytest.mark.parametrize("k", [20, 7])
def test_metrics_match_trec_eval(runs_1000, k):
    pytrec_eval = pytest.importorskip("pytrec_eval")
    pred, true = runs_1000
    qrels, run = _as_trec(pred, true)
    cut = pytrec_eval.RelevanceEvaluator(qrels, {f"map_cut.{k}", f"recall.{k}", f"ndcg_cut.{k}"}).evaluate(run)
    # trec's recip_rank has no cut-off: give it the list cut at k, which is RR@k by definition
    _, run_k = _as_trec(pred, true, k_run=k)
    rr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(run_k)
    ours = ev.retrieval_metrics(pred, true, k=k)
    qids = [f"q{q:05d}" for q in range(len(pred))]
    # trec_eval's ndcg_cut uses the relevance level itself as the gain: linear, as ours
    for key, trec in [("map", f"map_cut_{k}"), ("recall", f"recall_{k}"), ("ndcg", f"ndcg_cut_{k}")]:
        np.testing.assert_allclose(ours[key], [cut[q][trec] for q in qids], rtol=0, atol=1e-12)
    np.testing.assert_allclose(ours["rr"], [rr[q]["recip_rank"] for q in qids], rtol=0, atol=1e-12)


@pytest.mark.parametrize("k,n_relevant,depth", [(20, 5, 25), (3, 5, 25), (10, 1, 12), (20, 5, 8), (1, 3, 4)])
def test_metrics_equal_plain_loop(k, n_relevant, depth):
    rng = np.random.default_rng(k * 100 + n_relevant)
    pred, true = random_runs(300, 40, depth, rng, n_relevant=n_relevant, pad=True)
    ours = ev.retrieval_metrics(pred, true, k=k, n_relevant=n_relevant)
    ref = loop_metrics(pred, true, k, n_relevant)
    for m in ev.METRICS:
        np.testing.assert_allclose(ours[m], ref[m], rtol=0, atol=1e-12, err_msg=m)
        assert ours[m].dtype == np.float64 and ours[m].shape == (300,)
        assert (ours[m] >= 0).all() and (ours[m] <= 1 + 1e-12).all()


def _one(pred_row, true_row=(100, 101, 102, 103, 104), k=20):
    m = ev.retrieval_metrics(np.array([pred_row]), np.array([true_row]), k=k)
    return {key: float(v[0]) for key, v in m.items()}


def test_hand_no_hit():
    m = _one(list(range(20)))
    assert m == {"map": 0.0, "recall": 0.0, "rr": 0.0, "ndcg": 0.0}


def test_hand_hit_at_rank_1():
    m = _one([100] + list(range(19)))  # r_1 at rank 1, nothing else
    assert m["map"] == pytest.approx(1 / 5)
    assert m["recall"] == pytest.approx(1 / 5)
    assert m["rr"] == 1.0
    assert m["ndcg"] == pytest.approx(5 / IDCG5)  # = 5 / 10.271925 = 0.486764
    assert m["ndcg"] == pytest.approx(0.486764, abs=1e-6)


def test_hand_all_five_in_top_five():
    assert _one([100, 101, 102, 103, 104] + list(range(15))) == pytest.approx(
        {"map": 1.0, "recall": 1.0, "rr": 1.0, "ndcg": 1.0})
    rev = _one([104, 103, 102, 101, 100] + list(range(15)))  # same set, worst order
    assert rev["map"] == pytest.approx(1.0) and rev["recall"] == 1.0 and rev["rr"] == 1.0
    dcg = 1 / 1 + 2 / LOG2(3) + 3 / 2 + 4 / LOG2(5) + 5 / LOG2(6)
    assert rev["ndcg"] == pytest.approx(dcg / IDCG5)
    assert rev["ndcg"] < 1.0


def test_hand_hits_at_2_and_3():
    m = _one([0, 101, 100] + list(range(1, 18)))  # r_2 at rank 2, r_1 at rank 3
    assert m["map"] == pytest.approx((1 / 2 + 2 / 3) / 5)  # 0.2333...
    assert m["recall"] == pytest.approx(2 / 5)
    assert m["rr"] == pytest.approx(1 / 2)
    assert m["ndcg"] == pytest.approx((4 / LOG2(3) + 5 / LOG2(4)) / IDCG5)  # 0.48907...


def test_hand_hits_beyond_k():
    row = list(range(20)) + [100, 101, 102, 103, 104]  # all relevant at ranks 21..25
    assert _one(row) == {"map": 0.0, "recall": 0.0, "rr": 0.0, "ndcg": 0.0}
    row = list(range(19)) + [104, 100]  # r_5 at rank 20 counts, r_1 at rank 21 does not
    m = _one(row)
    assert m["map"] == pytest.approx((1 / 20) / 5)
    assert m["recall"] == pytest.approx(1 / 5)
    assert m["rr"] == pytest.approx(1 / 20)
    assert m["ndcg"] == pytest.approx((1 / LOG2(21)) / IDCG5)
    # the same list at k = 21 sees both
    assert _one(row, k=21)["recall"] == pytest.approx(2 / 5)


def test_hand_k_below_n_relevant():
    # k = 2 < R = 5: AP is normalised by min(k, R) = 2, so a perfect top 2 scores 1
    m = _one([100, 101, 0, 1], k=2)
    assert m["map"] == pytest.approx(1.0)
    assert m["recall"] == pytest.approx(2 / 5)
    assert m["ndcg"] == pytest.approx(1.0)  # ideal list cut at k
    m = _one([101, 100], k=2)
    assert m["ndcg"] == pytest.approx((4 + 5 / LOG2(3)) / (5 + 4 / LOG2(3)))


def test_metrics_padding_and_short_lists():
    m = ev.retrieval_metrics(np.array([[100, -1, -1]]), np.array([[100, 1, 2, 3, 4]]), k=20)
    assert m["recall"][0] == pytest.approx(0.2) and m["rr"][0] == 1.0


def test_metrics_empty_lists_score_zero():
    # a list of length 0 (L < k, documented as misses) scores 0 on every metric
    m = ev.retrieval_metrics(np.zeros((2, 0), dtype=np.int64), np.arange(10).reshape(2, 5), k=20)
    for key in ev.METRICS:
        assert m[key].shape == (2,) and (m[key] == 0).all()


@pytest.mark.parametrize("bad,err", [
    (dict(pred_ranked=np.zeros((3, 20), int), true_ranked=np.zeros((2, 5), int)), ValueError),
    (dict(pred_ranked=np.zeros((3, 20)), true_ranked=np.zeros((3, 5), int)), TypeError),
    (dict(pred_ranked=np.zeros(20, int), true_ranked=np.zeros((1, 5), int)), ValueError),
    (dict(pred_ranked=np.arange(20)[None], true_ranked=np.arange(4)[None]), ValueError),
    (dict(pred_ranked=np.array([[1, 2, 1]]), true_ranked=np.arange(5)[None]), ValueError),
    (dict(pred_ranked=np.arange(3)[None], true_ranked=np.arange(5)[None], k=0), ValueError),
    (dict(pred_ranked=np.arange(3)[None], true_ranked=np.arange(5)[None], k=2.5), TypeError),
])
def test_metrics_reject_bad_input(bad, err):
    with pytest.raises(err):
        ev.retrieval_metrics(**bad)


# --------------------------------------------------------------------------------------------
# rankings and exact top-k
# --------------------------------------------------------------------------------------------
def brute_l2(q, b):
    return ((q[:, None, :] - b[None, :, :]) ** 2).sum(-1)


@pytest.mark.parametrize("chunk_size", [None, 1, 7])
def test_exact_topk_equals_full_sort(chunk_size):
    rng = np.random.default_rng(7)
    q, b = rng.standard_normal((37, 16)), rng.standard_normal((400, 16))
    d, i = ev.exact_topk(q, b, 20, chunk_size=chunk_size)
    full = brute_l2(q, b)
    ref = np.argsort(full, axis=1, kind="stable")[:, :20]
    np.testing.assert_array_equal(i, ref)
    np.testing.assert_allclose(d, np.take_along_axis(full, ref, 1), atol=1e-10)
    assert i.dtype == np.int64 and d.dtype == np.float64 and d.shape == (37, 20)


@pytest.mark.parametrize("k", [1, 4, 30, 199])
def test_exact_topk_ties_and_self_exclusion(k):
    # points on a small integer grid: many exactly equal distances, so the tie rule is tested
    rng = np.random.default_rng(k)
    x = rng.integers(0, 3, size=(200, 3)).astype(np.float32)
    d, i = ev.exact_topk(x, x, k, exclude_self=True, chunk_size=64)
    full = brute_l2(x, x)
    np.fill_diagonal(full, np.inf)
    np.testing.assert_array_equal(i, np.argsort(full, axis=1, kind="stable")[:, :k])
    assert d.dtype == np.float32
    assert not (i == np.arange(200)[:, None]).any()


def test_exact_topk_finds_each_query_first_without_exclusion():
    rng = np.random.default_rng(3)
    b = rng.standard_normal((100, 5))
    ids = np.array([10, 50, 99])
    # without exclusion each query finds itself first, at distance 0
    d, i = ev.exact_topk(b[ids], b, 5)
    np.testing.assert_array_equal(i[:, 0], ids)
    np.testing.assert_allclose(d[:, 0], 0.0, atol=1e-12)


def test_exact_topk_rejects_bad_input():
    x = np.zeros((5, 3))
    with pytest.raises(ValueError, match="k=5 exceeds"):
        ev.exact_topk(x, x, 5, exclude_self=True)
    with pytest.raises(ValueError, match="dimension"):
        ev.exact_topk(np.zeros((2, 4)), x, 2)
    with pytest.raises(ValueError, match="non-finite"):
        ev.exact_topk(np.full((1, 3), np.nan), x, 2)
    with pytest.raises(ValueError, match="queries left out of their own lists must be the first base rows"):
        ev.exact_topk(np.zeros((6, 3)), x, 2, exclude_self=True)
    with pytest.raises(ValueError, match=r"must be the first columns of S \(n_queries <= n, n >= 1\), got 3"):
        ev.rank_by_similarity(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="MPS has no float64"):   # said before anything reaches MPS
        ev.exact_topk(x, x, 2, device="mps")


def test_rank_by_distance():
    rng = np.random.default_rng(11)
    x = rng.standard_normal((120, 6))
    full = brute_l2(x, x)
    np.fill_diagonal(full, np.inf)
    r = ev.rank_by_distance(x)
    assert r.shape == (120, 119)
    np.testing.assert_array_equal(r, np.argsort(full, axis=1, kind="stable")[:, :-1])


def test_rank_by_similarity_ties_and_no_mutation():
    rng = np.random.default_rng(5)
    S = rng.integers(0, 4, size=(90, 90)).astype(np.float32) / 4  # many ties
    S0 = S.copy()
    r = ev.rank_by_similarity(S)
    key = -S.astype(np.float64)
    np.fill_diagonal(key, np.inf)
    np.testing.assert_array_equal(r, np.argsort(key, axis=1, kind="stable")[:, :-1])
    np.testing.assert_array_equal(ev.rank_by_similarity(S, k=5, chunk_size=8), r[:, :5])
    np.testing.assert_array_equal(S, S0)  # the caller's matrix is untouched
    # the queries may be the first rows of the base: their lists are those of the square S
    np.testing.assert_array_equal(ev.rank_by_similarity(S[:10]), r[:10])
    with pytest.raises(ValueError, match="exceeds"):
        ev.rank_by_similarity(S, k=90)
    with pytest.raises(ValueError, match="non-finite"):
        ev.rank_by_similarity(np.array([[0.0, np.nan], [1.0, 0.0]]))


# --------------------------------------------------------------------------------------------
# end to end: embeddings / similarity -> RetrievalResult -> Table 2
# --------------------------------------------------------------------------------------------
def test_evaluate_embeddings_perfect_and_random():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((150, 4))
    S_true = -brute_l2(x, x)  # an oracle the embedding reproduces exactly
    res = ev.evaluate_embeddings(x, S_true)
    assert res.n_queries == 150
    assert all(v == pytest.approx(100.0) for v in res.means().values())
    # an unrelated embedding: expected recall@20 of a random list is 20 / 149
    noise = rng.standard_normal((150, 4))
    res_rand = ev.evaluate_embeddings(noise, S_true)
    ci = ev.mean_ci(res_rand.per_query["recall"], level=0.999)
    assert ci.low < 20 / 149 < ci.high
    row = res.row()
    assert list(row) == ["MAP@20", "Recall@20", "RR@20", "nDCG@20"]
    assert row["MAP@20"] == "100.00 ± 0.00"
    table = ev.results_table({"oracle": res, "noise": res_rand})
    assert list(table.index) == ["oracle", "noise"] and table.shape == (2, 4)
    summ = res_rand.summary()
    assert list(summ.columns) == ["mean", "low", "high", "half_width"]
    np.testing.assert_allclose(summ["mean"].to_numpy(), [100 * res_rand.per_query[m].mean() for m in ev.METRICS])


def test_evaluate_on_too_few_tracks_names_n_relevant_not_k():
    # 4 tracks: 3 others per query, fewer than the 5 relevant ones; k (20) is not the problem
    for call in (lambda: ev.evaluate_similarity(np.eye(4), np.eye(4)),
                 lambda: ev.evaluate_embeddings(np.eye(4), np.eye(4))):
        with pytest.raises(ValueError, match=r"4 test tracks .* n_relevant=5"):
            call()
    assert ev.evaluate_similarity(np.eye(6), np.eye(6)).n_queries == 6


def test_evaluate_similarity_matches_manual_pipeline():
    rng = np.random.default_rng(1)
    S_true = rng.random((80, 80))
    S_pred = S_true + rng.normal(0, 0.3, size=S_true.shape)
    res = ev.evaluate_similarity(S_pred, S_true, k=10)
    manual = ev.retrieval_metrics(ev.rank_by_similarity(S_pred, k=10), ev.rank_by_similarity(S_true, k=5), k=10)
    for m in ev.METRICS:
        np.testing.assert_array_equal(res.per_query[m], manual[m])
    assert list(res.row()) == ["MAP@10", "Recall@10", "RR@10", "nDCG@10"]
    with pytest.raises(ValueError, match="square"):
        ev.evaluate_similarity(S_pred[:5], S_true)
    with pytest.raises(ValueError, match="S_true"):
        ev.evaluate_embeddings(rng.random((80, 3)), S_true[:10, :10])


# --------------------------------------------------------------------------------------------
# confidence intervals and paired tests
# --------------------------------------------------------------------------------------------
def test_mean_ci_t_and_normal_match_scipy():
    x = np.random.default_rng(4).exponential(size=57)
    ci = ev.mean_ci(x)
    lo, hi = stats.t.interval(0.95, df=56, loc=x.mean(), scale=stats.sem(x))
    assert (ci.low, ci.high) == pytest.approx((lo, hi))
    assert ci.half_width == pytest.approx((hi - lo) / 2)
    lo, hi = stats.norm.interval(0.9, loc=x.mean(), scale=stats.sem(x))
    assert ev.mean_ci(x, level=0.9, method="normal")[1:3] == pytest.approx((lo, hi))
    b1 = ev.mean_ci(x, method="bootstrap", seed=3)
    assert b1 == ev.mean_ci(x, method="bootstrap", seed=3)  # seeded
    assert b1.low < x.mean() < b1.high
    assert b1.half_width == pytest.approx(ci.half_width, rel=0.25)
    with pytest.raises(ValueError, match="at least 2"):
        ev.mean_ci([1.0])
    with pytest.raises(ValueError, match="method"):
        ev.mean_ci(x, method="bca")
    with pytest.raises(ValueError, match="level"):
        ev.mean_ci(x, level=95)


@pytest.mark.parametrize("method", ["t", "bootstrap"])
def test_mean_ci_coverage(method):
    # skewed, mostly-zero scores like RR@20: a mixture of 0 and Uniform(0, 1)
    rng = np.random.default_rng(123)
    true_mean = 0.3 * 0.5
    covered = 0
    n_rep = 200
    for r in range(n_rep):
        x = np.where(rng.random(60) < 0.3, rng.random(60), 0.0)
        ci = ev.mean_ci(x, method=method, n_boot=1000, seed=r)
        covered += ci.low <= true_mean <= ci.high
    assert covered / n_rep >= 0.9, f"{method} coverage {covered / n_rep:.3f}"


def test_paired_test():
    rng = np.random.default_rng(9)
    base = rng.random(400)
    better = np.clip(base + rng.normal(0.03, 0.05, size=400), 0, 1)
    t = ev.paired_test(better, base)
    d = better - base
    assert t.mean_diff == pytest.approx(d.mean())
    assert t.low < d.mean() < t.high and t.low > 0
    assert t.p_wilcoxon == pytest.approx(stats.wilcoxon(d).pvalue) and t.p_wilcoxon < 1e-6
    assert t.n == 400 and t.n_nonzero == np.count_nonzero(d)
    assert t == ev.paired_test(better, base)  # seeded
    # the pairing matters: the paired interval is far narrower than the unpaired ones
    assert (t.high - t.low) < 0.5 * 2 * ev.mean_ci(base).half_width
    same = ev.paired_test(base, base)
    assert same.mean_diff == 0 and same.p_wilcoxon == 1.0 and same.low == same.high == 0
    null = ev.paired_test(base, rng.permutation(base))
    assert null.p_wilcoxon > 0.01 and null.low < 0 < null.high
    with pytest.raises(ValueError, match="same queries"):
        ev.paired_test(base, base[:-1])


def test_paired_test_wilcoxon_ranks_equal_differences_as_ties():
    # RR@20-like scores, multiples of 1/20: equal differences from other pairs of scores differ
    # in floating point (0.15 - 0.05 != 0.1); the signed-rank test must tie them
    rng = np.random.default_rng(4)
    kx, ky = rng.integers(0, 21, 400), rng.integers(0, 21, 400)
    t = ev.paired_test(kx / 20, ky / 20, n_boot=100)
    assert t.p_wilcoxon == pytest.approx(stats.wilcoxon(kx - ky).pvalue, rel=1e-9)
    assert t.n_nonzero == np.count_nonzero(kx - ky)


def test_format_ci():
    assert ev.format_ci(0.0598, 0.0040) == "5.98 ± 0.40"
    assert ev.format_ci(0.5, 0.01234, decimals=3, scale=1) == "0.500 ± 0.012"
    # 0-d arrays (a reduced metric) format as the numbers they hold
    assert ev.format_ci(np.array(0.0598), np.array(0.0040, dtype=np.float32)) == "5.98 ± 0.40"


# --------------------------------------------------------------------------------------------
# tag AUC
# --------------------------------------------------------------------------------------------
def test_tag_auc_matches_sklearn_and_skips_single_class():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(8)
    y = rng.random((300, 12)) < rng.uniform(0.05, 0.6, size=12)
    y[:, 3] = False  # no positive
    y[:, 7] = True  # no negative
    prob = np.round(0.5 * y + rng.random(y.shape), 1)  # rounded: ties between scores
    res = ev.tag_auc(y.astype(int), prob)
    assert res.n_skipped == 2 and res.n_tags == 12
    assert np.isnan(res.per_tag[[3, 7]]).all()
    ok = [j for j in range(12) if j not in (3, 7)]
    want = [roc_auc_score(y[:, j], prob[:, j]) for j in ok]
    np.testing.assert_allclose(res.per_tag[ok], want, rtol=0, atol=1e-12)
    assert res.mean == pytest.approx(np.mean(want))
    with pytest.raises(ValueError, match="binary"):
        ev.tag_auc(y * 0.7, prob)
    with pytest.raises(ValueError, match="shape"):
        ev.tag_auc(y[:, :3], prob)


# --------------------------------------------------------------------------------------------
# constraints fulfillment rate and k-fold cross-validation
# --------------------------------------------------------------------------------------------
def test_cfr_true_reversed_random_and_ties():
    rng = np.random.default_rng(17)
    d_ap = rng.random(2000)
    d_an = d_ap + rng.random(2000) + 1e-3  # the true order: every constraint holds
    assert ev.constraints_fulfillment_rate(d_ap, d_an) == (1.0, 0.0, 2000)
    assert ev.constraints_fulfillment_rate(d_an, d_ap).rate == 0.0  # a reversing metric
    assert ev.constraints_fulfillment_rate(d_ap, d_ap).rate == 0.0  # ties are not fulfilled
    r = ev.constraints_fulfillment_rate(rng.random(2000), rng.random(2000))
    assert r.se == pytest.approx(math.sqrt(r.rate * (1 - r.rate) / 2000))
    assert abs(r.rate - 0.5) < 3 * r.se
    assert ev.constraints_fulfillment_rate([1.0, 2.0, 3.0], [2.0, 2.0, 1.0]).rate == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="one value per triplet"):
        ev.constraints_fulfillment_rate([1.0], [1.0, 2.0])


def test_kfold_indices_partition_groups_and_seed():
    folds = ev.kfold_indices(103, 10, seed=1)
    tests = np.concatenate([t for _, t in folds])
    np.testing.assert_array_equal(np.sort(tests), np.arange(103))
    assert {t.size for _, t in folds} <= {10, 11}
    for tr, te in folds:
        assert np.intersect1d(tr, te).size == 0 and tr.size + te.size == 103
    again = ev.kfold_indices(103, 10, seed=1)
    assert all((a[1] == b[1]).all() for a, b in zip(folds, again))
    assert any((a[1] != b[1]).any() for a, b in zip(folds, ev.kfold_indices(103, 10, seed=2)))
    groups = np.random.default_rng(0).integers(0, 40, size=500)
    gfolds = ev.kfold_indices(500, 10, groups=groups, seed=0)
    for tr, te in gfolds:
        assert np.intersect1d(groups[tr], groups[te]).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([t for _, t in gfolds])), np.arange(500))
    with pytest.raises(ValueError, match="distinct groups"):
        ev.kfold_indices(10, 5, groups=np.zeros(10))


# --------------------------------------------------------------------------------------------
# approximate search
# --------------------------------------------------------------------------------------------
def clustered(n, dim, rng, n_centres=50):
    centres = rng.standard_normal((n_centres, dim))
    x = centres[rng.integers(0, n_centres, size=n)] + 0.3 * rng.standard_normal((n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_recall_at_k_hand_cases():
    exact = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    approx = np.array([[4, 3, 9, 1], [-1, -1, -1, -1]])
    assert ev.recall_at_k(approx, exact) == pytest.approx((3 / 4 + 0) / 2)
    np.testing.assert_allclose(ev.recall_at_k(approx, exact, per_query=True), [0.75, 0.0])
    assert ev.recall_at_k(approx, exact, k=2) == pytest.approx(0.0)  # {4, 3} vs {1, 2}
    with pytest.raises(ValueError, match="columns"):
        ev.recall_at_k(approx[:, :2], exact, k=4)


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_faiss_recall_is_high(kind):
    pytest.importorskip("faiss")
    rng = np.random.default_rng(31)
    base, queries = clustered(5000, 32, rng), clustered(200, 32, rng)
    index = ev.build_faiss_index(base, kind=kind, nlist=64, nprobe=16, seed=0)
    assert index.ntotal == 5000 and index.dim == 32
    d, i = index.search(queries, 20)
    assert d.shape == i.shape == (200, 20) and i.dtype == np.int64
    ed, ei = ev.exact_topk(queries, base, 20)
    r = ev.recall_at_k(i, ei)
    assert r >= 0.95, f"{kind} recall {r:.3f}"
    # same distance convention as exact_topk: squared L2
    hit = i[:, 0] == ei[:, 0]
    np.testing.assert_allclose(d[hit, 0], ed[hit, 0], atol=1e-4)


def test_faiss_params_and_errors():
    pytest.importorskip("faiss")
    base = clustered(600, 8, np.random.default_rng(2))
    ivf = ev.build_faiss_index(base, kind="ivf", nlist=16, nprobe=2, seed=0)
    assert ivf.set_params(nprobe=99).params() == {"nprobe": 16, "nlist": 16}  # capped at nlist
    with pytest.raises(ValueError, match="HNSW"):
        ivf.set_params(ef_search=10)
    hnsw = ev.build_faiss_index(base, kind="hnsw", ef_search=20)
    assert hnsw.set_params(ef_search=50).params() == {"ef_search": 50}
    with pytest.raises(ValueError, match="dimension"):
        hnsw.search(np.zeros((2, 7), np.float32), 5)
    with pytest.raises(ValueError, match=r"^kind must be one of \('hnsw', 'ivf'\), got 'lsh'$"):
        ev.build_faiss_index(base, kind="lsh")
    with pytest.raises(ValueError, match="nlist"):
        ev.build_faiss_index(base[:10], kind="ivf", nlist=16)
    # IVF k-means is seeded: the same seed gives the same index, hence the same answers
    a = ev.build_faiss_index(base, kind="ivf", nlist=16, nprobe=2, seed=5).search(base[:50], 5)[1]
    b = ev.build_faiss_index(base, kind="ivf", nlist=16, nprobe=2, seed=5).search(base[:50], 5)[1]
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("n,nlist", [(2000, 51), (30_000, 693)])
def test_faiss_ivf_default_cells_leave_kmeans_enough_points(capfd, n, nlist):
    # The default 4·√n cells, capped at n / 39: FAISS trains k-means with fewer than 39 points
    # per cell but prints a WARNING to stderr (notebook 07 showed it at n_retrieval = 20,000).
    pytest.importorskip("faiss")
    base = clustered(n, 8, np.random.default_rng(3))
    ivf = ev.build_faiss_index(base, kind="ivf", seed=0)
    assert ivf.params()["nlist"] == nlist       # 30,000 vectors keep 4·√n = 693 cells
    assert "WARNING" not in capfd.readouterr().err


def test_bench_names_an_unknown_benchmark_in_one_line(capsys):
    from mrlib import bench

    assert bench.main(["nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "benchmark must be one of (" in err and "'all'), got 'nope'" in err
    assert all(name in err for name in bench.available()) and "Traceback" not in err


def test_benchmark_runs_small(capsys):
    import runpy

    from mrlib.paths import repo_root

    module = runpy.run_path(str(repo_root() / "benchmarks" / "retrieval.py"), run_name="bench_retrieval")
    assert module["main"](["--n", "3000", "--dim", "16", "--queries", "40", "--nlist", "32",
                           "--nprobe", "4", "32", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "queries/s" in out and "recall@20" in out
    r = module["run"](n=3000, dim=16, n_queries=40, nlist=32, nprobe=(32,), progress=False)
    assert r["faiss"][0]["recall"] == pytest.approx(1.0)  # nprobe = nlist scans every cell
    assert r["d2_nn1"] < r["d2_nnk"] < r["d2_random"]  # the simulated catalog has structure


# --------------------------------------------------------------------------------------------
# Table 2: random ranking, Holm, paired comparisons, the record
# --------------------------------------------------------------------------------------------
def test_random_ranking_in_row_blocks_draws_the_one_shot_lists(monkeypatch):
    """Drawing the keys block by block (bounded memory) gives the lists of one (n, n) draw."""
    n, seed = 23, 5
    keys = np.random.default_rng(seed).random((n, n))
    np.fill_diagonal(keys, np.inf)
    one_shot = np.argsort(keys, axis=1, kind="stable")
    for block_keys in (1, 4 * n, 7 * n + 3, n * n):
        monkeypatch.setattr(ev, "_RANDOM_BLOCK_KEYS", block_keys)
        np.testing.assert_array_equal(ev.random_ranking(n, seed=seed), one_shot[:, :n - 1])
        np.testing.assert_array_equal(ev.random_ranking(n, k=4, seed=seed), one_shot[:, :4])


def test_random_ranking_is_a_uniform_permutation_without_self():
    r = ev.random_ranking(50, seed=3)
    assert r.shape == (49 + 1, 49) and r.dtype == np.int64
    assert not (r == np.arange(50)[:, None]).any()
    np.testing.assert_array_equal(np.sort(r, axis=1)[0], np.delete(np.arange(50), 0))
    assert not _has_dup(r)
    np.testing.assert_array_equal(r, ev.random_ranking(50, seed=3))
    assert not np.array_equal(r, ev.random_ranking(50, seed=4))
    np.testing.assert_array_equal(ev.random_ranking(50, k=5, seed=3), r[:, :5])
    # uniform: over many queries, item 0's position in the lists of the other 5 tracks of a
    # 6-track catalog is uniform on 5 places (chi-square, fixed seed)
    many = np.concatenate([ev.random_ranking(6, seed=s)[1:] for s in range(400)])
    pos = np.argmax(many == 0, axis=1)
    counts = np.bincount(pos, minlength=5)
    assert stats.chisquare(counts).pvalue > 0.01
    # the metric floor: expected Recall@k of a random list is k / (n - 1)
    n, k = 120, 20
    true = ev.random_ranking(n, k=5, seed=100)
    rec = np.concatenate([ev.retrieval_metrics(ev.random_ranking(n, k=k, seed=s), true)["recall"]
                          for s in range(30)])
    assert ev.mean_ci(rec, level=0.999).low < k / (n - 1) < ev.mean_ci(rec, level=0.999).high
    with pytest.raises(ValueError, match="exceeds"):
        ev.random_ranking(5, k=5)
    with pytest.raises(ValueError, match="n must be"):
        ev.random_ranking(1)


def _has_dup(rows):
    s = np.sort(rows, axis=1)
    return bool((s[:, 1:] == s[:, :-1]).any())


def test_holm_hand_case_and_loop():
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> running max
    p = np.array([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(ev.holm(p), [0.03, 0.06, 0.06, 0.02])
    rng = np.random.default_rng(0)
    for _ in range(20):
        p = rng.random(rng.integers(1, 12)) ** 3
        order = np.argsort(p, kind="stable")
        ref, running = np.empty_like(p), 0.0
        for j, i in enumerate(order):  # the textbook step-down loop
            running = max(running, min(1.0, (p.size - j) * p[i]))
            ref[i] = running
        np.testing.assert_allclose(ev.holm(p), ref)
        assert (ev.holm(p) >= p).all()
    with pytest.raises(ValueError, match="p-values"):
        ev.holm([0.5, 1.5])


def _result(per_query_map, rng):
    """A RetrievalResult whose four metrics are noisy copies of one per-query score."""
    x = np.clip(per_query_map, 0, 1)
    return ev.RetrievalResult({m: np.clip(x + rng.normal(0, 0.01, x.size), 0, 1) for m in ev.METRICS})


def test_compare_systems_matches_paired_test():
    rng = np.random.default_rng(21)
    base = rng.random(300) * 0.3
    results = {"untrained": _result(base, rng),
               "good": _result(base + 0.15 + rng.normal(0, 0.05, 300), rng),
               "same": _result(base + rng.normal(0, 0.05, 300), rng)}
    df = ev.compare_systems(results, "untrained", seed=3)
    assert list(df.index.get_level_values("system").unique()) == ["good", "same"]
    assert len(df) == 2 * len(ev.METRICS)
    for (name, col), row in df.iterrows():
        m = {v: k for k, v in results[name].columns.items()}[col]
        t = ev.paired_test(results[name].per_query[m], results["untrained"].per_query[m], seed=3)
        assert row["mean_diff"] == pytest.approx(100 * t.mean_diff)
        assert (row["low"], row["high"]) == pytest.approx((100 * t.low, 100 * t.high))
        assert row["p_wilcoxon"] == pytest.approx(t.p_wilcoxon)
        ca = ev.mean_ci(results[name].per_query[m])
        cb = ev.mean_ci(results["untrained"].per_query[m])
        assert row["ci_disjoint"] == (ca.low > cb.high or ca.high < cb.low)
    np.testing.assert_allclose(df["p_adjusted"], ev.holm(df["p_wilcoxon"]))
    assert df.loc["good", "better"].all() and df.loc["good", "ci_disjoint"].all()
    assert not df.loc["same", "ci_disjoint"].any()
    one_metric = ev.compare_systems(results, "untrained", metrics=("map",))
    assert len(one_metric) == 2
    with pytest.raises(ValueError,
                       match=r"^reference must be one of \('untrained', 'good', 'same'\), got 'best'"):
        ev.compare_systems(results, "best")
    with pytest.raises(ValueError, match="metric"):
        ev.compare_systems(results, "good", metrics=("auc",))
    with pytest.raises(ValueError, match="repeat"):   # one more test would change Holm's correction
        ev.compare_systems(results, "good", metrics=("map", "map"))
    short = {"a": results["good"], "b": _result(base[:10], rng)}
    with pytest.raises(ValueError, match="same queries"):
        ev.compare_systems(short, "a")


def test_results_table_shows_each_metric_as_mean_and_ci_half_width():
    rng = np.random.default_rng(2)
    results = {"x": _result(rng.random(50) * 0.2, rng), "y": _result(rng.random(50), rng)}
    table = ev.results_table(results)
    assert list(table.index) == ["x", "y"]
    for name, res in results.items():
        s = res.summary()
        for col in s.index:
            assert table.loc[name, col] == ev.format_ci(s.loc[col, "mean"] / 100, s.loc[col, "half_width"] / 100)


def test_seeds_and_systems_are_checked_at_the_door():
    x = np.random.default_rng(0).random(20)
    y = np.random.default_rng(1).random(20)
    # numpy's "SeedSequence expects int ..." / "expected non-negative integer" named no argument
    for call in (lambda s: ev.random_ranking(5, seed=s),
                 lambda s: ev.mean_ci(x, method="bootstrap", n_boot=100, seed=s),
                 lambda s: ev.paired_test(x, y, n_boot=100, seed=s),
                 lambda s: ev.kfold_indices(10, 3, seed=s)):
        with pytest.raises(TypeError, match="seed must be an int"):
            call("a")
        with pytest.raises(ValueError, match="seed must be >= 0"):
            call(-1)
    S = np.random.default_rng(2).random((8, 8))
    r = ev.evaluate_similarity(S, S, k=3, n_relevant=2)
    r2 = ev.evaluate_similarity(S, S[::-1], k=3, n_relevant=2)
    with pytest.raises(TypeError, match=r"results\['b'\] must be a RetrievalResult"):
        ev.results_table({"a": r, "b": 1})                    # was AttributeError: no attribute 'k'
    with pytest.raises(ValueError, match="alpha must be"):     # the message said "level"
        ev.compare_systems({"a": r, "b": r2}, "a", alpha=2, n_boot=100)
    one = ev.compare_systems({"a": r, "b": r2}, "a", metrics="map", n_boot=100)  # was split into letters
    assert list(one.index.get_level_values("metric")) == ["MAP@3"]


def test_empty_inputs_get_a_clear_error_not_a_nan_or_a_blamed_k():
    # rank_by_distance of one track blamed "k must be >= 1, got 0", a k the caller never passed
    with pytest.raises(ValueError, match="embeddings needs at least 2 row"):
        ev.rank_by_distance(np.zeros((1, 3)))
    with pytest.raises(ValueError, match=r"first columns of S .* 0 columns"):   # numpy: negative dimensions
        ev.rank_by_similarity(np.zeros((0, 0)))
    with pytest.raises(ValueError, match="no queries"):           # returned NaN
        ev.recall_at_k(np.zeros((0, 3), int), np.zeros((0, 3), int))
    with pytest.raises(ValueError, match="exact_idx has no columns"):   # NaN (0 / 0)
        ev.recall_at_k(np.zeros((2, 0), int), np.zeros((2, 0), int))
    with pytest.raises(TypeError, match="x must be a 1-D sequence of numbers"):     # "could not convert string to float"
        ev.mean_ci(["a", "b"])
    with pytest.raises(TypeError, match="mean must be a number"):  # "can't multiply sequence"
        ev.format_ci("0.5", 0.01)


def test_mean_variance_counts_each_group_once():
    from mrlib.stats import mean_ci, mean_variance

    x = np.array([0.1, 0.3, 0.2, 0.9, 0.7, 0.5, 0.4])
    assert mean_variance(x) == (pytest.approx(x.var(ddof=1) / 7), 6)
    # one unit per group is the plain variance; groups by hand: (G / (G - 1)) Σ_g s_g² / n²
    assert mean_variance(x, np.arange(7))[0] == pytest.approx(x.var(ddof=1) / 7)
    groups = np.array(["a", "a", "a", "b", "b", "c", "c"])
    s = [(x[groups == g] - x.mean()).sum() for g in "abc"]
    assert mean_variance(x, groups) == (pytest.approx(sum(v * v for v in s) / 49 * 3 / 2), 2)
    ci = mean_ci(x, groups=groups)
    assert ci.half_width == pytest.approx(stats.t.ppf(0.975, 2) * (sum(v * v for v in s) / 49 * 1.5) ** 0.5)
    assert mean_ci(x).half_width == pytest.approx(stats.t.ppf(0.975, 6) * x.std(ddof=1) / 7 ** 0.5)
    with pytest.raises(ValueError, match="one label per unit"):
        mean_variance(x, groups[:3])
    with pytest.raises(ValueError, match="at least 2 groups"):
        mean_variance(x, np.zeros(7))
    with pytest.raises(ValueError, match="'t' and 'normal'"):
        mean_ci(x, method="bootstrap", groups=groups)
