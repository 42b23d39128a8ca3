"""The cfr2017 experiment: rows, units shared by rows and seeds, one row recomputed by hand, and
a second invocation that runs nothing. Uses the private MRLIB_DATA/MRLIB_RUNS of conftest.py."""
from __future__ import annotations

import numpy as np
import pytest

from mrlib import cfr2017
from mrlib import results as res
from mrlib.experiments import EXPERIMENTS, experiment_rows, run_experiment

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def test_registered_and_rows_checked():
    exp = EXPERIMENTS["cfr2017"]
    assert exp.metrics == ("CFR",) and exp.unit == "comparison"
    specs = experiment_rows("cfr2017", "synthetic", "quick")
    assert "Triplet MatchNet (by clip)" in specs and "Euclidean / HandCrafted (by comparison)" in specs
    # the data seed is a parameter of every row; the training seed is not
    assert {p["data_seed"] for p in specs.values()} == {0}
    assert all("seed" not in p for p in specs.values())
    with pytest.raises(ValueError, match="--seeds"):
        cfr2017.rows("synthetic", "quick", {"seed": 1})
    with pytest.raises(ValueError, match="unknown cfr2017 parameter"):
        cfr2017.rows("synthetic", "quick", {"epochz": 3})
    with pytest.raises(ValueError, match="profile must be one of"):
        cfr2017.rows("synthetic", "huge")
    # an override reaches the rows that use it, and only those
    more = cfr2017.rows("synthetic", "quick", {"epochs": 2})
    changed = {r for r in specs if res.parameters_key(specs[r]) != res.parameters_key(more[r])}
    assert changed == {r for r, p in specs.items() if p["features"] == "MatchNet"}


def test_units_and_fulfilled():
    folds = [(np.array([2, 3]), np.array([0, 1])), (np.array([0, 1]), np.array([3]))]
    units = cfr2017.test_units(folds)
    assert units.tolist() == [0, 1, 3]
    hit, per_fold = cfr2017.fulfilled([(np.array([1.0, 2.0]), np.array([2.0, 2.0])),
                                       (np.array([0.5]), np.array([1.0]))],
                                      np.zeros((4, 3), np.int64), folds, units)
    assert hit.tolist() == [1.0, 0.0, 1.0]            # the tie (2.0, 2.0) is not fulfilled
    assert per_fold.tolist() == [0.5, 1.0]
    with pytest.raises(ValueError, match="more than one fold"):
        cfr2017.test_units([(np.array([1]), np.array([0])), (np.array([1]), np.array([0]))])


def test_comparison_scores_average_each_comparisons_triplets():
    hit = np.array([1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0])
    comparison = np.array([5, 5, 2, 2, 9, 9, 4])          # comparison 4 kept one triplet
    np.testing.assert_array_equal(cfr2017.comparison_scores(hit, comparison), [0.5, 1.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="one length"):
        cfr2017.comparison_scores(hit, comparison[:-1])


def _triplet_store(hits_per_seed, unit="triplet", profile="quick"):
    store = res.new_store("cfr2017", "synthetic", profile, title="t", metrics=["CFR"], unit=unit,
                          notebook="08_triplet_matchnet.ipynb")
    for row in ("A", "B"):
        seeds = {str(s): {**res.seed_entry({"CFR": h if row == "A" else 1 - np.asarray(h)},
                                           extra={"units_sha": "x", "n_test": [len(h) - 2, 2]}),
                          "wall_s": 1.5}
                 for s, h in enumerate(hits_per_seed)}
        store["rows"][row] = {"parameters": {}, "key": row, "seeds": seeds}
    return res.summarise_store(store)


def test_per_comparison_store_converts_a_per_triplet_file_once(tmp_path):
    hits = [[1, 0, 1, 1, 0, 0, 1, 1], [0, 0, 1, 1, 1, 0, 1, 0]]
    path = res.write_store(_triplet_store(hits), tmp_path / "cfr2017_synthetic_quick.json")
    before = res.read_store(path)
    cfr2017.per_comparison_store(path)
    after = res.read_store(path)
    assert after["unit"] == "comparison"
    for row in ("A", "B"):
        for s, h in enumerate(hits):
            old, new = before["rows"][row]["seeds"][str(s)], after["rows"][row]["seeds"][str(s)]
            h = np.asarray(h if row == "A" else 1 - np.asarray(h), dtype=float)
            assert new["per_unit"]["CFR"] == h.reshape(-1, 2).mean(axis=1).tolist()
            assert new["n_units"] == 4 and new["wall_s"] == 1.5 and new["extra"] == old["extra"]
            assert new["metrics"]["CFR"]["mean"] == old["metrics"]["CFR"]["mean"]   # the CFR stays
            assert new["metrics"]["CFR"]["ci"] != old["metrics"]["CFR"]["ci"]
    assert after["comparisons"][0]["n_units"] == 4
    text = path.read_text()
    cfr2017.per_comparison_store(path)                    # a second call leaves it as it is
    assert path.read_text() == text
    odd = res.write_store(_triplet_store([[1, 0, 1]]), tmp_path / "odd.json")
    with pytest.raises(res.StoreError, match="3 units, not the 3 triplets its folds tested, two by two"):
        cfr2017.per_comparison_store(odd)
    short = _triplet_store(hits)
    short["rows"]["A"]["seeds"]["1"]["extra"]["n_test"] = [10]       # not the triplets it holds
    with pytest.raises(res.StoreError, match="8 units, not the 10 triplets"):
        cfr2017.per_comparison_store(res.write_store(short, tmp_path / "short.json"))
    keyless = _triplet_store(hits, unit="comparison")
    del keyless["unit"]                  # per triplet or per comparison: it cannot be told
    with pytest.raises(res.StoreError, match="its unit is None"):
        cfr2017.per_comparison_store(res.write_store(keyless, tmp_path / "keyless.json"))
    other = _triplet_store(hits)
    other["experiment"] = "table2"
    with pytest.raises(res.StoreError, match="not a 2017 experiment"):
        cfr2017.per_comparison_store(res.write_store(other, tmp_path / "t2.json"))


def test_a_per_triplet_file_is_neither_extended_nor_merged(tmp_path):
    from mrlib.experiments import merge_stores
    old = res.write_store(_triplet_store([[1, 0, 1, 1]], profile="smoke"), tmp_path / "old.json")
    with pytest.raises(ValueError, match="scores per triplet.*per_comparison_store"):
        run_experiment("cfr2017", profile="smoke", seeds=[0], store=old, workdir=tmp_path / "w",
                       progress=False)
    keyless = _triplet_store([[1, 0, 1, 1]], profile="smoke")
    del keyless["unit"]
    with pytest.raises(ValueError, match="scores per None, cfr2017 scores per comparison"):
        run_experiment("cfr2017", profile="smoke", seeds=[0], store=res.write_store(keyless, tmp_path / "k.json"),
                       workdir=tmp_path / "w", progress=False)
    new = res.write_store(_triplet_store([[1, 0, 1, 1]], unit="comparison", profile="smoke"),
                          tmp_path / "new.json")
    with pytest.raises(res.StoreError, match="unit 'triplet'"):
        merge_stores(new, [old])


def test_smoke_experiment(tmp_path):
    store_file = tmp_path / "results" / "cfr2017_synthetic_smoke.json"
    path = run_experiment("cfr2017", profile="smoke", seeds=[0, 1], store=store_file,
                          workdir=tmp_path / "work", progress=False)
    store = res.read_store(path)
    rows = store["rows"]
    assert all(e["status"] == "ok" for row in rows.values() for e in row["seeds"].values()), \
        {r: [e.get("error") for e in row["seeds"].values()] for r, row in rows.items()}

    # The same units for every row of a scheme and every seed (the data do not follow the seed).
    for scheme in cfr2017.SCHEMES:
        of_scheme = [row for row in rows.values() if row["parameters"]["scheme"] == scheme]
        shas = {e["extra"]["units_sha"] for row in of_scheme for e in row["seeds"].values()}
        sizes = {e["n_units"] for row in of_scheme for e in row["seeds"].values()}
        assert len(shas) == 1 and len(sizes) == 1, (scheme, shas, sizes)
    # Pairs are tested only within a scheme, and every such pair is.
    pairs = {(c["a"], c["b"]) for c in store["comparisons"]}
    scheme_of = {r: row["parameters"]["scheme"] for r, row in rows.items()}
    assert all(scheme_of[a] == scheme_of[b] for a, b in pairs)
    n_per_scheme = [sum(s == k for s in scheme_of.values()) for k in cfr2017.SCHEMES]
    assert len(pairs) == sum(n * (n - 1) // 2 for n in n_per_scheme)

    # One row recomputed with plain numpy: Euclidean on standardised handcrafted features,
    # standardisation fitted on each fold's training clips.
    name = "Euclidean / HandCrafted (by comparison)"
    params = rows[name]["parameters"]
    ctx = cfr2017.data_context(params)
    t, X = ctx["triplets"], ctx["X_hc"].astype(np.float64)
    folds = ctx["folds"]["by comparison"]
    expected = {}
    for tr, te in folds:
        clips = np.unique(t[tr])
        mu, sd = X[clips].mean(axis=0), X[clips].std(axis=0)
        Z = (X - mu) / np.where(sd > 1e-12, sd, 1.0)
        for i in te:
            a, p, n = t[i]
            expected[int(i)] = float(((Z[a] - Z[p]) ** 2).sum() < ((Z[a] - Z[n]) ** 2).sum())
    units = ctx["units"]["by comparison"]
    assert units.tolist() == list(range(len(t)))      # by comparison, every triplet once
    # ... and no test triplet's clip set (its twin's) is trained on in the same fold
    for tr, te in folds:
        assert not {frozenset(x) for x in t[tr].tolist()} & {frozenset(x) for x in t[te].tolist()}
    # the units are the comparisons: the share of each one's two constraints fulfilled, in the
    # order the comparisons first appear among the test triplets
    by_comparison: dict[int, list[float]] = {}
    for u in units:
        by_comparison.setdefault(int(ctx["comparison"][u]), []).append(expected[int(u)])
    assert {len(v) for v in by_comparison.values()} == {2}
    want = np.array([np.mean(v) for v in by_comparison.values()])
    for entry in rows[name]["seeds"].values():
        assert entry["n_units"] == len(units) // 2
        np.testing.assert_array_equal(np.asarray(entry["per_unit"]["CFR"]), want)
        fold_cfr = [np.mean([expected[int(i)] for i in te]) for _, te in folds]
        np.testing.assert_allclose(entry["extra"]["fold_cfr"], fold_cfr, atol=1e-4)
        assert entry["extra"]["fold_mean"] == pytest.approx(np.mean(fold_cfr), abs=1e-4)

    # MatchNet was trained once per scheme and seed: the rows on its features read it.
    for seed in ("0", "1"):
        trained = [r for r, row in rows.items() if row["parameters"]["features"] == "MatchNet"
                   and row["seeds"][seed]["extra"]["matchnet_s"] > 0]
        assert len(trained) == len(cfr2017.SCHEMES), trained

    # A second invocation finds everything stored and runs nothing.
    before = store_file.read_text()
    run_experiment("cfr2017", profile="smoke", seeds=[0, 1], store=store_file,
                   workdir=tmp_path / "work", progress=False)
    after = res.read_store(store_file)
    assert len(after["runs"]) == len(store["runs"])
    assert after["rows"] == store["rows"]
    assert store_file.read_text() == before


def test_curve_rows_and_nested_training_subsets():
    assert "cfr2017_curve" in EXPERIMENTS
    rows = experiment_rows("cfr2017_curve", "synthetic", "quick")
    table = experiment_rows("cfr2017", "synthetic", "quick")
    assert len(rows) == 4 * len(cfr2017.CURVE_SHARES)
    for name, p in rows.items():
        assert p["scheme"] == "by comparison" and p["features"] in ("HandCrafted", "MatchNet")
        # the same row of the 2017 table, with a share of the training triplets
        base = {k: v for k, v in p.items() if k != "train_share"}
        assert base in list(table.values()), name
    # nested subsets, the ones baselines.generalization_curve draws with the same seed
    folds = [(np.arange(0, 40), np.arange(40, 50)), (np.arange(10, 50), np.arange(0, 10))]
    assert cfr2017.share_folds(folds, 1.0, 3) == folds
    quarter, half = cfr2017.share_folds(folds, 0.25, 3), cfr2017.share_folds(folds, 0.5, 3)
    rng = np.random.default_rng(3)
    for (tr, te), (q, qte), (h, _) in zip(folds, quarter, half):
        order = rng.permutation(tr)
        assert len(q) == 10 and len(h) == 20 and set(q) <= set(h) <= set(tr)
        np.testing.assert_array_equal(q, order[:10])
        np.testing.assert_array_equal(qte, te)                 # test triplets are never cut
    with pytest.raises(ValueError, match="share"):
        cfr2017.share_folds(folds, 0.0, 0)


def test_run_names_a_bad_row_parameter():
    good = cfr2017.rows("synthetic", "smoke")["Euclidean / HandCrafted (by comparison)"]
    for k, bad in (("scheme", "by song"), ("method", "MLR"), ("features", None)):
        with pytest.raises(ValueError, match=f"{k} must be one of .*got {bad!r}"):
            cfr2017.run("r", {**good, k: bad}, seed=0)
    with pytest.raises(ValueError, match="scheme must be one of"):
        cfr2017.run("r", {k: v for k, v in good.items() if k != "scheme"}, seed=0)
    with pytest.raises(TypeError, match="seed must be an int"):
        cfr2017.run("r", good, seed="0")
