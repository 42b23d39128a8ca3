"""The committed results still come out of the current code: the cheapest stored rows × seeds,
recomputed the way the runner computes them (``mrlib.experiments._work``), equal the stored
per-unit scores, their metric blocks and their fold summaries, to the last stored digit.

The rows chosen need no network: the 2017 table's Euclidean and SVM rows on handcrafted features
(odd-one-out votes, triplets, folds, handcrafted features, CFR), on the synthetic catalog and on
the rendered music21 one, and Table 2's mean-CQT Euclidean row (test split, oracle, ranked lists,
retrieval metrics). Rows without a network came out identical on two machines (CONTRIBUTING,
"Experiments"); a trained row, or one that fits a model with BLAS (the AT sweep's logistic
tagger), moves with the CPU's vector kernels and is not checked here.

The rows are scored on built catalogs under ``<repo>/data``: running a row once with the runner
builds its catalog and features (the skip message gives the command). A test is skipped, saying
which, only when its catalog or its feature cache is absent there: the tests do not build a
2,000-track catalog.

Notebook: 07_evaluation.ipynb
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from mrlib import experiments as ex
from mrlib import results as res
from mrlib.paths import repo_root

STORED = repo_root() / "data" / "results"

# the runner's worker sets torch's threads; the fixture restores them for the tests after these
pytestmark = pytest.mark.usefixtures("torch_one_thread")

# (store file, row, seed, catalog folder under data/, feature caches it must already hold)
CASES = [
    ("cfr2017_synthetic_quick.json", "Euclidean / HandCrafted (by comparison)", 0,
     "synthetic_n200_s0", ("features/cqt22050h512b96-446c2e56b4", "features/handcrafted")),
    ("cfr2017_synthetic_quick.json", "SVM (Schultz & Joachims) / HandCrafted (by comparison)", 0,
     "synthetic_n200_s0", ("features/cqt22050h512b96-446c2e56b4", "features/handcrafted")),
    ("cfr2017_music21_quick.json", "Euclidean / HandCrafted (by comparison)", 0,
     "music21_n200_s0", ("features/cqt22050h512b96-446c2e56b4", "features/handcrafted")),
    ("table2_synthetic_quick.json", "Euclidean (mean CQT)", 0,
     "synthetic_n2000_s0_d15", ("features/cqt22050h512b96-446c2e56b4",)),
]


def _catalog_missing(folder: Path, caches) -> str | None:
    """Why the catalog cannot be used as built, or None when it can."""
    info = folder / "catalog.json"
    if not info.is_file():
        return f"catalog {folder} is not built (no catalog.json)"
    if not json.loads(info.read_text(encoding="utf-8")).get("complete"):
        return f"catalog {folder} is incomplete"
    absent = [c for c in caches if not (folder / c).is_dir()]
    if absent:
        return f"catalog {folder} lacks its feature cache(s) {absent}"
    return None


@pytest.mark.parametrize("store_file, row, seed, catalog, caches", CASES,
                         ids=[f"{c[0].removesuffix('.json')}:{c[1]}:s{c[2]}" for c in CASES])
def test_stored_row_reproduces(store_file, row, seed, catalog, caches, tmp_path, monkeypatch):
    data = repo_root() / "data"
    store = res.read_store(STORED / store_file)
    why = _catalog_missing(data / catalog, caches)
    if why:
        pytest.skip(f"{why}: running the row once builds it and its features, "
                    f"`python -m mrlib.experiments run {store['experiment']} --catalog {store['catalog']} "
                    f"--profile {store['profile']} --rows '{row}' --seeds {seed} --store /tmp/scratch.json`")
    monkeypatch.setenv("MRLIB_DATA", str(data))       # the built catalogs, not the test's empty root
    stored_row = store["rows"][row]
    stored = stored_row["seeds"][str(seed)]
    assert stored["status"] == "ok"

    # the row as currently defined is the row that was stored (else it is stale by definition)
    current = ex.experiment_rows(store["experiment"], store["catalog"], store["profile"])[row]
    assert current == stored_row["parameters"]
    assert res.parameters_key(current) == stored_row["key"]

    exp = ex.EXPERIMENTS[store["experiment"]]
    if exp.prepare is not None:
        exp.prepare(stored_row["parameters"])
    entry = ex._work(store["experiment"], row, stored_row["parameters"], seed, "cpu", str(tmp_path), 1)
    assert entry["status"] == "ok", entry.get("error")

    assert entry["n_units"] == stored["n_units"]
    for metric in store["metrics"]:
        new, old = entry["per_unit"][metric], stored["per_unit"][metric]
        differ = [i for i, (a, b) in enumerate(zip(new, old)) if a != b]
        assert not differ, (f"{row} seed {seed}, {metric}: {len(differ)} of {len(old)} units differ "
                            f"from the store (first: unit {differ[0]}, stored {old[differ[0]]}, "
                            f"now {new[differ[0]]})")
        assert entry["metrics"][metric] == stored["metrics"][metric], metric
    assert entry["extra"] == stored["extra"]
