"""The 2017 CFR table (Lu et al., ICASSP 2017) as a stored experiment: ``cfr2017``.

``python -m mrlib.experiments run cfr2017 --catalog synthetic --profile quick --seeds 0 1 2``
simulates odd-one-out votes on a catalog, turns them into triplet constraints (a, p, n), splits
them into 10 folds twice — by comparison (the two constraints a comparison gives, and any other
constraint on the same three clips, share a fold), and clip-disjoint — and scores every method on
every test triplet: Euclidean, an SVM on triplet difference vectors (Schultz & Joachims) and a Mahalanobis
metric (LSML, the stand-in for MLR/RMLR/RITML) on handcrafted features and on their PCA, Triplet
MatchNet, and the same baselines on MatchNet's learned song features (the slides' "Proposed"
column).

What is fixed and what varies. The *data* — catalog, votes, triplets, folds — is fixed by a data
seed (``data_seed``, 0, part of every row's parameters); the *training seed* of the experiment
varies only what is trained (MatchNet's weights and patches, the SVM and LSML seeds). Every row
is therefore scored on the same test triplets for every seed, and two rows of one scheme are
compared pairwise over comparisons and seeds (:func:`mrlib.results.compare_rows`).

Units. A triplet is fulfilled when d(a, p) < d(a, n) (ties are not). The unit is the
*comparison*, not the triplet: the two constraints one odd-one-out comparison gives share their
three clips and their votes, so they are not two independent draws, and a test that counted
them as two would be about twice as sure as the data allow. Each row's per-unit score is
therefore the share of a test comparison's constraints it fulfils (0, ½ or 1), in the order of
:func:`test_units`; their mean is the CFR over triplets. By comparison, every constraint is
tested exactly once over the 10 folds; clip-disjoint folds test only the comparisons whose
three clips fall in one clip set, a smaller set of units. Clips recur across comparisons, which
the units do not count. A row is therefore one method × features × **scheme** (``"… (by
comparison)"``, ``"… (by clip)"``), with one metric, ``"CFR"``; rows of the same scheme share
their units and are compared, rows of different schemes are not (their units differ). Each
seed's ``extra`` holds the slides' form: the CFR of each fold, and their mean ± std.

Cost. Per worker process the data are built once (:data:`_CONTEXTS`); MatchNet is trained once
per scheme × training seed (10 folds), kept in memory and in the run folder, and read by the
MatchNet row and by the rows on its learned features.

Notebook: 08_triplet_matchnet.ipynb
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import time
import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
import torch

from mrlib import catalog as mcat
from mrlib import results as res
from mrlib.baselines import (Euclidean, Mahalanobis, TripletSVM, _fold_fits, catalog_features,
                             nested_subsets)
from mrlib.checks import check_choice, check_int
from mrlib.odd_one_out import comparisons_to_triplets, simulate_votes, triplet_folds
from mrlib.paths import atomic_path
from mrlib.devices import pick_device, torch_threads
from mrlib.features import coarsen_features, extract
from mrlib.matchnet_cv import MatchNetConfig, cross_validate_matchnet
from mrlib.similarity import oracle

__all__ = ["PROFILES", "SCHEMES", "METHODS", "FEATURES", "CURVE_SHARES", "rows", "curve_rows",
           "run", "data_context", "test_units", "fulfilled", "comparison_scores", "share_folds",
           "make_method", "slides_table", "per_comparison_store"]

#: The two cross-validation schemes (:func:`mrlib.odd_one_out.triplet_folds` ``by=``). Folds
#: over single triplets are not one of them: a comparison's two constraints (a, p, n) and
#: (p, a, n) both say that d(a, p) is small, so with one in training a learned metric has
#: half-seen the other (notebook 08 counts how often that happens).
SCHEMES: dict[str, str] = {"by comparison": "comparison", "by clip": "clip"}

#: Baseline methods by table name.
METHODS = ("Euclidean", "SVM (Schultz & Joachims)", "Mahalanobis (LSML, stand-in)")

#: Feature columns: handcrafted statistics, their PCA, and MatchNet's learned song features.
FEATURES = ("HandCrafted", "PCA", "MatchNet")

#: Data, MatchNet and baseline settings per profile.
#:
#: * ``smoke`` — seconds: 24 clips of 4 s, 3 folds, one MatchNet epoch (for tests).
#: * ``quick`` — the stored CPU experiment: notebook 08's data (200 clips, 300 games of 10
#:   simulated players → about 580 triplets), 10 folds, the lesson's small MatchNet on a
#:   coarse CQT grid (4 epochs). Sized for about 3 minutes of 2 idle cores per training seed
#:   for all rows, most of it MatchNet's 2 × 10 fold trainings and LSML's fits.
#: * ``paper`` — the slides' scale as far as they state it: 430 games → about 860 triplets over
#:   about 950 of 2000 clips of 30 s, 10 folds, a full-width MatchNet on the full CQT grid
#:   (3-s patches). The slides do not give MatchNet's patch length, epochs or learning rate;
#:   those are our choices. A GPU setting.
#:
#: The other two profiles are written as changes to ``quick``.
_QUICK: dict[str, dict[str, Any]] = {
    "data": {"n_tracks": 200, "catalog_kwargs": {}, "n_comparisons": 300, "n_players": 10,
             "noise": 0.05, "n_folds": 10, "freq_pool": 4, "time_pool": 8},
    "matchnet": {"patch_len": 16, "patches_per_song": 4, "test_patches": 8, "width": 0.0625,
                 "embedding_dim": 32, "metric_hidden": 512, "epochs": 4, "batch_size": 32,
                 "lr": 3e-3},
    "baselines": {"pca_dims": 16, "svm_C": 0.1, "lsml_max_iter": 200},
}


def _quick_but(**changes) -> dict[str, dict[str, Any]]:
    """The quick profile with some fields changed (each field keeps its place)."""
    return {part: {k: changes.get(k, v) for k, v in fields.items()}
            for part, fields in _QUICK.items()}


PROFILES: dict[str, dict[str, Any]] = {
    "smoke": _quick_but(n_tracks=24, catalog_kwargs={"duration_s": 4.0}, n_comparisons=48,
                        n_folds=3, patch_len=8, patches_per_song=2, test_patches=4,
                        embedding_dim=16, metric_hidden=256, epochs=1, batch_size=16, pca_dims=8,
                        lsml_max_iter=5),
    "quick": _QUICK,
    "paper": _quick_but(n_tracks=2000, n_comparisons=430, freq_pool=1, time_pool=1, patch_len=128,
                        width=1.0, embedding_dim=128, epochs=40, batch_size=16, lr=3e-4,
                        lsml_max_iter=1000),
}

# Fields of a row that fix the data (catalog, votes, triplets, folds, features): one context each.
_DATA_FIELDS = ("catalog", "n_tracks", "catalog_kwargs", "data_seed", "n_comparisons", "n_players",
                "noise", "n_folds", "freq_pool", "time_pool")

# Per worker process: the data of a row (by its data fields) and MatchNet's folds (by their key).
_CONTEXTS: dict[str, dict] = {}
_MATCHNET: dict[str, dict] = {}


def _row_name(method: str, features: str, scheme: str) -> str:
    return f"{method} / {features} ({scheme})"


def rows(catalog: str = "synthetic", profile: str = "quick",
         overrides: Mapping[str, Any] | None = None) -> dict[str, dict]:
    """The rows of the 2017 table at a profile, with every parameter that shapes their result.

    Per scheme (by comparison, by clip): Euclidean, SVM and LSML on HandCrafted and on PCA;
    Triplet MatchNet; Euclidean and LSML on MatchNet's learned features.

    Parameters
    ----------
    catalog : str, default "synthetic"
        A catalog name for :func:`mrlib.catalog.load` (``"synthetic"``, ``"music21"``, a folder).
    profile : {"smoke", "quick", "paper"}, default "quick"
    overrides : mapping, optional
        Any field of the profile's ``data``, ``matchnet`` or ``baselines`` settings, plus
        ``data_seed`` (``-p epochs=10``); ``seed`` is refused (the training seeds are
        ``--seeds``).

    Returns
    -------
    dict row name -> JSON parameters
        ``scheme``, ``method``, ``features`` and the data, MatchNet (where used) and baseline
        fields.

    Notebook: 08_triplet_matchnet.ipynb
    """
    overrides = dict(overrides or {})
    if "seed" in overrides:
        raise ValueError("the seed of an experiment is --seeds, not -p seed=...; the data seed is "
                         "-p data_seed=...")
    check_choice("profile", profile, PROFILES)
    if not isinstance(catalog, str) or not catalog:
        raise TypeError(f"catalog must be a catalog name or folder (str), got {catalog!r}")
    prof = PROFILES[profile]
    data = {"catalog": catalog, "data_seed": 0, **prof["data"]}
    mn, base = dict(prof["matchnet"]), dict(prof["baselines"])
    known = sorted([*data, *mn, *base])
    if set(overrides) - set(known):
        raise ValueError(f"unknown cfr2017 parameter(s) {sorted(set(overrides) - set(known))}; "
                         f"known: {known}")
    for part in (data, mn, base):
        part.update((k, v) for k, v in overrides.items() if k in part)
    MatchNetConfig(**mn)                          # checked at the door, before anything runs
    out = {}
    for scheme in SCHEMES:
        for features in ("HandCrafted", "PCA"):
            for method in METHODS:
                extra = {"pca_dims": base["pca_dims"]} if features == "PCA" else {}
                out[_row_name(method, features, scheme)] = {
                    "scheme": scheme, "method": method, "features": features, **data,
                    **_method_fields(method, base), **extra}
        out[f"Triplet MatchNet ({scheme})"] = {"scheme": scheme, "method": "Triplet MatchNet",
                                               "features": "MatchNet", **data, "matchnet": mn}
        for method in (METHODS[0], METHODS[2]):
            out[_row_name(method, "MatchNet", scheme)] = {
                "scheme": scheme, "method": method, "features": "MatchNet", **data,
                "matchnet": mn, **_method_fields(method, base)}
    return out


#: Shares of each fold's training triplets on the generalisation curve (the slides' second
#: figure): every method of the by-comparison split at each share, on the same folds and units.
CURVE_SHARES = (0.25, 0.5, 1.0)


def curve_rows(catalog: str = "synthetic", profile: str = "quick",
               overrides: Mapping[str, Any] | None = None) -> dict[str, dict]:
    """The generalisation curve as rows: the by-comparison HandCrafted baselines and Triplet
    MatchNet of :func:`rows`, each trained on :data:`CURVE_SHARES` of every fold's training
    triplets (``train_share``; the subsets are :func:`share_folds`', nested) and tested on the
    fold's whole test set.

    Notebook: 08_triplet_matchnet.ipynb
    """
    table = rows(catalog, profile, overrides)
    chosen = [_row_name(m, "HandCrafted", "by comparison") for m in METHODS]
    chosen.append("Triplet MatchNet (by comparison)")
    return {f"{name.replace(' (by comparison)', '')} @ {share:.0%}": {**table[name], "train_share": share}
            for name in chosen for share in CURVE_SHARES}


def share_folds(folds, share: float, seed: int) -> list:
    """Each fold with only the first ``ceil(share · n_train)`` of its training triplets.

    The training triplets of each fold are permuted once by ``numpy.random.default_rng(seed)``,
    fold after fold, so the subsets are nested as the share grows and are the ones
    :func:`mrlib.baselines.generalization_curve` uses with the same seed
    (:func:`mrlib.baselines.nested_subsets`). ``share = 1`` returns
    the folds unchanged. Test triplets are never subsampled.

    Notebook: 08_triplet_matchnet.ipynb
    """
    if not 0 < share <= 1:
        raise ValueError(f"share must be in (0, 1], got {share!r}")
    if share == 1:
        return list(folds)
    return [(train, te) for _, _, train, te in nested_subsets(folds, [share], seed)]


# The baseline settings each method reads (its row records them).
_METHOD_FIELDS = {METHODS[0]: (), METHODS[1]: ("svm_C",), METHODS[2]: ("lsml_max_iter",)}


def _method_fields(method: str, base: Mapping[str, Any]) -> dict:
    return {k: base[k] for k in _METHOD_FIELDS[method]}


def make_method(method: str, *, pca: int | None = None, seed: int = 0, svm_C: float = 0.1,
                lsml_max_iter: int = 200):
    """A fresh, unfitted baseline of :data:`METHODS` (:mod:`mrlib.baselines`).

    Parameters
    ----------
    method : str
        One of :data:`METHODS`.
    pca : int, optional
        PCA components (fitted on each fold's training clips); None keeps every feature.
    seed : int, default 0
        The training seed (SVM, LSML, PCA).
    svm_C, lsml_max_iter
        The SVM's slack penalty, LSML's iterations.

    Returns
    -------
    mrlib.baselines.MetricBaseline

    Notebook: 08_triplet_matchnet.ipynb
    """
    make = {METHODS[0]: lambda: Euclidean(pca=pca, seed=seed),
            METHODS[1]: lambda: TripletSVM(C=svm_C, pca=pca, seed=seed),
            METHODS[2]: lambda: Mahalanobis(pca=pca, max_iter=lsml_max_iter, seed=seed)}
    return make[check_choice("method", method, METHODS)]()


def data_context(parameters: Mapping[str, Any], *, progress: bool = False) -> dict:
    """The data a cfr2017 row is scored on, built once per process and data fields.

    Parameters
    ----------
    parameters : mapping
        A row's parameters (:func:`rows`) — only the data fields are read: ``catalog``,
        ``n_tracks``, ``catalog_kwargs``, ``data_seed``, ``n_comparisons``, ``n_players``,
        ``noise``, ``n_folds``, ``freq_pool``, ``time_pool``.
    progress : bool, default False
        Progress bars of the features (computed on all the machine's cores).

    Returns
    -------
    dict
        ``catalog`` (:class:`mrlib.catalog.Catalog`), ``S`` (oracle, (N, N)), ``votes``
        (comparisons table), ``report``, ``triplets`` (int64 (M, 3), the constraints whose
        clips all have features), ``comparison`` (int64 (M,), the comparison each came from),
        ``X_hc`` (float32 (N, D) handcrafted, NaN rows if skipped),
        ``coarse`` (:class:`mrlib.features.CoarseFeatures`), ``folds`` (scheme -> list of
        :class:`mrlib.odd_one_out.Fold`) and ``units`` (scheme -> :func:`test_units`).

    Notebook: 08_triplet_matchnet.ipynb
    """
    missing = [k for k in _DATA_FIELDS if k not in parameters]
    if missing:
        raise ValueError(f"cfr2017 parameters lack the data fields {missing}")
    fields = {k: parameters[k] for k in _DATA_FIELDS}
    key = json.dumps(fields, sort_keys=True)
    if key in _CONTEXTS:
        return _CONTEXTS[key]
    n_jobs = os.cpu_count() or 1
    seed = int(fields["data_seed"])
    cat = mcat.load(fields["catalog"], n_tracks=fields["n_tracks"], seed=seed,
                    **dict(fields["catalog_kwargs"] or {}))
    S = oracle(cat.tags, cat.tags)
    votes = simulate_votes(S, fields["n_comparisons"], n_players=fields["n_players"],
                           noise=fields["noise"], seed=seed)
    triplets_all, report = comparisons_to_triplets(votes)
    hc = catalog_features(cat, n_jobs=n_jobs, progress=progress)
    cqt = extract(cat, n_jobs=n_jobs, progress=progress, verbose=False)
    coarse = coarsen_features(cqt, fields["freq_pool"], fields["time_pool"])
    keep = hc.triplet_mask(triplets_all) & coarse.available[triplets_all].all(axis=1)
    triplets = np.ascontiguousarray(triplets_all[keep], dtype=np.int64)
    folds = {s: triplet_folds(triplets, fields["n_folds"], by=by, seed=seed) for s, by in SCHEMES.items()}
    _CONTEXTS[key] = {"fields": fields, "catalog": cat, "S": S, "votes": votes, "report": report,
                      "triplets": triplets, "comparison": report.rows[keep], "X_hc": hc.full(),
                      "coarse": coarse, "folds": folds, "units": {s: test_units(f) for s, f in folds.items()}}
    return _CONTEXTS[key]


def test_units(folds) -> np.ndarray:
    """The test triplets of a cross-validation, each once, sorted (:func:`comparison_scores`
    makes the experiment's units of them).

    Parameters
    ----------
    folds : sequence of (train, test)
        Indices into the triplet array (:func:`mrlib.odd_one_out.triplet_folds`).

    Returns
    -------
    numpy.ndarray of int64, shape (n_units,)
        Triplet indices; by comparison all of 0 … M-1, clip-disjoint those whose three clips share
        a clip set.

    Raises
    ------
    ValueError
        A triplet tested in two folds.

    Notebook: 08_triplet_matchnet.ipynb
    """
    units = np.concatenate([np.zeros(0, np.int64)] + [np.asarray(te, np.int64) for _, te in folds])
    if np.unique(units).size != units.size:
        raise ValueError("a triplet is tested in more than one fold")
    return np.sort(units)


def fulfilled(distance_per_fold, triplets: np.ndarray, folds, units: np.ndarray):
    """Per-unit 0/1 "fulfilled" and per-fold CFR from each fold's test dissimilarities.

    Parameters
    ----------
    distance_per_fold : sequence of (d_ap, d_an)
        Float arrays over each fold's test triplets (in the fold's test order).
    triplets : numpy.ndarray, shape (M, 3)
    folds : sequence of (train, test)
    units : numpy.ndarray of int64, shape (n_units,)
        :func:`test_units` of ``folds``.

    Returns
    -------
    hit : numpy.ndarray of float64, shape (n_units,)
        1.0 where d(a, p) < d(a, n) (ties are 0), in the order of ``units``.
    per_fold : numpy.ndarray of float64, shape (n_folds,)
        Each fold's CFR (NaN for a fold without test triplets).

    Notebook: 08_triplet_matchnet.ipynb
    """
    hit = np.full(len(units), np.nan)
    per_fold = []
    for (_, te), (d_ap, d_an) in zip(folds, distance_per_fold):
        te = np.asarray(te, dtype=np.int64)
        d_ap, d_an = np.asarray(d_ap, dtype=np.float64), np.asarray(d_an, dtype=np.float64)
        if d_ap.shape != (len(te),) or d_an.shape != (len(te),):
            raise ValueError(f"a fold has {len(te)} test triplets but {d_ap.shape} / {d_an.shape} "
                             "dissimilarities")
        h = (d_ap < d_an).astype(np.float64)
        hit[np.searchsorted(units, te)] = h
        per_fold.append(h.mean() if len(te) else np.nan)
    if np.isnan(hit).any():
        raise ValueError("some units were not tested by any fold")
    return hit, np.asarray(per_fold, dtype=np.float64)


def comparison_scores(hit: np.ndarray, comparison: np.ndarray) -> np.ndarray:
    """Per-triplet 0/1 scores averaged over the triplets of each comparison: the units.

    Parameters
    ----------
    hit : numpy.ndarray of float, shape (n_triplets,)
        :func:`fulfilled`'s per-triplet scores.
    comparison : numpy.ndarray of int, shape (n_triplets,)
        The comparison each of those triplets came from (``data_context(...)["comparison"]``
        indexed by :func:`test_units`).

    Returns
    -------
    numpy.ndarray of float64, shape (n_comparisons,)
        The share of each comparison's constraints that is fulfilled, in the order in which
        the comparisons first appear; its mean over comparisons of equal size is the CFR.

    Notebook: 08_triplet_matchnet.ipynb
    """
    hit, comparison = np.asarray(hit, dtype=np.float64), np.asarray(comparison)
    if hit.shape != comparison.shape or hit.ndim != 1:
        raise ValueError(f"hit and comparison must be 1-d of one length, got {hit.shape} and "
                         f"{comparison.shape}")
    unit = pd.factorize(comparison)[0]                        # numbered as they first appear
    return np.bincount(unit, weights=hit) / np.bincount(unit)


def per_comparison_store(path: str | os.PathLike) -> Path:
    """Convert a results file of the 2017 experiments from per-triplet to per-comparison units.

    Files written before the unit was the comparison hold a 0/1 score per test triplet, in
    :func:`test_units` order, where the two triplets of a comparison are always next to each
    other (:func:`mrlib.odd_one_out.comparisons_to_triplets` emits them so, and the folds keep
    them together); each pair becomes its mean (:func:`comparison_scores`), the summaries and
    comparisons are recomputed, and the file is rewritten in place. A file already per
    comparison is left as it is; one that names no unit is refused (it cannot be told apart).

    Parameters
    ----------
    path : str or path-like
        A ``cfr2017`` or ``cfr2017_curve`` results file.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    mrlib.results.StoreError
        Not a results file of these experiments, one of another or no unit, or a seed whose
        units are not the triplets its folds tested, two by two.

    Notebook: 08_triplet_matchnet.ipynb
    """
    path = Path(path)
    store = res.read_store(path)
    if store["experiment"] not in ("cfr2017", "cfr2017_curve"):
        raise res.StoreError(f"{path} holds {store['experiment']!r}, not a 2017 experiment")
    if store.get("unit") == "comparison":
        return path
    if store.get("unit") != "triplet":
        raise res.StoreError(f"{path}: its unit is {store.get('unit')!r}, not 'triplet' or 'comparison'")
    for name, row in store["rows"].items():
        for s, entry in row.get("seeds", {}).items():
            if entry.get("status") != "ok":
                continue
            hit = np.asarray(entry["per_unit"]["CFR"], dtype=np.float64)
            tested = sum(entry.get("extra", {}).get("n_test", []))     # triplets per fold
            if hit.size % 2 or hit.size != tested:
                raise res.StoreError(f"{path}: {name}, seed {s} has {hit.size} units, not the "
                                     f"{tested} triplets its folds tested, two by two")
            kept = {k: v for k, v in entry.items() if k not in ("metrics", "n_units", "per_unit")}
            pairs = comparison_scores(hit, np.arange(hit.size) // 2)
            entry.clear()
            entry.update({**kept, **res.seed_entry({"CFR": pairs}, extra=kept.get("extra"))})
    store["unit"] = "comparison"
    return res.write_store(res.summarise_store(store), path)


# :func:`_matchnet_folds`' arrays besides ``d_test``, stored as they are.
_FOLD_ARRAYS = ("songs", "train_cfr", "final_loss", "final_active")


def _matchnet_folds(ctx: Mapping[str, Any], scheme: str, matchnet: Mapping[str, Any], seed: int, *,
                    train_share: float = 1.0, device: str = "cpu",
                    workdir: Path | None = None) -> dict:
    """Triplet MatchNet trained on each fold of a scheme with one training seed (cached).

    The result is kept in memory for the process and, with ``workdir``, as a small ``.npz``
    there, so that every row reading it — MatchNet's own, the baselines on its learned features
    — trains it once, and an interrupted experiment does not train it again.

    Parameters
    ----------
    ctx : dict
        :func:`data_context`.
    scheme : {"by comparison", "by clip"}
    matchnet : mapping
        :class:`mrlib.matchnet_cv.MatchNetConfig` fields but ``seed`` and ``device``.
    seed : int
        Training seed (weights, triplet order, patches).
    train_share : float in (0, 1], default 1.0
        Share of each fold's training triplets (:func:`share_folds` with the data seed).
    device : str, default "cpu"
    workdir : Path, optional

    Returns
    -------
    dict
        ``d_test`` (per fold (d_ap, d_an)), ``songs`` (float32 (n_folds, N, e): each fold's
        mean tower embedding per song, NaN rows for songs without features), ``train_cfr``
        (per fold), ``final_loss``, ``final_active`` (per fold) and ``seconds`` (training
        wall time; 0 when read from the cache).

    The scheme is checked by :func:`run`, the only caller.
    """
    # the cache key: everything that shapes the trained folds
    spec = {"data": dict(ctx["fields"]), "scheme": scheme, "matchnet": dict(matchnet), "seed": seed}
    if train_share != 1:
        spec["train_share"] = train_share
    key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
    path = Path(workdir) / f"matchnet_{key}.npz" if workdir is not None else None
    folds = share_folds(ctx["folds"][scheme], train_share, ctx["fields"]["data_seed"])
    if key not in _MATCHNET and path is not None and path.exists():
        z = np.load(path)
        _MATCHNET[key] = {"d_test": [(z[f"ap{f}"], z[f"an{f}"]) for f in range(len(folds))],
                          **{k: z[k] for k in _FOLD_ARRAYS}}
    if key in _MATCHNET:                      # trained before: in this process or on disk
        return {**_MATCHNET[key], "seconds": 0.0}
    t0 = time.perf_counter()
    config = MatchNetConfig(**matchnet, seed=int(seed), device=device)
    # On the CPU the folds train side by side, one torch thread each, in as many processes as
    # the process has torch threads; on a GPU one at a time. The result is the same either way.
    on_cpu = pick_device(config.device).type == "cpu"
    # Worker processes pay off only when a fold trains for more than their start-up time.
    n_jobs = max(1, torch.get_num_threads()) if on_cpu and len(ctx["triplets"]) >= 200 else 1
    # one thread when serial on the CPU: the same bits as n_jobs > 1
    with torch_threads(1 if n_jobs == 1 and on_cpu else None), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)        # folds without test triplets
        cv = cross_validate_matchnet(ctx["coarse"], ctx["triplets"], folds, config,
                                     n_jobs=n_jobs, progress=False)
    out = {"d_test": [(np.asarray(a, np.float64), np.asarray(b, np.float64)) for a, b in cv.d_test],
           "songs": np.stack([cv.mean_embeddings(f) for f in range(len(folds))]).astype(np.float32),
           "train_cfr": np.asarray(cv.train, np.float64),
           **{f"final_{k}": np.array([h[k].iloc[-1] if len(h) else np.nan for h in cv.histories])
              for k in ("loss", "active")}}
    seconds = time.perf_counter() - t0
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        d_test = {f"{k}{f}": d for f, pair in enumerate(out["d_test"])
                  for k, d in zip(("ap", "an"), pair)}
        # a file object: np.savez would add ".npz" to the temporary's name
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **{k: out[k] for k in _FOLD_ARRAYS}, **d_test)
    _MATCHNET[key] = out
    return {**out, "seconds": seconds}


def run(row: str, parameters: Mapping[str, Any], seed: int, device: str = "cpu",
        workdir: Path | None = None) -> tuple[dict, dict]:
    """Score one row of the 2017 table with one training seed.

    Parameters
    ----------
    row : str
        The row's name (for messages).
    parameters : mapping
        The row's parameters (:func:`rows`).
    seed : int
        Training seed: MatchNet's weights and patches, the SVM's and LSML's seeds. The data
        (votes, triplets, folds) do not depend on it.
    device : str, default "cpu"
        MatchNet's device (``"auto"``, ``"cpu"``, ``"cuda"``…); the baselines run on the CPU.
    workdir : Path, optional
        Where MatchNet's fold results are cached (:func:`_matchnet_folds`).

    Returns
    -------
    per_unit : dict
        ``{"CFR": float (n_units,)}``: for each test comparison of the row's scheme, the share
        of its triplets fulfilled (:func:`comparison_scores`, in :func:`test_units` order).
    extra : dict
        The slides' form — ``fold_cfr`` (each fold's CFR), ``fold_mean``, ``fold_std`` (ddof 1),
        ``n_test`` per fold — plus ``train_cfr`` (mean over folds of the CFR on the fold's own
        training triplets, for the Triplet MatchNet row), ``units_sha`` (identity of the test
        triplets) and, for MatchNet rows, ``matchnet_s`` (training seconds spent in this call),
        the final loss and share of active pairs.

    Notebook: 08_triplet_matchnet.ipynb
    """
    seed = check_int("seed", seed, 0)
    methods = (*METHODS, "Triplet MatchNet")
    for k, known in (("scheme", SCHEMES), ("method", methods), ("features", FEATURES)):
        check_choice(f"row {row!r}: {k}", parameters.get(k), known)
    scheme, method, feats = parameters["scheme"], parameters["method"], parameters["features"]
    ctx = data_context(parameters)
    t, folds, units = ctx["triplets"], ctx["folds"][scheme], ctx["units"][scheme]
    share = parameters.get("train_share", 1.0)
    fit_folds = share_folds(folds, share, ctx["fields"]["data_seed"])
    extra: dict[str, Any] = {}
    if feats == "MatchNet":
        mn = _matchnet_folds(ctx, scheme, parameters["matchnet"], seed, train_share=share,
                             device=device, workdir=workdir)
        extra.update({"matchnet_s": round(float(mn["seconds"]), 1),
                      "matchnet_final_loss": round(float(np.nanmean(mn["final_loss"])), 4),
                      "matchnet_final_active": round(float(np.nanmean(mn["final_active"])), 4)})
    if method == "Triplet MatchNet":
        d = mn["d_test"]
        extra["train_cfr"] = round(float(np.nanmean(mn["train_cfr"])), 4)
    else:
        factory = functools.partial(make_method, method, seed=seed,
                                    pca=parameters.get("pca_dims") if feats == "PCA" else None,
                                    **_method_fields(method, parameters))
        X_per_fold = list(mn["songs"]) if feats == "MatchNet" else [ctx["X_hc"]] * len(folds)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")          # solvers' convergence notes on small folds
            d = [dist for _, _, dist in _fold_fits(factory, X_per_fold, t, fit_folds)]
    hit, per_fold = fulfilled(d, t, folds, units)
    valid = per_fold[np.isfinite(per_fold)]
    extra.update({"fold_cfr": [round(float(v), 4) if np.isfinite(v) else None for v in per_fold],
                  "fold_mean": round(float(valid.mean()), 4),
                  "fold_std": round(float(valid.std(ddof=1)), 4) if valid.size > 1 else None,
                  "n_test": [len(te) for _, te in folds],       # and the test triplets' identity
                  "units_sha": hashlib.sha256(t[units].tobytes()).hexdigest()[:12]})
    if share != 1:
        extra["n_train"] = [len(tr) for tr, _ in fit_folds]
    return {"CFR": comparison_scores(hit, ctx["comparison"][units])}, extra


def slides_table(store: Mapping[str, Any], decimals: int = 1):
    """A stored cfr2017 experiment in the slides' layout: (scheme, method) × features.

    The cells are :func:`mrlib.results.results_frame`'s — mean over training seeds ± one seed's
    95 % interval over test comparisons (its half-width averaged over seeds) (standard deviation
    over seeds), percent — rearranged.

    Parameters
    ----------
    store : dict
        A cfr2017 results store (:func:`mrlib.results.read_store`).
    decimals : int, default 1

    Returns
    -------
    pandas.DataFrame
        Index (scheme, method); columns HandCrafted, PCA, MatchNet; "–" where no row exists.

    Notebook: 08_triplet_matchnet.ipynb
    """

    if store.get("experiment") != "cfr2017":
        raise ValueError(f"not a cfr2017 store: experiment {store.get('experiment')!r}")
    frame = res.results_frame(store, decimals=decimals)
    df = pd.DataFrame([{**{k: row["parameters"][k] for k in ("scheme", "method", "features")},
                        "cell": frame.loc[r, "CFR"] if r in frame.index else ""}
                       for r, row in store["rows"].items()])
    order = {m: i for i, m in enumerate((*METHODS, "Triplet MatchNet"))}
    table = (df.pivot_table(index=["scheme", "method"], columns="features", values="cell",
                            aggfunc="first")
               .reindex(columns=[f for f in FEATURES if f in set(df["features"])]))
    table = table.reindex(sorted(table.index, key=lambda k: (list(SCHEMES).index(k[0]), order.get(k[1], 99))))
    return table.fillna("–").replace("", "–")
