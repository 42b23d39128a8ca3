"""The API page's docstring math (book/_ext/notebook_links.py): ``$...$`` becomes MathJax, and a
dollar that is not math — shell variables, money, code — stays as written. No book build."""
from __future__ import annotations

import importlib.util

from mrlib.paths import repo_root

_spec = importlib.util.spec_from_file_location("notebook_links", repo_root() / "book" / "_ext" / "notebook_links.py")
ext = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ext)


def _render(text: str) -> str:
    lines = text.split("\n")
    ext._math(None, "function", "f", None, {}, lines)
    return "\n".join(lines)


def test_math_becomes_roles_and_blocks():
    assert _render("the rate $\\alpha$ of AutoPool") == "the rate :math:`\\alpha` of AutoPool"
    assert _render("with $d(a,p)$, then") == "with :math:`d(a,p)`, then"
    assert _render("$$\\mathrm{AP} = \\frac{1}{k}$$") == ".. math::\n\n   \\mathrm{AP} = \\frac{1}{k}\n"
    assert _render("of $x$'s") == "of :math:`x`'s"


def test_dollars_that_are_not_math_stay():
    for text in ("``$MRLIB_DATA`` names the folder", "costs $5-$10 a month", "${MRLIB_DATA}/results/${name}",
                 "set $HOME and $USER", ">>> os.path.expandvars('$HOME/$X')",
                 "Example::\n\n    export A=$B/$C\n    echo $A"):
        assert _render(text) == text, text


def test_math_resumes_after_a_literal_block():
    text = "Run::\n\n    cp $A/$B .\n\nthen $k$ folds"
    assert _render(text) == "Run::\n\n    cp $A/$B .\n\nthen :math:`k` folds"
