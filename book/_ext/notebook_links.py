"""Sphinx extension: mrlib's docstring conventions on the API page.

mrlib's docstrings end by naming the notebook that teaches the function (the libfmp
convention). Left alone, numpydoc would read that line as part of the last section; this moves
it out before napoleon runs and appends a "Taught in" line with a link to the chapter.

They also write math as the notebooks do, ``$...$`` inline and ``$$...$$`` on lines of its own,
which reStructuredText does not know: the page would show the TeX with its backslashes eaten
(``$$mathrm{AP@k} = frac{1}...``). Each is turned into the ``:math:`` role or the ``math``
directive, so MathJax typesets it as it does the chapters.
"""
import re

PATTERN = re.compile(r"^\s*Notebook:\s*(\d\d_[\w-]+)\.ipynb\s*$")
#: ``$$...$$`` starting a line and ending one (it may span several).
DISPLAY = re.compile(r"^(?P<indent>[ \t]*)\$\$(?P<body>.+?)\$\$[ \t]*$", re.S | re.M)
#: ``$...$`` on one line (pandoc's rule: no space inside either dollar, no digit after the
#: closing one, so ``$5-$10`` stays money), not a shell's ``${NAME}``.
INLINE = re.compile(r"(?<![\\$])\$(?=[^\s${])(?P<body>[^$\n]*?[^\s$\\])\$(?![$\d])")
#: what may stand just before and just after a role in reST
OPENERS, CLOSERS = "-:/'\"<([{", "-.,:;!?\\/'\")]}>"
#: a ``literal`` or a role's `text`: left as written.
LITERAL = re.compile(r"(``.+?``|`[^`]+`)")


def _pop_notebook(app, what, name, obj, options, lines):
    for i in range(len(lines) - 1, -1, -1):
        if not lines[i].strip():
            continue
        match = PATTERN.match(lines[i])
        if match:
            app.env.temp_data.setdefault("mrlib_notebooks", {})[name] = match.group(1)
            del lines[i]
        return


def _display(match) -> str:
    indent = match.group("indent")
    body = [line.strip() for line in match.group("body").strip().splitlines()]
    return "\n".join([f"{indent}.. math::", ""] + [f"{indent}   {line}" for line in body] + [""])


def _inline(match) -> str:
    # reST takes a role only after a space or an opening mark and before a space or a closing
    # one; elsewhere an escaped space (backslash, space: rendered as nothing) stands between
    text, start, end = match.string, match.start(), match.end()
    before = "\\ " if start and not (text[start - 1].isspace() or text[start - 1] in OPENERS) else ""
    after = "\\ " if end < len(text) and not (text[end].isspace() or text[end] in CLOSERS) else ""
    return f"{before}:math:`{match.group('body')}`{after}"


def _math_text(text: str) -> str:
    text = DISPLAY.sub(_display, text)
    parts = LITERAL.split(text)  # odd items are literals: a ``$NAME`` stays as written
    parts[::2] = [INLINE.sub(_inline, part) for part in parts[::2]]
    return "".join(parts)


def _is_code(lines: list[str]) -> list[bool]:
    """Which lines are code, left as written: doctest lines and ``::`` literal blocks."""
    code, block = [], None              # block: the indent of the line that opened a literal block
    for line in lines:
        indent = len(line) - len(line.lstrip())
        if block is not None and line.strip() and indent <= block:
            block = None
        code.append(block is not None or line.lstrip().startswith((">>>", "... ")))
        if block is None and line.rstrip().endswith("::"):
            block = indent
    return code


def _math(app, what, name, obj, options, lines):
    out, run = [], []
    for line, code in zip(lines, _is_code(lines)):
        if code:
            out += _math_text("\n".join(run)).split("\n") if run else []
            out.append(line)
            run = []
        else:
            run.append(line)
    if run:
        out += _math_text("\n".join(run)).split("\n")
    lines[:] = out


def _append_link(app, what, name, obj, options, lines):
    stem = app.env.temp_data.get("mrlib_notebooks", {}).pop(name, None)
    if stem is None:
        return
    doc = f"notebooks/{stem}"
    target = f":doc:`/{doc}`" if doc in app.env.found_docs else f"``{stem}.ipynb``"
    lines.extend(["", f"*Taught in* {target}.", ""])


def setup(app):
    app.connect("autodoc-process-docstring", _pop_notebook, priority=100)
    app.connect("autodoc-process-docstring", _math, priority=200)
    app.connect("autodoc-process-docstring", _append_link, priority=900)
    return {"parallel_read_safe": True}
