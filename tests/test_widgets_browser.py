"""The α slider of ``05_autopool.ipynb`` works in a real JupyterLab, driven by headless Chromium.

The test extracts the notebook's widget cell (the one with ``widgets.FloatSlider``) and the
earlier code cells it depends on (found by the names each cell defines and uses) from the
committed notebook, writes them as a small notebook into a temporary server root, starts
JupyterLab on a free local port with this checkout's ``mrlib`` on the kernel's ``PYTHONPATH``,
opens the notebook in Debian's Chromium, runs all cells, waits for the slider, reads the
widget's output, moves the slider with the keyboard and checks the output changes.

The same check runs on a copy whose callback is replaced by one that prints a constant: there
it must report that the output did not change, so the check can fail.
Skips when Chromium, Playwright or JupyterLab is missing.
"""
from __future__ import annotations

import ast
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from browser import CHROMIUM, launch
from mrlib.paths import repo_root

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

NOTEBOOK = repo_root() / "notebooks" / "05_autopool.ipynb"
WIDGET_MARK = "widgets.FloatSlider"
BROKEN = 'show_alpha = lambda alpha=0.0, ax=None: print("broken")\n'


def _names(source: str) -> tuple[set[str], set[str]]:
    """(names a cell defines, names it reads), ignoring IPython magics."""
    code = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!")))
    defined, used = set(), set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Name):
            (defined if isinstance(node.ctx, ast.Store) else used).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)):
            defined.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            defined.update((a.asname or a.name).split(".")[0] for a in node.names)
    return defined, used


def widget_cells(broken: bool = False) -> list[str]:
    """Sources of the widget cell and of the earlier code cells it needs, in notebook order."""
    cells = [("".join(c["source"])) for c in json.loads(NOTEBOOK.read_text())["cells"]
             if c["cell_type"] == "code"]
    last = next(i for i, src in enumerate(cells) if WIDGET_MARK in src)
    needed = _names(cells[last])[1]
    keep = [last]
    for i in range(last - 1, -1, -1):
        defined, used = _names(cells[i])
        if defined & needed:
            keep.append(i)
            needed |= used
    sources = [cells[i] for i in sorted(keep)]
    if broken:  # rebind the callback just before the statement that builds the widget
        lines = sources[-1].splitlines(keepends=True)
        stmt = next(n for n in ast.parse(sources[-1]).body if WIDGET_MARK in ast.unparse(n))
        sources[-1] = "".join(lines[:stmt.lineno - 1] + [BROKEN] + lines[stmt.lineno - 1:])
    return sources


def write_notebook(path: Path, sources: list[str]) -> None:
    cells = [{"cell_type": "code", "execution_count": None, "id": f"c{i}", "metadata": {},
              "outputs": [], "source": src} for i, src in enumerate(sources)]
    nb = {"cells": cells, "nbformat": 4, "nbformat_minor": 5,
          "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                      "language": "python"}}}
    path.write_text(json.dumps(nb, indent=1))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A token-less JupyterLab on 127.0.0.1 serving a temporary root; yields (url, root)."""
    pytest.importorskip("jupyterlab")
    pytest.importorskip("ipywidgets")
    tmp = tmp_path_factory.mktemp("lab")
    root = tmp / "root"
    root.mkdir()
    port = _free_port()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(repo_root())] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]),
        MRLIB_DATA=str(tmp / "data"), MRLIB_RUNS=str(tmp / "runs"),
        JUPYTER_CONFIG_DIR=str(tmp / "config"), JUPYTER_RUNTIME_DIR=str(tmp / "runtime"),
        OMP_NUM_THREADS="1")
    env.pop("MPLBACKEND", None)  # the kernel's inline backend draws the figures
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}",
           "--ip=127.0.0.1", "--allow-root", f"--ServerApp.root_dir={root}", "--IdentityProvider.token=",
           "--ServerApp.password=", "--ServerApp.disable_check_xsrf=True",
           "--LabApp.expose_app_in_browser=True", f"--LabApp.user_settings_dir={tmp / 'settings'}",
           f"--LabApp.workspaces_dir={tmp / 'workspaces'}",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    log = open(tmp / "server.log", "wb")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status", timeout=2).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not start:\n{(tmp / 'server.log').read_text()[-3000:]}")
                time.sleep(0.5)
        yield url, root
    finally:
        # SIGTERM makes the server shut its kernels down; the group kill then takes whatever
        # else it started (the server runs in a session of its own)
        group = os.getpgid(proc.pid) if proc.poll() is None else None
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if group is not None:
            try:
                os.killpg(group, signal.SIGKILL)
            except ProcessLookupError:
                pass
        log.close()


OUTPUT_JS = """() => {
    const out = document.querySelector('.widget-interact .widget-output');
    if (!out) return null;
    const img = out.querySelector('img');
    return img ? img.src : out.innerText;
}"""


KERNEL_IDLE_JS = """() => {
    const app = window.jupyterapp, w = app && app.shell.currentWidget;
    const kernel = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
    return kernel && kernel.status === 'idle' && document.querySelector('.jp-Notebook .jp-Cell');
}"""


def slider_changes_output(page, moves: int = 8, timeout_s: float = 15.0) -> bool:
    """Move the rendered slider with the keyboard; True when the widget's output changes."""
    page.wait_for_function(f"({OUTPUT_JS})()", timeout=90000)  # the first output is drawn
    before = page.evaluate(OUTPUT_JS)
    handle = page.locator(".widget-interact .widget-slider .noUi-handle").first
    value = page.locator(".widget-interact .widget-readout").first
    start = value.inner_text()
    handle.focus()
    for _ in range(moves):
        page.keyboard.press("ArrowRight")
    page.wait_for_function("(s) => document.querySelector('.widget-interact .widget-readout')"
                           ".innerText !== s", arg=start, timeout=10000)  # the slider moved
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        now = page.evaluate(OUTPUT_JS)
        if now and now != before:
            return True
        time.sleep(0.25)
    return False


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium not installed")
@pytest.mark.parametrize("broken", [False, True], ids=["notebook", "broken_callback"])
def test_alpha_slider_redraws(lab, broken: bool):
    playwright = pytest.importorskip("playwright.sync_api")
    url, root = lab
    name = f"alpha_{'broken' if broken else 'ok'}.ipynb"
    write_notebook(root / name, widget_cells(broken))
    with playwright.sync_playwright() as pw:
        browser = launch(pw)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{url}/lab/tree/{name}?reset", wait_until="load")
            page.wait_for_function(KERNEL_IDLE_JS, timeout=90000)
            page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
            changed = slider_changes_output(page)
            shown = page.evaluate(OUTPUT_JS)
            errors = page.locator(".jp-OutputArea-output[data-mime-type*='error']").all_inner_texts()
            assert not errors, f"a cell failed: {errors}"
        finally:
            browser.close()
    if broken:
        assert not changed, "the check passed although the callback ignores the slider"
    else:
        assert changed, "moving the slider did not change the widget's output"
        assert shown.startswith("data:image/png"), f"the widget shows no figure: {shown[:200]!r}"
