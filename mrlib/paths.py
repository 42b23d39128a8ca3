"""Where the suite keeps its files: the data root and the runs folder.

Nothing is hard-coded: ``MRLIB_DATA`` and ``MRLIB_RUNS`` override the defaults, which are
``data/`` and ``runs/`` next to the ``mrlib`` package (the repository root).
"""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["repo_root", "data_dir", "runs_dir"]


def repo_root() -> Path:
    """The repository root: the folder that holds ``mrlib/``.

    Notebook: 00_overview.ipynb
    """
    return Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    """The data root (``$MRLIB_DATA`` or ``<repo>/data``), created if missing.

    Notebook: 00_overview.ipynb
    """
    path = Path(os.environ.get("MRLIB_DATA", repo_root() / "data"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def runs_dir() -> Path:
    """The folder for suite runs and training outputs (``$MRLIB_RUNS`` or ``<repo>/runs``).

    Notebook: 00_overview.ipynb
    """
    path = Path(os.environ.get("MRLIB_RUNS", repo_root() / "runs"))
    path.mkdir(parents=True, exist_ok=True)
    return path
