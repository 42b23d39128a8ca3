"""The trainer: config, devices, batches, checkpoints, exact resume, early stopping, DDP.

Most tests run on a small in-memory TrainData (real synthetic tags, random log-CQT-like
features that carry a tag signal) with a width-0.0625 network on 32-frame patches, so a run
of a few epochs takes seconds. The command-line, crash/resume and torchrun tests build a tiny
synthetic catalog (30 tracks of 8 s) once per module under a private data root.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from mrlib import train as T
from mrlib.systems import SYSTEMS, BatchMaker
from mrlib.train_config import _RESUMABLE_CHANGES
from mrlib.features import test_patches as _test_patches
from mrlib.losses import triplet_loss
from mrlib.models import build_model
from mrlib.similarity import oracle
from resume_check import assert_resumed_exactly

TINY = dict(width=0.0625, patch_len=32, n_neg=12, negatives_per_batch=6, batch_tracks=12,
            steps_per_epoch=3, val_patches=2, eval_batch=64, patience=0, prefetch=2)


# ------------------------------------------------------------------------------------------
# fixtures
# ------------------------------------------------------------------------------------------
def toy_data(n: int = 48, n_bins: int = 24, T_frames: int = 60, seed: int = 0) -> T.TrainData:
    """Synthetic tags, features = a tag-dependent spectral profile + noise (float16, dB-like)."""
    from mrlib import synth

    cat = synth.sample_catalog(n, seed)
    rng = np.random.default_rng(seed)
    proj = rng.standard_normal((cat.tags.shape[1], n_bins)).astype(np.float32)
    feats = [((cat.tags[i] @ proj)[:, None] * 3.0 - 40.0
              + 2.0 * rng.standard_normal((n_bins, T_frames))).astype(np.float16) for i in range(n)]
    split = np.array(["train"] * n, dtype=object)
    order = rng.permutation(n)
    split[order[: n // 4]] = "val"
    split[order[n // 4: n // 4 + 4]] = "test"
    return T.TrainData(features=feats, tags=cat.tags, categories=list(cat.vocabulary["category"]),
                       split=split, track_ids=[f"t{i:03d}" for i in range(n)],
                       available=np.ones(n, bool), n_bins=n_bins, name="toy")


@pytest.fixture(scope="module")
def data() -> T.TrainData:
    return toy_data()


def cfg(tmp_path: Path, name: str = "run", **kw) -> T.TrainConfig:
    return T.TrainConfig(**{**TINY, "out_dir": str(tmp_path / name), **kw})


@pytest.fixture(scope="module")
def tiny_catalog_env(tmp_path_factory):
    """A private data root holding a 30-track synthetic catalog (8 s tracks) and its features."""
    root = tmp_path_factory.mktemp("tiny_catalog")
    env = {"MRLIB_DATA": str(root / "data"), "MRLIB_RUNS": str(root / "runs")}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        T.prepare_data(T.TrainConfig(n_tracks=30, catalog_kwargs={"duration_s": 8.0}), progress=False)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return env


def _subprocess_env(extra: dict) -> dict:
    env = dict(os.environ)
    env.update(extra)
    env["OMP_NUM_THREADS"] = "1"
    env.pop("MRLIB_RECORD", None)
    return env


CLI_TINY = ["--n-tracks", "30", "--catalog-kwargs", '{"duration_s": 8.0}', "--width", "0.0625",
            "--patch-len", "32", "--n-neg", "10", "--negatives-per-batch", "6",
            "--steps-per-epoch", "3", "--val-patches", "2", "--eval-batch", "64", "--patience", "0",
            "--no-progress"]


# ------------------------------------------------------------------------------------------
# devices and config
# ------------------------------------------------------------------------------------------
def test_pick_device():
    assert T.pick_device("cpu") == torch.device("cpu")
    auto = T.pick_device()
    assert auto == T.pick_device("auto")
    if torch.cuda.is_available():
        assert auto.type == "cuda"
    elif not T.mps_available():
        assert auto.type == "cpu"
    with pytest.raises(ValueError, match="unknown device"):
        T.pick_device("gpu0")
    with pytest.raises(TypeError):
        T.pick_device(3)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            T.pick_device("cuda")
    with pytest.raises(ValueError, match="device type 'meta' is not supported; use 'cpu', 'cuda' or 'mps'"):
        T.pick_device("meta")     # a torch device type mrlib does not train on
    assert T.amp_dtype(torch.device("cpu"), True) is None
    assert T.amp_dtype(torch.device("cpu"), False) is None


def test_the_float64_tensors_mrlib_makes_stay_off_mps():
    """MPS has no float64, and ``device="auto"`` picks it on a Mac: the training sums take
    ``sum_dtype`` (float32 there), every other float64 tensor mrlib makes stays off MPS, and the
    oracle block an online batch sends to the device as it is holds float32."""
    import re

    from mrlib.devices import sum_dtype

    assert sum_dtype(torch.device("mps")) == torch.float32
    assert sum_dtype(torch.device("cpu")) == sum_dtype(torch.device("cuda")) == torch.float64
    allowed = {   # each of these can never hold an MPS tensor
        "devices.py": ['return torch.float32 if device.type == "mps" else torch.float64'],
        # the DDP weight check: DDP runs on CUDA or the CPU
        "distributed.py": ["v = p.detach().double().flatten()",
                           "w = torch.arange(1, v.numel() + 1, device=v.device, dtype=torch.float64) / v.numel()"],
    }
    found = {}
    for path in sorted((Path(T.__file__).parent).glob("*.py")):
        lines = [line.strip() for line in path.read_text().splitlines()
                 if re.search(r"\.double\(\)|torch\.(float64|double)\b", line) and not line.strip().startswith("#")]
        if lines:
            found[path.name] = lines
    assert found == allowed
    assert oracle(np.eye(4, dtype=np.float32)).dtype == np.float32


def test_cpu_kernels_report_what_torch_runs_and_the_overrides_that_narrow_it():
    from mrlib.devices import cpu_kernels

    k = cpu_kernels()
    assert set(k) == {"torch", "threads", "blas", "cpu", "overrides"}
    assert all(isinstance(k[f], str) and k[f] for f in ("torch", "blas", "cpu"))
    assert k["torch"] == torch.backends.cpu.get_cpu_capability() and k["threads"] == torch.get_num_threads()
    # A stored row names the kernels it ran on; a lowered capability must show there, with its cause.
    code = "import json; from mrlib.devices import cpu_kernels; print(json.dumps(cpu_kernels()))"
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "default"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    lowered = json.loads(out.stdout)
    assert lowered["torch"] == "DEFAULT" and lowered["cpu"] == k["cpu"]
    assert lowered["overrides"]["ATEN_CPU_CAPABILITY"] == "default"


def test_config_validation_and_json(tmp_path):
    c = T.TrainConfig(system="tl", mining="random", lr=3e-4, catalog_kwargs={"duration_s": 8.0})
    assert c.mining == "uniform"                     # aliases are canonicalised
    assert c.learning_rate == 3e-4
    assert T.TrainConfig(system="at").learning_rate == T.DEFAULT_LR["at"]
    c.to_json(tmp_path / "c.json")
    assert T.TrainConfig.from_json(tmp_path / "c.json") == c
    assert T.TrainConfig.from_json(str(tmp_path / "c.json")) == c
    for bad, err in [(dict(system="cnn"), ValueError), (dict(mining="hardest"), ValueError),
                     (dict(system="matchnet", mining="online-hard"), ValueError),
                     (dict(epochs=-1), ValueError), (dict(steps_per_epoch=0), ValueError),
                     (dict(lr=2.0), ValueError), (dict(width=0), ValueError),
                     (dict(epochs=2.5), TypeError), (dict(amp="yes"), TypeError),
                     (dict(monitor="val_auc"), ValueError), (dict(features=[1]), TypeError),
                     (dict(system="tl", pooling="max"), ValueError),
                     (dict(system="tl_autopool", pooling="median"), ValueError),
                     (dict(system="tl", alpha_lr=0.1), ValueError),
                     (dict(system="tl_autopool", pooling="max", alpha_lr=0.1), ValueError)]:
        with pytest.raises(err):
            T.TrainConfig(**bad)
    with pytest.raises(TypeError, match=r"unknown TrainConfig field\(s\) \['sytem'\]; known: \["):
        T.TrainConfig.from_dict({"sytem": "tl"})
    assert T.TrainConfig(system="tl", mining="semi-hard").online
    assert not T.TrainConfig(system="at", mining="semi-hard").online
    assert T.TrainConfig(seed=3).name == "tl_distance_s3"
    # an optional model choice left at None does not enter the folder hash; a set one does
    ap = T.TrainConfig(system="tl_autopool")
    assert ap.fingerprint != T.TrainConfig(system="tl_autopool", pooling="max").fingerprint
    fields = {k: v for k, v in ap.to_dict().items()
              if k not in _RESUMABLE_CHANGES and k not in ("pooling", "alpha_lr")}
    assert ap.fingerprint == hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()
    p = T.paper_config("at")
    assert (p.width, p.patch_len, p.lr, p.amp, p.negatives_per_batch) == (1.0, 512, 1e-4, True, 42)


def test_cli_parses_into_config(tmp_path):
    c, args = T.config_from_args(["--system", "at", "--epochs", "3", "--no-amp", "--lr", "0.01",
                                  "--catalog-kwargs", '{"duration_s": 8}', "--out", "x", "--resume"])
    assert (c.system, c.epochs, c.amp, c.lr, c.catalog_kwargs, c.out_dir) == \
        ("at", 3, False, 0.01, {"duration_s": 8}, "x")
    assert args.resume and args.progress
    saved = T.TrainConfig(system="tl_autopool", width=0.5, epochs=7)
    saved.to_json(tmp_path / "config.json")
    c2, _ = T.config_from_args(["--config", str(tmp_path / "config.json"), "--epochs", "9"])
    assert (c2.system, c2.width, c2.epochs) == ("tl_autopool", 0.5, 9)  # file, then the flag
    c3, _ = T.config_from_args(["--paper", "--system", "at"])
    assert (c3.system, c3.width, c3.lr) == ("at", 1.0, T.PAPER_LR["at"])
    with pytest.raises(SystemExit):
        T.config_from_args(["--system", "rnn"])


@pytest.mark.parametrize("text, said", [("{bad", "not JSON (Expecting property name"),
                                        ("[1]", "expected a JSON object {...}, got '[1]'")])
def test_cli_says_what_a_json_flag_expects(text, said, capsys):
    with pytest.raises(SystemExit) as stop:
        T.config_from_args(["--features", text])
    assert stop.value.code == 2 and f"argument --features: {said}" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------
# batches: the paper's layout, checked on features that name their track
# ------------------------------------------------------------------------------------------
def _labelled_data(n=30):
    d = toy_data(n)
    d.features = [np.full((d.n_bins, 40), i, dtype=np.float16) for i in range(n)]
    return d


@pytest.mark.parametrize("system,mining", [("tl", "distance"), ("matchnet", "uniform"),
                                           ("tl", "online-semihard"), ("at", "distance")])
def test_batch_layout(system, mining):
    d = _labelled_data()
    c = T.TrainConfig(system=system, mining=mining, patch_len=16, negatives_per_batch=5,
                      matchnet_patches=3, batch_tracks=7)
    maker = BatchMaker(d, c, np.random.default_rng(0))
    if system == "at" or c.online:
        idx = np.array([3, 1, 4, 15, 9, 2, 6])
        b = maker(idx)
        assert b["x"].shape == (7, d.n_bins, 16)
        assert np.array_equal(b["x"][:, 0, 0], idx)             # one patch per track, in order
        if system == "at":
            np.testing.assert_array_equal(b["y"], d.tags[idx])
        else:
            np.testing.assert_allclose(b["S"], oracle(d.tags[idx], None, d.categories))
        return
    trip = np.array([[2, 7, n] for n in (11, 12, 13, 14, 15)])
    b = maker(trip)
    x = b["x"][:, 0, 0].astype(int)
    if system == "tl":   # B anchor patches, B positive patches, one patch per negative
        assert b["n_triplets"] == 5 and x.tolist() == [2] * 5 + [7] * 5 + [11, 12, 13, 14, 15]
    else:                # P patches of the anchor, of the positive, and of each negative
        assert x.tolist() == [2] * 3 + [7] * 3 + sum(([n] * 3 for n in (11, 12, 13, 14, 15)), [])
    assert b["shared"]
    # shuffled batches: every row has its own anchor and positive
    rows = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]])
    b = maker(rows)
    x = b["x"][:, 0, 0].astype(int).tolist()
    assert not b["shared"]
    if system == "tl":
        assert x == [1, 4, 7, 2, 5, 8, 3, 6, 9]                 # anchors, positives, negatives
    else:
        assert x == sum(([t] * 3 for t in (1, 4, 7, 2, 5, 8, 3, 6, 9)), [])


def test_objective_matches_losses(data):
    c = T.TrainConfig(system="tl", width=0.0625, patch_len=32)
    model = build_model("tl", width=0.0625, n_bins=data.n_bins, patch_len=32, seed=0)
    obj = SYSTEMS[c.system].objective(model, c)
    x = torch.randn(12, data.n_bins, 32)
    loss, active, k, loss_all = obj(x, n_triplets=4)
    model.train()
    e = model(x)
    ref, ref_active = triplet_loss(e[:4], e[4:8], e[8:], margin=0.5)
    assert k == 4
    torch.testing.assert_close(loss, ref)
    torch.testing.assert_close(loss_all, ref.detach())
    torch.testing.assert_close(active, ref_active)


def test_online_objective_reports_all_valid_triplets(data):
    """Semi-hard triplets all cost something; the logged fraction is over every valid one."""
    from mrlib.mining import online_triplets

    c = T.TrainConfig(system="tl", mining="online-semihard", width=0.0625, patch_len=32)
    model = build_model("tl", width=0.0625, n_bins=data.n_bins, patch_len=32, seed=0)
    obj = SYSTEMS[c.system].objective(model, c)
    idx = data.indices("train")[:16]
    S = torch.from_numpy(oracle(data.tags[idx], None, data.categories))
    x = torch.randn(16, data.n_bins, 32)
    loss, active, k, loss_all = obj(x, S=S, idx=torch.from_numpy(idx))
    e = model(x).detach()
    sel = online_triplets(e, S, torch.from_numpy(idx), mode="semihard", n_pos=15)
    every = online_triplets(e, S, torch.from_numpy(idx), mode="all", n_pos=15)
    d = lambda a, b: (e[a] - e[b]).pow(2).sum(1)   # noqa: E731
    per_sel = torch.clamp(d(sel[:, 0], sel[:, 1]) - d(sel[:, 0], sel[:, 2]) + 0.5, min=0)
    per_all = torch.clamp(d(every[:, 0], every[:, 1]) - d(every[:, 0], every[:, 2]) + 0.5, min=0)
    assert k == sel.shape[0] > 0
    assert loss.item() == pytest.approx(per_sel.mean().item(), rel=1e-5)
    assert float(loss_all) == pytest.approx(float(per_all.mean()), rel=1e-5)
    assert float(active) == pytest.approx(float((per_all > 0).float().mean()), rel=1e-6)
    assert (per_sel > 0).all()                      # which is why they are not the statistic


# ------------------------------------------------------------------------------------------
# embedding
# ------------------------------------------------------------------------------------------
def test_embed_tracks_matches_plain_loop(data):
    for system in ("tl", "at", "matchnet"):
        m = build_model(system, n_tags=data.tags.shape[1], width=0.0625, n_bins=data.n_bins,
                        patch_len=32, seed=1).eval()
        idx = np.array([5, 0, 17, 30])
        E = T.embed_tracks(m, data, idx, 32, n_patches=8, batch_size=10)   # chunks of 1 track
        with torch.no_grad():
            ref = []
            for i in idx:
                x = torch.from_numpy(_test_patches(data.features[i], 32, 8, seed=int(i)).astype(np.float32))
                e = m.embed(x).mean(0)
                ref.append(torch.nn.functional.normalize(e, dim=0) if system == "tl" else e)
        np.testing.assert_allclose(E, torch.stack(ref).numpy(), rtol=1e-4, atol=1e-5)
        if system == "tl":
            np.testing.assert_allclose(np.linalg.norm(E, axis=1), 1.0, rtol=1e-5)
        if system == "at":
            assert ((E > 0) & (E < 1)).all()


def test_song_dissimilarities_matches_loop():
    m = build_model("matchnet", width=0.0625, n_bins=24, patch_len=32, embedding_dim=16, seed=0).eval()
    rng = np.random.default_rng(0)
    Ea = rng.standard_normal((5, 3, 16))
    D = T.song_dissimilarities(m, Ea, chunk_mb=0.001)              # forces blocks of one song
    with torch.no_grad():
        for i in range(5):
            for j in range(5):
                f = [torch.sigmoid(m.metric_logits(torch.tensor(Ea[i, p], dtype=torch.float32),
                                                   torch.tensor(Ea[j, q], dtype=torch.float32)))
                     for p in range(3) for q in range(3)]
                assert D[i, j] == pytest.approx(float(torch.stack(f).mean()), rel=1e-5)
    assert ((D > 0) & (D < 1)).all()


# ------------------------------------------------------------------------------------------
# a run: files, metrics, embeddings, epochs=0, early stopping
# ------------------------------------------------------------------------------------------
def test_run_writes_everything(tmp_path, data):
    run = T.train(cfg(tmp_path, epochs=2, system="tl", mining="distance"), data=data, progress=False)
    for name in ("config.json", "metrics.jsonl", "checkpoint.pt", "checkpoint.prev.pt", "model.pt",
                 "embeddings.npy", "tracks.csv", "summary.json"):
        assert (run.path / name).is_file(), name
    m = run.metrics
    assert m["epoch"].tolist() == [0, 1, 2] and m["step"].tolist() == [0, 3, 6]
    assert np.isnan(m.loc[0, "loss"]) and (m.loc[1:, "loss"] > 0).all()
    assert ((m.loc[1:, "active_fraction"] >= 0) & (m.loc[1:, "active_fraction"] <= 1)).all()
    assert (m["val_map_low"] <= m["val_map"]).all() and (m["val_map"] <= m["val_map_high"]).all()
    assert ((m.loc[1:, "data_wait_share"] >= 0) & (m.loc[1:, "data_wait_share"] < 1)).all()
    s = run.summary
    assert s["throughput_patches_per_s"] > 0 and 0 <= s["data_wait_share"] < 1
    assert s["peak_memory_bytes"] > 0 and s["patches_per_batch"] == 18
    assert s["cpu_kernels"]["torch"] == torch.backends.cpu.get_cpu_capability()
    E, tracks = run.embeddings, run.tracks
    assert E.shape == (len(data), 128) and E.dtype == np.float32
    assert tracks["catalog_index"].tolist() == list(range(len(data)))
    assert tracks["track_id"].tolist() == list(data.track_ids)
    np.testing.assert_allclose(np.linalg.norm(E, axis=1), 1.0, rtol=1e-5)
    # the saved model is the best epoch's: re-validating it gives the logged metric
    best = int(m.loc[m["val_map"].idxmax(), "epoch"])
    assert s["best_epoch"] == best and m.loc[best, "is_best"]
    val = T._validate(run.model(), data, data.indices("val"),
                      oracle(
                          data.tags[data.indices("val")], None, data.categories), run.config,
                      torch.device("cpu"))
    assert val["val_map"] == pytest.approx(m.loc[best, "val_map"], abs=1e-12)
    assert T.load_run(run.path).summary == s


def test_progress_bars_and_epoch_lines_raise_no_warning(tmp_path, data, capsys):
    """What a user sees at the command line (bars on) is free of warnings."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        T.train(cfg(tmp_path, epochs=1, system="tl", mining="distance"), data=data, progress=True)
    assert "val MAP@20" in capsys.readouterr().out


def test_epochs_zero_gives_untrained_embeddings(tmp_path, data):
    run = T.train(cfg(tmp_path, epochs=0, system="at"), data=data, progress=False)
    assert run.metrics["epoch"].tolist() == [0] and run.summary["epochs_run"] == 0
    fresh = build_model("at", n_tags=data.tags.shape[1], width=0.0625, n_bins=data.n_bins,
                        patch_len=32, seed=0)
    ref = T.embed_tracks(fresh, data, data.indices(), 32, n_patches=2)
    np.testing.assert_allclose(run.embeddings, ref, rtol=1e-5, atol=1e-6)
    assert run.embeddings.shape == (len(data), data.tags.shape[1])  # AT: tag probabilities
    assert 0.0 <= run.metrics.loc[0, "val_auc"] <= 1.0


def test_tracks_without_features_are_left_out(tmp_path):
    d = toy_data()
    skipped = [3, int(d.indices("val")[0])]
    d.available[skipped] = False
    for i in skipped:
        d.features[i] = None                     # touching one would fail loudly
    run = T.train(cfg(tmp_path, epochs=1, system="tl", mining="online-semihard"), data=d,
                  progress=False)
    assert run.summary["n_skipped_tracks"] == 2
    assert run.embeddings.shape[0] == len(d) - 2
    assert not set(skipped) & set(run.catalog_index)


def test_early_stopping_stops_and_keeps_best(tmp_path, data):
    # a huge learning rate wrecks the network, so validation cannot keep improving
    run = T.train(cfg(tmp_path, epochs=8, patience=1, lr=0.5, system="tl"), data=data, progress=False)
    m = run.metrics
    assert run.summary["stopped_early"] and run.summary["epochs_run"] < 8
    best = int(m["val_map"].idxmax())
    assert run.summary["best_epoch"] == m.loc[best, "epoch"]
    assert len(m) - 1 - best == 1              # stopped one epoch after the last improvement


def test_patience_running_out_at_the_last_epoch_is_no_early_stop(tmp_path, data, capsys):
    # the wrecked network of the test above, stopped by its epoch count the epoch its patience ends
    run = T.train(cfg(tmp_path, epochs=1, patience=1, lr=0.5, system="tl"), data=data, progress=False)
    m = run.metrics
    assert m["val_map"].iloc[1] <= m["val_map"].iloc[0]          # epoch 1 used up the patience
    assert run.summary["epochs_run"] == 1 and not run.summary["stopped_early"]
    assert "early stop" not in capsys.readouterr().out


# ------------------------------------------------------------------------------------------
# resume: exact continuation, corrupt checkpoints, refusals
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kw", [dict(system="tl", mining="distance"),
                                dict(system="at"),
                                dict(system="tl_autopool", mining="online-hard"),
                                dict(system="matchnet", mining="neighbors", sampler="shuffled")],
                         ids=["tl-paper", "at", "tl_autopool-online", "matchnet-shuffled"])
def test_resume_continues_exactly(tmp_path, data, kw):
    full = T.train(cfg(tmp_path, "full", epochs=3, **kw), data=data, progress=False)
    T.train(cfg(tmp_path, "cut", epochs=1, **kw), data=data, progress=False)
    resumed = T.train(cfg(tmp_path, "cut", epochs=3, **kw), data=data, progress=False, resume=True)
    assert_resumed_exactly(full, resumed)


def test_corrupt_checkpoint_detected_and_previous_used(tmp_path, data):
    c = cfg(tmp_path, "r", epochs=3, system="tl")
    full = T.train(cfg(tmp_path, "full", epochs=3, system="tl"), data=data, progress=False)
    T.train(c.replace(epochs=2), data=data, progress=False)
    latest, prev = c.run_dir() / "checkpoint.pt", c.run_dir() / "checkpoint.prev.pt"
    assert T.load_checkpoint(latest)["epoch"] == 2 and T.load_checkpoint(prev)["epoch"] == 1
    good = latest.read_bytes()

    latest.write_bytes(good[: len(good) // 2])                      # truncated
    with pytest.raises(T.CheckpointError, match="truncated"):
        T.load_checkpoint(latest)
    flipped = bytearray(good)
    flipped[-100] ^= 0xFF                                           # one corrupt byte
    latest.write_bytes(bytes(flipped))
    with pytest.raises(T.CheckpointError, match="corrupt"):
        T.load_checkpoint(latest)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(T.CheckpointError, match="not an mrlib checkpoint"):
        T.load_checkpoint(tmp_path / "junk.pt")
    with pytest.raises(T.CheckpointError, match="no checkpoint"):
        T.load_checkpoint(tmp_path / "missing.pt")

    # resume: the corrupt latest (epoch 2) is set aside, the previous one (epoch 1) is used,
    # and the run still ends exactly where the uninterrupted one did
    resumed = T.train(c, data=data, progress=False, resume=True)
    assert (c.run_dir() / "checkpoint.corrupt.pt").is_file()
    assert_resumed_exactly(full, resumed)

    # both files bad: a clear error, nothing silently restarted
    for f in (latest, prev):
        f.write_bytes(b"MRLIB-CKPT-1\n" + b"0" * 64 + b" 10\nshort")
    with pytest.raises(T.CheckpointError, match="no usable checkpoint"):
        T.train(c, data=data, progress=False, resume=True)


def test_interrupted_save_keeps_previous(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    T.save_checkpoint({"format": 1, "epoch": 1}, path)

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        T.save_checkpoint({"format": 1, "epoch": 2}, path)
    monkeypatch.undo()
    assert T.load_checkpoint(path)["epoch"] == 1               # untouched
    assert [f.name for f in tmp_path.iterdir()] == ["checkpoint.pt"]   # no temporary left


def test_resume_refuses_a_different_run(tmp_path, data):
    c = cfg(tmp_path, epochs=1, system="tl")
    T.train(c, data=data, progress=False)
    with pytest.raises(ValueError, match="different configuration"):
        T.train(c.replace(lr=0.01), data=data, progress=False, resume=True)
    # more epochs is allowed (and the stale-file clean-up of a fresh run is not triggered)
    T.train(c.replace(epochs=2), data=data, progress=False, resume=True)
    assert T.load_run(c.run_dir()).metrics["epoch"].tolist() == [0, 1, 2]


def test_load_run_needs_a_finished_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a finished training run"):
        T.load_run(tmp_path)


def test_measure_throughput(data):
    out = T.measure_throughput(T.TrainConfig(**{**TINY, "system": "tl"}), steps=2, warmup=1, data=data)
    assert out["patches_per_s"] > 0 and out["ceiling_patches_per_s"] > 0
    assert 0 <= out["data_wait_share"] < 1 and out["ratio"] > 0
    assert out["patches_per_batch"] == 18


# ------------------------------------------------------------------------------------------
# the command line: a real crash after epoch 1, resumed; torchrun with two CPU ranks
# ------------------------------------------------------------------------------------------
def test_cli_crash_and_resume(tmp_path, tiny_catalog_env):
    env = _subprocess_env(tiny_catalog_env)
    base = [sys.executable, "-m", "mrlib.train", "--system", "tl", "--mining", "uniform", *CLI_TINY]
    full = subprocess.run(base + ["--epochs", "2", "--out", str(tmp_path / "full")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert full.returncode == 0, full.stderr[-2000:]
    crashed = subprocess.run(base + ["--epochs", "2", "--out", str(tmp_path / "cut"),
                                     "--stop-after-epoch", "1"], env=env, capture_output=True,
                             text=True, timeout=300)
    assert crashed.returncode == 3, crashed.stderr[-2000:]
    assert not (tmp_path / "cut" / "summary.json").exists()      # died before the end
    resumed = subprocess.run(base + ["--epochs", "2", "--out", str(tmp_path / "cut"), "--resume"],
                             env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert_resumed_exactly(T.load_run(tmp_path / "full"), T.load_run(tmp_path / "cut"))


def _torchrun(env: dict, *flags: str) -> subprocess.CompletedProcess:
    """``python -m mrlib.train FLAGS`` on two CPU ranks under torchrun."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
           "-m", "mrlib.train", *flags]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def test_torchrun_two_cpu_ranks(tmp_path, tiny_catalog_env):
    env = _subprocess_env(tiny_catalog_env)
    out = tmp_path / "ddp"
    flags = ("--system", "tl", "--mining", "distance", *CLI_TINY, "--epochs", "2", "--verify-ddp",
             "--out", str(out))
    proc = _torchrun(env, *flags)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    report = json.loads((out / "ddp_verify.json").read_text())
    assert report["world_size"] == 2
    assert report["steps"] == 2 * 3                              # checked after every step
    assert report["identical"] and report["max_abs_diff"] == 0.0
    assert report["writes_by_rank"]["1"] == []                   # only rank 0 writes
    assert {"checkpoint.pt", "metrics.jsonl", "embeddings.npy", "summary.json"} <= \
        set(report["writes_by_rank"]["0"])
    run = T.load_run(out)
    assert run.summary["world_size"] == 2 and run.summary["epochs_run"] == 2
    assert run.metrics["epoch"].tolist() == [0, 1, 2]            # one row per epoch, not two
    assert proc.stdout.count("[train] done") == 1                # rank 0 alone reports
    # --resume on the finished run: every rank returns it, none starts training alone
    again = _torchrun(env, *flags, "--resume")
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-3000:]
    assert "nothing retrained" in again.stdout and again.stdout.count("[train] done") == 1


def test_torchrun_builds_a_missing_catalog_on_rank_zero(tmp_path):
    # an empty data root: rank 0 builds the catalog and its features, then the other rank reads
    # them (both building at once would meet the folder's lock)
    env = _subprocess_env({"MRLIB_DATA": str(tmp_path / "data"), "MRLIB_RUNS": str(tmp_path / "runs")})
    proc = _torchrun(env, "--system", "tl", "--mining", "uniform", *CLI_TINY, "--epochs", "1",
                     "--no-embed-all", "--out", str(tmp_path / "ddp"))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert (tmp_path / "data" / "synthetic_n30_s0_d8" / "tracks.csv").is_file()
    assert T.load_run(tmp_path / "ddp").summary["world_size"] == 2


def test_torchrun_ranks_stop_with_rank_zeros_data_error(tmp_path):
    bad = tmp_path / "bad_catalog"
    bad.mkdir()
    (bad / "tracks.csv").write_text("not,a\ncatalog,table\n")
    env = _subprocess_env({"MRLIB_DATA": str(tmp_path / "data"), "MRLIB_RUNS": str(tmp_path / "runs")})
    proc = _torchrun(env, "--system", "tl", "--mining", "uniform", "--catalog", str(bad),
                     "--epochs", "1", "--no-progress", "--out", str(tmp_path / "ddp"))
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if "[train] error:" in line]
    # every rank stops (no hang) with rank 0's reason; torchrun may end one before it prints
    assert errors and all("tags.csv is missing" in line for line in errors), proc.stderr[-3000:]
    assert str(Path(T.__file__).parent) not in proc.stderr          # no rank's traceback
    assert not (tmp_path / "ddp" / "config.json").exists()         # the run never started


def test_alpha_lr_puts_autopools_alpha_in_its_own_adam_group():
    from mrlib.models import build_model

    model = build_model("tl_autopool", width=0.0625, n_bins=24, patch_len=32, embedding_dim=8, seed=0)
    plain = SYSTEMS["tl_autopool"].optimizer(model, T.TrainConfig(system="tl_autopool", lr=1e-3))
    assert [g["lr"] for g in plain.param_groups] == [1e-3]           # one group, as before
    split = SYSTEMS["tl_autopool"].optimizer(model, T.TrainConfig(system="tl_autopool", lr=1e-3, alpha_lr=0.05))
    rest, alpha = split.param_groups
    assert alpha["lr"] == 0.05 and alpha["params"] == [model.autopool.alpha]
    assert rest["lr"] == 1e-3 and len(rest["params"]) == len(list(model.parameters())) - 1
    # Adam moves α by about its rate per step: 20 steps at 0.05 leave the [-0.2, 0.2] of 10⁻³
    x = torch.randn(4, 24, 32)
    for _ in range(20):
        split.zero_grad()
        model(x)[:, 0].sum().backward()
        split.step()
    assert model.autopool.alpha.abs().max() > 0.2


def test_an_unknown_catalog_names_the_loaders_and_each_place_once(tmp_path):
    from mrlib.catalog import LOADERS
    from mrlib.training_data import check_catalog_name

    missing = tmp_path / "nothere"
    with pytest.raises(FileNotFoundError) as err:
        check_catalog_name(str(missing))
    message = str(err.value)
    assert message.count(str(missing)) == 2          # the name, then the one place looked in
    assert all(repr(name) in message for name in LOADERS)


def test_run_name_is_a_plain_name_and_paper_config_checks_its_system():
    for bad in ("/tmp/elsewhere", "..", "a/b", ""):
        with pytest.raises(ValueError, match="TrainConfig.run_name must be None or a plain folder name"):
            T.TrainConfig(run_name=bad)
    assert T.TrainConfig(run_name="mine").run_dir().parent.name == "train"
    with pytest.raises(ValueError, match="system must be one of"):
        T.paper_config("bogus")
    with pytest.raises(ValueError, match=r"TrainConfig.system must be one of \(.*\), got \['tl'\]"):
        T.TrainConfig(system=["tl"])                  # unhashable: refused by name, no TypeError
    for bad in (np.array("tl"), np.array(["tl", "at"])):   # numpy would compare element-wise
        with pytest.raises(ValueError, match=r"TrainConfig.system must be one of"):
            T.TrainConfig(system=bad)
    assert T.TrainConfig(system=np.str_("at")).system == "at"


def test_check_choice_wants_the_choice_itself():
    from mrlib.checks import check_choice

    with pytest.raises(ValueError, match=r"^x must be one of \(1, 2\), got True$"):
        check_choice("x", True, (1, 2))                     # True == 1, but it is no count
    with pytest.raises(ValueError, match="x must be one of"):
        check_choice("x", 1.0, (1, 2))
    assert check_choice("x", 2, (1, 2)) == 2


def test_cli_ctrl_c_says_how_to_resume(tmp_path, tiny_catalog_env):
    import signal
    import time

    env = _subprocess_env(tiny_catalog_env)
    cmd = [sys.executable, "-m", "mrlib.train", "--system", "tl", "--mining", "uniform", *CLI_TINY,
           "--epochs", "1000", "--out", str(tmp_path / "run")]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120        # interrupt once an epoch has been checkpointed
        while not (tmp_path / "run" / "checkpoint.pt").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err[-2000:]
    assert "--resume continues" in err and "Traceback" not in err
    assert (tmp_path / "run" / "checkpoint.pt").is_file()       # what --resume continues from


def test_cli_says_when_the_best_epoch_is_the_untrained_network(tmp_path, tiny_catalog_env,
                                                               monkeypatch, capsys):
    for key, value in tiny_catalog_env.items():
        monkeypatch.setenv(key, value)
    # a huge learning rate wrecks the network: the untrained one stays the best on validation
    argv = ["--system", "tl", "--mining", "uniform", *CLI_TINY, "--lr", "0.5", "--epochs", "2"]
    assert T.main([*argv, "--out", str(tmp_path / "run")]) == 0
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["best_epoch"] == 0
    assert "best epoch 0 (the untrained network)  val MAP@20" in capsys.readouterr().out


def test_a_catalog_without_features_says_why(tmp_path, monkeypatch):
    monkeypatch.setenv("MRLIB_DATA", str(tmp_path / "data"))
    cfg = T.TrainConfig(n_tracks=5, catalog_kwargs={"duration_s": 1.0})
    data = T.prepare_data(cfg, progress=False)
    with pytest.raises(ValueError, match=r"has features; the first skipped: too short: 1\.00 s"):
        data.check_patch_len(cfg.patch_len, cfg.catalog)


def test_a_process_group_the_caller_made_is_joined_and_left_to_the_caller(tmp_path, monkeypatch):
    """A script that sets up torch.distributed itself and then calls train() trains in that
    group; the run does not tear down a group it did not create."""
    import torch.distributed as dist

    from mrlib.distributed import init_distributed

    monkeypatch.setenv("WORLD_SIZE", "2")      # what torchrun would say; the group is the truth
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        d = init_distributed("cpu")
        assert (d.rank, d.world_size, d.owns_group) == (0, 1, False)
        d.close()
        assert dist.is_initialized()
    finally:
        dist.destroy_process_group()


def test_a_batch_stream_over_no_batch_is_refused_not_an_endless_loop():
    from mrlib.training_data import batch_stream

    with pytest.raises(RuntimeError, match="yields no batch"):
        next(batch_stream([]))
