"""The paper profile: ``--profile paper`` trains :func:`mrlib.train.paper_config`, and every
Table-2 row takes two optimiser steps at the paper's shapes (96 × 512 patches, width 1, the
paper's batches and learning rates) on a CPU."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from mrlib import experiments as X
from mrlib import train as T
from test_train import toy_data

PAPER_ROWS = X.table2_rows("synthetic", "paper")
TRAINED = [r for r, p in PAPER_ROWS.items() if "reference" not in p and p["epochs"] > 0]
# Fields that choose the catalog; the two-step test brings its own paper-shaped features.
CATALOG_FIELDS = ("catalog", "n_tracks", "catalog_seed", "catalog_kwargs", "features")


def test_paper_profile_trains_paper_config():
    assert set(TRAINED) == {"AT Baseline", "TL Neighbors", "TL Random uniform", "TL Distance-based",
                            "TL Autopool", "TL Online semi-hard"}
    for row, p in PAPER_ROWS.items():
        if "reference" in p:
            continue
        expected = T.paper_config(p["system"], p["mining"], run_name=p["run_name"]).to_dict()
        if row == "TL untrained":
            expected["epochs"] = 0
        assert p == {k: v for k, v in expected.items()
                     if k not in ("device", "n_jobs", "out_dir", "prefetch", "seed")}, row
        # the fields the paper states (Prétet et al. 2020, §4; Table 1)
        assert (p["width"], p["patch_len"], p["steps_per_epoch"], p["patience"]) == (1.0, 512, 2000, 10)
        assert (p["n_tracks"], p["n_pos"], p["n_neg"]) == (14246, 15, 250)
        assert p["features"] == {"sr": 44100, "hop_length": 1024}
        assert p["lr"] == T.PAPER_LR[p["system"]]
        assert p["sampler"] == "paper" and p["negatives_per_batch"] == 42
    assert T.PAPER_LR["tl"] == 1e-6 and T.PAPER_LR["at"] == 1e-4


@pytest.fixture(scope="module")
def paper_shaped_data() -> T.TrainData:
    """96-bin features of 520 frames (a 512-frame patch fits) for 120 tracks (86 for training)."""
    return toy_data(120, n_bins=96, T_frames=520)


# At the paper's shapes one TL step holds 126 patches of 96 x 512 through a width-1 network:
# ~150 s of CPU and ~13 GB of memory per row (measured on 2 cores), too much for every CI run.
PAPER_SHAPES = os.environ.get("MRLIB_PAPER_SHAPES") == "1"


@pytest.mark.skipif(not PAPER_SHAPES, reason="set MRLIB_PAPER_SHAPES=1 (about 20 min and 14 GB on 2 cores)")
@pytest.mark.parametrize("row", TRAINED)
def test_two_steps_of_every_row_at_paper_shapes(tmp_path, paper_shaped_data, row):
    fields = {k: v for k, v in PAPER_ROWS[row].items() if k not in CATALOG_FIELDS}
    # Only the list sizes shrink (86 training tracks cannot give 15 + 250 neighbours) and the
    # run stops after two steps; shapes, width, batches and rates are the paper's.
    fields.update(n_pos=3, n_neg=60, epochs=1, steps_per_epoch=2, val_patches=1, eval_batch=32,
                  amp=False, device="cpu", n_jobs=1, prefetch=1)
    run = T.train(T.TrainConfig(**fields, seed=0, out_dir=str(tmp_path / row.replace(" ", "_"))),
                  data=paper_shaped_data, progress=False)
    m = run.metrics
    assert int(m["step"].iloc[-1]) == 2 and np.isfinite(m["loss"].iloc[-1])
    model = run.model()
    assert (model.config["width"], model.config["n_bins"]) == (1.0, 96)
    assert model.config["system"] == fields["system"]
    with torch.no_grad():                       # a 96 x 512 patch goes through the trained network
        out = model(torch.zeros(2, 96, 512))
    assert out.shape[0] == 2 and torch.isfinite(out).all()
    assert run.embeddings.shape[0] == len(paper_shaped_data.split)
