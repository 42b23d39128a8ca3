"""Table 2's trained rows: the training configuration of each system the paper compares.

One source of truth for what each row of Prétet et al. 2020's Table 2 trains (system,
mining, run folder) and the fields every row shares, validated by building the
:class:`~mrlib.train.TrainConfig` of each row. It sits above training (it needs
``TrainConfig``) and below the experiments that train and evaluate the rows; the metrics and
the paper's numbers are in :mod:`mrlib.evaluate`.

Notebook: 07_evaluation.ipynb
"""
from __future__ import annotations

import dataclasses
import json

from mrlib.train import TrainConfig

__all__ = ["TABLE2_DEFAULTS", "TABLE2_ROWS", "table2_systems"]

#: Training fields shared by every row of Table 2, at notebook 07's defaults: a CPU lesson
#: that trains six systems in a few minutes (see 07_evaluation.ipynb for what it takes to
#: beat the untrained network). The papers' scale is :func:`mrlib.train.paper_config`.
TABLE2_DEFAULTS: dict = {
    "catalog": "synthetic",
    "n_tracks": 2000,
    "catalog_seed": 0,
    "catalog_kwargs": {"duration_s": 15.0},
    "patch_len": 64,
    "width": 0.125,
    "lr": 1e-3,
    "epochs": 16,
    "steps_per_epoch": 25,
    "patience": 0,
    "sampler": "shuffled",
    # 48 triplets (144 patches) per offline step, 144 tracks per online / AT step: every row
    # sees the same number of patches per step (16 triplets were too few for Distance-based
    # and Neighbors mining to learn in 400 steps: validation MAP@20 0.084 vs 0.118 with 48)
    "negatives_per_batch": 48,
    "batch_tracks": 144,
    "seed": 0,
}

# What makes each row the row it is (system, mining; the untrained reference trains for 0
# epochs), and its run folder's name. ``common`` may not change these.
_TABLE2_ROWS: dict[str, dict] = {
    "AT Baseline": {"system": "at", "mining": "distance", "run_name": "at"},
    "TL Neighbors": {"system": "tl", "mining": "neighbors", "run_name": "tl_neighbors"},
    "TL Random uniform": {"system": "tl", "mining": "uniform", "run_name": "tl_uniform"},
    "TL Distance-based": {"system": "tl", "mining": "distance", "run_name": "tl_distance"},
    "TL Autopool": {"system": "tl_autopool", "mining": "distance", "run_name": "tl_autopool"},
    "TL Online semi-hard": {"system": "tl", "mining": "online-semihard", "run_name": "tl_online_semihard"},
    "TL untrained": {"system": "tl", "mining": "distance", "epochs": 0, "run_name": "tl_untrained"},
}

#: Row names of :func:`table2_systems`, in table order.
TABLE2_ROWS: tuple[str, ...] = tuple(_TABLE2_ROWS)


def table2_systems(*, rows=None, **common) -> dict[str, dict]:
    """The trained rows of Table 2 as :class:`mrlib.train.TrainConfig` fields: one source of truth.

    Rows (Prétet et al. 2020, Table 2, plus the reference and the paper's future work):

    ==========================  ===============  ====================  =============
    row                         ``system``       ``mining``            ``run_name``
    ==========================  ===============  ====================  =============
    AT Baseline                 ``at``           (unused)              ``at``
    TL Neighbors                ``tl``           ``neighbors``         ``tl_neighbors``
    TL Random uniform           ``tl``           ``uniform``           ``tl_uniform``
    TL Distance-based           ``tl``           ``distance``          ``tl_distance``
    TL Autopool                 ``tl_autopool``  ``distance`` (§3.3)   ``tl_autopool``
    TL Online semi-hard         ``tl``           ``online-semihard``   ``tl_online_semihard``
    TL untrained                ``tl``           ``epochs = 0``        ``tl_untrained``
    ==========================  ===============  ====================  =============

    Every row shares :data:`TABLE2_DEFAULTS` (catalog, size, patch length, width, learning
    rate, training budget, seed …), updated by ``common``; so ``TrainConfig(**cfg)`` trains a
    row, and a sweep that runs ``06_training.ipynb`` once per row with these fields (each
    in ``<table2_dir>/<run_name>``) reproduces notebook 07's table exactly (same seeds, same
    numbers on the same device). The untrained row keeps ``epochs = 0`` whatever ``common``
    says: it is the network at initialisation, embedded with the same test patches.

    Parameters
    ----------
    rows : sequence of str, optional
        A subset of :data:`TABLE2_ROWS` (default all, in table order).
    **common
        :class:`~mrlib.train.TrainConfig` fields applied to every row, e.g. ``n_tracks=1000,
        epochs=20, device="cuda"``. ``system``, ``mining`` and ``run_name`` define the rows
        and are refused here.

    Returns
    -------
    dict row name -> dict of TrainConfig fields
        Plain, JSON-serialisable dicts with the same keys for every row (print them as a
        table, record them beside the results). Each is validated by building its
        ``TrainConfig``.

    Raises
    ------
    ValueError
        For an unknown row, a row-defining field in ``common``, or a field value that
        ``TrainConfig`` rejects.
    TypeError
        For an unknown field name.

    Examples
    --------
    >>> cfgs = table2_systems(epochs=2)
    >>> cfgs["TL Distance-based"]["mining"], cfgs["TL untrained"]["epochs"]
    ('distance', 0)

    Notebook: 07_evaluation.ipynb
    """
    if rows is None:
        rows = TABLE2_ROWS
    if isinstance(rows, str):
        rows = [rows]
    unknown = [r for r in rows if r not in _TABLE2_ROWS]
    if unknown:
        raise ValueError(f"unknown Table 2 row(s) {unknown}; rows are {list(TABLE2_ROWS)}")
    fixed = {"system", "mining", "run_name"} & set(common)
    if fixed:
        raise ValueError(f"{sorted(fixed)} define the rows of Table 2 and cannot be set for all "
                         f"of them; choose rows with rows=[...] instead")
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    typos = sorted(set(common) - known)
    if typos:
        raise TypeError(f"unknown TrainConfig field(s) {typos}; known: {sorted(known)}")
    out = {}
    for name in rows:
        cfg = {**TABLE2_DEFAULTS, **common, **_TABLE2_ROWS[name]}
        try:
            TrainConfig(**cfg)
        except (TypeError, ValueError) as err:
            raise ValueError(f"Table 2 row {name!r}: {err}") from None
        # copies: a caller editing one row must not edit the others (or the defaults)
        out[name] = json.loads(json.dumps(cfg))
    return out
