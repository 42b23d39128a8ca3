"""Argument checks shared by the modules, so that every module words its errors alike.

Each returns the value converted to the type the computation needs, or raises a ``TypeError`` /
``ValueError`` that names the argument, so a notebook user sees which input was wrong.

Notebook: 00_overview.ipynb
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["check_int", "check_positive", "check_level", "as_index_matrix", "as_float_matrix",
           "as_vector"]


def check_int(name: str, value: Any, minimum: int = 1) -> int:
    """``value`` as an int, or ``TypeError`` (not an int; a bool is not one) / ``ValueError``
    (below ``minimum``) naming the argument.

    Notebook: 00_overview.ipynb
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_positive(name: str, value: Any) -> float:
    """``value`` as a float, or ``TypeError`` (not a number) / ``ValueError`` (not finite and
    > 0) naming the argument.

    Notebook: 00_overview.ipynb
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value}")
    return float(value)


def check_level(level: Any) -> float:
    """A confidence level as a float in (0, 1), or ``ValueError``.

    Notebook: 07_evaluation.ipynb
    """
    if not isinstance(level, (float, int, np.floating)) or not 0.0 < float(level) < 1.0:
        raise ValueError(f"level must be a float in (0, 1), e.g. 0.95; got {level!r}")
    return float(level)


def as_index_matrix(name: str, a: Any) -> np.ndarray:
    """A 2-D array of track indices as int64, shape (n_queries, list_length).

    Notebook: 07_evaluation.ipynb
    """
    a = np.asarray(a)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D integer array (n_queries, list_length); got shape {a.shape}")
    if a.size and not np.issubdtype(a.dtype, np.integer):
        raise TypeError(f"{name} must hold integer track indices, got dtype {a.dtype}")
    return a.astype(np.int64, copy=False)


def as_float_matrix(name: str, a: Any) -> np.ndarray:
    """A finite 2-D numeric array as float32 (from float16 or float32) or float64 (otherwise).

    Notebook: 07_evaluation.ipynb
    """
    a = np.asarray(a)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D float array, got shape {a.shape}")
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise TypeError(f"{name} must be numeric, got dtype {a.dtype}")
    if a.dtype not in (np.float32, np.float64):
        a = a.astype(np.float32 if a.dtype == np.float16 else np.float64)
    bad = ~np.isfinite(a)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise ValueError(f"{name} has {int(bad.sum())} non-finite value(s), first at [{r}, {c}]")
    return a


def as_vector(name: str, x: Any) -> np.ndarray:
    """A finite 1-D float64 array (one value per query or triplet).

    Notebook: 07_evaluation.ipynb
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one value per query/triplet), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} has {int((~np.isfinite(x)).sum())} non-finite value(s)")
    return x
