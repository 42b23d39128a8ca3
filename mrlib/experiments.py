"""Experiments: named tables of rows × training seeds, run by one resumable command.

``python -m mrlib.experiments run table2 --catalog synthetic --profile quick --seeds 0 1 2``
trains every row of an experiment once per seed (on any device: ``--device cuda``), scores it
on the test units, and stores each finished row × seed at once in
``data/results/<experiment>_<catalog>_<profile>.json`` (:mod:`mrlib.results`). A second
invocation skips what the store holds, so an experiment of hours runs in pieces on any machine
and adds up through the committed file, not through ``runs/``. A row whose parameters changed
is run again (only that row); a row that fails is recorded with its error and the others go on.

Rows are direct :func:`mrlib.train.train` calls in worker processes, not papermill runs of a
notebook: a worker keeps the catalog's features in memory between rows, and an exception is an
object to store (CONTRIBUTING.md, "Experiments"). An experiment is an :class:`Experiment` in
:data:`EXPERIMENTS`: its rows for a catalog and a profile, and the function that runs one row
with one seed; an ablation is one more entry.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import multiprocessing
import os
import shlex
import subprocess
import sys
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from tqdm.auto import tqdm

from mrlib import cfr2017
from mrlib import results as res

__all__ = ["Experiment", "EXPERIMENTS", "register", "run_experiment", "experiment_rows",
           "TABLE2_BUDGETS", "table2_rows", "table2_context", "table2_score", "git_commit", "main"]


@dataclass(frozen=True)
class Experiment:
    """A named experiment: rows for a catalog × profile, and how to run one row with one seed.

    Attributes
    ----------
    name : str
        The command-line name (``table2``).
    title : str
    notebook : str
        The notebook that teaches it and shows its stored results.
    metrics : tuple of str
        Column names of the per-unit scores every row returns.
    unit : str
        What a per-unit score is scored on (``"query"``, ``"triplet"``).
    rows : callable (catalog, profile, overrides) -> dict row -> parameters
        JSON-serialisable parameters of each row (everything that changes its result, except
        the seed and the device); a row is re-run exactly when its parameters change.
    run : callable (row, parameters, seed, device, workdir) -> (per_unit, extra)
        Trains and scores one row with one seed: ``per_unit`` maps each metric to a float
        array (fractions), ``extra`` holds further JSON values (an AUC, a learned α).
    profiles : tuple of str
        The profiles it defines.
    prepare : callable (parameters) -> None, optional
        Builds what rows read (catalog, features) in the runner's process before workers race to.

    Notebook: 07_evaluation.ipynb
    """

    name: str
    title: str
    notebook: str
    metrics: tuple[str, ...]
    unit: str
    rows: Callable[[str, str, Mapping[str, Any]], dict[str, dict]]
    run: Callable[..., tuple[Mapping[str, Any], Mapping[str, Any]]]
    profiles: tuple[str, ...] = ("smoke", "quick", "paper")
    prepare: Callable[[Mapping[str, Any]], Any] | None = None


#: The registered experiments, by name.
EXPERIMENTS: dict[str, Experiment] = {}


def register(experiment: Experiment) -> Experiment:
    """Add an experiment to :data:`EXPERIMENTS` (a name already taken is an error).

    Notebook: 07_evaluation.ipynb
    """
    if not isinstance(experiment, Experiment):
        raise TypeError(f"register() takes an Experiment, got {type(experiment).__name__}")
    if experiment.name in EXPERIMENTS and EXPERIMENTS[experiment.name] is not experiment:
        raise ValueError(f"an experiment named {experiment.name!r} is already registered")
    EXPERIMENTS[experiment.name] = experiment
    return experiment


def _experiment(name: str) -> Experiment:
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; registered: {sorted(EXPERIMENTS)}")
    return EXPERIMENTS[name]


# ---------------------------------------------------------------------------------------------
# Table 2 (Prétet et al. 2020)
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
#: dropout: at 1/8 width and 200 steps FCN's 0.5 leaves it at chance (validation tag AUC 0.55,
#: 0.81 without; CONTRIBUTING.md, "Experiments"). The ``paper`` profile keeps 0.5.
TABLE2_ROW_FIELDS: dict[str, dict[str, Any]] = {"AT Baseline": {"dropout": 0.0}}

#: The training split's nominal share of a catalog, from which the CPU profiles scale the paper's
#: Np and Nn (:func:`mrlib.mining.paper_shares`: 2 and 35 for 2,000 tracks).
TRAIN_SHARE = 0.6

#: Rows of Table 2 that need no training: the naive baseline and the floor.
TABLE2_REFERENCE_ROWS = ("Euclidean (mean CQT)", "Random ranking")

#: Builder arguments every row on a catalog records, even at their default, so that a stored
#: row names the catalog variant it was scored on: music21 has two instrument rules
#: (``mrlib.repertoire.INSTRUMENTATION``), and rows that left the rule out would share run
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
    from mrlib.table2 import table2_systems
    from mrlib.mining import is_online, paper_shares
    from mrlib.train_config import paper_config

    overrides = dict(overrides or {})
    if "seed" in overrides:
        raise ValueError("the seed of an experiment is --seeds, not -p seed=...")
    if profile not in TABLE2_BUDGETS:
        raise ValueError(f"unknown profile {profile!r} for table2; choose from {sorted(TABLE2_BUDGETS)}")
    rows = table2_systems(catalog=catalog, **{**TABLE2_BUDGETS[profile], **overrides})
    if profile != "paper":
        for name, fields in TABLE2_ROW_FIELDS.items():
            rows[name].update({k: v for k, v in fields.items() if k not in overrides})
        for cfg in rows.values():
            if cfg["system"] != "at" and not is_online(cfg["mining"]) and cfg["epochs"] > 0:
                n_pos, n_neg = paper_shares(round(TRAIN_SHARE * cfg["n_tracks"]))
                cfg.setdefault("n_pos", n_pos)          # a -p n_pos/n_neg is already in cfg
                cfg.setdefault("n_neg", n_neg)
    else:
        paper = {}
        for name, cfg in rows.items():
            fields = paper_config(cfg["system"], cfg["mining"], catalog=catalog,
                                  run_name=cfg["run_name"], **overrides).to_dict()
            if name == "TL untrained":
                fields["epochs"] = 0
            paper[name] = fields
        rows = paper
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
    from mrlib import evaluate as ev
    from mrlib.similarity import oracle
    from mrlib.train import TrainConfig, prepare_data

    fields = {k: parameters[k] for k in _CATALOG_FIELDS if k in parameters}
    key = json.dumps(fields, sort_keys=True)
    if key not in _CONTEXTS:
        data = prepare_data(TrainConfig(**fields, n_jobs=max(1, os.cpu_count() or 1), device=device),
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
    from mrlib import evaluate as ev
    from mrlib.similarity import oracle

    if tags:
        S_hat = oracle(embeddings, None, context["data"].categories)
        return ev.evaluate_similarity(S_hat, context["S_test"])
    return ev.evaluate_embeddings(embeddings, context["S_test"])


def _per_unit(result) -> dict[str, np.ndarray]:
    return {result.columns[m]: result.per_query[m] for m in result.per_query}


def _mean_cqt(data, idx) -> np.ndarray:
    return np.stack([np.asarray(data.features[int(i)], dtype=np.float32).mean(axis=1) for i in idx])


def _logistic_tagger(context: Mapping[str, Any]):
    """A linear tagger on mean CQT vectors (a floor for the CNN tagger), scored like AT."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    from mrlib import evaluate as ev

    data, test = context["data"], context["test"]
    train = data.indices("train")
    x_train, x_test = _mean_cqt(data, train), _mean_cqt(data, test)
    mu, sd = x_train.mean(axis=0), x_train.std(axis=0) + 1e-6
    y = (data.tags[train] >= 0.5).astype(int)
    clf = OneVsRestClassifier(LogisticRegression(C=0.1, max_iter=2000))
    with warnings.catch_warnings():       # a tag absent from the training split is constant
        warnings.simplefilter("ignore", UserWarning)
        clf.fit((x_train - mu) / sd, y)
    P = clf.predict_proba((x_test - mu) / sd)
    auc = ev.tag_auc(data.tags[test] >= 0.5, P)
    return _per_unit(table2_score(P, context, tags=True)), {"tag_auc": round(float(auc.mean), 4)}


def _table2_reference(row: str, parameters: Mapping[str, Any], seed: int, context: Mapping[str, Any]):
    from mrlib import evaluate as ev

    test, depth = context["test"], context["depth"]
    if parameters["reference"] == LOGISTIC_TAGGER:
        return _logistic_tagger(context)
    if parameters["reference"] == "Random ranking":
        pred = ev.random_ranking(len(test), k=depth, seed=seed)
    else:
        pred = ev.rank_by_distance(_mean_cqt(context["data"], test), k=depth)
    return _per_unit(ev.RetrievalResult(ev.retrieval_metrics(pred, context["true_lists"]))), {}


def _run_folder(parameters: Mapping[str, Any], seed: int) -> str:
    """A row × seed's run folder: its parameters' hash in the name, so a changed row starts
    afresh while the folder of its previous parameters stays as it was."""
    from mrlib.results import parameters_key

    return f"{parameters['run_name']}_s{seed}-{parameters_key(parameters)[:8]}"


def _table2_run(row: str, parameters: Mapping[str, Any], seed: int, device: str, workdir: Path):
    """Train one Table-2 row with one seed (resuming its run folder) and score it."""
    import pandas as pd

    from mrlib import evaluate as ev
    from mrlib.systems import SYSTEMS
    from mrlib.train import TrainConfig, train

    context = table2_context(parameters, device)
    if "reference" in parameters:
        return _table2_reference(row, parameters, seed, context)
    cfg = TrainConfig(**parameters, seed=seed, device=device, n_jobs=1,
                      out_dir=str(workdir / _run_folder(parameters, seed)))
    run = train(cfg, resume=True, progress=False, data=context["data"])
    test = context["test"]
    pos = pd.Series(np.arange(len(run.catalog_index)), index=run.catalog_index)
    E = run.embeddings[pos.loc[test].to_numpy()]
    system = SYSTEMS[cfg.system]
    result = table2_score(E, context, tags=system.tags)
    m = run.metrics
    extra = {"epochs_run": int(run.summary.get("epochs_run", len(m) - 1)),
             "best_epoch": run.summary.get("best_epoch"),
             "val_map": [round(float(v), 4) for v in m["val_map"]] if "val_map" in m else [],
             "patches_per_s": round(float(m["patches_per_s"].iloc[1:].mean()), 1)
             if "patches_per_s" in m and len(m) > 1 else None}
    if system.tags:
        auc = ev.tag_auc(context["data"].tags[test] >= 0.5, E)
        extra["tag_auc"] = round(float(auc.mean), 4)
        if "val_auc" in m:
            extra["val_auc"] = [None if pd.isna(v) else round(float(v), 4) for v in m["val_auc"]]
    autopool = getattr(run.model(), "autopool", None) if system.takes_pooling else None
    if autopool is not None:
        alpha = autopool.effective_alpha.detach().numpy().ravel()
        extra["alpha"] = {"mean": round(float(alpha.mean()), 4), "min": round(float(alpha.min()), 4),
                          "max": round(float(alpha.max()), 4)}
    return _per_unit(result), extra


def _retrieval_experiment(name: str, title: str, notebook: str, rows,
                          profiles: tuple[str, ...] = ("smoke", "quick")) -> Experiment:
    """Register an experiment whose rows train and score like Table 2's (its metrics and data)."""
    return register(Experiment(name=name, title=title, notebook=notebook,
                               metrics=("MAP@20", "Recall@20", "RR@20", "nDCG@20"), unit="query",
                               rows=rows, run=_table2_run, profiles=profiles, prepare=table2_context))


_retrieval_experiment("table2", "Table 2 of Prétet et al. (2020): retrieval on the test queries",
                      "07_evaluation.ipynb", table2_rows, profiles=("smoke", "quick", "paper"))

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


_retrieval_experiment("at_sweep", "The AT baseline: dropout × learning rate (tag AUC in extra)",
                      "06_training.ipynb", at_sweep_rows)

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
    rows = {}
    for length in AUTOPOOL_PATCH_LENS:
        for arm, fields in AUTOPOOL_ARMS.items():
            rows[f"{arm}, {length} frames"] = {**base, **fields, "patch_len": length,
                                                "run_name": f"{fields['run_name']}_p{length}"}
    return rows


_retrieval_experiment("autopool", "AutoPool ablation: temporal pooling × patch length (learned α in extra)",
                      "05_autopool.ipynb", autopool_rows)

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


_retrieval_experiment("paper_choices", "The paper's batches and learning rate on the TL Distance-based row",
                      "06_training.ipynb", paper_choices_rows)

register(Experiment(
    name="cfr2017", title="The 2017 CFR table (Lu et al.): constraints fulfilled on the test triplets",
    notebook="08_triplet_matchnet.ipynb", metrics=("CFR",), unit="triplet",
    rows=cfr2017.rows, run=cfr2017.run, prepare=cfr2017.data_context))
register(Experiment(
    name="cfr2017_curve", title="The 2017 generalisation curve: CFR against the share of training triplets",
    notebook="08_triplet_matchnet.ipynb", metrics=("CFR",), unit="triplet",
    rows=cfr2017.curve_rows, run=cfr2017.run, profiles=("smoke", "quick"),
    prepare=cfr2017.data_context))


# ---------------------------------------------------------------------------------------------
# The runner
# ---------------------------------------------------------------------------------------------
def git_commit(root: Path | None = None) -> str:
    """The repository's HEAD commit, with ``+dirty`` when ``mrlib/`` differs from it ("" outside git).

    Notebook: 07_evaluation.ipynb
    """
    from mrlib.paths import repo_root

    root = root or repo_root()
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "mrlib"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""
    return head + ("+dirty" if dirty else "")


def _device_name(device: str) -> str:
    import torch

    from mrlib.devices import pick_device

    d = pick_device(device)
    if d.type == "cuda":
        return f"{d} ({torch.cuda.get_device_name(d)})"
    return f"{d} ({os.cpu_count()} cores)" if d.type == "cpu" else str(d)


def _work(name: str, row: str, parameters: dict, seed: int, device: str, workdir: str,
          threads: int) -> dict:
    """One row × seed in a worker process: its result entry, or the error that stopped it."""
    import torch

    torch.set_num_threads(threads)
    exp = EXPERIMENTS[name]
    t0 = time.perf_counter()
    try:
        per_unit, extra = exp.run(row, parameters, seed, device, Path(workdir))
        entry = res.seed_entry(per_unit, extra=extra)
    except Exception as err:  # a failing row is recorded and the others go on
        entry = {"status": "failed", "error": f"{type(err).__name__}: {err}",
                 "traceback": traceback.format_exc(limit=6)[-2000:]}
    from mrlib.suite import versions

    entry.update({"wall_s": round(time.perf_counter() - t0, 1), "device": _device_name(device),
                  "finished": res.now(), "versions": {k: v for k, v in versions().items()
                                                      if k in ("python", "torch", "numpy", "mrlib")}})
    return entry


def experiment_rows(name: str, catalog: str = "synthetic", profile: str = "quick",
                    overrides: Mapping[str, Any] | None = None) -> dict[str, dict]:
    """The rows (and their parameters) that :func:`run_experiment` would run.

    Notebook: 07_evaluation.ipynb
    """
    exp = _experiment(name)
    if profile not in exp.profiles:
        raise ValueError(f"experiment {name!r} has profiles {list(exp.profiles)}, got {profile!r}")
    base, variant = CATALOG_VARIANTS.get(catalog, (catalog, {}))
    rows = exp.rows(base, profile, dict(overrides or {}))
    for parameters in rows.values():
        if parameters.get("catalog") in CATALOG_KWARGS and "catalog_kwargs" in parameters:
            parameters["catalog_kwargs"] = {**CATALOG_KWARGS[parameters["catalog"]],
                                            **parameters["catalog_kwargs"], **variant}
    return rows


def _command(name, catalog, profile, seeds, overrides, rows, device) -> str:
    parts = ["python", "-m", "mrlib.experiments", "run", name, "--catalog", str(catalog),
             "--profile", profile, "--seeds", *map(str, seeds)]
    if rows:
        parts += ["--rows", *rows]
    if device != "auto":
        parts += ["--device", device]
    for k, v in (overrides or {}).items():
        parts += ["-p", f"{k}={json.dumps(v) if not isinstance(v, str) else v}"]
    return shlex.join(parts)


def _git_commit_file(path: Path, message: str, tries: int = 5) -> bool:
    """Commit one file (nothing else staged); a busy index is retried, a failure only warned of."""
    root = path.resolve().parent
    for attempt in range(tries):
        add = subprocess.run(["git", "add", "--", path.name], cwd=root, capture_output=True, text=True)
        done = add.returncode == 0 and subprocess.run(
            ["git", "commit", "-q", "-m", message, "--", path.name], cwd=root, capture_output=True,
            text=True).returncode == 0
        if done:
            return True
        time.sleep(2 + 2 * attempt)            # another git process holds .git/index.lock
    print(f"[experiments] warning: could not git-commit {path} (it is written; commit it by hand)")
    return False


def run_experiment(name: str, catalog: str = "synthetic", profile: str = "quick",
                   seeds: Sequence[int] = (0, 1, 2), *, overrides: Mapping[str, Any] | None = None,
                   rows: Sequence[str] | None = None, device: str = "auto", jobs: int = 1,
                   store: Path | None = None, workdir: Path | None = None, commit: bool = False,
                   progress: bool = True) -> Path:
    """Run an experiment's rows × seeds, storing each finished one at once; skip what is stored.

    Parameters
    ----------
    name : str
        A key of :data:`EXPERIMENTS` (``"table2"``, ``"cfr2017"``).
    catalog : str, default "synthetic"
    profile : str, default "quick"
    seeds : sequence of int, default (0, 1, 2)
        Training seeds; each row is trained once per seed.
    overrides : mapping, optional
        Parameters changed for every row (``-p lr=0.0003``); the rows they change are re-run.
    rows : sequence of str, optional
        Run only these rows (the store keeps the others).
    device : str, default "auto"
        ``"cpu"``, ``"cuda"``, … (recorded per row × seed; not part of a row's identity).
    jobs : int, default 1
        Rows × seeds run side by side, each in its own process with ``cores / jobs`` threads.
    store : Path, optional
        The results file (default :func:`mrlib.results.store_path`).
    workdir : Path, optional
        Run folders (default ``runs_dir()/experiments/<store stem>``): interrupted rows resume.
    commit : bool, default False
        ``git commit`` the results file after every finished row × seed.
    progress : bool, default True

    Returns
    -------
    Path of the results file.

    Raises
    ------
    ValueError
        Unknown experiment, profile, row or parameter — before anything runs.
    mrlib.paths.LockedError
        Another runner is writing the same store (it names the process); a lock left by a
        process that died is recovered, and says so.

    Notebook: 07_evaluation.ipynb
    """
    from mrlib.paths import FolderLock, runs_dir

    exp = _experiment(name)
    seeds = [int(s) for s in seeds]
    if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct integers >= 0, got {list(seeds)}")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be an int >= 1, got {jobs!r}")
    overrides = dict(overrides or {})
    specs = experiment_rows(name, catalog, profile, overrides)
    unknown = [r for r in (rows or []) if r not in specs]
    if unknown:
        raise ValueError(f"unknown row(s) {unknown} of {name}; rows are {list(specs)}")
    path = Path(store or res.store_path(name, catalog, profile))
    workdir = Path(workdir or runs_dir() / "experiments" / path.stem)
    # one runner per store: two would each rewrite the file from their own copy
    with FolderLock(workdir, "experiment"):
        return _run_locked(exp, name, catalog, profile, seeds, overrides, specs, rows, device, jobs,
                           path, workdir, commit, progress)


def _stored_rows(rows: dict, specs: dict, name: str, path: Path) -> dict:
    """The store's rows for these specs: rows no longer specified go, changed ones start over."""
    for r in [r for r in rows if r not in specs]:
        print(f"[experiments] {r}: no longer a row of {name}; dropped from {path.name}")
    stored: dict[str, dict] = {}
    for r, params in specs.items():
        key = res.parameters_key(params)
        old = rows.get(r)
        if old is not None and old.get("key") != key:
            n_old = len(old.get("seeds", {}))
            print(f"[experiments] {r}: parameters changed; its {n_old} stored seed(s) are run again")
            old = None
        stored[r] = old or {"parameters": params, "key": key, "seeds": {}}
    return stored


def _run_locked(exp, name, catalog, profile, seeds, overrides, specs, rows, device, jobs, path,
                workdir, commit, progress) -> Path:
    data = res.read_store(path) if path.exists() else res.new_store(
        name, catalog, profile, title=exp.title, metrics=exp.metrics, unit=exp.unit, notebook=exp.notebook)
    if data["experiment"] != name or data["profile"] != profile:
        raise ValueError(f"{path} holds {data['experiment']} at profile {data['profile']}, not {name} at {profile}")
    command = _command(name, catalog, profile, seeds, overrides, rows, device)
    data.update({"title": exp.title, "command": command, "overrides": overrides})
    stored = data["rows"] = _stored_rows(data["rows"], specs, name, path)
    chosen = list(rows or specs)
    todo = [(r, s) for s in seeds for r in chosen
            if stored[r]["seeds"].get(str(s), {}).get("status") != "ok"]
    commit_id = git_commit()
    run_log = {"started": res.now(), "command": command, "commit": commit_id,
               "device": device, "trained": 0, "reused": len(chosen) * len(seeds) - len(todo), "failed": 0}
    data.setdefault("runs", []).append(run_log)
    print(f"[experiments] {name} · {catalog} · {profile}: {len(chosen)} rows × {len(seeds)} seeds; "
          f"{run_log['reused']} stored, {len(todo)} to run -> {path}", flush=True)
    t0 = time.perf_counter()

    def land(r: str, s: int, entry: dict) -> None:
        entry["commit"] = commit_id
        data["rows"][r]["seeds"][str(s)] = entry
        run_log["trained" if entry["status"] == "ok" else "failed"] += 1
        run_log["wall_s"] = round(time.perf_counter() - t0, 1)
        run_log["finished"] = res.now()
        res.summarise_store(data)
        res.write_store(data, path)
        if entry["status"] != "ok":
            print(f"[experiments] {r} seed {s} FAILED: {entry['error']}", flush=True)
        if commit:
            _git_commit_file(path, f"results: {name} {catalog} {profile}: {r}, seed {s} "
                                   f"({entry['status']}, {entry['wall_s']:.0f} s)")

    if not todo:
        res.summarise_store(data)
        data["runs"].pop()              # nothing ran: the store is unchanged but for its summary
        res.write_store(data, path)
        print(f"[experiments] every row × seed is stored; nothing to run ({path})")
        return path
    threads = max(1, (os.cpu_count() or 1) // jobs)
    if exp.prepare is not None:               # once per distinct row data, before the workers
        distinct = {json.dumps(stored[r]["parameters"], sort_keys=True): stored[r]["parameters"]
                    for r, _ in todo}
        for parameters in distinct.values():
            exp.prepare(parameters)
    bar = tqdm(total=len(todo), desc=f"{name} {catalog} {profile}", unit="run", disable=not progress,
               dynamic_ncols=True)
    try:
        if jobs == 1:
            for r, s in todo:
                bar.set_postfix_str(f"{r}, seed {s}")
                land(r, s, _work(name, r, stored[r]["parameters"], s, device, str(workdir), threads))
                bar.update()
        else:
            ctx = multiprocessing.get_context("spawn")
            with cf.ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
                futures = {pool.submit(_work, name, r, stored[r]["parameters"], s, device,
                                       str(workdir), threads): (r, s) for r, s in todo}
                for fut in cf.as_completed(futures):
                    r, s = futures[fut]
                    try:
                        entry = fut.result()
                    except Exception as err:  # the worker itself died (memory, a signal)
                        entry = {"status": "failed", "error": f"worker died: {type(err).__name__}: {err}",
                                 "wall_s": 0.0, "finished": res.now()}
                    land(r, s, entry)
                    bar.set_postfix_str(f"last: {r}, seed {s}")
                    bar.update()
    except KeyboardInterrupt:
        print(f"\n[experiments] interrupted: the finished rows × seeds are in {path}; the same "
              f"command resumes (an interrupted row continues from {workdir} when it is there)")
        raise
    finally:
        bar.close()
    failed = run_log["failed"]
    print(f"[experiments] done in {time.perf_counter() - t0:.0f} s: {run_log['trained']} run, "
          f"{failed} failed, {run_log['reused']} reused -> {path}")
    return path


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------
def _parse_overrides(items: Sequence[str], parser: argparse.ArgumentParser) -> dict:
    from mrlib.suite import parse_value

    out = {}
    for item in items:
        if "=" not in item:
            parser.error(f"-p expects NAME=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = parse_value(v.strip())
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m mrlib.experiments run|show|readme|list`` (see ``--help``).

    Notebook: 07_evaluation.ipynb
    """
    parser = argparse.ArgumentParser(prog="python -m mrlib.experiments", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run an experiment's rows × seeds (skips what is stored)")
    show = sub.add_parser("show", help="print a stored experiment as a Markdown table")
    for p in (run, show):
        p.add_argument("experiment", choices=sorted(EXPERIMENTS))
        p.add_argument("--catalog", default="synthetic")
        p.add_argument("--profile", default="quick")
    run.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    run.add_argument("--rows", nargs="+", metavar="ROW", help="only these rows (names as in the table)")
    run.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                     help="change a parameter of every row (the rows it changes are run again)")
    run.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    run.add_argument("--jobs", type=int, default=1, help="rows × seeds side by side (processes)")
    run.add_argument("--store", type=Path, help="results file (default data/results/<name>_<catalog>_<profile>.json)")
    run.add_argument("--commit", action="store_true", help="git-commit the results file after each row × seed")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    sub.add_parser("readme", help="rewrite the README's results blocks from data/results/")
    sub.add_parser("list", help="list the experiments and their stored results")
    args = parser.parse_args(argv)

    if args.command == "list":
        for name, exp in EXPERIMENTS.items():
            print(f"{name}: {exp.title} ({exp.notebook}); profiles {', '.join(exp.profiles)}")
        for stem, store in res.stored_results().items():
            seeds = {len(res._ok_seeds(r)) for r in store["rows"].values()}
            print(f"  stored: {stem}: {len(store['rows'])} rows, {min(seeds, default=0)}–"
                  f"{max(seeds, default=0)} seeds per row")
        return 0
    if args.command == "readme":
        for stem, store in res.stored_results().items():
            try:
                print(f"[experiments] {stem} -> {res.update_readme_block(store)}")
            except ValueError as err:
                print(f"[experiments] {stem}: not in the README ({err})")
        from mrlib.claims import update_readme_claims

        print(f"[experiments] claims -> {update_readme_claims('quick')}")
        return 0
    if args.command == "show":
        path = res.store_path(args.experiment, args.catalog, args.profile)
        if not path.exists():
            parser.error(f"{path} does not exist: run `python -m mrlib.experiments run "
                         f"{args.experiment} --catalog {args.catalog} --profile {args.profile}` first")
        print(res.results_markdown(res.read_store(path)))
        return 0
    from mrlib.paths import LockedError

    try:
        path = run_experiment(args.experiment, args.catalog, args.profile, args.seeds,
                              overrides=_parse_overrides(args.param, parser), rows=args.rows,
                              device=args.device, jobs=args.jobs, store=args.store,
                              commit=args.commit, progress=not args.quiet)
    except (ValueError, TypeError) as err:
        parser.error(str(err))
    except LockedError as err:
        print(f"[experiments] {err}", file=sys.stderr)
        return 2
    store = res.read_store(path)
    print(res.results_markdown(store))
    failed = [f"{r} seed {s}" for r, row in store["rows"].items()
              for s, e in row["seeds"].items() if e.get("status") != "ok"]
    if failed:
        print(f"[experiments] failed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
