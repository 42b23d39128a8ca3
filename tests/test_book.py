"""The book: builds from the committed notebooks, and every page reads offline in Chromium.

The browser check serves the built HTML on 127.0.0.1, aborts every request that would leave
this machine (so a CDN dependency fails the test instead of silently loading), and on each page
checks: it loads, no console or page errors, no Python traceback or error output, every image
decodes, and MathJax has typeset the math. A screenshot of each page is kept under
``book/_build/screenshots/``.
"""
from __future__ import annotations

import functools
import http.server
import shutil
import threading
from pathlib import Path

import pytest

from browser import CHROMIUM, launch
from mrlib.book import build_book
from mrlib.paths import repo_root

pytestmark = pytest.mark.book


@pytest.fixture(scope="module")
def html_dir() -> Path:
    html = build_book(None)
    assert (html / "index.html").is_file()
    return html


def test_book_has_every_chapter(html_dir: Path):
    notebooks = sorted((repo_root() / "notebooks").glob("[0-9][0-9]*.ipynb"))
    assert notebooks, "no notebooks committed"
    for nb in notebooks:
        page = html_dir / "notebooks" / f"{nb.stem}.html"
        assert page.is_file(), f"{nb.name} is missing from the book"
        # the sidebar lists the chapters by their titles: each one reads "NN · title"
        title = page.read_text().split("<title>", 1)[1].split(" &#8212; ", 1)[0]
        assert title.startswith(f"{nb.stem[:2]} · "), f"{nb.name}: title {title!r} is not 'NN · ...'"
    for page in ("api.html", "bibliography.html", "intro.html", "notation.html"):
        assert (html_dir / page).is_file()
    # the API page documents the package and the bibliography lists both papers
    api = (html_dir / "api.html").read_text()
    assert "mrlib.suite.record" in api and "Taught in" in api
    # the docstrings' $...$ and $$...$$ are typeset as the chapters' math (reST knows neither)
    assert "$$" not in api and "\\(d(a, p) &lt; d(a, n)\\)" in api
    bib = (html_dir / "bibliography.html").read_text().lower()  # the style lowercases titles
    assert "learning to rank music tracks" in bib and "matchnet" in bib


def test_players_where_listening_teaches(html_dir: Path):
    """Mining (anchor, positive, negatives), training (neighbours before and after) and the
    odd-one-out game carry audio players in the built pages."""
    for stem in ("03_mining", "06_training", "08_triplet_matchnet"):
        page = (html_dir / "notebooks" / f"{stem}.html").read_text()
        assert page.count("<audio") >= 3, f"{stem}: {page.count('<audio')} audio players"


def test_index_lists_objectives_and_runtimes(html_dir: Path):
    """The book's first page names every chapter with its objectives and its run time."""
    import re

    intro = (html_dir / "intro.html").read_text()
    notebooks = sorted((repo_root() / "notebooks").glob("[0-9][0-9]*.ipynb"))
    assert "The chapters" in intro
    for nb in notebooks:
        assert f"notebooks/{nb.stem}.html" in intro, f"{nb.name} is not in the index"
    assert len(re.findall(r"Runs top to bottom in \d+ s", intro)) == len(notebooks)


def _parameters(nb_path: Path) -> dict:
    """The literal defaults of a notebook's ``parameters`` cell."""
    import ast

    import nbformat

    nb = nbformat.read(nb_path, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    found = {}
    for node in ast.parse(cell.source).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            try:
                found[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass
    return found


def test_intro_names_the_catalog_each_lesson_builds():
    """The first page tells a student what each lesson builds on first use; its table follows
    the notebooks' defaults (a generated catalog's size and track length, 02's music21 works)."""
    import inspect
    import re

    from mrlib.synth_catalog import build_synthetic

    default_duration = inspect.signature(build_synthetic).parameters["duration_s"].default
    intro = (repo_root() / "book" / "intro.md").read_text()
    rows = {}
    for line in intro.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("| ") or len(cells) != 4 or cells[0] == "Lessons":
            continue
        lessons = set()
        for a, b in re.findall(r"\b(\d\d)(?:–(\d\d))?\b", cells[0]):
            lessons |= {f"{n:02d}" for n in range(int(a), int(b or a) + 1)}
        rows[cells[0]] = (lessons, cells[1])
    assert rows, "book/intro.md has no table of what each lesson builds"
    for path in sorted((repo_root() / "notebooks").glob("[0-9][0-9]*.ipynb")):
        p, number = _parameters(path), path.name[:2]
        if p.get("catalog") != "synthetic":
            continue
        mine = [what for lessons, what in rows.values() if number in lessons]
        if number == "03":   # mining needs the tags alone: no audio is rendered
            phrase = f"the tags of {p['n_tracks']:,} generated tracks"
        else:
            duration = p.get("duration_s", default_duration)
            phrase = f"{p['n_tracks']:,} generated {duration:g}-s tracks"
        assert any(phrase in what for what in mine), f"{path.name}: no row says {phrase!r}"
        if p.get("real_music"):
            works = f"{p['real_music_tracks']} works of the music21 corpus"
            assert any(works in what for what in mine), f"{path.name}: no row says {works!r}"


def test_no_cdn_in_pages(html_dir: Path):
    """No page references a script or stylesheet from another host (MathJax included)."""
    import re

    pattern = re.compile(r"""<(?:script|link)[^>]+(?:src|href)=["']((?:https?:)?//[^"']+)""")
    offenders = {}
    for page in html_dir.rglob("*.html"):
        found = [u for u in pattern.findall(page.read_text(errors="replace"))]
        if found:
            offenders[str(page.relative_to(html_dir))] = found
    assert not offenders, f"pages load remote assets: {offenders}"
    assert (html_dir / "_static" / "mathjax" / "tex-chtml.js").is_file()


def test_every_page_names_an_icon_it_ships(html_dir: Path):
    """A page without ``<link rel="icon">`` makes the browser ask for ``/favicon.ico``, which the
    book does not serve (a 404 on every page)."""
    import re

    pattern = re.compile(r"""<link[^>]+rel=["'](?:shortcut )?icon["'][^>]+href=["']([^"']+)""")
    missing = {}
    for page in html_dir.rglob("*.html"):
        text = page.read_text(errors="replace")
        # the index redirects to the first page; _static holds the theme's template fragments
        if 'http-equiv="Refresh"' in text or page.parts[len(html_dir.parts)] == "_static":
            continue
        hrefs = pattern.findall(text)
        if not hrefs or not all((page.parent / h).resolve().is_file() for h in hrefs):
            missing[str(page.relative_to(html_dir))] = hrefs
    assert not missing, f"pages without an icon the book ships: {sorted(missing.items())[:5]}"


#: Text a reader sees outside code and typeset math that is TeX left raw: a ``$...$`` or a
#: command whose backslash reST ate (``$$mathrm{AP@k} = frac{1}...``).
RAW_TEX_JS = r"""() => {
  const walk = document.createTreeWalker(document.querySelector('main') || document.body,
                                         NodeFilter.SHOW_TEXT);
  const found = []; let node;
  while ((node = walk.nextNode())) {
    if (node.parentElement.closest('pre, code, script, style, .math, mjx-container')) continue;
    const m = node.textContent.match(/\$[^$\s][^$]*\$|\\?\b(?:frac|mathrm|mathcal|operatorname)\{/);
    if (m) found.push(m[0].slice(0, 60));
  }
  return found.slice(0, 5);
}"""


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass


@pytest.fixture(scope="module")
def server(html_dir: Path):
    handler = functools.partial(_QuietHandler, directory=str(html_dir))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium not installed")
def test_pages_render_offline_in_chromium(html_dir: Path, server: str):
    playwright = pytest.importorskip("playwright.sync_api")
    shots = html_dir.parent / "screenshots"
    shutil.rmtree(shots, ignore_errors=True)
    shots.mkdir()
    pages = ["index.html", "notation.html", "api.html", "bibliography.html"] + sorted(
        f"notebooks/{p.name}" for p in (html_dir / "notebooks").glob("*.html"))
    problems: list[str] = []
    with playwright.sync_playwright() as pw:
        browser = launch(pw)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        blocked: list[str] = []

        def gate(route):
            if route.request.url.startswith(server) or route.request.url.startswith("data:"):
                route.continue_()
            else:  # the network is off: anything remote is recorded and refused
                blocked.append(route.request.url)
                route.abort()

        context.route("**/*", gate)
        for rel in pages:
            page = context.new_page()
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("requestfailed", lambda r: errors.append(f"failed: {r.url}"))
            response = page.goto(f"{server}/{rel}", wait_until="load")
            if rel == "index.html":  # the book's index redirects to its first page
                page.wait_for_url("**/intro.html", timeout=10000)
                page.wait_for_load_state("load")
            if response is None or not response.ok:
                problems.append(f"{rel}: HTTP {response.status if response else 'none'}")
                continue
            has_math = page.evaluate("document.querySelectorAll('.math').length") > 0
            if has_math:
                page.wait_for_function(
                    "window.MathJax && MathJax.startup && MathJax.startup.promise", timeout=20000)
                page.evaluate("MathJax.startup.promise")
                typeset = page.evaluate("document.querySelectorAll('mjx-container').length")
                raw = page.evaluate(
                    "[...document.querySelectorAll('.math')].filter(e => !e.querySelector('mjx-container')).length")
                if typeset == 0 or raw:
                    problems.append(f"{rel}: math not rendered ({typeset} typeset, {raw} raw)")
            raw_tex = page.evaluate(RAW_TEX_JS)
            if raw_tex:
                problems.append(f"{rel}: TeX shown raw {raw_tex}")
            text = page.inner_text("body")
            if "Traceback (most recent call last)" in text:
                problems.append(f"{rel}: a Python traceback is shown")
            n_error_out = page.evaluate(
                "document.querySelectorAll('.output.error, .output.traceback, .output.stderr').length")
            if n_error_out:
                problems.append(f"{rel}: {n_error_out} error output(s)")
            images = page.evaluate(
                "[...document.images].map(i => [i.src, i.complete && i.naturalWidth > 0])")
            broken = [src for src, ok in images if not ok]
            if broken:
                problems.append(f"{rel}: broken images {broken}")
            if rel.startswith("notebooks/") and not any(ok for _, ok in images):
                problems.append(f"{rel}: no figure")
            if errors:
                problems.append(f"{rel}: browser errors {errors[:5]}")
            page.screenshot(path=str(shots / (rel.replace("/", "_") + ".png")), full_page=False)
            page.close()
        browser.close()
    if blocked:
        problems.append(f"remote requests attempted: {sorted(set(blocked))[:10]}")
    assert not problems, "\n".join(problems)
    assert (shots / "index.html.png").stat().st_size > 0
