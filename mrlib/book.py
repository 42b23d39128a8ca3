"""Assemble and build the Jupyter Book from executed notebooks.

``python -m mrlib.book [--run runs/quick]`` stages ``book/`` and the notebooks of a suite run
(default: the committed notebooks, which carry the outputs of their default run) into
``book/_build/src`` and builds HTML into ``book/_build/html`` with Jupyter Book 1.x. Nothing is
executed here, and the pages read offline: MathJax is served from the build
(``sphinx-mathjax-offline``) and widget state, which would pull JavaScript from a CDN, is
dropped (each widget cell also shows a static result).
"""
from __future__ import annotations

import argparse
import pkgutil
import re
import shutil
import subprocess
import sys
from pathlib import Path

import mrlib
from mrlib.paths import repo_root
from mrlib.suite import list_notebooks

__all__ = ["stage_book", "build_book"]

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


#: A comment line that tells nbval how to compare a cell's output: for the tests, not the reader.
NBVAL_MARKER = re.compile(r"^[ \t]*# NBVAL_[A-Z_]+[ \t]*\n?", re.MULTILINE)
#: The text a tqdm widget leaves behind when its live view is dropped: the bar as it started.
TQDM_TEXT = re.compile(r"\d+%\|")


def _offline_notebook(src: Path, dst: Path) -> None:
    """Copy a notebook for the book: no widget state or widget views (their JS comes from a
    CDN), no progress bar frozen at its first frame, no nbval markers in the code.

    Notebook: 00_overview.ipynb
    """
    import nbformat

    nb = nbformat.read(src, as_version=4)
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        cell.source = NBVAL_MARKER.sub("", cell.source)
        kept = []
        for out in cell.get("outputs", []):
            data = out.get("data")
            if data and WIDGET_MIME in data:
                del data[WIDGET_MIME]
                if TQDM_TEXT.search(data.get("text/plain", "")):
                    continue
                data.setdefault("text/plain", "")
            kept.append(out)
        cell.outputs = kept
    nbformat.write(nb, dst)


def _check_finished(run_dir: Path, notebooks: list[Path]) -> None:
    """Every executed notebook of a suite run finished ("ok" in its results.json)."""
    import json

    index_path = run_dir / "results.json"
    if not index_path.is_file():
        raise FileNotFoundError(f"{run_dir} has no results.json: not a suite run folder, so "
                                "nothing says its notebooks finished (run python -m mrlib.suite "
                                "run first, or build from the committed notebooks)")
    try:
        entries = json.loads(index_path.read_text()).get("notebooks") or {}
        if not isinstance(entries, dict):
            raise ValueError(f"'notebooks' is a JSON {type(entries).__name__}, not an object")
    except (ValueError, AttributeError) as err:
        raise ValueError(f"{index_path} cannot be read ({err}); run the suite again") from None
    status = {nb.name: e.get("status") if isinstance(e := entries.get(nb.stem), dict) else None
              for nb in notebooks}
    bad = [f"{name}: {st or 'not in the index'}" for name, st in status.items() if st != "ok"]
    if bad:
        raise ValueError(f"the book takes finished notebooks only; in {run_dir}: "
                         + "; ".join(bad) + " (re-run them with python -m mrlib.suite run --only NN)")


def _chapter_entry(path: Path) -> str:
    """One notebook in the book's index: its title, its learning objectives and the wall time
    of the run whose outputs it carries (recorded by ``python -m mrlib.suite run --inplace``)."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    cells = [c.source for c in nb.cells if c.cell_type == "markdown"]
    title = cells[0].splitlines()[0].lstrip("# ").strip() if cells else path.stem
    text = next((t for t in cells if "**Learning objectives**" in t), "")
    after = text.partition("**Learning objectives**")[2].strip("\n")
    # the objectives end at the first blank line not followed by a list item
    objectives = re.split(r"\n\s*\n(?![ \t]*[*-] )", after, maxsplit=1)[0]
    run = nb.metadata.get("mrlib", {})
    if "wall_s" in run:
        timing = (f"Runs top to bottom in {run['wall_s']:.0f} s at its defaults "
                  f"({run.get('cpu_count', '?')} CPU cores, the run shown in the chapter).")
    else:
        timing = "Run time not recorded (re-run it with `python -m mrlib.suite run --inplace`)."
    return f"### [{title}](notebooks/{path.name})\n\n*{timing}*\n\n{objectives}\n"


def _api_page(template: Path) -> str:
    """The API page: the template's prose plus one ``automodule`` per public module."""
    names = sorted(m.name for m in pkgutil.iter_modules(mrlib.__path__)
                   if not m.name.startswith("_"))
    blocks = "\n".join(f".. automodule:: mrlib.{n}\n   :members:\n   :ignore-module-all:\n" for n in names)
    return template.read_text() + "\n```{eval-rst}\n" + blocks + "```\n"


def stage_book(run_dir: Path | None = None, out: Path | None = None) -> Path:
    """Copy the book pages and the executed notebooks into one source folder with a TOC.

    Parameters
    ----------
    run_dir : Path, optional
        A suite run folder (``runs/quick``) whose executed notebooks to use; default the
        committed ``notebooks/``. Its ``results.json`` must say ``"ok"`` for every notebook
        found there: a notebook that failed, was interrupted or is still running is half
        executed and never reaches the book.
    out : Path, optional
        Staging folder, default ``book/_build/src``.

    Returns
    -------
    Path of the staged source folder.

    Raises
    ------
    FileNotFoundError
        No executed notebooks, or a run folder without ``results.json``.
    ValueError
        A notebook of the run folder is not ``"ok"`` in its index (each one named with its
        status).

    Notebook: 00_overview.ipynb
    """
    root = repo_root()
    book = root / "book"
    out = Path(out) if out else book / "_build" / "src"
    nb_dir = Path(run_dir) if run_dir else root / "notebooks"
    notebooks = list_notebooks(folder=nb_dir)
    if not notebooks:
        raise FileNotFoundError(f"no executed notebooks (NN_*.ipynb) in {nb_dir}")
    if run_dir is not None:
        _check_finished(nb_dir, notebooks)
    if out.exists():
        shutil.rmtree(out)
    (out / "notebooks").mkdir(parents=True)
    for name in ("_config.yml", "references.bib", "notation.md", "bibliography.md"):
        shutil.copyfile(book / name, out / name)
    chapters = "\n".join(_chapter_entry(nb) for nb in notebooks)
    (out / "intro.md").write_text((book / "intro.md").read_text().rstrip("\n")
                                  + "\n\n## The chapters\n\n" + chapters)
    shutil.copytree(book / "_ext", out / "_ext", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(book / "images", out / "images")   # the favicon that _config.yml names
    (out / "api.md").write_text(_api_page(book / "api.md"))
    for nb in notebooks:
        _offline_notebook(nb, out / "notebooks" / nb.name)
    chapters = "\n".join(f"  - file: notebooks/{nb.stem}" for nb in notebooks)
    (out / "_toc.yml").write_text(
        "# generated by mrlib.book from the notebooks present\nformat: jb-book\nroot: intro\n"
        f"chapters:\n  - file: notation\n{chapters}\n  - file: api\n  - file: bibliography\n")
    return out


def build_book(run_dir: Path | None = None) -> Path:
    """Stage and build the book; return the HTML folder (``book/_build/html``).

    Sphinx warnings are errors (``-W``), so a broken reference fails the build.

    Parameters
    ----------
    run_dir : Path, optional
        Suite run folder with executed notebooks (default: the committed notebooks).

    Notebook: 00_overview.ipynb
    """
    src = stage_book(run_dir)
    build_root = src.parent
    cmd = [str(Path(sys.executable).with_name("jupyter-book")), "build", str(src), "--path-output",
           str(build_root), "--builder", "html", "-W", "--keep-going"]
    # a failed build leaves its output behind; Sphinx would skip pages it thinks up to date
    shutil.rmtree(build_root / "_build", ignore_errors=True)
    result = subprocess.run(cmd, text=True, capture_output=True)
    html = build_root / "_build" / "html"
    if result.returncode != 0:
        sys.stdout.write(result.stdout[-6000:])
        sys.stderr.write(result.stderr[-6000:])
        raise RuntimeError(f"jupyter-book build failed (exit {result.returncode}); see above")
    final = build_root / "html"
    if final.exists():
        shutil.rmtree(final)
    shutil.move(str(html), str(final))
    shutil.rmtree(build_root / "_build", ignore_errors=True)
    return final


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m mrlib.book [--run runs/quick]``; returns the exit
    status (2: a ``--run`` folder without finished notebooks, 1: the build failed).

    Notebook: 00_overview.ipynb
    """
    parser = argparse.ArgumentParser(prog="python -m mrlib.book", description=__doc__)
    parser.add_argument("--run", type=Path, default=None,
                        help="suite run folder with executed notebooks (default: committed notebooks)")
    args = parser.parse_args(argv)
    try:
        html = build_book(args.run)
    except (FileNotFoundError, ValueError) as err:     # a --run folder the book cannot take
        print(f"[book] error: {err}", file=sys.stderr)
        return 2
    except RuntimeError as err:                         # jupyter-book's output is printed above
        print(f"[book] {err}", file=sys.stderr)
        return 1
    print(f"book: {html / 'index.html'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
