"""Argument checks shared by the modules, so that every module words its errors alike.

Each returns the value converted to the type the computation needs, or raises a ``TypeError`` /
``ValueError`` that names the argument, so a notebook user sees which input was wrong. A config
dataclass states its checks as a table, field -> checks made with :func:`rule`, and runs it
with :func:`validate_fields`, so every config words its errors as ``Owner.field must be ...``.

Notebook: 00_overview.ipynb
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any, Callable, Mapping

import numpy as np

__all__ = ["check_int", "check_positive", "check_margin", "check_level", "check_indices",
           "check_choice", "check_n_jobs", "as_index_matrix", "as_float_matrix", "as_vector",
           "is_int", "is_real", "rule", "int_at_least", "FINITE", "validate_fields", "check_values"]


def is_int(value: Any) -> bool:
    """Whether ``value`` is an integer (Python or numpy), a bool excluded.

    Notebook: 00_overview.ipynb
    """
    return not isinstance(value, bool) and isinstance(value, numbers.Integral)


def is_real(value: Any) -> bool:
    """Whether ``value`` is a real number (Python or numpy), a bool excluded.

    Notebook: 00_overview.ipynb
    """
    return not isinstance(value, bool) and isinstance(value, numbers.Real)


def check_int(name: str, value: Any, minimum: int = 1) -> int:
    """``value`` as an int, or ``TypeError`` (not an int; a bool is not one) / ``ValueError``
    (below ``minimum``) naming the argument.

    Notebook: 00_overview.ipynb
    """
    if not is_int(value):
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


def check_margin(margin: Any) -> None:
    """Refuse a triplet-loss margin that is not a finite real number >= 0 (NaN included) with
    ``ValueError``; the loss and online mining share this check.

    Notebook: 04_losses.ipynb
    """
    if not isinstance(margin, numbers.Real) or not 0 <= margin < float("inf"):   # NaN fails too
        raise ValueError(f"margin must be a finite number >= 0, got {margin!r}")


def check_level(level: Any, name: str = "level", example: float = 0.95) -> float:
    """A confidence level (or, with ``name="alpha"``, a test's level) as a float in (0, 1), or
    ``ValueError`` naming ``name`` and giving ``example``.

    Notebook: 07_evaluation.ipynb
    """
    if not isinstance(level, (float, int, np.floating)) or not 0.0 < float(level) < 1.0:
        raise ValueError(f"{name} must be a float in (0, 1), e.g. {example}; got {level!r}")
    return float(level)


def check_indices(name: str, idx: Any, n: int, of: str = "") -> np.ndarray:
    """``idx`` as an int64 array of indices into ``n`` rows (``of``: what they are the rows of),
    or ``TypeError`` (not integers) / ``ValueError`` (outside ``[0, n)``) naming the argument.

    A negative index is refused: numpy would wrap it around to another track without an error.

    Notebook: 00_overview.ipynb
    """
    a = np.asarray(idx)
    if a.size and not np.issubdtype(a.dtype, np.integer):
        raise TypeError(f"{name} must hold integer indices, got dtype {a.dtype}")
    # beyond int64 an index would wrap around to a negative one when converted (uint64 0 - 1)
    if a.size and (a.min() < 0 or a.max() >= min(n, np.iinfo(np.int64).max)):
        of = f" ({of})" if of else ""
        raise ValueError(f"{name} must lie in [0, {n}){of}, got [{a.min()}, {a.max()}]")
    return a.astype(np.int64, copy=False)


def check_choice(name: str, value: Any, choices: Any) -> Any:
    """``value`` when it is one of ``choices`` (any iterable, e.g. a registry's dict), else a
    ``ValueError`` naming the argument and the choices.

    Notebook: 00_overview.ipynb
    """
    choices = tuple(choices)
    # same type and equal: an array compares element-wise (no name in its error, or a pass),
    # and True == 1; a str subclass such as numpy's str_ is still its choice
    if not any(isinstance(value, type(c)) and isinstance(value, bool) == isinstance(c, bool)
               and value == c for c in choices):
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def check_n_jobs(n_jobs: Any) -> int:
    """``n_jobs`` as an int: a number of workers >= 1, or -1 for every core; else ``ValueError``.

    Notebook: 00_overview.ipynb
    """
    if not (is_int(n_jobs) and (n_jobs > 0 or n_jobs == -1)):
        raise ValueError(f"n_jobs must be a positive int or -1 (every core), got {n_jobs!r}")
    return int(n_jobs)


def as_index_matrix(name: str, a: Any, shape: str = "(n_queries, list_length)") -> np.ndarray:
    """A 2-D array of track indices as int64; ``shape`` is what a refusal names.

    Notebook: 07_evaluation.ipynb
    """
    a = np.asarray(a)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D integer array {shape}; got shape {a.shape}")
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
    """A finite 1-D float64 array (one value per unit: a query, a comparison).

    Notebook: 07_evaluation.ipynb
    """
    try:
        x = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as error:   # strings, None, ragged lists
        raise TypeError(f"{name} must be a 1-D sequence of numbers (one per unit): {error}") from None
    if x.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one value per unit), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} has {int((~np.isfinite(x)).sum())} non-finite value(s)")
    return x


# ---------------------------------------------------------------------------------------------
# Config tables: field -> checks, run by validate_fields
# ---------------------------------------------------------------------------------------------
def rule(test: Callable[[Any], bool], what: str, error: type = ValueError,
         convert: Callable[[Any], Any] | None = None, optional: bool = False) -> Callable:
    """A check of one field for :func:`validate_fields`.

    Parameters
    ----------
    test : callable
        ``test(value)`` is true for a valid value.
    what : str
        What the field must be, for the message ``"<Owner.field> must be <what>, got <value>"``.
    error : type, default ValueError
        The exception raised when ``test`` fails.
    convert : callable, optional
        Applied to a valid value (``int``, ``float``, ``os.fspath``).
    optional : bool, default False
        ``None`` passes unchecked.

    Returns
    -------
    callable
        ``check(name, value)``: the value (converted), or ``error``.

    Notebook: 00_overview.ipynb
    """
    def check(name: str, value: Any) -> Any:
        if optional and value is None:
            return None
        if not test(value):
            raise error(f"{name} must be {what}, got {value!r}")
        return value if convert is None else convert(value)
    return check


def int_at_least(low: int) -> tuple:
    """The checks of an int field ``>= low``: ``TypeError`` for a non-int, ``ValueError`` below.

    Notebook: 00_overview.ipynb
    """
    return rule(is_int, "an int", TypeError, int), rule(lambda v: v >= low, f">= {low}")


#: A finite number, as a float (``TypeError`` otherwise).
FINITE = rule(lambda v: is_real(v) and math.isfinite(v), "a finite number", TypeError, float)


def validate_fields(obj: Any, checks: Mapping[str, tuple]) -> None:
    """Pass every field of the dataclass ``obj`` through its checks, in order, and keep the values
    they return (frozen dataclasses included).

    Parameters
    ----------
    obj : dataclass instance
        Its class names the fields in the messages: ``"TrainConfig.epochs must be >= 0, ..."``.
    checks : mapping
        Field name -> tuple of checks (:func:`rule`, or any ``check(name, value)``); every field
        needs an entry, so a new field cannot go unchecked.

    Notebook: 00_overview.ipynb
    """
    values = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    for name, value in check_values(type(obj).__name__, values, checks).items():
        object.__setattr__(obj, name, value)


def check_values(owner: str, values: Mapping[str, Any], checks: Mapping[str, tuple]) -> dict:
    """Pass each of ``values`` (field name -> value) through its field's checks, in order: the
    values they return, or the first check's error, worded ``"<owner>.<field> must be ..."``.

    :func:`validate_fields` runs it on a whole dataclass; a caller with some fields only (the
    ``-p`` values an experiment shares among its rows) runs it on those.

    Notebook: 00_overview.ipynb
    """
    checked = {}
    for name, value in values.items():
        for check in checks[name]:
            value = check(f"{owner}.{name}", value)
        checked[name] = value
    return checked
