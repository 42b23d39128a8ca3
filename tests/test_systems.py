"""The systems registry: every registered system trains a step and embeds, and a new system
plugs in with one class and no edit anywhere else."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from mrlib import losses, mining as mm, train as T
from mrlib.systems import SYSTEMS, System, TripletLoss, register

TINY = dict(width=0.0625, patch_len=32, n_neg=8, negatives_per_batch=4, batch_tracks=8,
            epochs=1, steps_per_epoch=1, val_patches=2, eval_batch=64, patience=0, prefetch=0,
            matchnet_patches=2)


@pytest.fixture(scope="module")
def data() -> T.TrainData:
    """36 tracks of tag-dependent noise spectra (24 bins x 40 frames)."""
    from mrlib import synth

    n, n_bins = 36, 24
    cat = synth.sample_catalog(n, 0)
    rng = np.random.default_rng(0)
    proj = rng.standard_normal((cat.tags.shape[1], n_bins)).astype(np.float32)
    feats = [((cat.tags[i] @ proj)[:, None] * 3.0 - 40.0
              + 2.0 * rng.standard_normal((n_bins, 40))).astype(np.float16) for i in range(n)]
    split = np.array(["train"] * 24 + ["val"] * 8 + ["test"] * 4, dtype=object)
    return T.TrainData(features=feats, tags=cat.tags, categories=list(cat.vocabulary["category"]),
                       split=split, track_ids=[f"t{i:03d}" for i in range(n)],
                       available=np.ones(n, bool), n_bins=n_bins, name="toy")


def _train(tmp_path, data, **kw) -> T.RunResult:
    cfg = T.TrainConfig(**{**TINY, "out_dir": str(tmp_path / "run"), **kw})
    return T.train(cfg, data=data, progress=False)


def test_one_registry():
    # the built-in systems come first, in this order; a system added later goes after them
    assert tuple(SYSTEMS)[:4] == ("at", "tl", "tl_autopool", "matchnet")
    assert T.SYSTEMS is SYSTEMS
    assert all(key == s.key for key, s in SYSTEMS.items())
    assert T.PAPER_LR == {k: s.paper_lr for k, s in SYSTEMS.items()}
    with pytest.raises(ValueError, match="registered already"):
        register(TripletLoss())


_CASES = [("at", "distance"), ("tl", "distance"), ("tl", "online-semihard"), ("tl_autopool", "uniform"),
          ("matchnet", "neighbors")]
# every other registered system too (one added to mrlib/systems.py is trained here unedited)
_CASES += [(key, "distance") for key in SYSTEMS if key not in {k for k, _ in _CASES}]


@pytest.mark.parametrize("system,mining", _CASES)
def test_every_system_trains_a_step_and_embeds(tmp_path, data, system, mining):
    run = _train(tmp_path, data, system=system, mining=mining)
    s = SYSTEMS[system]
    assert run.summary["global_steps"] == 1 and run.summary["representation"] == s.representation
    E = run.embeddings
    assert E.shape[0] == len(data) and np.isfinite(E).all()
    assert (run.metrics["active_fraction"].notna().iloc[1:].all()) == s.triplet_stats
    if s.tags:
        assert E.shape[1] == data.tags.shape[1] and ((E >= 0) & (E <= 1)).all()
    if s.per_patch:
        assert run.patch_embeddings.shape[:2] == (len(data), TINY["val_patches"])
    again = T.embed_tracks(run.model(), data, run.catalog_index, 32, n_patches=2)
    np.testing.assert_allclose(again, E, rtol=1e-4, atol=1e-5)


class _HingeFreeObjective(nn.Module):
    """A toy loss: the softplus of the distance gap of offline triplets (no margin)."""

    def __init__(self, model: nn.Module, config) -> None:
        super().__init__()
        self.model = model

    def forward(self, x, y=None, S=None, idx=None, n_triplets: int = 0, shared: bool = True):
        a, p, n = self.model(x).float().split(n_triplets)
        gap = (a - p).pow(2).sum(1) - (a - n).pow(2).sum(1)
        loss = nn.functional.softplus(gap).mean()
        _, active = losses.triplet_loss(a, p, n, margin=0.0)
        return loss, active, n_triplets, loss.detach()


class _SoftTriplet(TripletLoss):
    key = "toy_soft_triplet"
    network = "tl"
    mining = "offline"
    objective = _HingeFreeObjective


def test_a_new_system_plugs_in_with_one_class(tmp_path, data, monkeypatch):
    toy = _SoftTriplet()
    monkeypatch.setitem(SYSTEMS, toy.key, toy)
    run = _train(tmp_path, data, system=toy.key, mining="uniform")
    assert run.config.name == "toy_soft_triplet_uniform_s0"
    assert run.summary["system"] == toy.key and run.summary["lr"] == toy.default_lr
    np.testing.assert_allclose(np.linalg.norm(run.embeddings, axis=1), 1.0, rtol=1e-5)
    with pytest.raises(ValueError, match="offline-mined"):
        T.TrainConfig(system=toy.key, mining="online-hard")
    assert isinstance(toy, System) and toy.key not in T.DEFAULT_LR   # nothing else was edited


def test_unknown_system_is_refused():
    with pytest.raises(ValueError, match="system must be one of"):
        T.TrainConfig(system="svm")
    assert torch.device("cpu") == T.pick_device("cpu")


@pytest.mark.parametrize("system,mining,sampler", [("tl", "distance", "shuffled"),
                                                   ("tl", "online-semihard", "shuffled")])
def test_a_split_smaller_than_one_batch_trains_one_smaller_batch(tmp_path, data, system, mining, sampler):
    # 24 training tracks: Np = Nn = 1 mines 24 triplets, fewer than a batch of 48 negatives,
    # and 24 tracks are fewer than a batch of 144; either way the epoch is the one smaller batch
    run = _train(tmp_path, data, system=system, mining=mining, sampler=sampler, n_pos=1, n_neg=1,
                 negatives_per_batch=48, batch_tracks=144, steps_per_epoch=2)
    assert run.summary["global_steps"] == 2 and np.isfinite(run.embeddings).all()
    assert np.isfinite(run.metrics["loss"].iloc[1:]).all()


def test_mining_errors_name_the_strategies_registered_now(monkeypatch):
    # a strategy registered after import (CONTRIBUTING: register_strategy) is accepted by
    # TrainConfig, so its refusals must list it too, not a list frozen at import
    toy = mm.Strategy("toy-last", "Toy last", mm.STRATEGIES["neighbors"].draw,
                      mm.STRATEGIES["neighbors"].reference, random=False, seed_code=99)
    monkeypatch.setitem(mm.STRATEGIES, toy.name, toy)
    assert T.TrainConfig(system="matchnet", mining="toy-last").mining == "toy-last"
    with pytest.raises(ValueError, match="choose mining from 'neighbors', 'uniform', 'distance', 'toy-last'$"):
        T.TrainConfig(system="matchnet", mining="online-hard")
    with pytest.raises(ValueError, match=r"TrainConfig.mining must be one of \(.*'toy-last'.*\), got 'bogus'"):
        T.TrainConfig(mining="bogus")
