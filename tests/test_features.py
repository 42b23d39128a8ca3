"""Tests of mrlib.features: the log-CQT against librosa.cqt, the torch CQT's agreement, the
cache (reuse without recomputation, corrupt files rebuilt), a batch over bad audio, and patches."""
from __future__ import annotations

import json
import pickle
import types

import librosa
import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from scipy import stats

from mrlib import features as F
from mrlib.features import FeatureConfig

SR = 22050


def music_like(duration, seed, sr=SR):
    """Harmonic notes on a bass line plus noise bursts: broadband, time-varying, not silent."""
    rng = np.random.default_rng(seed)
    n = int(duration * sr)
    t = np.arange(n) / sr
    y = 0.01 * rng.standard_normal(n)
    for start in np.arange(0, duration, 0.5):
        f0 = 110 * 2 ** (rng.integers(0, 24) / 12)
        seg = (t >= start) & (t < start + 0.5)
        env = np.exp(-3 * (t[seg] - start))
        for h in range(1, 6):
            y[seg] += 0.1 / h * env * np.sin(2 * np.pi * f0 * h * t[seg])
    y += 0.1 * np.sin(2 * np.pi * 55 * t)
    return (y / np.abs(y).max() * 0.5).astype(np.float32)


def make_catalog(root, files):
    """A minimal catalog object (root + tracks table), as extract() needs."""
    (root / "audio").mkdir(parents=True, exist_ok=True)
    rows = []
    for track_id, y, sr in files:
        path = f"audio/{track_id}.flac"
        if y is None:            # leave the file missing
            pass
        elif isinstance(y, bytes):
            (root / path).write_bytes(y)
        else:
            sf.write(str(root / path), y, sr, subtype="PCM_16")
        rows.append((track_id, path))
    return types.SimpleNamespace(root=root, tracks=pd.DataFrame(rows, columns=["track_id", "path"]))


@pytest.fixture(scope="module")
def small_catalog(tmp_path_factory):
    root = tmp_path_factory.mktemp("cat")
    return make_catalog(root, [(f"t{i}", music_like(6.0 + i, seed=i), SR) for i in range(4)])


# ---------------------------------------------------------------------------------------------
# the config
# ---------------------------------------------------------------------------------------------

def test_config_defaults_and_key():
    c = FeatureConfig()
    assert (c.sr, c.hop_length, c.n_bins, c.bins_per_octave, c.fmin, c.log_floor) == (
        22050, 512, 96, 12, 32.70, 1e-10)
    assert c.frame_rate == pytest.approx(43.066, abs=1e-3)
    assert c.frequencies()[-1] == pytest.approx(7902, abs=1)  # B8, below Nyquist (11,025 Hz)
    p = FeatureConfig.paper()
    assert (p.sr, p.hop_length) == (44100, 1024) and p.frame_rate == c.frame_rate
    assert c.key() == FeatureConfig().key() and c.key() != p.key()
    assert c.key().startswith("cqt22050h512b96-") and len(c.key().split("-")[1]) == 10
    # Every field enters the key.
    for field, value in [("fmin", 32.0), ("n_bins", 84), ("log_floor", 1e-8), ("min_duration_s", 3.0),
                         ("max_duration_s", 60.0), ("pad_fraction", 0.25), ("bins_per_octave", 24)]:
        assert FeatureConfig(**{field: value}).key() != c.key(), field
    with pytest.raises(Exception):
        c.sr = 44100  # frozen


@pytest.mark.parametrize("kwargs", [{"sr": 0}, {"hop_length": 1.5}, {"fmin": -1.0},
                                    {"sr": 16000},  # 7.46 kHz top bin above Nyquist
                                    {"log_floor": 0}, {"pad_fraction": 2.0},
                                    {"max_duration_s": 1.0}])
def test_config_validation(kwargs):
    with pytest.raises(ValueError):
        FeatureConfig(**kwargs)


# ---------------------------------------------------------------------------------------------
# the transform
# ---------------------------------------------------------------------------------------------

def test_cqt_equals_librosa_with_spec_settings():
    y = music_like(5.0, seed=0)
    X = F.cqt(y)
    C = librosa.cqt(y, sr=22050, hop_length=512, fmin=32.70, n_bins=96, bins_per_octave=12)
    ref = 10 * np.log10(np.maximum(np.abs(C) ** 2, 1e-10))
    assert X.dtype == np.float32 and X.shape == (96, 1 + len(y) // 512) and X.flags.c_contiguous
    np.testing.assert_allclose(X, ref, atol=1e-4, rtol=0)


def test_cqt_batch_is_bit_identical_to_single_calls():
    ys = np.stack([music_like(3.0, seed=s) for s in (7, 8, 9)])
    batch = F.cqt(ys)
    assert batch.shape == (3, 96, 1 + ys.shape[1] // 512)
    for y, x in zip(ys, batch):
        np.testing.assert_array_equal(x, F.cqt(y))


def test_cqt_pitch_and_floor():
    y = (0.5 * np.sin(2 * np.pi * 440 * np.arange(SR * 2) / SR)).astype(np.float32)
    X = F.cqt(y)
    assert np.all(X[:, 5:-5].argmax(axis=0) == 45)  # A4 is 45 semitones above C1
    silent = F.cqt(np.zeros(SR, np.float32))
    np.testing.assert_allclose(silent, -100.0, atol=1e-4)  # 10 log10(1e-10)


def test_cqt_rejects_bad_input():
    with pytest.raises(ValueError, match="mono"):
        F.cqt(np.zeros((2, 2, 100), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        F.cqt(np.array([0.0, np.nan] * 1000))
    with pytest.raises(TypeError):
        F.cqt(np.zeros(1000), config={"sr": 22050})


@pytest.mark.slow  # the first call measures librosa's operator (3-10 s)
@pytest.mark.parametrize("signal", ["music", "noise", "tones", "chirp"])
def test_cqt_torch_agrees_with_librosa(signal):
    rng = np.random.default_rng(3)
    t = np.arange(SR * 4) / SR
    y = {"music": music_like(4.0, seed=5),
         "noise": 0.1 * rng.standard_normal(len(t)),
         "tones": 0.1 * sum(np.sin(2 * np.pi * f * t) for f in (55, 220, 330, 880, 2500)),
         "chirp": 0.5 * librosa.chirp(fmin=40, fmax=7000, sr=SR, duration=4.0)}[signal]
    y = np.asarray(y, dtype=np.float32)
    ref = F.cqt(y)
    got = F.cqt_torch(y).numpy()
    assert got.shape == ref.shape and got.dtype == np.float32
    r = np.corrcoef(ref.ravel(), got.ravel())[0, 1]
    assert r >= 0.99, r
    # No level offset: half the cells within 0.1 dB (the signal's abrupt ends differ more).
    assert float(np.median(np.abs(got - ref))) < 0.1


@pytest.mark.slow
def test_cqt_torch_batch_and_tensor_input():
    import torch

    ys = np.stack([music_like(3.0, seed=s) for s in (1, 2)])
    batch = F.cqt_torch(ys)
    assert batch.shape == (2, 96, 1 + ys.shape[1] // 512)
    torch.testing.assert_close(batch[1], F.cqt_torch(torch.from_numpy(ys[1])), atol=1e-4, rtol=0)
    with pytest.raises(ValueError):
        F.cqt_torch(np.zeros((2, 2, 10), np.float32))


# ---------------------------------------------------------------------------------------------
# extraction and the cache
# ---------------------------------------------------------------------------------------------

def test_extract_features_equal_cqt_and_cache_is_reused(small_catalog):
    fs = F.extract(small_catalog, n_jobs=1, progress=False)
    assert len(fs) == 4 and fs.available.all() and fs.report.count == 0
    assert (fs.n_computed, fs.n_cached) == (4, 0)
    for i in range(4):
        y, _ = sf.read(str(small_catalog.root / small_catalog.tracks.path[i]), dtype="float32")
        x = fs[i]
        assert x.dtype == np.float16 and x.shape == (96, 1 + len(y) // 512)
        np.testing.assert_array_equal(x, F.cqt(y).astype(np.float16))
    assert fs.n_frames.tolist() == [fs[i].shape[1] for i in range(4)]
    cache = small_catalog.root / "features" / FeatureConfig().key()
    manifest = json.loads((cache / "manifest.json").read_text())
    assert manifest["config"] == FeatureConfig().to_dict() and set(manifest["tracks"]) == {
        "t0", "t1", "t2", "t3"}
    mtimes = {p.name: p.stat().st_mtime_ns for p in cache.glob("*.npy")}

    again = F.extract(small_catalog, n_jobs=1, progress=False, verify="checksum")
    assert (again.n_computed, again.n_cached) == (0, 4)
    assert {p.name: p.stat().st_mtime_ns for p in cache.glob("*.npy")} == mtimes
    np.testing.assert_array_equal(again[2], fs[2])


def test_a_cache_read_whole_is_not_written_to(small_catalog, monkeypatch):
    """A complete cache may be a read-only copy (a teacher's shared features): reading it
    writes nothing, not even the manifest."""
    F.extract(small_catalog, n_jobs=1, progress=False)

    def refuse(*args, **kwargs):
        raise PermissionError("read-only file system")

    monkeypatch.setattr(F, "write_json_atomic", refuse)
    again = F.extract(small_catalog, n_jobs=1, progress=False)
    assert (again.n_computed, again.n_cached) == (0, 4) and again.available.all()


def test_corrupt_cache_files_are_rebuilt(tmp_path):
    cat = make_catalog(tmp_path, [(f"t{i}", music_like(6.0, seed=10 + i), SR) for i in range(5)])
    fs = F.extract(cat, n_jobs=1, progress=False)
    originals = [np.array(fs[i]) for i in range(5)]
    files = [fs.cache_dir / f"t{i}.npy" for i in range(5)]
    data = files[0].read_bytes()
    files[0].write_bytes(data[: len(data) // 2])                 # truncated
    files[1].write_bytes(b"not a numpy file at all")             # garbage
    np.save(files[2], originals[2].astype(np.float32))           # wrong dtype
    flipped = bytearray(files[3].read_bytes())
    flipped[-7] ^= 0xFF                                          # one damaged byte
    files[3].write_bytes(bytes(flipped))

    size_only = F.extract(cat, n_jobs=1, progress=False)         # cheap check: 3 caught
    assert size_only.n_computed == 3 and size_only.n_cached == 2
    checksum = F.extract(cat, n_jobs=1, progress=False, verify="checksum")
    assert checksum.n_computed == 1 and checksum.n_cached == 4   # the flipped byte too
    for i in range(5):
        np.testing.assert_array_equal(checksum[i], originals[i])


def test_changed_audio_is_recomputed(tmp_path):
    cat = make_catalog(tmp_path, [("a", music_like(6.0, seed=1), SR), ("b", music_like(6.0, seed=2), SR)])
    F.extract(cat, n_jobs=1, progress=False)
    new = music_like(7.0, seed=3)
    sf.write(str(tmp_path / "audio" / "a.flac"), new, SR, subtype="PCM_16")
    fs = F.extract(cat, n_jobs=1, progress=False)
    assert (fs.n_computed, fs.n_cached) == (1, 1)
    assert fs[0].shape[1] == 1 + len(new) // 512


@pytest.mark.slow  # starts two worker processes (librosa imports: a few seconds)
def test_bad_audio_folder_finishes_and_reports_everything(tmp_path, capsys):
    good = [(f"good{i}", music_like(9.0, seed=20 + i), SR) for i in range(4)]
    bad = [("corrupt", np.random.default_rng(0).bytes(4000), SR),
           ("empty", b"", SR),
           ("silent", np.zeros(9 * SR, np.float32), SR),
           ("five_seconds", music_like(5.0, seed=30), SR),
           ("missing", None, SR)]
    fixed = [("eight_khz", music_like(9.0, seed=40, sr=8000), 8000)]
    files = good[:2] + bad[:3] + good[2:] + bad[3:] + fixed
    cat = make_catalog(tmp_path, files)
    # Tracks under 0.8 x 8 s = 6.4 s are skipped (the default would zero-pad a 5-s track).
    config = FeatureConfig(min_duration_s=8.0, pad_fraction=0.8)
    fs = F.extract(cat, config, n_jobs=2, progress=False)
    report = fs.report
    assert report.ids == ["corrupt", "empty", "silent", "five_seconds", "missing"]  # catalog order
    reasons = {t: r.split(":")[0] for t, r in report}
    assert reasons == {"corrupt": "unreadable", "empty": "empty", "silent": "silent",
                       "five_seconds": "too short", "missing": "missing"}
    assert report.fixed == [("eight_khz", "resampled: 8000 Hz -> 22050 Hz")]
    ids = cat.tracks.track_id.tolist()
    expected = np.array([t.startswith("good") or t == "eight_khz" for t in ids])
    np.testing.assert_array_equal(fs.available, expected)
    np.testing.assert_array_equal(fs.indices, np.flatnonzero(expected))
    for i in np.flatnonzero(expected):   # nothing else lost, and parallel == the plain transform
        assert fs[i].shape[0] == 96 and np.isfinite(fs[i]).all()
    y, _ = sf.read(str(tmp_path / "audio" / "good0.flac"), dtype="float32")
    np.testing.assert_array_equal(fs[0], F.cqt(y).astype(np.float16))
    with pytest.raises(KeyError, match="unreadable"):
        fs[ids.index("corrupt")]
    out = capsys.readouterr().out
    assert "5 of 10 tracks skipped, 1 fixed" in out and "five_seconds: too short" in out
    # A second run keeps reporting the bad tracks and recomputes nothing that was good.
    again = F.extract(cat, config, n_jobs=1, progress=False, verbose=False)
    assert again.report.ids == report.ids and again.n_computed == 0 and again.n_cached == 5


def test_featureset_indexing_and_pickling(small_catalog):
    fs = F.extract(small_catalog, n_jobs=1, progress=False)
    assert isinstance(fs[0], np.memmap) and not fs[0].flags.writeable
    np.testing.assert_array_equal(fs[-1], fs[3])
    with pytest.raises(IndexError):
        fs[4]
    with pytest.raises(TypeError):
        fs[1.0]
    clone = pickle.loads(pickle.dumps(fs.preload()))
    np.testing.assert_array_equal(clone[1], fs[1])
    assert not isinstance(fs[1], np.memmap)  # preloaded
    assert "4/4 tracks" in repr(fs)


def test_extract_validates_arguments(small_catalog):
    with pytest.raises(ValueError, match="verify"):
        F.extract(small_catalog, verify="md5")
    with pytest.raises(ValueError, match=r"^n_jobs must be a positive int or -1 \(every core\)"):
        F.extract(small_catalog, n_jobs=0)
    with pytest.raises(TypeError, match="catalog"):
        F.extract(object())


def test_odd_track_ids_get_safe_file_names(tmp_path):
    cat = make_catalog(tmp_path, [("x", music_like(6.0, seed=1), SR)])
    cat.tracks.loc[0, "track_id"] = "f/some clip?.mp3"
    fs = F.extract(cat, n_jobs=1, progress=False)
    (name,) = [p.name for p in fs.cache_dir.glob("*.npy")]
    assert "/" not in name and "?" not in name and fs.available.all()


# ---------------------------------------------------------------------------------------------
# patches
# ---------------------------------------------------------------------------------------------

def ramp(n_bins=4, T=30):
    """A feature whose value is its frame index (plus the bin), so a patch shows its offset."""
    return (np.arange(T)[None, :] + 1000 * np.arange(n_bins)[:, None]).astype(np.float32)


def test_tracks_patches_are_each_tracks_random_patches_in_order():
    rng = np.random.default_rng(0)
    feats = [rng.normal(size=(6, int(t))).astype(np.float32) for t in (20, 9, 31)]
    got = F.tracks_patches(feats, [2, 0, 2, 1], 8, 3, np.random.default_rng(5))
    ref_rng = np.random.default_rng(5)
    want = [F.random_patches(feats[t], 8, 3, ref_rng) for t in [2, 0, 2, 1]]
    assert got.shape == (12, 6, 8)
    np.testing.assert_array_equal(got, np.concatenate(want))


def test_random_patches_are_slices_at_the_drawn_offsets():
    feature = ramp()
    patches = F.random_patches(feature, 8, 50, np.random.default_rng(0))
    starts = np.random.default_rng(0).integers(0, 30 - 8 + 1, size=50)
    assert patches.shape == (50, 4, 8) and patches.dtype == np.float32
    for p, s in zip(patches, starts):
        np.testing.assert_array_equal(p, feature[:, s:s + 8])
    np.testing.assert_array_equal(F.random_patches(feature, 8, 50, 0), patches)  # int seed
    f16 = F.random_patches(feature.astype(np.float16), 30, 2, 1)
    assert f16.dtype == np.float16 and np.array_equal(f16[0], feature.astype(np.float16))


def test_random_patch_offsets_are_uniform():
    feature = ramp(n_bins=1, T=17)
    patches = F.random_patches(feature, 8, 20000, np.random.default_rng(1))
    counts = np.bincount(patches[:, 0, 0].astype(int), minlength=10)
    assert len(counts) == 10  # offsets 0 ... T - L
    assert stats.chisquare(counts).pvalue > 1e-3


def test_short_tracks_wrap():
    feature = ramp(n_bins=2, T=5)
    wrapped = F.random_patches(feature, 12, 20, np.random.default_rng(2))
    for p in wrapped:
        start = int(p[0, 0])
        np.testing.assert_array_equal(p[0], (start + np.arange(12)) % 5)


def test_test_patches_are_seeded():
    feature = ramp(T=200)
    a = F.test_patches(feature, 16)
    assert a.shape == (8, 4, 16)
    np.testing.assert_array_equal(a, F.test_patches(feature, 16, seed=0))
    np.testing.assert_array_equal(a, F.random_patches(feature, 16, 8, np.random.default_rng(0)))
    assert not np.array_equal(a, F.test_patches(feature, 16, seed=1))


@pytest.mark.parametrize("args", [(ramp(), 0, 2, 0), (ramp(), 4, -1, 0), (np.zeros(10), 4, 2, 0),
                                  (ramp(), 4, 2, "seed"), (ramp(), 4, 2, 1.5)])
def test_patch_arguments_are_checked(args):
    with pytest.raises((ValueError, TypeError)):
        F.random_patches(*args)


def test_patch_draws_check_tracks_dtype_and_seed_at_the_door():
    f = np.random.default_rng(0).random((8, 20)).astype(np.float32)
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"tracks must lie in \[0, 2\)"):   # was IndexError
        F.tracks_patches([f, f], [0, 5], 4, 2, rng)
    with pytest.raises(ValueError, match=r"tracks must lie in \[0, 2\)"):   # -1 wrapped to the last track
        F.tracks_patches([f, f], [0, -1], 4, 2, rng)
    with pytest.raises(TypeError, match="tracks must hold integer"):       # 1.0 was truncated
        F.tracks_patches([f, f], [0.0, 1.0], 4, 2, rng)
    with pytest.raises(ValueError, match="tracks must be a non-empty"):    # numpy concatenate error
        F.tracks_patches([f, f], [], 4, 2, rng)
    with pytest.raises(TypeError, match="feature must be a numeric"):      # returned string patches
        F.random_patches(np.full((3, 4), "a"), 2, 3, rng)
    with pytest.raises(ValueError, match="seed must be >= 0"):             # numpy's error named no argument
        F.test_patches(f, 4, seed=-1)


def test_coarsen_features_refuses_a_feature_that_is_not_a_finite_matrix():
    with pytest.raises(ValueError, match=r"feature 1 must be a 2-D float array, got shape \(4,\)"):
        F.coarsen_features([np.zeros((4, 8)), np.zeros(4)], freq_pool=1, time_pool=1)
    with pytest.raises(ValueError, match=r"feature 0 has 1 non-finite value\(s\), first at \[0, 2\]"):
        F.coarsen_features([np.array([[0.0, 1.0, np.inf]])], freq_pool=1, time_pool=1)
