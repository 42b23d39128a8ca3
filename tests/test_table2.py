"""Tests of mrlib.table2: one validated TrainConfig per row of Table 2, shared defaults, overrides."""
from __future__ import annotations

import json

import pytest

from mrlib import evaluate as ev
from mrlib import table2 as t2
from mrlib.train import TrainConfig


def test_table2_systems_rows_and_configs():
    cfgs = t2.table2_systems()
    assert tuple(cfgs) == t2.TABLE2_ROWS
    assert set(ev.PAPER_TABLE2) < set(cfgs)  # every row of the paper is trained here
    keys = {frozenset(c) for c in cfgs.values()}
    assert len(keys) == 1  # the same fields in every row: one table
    want = {"AT Baseline": ("at", None), "TL Neighbors": ("tl", "neighbors"),
            "TL Random uniform": ("tl", "uniform"), "TL Distance-based": ("tl", "distance"),
            "TL Autopool": ("tl_autopool", "distance"), "TL Online semi-hard": ("tl", "online-semihard"),
            "TL untrained": ("tl", "distance")}
    for name, (system, mining) in want.items():
        c = TrainConfig(**cfgs[name])  # builds and validates
        assert c.system == system
        if mining is not None:
            assert c.mining == mining
        for k, v in t2.TABLE2_DEFAULTS.items():
            if not (name == "TL untrained" and k == "epochs"):
                assert cfgs[name][k] == v, (name, k)
    assert cfgs["TL untrained"]["epochs"] == 0
    assert len({c["run_name"] for c in cfgs.values()}) == len(cfgs)  # one folder per row
    json.dumps(cfgs)  # recordable as is


def test_table2_systems_common_overrides_and_errors():
    cfgs = t2.table2_systems(epochs=3, n_tracks=80, device="cpu")
    assert all(c["n_tracks"] == 80 and c["device"] == "cpu" for c in cfgs.values())
    assert cfgs["TL Autopool"]["epochs"] == 3 and cfgs["TL untrained"]["epochs"] == 0
    # copies: editing one row touches neither the others nor the defaults
    shared = {"duration_s": 30.0}
    cfgs = t2.table2_systems(catalog_kwargs=shared)
    cfgs["AT Baseline"]["catalog_kwargs"]["duration_s"] = 5.0
    assert cfgs["TL Neighbors"]["catalog_kwargs"] == {"duration_s": 30.0} == shared
    cfgs["TL Neighbors"]["lr"] = 0.5
    assert t2.table2_systems()["TL Neighbors"]["lr"] == t2.TABLE2_DEFAULTS["lr"]
    with pytest.raises(ValueError, match="define the rows"):
        t2.table2_systems(mining="uniform")
    with pytest.raises(TypeError, match="unknown TrainConfig field"):
        t2.table2_systems(epoch=3)
    # a bad value is reported as the caller's, not as a row's (it is every row's)
    with pytest.raises(ValueError, match=r"^TrainConfig\.width must be"):
        t2.table2_systems(width=-1.0)
    with pytest.raises(ValueError, match=r"^TrainConfig\.pooling must be None or one of"):
        t2.autopool_rows(profile="smoke", overrides={"pooling": "bogus"})
    # a value that only some rows refuse names the first of them
    with pytest.raises(ValueError, match="^Table 2 row 'AT Baseline': TrainConfig.pooling is"):
        t2.table2_systems(pooling="max")
    for profile in ("huge", ["quick"]):      # an unhashable one too: a ValueError naming it
        with pytest.raises(ValueError, match=r"^profile must be one of \(.smoke., .quick."):
            t2.table2_rows(profile=profile)


def test_pooling_positions_follow_alpha_on_the_test_patches():
    # ρ of a TL Autopool network on the seeded test patches: 0 at α = 0 (the mean), towards +1 or
    # −1 with a large positive or negative α, and one value per patch and dimension.
    from types import SimpleNamespace

    import numpy as np
    import torch

    from mrlib.models import build_model

    torch.manual_seed(0)
    model = build_model("tl_autopool", width=1 / 16, patch_len=64, embedding_dim=8).eval()
    rng = np.random.default_rng(0)
    data = SimpleNamespace(features={i: rng.normal(size=(96, 200)).astype(np.float32) for i in range(5)})
    idx = np.arange(5)
    at_mean = t2._pooling_positions(model, data, idx, patch_len=64, tracks_per_batch=2)
    assert at_mean.shape == (5 * 8, 8) and at_mean.abs().max().item() < 1e-5
    with torch.no_grad():
        model.autopool.alpha.copy_(torch.tensor([1e3] * 4 + [-1e3] * 4))
    rho = t2._pooling_positions(model, data, idx, patch_len=64)
    assert (rho[:, :4] > 0.99).all() and (rho[:, 4:] < -0.99).all()


@pytest.mark.parametrize("profile", ["smoke", "quick"])
def test_the_sweeps_change_only_their_factors_of_the_table2_row(profile):
    """Each sweep point is its Table-2 row with only the swept fields (and its folder) changed,
    so a difference between points is the factor's; the Table-2 point is among them."""
    def config(p):          # every field, defaults included, but the folder's name
        return {k: v for k, v in TrainConfig(**p).to_dict().items() if k != "run_name"}

    rows = t2.table2_rows(profile=profile)
    for sweep, base, swept in ((t2.tl_sweep_rows(profile=profile), "TL Distance-based", {"lr", "margin"}),
                               (t2.at_sweep_rows(profile=profile), "AT Baseline", {"lr", "dropout"})):
        trained = {name: config(p) for name, p in sweep.items() if "reference" not in p}
        assert len({sweep[name]["run_name"] for name in trained}) == len(trained) >= 4
        table_row = config(rows[base])
        for c in trained.values():
            assert {k for k in c if c[k] != table_row[k]} <= swept
        assert table_row in trained.values()
    points = {(p["lr"], p["margin"]) for p in t2.tl_sweep_rows(profile=profile).values()}
    assert points == {(1e-3, 0.5), (1e-4, 0.5), (3e-4, 0.5), (3e-3, 0.5), (1e-2, 0.5), (1e-3, 0.1)}


@pytest.mark.parametrize("profile", ["smoke", "quick"])
def test_tl_tuned_is_table2_with_only_the_tl_rows_rate_changed(profile):
    """``tl_tuned`` holds Table 2's trained rows under their own names (so the claims read it as
    they read Table 2); only the TL rows' rate and folder differ, and ``-p lr`` is refused."""
    rows, tuned = t2.table2_rows(profile=profile), t2.tl_tuned_rows(profile=profile)
    assert list(tuned) == [n for n, p in rows.items() if "reference" not in p and p["epochs"] > 0]
    assert "AT Baseline" in tuned and sum(n.startswith("TL ") for n in tuned) == 5
    for name, p in tuned.items():
        assert set(p) == set(rows[name]), name
        changed = {k for k in p if p[k] != rows[name][k]}
        assert changed == ({"lr", "run_name"} if name.startswith("TL ") else set()), name
        assert p["lr"] == (t2.TL_TUNED_LR if name.startswith("TL ") else rows[name]["lr"])
    with pytest.raises(ValueError, match="drop -p lr"):
        t2.tl_tuned_rows(profile=profile, overrides={"lr": 1e-3})
