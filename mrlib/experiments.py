"""Experiments: named tables of rows × training seeds, run by one resumable command.

``python -m mrlib.experiments run table2 --catalog synthetic --profile quick --seeds 0 1 2``
trains every row of an experiment once per seed (on any device: ``--device cuda``), scores it
on the test units, and stores each finished row × seed at once in
``data/results/<experiment>_<catalog>_<profile>.json`` (:mod:`mrlib.results`). A second
invocation skips what the store holds, so an experiment of hours runs in pieces on any machine
and adds up through the committed file, not through ``runs/``. A row whose parameters changed
is run again (only that row); a row that fails is recorded with its error and the others go on.
``-p name=value`` runs go to a file of their own under ``data/results/overrides/``, so the
committed files always hold the experiments as defined.

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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from tqdm.auto import tqdm

from mrlib import cfr2017, table2
from mrlib import results as res
from mrlib.catalog import BUILDERS
from mrlib.checks import check_choice, check_int
from mrlib.claims import update_readme_claims
from mrlib.devices import cpu_kernels, pick_device
from mrlib.paths import FolderLock, LockedError, make_folder, repo_root, runs_dir
from mrlib.suite import parse_params, versions
from mrlib.training_data import check_catalog_name
# The experiments' rows and data, re-exported: the notebooks and the command line know them here.
from mrlib.table2 import (AUTOPOOL_PATCH_LENS, CATALOG_KWARGS, CATALOG_VARIANTS,  # noqa: F401
                          TABLE2_REFERENCE_ROWS, table2_context, table2_rows, table2_score)

__all__ = ["Experiment", "EXPERIMENTS", "register", "run_experiment", "merge_stores", "experiment_rows",
           "table2_rows", "table2_context", "table2_score", "git_commit", "main"]


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
        What a per-unit score is scored on (``"query"``, ``"comparison"``).
    rows : callable (catalog, profile, overrides) -> dict row -> parameters
        JSON-serialisable parameters of each row (everything that changes its result, except
        the seed and the device); a row is re-run exactly when its parameters change.
    run : callable (row, parameters, seed, device, workdir) -> (per_unit, extra)
        Trains and scores one row with one seed: ``per_unit`` maps each metric to a float
        array (fractions), ``extra`` holds further JSON values (an AUC, a learned α).
    profiles : tuple of str
        The profiles it defines.
    prepare : callable (parameters, progress) -> None, optional
        Builds what rows read (catalog, features) in the runner's process before workers race
        to, with progress bars when ``progress`` (given by keyword; a catalog build can take an
        hour).
    unit_groups : callable (parameters, progress) -> dict, optional
        The group of each unit (``{"by": "artist", "labels": [...]}``), stored with the file:
        units of one group are counted as one draw by its intervals and tests
        (:func:`mrlib.results.store_groups`).

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
    unit_groups: Callable[..., dict] | None = None


#: The registered experiments, by name.
EXPERIMENTS: dict[str, Experiment] = {}


def register(experiment: Experiment) -> Experiment:
    """Add an experiment to :data:`EXPERIMENTS` (a name already taken is an error).

    Notebook: 07_evaluation.ipynb
    """
    if not isinstance(experiment, Experiment):
        raise TypeError(f"register() takes an Experiment, got {type(experiment).__name__}")
    if EXPERIMENTS.setdefault(experiment.name, experiment) is not experiment:
        raise ValueError(f"an experiment named {experiment.name!r} is already registered")
    return experiment


def _experiment(name: str, profile: str | None = None) -> Experiment:
    """The registered experiment ``name``, checked to define ``profile`` when one is given."""
    check_choice("experiment", name, EXPERIMENTS)
    if profile is not None:
        check_choice(f"the profile of {name}", profile, EXPERIMENTS[name].profiles)
    return EXPERIMENTS[name]


# ---------------------------------------------------------------------------------------------
# The registered experiments
# ---------------------------------------------------------------------------------------------
def _retrieval_experiment(name: str, title: str, notebook: str, rows,
                          profiles: tuple[str, ...] = ("smoke", "quick")) -> Experiment:
    """Register an experiment whose rows train and score like Table 2's (its metrics and data)."""
    return register(Experiment(name=name, title=title, notebook=notebook,
                               metrics=("MAP@20", "Recall@20", "RR@20", "nDCG@20"), unit="query",
                               rows=rows, run=table2.table2_run, profiles=profiles, prepare=table2.table2_context,
                               unit_groups=table2.test_artists))


_retrieval_experiment("table2", "Table 2 of Prétet et al. (2020): retrieval on the test queries",
                      "07_evaluation.ipynb", table2.table2_rows, profiles=("smoke", "quick", "paper"))
_retrieval_experiment("at_sweep", "The AT baseline: dropout × learning rate (tag AUC in extra)",
                      "06_training.ipynb", table2.at_sweep_rows)
_retrieval_experiment("tl_sweep", "The TL Distance-based row: learning rate and margin "
                      "(validation MAP@20 in extra)", "06_training.ipynb", table2.tl_sweep_rows)
_retrieval_experiment("tl_tuned", "Table 2's trained rows, the TL rows at the rate TL Distance-based's "
                      "sweep chose on validation", "07_evaluation.ipynb", table2.tl_tuned_rows)
_retrieval_experiment("autopool", "AutoPool ablation: temporal pooling × patch length (learned α in extra)",
                      "05_autopool.ipynb", table2.autopool_rows)
_retrieval_experiment("paper_choices", "The paper's batches and learning rate on the TL Distance-based row",
                      "06_training.ipynb", table2.paper_choices_rows)

register(Experiment(
    name="cfr2017", title="The 2017 CFR table (Lu et al.): constraints fulfilled on the test triplets",
    notebook="08_triplet_matchnet.ipynb", metrics=("CFR",), unit="comparison",
    rows=cfr2017.rows, run=cfr2017.run, prepare=cfr2017.data_context))
# The curve: the 2017 table's data, metric and runner, on its own rows.
register(replace(EXPERIMENTS["cfr2017"], name="cfr2017_curve", rows=cfr2017.curve_rows,
                 profiles=("smoke", "quick"),
                 title="The 2017 generalisation curve: CFR against the share of training triplets"))


# ---------------------------------------------------------------------------------------------
# The runner
# ---------------------------------------------------------------------------------------------
def git_commit(root: Path | None = None) -> str:
    """The repository's HEAD commit, with ``+dirty`` when ``mrlib/`` or a committed input of the
    results (the oracle's weights, the vocabulary, the instrumentation rule) differs from it
    ("" outside git).

    Notebook: 07_evaluation.ipynb
    """
    root = root or repo_root()
    try:
        head = _git(root, "rev-parse", "HEAD", check=True).stdout.strip()
        dirty = _git(root, "status", "--porcelain", "--", "mrlib", "data/oracle_weights.json",
                     "data/synthetic_vocabulary.csv", "data/repertoire_programs.csv",
                     check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""
    return head + ("+dirty" if dirty else "")


def _git(cwd: Path, *args: str, check: bool = False) -> subprocess.CompletedProcess:
    """``git args...`` run in ``cwd``, its output captured as text."""
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=check)


def _device_name(device: str) -> str:
    d = pick_device(device)
    if d.type == "cuda":
        return f"{d} ({torch.cuda.get_device_name(d)})"
    return f"{d} ({os.cpu_count()} cores)" if d.type == "cpu" else str(d)


def _work(name: str, row: str, parameters: dict, seed: int, device: str, workdir: str,
          threads: int) -> dict:
    """One row × seed in a worker process: its result entry, or the error that stopped it."""
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    try:
        per_unit, extra = EXPERIMENTS[name].run(row, parameters, seed, device, Path(workdir))
        entry = res.seed_entry(per_unit, extra=extra)
    except Exception as err:  # a failing row is recorded and the others go on
        entry = {"status": "failed", "error": f"{type(err).__name__}: {err}",
                 "traceback": traceback.format_exc(limit=6)[-2000:]}
    entry.update({"wall_s": round(time.perf_counter() - t0, 1), "device": _device_name(device),
                  "cpu_kernels": cpu_kernels(), "finished": res.now(),
                  "versions": {k: v for k, v in versions().items() if k in ("python", "torch", "numpy", "mrlib")}})
    return entry


def experiment_rows(name: str, catalog: str = "synthetic", profile: str = "quick",
                    overrides: Mapping[str, Any] | None = None) -> dict[str, dict]:
    """The rows (and their parameters) that :func:`run_experiment` would run.

    Notebook: 07_evaluation.ipynb
    """
    exp = _experiment(name, profile)
    base, variant = CATALOG_VARIANTS.get(catalog, (catalog, {}))
    check_catalog_name(base)
    rows = exp.rows(base, profile, dict(overrides or {}))
    for parameters in rows.values():
        if "catalog_kwargs" not in parameters:
            continue
        if base not in BUILDERS:        # a recorded catalog has no build options
            parameters["catalog_kwargs"] = {}
        elif parameters.get("catalog") in CATALOG_KWARGS:
            parameters["catalog_kwargs"] = {**CATALOG_KWARGS[parameters["catalog"]],
                                            **parameters["catalog_kwargs"], **variant}
    return rows


def _check_overrides_apply(name: str, catalog: str, profile: str, overrides: Mapping) -> None:
    """Refuse a ``-p`` that changes no row's parameters: a row drops the fields that do not
    change its result (``device``, ``n_jobs`` ...), so the override would be ignored, yet its
    hash would send a full rerun to a file of its own."""
    base = experiment_rows(name, catalog, profile, {})
    idle = [f"{k}={v!r}" for k, v in overrides.items()
            if experiment_rows(name, catalog, profile, {k: v}) == base]
    if idle:
        raise ValueError(f"-p {', '.join(idle)} changes no row's parameters of {name} (not a "
                         "parameter of its rows, or every row has that value already), so the "
                         "results would be the stored ones; the device is chosen with --device")


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


def _whole_command(name, catalog, profile, rows, overrides, device) -> str:
    """The command lines that make a results file, joined by ``&&``: every row at the seeds all
    rows hold, then each group of rows holding the same further seeds (``--rows``)."""
    seeds = {r: set(map(int, row["seeds"])) for r, row in rows.items()}
    common = set.intersection(*seeds.values()) if seeds else set()
    groups: dict[tuple[int, ...], list[str]] = {}
    for r, held in seeds.items():
        if held - common:
            groups.setdefault(tuple(sorted(held - common)), []).append(r)
    lines = [_command(name, catalog, profile, sorted(common), overrides, None, device)] if common else []
    lines += [_command(name, catalog, profile, extra, overrides, group, device)
              for extra, group in groups.items()]
    return " && ".join(lines)


def _git_commit_file(path: Path, message: str, tries: int = 5) -> None:
    """Commit one file (nothing else staged); a busy index is retried, a failure only warned of."""
    root = path.resolve().parent
    for attempt in range(tries):
        if (_git(root, "add", "--", path.name).returncode == 0
                and _git(root, "commit", "-q", "-m", message, "--", path.name).returncode == 0):
            return
        time.sleep(2 + 2 * attempt)            # another git process holds .git/index.lock
    print(f"[experiments] warning: could not git-commit {path} (it is written; commit it by hand)")


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
        Parameters changed for every row (``-p lr=0.0003``). They go to their own results file,
        ``overrides/<name>_<catalog>_<profile>_p-<hash>.json`` under the results folder (not
        committed, not in the README), unless ``store`` names one; there, the rows they change
        are run again.
    rows : sequence of str, optional
        Run only these rows (the store keeps the others). Refused while another row's stored
        seeds are stale (its parameters changed): running it too replaces them.
    device : str, default "auto"
        ``"cpu"``, ``"cuda"``, … (recorded per row × seed; not part of a row's identity).
    jobs : int, default 1
        Rows × seeds run side by side, each in its own process with ``cores / jobs`` threads.
    store : Path, optional
        The results file (default :func:`mrlib.results.store_path`; see ``overrides``). It is
        locked while the runner writes it, and must hold this experiment, catalog and profile.
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
        Unknown experiment, profile, row or parameter, a device this machine lacks, a store of
        another experiment, catalog or profile, or ``rows`` that leave stale rows behind —
        before anything runs.
    mrlib.paths.LockedError
        Another runner is writing the same store or work folder (it names the process); a
        lock left by a process that died is recovered, and says so.

    Notebook: 07_evaluation.ipynb
    """
    exp = _experiment(name)
    seeds = [int(s) for s in seeds]
    if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct integers >= 0, got {list(seeds)}")
    jobs = check_int("jobs", jobs)
    pick_device(device)   # a device this machine lacks stops here, not after hours of catalog build
    overrides = dict(overrides or {})
    specs = experiment_rows(name, catalog, profile, overrides)
    _check_overrides_apply(name, catalog, profile, overrides)
    for r in rows or ():
        check_choice(f"a row of {name}", r, specs)
    path = Path(store or res.store_path(name, catalog, profile))
    if overrides and store is None:     # the committed files keep the experiments as defined
        path = path.parent / "overrides" / f"{path.stem}_p-{res.parameters_key(overrides)[:8]}.json"
    workdir = Path(workdir or runs_dir() / "experiments" / path.stem)
    # one runner per store (two would each rewrite the file from their own copy) and per
    # work folder (two would train into the same run folders)
    make_folder(path.parent, "results folder")
    with FolderLock(path.parent, "results file", file=path.name):
        data = _open_store(exp, name, catalog, profile, specs, rows, path)   # before any run folder
        with FolderLock(workdir, "experiment"):
            return _run_locked(exp, name, catalog, profile, seeds, overrides, specs, rows, device,
                               jobs, path, workdir, commit, progress, data)


def _open_store(exp, name, catalog, profile, specs, rows, path: Path) -> dict:
    """The store at ``path`` (a new one when missing), checked to hold this experiment, with its
    rows matched to ``specs`` (:func:`_stored_rows`)."""
    data = res.read_store(path) if path.exists() else res.new_store(
        name, catalog, profile, title=exp.title, metrics=exp.metrics, unit=exp.unit, notebook=exp.notebook)
    held = (data["experiment"], str(data["catalog"]), data["profile"])
    if held != (name, str(catalog), profile):
        raise ValueError(f"{path} holds {held[0]} on catalog {held[1]} at profile {held[2]}, not "
                         f"{name} on {catalog} at {profile}; choose another --store")
    if data.get("unit") != exp.unit:                 # per-unit scores of one kind per file
        raise ValueError(f"{path} holds scores per {data.get('unit')}, {name} scores per {exp.unit}; "
                         "choose another --store (a 2017 file stored per triplet is converted by "
                         "mrlib.cfr2017.per_comparison_store)")
    data["title"] = exp.title
    data["rows"] = _stored_rows(data["rows"], specs, name, path, rows)
    return data


def _set_unit_groups(exp, data: dict, row_parameters: list, path: Path, progress: bool, check: bool) -> None:
    """Record the experiment's unit groups in a store that lacks them; with ``check`` (rows are
    about to run), refuse a store whose recorded groups are not the catalog's. Every row must
    score the same units."""
    if exp.unit_groups is None or ("unit_groups" in data and not check):
        return
    distinct = {json.dumps(p, sort_keys=True): p for p in row_parameters}
    found = [exp.unit_groups(p, progress=progress) for p in distinct.values()]
    if any(g != found[0] for g in found):
        raise ValueError(f"{path}: the rows of {data['experiment']} score different units (their catalogs "
                         "differ); an experiment's rows share their test units")
    groups = found[0]
    if data.setdefault("unit_groups", groups) != groups:
        raise ValueError(f"{path}: its units are grouped as {data['unit_groups']['by']} over other "
                         "units than this catalog's; choose another --store")


def _stored_rows(rows: dict, specs: dict, name: str, path: Path, chosen,
                 then: str = "are run again") -> dict:
    """The store's rows for these specs: rows no longer specified go, changed ones start over.
    A subset run (``chosen``) that would leave a changed row's old seeds stale is refused."""
    keys = {r: res.parameters_key(p) for r, p in specs.items()}
    changed = [r for r in specs if r in rows and rows[r].get("key") != keys[r]]
    left = [r for r in changed if chosen and r not in chosen]
    if left:
        raise ValueError(f"{path.name}: the parameters of {left} changed since they were stored; "
                         "run them too (or all rows, without --rows), so that no row of the "
                         "file is left with results of other parameters")
    for r in [r for r in rows if r not in specs]:
        print(f"[experiments] {r}: no longer a row of {name}; dropped from {path.name}")
    for r in changed:
        n_old = len(rows[r].get("seeds", {}))
        print(f"[experiments] {r}: parameters changed; its {n_old} stored seed(s) {then}")
    return {r: rows[r] if r in rows and r not in changed else
            {"parameters": params, "key": keys[r], "seeds": {}} for r, params in specs.items()}


def _in_processes(todo, jobs: int, work_args, land, bar) -> None:
    """``_work(*work_args(row, seed))`` for each (row, seed) of ``todo`` in ``jobs`` processes,
    each result landed as it comes.

    At most ``jobs`` rows are handed to the pool at a time: one queued inside the pool could not
    be cancelled, and Ctrl-C would wait for it. Running rows stop on the terminal's Ctrl-C
    themselves (it reaches the whole process group) and resume from their run folders next time.
    """
    queue, running = list(todo), {}
    with cf.ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        while queue or running:
            while queue and len(running) < jobs:
                r, s = queue.pop(0)
                try:
                    running[pool.submit(_work, *work_args(r, s))] = (r, s)
                except cf.BrokenExecutor:    # a worker died: the rows not started wait for a rerun
                    print("[experiments] a worker process died; the rows not yet started are left "
                          "for the next run")
                    queue.clear()
            for fut in cf.wait(running, return_when=cf.FIRST_COMPLETED).done:
                r, s = running.pop(fut)
                try:
                    entry = fut.result()
                except Exception as err:  # the worker itself died (memory, a signal)
                    entry = {"status": "failed", "error": f"worker died: {type(err).__name__}: {err}",
                             "wall_s": 0.0, "finished": res.now()}
                land(r, s, entry)
                bar.set_postfix_str(f"last: {r}, seed {s}")
                bar.update()


def _run_locked(exp, name, catalog, profile, seeds, overrides, specs, rows, device, jobs, path,
                workdir, commit, progress, data) -> Path:
    command = _command(name, catalog, profile, seeds, overrides, rows, device)
    if commit and _git(path.resolve().parent, "rev-parse", "--is-inside-work-tree").returncode != 0:
        print(f"[experiments] warning: {path} is not in a git repository; --commit does nothing")
        commit = False
    stored = data["rows"]
    chosen = list(rows or specs)
    todo = [(r, s) for s in seeds for r in chosen
            if stored[r]["seeds"].get(str(s), {}).get("status") != "ok"]
    commit_id = git_commit()
    run_log = {"started": res.now(), "command": command, "commit": commit_id,
               "device": device, "trained": 0, "reused": len(chosen) * len(seeds) - len(todo), "failed": 0}
    print(f"[experiments] {name} · {catalog} · {profile}: {len(chosen)} rows × {len(seeds)} seeds; "
          f"{run_log['reused']} stored, {len(todo)} to run -> {path}", flush=True)
    t0 = time.perf_counter()

    def land(r: str, s: int, entry: dict) -> None:
        entry["commit"] = commit_id
        data["rows"][r]["seeds"][str(s)] = entry
        # the file records the commands that make all of it; run_log keeps this run's own subset
        data.update(command=_whole_command(name, catalog, profile, data["rows"], overrides, device),
                    overrides=overrides)
        run_log["trained" if entry["status"] == "ok" else "failed"] += 1
        run_log.update(wall_s=round(time.perf_counter() - t0, 1), finished=res.now())
        res.write_store(res.summarise_store(data), path)
        if entry["status"] != "ok":
            print(f"[experiments] {r} seed {s} FAILED: {entry['error']}", flush=True)
        if commit:
            _git_commit_file(path, f"results: {name} {catalog} {profile}: {r}, seed {s} "
                                   f"({entry['status']}, {entry['wall_s']:.0f} s)")

    row_parameters = [stored[r]["parameters"] for r in chosen]
    if not todo:
        # nothing ran: the store is unchanged but for its summary (and groups it lacked)
        _set_unit_groups(exp, data, row_parameters, path, progress, check=False)
        res.write_store(res.summarise_store(data), path)
        print(f"[experiments] every row × seed is stored; nothing to run ({path})")
        return path
    data.setdefault("runs", []).append(run_log)
    threads = max(1, (os.cpu_count() or 1) // jobs)
    if exp.prepare is not None:               # once per distinct row data, before the workers
        distinct = {json.dumps(stored[r]["parameters"], sort_keys=True): stored[r]["parameters"]
                    for r, _ in todo}
        for parameters in distinct.values():
            exp.prepare(parameters, progress=progress)
    _set_unit_groups(exp, data, row_parameters, path, progress, check=True)
    bar = tqdm(total=len(todo), desc=f"{name} {catalog} {profile}", unit="run", disable=not progress,
               dynamic_ncols=True)
    try:
        if jobs == 1:
            for r, s in todo:
                bar.set_postfix_str(f"{r}, seed {s}")
                land(r, s, _work(name, r, stored[r]["parameters"], s, device, str(workdir), threads))
                bar.update()
        else:
            _in_processes(todo, jobs, lambda r, s: (name, r, stored[r]["parameters"], s, device,
                                                    str(workdir), threads), land, bar)
    except KeyboardInterrupt:
        print(f"\n[experiments] interrupted: the finished rows × seeds are in {path}; the same "
              f"command resumes (an interrupted row continues from {workdir} when it is there)")
        raise
    finally:
        bar.close()
    print(f"[experiments] done in {time.perf_counter() - t0:.0f} s: {run_log['trained']} run, "
          f"{run_log['failed']} failed, {run_log['reused']} reused -> {path}")
    return path


def merge_stores(into: str | os.PathLike, sources: Sequence[str | os.PathLike]) -> tuple[Path, int]:
    """Add the rows × seeds of other results files of the same experiment to ``into``.

    Seeds run on several machines, each into a file of its own (``run --store``), add up in
    one file. A row × seed that one file holds is taken from it (an ``ok`` one over a failed
    one); one that both hold with scores must hold the same scores: a seed trained twice on two
    machines differs in its last digits, and which one to keep is the user's choice.

    Parameters
    ----------
    into : path-like
        The results file that receives the seeds; created when missing.
    sources : sequence of path-like
        Results files to add; they are only read.

    Returns
    -------
    (Path of ``into``, number of row × seed entries added)

    Raises
    ------
    mrlib.results.StoreError
        A file that is not a results store, or one of another experiment, catalog, profile,
        ``-p`` settings or row parameters, or a seed stored twice with other scores; ``into`` is
        then left as it was.
    mrlib.paths.LockedError
        A runner is writing ``into``.

    Notebook: 07_evaluation.ipynb
    """
    into, sources = Path(into), [Path(p) for p in sources]
    if not sources:
        raise ValueError("name at least one results file to add")
    others = [res.read_store(p) for p in sources]          # only read: before anything is made
    make_folder(into.parent, "results folder")
    with FolderLock(into.parent, "results file", file=into.name):
        data = res.read_store(into) if into.exists() else {**others[0], "rows": {}, "runs": []}
        name = data["experiment"]
        # the file as the runner opens it: the experiment's rows now, in their order, stale
        # seeds dropped
        specs = experiment_rows(name, data["catalog"], data["profile"], data.get("overrides") or {})
        data.update(title=_experiment(name).title, rows=_stored_rows(
            data["rows"], specs, name, into, None, then="are dropped (run them with this version)"))
        added = sum(_merge_into(data, other, path) for path, other in zip(sources, others))
        for row in data["rows"].values():
            row["seeds"] = dict(sorted(row["seeds"].items(), key=lambda item: int(item[0])))
        devices = {run.get("device", "auto") for run in data["runs"]}
        data["command"] = _whole_command(data["experiment"], data["catalog"], data["profile"],
                                         data["rows"], data.get("overrides"),
                                         devices.pop() if len(devices) == 1 else "auto")
        res.write_store(res.summarise_store(data), into)
    return into, added


def _merge_into(data: dict, other: dict, path: Path) -> int:
    """Add ``other``'s rows × seeds to ``data`` in place (see :func:`merge_stores`); the count."""
    for field in ("experiment", "catalog", "profile", "metrics", "unit", "overrides"):
        if (data.get(field) or None) != (other.get(field) or None):
            raise res.StoreError(f"{path}: its {field} {other.get(field)!r} is not the "
                                 f"{data.get(field)!r} of the file it is added to")
    groups = other.get("unit_groups")
    # a file without groups takes the added file's: they hold for the seeds already there
    if groups is not None and data.setdefault("unit_groups", groups) != groups:
        raise res.StoreError(f"{path}: its units are not grouped as those of the file it is added to")
    added = 0
    for r, row in other["rows"].items():
        if not (isinstance(row, dict) and isinstance(row.get("seeds"), dict) and "key" in row):
            raise res.StoreError(f"{path}: row {r!r} is not a stored row (key, parameters, seeds)")
        mine = data["rows"].get(r)
        if not row["seeds"]:
            continue
        if mine is None:
            print(f"[experiments] {r}: no longer a row of {data['experiment']}; not added from {path.name}")
            continue
        if mine["key"] != row["key"]:
            raise res.StoreError(f"{path}: row {r!r} ran with parameters that are not its parameters "
                                 f"now (key {row['key']}, now {mine['key']}); run it again with this version")
        for s, entry in row["seeds"].items():
            held = mine["seeds"].get(s)
            if held is None or (held.get("status") != "ok" and entry.get("status") == "ok"):
                mine["seeds"][s], added = entry, added + 1
            elif entry.get("status") == "ok" and held.get("per_unit") != entry.get("per_unit"):
                raise res.StoreError(f"{path}: {r}, seed {s} is in both files with other scores "
                                     "(trained twice); keep one of them by hand")
    data["runs"] += [run for run in other.get("runs", []) if run not in data["runs"]]
    return added


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m mrlib.experiments run|show|merge|readme|list`` (see ``--help``).

    Notebook: 07_evaluation.ipynb
    """
    parser = argparse.ArgumentParser(prog="python -m mrlib.experiments", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run an experiment's rows × seeds (skips what is stored)")
    show = sub.add_parser("show", help="print a stored experiment as a Markdown table")
    for p in (run, show):
        p.add_argument("experiment", choices=sorted(EXPERIMENTS))
        p.add_argument("--catalog", default="synthetic",
                       help="synthetic, music21, music21-by-collection, mtat, or a catalog folder (default: synthetic)")
        p.add_argument("--profile", default="quick", help="smoke, quick or paper (default: quick)")
        p.set_defaults(usage=p)
    run.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds (default: 0 1 2)")
    run.add_argument("--rows", nargs="+", metavar="ROW", help="only these rows (names as in the table)")
    run.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                     help="change a parameter of every row; the results go to their own file "
                          "(data/results/overrides/<name>_<catalog>_<profile>_p-<hash>.json) unless --store names one")
    run.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    run.add_argument("--jobs", type=int, default=1, help="rows × seeds side by side (processes)")
    run.add_argument("--store", type=Path, help="results file (default data/results/<name>_<catalog>_<profile>.json)")
    run.add_argument("--commit", action="store_true", help="git-commit the results file after each row × seed")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    merge = sub.add_parser("merge", help="add the rows × seeds of results files run elsewhere")
    merge.add_argument("into", type=Path, help="the results file that receives them")
    merge.add_argument("sources", type=Path, nargs="+", help="results files to add (only read)")
    sub.add_parser("readme", help="rewrite the README's results blocks from data/results/")
    sub.add_parser("list", help="list the experiments and their stored results")
    args = parser.parse_args(argv)
    try:
        return _command_line(args, getattr(args, "usage", parser))
    # a damaged or refused results file, a refused input; another runner holds the file or the
    # work folder. Any other exception is a defect and keeps its traceback.
    except (res.StoreError, _Refused, LockedError) as err:
        print(f"[experiments] error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:      # the runner has said what is stored and how to resume
        return 130


class _Refused(Exception):
    """An input the command line refuses, reported in one line (exit status 2)."""


def _command_line(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.command == "list":
        for name, exp in EXPERIMENTS.items():
            print(f"{name}: {exp.title} ({exp.notebook}); profiles {', '.join(exp.profiles)}")
        stored = res.stored_results()
        if stored:      # a heading of their own, so they do not read as the last experiment's
            print(f"stored in {res.results_dir()}:")
        for stem, store in stored.items():
            counts = [len(res._ok_seeds(r)) for r in store["rows"].values()] or [0]
            seeds = "–".join(map(str, sorted({min(counts), max(counts)})))
            print(f"  {stem}: {len(store['rows'])} rows, {seeds} seeds per row")
        return 0
    if args.command == "readme":
        stores = res.stored_results()
        committed = repo_root() / "data" / "results"
        if res.results_dir().resolve() != committed.resolve():
            # the README shows the committed files: a claim whose table is not in another
            # folder would be rewritten as "not run"
            raise _Refused(f"readme writes the results of {committed} into the README, but "
                             f"MRLIB_RESULTS points at {res.results_dir()}; unset it (or copy the "
                             "files into data/results/)")
        for stem, store in stores.items():
            try:
                print(f"[experiments] {stem} -> {res.update_readme_block(store)}")
            except ValueError as err:
                print(f"[experiments] {stem}: not in the README ({err})")
        print(f"[experiments] claims -> {update_readme_claims('quick')}")
        return 0
    try:        # the public doors: what they refuse is the user's input
        if args.command == "merge":
            path, added = merge_stores(args.into, args.sources)
        elif args.command == "show":    # a profile the experiment lacks: no store can exist
            _experiment(args.experiment, args.profile)
            path = res.store_path(args.experiment, args.catalog, args.profile)
            if not path.exists():
                stored = [f"--catalog {s['catalog']} --profile {s['profile']}"
                          for s in res.stored_results(args.experiment).values()]
                raise FileNotFoundError(
                    f"{path} does not exist: run `python -m mrlib.experiments run {args.experiment}"
                    f" --catalog {args.catalog} --profile {args.profile}` first"
                    + (f" (stored for {args.experiment}: {'; '.join(stored)})" if stored else ""))
        else:
            path = run_experiment(args.experiment, args.catalog, args.profile, args.seeds,
                                  overrides=parse_params(args.param, parser), rows=args.rows,
                                  device=args.device, jobs=args.jobs, store=args.store,
                                  commit=args.commit, progress=not args.quiet)
    except (ValueError, TypeError, FileNotFoundError) as err:
        raise _Refused(err) from None
    if args.command == "merge":
        print(f"[experiments] {added} row × seed(s) added -> {path}")
        return 0
    store = res.read_store(path)
    print(res.results_markdown(store))
    if args.command == "show":
        return 0
    # the exit status is this command's: a row or seed it did not ask for is not its failure
    asked = set(args.rows or store["rows"]), {str(s) for s in args.seeds}
    failed = [f"{r} seed {s}" for r, row in store["rows"].items() if r in asked[0]
              for s, e in row["seeds"].items() if s in asked[1] and e.get("status") != "ok"]
    if failed:
        print(f"[experiments] failed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
