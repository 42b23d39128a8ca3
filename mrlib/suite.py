"""Run the notebooks in order with papermill and index their results.

``python -m mrlib.suite run --profile smoke|quick|paper [-p name=value ...] [--only 03 ...]``
(filled in below); notebooks call :func:`record` to put a number in the results index.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

__all__ = ["record", "run_suite", "run_notebook", "check_parameters", "DEFAULT_CELL_TIMEOUT_S", "run_table2_sweep", "table2_configs",
           "table2_markdown", "update_readme", "save_table2", "stored_table2s", "table2_side_by_side",
           "PROFILES", "NotebookFailed"]

RECORD_ENV = "MRLIB_RECORD"


def _jsonable(value: Any) -> Any:
    """Numbers, strings, lists and dicts as plain JSON (numpy scalars and arrays converted)."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def record(name: str, value: Any) -> Any:
    """Record a result (a metric, a count, a table) for the suite's results index.

    Inside a suite run (``$MRLIB_RECORD`` names a JSON file) the value is merged into that
    file under ``name``; outside one this only returns the value, so a notebook runs the same
    in JupyterLab, under nbval and in the suite.

    Parameters
    ----------
    name : str
        Key in the results index, e.g. ``"map@20"`` or ``"table2"``.
    value : JSON-serialisable (numbers, str, lists, dicts; numpy values are converted)

    Returns
    -------
    value, unchanged.

    Notebook: 00_overview.ipynb
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"record() needs a non-empty string name, got {name!r}")
    path = os.environ.get(RECORD_ENV)
    if path:
        from mrlib.paths import write_json_atomic

        path = Path(path)
        data = json.loads(path.read_text()) if path.exists() else {}
        data[name] = _jsonable(value)
        write_json_atomic(data, path)
    return value


# --------------------------------------------------------------------------------------------
# The suite runner
# --------------------------------------------------------------------------------------------

#: Parameter sets per profile. ``quick`` is the notebooks' own defaults (what is committed);
#: ``smoke`` shrinks everything for tests; ``paper`` is the papers' scale, for a GPU box.
#: A notebook receives only the names its ``parameters`` cell declares.
PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {
        "n_tracks": 60,
        "duration_s": 12.0,
        "patch_len": 64,
        "width": 0.125,
        "epochs": 1,
        "n_folds": 3,
        "paper_scale": False,
        "n_retrieval": 20000,
    },
    "quick": {},
    "paper": {
        "n_tracks": 14246,
        "duration_s": 30.0,
        "patch_len": 512,
        "width": 1.0,
        "epochs": 100,
        "n_pos": 15,
        "n_neg": 250,
        "paper_scale": True,
        "n_retrieval": 1000000,
        "device": "auto",
    },
}


#: Per-cell time limit (seconds) of each profile when ``--timeout`` is not given: a cell that
#: hangs (a kernel gone idle in a widget cell, seen under nbclient) fails the notebook instead
#: of holding the suite forever. ``quick`` cells take at most a few minutes on 2 cores;
#: ``paper`` cells train for hours on a GPU.
DEFAULT_CELL_TIMEOUT_S: dict[str, int] = {"smoke": 900, "quick": 3600, "paper": 7 * 24 * 3600}


def notebooks_dir() -> Path:
    """The folder of the ordered notebooks (``<repo>/notebooks``).

    Notebook: 00_overview.ipynb
    """
    from mrlib.paths import repo_root

    return repo_root() / "notebooks"


def list_notebooks(only: list[str] | None = None, folder: Path | None = None) -> list[Path]:
    """The suite's notebooks in order (``NN_name.ipynb``), optionally those whose number or
    name starts with one of ``only`` (``["03", "07_evaluation"]``).

    Notebook: 00_overview.ipynb
    """
    folder = Path(folder) if folder else notebooks_dir()
    found = sorted(p for p in folder.glob("[0-9][0-9]*.ipynb"))
    if not only:
        return found
    chosen = [p for p in found if any(p.stem.startswith(o) or p.name == o for o in only)]
    missing = [o for o in only if not any(p.stem.startswith(o) or p.name == o for p in found)]
    if missing:
        raise ValueError(
            f"--only {missing}: no such notebook; available: {[p.stem for p in found]}")
    return chosen


def parse_value(text: str) -> Any:
    """``-p name=value`` values: JSON/Python literals where they parse (1, 0.5, true, "x"),
    else the plain string.

    Notebook: 00_overview.ipynb
    """
    import ast

    lowered = {"true": True, "false": False, "none": None, "null": None}
    if text.lower() in lowered:
        return lowered[text.lower()]
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def declared_parameters(path: Path) -> dict[str, Any]:
    """The names and defaults of a notebook's ``parameters`` cell.

    Every top-level ``name = value`` of the cell tagged ``parameters``, read with Python's own
    parser (papermill's line-based one drops a line whose comment holds ``=`` or ``;``).
    Defaults that are Python literals (numbers, strings, None, lists, dicts) are returned as
    values; any other expression as its source text.

    Raises
    ------
    ValueError
        When the notebook has no cell tagged ``parameters``, or the cell is not valid Python.

    Notebook: 00_overview.ipynb
    """
    import ast

    import nbformat

    return {name: value for name, (value, _) in _parameters_cell(path).items()}


def _parameters_cell(path: Path) -> dict[str, tuple[Any, bool]]:
    """``name -> (default, is_literal)`` of a notebook's parameters cell."""
    import ast

    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    cells = [c for c in nb.cells
             if c.cell_type == "code" and "parameters" in c.metadata.get("tags", [])]
    if not cells:
        raise ValueError(f"{Path(path).name} has no code cell tagged 'parameters'")
    source = cells[0].source
    try:
        tree = ast.parse(source)
    except SyntaxError as err:
        raise ValueError(f"{Path(path).name}: its parameters cell is not valid Python: {err}") from None
    out: dict[str, tuple[Any, bool]] = {}
    for node in tree.body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if len(targets) != 1 or not isinstance(targets[0], ast.Name) or node.value is None:
                continue
            try:
                out[targets[0].id] = (ast.literal_eval(node.value), True)
            except ValueError:
                out[targets[0].id] = (ast.get_source_segment(source, node.value), False)
    return out


def _type_name(value: Any) -> str:
    return "None" if value is None else type(value).__name__


def _fits(value: Any, default: Any) -> bool:
    """Whether ``value`` may replace a parameter whose default is ``default``."""
    if default is None:
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, (list, tuple)):
        return isinstance(value, (list, tuple))
    return isinstance(value, type(default))


def check_parameters(overrides: dict[str, Any], notebooks: list[Path]) -> None:
    """Refuse ``-p`` values before anything runs: a name that no selected notebook declares
    (with the nearest declared names), or a value whose type differs from a notebook's default
    (``int`` for a ``float`` default is fine; a ``None`` default takes anything).

    Raises
    ------
    ValueError
        Naming every bad parameter, what was given and what is expected.

    Notebook: 00_overview.ipynb
    """
    import difflib

    declared = {path: _parameters_cell(path) for path in notebooks}
    names = sorted({n for cell in declared.values() for n in cell})
    problems = []
    for name, value in overrides.items():
        where = [(path, cell[name]) for path, cell in declared.items() if name in cell]
        if not where:
            near = difflib.get_close_matches(name, names, n=3)
            problems.append(f"-p {name}={value!r}: no selected notebook declares {name!r}"
                            + (f" (did you mean {', '.join(near)}?)" if near else
                               f"; declared: {', '.join(names)}"))
            continue
        for path, (default, literal) in where:
            if literal and not _fits(value, default):
                problems.append(f"-p {name}={value!r}: {path.stem} expects {_type_name(default)} "
                                f"(its default is {default!r}), got {_type_name(value)}")
                break
    if problems:
        raise ValueError("bad -p parameter(s), nothing was run:\n  " + "\n  ".join(problems))


def versions() -> dict[str, str]:
    """Versions of Python and the packages that shape the results.

    Notebook: 00_overview.ipynb
    """
    import platform
    from importlib import metadata

    out = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in ("mrlib", "torch", "numpy", "scipy", "librosa", "scikit-learn", "faiss-cpu",
                "papermill", "music21"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def _strip_run_metadata(nb_path: Path) -> None:
    """Drop papermill's per-cell timing metadata so a committed notebook does not churn."""
    import nbformat

    nb = nbformat.read(nb_path, as_version=4)
    for cell in nb.cells:
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
    nb.metadata.pop("papermill", None)
    nbformat.write(nb, nb_path)


class NotebookFailed(RuntimeError):
    """A notebook of the suite raised: names the notebook, the cell and the error."""


def run_notebook(path: Path, out_path: Path, parameters: dict[str, Any],
                 timeout_s: int | None = None) -> dict[str, Any]:
    """Execute one notebook with papermill; return its entry for the results index.

    Parameters
    ----------
    path : Path
        The source notebook.
    out_path : Path
        Where the executed copy goes (kept also when the notebook fails).
    parameters : dict
        Values injected into the ``parameters`` cell (only names the notebook declares).
    timeout_s : int, optional
        Per-cell time limit in seconds (None or 0: none); a cell that runs longer fails the
        notebook.

    Returns
    -------
    dict with ``status``, ``parameters``, ``wall_s``, ``metrics`` (what the notebook recorded).

    Raises
    ------
    NotebookFailed
        With the notebook, the failing cell's number and the error (also for a cell that ran
        past ``timeout_s`` and for a kernel that died).

    Notebook: 00_overview.ipynb
    """
    import time

    import papermill
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    out_path.parent.mkdir(parents=True, exist_ok=True)
    record_path = out_path.with_suffix(".results.json")
    record_path.unlink(missing_ok=True)
    old = os.environ.get(RECORD_ENV)
    os.environ[RECORD_ENV] = str(record_path.resolve())
    t0 = time.perf_counter()
    try:
        papermill.execute_notebook(
            str(path), str(out_path), parameters=parameters, cwd=str(path.parent),
            kernel_name="python3", progress_bar=False, execution_timeout=timeout_s or None,
            report_mode=False)
    except PapermillExecutionError as err:
        raise NotebookFailed(
            f"{path.name} failed in cell {err.exec_count} (code cell #{err.cell_index}): "
            f"{err.ename}: {err.evalue}\n  executed copy kept at {out_path}") from None
    except CellTimeoutError as err:
        raise NotebookFailed(
            f"{path.name}: a cell ran past the per-cell time limit of {timeout_s} s ({err}); "
            f"raise it with --timeout SECONDS (0: none)\n  executed copy kept at {out_path}") from None
    except DeadKernelError as err:
        raise NotebookFailed(f"{path.name}: the kernel died ({err}); out of memory?\n  "
                             f"executed copy kept at {out_path}") from None
    finally:
        if old is None:
            os.environ.pop(RECORD_ENV, None)
        else:
            os.environ[RECORD_ENV] = old
    wall = time.perf_counter() - t0
    metrics = json.loads(record_path.read_text()) if record_path.exists() else {}
    return {"status": "ok", "parameters": _jsonable(parameters), "wall_s": round(wall, 2),
            "metrics": metrics, "output": str(out_path)}


#: The notebook that trains one system (a row of Table 2 when given ``train_config``) and the
#: notebook that evaluates the rows (reads them from ``table2_dir``).
TRAIN_NOTEBOOK, TABLE2_NOTEBOOK = "06_training", "07_evaluation"


def table2_configs(params: dict[str, Any]) -> dict[str, dict]:
    """The Table-2 rows that notebook 07 evaluates, given the parameters it will run with.

    The same mapping as 07's first cells (catalog, size, patch length, width, budget, rate,
    seeds); 07 checks every run's configuration against its own and stops on a difference,
    so a drift between the two cannot pass unnoticed.

    Notebook: 07_evaluation.ipynb
    """
    from mrlib.evaluate import table2_systems

    return table2_systems(
        catalog=params["catalog"], n_tracks=params["n_tracks"],
        catalog_seed=params["catalog_seed"], catalog_kwargs={"duration_s": params["duration_s"]},
        patch_len=params["patch_len"], width=params["width"], epochs=params["epochs"],
        steps_per_epoch=params["steps_per_epoch"], lr=params["lr"], seed=params["seed"],
        device=params["device"], n_jobs=params["n_jobs"])


def run_table2_sweep(train_nb: Path, eval_params: dict[str, Any], out_dir: Path,
                     index: dict, index_path: Path, timeout_s: int | None = None) -> Path:
    """Train every row of Table 2 by running the training notebook once per row.

    Each row is a papermill run of ``06_training.ipynb`` with ``train_config`` set to the
    row's :class:`~mrlib.train.TrainConfig` fields; its run folder is
    ``<out_dir>/table2/<run_name>`` and its executed copy ``<out_dir>/table2/<run_name>.ipynb``.
    A row whose run finished earlier with the same configuration is not trained again (an
    interrupted suite resumes). Entries go to ``index["table2_runs"]``.

    Returns
    -------
    Path of the folder to pass to notebook 07 as ``table2_dir``.

    Notebook: 07_evaluation.ipynb
    """
    sweep_dir = out_dir / "table2"
    done = index.setdefault("table2_runs", {})
    configs = table2_configs(eval_params)
    for i, (row, cfg) in enumerate(configs.items(), 1):
        name = cfg["run_name"]
        params = {"train_config": cfg, "out_dir": str(sweep_dir), "run_name": name,
                  "show_solutions": False}
        before = done.get(name, {})
        if (before.get("status") == "ok" and before.get("parameters") == _jsonable(params)
                and (sweep_dir / name / "summary.json").exists()):
            print(f"[suite] Table 2 row {i}/{len(configs)} {row!r}: finished earlier, kept")
            continue
        print(f"[suite] Table 2 row {i}/{len(configs)} {row!r} -> {train_nb.name}", flush=True)
        try:
            entry = run_notebook(train_nb, sweep_dir / f"{name}.ipynb", params, timeout_s)
        except NotebookFailed as err:
            done[name] = {"status": "failed", "row": row, "error": str(err),
                          "parameters": _jsonable(params)}
            index_path.write_text(json.dumps(index, indent=1))
            raise
        done[name] = {"row": row, **entry}
        index_path.write_text(json.dumps(index, indent=1))
    return sweep_dir


def run_suite(profile: str = "quick", overrides: dict[str, Any] | None = None,
              only: list[str] | None = None, out_dir: Path | None = None,
              inplace: bool = False, timeout_s: int | None = None,
              notebooks: Path | None = None) -> Path:
    """Execute the notebooks in order into ``runs/<profile>/`` and write ``results.json``.

    Parameters
    ----------
    profile : {"smoke", "quick", "paper"}
        Parameter set (see :data:`PROFILES`); ``quick`` = the notebooks' defaults.
    overrides : dict, optional
        ``-p name=value`` pairs; they win over the profile.
    only : list of str, optional
        Notebook numbers or names to run (default: all, in order).
    out_dir : Path, optional
        Default ``runs_dir() / profile`` (``-p catalog=music21`` adds ``_music21``).
    inplace : bool
        Also copy each executed notebook back over ``notebooks/`` (to refresh the committed
        outputs; only sensible with the ``quick`` profile and no overrides).
    timeout_s : int, optional
        Per-cell time limit in seconds; default :data:`DEFAULT_CELL_TIMEOUT_S` of the profile
        (0: none).
    notebooks : Path, optional
        Folder of the notebooks (default ``<repo>/notebooks``).

    Returns
    -------
    Path of the results index (``results.json``), which is updated notebook by notebook, so
    an interrupted suite keeps what finished.

    The index is replaced atomically at each update. A notebook's entry says ``"running"``
    before it starts, then ``"ok"``, ``"failed"`` or ``"interrupted"`` (Ctrl-C, or a suite
    that was killed: the next run turns its ``"running"`` entries into ``"interrupted"``). An
    index that cannot be read is kept as ``results.json.corrupt-<time>`` and a new one
    started. The output folder is locked while the suite runs, and ``-p`` parameters are
    checked (:func:`check_parameters`) before anything runs.

    Notebook: 00_overview.ipynb
    """
    from mrlib.paths import runs_dir

    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose from {sorted(PROFILES)}")
    overrides = dict(overrides or {})
    if inplace and (profile != "quick" or overrides):
        raise ValueError("--inplace refreshes the committed notebooks, which hold the quick "
                         "profile's default run: use it with --profile quick and no -p")
    wanted = {**PROFILES[profile], **overrides}
    if timeout_s is None:
        timeout_s = DEFAULT_CELL_TIMEOUT_S[profile]
    folder = Path(notebooks) if notebooks else notebooks_dir()
    notebooks = list_notebooks(only, folder)
    if not notebooks:
        raise FileNotFoundError(f"no notebooks found in {folder}")
    check_parameters(overrides, notebooks)
    if out_dir is None:
        suffix = f"_{overrides['catalog']}" if overrides.get("catalog", "synthetic") != "synthetic" else ""
        out_dir = runs_dir() / f"{profile}{suffix}"
    out_dir = Path(out_dir)
    from mrlib.paths import FolderLock

    with FolderLock(out_dir, "suite run"):
        return _run_suite_locked(profile, overrides, wanted, notebooks, out_dir, inplace, timeout_s)


def _load_index(index_path: Path) -> dict:
    """The results index, with the ``running`` entries of a dead suite marked ``interrupted``;
    an unreadable file is kept aside and a new index started."""
    import time

    if not index_path.exists():
        return {}
    try:
        index = json.loads(index_path.read_text())
        if not isinstance(index, dict):
            raise ValueError(f"a JSON {type(index).__name__}, not an object")
    except ValueError as err:
        keep = index_path.with_name(f"{index_path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
        os.replace(index_path, keep)
        print(f"[suite] {index_path} could not be read ({err}); kept as {keep.name}, starting a "
              "new index", flush=True)
        return {}
    for name, entry in (index.get("notebooks") or {}).items():
        if isinstance(entry, dict) and entry.get("status") == "running":
            entry["status"] = "interrupted"
            entry["error"] = "the suite stopped while this notebook ran (killed?)"
            print(f"[suite] {name}: marked interrupted (an earlier suite stopped while it ran)",
                  flush=True)
    return index


def _run_suite_locked(profile: str, overrides: dict, wanted: dict, notebooks: list[Path],
                      out_dir: Path, inplace: bool, timeout_s: int | None) -> Path:
    import shutil
    import time
    from datetime import datetime, timezone

    from mrlib.paths import write_json_atomic

    index_path = out_dir / "results.json"
    index = _load_index(index_path)
    index.update({"profile": profile, "overrides": _jsonable(overrides), "versions": versions()})
    index.setdefault("notebooks", {})
    t_suite = time.perf_counter()
    for path in notebooks:
        declared = declared_parameters(path)
        params = {k: v for k, v in wanted.items() if k in declared}
        if (path.stem == TABLE2_NOTEBOOK and "table2_dir" in declared
                and params.get("table2_dir") is None):
            # Table 2's rows are papermill runs of the training notebook, as the issue asks;
            # 07 then reads them instead of training its own copies.
            train_nb = path.parent / f"{TRAIN_NOTEBOOK}.ipynb"
            if train_nb.exists():
                params["table2_dir"] = str(run_table2_sweep(
                    train_nb, {**declared, **params}, out_dir, index, index_path, timeout_s))
        out_path = out_dir / path.name
        print(f"[suite] {path.name}  {params or '(defaults)'}", flush=True)
        entry = {"started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                 "status": "running", "parameters": _jsonable(params), "output": str(out_path)}
        index["notebooks"][path.stem] = entry
        write_json_atomic(index, index_path)
        try:
            entry.update(run_notebook(path, out_path, params, timeout_s=timeout_s))
        except NotebookFailed as err:
            entry.update({"status": "failed", "error": str(err)})
            write_json_atomic(index, index_path)
            raise
        except BaseException as err:
            entry.update({"status": "interrupted", "error": f"{type(err).__name__}: {err}"})
            write_json_atomic(index, index_path)
            raise
        write_json_atomic(index, index_path)
        print(f"[suite] {path.name} ok in {entry['wall_s']:.1f} s", flush=True)
        if inplace:
            shutil.copyfile(out_path, path)
            _strip_run_metadata(path)
    index["wall_s"] = round(time.perf_counter() - t_suite, 2)
    write_json_atomic(index, index_path)
    print(f"[suite] results index: {index_path}")
    return index_path


README_TABLE2 = ("<!-- table2:start -->", "<!-- table2:end -->")


def _readme_markers(catalog: str) -> tuple[str, str]:
    """The README block of a catalog's Table 2: ``table2`` (synthetic) or ``table2-<catalog>``."""
    if catalog == "synthetic":
        return README_TABLE2
    return f"<!-- table2-{catalog}:start -->", f"<!-- table2-{catalog}:end -->"


def _table2_entry(index: dict, index_path: Path) -> dict:
    """Notebook 07's finished entry of a results index, or a KeyError that says what to run."""
    nb = index.get("notebooks", {}).get(TABLE2_NOTEBOOK, {})
    if nb.get("status") != "ok" or not nb.get("metrics", {}).get("table2"):
        raise KeyError(f"{index_path}: no finished {TABLE2_NOTEBOOK} with a recorded table2 "
                       f"(run the suite with notebook 07 first)")
    return nb


def _run_catalog(nb: dict) -> str:
    """The catalog a finished 07 entry evaluated on (from the row configurations it recorded)."""
    configs = nb.get("metrics", {}).get("table2_configs") or {}
    catalogs = {c.get("catalog") for c in configs.values()} or {nb.get("parameters", {}).get("catalog")}
    catalogs.discard(None)
    return catalogs.pop() if len(catalogs) == 1 else "synthetic"


def _ci_cell(entry: dict) -> str:
    """A stored ``{"mean", "ci"}`` entry (already in percent) as a Table-2 cell, ``"5.98 ± 0.40"``."""
    from mrlib.evaluate import format_ci

    return format_ci(entry["mean"], entry["ci"], scale=1.0)


def table2_markdown(index_path: Path) -> str:
    """Table 2 of a suite run as a Markdown table, from its results index.

    Percent, mean ± half-width of the 95 % interval over the test queries, one row per
    system, followed by the run's profile, overrides, number of queries and date.

    Raises
    ------
    KeyError
        When the run has no Table 2 (notebook 07 did not finish in it).

    Notebook: 07_evaluation.ipynb
    """
    index = json.loads(Path(index_path).read_text())
    nb = _table2_entry(index, index_path)
    table = nb["metrics"]["table2"]
    rows = list(table)
    cols = [c for c in table[rows[0]] if c != "n_queries"]
    lines = ["| system | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for row in rows:
        cells = [_ci_cell(table[row][c]) for c in cols]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    params = _run_parameters(nb)
    where = f"profile `{index.get('profile')}`" + (
        f", overrides `{json.dumps(index['overrides'])}`" if index.get("overrides") else "")
    lines.append("")
    lines.append(f"{table[rows[0]].get('n_queries', '?')} test queries; {where}; "
                 f"notebook 07 parameters `{json.dumps(params, sort_keys=True)}`; "
                 f"run started {nb.get('started', '?')}.")
    return "\n".join(lines)


def update_readme(index_path: Path, readme: Path | None = None) -> Path:
    """Replace the README's Table-2 block of the run's catalog by the run's table.

    The synthetic catalog's block sits between the ``table2`` markers, another catalog's
    between ``table2-<catalog>`` markers (e.g. ``<!-- table2-music21:start -->``).

    Notebook: 07_evaluation.ipynb
    """
    from mrlib.paths import repo_root

    index_path = Path(index_path)
    catalog = _run_catalog(_table2_entry(json.loads(index_path.read_text()), index_path))
    readme = Path(readme) if readme else repo_root() / "README.md"
    text = readme.read_text()
    start, end = _readme_markers(catalog)
    if start not in text or end not in text:
        raise ValueError(f"{readme} has no {start} ... {end} block to fill")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(f"{head}{start}\n{table2_markdown(index_path)}\n{end}{tail}")
    return readme


def _run_parameters(nb: dict) -> dict:
    """A notebook entry's parameters, paths inside the repository made relative to it (what is
    printed into the README or stored in ``data/`` does not name this machine)."""
    from mrlib.paths import repo_root

    def relative(value: Any) -> Any:
        if isinstance(value, str) and os.path.isabs(value):
            try:
                return str(Path(value).relative_to(repo_root()))
            except ValueError:
                return value
        return value

    return {k: relative(v) for k, v in nb.get("parameters", {}).items()}


def save_table2(index_path: Path, out: Path | None = None) -> Path:
    """Store a suite run's Table 2 as a small JSON file, to commit and compare across catalogs.

    The file holds the table (percent, mean and 95 % half-width per row and metric), the
    catalog, its size, the number of queries, notebook 07's parameters, the run's profile,
    overrides, start time, wall time and library versions, the best row and the bar check --
    enough to say where every number came from. Notebook 07 shows the stored tables of the
    other catalogs next to its own (:func:`stored_table2s`).

    Parameters
    ----------
    index_path : Path
        A suite run's ``results.json`` with a finished notebook 07.
    out : Path, optional
        Default ``<repo>/data/table2_<catalog>.json``.

    Returns
    -------
    Path of the written file.

    Raises
    ------
    KeyError
        When the run has no finished notebook 07.

    Notebook: 07_evaluation.ipynb
    """
    from mrlib.paths import repo_root

    index_path = Path(index_path)
    index = json.loads(index_path.read_text())
    nb = _table2_entry(index, index_path)
    metrics = nb["metrics"]
    catalog = _run_catalog(nb)
    configs = metrics.get("table2_configs") or {}
    first = next(iter(configs.values()), {})
    overrides = index.get("overrides") or {}
    command = "python -m mrlib.suite run --profile " + str(index.get("profile")) + "".join(
        f" -p {k}={v}" for k, v in overrides.items())
    stored = {
        "catalog": catalog, "n_tracks": first.get("n_tracks"),
        "n_queries": metrics.get("table2_n_queries"), "command": command,
        "profile": index.get("profile"), "overrides": overrides,
        "parameters": _run_parameters(nb), "started": nb.get("started"),
        "wall_s": nb.get("wall_s"), "versions": index.get("versions", {}),
        "best": metrics.get("table2_best"), "bar": metrics.get("table2_bar"),
        "at_auc": metrics.get("table2_at_auc"), "table2": metrics["table2"]}
    out = Path(out) if out else repo_root() / "data" / f"table2_{catalog}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(stored, indent=1) + "\n")
    return out


def stored_table2s(folder: Path | None = None) -> dict[str, dict]:
    """The Table-2 files written by :func:`save_table2`, by catalog (``data/table2_*.json``).

    Notebook: 07_evaluation.ipynb
    """
    from mrlib.paths import repo_root

    folder = Path(folder) if folder else repo_root() / "data"
    out = {}
    for path in sorted(folder.glob("table2_*.json")):
        record_ = json.loads(path.read_text())
        if "table2" not in record_ or "catalog" not in record_:
            raise ValueError(f"{path} is not a stored Table 2 (write it with "
                             f"`python -m mrlib.suite table2 --run <run folder> --save`)")
        out[record_["catalog"]] = record_
    return out


def table2_side_by_side(tables: dict[str, dict], metrics: tuple[str, ...] = ("MAP@20", "nDCG@20")):
    """Several Table 2s (``{label: table}``, tables as :func:`mrlib.evaluate.results_record`
    writes them) as one frame: rows = systems, columns = (metric, label), ``"mean ± ci"`` cells.

    A system missing from a table gets an empty cell.

    Notebook: 07_evaluation.ipynb
    """
    import pandas as pd

    if not tables:
        raise ValueError("tables is empty; pass {label: table2 record}")
    rows = list(dict.fromkeys(r for t in tables.values() for r in t))
    cells = {(m, label): [_ci_cell(t[r][m]) if r in t and m in t[r] else "" for r in rows]
             for m in metrics for label, t in tables.items()}
    return pd.DataFrame(cells, index=rows)


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m mrlib.suite run --profile quick [-p name=value ...] [--only NN ...]``.

    Notebook: 00_overview.ipynb
    """
    import argparse

    parser = argparse.ArgumentParser(prog="python -m mrlib.suite", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute the notebooks in order with papermill")
    run.add_argument("--profile", default="quick", choices=sorted(PROFILES))
    run.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                     help="override a parameter in every notebook that declares it")
    run.add_argument("--only", nargs="+", metavar="NN", help="notebook numbers or names")
    run.add_argument("--out", type=Path, help="output folder (default runs/<profile>)")
    run.add_argument("--inplace", action="store_true",
                     help="refresh the committed notebooks' outputs (quick profile only)")
    run.add_argument("--timeout", type=int, default=None,
                     help="per-cell time limit, seconds (default per profile: "
                          + ", ".join(f"{k} {v}" for k, v in DEFAULT_CELL_TIMEOUT_S.items())
                          + "; 0: none)")
    sub.add_parser("list", help="list the notebooks and their parameters")
    tab = sub.add_parser("table2", help="print a run's Table 2 as Markdown")
    tab.add_argument("--run", type=Path, default=None,
                     help="a suite run folder (default runs/quick)")
    tab.add_argument("--readme", action="store_true",
                     help="also write it into README.md between its catalog's table2 markers")
    tab.add_argument("--save", action="store_true",
                     help="also store it as data/table2_<catalog>.json (notebook 07 compares them)")
    args = parser.parse_args(argv)

    if args.command == "table2":
        from mrlib.paths import runs_dir

        index_path = (args.run or runs_dir() / "quick") / "results.json"
        if not index_path.exists():
            parser.error(f"{index_path} does not exist: run the suite first")
        print(table2_markdown(index_path))
        if args.readme:
            print(f"[suite] written into {update_readme(index_path)}")
        if args.save:
            print(f"[suite] stored as {save_table2(index_path)}")
        return 0

    if args.command == "list":
        for path in list_notebooks():
            print(f"{path.name}: {declared_parameters(path)}")
        return 0
    from mrlib.paths import LockedError

    overrides = {}
    for item in args.param:
        if "=" not in item:
            parser.error(f"-p expects NAME=VALUE, got {item!r}")
        name, value = item.split("=", 1)
        if not name.strip():
            parser.error(f"-p expects NAME=VALUE, got {item!r}")
        overrides[name.strip()] = parse_value(value.strip())
    if args.timeout is not None and args.timeout < 0:
        parser.error(f"--timeout must be >= 0 seconds (0: none), got {args.timeout}")
    try:
        run_suite(args.profile, overrides, args.only, args.out, args.inplace, args.timeout)
    except (ValueError, LockedError) as err:
        print(f"[suite] {err}", file=sys.stderr, flush=True)
        return 2
    except NotebookFailed as err:
        print(f"[suite] FAILED: {err}", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
