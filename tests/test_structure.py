"""The package's shape: one-way imports, modules a reader can hold in their head, notebooks on the
public API only, systems dispatched by their registry. Measured from the source, not from imports."""
from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "mrlib"
MODULES = sorted(p for p in PACKAGE.glob("*.py"))
MAX_MODULE_LINES = 800
MAX_FUNCTION_LINES = 80


def _mrlib_imports(path: Path) -> set[str]:
    """Every mrlib module ``path`` imports, at the top or inside a function."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:
                names.update([node.module.split(".")[0]] if node.module else
                             [a.name for a in node.names])
            elif node.module == "mrlib":
                names.update(a.name for a in node.names)
            elif node.module and node.module.startswith("mrlib."):
                names.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            names.update(a.name.split(".")[1] for a in node.names if a.name.startswith("mrlib."))
    return {n for n in names if (PACKAGE / f"{n}.py").exists() and n != path.stem}


def import_graph() -> dict[str, set[str]]:
    return {p.stem: _mrlib_imports(p) for p in MODULES}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}          # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(v):
        state[v] = 1
        path.append(v)
        for w in sorted(graph.get(v, ())):
            if state.get(w) == 1:
                return path[path.index(w):] + [w]
            if w not in state and (found := visit(w)):
                return found
        path.pop()
        state[v] = 2
        return None

    for v in sorted(graph):
        if v not in state and (found := visit(v)):
            return found
    return None


def test_the_cycle_finder_finds_a_cycle_and_accepts_a_tree():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_mrlib_has_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_module_fits_in_a_readers_head(path):
    n = len(path.read_text().splitlines())
    assert n <= MAX_MODULE_LINES, f"{path.name} has {n} lines (at most {MAX_MODULE_LINES})"


def _is_data_table(fn: ast.FunctionDef) -> bool:
    """A function whose body is mostly one literal (a table of values) is data, not logic."""
    literals = [n for n in ast.walk(fn) if isinstance(n, (ast.Dict, ast.List, ast.Tuple))]
    longest = max((n.end_lineno - n.lineno for n in literals), default=0)
    return longest >= (fn.end_lineno - fn.lineno) // 2


def _body_lines(fn: ast.FunctionDef) -> int:
    """Lines of a function's body, docstring included, signature excluded."""
    return fn.end_lineno - fn.body[0].lineno + 1


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_functions_are_short(path):
    long = [f"{fn.name} ({_body_lines(fn)} lines)"
            for fn in ast.walk(ast.parse(path.read_text()))
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
            and _body_lines(fn) > MAX_FUNCTION_LINES and not _is_data_table(fn)]
    assert not long, f"{path.name}: functions over {MAX_FUNCTION_LINES} lines: {long}"


def _public_defs(tree: ast.Module) -> list:
    """The module's functions and classes that its ``__all__`` names."""
    names = next((ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign)
                  and any(getattr(t, "id", "") == "__all__" for t in n.targets)), [])
    return [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name in names]


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_public_docstrings_name_their_notebook(path):
    notebooks = {p.name for p in (ROOT / "notebooks").glob("*.ipynb")}
    wrong = []
    for node in _public_defs(ast.parse(path.read_text())):
        last = (ast.get_docstring(node) or "").strip().splitlines()[-1:] or [""]
        named = re.fullmatch(r"Notebook: (\d\d_\w+\.ipynb)", last[0].strip())
        if not (named and named.group(1) in notebooks):
            wrong.append(f"{node.name} ends with {last[0].strip()!r}")
    assert not wrong, f"{path.name}: a public docstring's last line must name a notebook: {wrong}"


# ``system == "at"``, ``cfg.system != ...``, ``cfg["system"] in (...)``: a branch on a system's name.
SYSTEM_DISPATCH = re.compile(r"""\bsystem['"]?\]?\s*(==|!=|in\s*[(\[{]|not\s+in\s*[(\[{])""")


def test_systems_are_dispatched_by_their_registry_only():
    hits = [f"{p.name}:{i}: {line.strip()}" for p in MODULES if p.stem != "systems"
            for i, line in enumerate(p.read_text().splitlines(), 1)
            if SYSTEM_DISPATCH.search(line) and not line.lstrip().startswith("#")]
    assert not hits, "dispatch on a system's name outside mrlib/systems.py:\n" + "\n".join(hits)


def test_no_module_patches_another_objects_attributes():
    patched = []
    for p in MODULES:
        for node in ast.parse(p.read_text()).body:       # module level only
            targets = node.targets if isinstance(node, ast.Assign) else \
                [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else []
            patched += [f"{p.name}:{node.lineno}" for t in targets
                        if isinstance(t, ast.Attribute) and not t.attr.startswith("__")]
    assert not patched, f"module-level attribute assignments (monkey-patching): {patched}"


PRIVATE = re.compile(r"\b(?:mrlib(?:\.\w+)?|[A-Za-z_]\w*)\.(_[a-z]\w*)")


def _mrlib_aliases(source: str) -> set[str]:
    """Names bound to mrlib modules in a notebook: ``import mrlib.x as X``, ``from mrlib import x``."""
    aliases = {"mrlib"}
    for m in re.finditer(r"import\s+mrlib\.(\w+)(?:\s+as\s+(\w+))?", source):
        aliases.add(m.group(2) or "mrlib")
    for m in re.finditer(r"from\s+mrlib\s+import\s+(\([^)]*\)|[\w ,]+)", source):
        for part in m.group(1).strip("()").split(","):
            words = part.split()
            if words:
                aliases.add(words[-1])
    return aliases


def private_uses(source: str) -> list[str]:
    aliases = _mrlib_aliases(source)
    return [m.group(0) for m in re.finditer(r"\b(\w+)\.(_[a-zA-Z]\w*)", source)
            if m.group(1) in aliases and not m.group(2).startswith("__")]


def test_private_use_finder():
    src = "import mrlib.train as T\nfrom mrlib import mining\nx = T._mps_available()\ny = mining._draw(1)\nz = df._x"
    assert private_uses(src) == ["T._mps_available", "mining._draw"]


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.name)
def test_notebooks_use_the_public_api_only(path):
    cells = json.loads(path.read_text())["cells"]
    source = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    assert not private_uses(source), f"{path.name} uses private names: {private_uses(source)}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_mrlib_is_imported_at_the_top(path):
    """A late import of an mrlib module would hide an import cycle from a reader (and from Python
    until the function runs); third-party packages that are heavy or optional may be late."""
    late = [f"line {node.lineno}: {ast.unparse(node)}"
            for fn in ast.walk(ast.parse(path.read_text()))
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
            for node in ast.walk(fn)
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("mrlib"))
            or isinstance(node, ast.Import) and any(a.name.startswith("mrlib") for a in node.names)]
    assert not late, f"{path.name} imports mrlib inside functions: {late}"
