"""Run the notebooks in order with papermill and index their results.

``python -m mrlib.suite run --profile smoke|quick|paper [-p name=value ...] [--only 03 ...]``
executes the notebooks into ``runs/<profile>/`` (with ``-p`` settings, a folder named by
:func:`run_folder_name`) and writes ``results.json`` there;
a notebook puts a number in that index with ``mrlib.suite.record(name, value)``.
"""
from __future__ import annotations

import argparse
import ast
import difflib
import json
import logging
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from queue import Empty
from typing import Any

from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.channels import AsyncZMQSocketChannel
from jupyter_client.manager import AsyncKernelManager
from traitlets import Type

from mrlib.checks import check_choice, check_int
from mrlib.paths import (FolderLock, LockedError, atomic_path, package_versions, path_argument,
                         read_json_or_empty, repo_root, runs_dir, write_json_atomic)
from mrlib.paper_scale import PAPER_SCALE

__all__ = ["record", "run_suite", "run_notebook", "check_parameters", "run_folder_name",
           "DEFAULT_CELL_TIMEOUT_S", "PROFILES", "NotebookFailed"]

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


def record(name: str, value: Any) -> None:
    """Record a result (a metric, a count, a table) for the suite's results index.

    Inside a suite run (``$MRLIB_RECORD`` names a JSON file) the value is merged into that
    file under ``name``; outside one nothing is written, so a notebook runs the same in
    JupyterLab, under nbval and in the suite. It returns nothing, so a ``record(...)`` that
    ends a cell adds no output to the notebook: the reader sees the value where the notebook
    prints or plots it.

    Parameters
    ----------
    name : str
        Key in the results index, e.g. ``"map@20"`` or ``"table2"``.
    value : JSON-serialisable (numbers, str, lists, dicts; numpy values are converted)

    Notebook: 00_overview.ipynb
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"record() needs a non-empty string name, got {name!r}")
    path = os.environ.get(RECORD_ENV)
    if path:
        path = Path(path)
        # strict: a record another process damaged is an error, not a file to write over
        data = json.loads(path.read_text()) if path.exists() else {}
        if not isinstance(data, dict):
            raise ValueError(f"{path} (${RECORD_ENV}) must hold a JSON object, got {type(data).__name__}")
        data[name] = _jsonable(value)
        write_json_atomic(data, path)


# --------------------------------------------------------------------------------------------
# The suite runner
# --------------------------------------------------------------------------------------------

#: Parameter sets per profile. ``quick`` is the notebooks' own defaults (what is committed);
#: ``smoke`` shrinks everything for tests; ``paper`` is the papers' scale, for a GPU box (the
#: training fields from :data:`mrlib.paper_scale.PAPER_SCALE`).
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
        **{k: PAPER_SCALE[k] for k in ("n_tracks", "patch_len", "width", "epochs", "n_pos", "n_neg")},
        "duration_s": 30.0,
        "paper_scale": True,
        "n_retrieval": 1000000,
        "device": "auto",
    },
}


#: Per-cell time limit (seconds) of each profile when ``--timeout`` is not given: a cell that
#: hangs fails the notebook instead of holding the suite forever. ``quick`` cells take at most a
#: few minutes on 2 cores; ``paper`` cells train for hours on a GPU.
DEFAULT_CELL_TIMEOUT_S: dict[str, int] = {"smoke": 900, "quick": 3600, "paper": 7 * 24 * 3600}


def notebooks_dir() -> Path:
    """The folder of the ordered notebooks (``<repo>/notebooks``).

    Notebook: 00_overview.ipynb
    """
    return repo_root() / "notebooks"


def list_notebooks(only: list[str] | None = None, folder: Path | None = None) -> list[Path]:
    """The suite's notebooks in order (``NN_name.ipynb``), optionally those whose number or
    name starts with one of ``only`` (``["03", "07_evaluation"]``).

    Notebook: 00_overview.ipynb
    """
    folder = Path(folder) if folder else notebooks_dir()
    found = sorted(folder.glob("[0-9][0-9]*.ipynb"))
    if not only:
        return found
    blank = [o for o in only if not str(o).strip()]
    if blank:   # every name starts with "": an empty --only would run the whole suite
        raise ValueError(f"an empty notebook name {blank} matches every notebook; give notebook "
                         "numbers or names, or leave --only out to run them all")
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
    lowered = {"true": True, "false": False, "none": None, "null": None}
    if text.lower() in lowered:
        return lowered[text.lower()]
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_params(items: list[str], parser: argparse.ArgumentParser) -> dict[str, Any]:
    """The ``-p NAME=VALUE`` options of a command line as a dict of parsed values.

    Parameters
    ----------
    items : list of str
        The options' texts, e.g. ``["epochs=3", "catalog=music21"]``.
    parser : argparse.ArgumentParser
        Reports a malformed item (no ``=`` or an empty name) as a usage error (exit status 2).

    Returns
    -------
    dict
        Name → value, each value read by :func:`parse_value`.

    Notebook: 00_overview.ipynb
    """
    params = {}
    for item in items:
        name, eq, value = item.partition("=")
        if not eq or not name.strip():
            parser.error(f"-p expects NAME=VALUE, got {item!r}")
        params[name.strip()] = parse_value(value.strip())
    return params


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
    return {name: value for name, (value, _) in _parameters_cell(path).items()}


def _parameters_cell(path: Path) -> dict[str, tuple[Any, bool]]:
    """``name -> (default, is_literal)`` of a notebook's parameters cell."""
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


# The types a ``-p`` value may have per type of the default (any other default: its own type).
_ACCEPTED = {int: (int,), float: (int, float), list: (list, tuple), tuple: (list, tuple)}


def _fits(value: Any, default: Any) -> bool:
    """Whether ``value`` may replace a parameter whose default is ``default``."""
    if default is None:
        return True
    accepted = _ACCEPTED.get(type(default), (type(default),))
    # bool is an int, but a flag is not a number and a number is not a flag
    return isinstance(value, accepted) and isinstance(value, bool) == isinstance(default, bool)


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
                problems.append(f"-p {name}={value!r}: {path.stem} expects "
                                f"{type(default).__name__} (its default is {default!r}), got "
                                f"{type(value).__name__}")
                break
    if problems:
        raise ValueError("bad -p parameter(s), nothing was run:\n  " + "\n  ".join(problems))


def versions() -> dict[str, str]:
    """Versions of Python and the packages that shape the results.

    Notebook: 00_overview.ipynb
    """
    return {"python": platform.python_version(), "platform": platform.platform(),
            **package_versions(("mrlib", "torch", "numpy", "scipy", "librosa", "scikit-learn", "faiss-cpu",
                                "papermill", "music21"))}


def _keep_run_metadata(nb_path: Path, wall_s: float, profile: str) -> None:
    """Drop papermill's per-cell timing metadata so a committed notebook does not churn; keep
    the run's wall time (the book's index shows it beside the notebook's objectives)."""
    import nbformat

    nb = nbformat.read(nb_path, as_version=4)
    for cell in nb.cells:
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
    nb.metadata.pop("papermill", None)
    nb.metadata["mrlib"] = {"wall_s": wall_s, "cpu_count": os.cpu_count(), "profile": profile}
    nbformat.write(nb, nb_path)


class NotebookFailed(RuntimeError):
    """A notebook of the suite raised: names the notebook, the cell and the error.

    Notebook: 00_overview.ipynb
    """


class _ShellChannel(AsyncZMQSocketChannel):
    """The kernel's shell channel, waited on in slices of at most one second.

    While nbclient waits on the shell socket for a cell's reply, it also answers the kernel's
    Output widgets (``ipywidgets.interactive`` holds one) on that same socket. A reply that
    arrives during such a send can miss the asyncio wake-up, since zmq signals readiness by
    edge. The wait then lasts until its timeout, which is the whole per-cell limit: without
    one, a notebook of widget cells could hang forever with its kernel idle (nbclient issue
    #312). Each slice ends with a plain zmq poll, which sees the waiting reply.
    """

    async def get_msg(self, timeout: float | None = None) -> dict[str, Any]:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = 1.0 if deadline is None else min(1.0, deadline - time.monotonic())
            try:
                return await super().get_msg(timeout=max(left, 0.001))
            except Empty:
                if deadline is not None and time.monotonic() >= deadline:
                    raise


class _KernelClient(AsyncKernelClient):
    """nbclient's kernel client with the sliced :class:`_ShellChannel`."""

    shell_channel_class = Type(_ShellChannel)


class _KernelManager(AsyncKernelManager):
    """The kernel manager the suite hands to papermill, making :class:`_KernelClient` clients."""

    client_factory = Type(_KernelClient)


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
            report_mode=False, kernel_manager_class=_KernelManager)
    except PapermillExecutionError as err:
        raise NotebookFailed(
            f"{path.name} failed at In [{err.exec_count}], the cell that starts "
            f"{(err.source.strip().splitlines() or [''])[0][:60]!r}: "
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
    return {"status": "ok", "parameters": _jsonable(parameters), "wall_s": round(wall, 2),
            "metrics": read_json_or_empty(record_path), "output": str(out_path)}


def run_suite(profile: str = "quick", overrides: dict[str, Any] | None = None,
              only: list[str] | None = None, out_dir: Path | None = None,
              inplace: bool = False, timeout_s: int | None = None,
              notebooks: Path | None = None) -> Path:
    """Execute the notebooks in order into a folder under ``runs/`` and write ``results.json``.

    Parameters
    ----------
    profile : {"smoke", "quick", "paper"}
        Parameter set (see :data:`PROFILES`); ``quick`` = the notebooks' defaults.
    overrides : dict, optional
        ``-p name=value`` pairs; they win over the profile.
    only : list of str, optional
        Notebook numbers or names to run (default: all, in order).
    out_dir : Path, optional
        Default ``runs_dir() / run_folder_name(profile, overrides)``: one folder per set of
        settings.
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
    checked (:func:`check_parameters`) before anything runs. The notebooks run in their own
    folder, so a value that names an existing file or folder from the current directory
    (``catalog=data/my_catalog``) is passed as an absolute path.

    Notebook: 00_overview.ipynb
    """
    check_choice("profile", profile, PROFILES)
    overrides = {name: _from_here(value) for name, value in (overrides or {}).items()}
    if inplace and (profile != "quick" or overrides):
        raise ValueError("--inplace refreshes the committed notebooks, which hold the quick "
                         "profile's default run: use it with --profile quick and no -p")
    wanted = {**PROFILES[profile], **overrides}
    timeout_s = DEFAULT_CELL_TIMEOUT_S[profile] if timeout_s is None else check_int(
        "timeout_s (--timeout, seconds; 0: none)", timeout_s, 0)
    found = list_notebooks(only, notebooks)
    if not found:
        raise FileNotFoundError(f"no notebooks found in {notebooks or notebooks_dir()}")
    check_parameters(overrides, found)
    _check_device(wanted.get("device"))
    out_dir = Path(out_dir) if out_dir is not None else runs_dir() / run_folder_name(profile, overrides)
    with FolderLock(out_dir, "suite run"):
        return _run_suite_locked(profile, overrides, wanted, found, out_dir, inplace, timeout_s)


def run_folder_name(profile: str, overrides: dict[str, Any]) -> str:
    """The folder under ``runs/`` of a suite run: the profile, then each ``-p`` setting.

    A run with other settings never replaces the notebooks of another (``quick``,
    ``quick_music21``, ``quick_seed-1``, ``paper_device-cuda``); a catalog is named by its
    folder, and the default catalog and device add nothing.

    Notebook: 00_overview.ipynb
    """
    parts = [profile] + [Path(str(value)).name if name == "catalog" else f"{name}-{value}"
                         for name, value in sorted(overrides.items())
                         if (name, value) not in (("catalog", "synthetic"), ("device", "auto"))]
    return re.sub(r"[^\w.+-]+", "-", "_".join(parts))


def _check_device(device: Any) -> None:
    """Stop before the first notebook (which may build a catalog for hours) when this machine
    lacks the device asked for; torch is asked in a child process, as the suite does not load it."""
    if device in (None, "auto", "cpu"):
        return
    probe = subprocess.run([sys.executable, "-c", "import sys; from mrlib.devices import pick_device; "
                            "pick_device(sys.argv[1])", str(device)], capture_output=True, text=True)
    if probe.returncode != 0:
        lines = probe.stderr.strip().splitlines() or [f"exit status {probe.returncode}"]
        raise ValueError(f"-p device={device}: {lines[-1].partition(': ')[2] or lines[-1]}")


def _from_here(value: Any) -> Any:
    """``value``, or the absolute path it names when it is a relative path to something that
    exists from the current directory (a notebook, run in its own folder, would miss it)."""
    if isinstance(value, str) and ("/" in value or os.sep in value or value.startswith(".")) \
            and not os.path.isabs(value) and Path(value).exists():
        return str(Path(value).resolve())
    return value


def _load_index(index_path: Path) -> dict:
    """The results index, with the ``running`` entries of a dead suite marked ``interrupted``;
    an unreadable file is kept aside and a new index started."""
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
    index_path = out_dir / "results.json"
    index = _load_index(index_path)
    index.update({"profile": profile, "overrides": _jsonable(overrides), "versions": versions()})
    index.setdefault("notebooks", {})
    t_suite = time.perf_counter()
    for path in notebooks:
        declared = declared_parameters(path)
        params = {k: v for k, v in wanted.items() if k in declared}
        out_path = out_dir / path.name
        print(f"[suite] {path.name}  {params or '(defaults)'}", flush=True)
        entry = {"started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                 "status": "running", "parameters": _jsonable(params), "output": str(out_path)}
        index["notebooks"][path.stem] = entry
        write_json_atomic(index, index_path)
        try:
            entry.update(run_notebook(path, out_path, params, timeout_s=timeout_s))
        except BaseException as err:              # a failed notebook, Ctrl-C, a kill
            failed = isinstance(err, NotebookFailed)
            entry.update({"status": "failed" if failed else "interrupted",
                          "error": str(err) if failed else f"{type(err).__name__}: {err}"})
            write_json_atomic(index, index_path)
            raise
        write_json_atomic(index, index_path)
        print(f"[suite] {path.name} ok in {entry['wall_s']:.1f} s", flush=True)
        if inplace:   # atomically: a Ctrl-C here must not leave half a committed notebook
            with atomic_path(path) as tmp:
                shutil.copyfile(out_path, tmp)
                _keep_run_metadata(tmp, entry["wall_s"], profile)
    index["wall_s"] = round(time.perf_counter() - t_suite, 2)
    write_json_atomic(index, index_path)
    print(f"[suite] results index: {index_path}")
    return index_path


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m mrlib.suite run --profile quick [-p name=value ...] [--only NN ...]``.

    Notebook: 00_overview.ipynb
    """
    parser = argparse.ArgumentParser(prog="python -m mrlib.suite", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute the notebooks in order with papermill")
    run.add_argument("--profile", default="quick", choices=sorted(PROFILES))
    run.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                     help="override a parameter in every notebook that declares it")
    run.add_argument("--only", nargs="+", metavar="NN", help="notebook numbers or names")
    run.add_argument("--out", type=path_argument,
                     help="output folder (default runs/<profile>, plus the -p settings)")
    run.add_argument("--inplace", action="store_true",
                     help="refresh the committed notebooks' outputs (quick profile only)")
    run.add_argument("--timeout", type=int, default=None,
                     help="per-cell time limit, seconds (default per profile: "
                          + ", ".join(f"{k} {v}" for k, v in DEFAULT_CELL_TIMEOUT_S.items())
                          + "; 0: none)")
    sub.add_parser("list", help="list the notebooks and their parameters")
    args = parser.parse_args(argv)
    if args.command == "list":
        for path in list_notebooks():
            print(f"{path.name}: {declared_parameters(path)}")
        return 0
    overrides = parse_params(args.param, parser)
    try:
        run_suite(args.profile, overrides, args.only, args.out, args.inplace, args.timeout)
    except (ValueError, LockedError) as err:
        print(f"[suite] {err}", file=sys.stderr, flush=True)
        return 2
    except NotebookFailed as err:
        print(f"[suite] FAILED: {err}", flush=True)
        return 1
    except KeyboardInterrupt:
        # nbclient's cell task, cut off by Ctrl-C, would be logged at exit as "Task exception
        # was never retrieved" with two tracebacks after this line
        logging.getLogger("asyncio").setLevel(logging.CRITICAL)
        print("\n[suite] interrupted: the notebook that was running is marked 'interrupted' in "
              "the run folder's results.json; run it again with --only NN", file=sys.stderr,
              flush=True)
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
