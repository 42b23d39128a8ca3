"""Tests of mrlib.audio: every bad-file case with a file the test writes, the sound repairs
(resample, pad, truncate, down-mix) checked on the signal, and the SkipReport."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from mrlib.audio import AudioFixWarning, SkipReport, load_audio, read_audio

SR = 22050


def tone(freq, duration, sr=SR, amp=0.3, channels=1):
    t = np.arange(int(round(duration * sr))) / sr
    y = (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return y if channels == 1 else np.stack([y] * channels, axis=1)


def write(path, y, sr=SR, **kw):
    sf.write(str(path), y, sr, **kw)
    return path


def kind(problem):
    return problem.split(":", 1)[0]


def peak_hz(y, sr):
    spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    return np.fft.rfftfreq(len(y), 1 / sr)[spectrum.argmax()]


def test_good_file_loads_unchanged(tmp_path):
    y = tone(440, 6.0)
    path = write(tmp_path / "good.wav", y, subtype="FLOAT")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to warn about
        out, problem = load_audio(path)
    assert problem is None and out.dtype == np.float32 and out.ndim == 1
    np.testing.assert_array_equal(out, y)


@pytest.mark.parametrize("fmt", ["FLAC", "OGG", "MP3"])
def test_compressed_formats(tmp_path, fmt):
    y = tone(440, 6.0)
    path = write(tmp_path / f"x.{fmt.lower()}", y, format=fmt)
    out, problem = load_audio(path)
    assert problem is None
    assert abs(len(out) - len(y)) <= 2048  # mp3 encoder delay / padding
    assert peak_hz(out, SR) == pytest.approx(440, abs=2)


def test_missing_file(tmp_path):
    out, problem = load_audio(tmp_path / "nope.wav")
    assert out is None and kind(problem) == "missing" and "nope.wav" in problem


def test_corrupt_file(tmp_path):
    path = tmp_path / "corrupt.wav"
    path.write_bytes(np.random.default_rng(0).bytes(5000))
    out, problem = load_audio(path)
    assert out is None and kind(problem) == "unreadable"


def test_truncated_header(tmp_path):
    good = write(tmp_path / "good.wav", tone(440, 6.0))
    path = tmp_path / "cut.wav"
    path.write_bytes(good.read_bytes()[:30])  # half a RIFF header
    out, problem = load_audio(path)
    assert out is None and kind(problem) in ("unreadable", "empty")


def test_folder_is_not_audio(tmp_path):
    out, problem = load_audio(tmp_path)
    assert out is None and kind(problem) == "unreadable"


def test_empty_files(tmp_path):
    zero_bytes = tmp_path / "zero.wav"
    zero_bytes.touch()
    assert load_audio(zero_bytes) == (None, "empty: 0 bytes")
    no_samples = write(tmp_path / "nosamples.wav", np.zeros(0, np.float32))
    out, problem = load_audio(no_samples)
    assert out is None and problem == "empty: 0 samples"


@pytest.mark.parametrize("level_db, silent", [(-200, True), (-90, True), (-70, False)])
def test_silence_threshold(tmp_path, level_db, silent):
    rng = np.random.default_rng(1)
    y = rng.standard_normal(SR * 6)
    y = (y / np.sqrt(np.mean(y ** 2)) * 10 ** (level_db / 20)).astype(np.float32)
    path = write(tmp_path / "quiet.wav", y, subtype="FLOAT")
    out, problem = load_audio(path)
    if silent:
        assert out is None and kind(problem) == "silent"
    else:
        assert problem is None


def test_all_zeros_is_silent(tmp_path):
    path = write(tmp_path / "zeros.wav", np.zeros(SR * 6, np.float32))
    out, problem = load_audio(path)
    assert out is None and problem.startswith("silent: RMS -inf dBFS")


def test_nan_and_inf_samples(tmp_path):
    y = tone(440, 6.0)
    y[[10, 20]] = np.nan
    y[30] = np.inf
    path = write(tmp_path / "nan.wav", y, subtype="FLOAT")
    out, problem = load_audio(path)
    assert out is None and problem == "non-finite: 2 NaN and 1 inf samples"


def test_too_short_is_skipped(tmp_path):
    path = write(tmp_path / "short.wav", tone(440, 2.0))
    out, problem = load_audio(path, min_duration_s=5.0)  # 2 s < 0.5 x 5 s
    assert out is None and kind(problem) == "too short" and "2.00 s" in problem


def test_short_is_zero_padded_with_a_warning(tmp_path):
    y = tone(440, 3.0)
    path = write(tmp_path / "short.wav", y, subtype="FLOAT")
    with pytest.warns(AudioFixWarning, match="padded"):
        out, problem = load_audio(path, min_duration_s=5.0)
    assert problem is None and len(out) == 5 * SR
    np.testing.assert_array_equal(out[:len(y)], y)
    assert not out[len(y):].any()
    # The fraction is a parameter: with pad_fraction=0.8 the same file is skipped.
    out, problem = load_audio(path, min_duration_s=5.0, pad_fraction=0.8)
    assert out is None and kind(problem) == "too short"


def test_long_is_truncated(tmp_path):
    y = tone(440, 20.0)
    path = write(tmp_path / "long.wav", y, subtype="FLOAT")
    result = read_audio(path, max_duration_s=8.0)
    assert result.ok and len(result.y) == 8 * SR
    np.testing.assert_array_equal(result.y, y[:8 * SR])
    assert result.fixes == ("truncated: kept the first 8 s",)


def test_stereo_is_downmixed(tmp_path):
    left, right = tone(440, 6.0), tone(660, 6.0, amp=0.2)
    path = write(tmp_path / "stereo.wav", np.stack([left, right], axis=1), subtype="FLOAT")
    result = read_audio(path)
    assert result.fixes == ("downmixed: 2 channels to mono",)
    np.testing.assert_allclose(result.y, (left + right) / 2, atol=1e-7)


@pytest.mark.parametrize("native_sr, freq", [(8000, 440.0), (96000, 1000.0)])
def test_other_rates_are_resampled(tmp_path, native_sr, freq):
    path = write(tmp_path / f"sr{native_sr}.wav", tone(freq, 6.0, sr=native_sr), sr=native_sr,
                 subtype="FLOAT")
    with pytest.warns(AudioFixWarning, match=f"resampled: {native_sr} Hz -> {SR} Hz"):
        out, problem = load_audio(path)
    assert problem is None
    assert abs(len(out) - 6 * SR) <= 1
    assert peak_hz(out, SR) == pytest.approx(freq, abs=1.0)
    # soxr keeps the level: RMS of a 0.3-amplitude sine is 0.3 / sqrt(2).
    assert np.sqrt(np.mean(out[SR:-SR] ** 2)) == pytest.approx(0.3 / np.sqrt(2), rel=0.01)


def test_warn_false_is_quiet(tmp_path):
    path = write(tmp_path / "sr8k.wav", tone(440, 6.0, sr=8000), sr=8000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out, problem = load_audio(path, warn=False)
    assert problem is None


@pytest.mark.parametrize("kwargs", [{"sr": 0}, {"sr": 22050.5}, {"min_duration_s": -1},
                                    {"max_duration_s": 1.0, "min_duration_s": 5.0},
                                    {"pad_fraction": 1.5}])
def test_bad_parameters_raise(tmp_path, kwargs):
    with pytest.raises(ValueError):
        load_audio(tmp_path / "x.wav", **kwargs)


def test_skip_report(tmp_path):
    report = SkipReport(n_total=5)
    report.skip("a", "silent: RMS -inf dBFS < -80 dBFS")
    report.skip("b", "unreadable: LibsndfileError: Format not recognised.")
    report.skip(7, "silent: RMS -95.0 dBFS < -80 dBFS")
    report.fix("c", "resampled: 8000 Hz -> 22050 Hz")
    assert report.count == 3 and report.ids == ["a", "b", "7"]
    assert report.by_kind() == {"silent": 2, "unreadable": 1}
    text = str(report)
    assert "3 of 5 tracks skipped, 1 fixed" in text and "silent 2" in text and "b: unreadable" in text
    table = pd.read_csv(report.to_csv(tmp_path / "report.csv"), dtype=str)
    assert list(table.columns) == ["track_id", "action", "reason"]
    assert list(table.itertuples(index=False)) == (
        [(t, "skipped", r) for t, r in report.skipped] + [(t, "fixed", r) for t, r in report.fixed])
    with pytest.raises(ValueError, match="^reason of 'd' must be a non-empty str, got ''"):
        report.skip("d", "")
    with pytest.raises(ValueError, match="^note of 8 must be a non-empty str, got None"):
        report.fix(8, None)
    assert report.count == 3 and len(report.fixed) == 1   # a refused entry is not recorded


def test_skip_report_listing_is_bounded():
    report = SkipReport()
    for i in range(50):
        report.skip(f"t{i}", "silent: RMS -inf dBFS < -80 dBFS")
    text = str(report)
    assert "t19" in text and "t20:" not in text and "30 more skipped" in text


def test_player_plays_the_start_of_a_track_or_says_why_not(tmp_path):
    from IPython.display import Audio

    from mrlib.audio import player

    sr = 22050
    good, silent = tmp_path / "tone.wav", tmp_path / "silent.wav"
    sf.write(good, 0.1 * np.sin(2 * np.pi * 440 * np.arange(6 * sr) / sr), sr)
    sf.write(silent, np.zeros(6 * sr), sr)
    audio = player(good, seconds=2.0)
    assert isinstance(audio, Audio) and len(audio.data) > 2 * sr * 2     # 16-bit WAV of ≥ 2 s
    assert len(player(good, seconds=1.0).data) < len(audio.data)
    assert "cannot be played" in player(silent) and "silent" in player(silent)
    with pytest.raises(ValueError, match="seconds"):
        player(good, seconds=0)
