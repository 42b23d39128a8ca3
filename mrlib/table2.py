"""Table 2 of Prétet et al. (2020) and the experiments built on its rows.

What each row trains (system, mining, run folder, the fields every row shares, each profile's
budget), the data a row is scored on (the test queries and the oracle's top 5 among them), how a
row is scored (:mod:`mrlib.evaluate`'s retrieval metrics) and the rows of the ablations that reuse
them: the AT sweep, the AutoPool ablation and the paper's batch and rate. It sits above training
and below :mod:`mrlib.experiments`, which registers these rows and runs them.

Notebook: 07_evaluation.ipynb
"""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier

from mrlib import evaluate as ev
from mrlib.autopool import pooling_position
from mrlib.checks import check_choice
from mrlib.devices import pick_device
from mrlib.layers import eval_mode
from mrlib.mining import is_online, paper_shares
from mrlib.results import parameters_key
from mrlib.similarity import oracle
from mrlib.systems import SYSTEMS, test_patch_batches
from mrlib.train import TrainConfig, prepare_data, train
from mrlib.train_config import paper_config

__all__ = ["TABLE2_DEFAULTS", "TABLE2_ROWS", "table2_systems", "TABLE2_BUDGETS", "TABLE2_ROW_FIELDS",
           "TABLE2_REFERENCE_ROWS", "TRAIN_SHARE", "CATALOG_KWARGS", "CATALOG_VARIANTS",
           "table2_rows", "table2_context", "table2_score", "table2_run", "test_artists", "LOGISTIC_TAGGER",
           "AT_SWEEP", "at_sweep_rows", "TL_SWEEP", "tl_sweep_rows", "TL_TUNED_LR", "tl_tuned_rows",
           "AUTOPOOL_PATCH_LENS",
           "AUTOPOOL_ARMS", "AUTOPOOL_BUDGETS", "autopool_rows", "PAPER_CHOICES", "paper_choices_rows"]

#: Training fields shared by every row of Table 2, at notebook 07's defaults: a CPU lesson
#: that trains six systems in a few minutes (see 07_evaluation.ipynb for what it takes to
#: beat the untrained network). The papers' scale is :func:`mrlib.train.paper_config`.
TABLE2_DEFAULTS: dict = {
    "catalog": "synthetic",
    "n_tracks": 2000,
    "catalog_seed": 0,
    "catalog_kwargs": {"duration_s": 15.0},
    "patch_len": 64,
    "width": 0.125,
    "lr": 1e-3,
    "epochs": 16,
    "steps_per_epoch": 25,
    "patience": 0,
    "sampler": "shuffled",
    # 48 triplets (144 patches) per offline step, 144 tracks per online / AT step: every row
    # sees the same number of patches per step (16 triplets were too few for Distance-based
    # and Neighbors mining to learn in 400 steps: validation MAP@20 0.084 vs 0.118 with 48)
    "negatives_per_batch": 48,
    "batch_tracks": 144,
    "seed": 0,
}

# What makes each row the row it is (system, mining; the untrained reference trains for 0
# epochs), and its run folder's name. ``common`` may not change these.
_TABLE2_ROWS: dict[str, dict] = {
    "AT Baseline": {"system": "at", "mining": "distance", "run_name": "at"},
    "TL Neighbors": {"system": "tl", "mining": "neighbors", "run_name": "tl_neighbors"},
    "TL Random uniform": {"system": "tl", "mining": "uniform", "run_name": "tl_uniform"},
    "TL Distance-based": {"system": "tl", "mining": "distance", "run_name": "tl_distance"},
    "TL Autopool": {"system": "tl_autopool", "mining": "distance", "run_name": "tl_autopool"},
    "TL Online semi-hard": {"system": "tl", "mining": "online-semihard", "run_name": "tl_online_semihard"},
    "TL untrained": {"system": "tl", "mining": "distance", "epochs": 0, "run_name": "tl_untrained"},
}

#: Row names of :func:`table2_systems`, in table order.
TABLE2_ROWS: tuple[str, ...] = tuple(_TABLE2_ROWS)


def table2_systems(**common) -> dict[str, dict]:
    """The trained rows of Table 2 as :class:`mrlib.train.TrainConfig` fields: one source of truth.

    Rows (Prétet et al. 2020, Table 2, plus the reference and the paper's future work):

    ==========================  ===============  ====================  =============
    row                         ``system``       ``mining``            ``run_name``
    ==========================  ===============  ====================  =============
    AT Baseline                 ``at``           (unused)              ``at``
    TL Neighbors                ``tl``           ``neighbors``         ``tl_neighbors``
    TL Random uniform           ``tl``           ``uniform``           ``tl_uniform``
    TL Distance-based           ``tl``           ``distance``          ``tl_distance``
    TL Autopool                 ``tl_autopool``  ``distance`` (§3.3)   ``tl_autopool``
    TL Online semi-hard         ``tl``           ``online-semihard``   ``tl_online_semihard``
    TL untrained                ``tl``           ``epochs = 0``        ``tl_untrained``
    ==========================  ===============  ====================  =============

    Every row shares :data:`TABLE2_DEFAULTS` (catalog, size, patch length, width, learning
    rate, training budget, seed …), updated by ``common``; so ``TrainConfig(**cfg)`` trains a
    row, and a sweep that runs ``06_training.ipynb`` once per row with these fields (each
    in ``<table2_dir>/<run_name>``) reproduces notebook 07's table exactly (same seeds, same
    numbers on the same device). The untrained row keeps ``epochs = 0`` whatever ``common``
    says: it is the network at initialisation, embedded with the same test patches.

    Parameters
    ----------
    **common
        :class:`~mrlib.train.TrainConfig` fields applied to every row, e.g. ``n_tracks=1000,
        epochs=20, device="cuda"``. ``system``, ``mining`` and ``run_name`` define the rows
        and are refused here.

    Returns
    -------
    dict row name -> dict of TrainConfig fields
        Plain, JSON-serialisable dicts with the same keys for every row (print them as a
        table, record them beside the results). Each is validated by building its
        ``TrainConfig``.

    Raises
    ------
    ValueError
        For a row-defining field in ``common``, or a field value that ``TrainConfig`` rejects.
    TypeError
        For an unknown field name.

    Examples
    --------
    >>> cfgs = table2_systems(epochs=2)
    >>> cfgs["TL Distance-based"]["mining"], cfgs["TL untrained"]["epochs"]
    ('distance', 0)

    Notebook: 07_evaluation.ipynb
    """
    fixed = {"system", "mining", "run_name"} & set(common)
    if fixed:
        raise ValueError(f"{sorted(fixed)} define the rows of Table 2 and cannot be set for all "
                         f"of them")
    TrainConfig.check_fields(common)      # a bad value is the caller's, whichever row meets it
    out = {}
    for name, row in _TABLE2_ROWS.items():
        cfg = {**TABLE2_DEFAULTS, **common, **row}
        try:
            TrainConfig(**cfg)
        except (TypeError, ValueError) as err:
            raise ValueError(f"Table 2 row {name!r}: {err}") from None
        # copies: a caller editing one row must not edit the others (or the defaults)
        out[name] = json.loads(json.dumps(cfg))
    return out


# ---------------------------------------------------------------------------------------------
# The experiments' rows, their data and their scoring
# ---------------------------------------------------------------------------------------------
#: Training budget of every Table-2 row per profile (``TrainConfig`` fields on top of
#: :data:`mrlib.table2.TABLE2_DEFAULTS`). ``quick`` is the stored CPU experiment: the
#: lesson's catalog and network, 200 Adam steps of 144 patches per row (see CONTRIBUTING.md,
#: "Experiments", for how the budget was chosen); ``paper`` is :func:`mrlib.train.paper_config`.
TABLE2_BUDGETS: dict[str, dict[str, Any]] = {
    "smoke": {"n_tracks": 60, "catalog_kwargs": {"duration_s": 8.0}, "epochs": 2,
              "steps_per_epoch": 2, "negatives_per_batch": 8, "batch_tracks": 24},
    "quick": {"epochs": 10, "steps_per_epoch": 20},
    "paper": {},
}

#: Fields of single rows at the CPU profiles, under any ``-p`` override. The AT tagger keeps no
#: dropout: at 1/8 width and 200 steps FCN's 0.5 leaves it near chance (the ``at_sweep`` store,
#: validation tag AUC 0.69, 0.81 without, at seed 0 and in the mean of three seeds alike;
#: CONTRIBUTING.md, "Experiments"). The ``paper``
#: profile keeps 0.5.
TABLE2_ROW_FIELDS: dict[str, dict[str, Any]] = {"AT Baseline": {"dropout": 0.0}}

#: The training split's nominal share of a catalog, from which the CPU profiles scale the paper's
#: Np and Nn (:func:`mrlib.mining.paper_shares`: 2 and 35 for 2,000 tracks).
TRAIN_SHARE = 0.6

#: Rows of Table 2 that need no training: the naive baseline and the floor.
TABLE2_REFERENCE_ROWS = ("Euclidean (mean CQT)", "Random ranking")

#: Builder arguments every row on a catalog records, even at their default, so that a stored
#: row names the catalog variant it was scored on: music21 has two instrument rules
#: (``mrlib.music21_catalog.INSTRUMENTATION``), and rows that left the rule out would share run
#: folders across them.
CATALOG_KWARGS: dict[str, dict[str, Any]] = {"music21": {"instrumentation": "independent"}}
#: Named catalog variants for ``--catalog``: the catalog and the builder arguments that make it.
CATALOG_VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "music21-by-collection": ("music21", {"instrumentation": "by_collection"})}

# Fields that say where or how fast a run happens, not what it computes.
_NOT_RESULT = ("device", "n_jobs", "out_dir", "prefetch")
# Fields that choose the catalog and its features (what the reference rows depend on).
_CATALOG_FIELDS = ("catalog", "n_tracks", "catalog_seed", "catalog_kwargs", "features")


def table2_rows(catalog: str = "synthetic", profile: str = "quick",
                overrides: Mapping[str, Any] | None = None) -> dict[str, dict]:
    """The rows of Table 2 at a profile: the trained rows' training fields and the references'.

    Trained rows come from :func:`mrlib.table2.table2_systems` with the profile's budget
    (:data:`TABLE2_BUDGETS`) and ``overrides`` (any ``TrainConfig`` field but ``seed``); at the
    ``paper`` profile each row is :func:`mrlib.train.paper_config` of its system and mining.
    The reference rows (:data:`TABLE2_REFERENCE_ROWS`) carry only the catalog's fields.

    Notebook: 07_evaluation.ipynb
    """
    overrides = dict(overrides or {})
    if "seed" in overrides:
        raise ValueError("the seed of an experiment is --seeds, not -p seed=...")
    check_choice("profile", profile, TABLE2_BUDGETS)
    rows = table2_systems(catalog=catalog, **{**TABLE2_BUDGETS[profile], **overrides})
    if profile != "paper":
        for name, fields in TABLE2_ROW_FIELDS.items():
            rows[name].update({k: v for k, v in fields.items() if k not in overrides})
        for cfg in rows.values():
            if SYSTEMS[cfg["system"]].mining != "none" and not is_online(cfg["mining"]) and cfg["epochs"] > 0:
                n_pos, n_neg = paper_shares(round(TRAIN_SHARE * cfg["n_tracks"]))
                cfg.setdefault("n_pos", n_pos)          # a -p n_pos/n_neg is already in cfg
                cfg.setdefault("n_neg", n_neg)
    else:
        rows = {name: paper_config(cfg["system"], cfg["mining"], catalog=catalog,
                                   run_name=cfg["run_name"], **overrides).to_dict()
                for name, cfg in rows.items()}
        rows["TL untrained"]["epochs"] = 0
    out = {name: {k: v for k, v in cfg.items() if k not in _NOT_RESULT + ("seed",)}
           for name, cfg in rows.items()}
    for name in TABLE2_REFERENCE_ROWS:
        out[name] = _reference_row(name, next(iter(out.values())))
    return out


def _reference_row(name: str, trained: Mapping[str, Any]) -> dict:
    """An untrained reference row: its name and the catalog fields of a trained row."""
    return {"reference": name, **{k: trained[k] for k in _CATALOG_FIELDS if k in trained}}


# Per worker process: the loaded catalog and its test-query context, by catalog fields.
_CONTEXTS: dict[str, dict] = {}


def table2_context(parameters: Mapping[str, Any], device: str = "cpu", progress: bool = False) -> dict:
    """The data a Table-2 row is scored on (loaded once per process and catalog).

    Returns
    -------
    dict
        ``data`` (:class:`mrlib.train.TrainData`), ``test`` (catalog indices of the queries),
        ``S_test`` (oracle among them), ``true_lists`` (its top 5 per query), ``depth`` (k).

    Notebook: 07_evaluation.ipynb
    """
    fields = {k: parameters[k] for k in _CATALOG_FIELDS if k in parameters}
    key = json.dumps(fields, sort_keys=True)
    if key not in _CONTEXTS:
        data = prepare_data(TrainConfig(**fields, n_jobs=os.cpu_count() or 1, device=device),
                            progress=progress)
        test = data.indices("test")
        S_test = oracle(data.tags[test], None, data.categories)
        _CONTEXTS[key] = {"data": data, "test": test, "S_test": S_test,
                          "true_lists": ev.rank_by_similarity(S_test, k=5),
                          "depth": min(20, len(test) - 1)}
    return _CONTEXTS[key]


def table2_score(embeddings: np.ndarray, context: Mapping[str, Any], *, tags: bool = False):
    """Score test-query embeddings (rows in the order of ``context["test"]``).

    ``tags=True``: the rows are predicted tag probabilities (the AT baseline), ranked by the
    oracle applied to them, as the paper does.

    Returns
    -------
    mrlib.evaluate.RetrievalResult

    Notebook: 07_evaluation.ipynb
    """
    if tags:
        S_hat = oracle(embeddings, None, context["data"].categories)
        return ev.evaluate_similarity(S_hat, context["S_test"])
    return ev.evaluate_embeddings(embeddings, context["S_test"])


def test_artists(parameters: Mapping[str, Any], progress: bool = False) -> dict:
    """The artist of each test query of a row's catalog: the stored Table-2 files' unit groups.

    Queries of one artist resemble each other (the oracle's tags and the audio's style), so the
    stored intervals and paired tests count an artist once (:func:`mrlib.results.store_groups`).

    Parameters
    ----------
    parameters : mapping
        A row's parameters (its catalog fields are read, :func:`table2_context`).
    progress : bool, default False
        Progress bars of the catalog build and feature extraction, when they are not done yet.

    Returns
    -------
    dict
        ``{"by": "artist", "labels": [artist id of each query, in the order of the per-query
        scores]}``.

    Notebook: 07_evaluation.ipynb
    """
    context = table2_context(parameters, progress=progress)
    return {"by": "artist", "labels": context["data"].artist_ids[context["test"]].tolist()}


def _per_unit(result) -> dict[str, np.ndarray]:
    return {result.columns[m]: result.per_query[m] for m in result.per_query}


def _mean_cqt(data, idx) -> np.ndarray:
    return np.stack([np.asarray(data.features[int(i)], dtype=np.float32).mean(axis=1) for i in idx])


def _logistic_tagger(context: Mapping[str, Any]):
    """A linear tagger on mean CQT vectors (a floor for the CNN tagger), scored like AT."""
    data, test = context["data"], context["test"]
    train = data.indices("train")
    x_train, x_test = _mean_cqt(data, train), _mean_cqt(data, test)
    mu, sd = x_train.mean(axis=0), x_train.std(axis=0) + 1e-6
    y = (data.tags[train] >= 0.5).astype(int)
    clf = OneVsRestClassifier(LogisticRegression(C=0.1, max_iter=2000))
    # a tag absent from the training split is constant
    with warnings.catch_warnings(action="ignore", category=UserWarning):
        clf.fit((x_train - mu) / sd, y)
    P = clf.predict_proba((x_test - mu) / sd)
    auc = round(float(ev.tag_auc(data.tags[test] >= 0.5, P).mean), 4)
    return _per_unit(table2_score(P, context, tags=True)), {"tag_auc": auc}


def _table2_reference(parameters: Mapping[str, Any], seed: int, context: Mapping[str, Any]):
    test, depth = context["test"], context["depth"]
    if parameters["reference"] == LOGISTIC_TAGGER:
        return _logistic_tagger(context)
    if parameters["reference"] == "Random ranking":
        pred = ev.random_ranking(len(test), k=depth, seed=seed)
    else:
        pred = ev.rank_by_distance(_mean_cqt(context["data"], test), k=depth)
    return _per_unit(ev.RetrievalResult(ev.retrieval_metrics(pred, context["true_lists"]))), {}


def table2_run(row: str, parameters: Mapping[str, Any], seed: int, device: str, workdir: Path):
    """Train one Table-2 row with one seed (resuming its run folder) and score it.

    Notebook: 07_evaluation.ipynb
    """
    context = table2_context(parameters, device)
    if "reference" in parameters:
        return _table2_reference(parameters, seed, context)
    # a row × seed's run folder has its parameters' hash in the name, so a changed row starts
    # afresh while the folder of its previous parameters stays as it was
    folder = f"{parameters['run_name']}_s{seed}-{parameters_key(parameters)[:8]}"
    cfg = TrainConfig(**parameters, seed=seed, device=device, n_jobs=1,
                      out_dir=str(workdir / folder))
    # resume what an interrupted runner left; a new row has no folder to resume (nothing to say)
    run = train(cfg, resume=cfg.run_dir().exists(), progress=False, data=context["data"])
    test = context["test"]
    pos = pd.Series(np.arange(len(run.catalog_index)), index=run.catalog_index)
    E = run.embeddings[pos.loc[test].to_numpy()]
    system = SYSTEMS[cfg.system]
    m = run.metrics
    extra = {"epochs_run": int(run.summary.get("epochs_run", len(m) - 1)),
             "best_epoch": run.summary.get("best_epoch"),
             "val_map": [round(float(v), 4) for v in m["val_map"]] if "val_map" in m else [],
             "patches_per_s": round(float(m["patches_per_s"].iloc[1:].mean()), 1)
             if "patches_per_s" in m and len(m) > 1 else None}
    if system.tags:
        extra["tag_auc"] = round(float(ev.tag_auc(context["data"].tags[test] >= 0.5, E).mean), 4)
        if "val_auc" in m:
            extra["val_auc"] = [None if pd.isna(v) else round(float(v), 4) for v in m["val_auc"]]
    model = run.model(pick_device(device)) if system.takes_pooling else None
    autopool = getattr(model, "autopool", None)
    if autopool is not None:
        alpha = autopool.effective_alpha.detach().cpu().numpy().ravel()
        extra["alpha"] = {k: round(float(getattr(alpha, k)()), 4) for k in ("mean", "min", "max")}
        extra["alpha"]["mean_abs"] = round(float(np.abs(alpha).mean()), 4)
        rho = _pooling_positions(model, context["data"], test, cfg.patch_len)
        extra["rho"] = {"mean": round(float(rho.mean()), 4), "mean_abs": round(float(rho.abs().mean()), 4)}
    return _per_unit(table2_score(E, context, tags=system.tags)), extra


@torch.no_grad()
def _pooling_positions(model, data, idx, patch_len: int, tracks_per_batch: int = 32) -> torch.Tensor:
    """ρ of the learned AutoPool (:func:`~mrlib.autopool.pooling_position`) on the test patches
    the embeddings average (8 per track), shape (len(idx) * 8, d).

    α acts on α·x, so its size depends on the scale of the frames it pools; ρ (0 at the mean,
    ±1 at the max / min) says how far the pooling actually moved from the mean.
    """
    device = next(model.parameters()).device
    rho = []
    with eval_mode(model):
        for _, x in test_patch_batches(data, np.asarray(idx), patch_len, tracks_per_batch=tracks_per_batch,
                                       device=device):
            frames = model.frame_embeddings(x)                               # (B, T', d)
            rho.append(pooling_position(model.autopool(frames), frames, axis=1).cpu())
    return torch.cat(rho)



#: A reference for the AT sweep: one logistic regression per tag on each track's mean CQT.
LOGISTIC_TAGGER = "Logistic tagger (mean CQT)"

#: The AT baseline's sweep: FCN's dropout (0.5) or none × the CPU rate (1e-3) or the paper's (1e-4).
AT_SWEEP = {"dropout": (0.5, 0.0), "lr": (1e-3, 1e-4)}


def at_sweep_rows(catalog: str = "synthetic", profile: str = "quick",
                  overrides: Mapping[str, Any] | None = None) -> dict[str, dict]:
    """The AT row of Table 2 at each point of :data:`AT_SWEEP` (the same budget and data).

    Selecting on the stored *validation* tag AUC (``extra["val_auc"]``) is what fixed the
    Table-2 AT row's dropout (:data:`TABLE2_ROW_FIELDS`); the test metrics are stored beside.

    Notebook: 06_training.ipynb
    """
    base = table2_rows(catalog, profile, overrides)["AT Baseline"]
    rows = {f"AT dropout {d:g}, lr {lr:g}": {**base, "dropout": d, "lr": lr,
                                             "run_name": f"at_dropout{d:g}_lr{lr:g}"}
            for d in AT_SWEEP["dropout"] for lr in AT_SWEEP["lr"]}
    rows[LOGISTIC_TAGGER] = _reference_row(LOGISTIC_TAGGER, base)
    return rows


#: The TL Distance-based row's sweep, one factor at a time around its Table-2 point (10⁻³, δ = 0.5):
#: a slower or faster rate, or a smaller margin. The AT row was chosen among four points; this is
#: the TL side's chance, selected the same way, on validation (``extra["val_map"]``).
TL_SWEEP = {"lr": (1e-3, 1e-4, 3e-4, 3e-3, 1e-2), "margin": (0.5, 0.1)}


def tl_sweep_rows(catalog: str = "synthetic", profile: str = "quick",
                  overrides: Mapping[str, Any] | None = None) -> dict[str, dict]:
    """Table 2's TL Distance-based row at each rate of :data:`TL_SWEEP` (margin 0.5) and at
    each margin (rate 10⁻³); the same budget and data.

    Notebook: 06_training.ipynb
    """
    base = table2_rows(catalog, profile, overrides)["TL Distance-based"]
    points = [(lr, TL_SWEEP["margin"][0]) for lr in TL_SWEEP["lr"]]
    points += [(TL_SWEEP["lr"][0], m) for m in TL_SWEEP["margin"][1:]]
    return {f"TL Distance-based lr {lr:g}, margin {m:g}": {**base, "lr": lr, "margin": m,
                                                          "run_name": f"tl_distance_lr{lr:g}_m{m:g}"}
            for lr, m in points}


#: The rate :data:`TL_SWEEP` chose on validation MAP@20 (the tests check it against the stored
#: sweep): the TL rows of :func:`tl_tuned_rows` train at it.
TL_TUNED_LR = 3e-4


def tl_tuned_rows(catalog: str = "synthetic", profile: str = "quick",
                  overrides: Mapping[str, Any] | None = None) -> dict[str, dict]:
    """Table 2's trained rows with every trained TL row at :data:`TL_TUNED_LR`, the AT row as in
    Table 2; the same names, budget and data, so that the claims can be tested on either table.

    Raises
    ------
    ValueError
        When ``overrides`` sets ``lr``: the rate is what this table changes.

    Notebook: 07_evaluation.ipynb
    """
    if "lr" in dict(overrides or {}):
        raise ValueError("the TL rows' rate is TL_TUNED_LR: drop -p lr")
    return {name: {**cfg, "lr": TL_TUNED_LR, "run_name": f"{cfg['run_name']}_lr{TL_TUNED_LR:g}"}
            if name.startswith("TL ") else cfg
            for name, cfg in table2_rows(catalog, profile, overrides).items()
            if "reference" not in cfg and cfg["epochs"] > 0}


#: The AutoPool ablation's patch lengths (on the synthetic catalog with ``events=True``).
AUTOPOOL_PATCH_LENS = (64, 256)
#: Its arms: the TL network (its own max-pools) and TL Autopool's frames by a fixed mean, a fixed
#: max, or the learned AutoPool at the network's rate or with α fast enough to reach the max.
AUTOPOOL_ARMS: dict[str, dict[str, Any]] = {
    "TL (own pooling)": {"system": "tl", "run_name": "tl"},
    "TL Autopool, mean": {"system": "tl_autopool", "pooling": "mean", "run_name": "tlap_mean"},
    "TL Autopool, max": {"system": "tl_autopool", "pooling": "max", "run_name": "tlap_max"},
    "TL Autopool, AutoPool": {"system": "tl_autopool", "run_name": "tlap_autopool"},
    "TL Autopool, AutoPool (α at lr 0.05)": {"system": "tl_autopool", "alpha_lr": 0.05,
                                             "run_name": "tlap_autopool_alr"},
}
#: 16 triplets (48 patches) per step: a 256-frame step then costs about what a Table-2 step does.
AUTOPOOL_BUDGETS = {"smoke": {}, "quick": {"negatives_per_batch": 16}}


def autopool_rows(catalog: str = "synthetic", profile: str = "quick",
                  overrides: Mapping[str, Any] | None = None) -> dict[str, dict]:
    """Every arm of :data:`AUTOPOOL_ARMS` at every :data:`AUTOPOOL_PATCH_LENS`, with Table 2's
    distance-based triplets and budget (:data:`AUTOPOOL_BUDGETS`), on ``events=True``.

    Notebook: 05_autopool.ipynb
    """
    overrides = dict(overrides or {})
    if "patch_len" in overrides:
        raise ValueError("the patch lengths are the rows (AUTOPOOL_PATCH_LENS): drop -p patch_len")
    budget = {**AUTOPOOL_BUDGETS.get(profile, {}), **overrides}   # table2_rows checks the profile
    base = table2_rows(catalog, profile, budget)["TL Distance-based"]
    if catalog == "synthetic":
        base["catalog_kwargs"] = {**base.get("catalog_kwargs", {}), "events": True}
    return {f"{arm}, {length} frames": {**base, **fields, "patch_len": length,
                                         "run_name": f"{fields['run_name']}_p{length}"}
            for length in AUTOPOOL_PATCH_LENS for arm, fields in AUTOPOOL_ARMS.items()}


#: The paper's batch and rate on Table 2's TL Distance-based row, each alone and both (AT's 10⁻⁴
#: is a point of :data:`AT_SWEEP`).
PAPER_CHOICES: dict[str, dict[str, Any]] = {
    "TL Distance-based (48 shuffled triplets, lr 10⁻³)": {},
    "paper batches (1 anchor, 1 positive, 42 negatives)": {"sampler": "paper", "negatives_per_batch": 42},
    "paper learning rate (10⁻⁶)": {"lr": 1e-6},
    "paper batches and learning rate": {"sampler": "paper", "negatives_per_batch": 42, "lr": 1e-6},
}


def paper_choices_rows(catalog: str = "synthetic", profile: str = "quick",
                       overrides: Mapping[str, Any] | None = None) -> dict[str, dict]:
    """Table 2's TL Distance-based row under each of :data:`PAPER_CHOICES`.

    Notebook: 06_training.ipynb
    """
    base = table2_rows(catalog, profile, overrides)["TL Distance-based"]
    return {name: {**base, **fields, "run_name": f"tl_distance_{i}"}
            for i, (name, fields) in enumerate(PAPER_CHOICES.items())}
