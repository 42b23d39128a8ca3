"""Benchmarks: ``python -m mrlib.bench cqt|mining|retrieval|synth|train|all [args ...]``.

Each benchmark is a script in ``benchmarks/<name>.py`` with a ``main(argv)``; it prints its
figures as ratios against a reference measured in the same run (never a timed assertion).
Extra arguments are passed through to the script (``all`` takes none).
"""
from __future__ import annotations

import runpy
import sys
from pathlib import Path

from mrlib.checks import check_choice
from mrlib.paths import repo_root

__all__ = ["available", "run"]


def _bench_dir() -> Path:
    return repo_root() / "benchmarks"


def available() -> list[str]:
    """Names of the benchmarks present (``benchmarks/*.py``).

    Notebook: 00_overview.ipynb
    """
    return sorted(p.stem for p in _bench_dir().glob("*.py") if not p.stem.startswith("_"))


def run(name: str, argv: list[str] | None = None) -> int:
    """Run one benchmark's ``main(argv)`` and return its exit status.

    Notebook: 00_overview.ipynb
    """
    check_choice("benchmark", name, available())
    module = runpy.run_path(str(_bench_dir() / f"{name}.py"), run_name=f"bench_{name}")
    return int(module["main"](list(argv or [])) or 0)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        print("available:", ", ".join(available()) or "(none)")
        return 0
    name, rest = argv[0], argv[1:]
    names = available()
    try:
        check_choice("benchmark", name, (*names, "all"))
        if name == "all" and rest:    # each benchmark has flags of its own: none applies to all
            raise ValueError(f"'all' runs each benchmark at its defaults and takes no arguments, "
                             f"got {' '.join(rest)}; pass them to one benchmark "
                             "(python -m mrlib.bench NAME ARGS)")
        if rest:   # a value the benchmark's own parser let through may be refused by mrlib
            return run(name, rest)
    except ValueError as err:
        print(f"python -m mrlib.bench {name}: error: {err}", file=sys.stderr)
        return 2
    if name != "all":    # at its defaults an error is a defect, shown with its traceback
        return run(name, [])
    status = 0
    for each in names:
        print(f"\n=== {each} ===", flush=True)
        status |= run(each, [])
    return status


if __name__ == "__main__":
    raise SystemExit(main())
