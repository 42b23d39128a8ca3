"""Argument checks shared by the modules, so that every module words its errors alike."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["check_int", "check_positive"]


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
