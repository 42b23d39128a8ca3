"""Sphinx extension: turn a docstring's closing ``Notebook: NN_name.ipynb`` line into a link.

mrlib's docstrings end by naming the notebook that teaches the function (the libfmp
convention). Left alone, numpydoc would read that line as part of the last section; this moves
it out before napoleon runs and appends a "Taught in" line with a link to the chapter.
"""
import re

PATTERN = re.compile(r"^\s*Notebook:\s*(\d\d_[\w-]+)\.ipynb\s*$")


def _pop_notebook(app, what, name, obj, options, lines):
    for i in range(len(lines) - 1, -1, -1):
        if not lines[i].strip():
            continue
        match = PATTERN.match(lines[i])
        if match:
            app.env.temp_data.setdefault("mrlib_notebooks", {})[name] = match.group(1)
            del lines[i]
        return


def _append_link(app, what, name, obj, options, lines):
    stem = app.env.temp_data.get("mrlib_notebooks", {}).pop(name, None)
    if stem is None:
        return
    doc = f"notebooks/{stem}"
    target = f":doc:`/{doc}`" if doc in app.env.found_docs else f"``{stem}.ipynb``"
    lines.extend(["", f"*Taught in* {target}.", ""])


def setup(app):
    app.connect("autodoc-process-docstring", _pop_notebook, priority=100)
    app.connect("autodoc-process-docstring", _append_link, priority=900)
    return {"parallel_read_safe": True}
