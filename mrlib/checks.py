"""Argument checks shared by the evaluation modules: ints, levels, index and score arrays.

Each returns the value converted to the type the computation needs, or raises a ``TypeError`` /
``ValueError`` that names the argument, so a notebook user sees which input was wrong.

Notebook: 07_evaluation.ipynb
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["check_int", "check_level", "as_index_matrix", "as_float_matrix", "as_vector", "as_tensor"]


# ----------------------------------------------------------------------------------------
def check_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_level(level) -> float:
    if not isinstance(level, (float, int, np.floating)) or not 0.0 < float(level) < 1.0:
        raise ValueError(f"level must be a float in (0, 1), e.g. 0.95; got {level!r}")
    return float(level)


def as_index_matrix(name: str, a) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D integer array (n_queries, list_length); got shape {a.shape}")
    if a.size and not np.issubdtype(a.dtype, np.integer):
        raise TypeError(f"{name} must hold integer track indices, got dtype {a.dtype}")
    return a.astype(np.int64, copy=False)


def as_float_matrix(name: str, a) -> np.ndarray:
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


def as_vector(name: str, x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one value per query/triplet), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} has {int((~np.isfinite(x)).sum())} non-finite value(s)")
    return x


def as_tensor(a: np.ndarray, device: torch.device) -> torch.Tensor:
    """A tensor view of ``a`` (no copy on CPU); read-only arrays (memory maps) are copied."""
    a = np.ascontiguousarray(a)
    if not a.flags.writeable:
        a = a.copy()
    return torch.from_numpy(a).to(device)
