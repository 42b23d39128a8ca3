"""Tests of mrlib.models: Table 1 shapes, any patch length, gradient flow, MatchNet pairs."""
from __future__ import annotations

import time

import pytest
import torch

from mrlib.autopool import autopool
from mrlib.layers import init_weights
from mrlib.losses import bce_loss, matchnet_loss, triplet_loss
from mrlib.models import (NETWORKS, ClampedMaxPool2d, FrequencyBatchNorm, TripletMatchNet,
                          build_model, summary)

# Table 1 of Prétet et al. (2020): (F, T, C) after each max-pool, at width 1 and 96 x 512.
TABLE1_POOLS = {
    "at": [(48, 128, 128), (24, 32, 256), (12, 8, 512), (4, 2, 1024), (1, 1, 2048)],
    "tl": [(48, 128, 128), (24, 32, 256), (12, 8, 512), (4, 2, 1024), (1, 1, 2048)],
    "tl_autopool": [(48, 256, 64), (24, 128, 128), (12, 64, 256), (6, 32, 512), (1, 32, 1024)],
}

# Notebook defaults: small enough for a CPU lesson.
NB = dict(width=0.25, n_bins=96, patch_len=128)


# small tensors: one torch thread (see tests/conftest.py)
pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _rows(df, prefix):
    return [(int(r.F), int(r.T), int(r.C)) for r in df.itertuples()
            if r.description.startswith(prefix)]


@pytest.mark.parametrize("system", ["at", "tl", "tl_autopool"])
def test_table1_shapes_at_paper_size(system):
    model = build_model(system, n_tags=488, seed=0)
    df = summary(model)
    assert _rows(df, "MP (") == TABLE1_POOLS[system]
    convs = [c for (_, _, c) in _rows(df, "Conv2D")]
    assert convs == [c for (_, _, c) in TABLE1_POOLS[system]]
    last = df[df.layer == ("fc" if system != "tl_autopool" else "autopool")].iloc[0]
    if system == "at":
        assert last.output_shape == (488,)
    elif system == "tl":
        assert last.output_shape == (128,)
    else:
        fc = df[df.layer == "fc"].iloc[0]
        assert (fc["F"], fc["T"], fc["C"]) == (1, 32, 128)          # FC(d) per time step
        assert last.output_shape == (128,)                  # Autopool(1, 32) -> (d)
    assert df.iloc[-1].params == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("system", NETWORKS)
@pytest.mark.parametrize("patch_len", [1, 7, 50, 128, 300])
def test_any_patch_length(system, patch_len):
    model = build_model(system, n_tags=10, width=0.0625, patch_len=patch_len, seed=1).eval()
    x = torch.randn(3, 96, patch_len)
    with torch.no_grad():
        out = model(x, x) if system == "matchnet" else model(x)
    assert torch.isfinite(out).all()
    expected = {"at": (3, 10), "tl": (3, 128), "tl_autopool": (3, 128), "matchnet": (3,)}[system]
    assert tuple(out.shape) == expected
    if system == "tl_autopool":
        # clamped (2,2) pools: T' = T // 16 when T >= 16, else what is left (at least 1)
        frames = model.frame_embeddings(x)
        t = patch_len
        for _ in range(4):
            t = t // min(2, t)
        assert frames.shape == (3, t, 128)


def test_other_n_bins_and_input_layouts():
    model = build_model("tl", width=0.0625, n_bins=84, seed=2).eval()
    x = torch.randn(2, 84, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x.unsqueeze(1)))
    with pytest.raises(ValueError, match="n_bins=84"):
        model(torch.randn(2, 96, 64))
    with pytest.raises(ValueError, match="shape"):
        model(torch.randn(2, 2, 84, 64))
    with pytest.raises(TypeError, match="floating"):
        model(torch.zeros(2, 84, 64, dtype=torch.int64))
    # float16 feature caches and float64 arrays are cast to the weights' dtype
    with torch.no_grad():
        torch.testing.assert_close(model(x.half()), model(x.half().float()))
        assert model(x.double()).dtype == torch.float32


def test_outputs_ranges():
    torch.manual_seed(3)
    x = torch.randn(4, 96, 64)
    at = build_model("at", n_tags=5, seed=0, width=0.125, patch_len=64).eval()
    with torch.no_grad():
        probs = at(x)
        assert ((probs > 0) & (probs < 1)).all()
        torch.testing.assert_close(probs, torch.sigmoid(at.logits(x)))
        torch.testing.assert_close(at.embed(x), probs)
        for system in ("tl", "tl_autopool"):
            e = build_model(system, seed=0, width=0.125, patch_len=64).eval()(x)
            torch.testing.assert_close(e.norm(dim=1), torch.ones(4))


@pytest.mark.parametrize("system", NETWORKS)
def test_gradients_reach_every_parameter_in_seconds(system):
    """Forward + backward at the notebook defaults (width 0.25, 96 x 128, batch 16)."""
    torch.manual_seed(4)
    model = build_model(system, n_tags=20, seed=0, **NB).train()
    x = torch.randn(16, 96, 128)
    start = time.perf_counter()
    if system == "at":
        loss = bce_loss(model.logits(x), torch.rand(16, 20))
    elif system == "matchnet":
        z = model.pair_logits(x[:4], x[4:10])
        z2 = model.pair_logits(x[:4], x[10:])
        loss = matchnet_loss(z, z2)
    else:
        e = model(x)
        loss, _ = triplet_loss(e[:5], e[5:10], e[10:15], margin=1.5)
    loss.backward()
    elapsed = time.perf_counter() - start
    dead = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()
            or p.grad.abs().sum().item() == 0.0]
    assert not dead, f"no gradient reaches {dead}"
    assert elapsed < 30.0, f"forward+backward took {elapsed:.1f} s"


def test_width_multiplier_and_config_roundtrip():
    m = build_model("at", n_tags=7, width=0.5, seed=0)
    convs = [mod.out_channels for mod in m.modules() if isinstance(mod, torch.nn.Conv2d)]
    assert convs == [64, 128, 256, 512, 1024]
    for system in NETWORKS:
        a = build_model(system, n_tags=7, width=0.125, seed=11, **({"dropout": 0.1} if system != "matchnet" else {}))
        b = build_model(**a.config, seed=11)
        assert type(a) is type(b)
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys()
        for k in sa:
            torch.testing.assert_close(sa[k], sb[k])


def test_seed_is_deterministic_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    a = build_model("tl", width=0.125, seed=5)
    after = torch.rand(3)
    torch.testing.assert_close(before, after)
    b = build_model("tl", width=0.125, seed=5)
    c = build_model("tl", width=0.125, seed=6)
    assert torch.equal(a.fc.weight, b.fc.weight) and not torch.equal(a.fc.weight, c.fc.weight)


def test_build_model_errors():
    with pytest.raises(ValueError, match="system"):
        build_model("vgg")
    with pytest.raises(TypeError, match="n_tags must be an int, got NoneType"):
        build_model("at")
    with pytest.raises(ValueError, match="width"):
        build_model("tl", width=0)
    with pytest.raises(ValueError, match="dropout"):
        build_model("tl", dropout=1.0)
    with pytest.raises(TypeError, match="unexpected keyword"):
        build_model("tl", metric_hidden=5)


def test_autopool_model_pools_frames():
    torch.manual_seed(6)
    model = build_model("tl_autopool", seed=0, **NB).eval()
    x = torch.randn(2, 96, 128)
    with torch.no_grad():
        frames = model.frame_embeddings(x)
        assert frames.shape == (2, 8, 128)                      # T = 128 / 16
        torch.testing.assert_close(model.pooled(x), frames.mean(1))   # alpha = 0: the mean
        model.autopool.alpha.fill_(1e4)
        torch.testing.assert_close(model.pooled(x), frames.amax(1), atol=1e-4, rtol=0)
        a = torch.randn(128)
        model.autopool.alpha.copy_(a)
        torch.testing.assert_close(model.pooled(x), autopool(frames, a, axis=1))


def test_fixed_pooling_arms_of_the_autopool_model():
    x = torch.randn(2, 96, 128)
    learned = build_model("tl_autopool", seed=0, **NB).eval()
    for pooling, reduce in (("mean", lambda f: f.mean(1)), ("max", lambda f: f.amax(1))):
        model = build_model("tl_autopool", seed=0, pooling=pooling, **NB).eval()
        assert model.autopool is None and model.config["pooling"] == pooling
        # the same weights as the learned arm at the same seed: only the pooling differs
        for (k, a), (_, b) in zip(model.backbone.state_dict().items(),
                                  learned.backbone.state_dict().items()):
            torch.testing.assert_close(a, b, msg=k)
        with torch.no_grad():
            torch.testing.assert_close(model.pooled(x), reduce(model.frame_embeddings(x)))
        again = build_model(**model.config)
        assert again.pooling == pooling
    assert "pooling" not in learned.config          # the paper's model keeps its config
    with pytest.raises(ValueError, match="pooling"):
        build_model("tl_autopool", pooling="median")


def test_matchnet_pairs_equal_pairwise_forward():
    torch.manual_seed(7)
    model = build_model("matchnet", width=0.125, n_bins=96, patch_len=32, seed=0).eval()
    assert isinstance(model, TripletMatchNet)
    xs, ys = torch.randn(2, 96, 32), torch.randn(3, 96, 32)
    with torch.no_grad():
        z = model.pair_logits(xs, ys)
        assert z.shape == (2, 3)
        loop = torch.stack([torch.stack([model(xs[i:i + 1], ys[j:j + 1])[0] for j in range(3)])
                            for i in range(2)])
        torch.testing.assert_close(z, loop, atol=1e-5, rtol=1e-5)
        # batched metric over song triplets equals per-item
        ex, ey = model.embed(torch.randn(8, 96, 32)).view(2, 4, -1), model.embed(torch.randn(6, 96, 32)).view(2, 3, -1)
        zb = model.metric_pairs(ex, ey)
        assert zb.shape == (2, 4, 3)
        torch.testing.assert_close(zb[1], model.metric_pairs(ex[1], ey[1]))
        # a wrong embedding size is named, also a size of 1 that would broadcast
        for e_y in (4, 1):
            with pytest.raises(ValueError, match="paired embeddings"):
                model.metric_pairs(ex, torch.randn(2, 3, e_y))
        # paired patches of different counts are refused with both shapes
        with pytest.raises(ValueError, match=r"paired embeddings .* got \(2, \d+\) and \(3, \d+\)"):
            model(xs, ys)


def test_init_weights_starts_batchnorm_afresh():
    model = build_model("tl", width=0.125, n_bins=96, patch_len=32, seed=0)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        for bn in bns:
            bn.weight.fill_(5.0)
            bn.bias.fill_(-1.0)
    init_weights(model)
    assert all((bn.weight == 1).all() and (bn.bias == 0).all() for bn in bns)


def test_frequency_batchnorm_and_clamped_pool():
    bn = FrequencyBatchNorm(4).train()
    x = torch.randn(8, 1, 4, 50) * torch.tensor([1.0, 10.0, 0.1, 3.0]).view(1, 1, 4, 1) + 7
    y = bn(x)
    torch.testing.assert_close(y.mean(dim=(0, 1, 3)), torch.zeros(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.var(dim=(0, 1, 3), unbiased=False), torch.ones(4), atol=1e-3, rtol=0)
    pool = ClampedMaxPool2d((2, 4))
    z = torch.randn(2, 3, 8, 16)
    torch.testing.assert_close(pool(z), torch.nn.functional.max_pool2d(z, (2, 4)))
    short = torch.randn(2, 3, 1, 3)
    torch.testing.assert_close(pool(short), short.amax(dim=(2, 3), keepdim=True))


def test_summary_input_checks():
    model = build_model("tl", width=0.0625, seed=0)
    df = summary(model, compact=True)
    assert df.iloc[0].output_shape == (1, 96, 512)
    assert model.training                                   # mode restored
    with pytest.raises(TypeError, match="model of mrlib.models"):
        summary(torch.nn.Linear(3, 2))
