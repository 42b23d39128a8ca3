"""Handcrafted song-level features: the 2017 comparison's classic audio descriptors.

:func:`handcrafted_features` summarises a clip by the mean and standard deviation of its
MFCC/delta/chroma/spectral/ZCR/RMS frames plus a tempo estimate (librosa);
:func:`catalog_features` computes them for a whole catalog (parallel, progress bar, bad audio
skipped and reported, optional cache). The metric baselines that learn on them are in
:mod:`mrlib.baselines`.

Notebook: 08_triplet_matchnet.ipynb
"""
from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed
from tqdm.auto import tqdm

from mrlib.audio import SkipReport, read_audio
from mrlib.checks import check_int, check_n_jobs
from mrlib.features import _catalog_table
from mrlib.paths import atomic_path

__all__ = ["FEATURE_VERSION", "feature_names", "handcrafted_features", "BaselineFeatures", "catalog_features"]

#: Bumped whenever :func:`handcrafted_features` changes its output, so caches are rebuilt.
FEATURE_VERSION = 1

_SPECTRAL = ("centroid", "bandwidth", "rolloff", "flatness")
_N_CONTRAST = 7          # librosa.feature.spectral_contrast with n_bands=6 gives 7 rows


# --------------------------------------------------------------------------------------------
# handcrafted song-level features
# --------------------------------------------------------------------------------------------
def feature_names(n_mfcc: int = 20) -> list[str]:
    """Names of the entries of :func:`handcrafted_features`, in order.

    Parameters
    ----------
    n_mfcc : int, default 20

    Returns
    -------
    list of str
        ``4 * n_mfcc + 24 + 8 + 14 + 4 + 1`` names, e.g. ``"mfcc03_mean"``, ``"chroma_A_std"``,
        ``"contrast2_mean"``, ``"tempo_bpm"``.

    Notebook: 08_triplet_matchnet.ipynb
    """
    names = []
    pitch = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
    for stems in ([f"mfcc{k:02d}" for k in range(n_mfcc)], [f"dmfcc{k:02d}" for k in range(n_mfcc)],
                 [f"chroma_{p}" for p in pitch]):
        names += [f"{r}_{stat}" for stat in ("mean", "std") for r in stems]
    names += [f"{s}_{stat}" for s in _SPECTRAL for stat in ("mean", "std")]
    names += [f"contrast{k}_{stat}" for stat in ("mean", "std") for k in range(_N_CONTRAST)]
    return names + ["zcr_mean", "zcr_std", "rms_mean", "rms_std", "tempo_bpm"]


def _mean_std(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row mean and standard deviation over frames (axis -1)."""
    return a.mean(axis=-1), a.std(axis=-1)


def handcrafted_features(
    y: np.ndarray,
    sr: int,
    *,
    n_mfcc: int = 20,
    n_fft: int = 2048,
    hop_length: int = 512,
) -> np.ndarray:
    """A song-level vector of classic timbre, harmony and rhythm statistics (librosa).

    Frame-level descriptors, summarised by their mean and standard deviation over the clip:

    * MFCC (``n_mfcc``, from a 128-band mel spectrogram in dB) and their deltas;
    * chroma (12 pitch classes, from the STFT, A4 = 440 Hz assumed);
    * spectral centroid, bandwidth, roll-off (85 %) — in Hz — and flatness;
    * spectral contrast (7 rows: 6 octave bands and the rest);
    * zero-crossing rate and RMS energy;
    * plus the global tempo estimate (BPM).

    Parameters
    ----------
    y : numpy.ndarray, shape (n_samples,)
        Mono audio, float, finite; shorter than ``n_fft`` is zero-padded.
    sr : int
        Sample rate in Hz (>= 4000).
    n_mfcc : int, default 20
    n_fft : int, default 2048
        STFT size in samples.
    hop_length : int, default 512
        Hop in samples (23 ms at 22,050 Hz).

    Returns
    -------
    numpy.ndarray of float32, shape (D,)
        D = ``len(feature_names(n_mfcc))`` (131 with the defaults). Units differ
        across entries (dB, Hz, BPM, ratios): standardise before any Euclidean comparison,
        as the metric baselines here do by default.

    Notebook: 08_triplet_matchnet.ipynb
    """
    import librosa

    y = np.asarray(y)
    if y.ndim != 1 or y.size == 0:
        raise ValueError(f"y must be a non-empty 1-D (mono) signal, got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.floating) or not np.isfinite(y).all():
        raise ValueError("y must hold finite floating-point samples")
    check_int("sr", sr, 4000)                  # Hz
    for name, value in (("n_mfcc", n_mfcc), ("n_fft", n_fft), ("hop_length", hop_length)):
        check_int(name, value)
    y = np.pad(y.astype(np.float32), (0, max(0, n_fft - len(y))))   # at least one STFT frame

    # One STFT shared by every descriptor.
    S = np.abs(librosa.stft(y, n_fft=n_fft, hop_length=hop_length))        # (1 + n_fft/2, T)
    P = S ** 2
    mel_db = librosa.power_to_db(librosa.feature.melspectrogram(S=P, sr=sr, n_mels=128))
    mfcc = librosa.feature.mfcc(S=mel_db, n_mfcc=n_mfcc)                    # (n_mfcc, T)
    T = mfcc.shape[1]
    # librosa's delta needs an odd width <= T; a very short clip gets a narrower window.
    width = min(9, T if T % 2 else T - 1)
    dmfcc = librosa.feature.delta(mfcc, width=width) if width >= 3 else np.zeros_like(mfcc)
    # Concert tuning assumed: a per-clip tuning estimate is noisy on short excerpts and costs
    # as much as everything else together.
    chroma = librosa.feature.chroma_stft(S=P, sr=sr, n_fft=n_fft, tuning=0.0)
    spectral = [getattr(librosa.feature, f"spectral_{k}")(S=S, sr=sr, n_fft=n_fft)
                for k in ("centroid", "bandwidth", "rolloff")]
    spectral.append(librosa.feature.spectral_flatness(S=S))
    # Six octave bands must fit below Nyquist: lower the first band edge for low rates so the
    # vector keeps one length whatever the sample rate.
    fmin = min(200.0, 0.95 * (sr / 2) / 2 ** 6)
    contrast = librosa.feature.spectral_contrast(S=S, sr=sr, n_fft=n_fft, fmin=fmin, n_bands=6)
    zcr = librosa.feature.zero_crossing_rate(y, frame_length=n_fft, hop_length=hop_length)
    rms = librosa.feature.rms(S=S, frame_length=n_fft)

    # per-row means then stds of the multi-row blocks, (mean, std) pairs of the one-row ones,
    # in the order of feature_names
    parts = [p for block in (mfcc, dmfcc, chroma) for p in _mean_std(block)]
    parts += [np.array(_mean_std(block[0])) for block in spectral]
    parts += list(_mean_std(contrast))
    parts += [np.array(_mean_std(block[0])) for block in (zcr, rms)]
    onset = librosa.onset.onset_strength(S=mel_db, sr=sr)
    bpm = librosa.feature.tempo(onset_envelope=onset, sr=sr, hop_length=hop_length)
    parts.append(np.atleast_1d(bpm[0]))
    return np.concatenate([np.ravel(p) for p in parts]).astype(np.float32)


# --------------------------------------------------------------------------------------------
# a whole catalog
# --------------------------------------------------------------------------------------------
@dataclass
class BaselineFeatures:
    """Handcrafted features of the usable tracks of a catalog.

    Attributes
    ----------
    X : numpy.ndarray of float32, shape (n_kept, D)
        Columns named by :func:`feature_names`.
    index : numpy.ndarray of int64, shape (n_kept,)
        Catalog index of each row of ``X``.
    n_tracks : int
        Tracks in the catalog (N).
    report : mrlib.audio.SkipReport
        Tracks skipped (and repaired) with their reasons.

    Notebook: 08_triplet_matchnet.ipynb
    """

    X: np.ndarray
    index: np.ndarray
    n_tracks: int
    report: object

    def full(self, fill: float = np.nan) -> np.ndarray:
        """Features by catalog index.

        Parameters
        ----------
        fill : float, default NaN
            Value of the rows of skipped tracks.

        Returns
        -------
        numpy.ndarray of float32, shape (N, D)

        Notebook: 08_triplet_matchnet.ipynb
        """
        out = np.full((self.n_tracks, self.X.shape[1]), fill, dtype=np.float32)
        out[self.index] = self.X
        return out

    def triplet_mask(self, triplets: np.ndarray) -> np.ndarray:
        """Which triplets can be scored: all three clips have features.

        Parameters
        ----------
        triplets : numpy.ndarray of int, shape (M, 3)
            Catalog indices.

        Returns
        -------
        numpy.ndarray of bool, shape (M,)

        Notebook: 08_triplet_matchnet.ipynb
        """
        has = np.zeros(self.n_tracks, dtype=bool)
        has[self.index] = True
        return has[np.asarray(triplets)].all(axis=1)


def _features_of(path: Path, audio_kwargs: dict):
    """``(vector or None, problem or None, fixes)`` for one track; never raises on bad audio."""
    result = read_audio(path, **audio_kwargs)
    if result.problem is not None:
        return None, result.problem, result.fixes
    try:
        v = handcrafted_features(result.y, result.sr)
    except Exception as err:                    # report, never stop the batch for one track
        return None, f"features: {type(err).__name__}: {err}", result.fixes
    if not np.isfinite(v).all():
        return None, "features: non-finite values", result.fixes
    return v, None, result.fixes


def catalog_features(
    catalog,
    *,
    sr: int = 22050,
    n_jobs: int = 1,
    progress: bool = True,
    cache: bool = True,
    cache_dir: str | Path | None = None,
) -> BaselineFeatures:
    """Handcrafted features (:func:`handcrafted_features`, default parameters) for every track
    of a catalog.

    Audio is read with :func:`mrlib.audio.read_audio` (mono, resampled to ``sr``, whole; a
    track of 0.5 s to 1 s is zero-padded to 1 s). A track that is missing, empty,
    unreadable, non-finite, silent or too short is skipped and listed in the returned report
    with its reason, as is one whose features fail; repairs (resampling, padding) are listed
    too. The batch never stops for one bad file.

    Parameters
    ----------
    catalog : mrlib.catalog.Catalog
        Or anything with ``root`` and ``tracks`` (a DataFrame with ``track_id`` and ``path``;
        relative paths are relative to ``root``); ``name`` names the cache file.
    sr : int, default 22050
        Analysis sample rate in Hz.
    n_jobs : int, default 1
        Worker processes (joblib, loky); -1 = all cores.
    progress : bool, default True
        Show a tqdm bar over tracks.
    cache : bool, default True
        Store the result as ``.npz`` keyed by the configuration (audio parameters,
        ``FEATURE_VERSION``, track ids and paths) and reuse it on the next call.
    cache_dir : str or Path, optional
        Cache folder (default ``<catalog.root>/features/handcrafted``).

    Returns
    -------
    BaselineFeatures
        ``X`` (n_kept, D) float32, ``index`` (catalog indices of its rows), ``report``
        (:class:`mrlib.audio.SkipReport`); ``.full()`` gives the (N, D) matrix with NaN rows
        for skipped tracks and ``.triplet_mask(t)`` the triplets whose clips all have features.

    Notebook: 08_triplet_matchnet.ipynb
    """
    _, ids, paths = _catalog_table(catalog)
    check_int("sr", sr, 4000)                  # Hz
    check_n_jobs(n_jobs)
    audio_kwargs = {"sr": int(sr), "min_duration_s": 1.0, "max_duration_s": None}
    config = {**audio_kwargs, "version": FEATURE_VERSION}

    cache_file = _cache_file(catalog, cache_dir, config, ids, paths) if cache else None
    if cache_file is not None and cache_file.is_file():
        with np.load(cache_file, allow_pickle=False) as z:
            arrays = dict(z)
        return BaselineFeatures(arrays["X"], arrays["index"], len(ids), _report(arrays, ids))
    # joblib sends 8 tracks per task to its workers (n_jobs=1: here, one by one)
    jobs = (delayed(_features_of)(path, audio_kwargs) for path in paths)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")     # repairs are collected in the report instead
        outs = Parallel(n_jobs=n_jobs, return_as="generator", batch_size=8)(jobs)
        results = list(tqdm(outs, total=len(paths), desc="handcrafted features", unit="track",
                            disable=not progress))
    arrays = _arrays(results, len(feature_names()))
    report = _report(arrays, ids)
    if report.count:            # a fresh extraction says what it skipped
        print(report)
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        # a file object: np.savez would add ".npz" to the temporary's name
        with atomic_path(cache_file) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
    return BaselineFeatures(arrays["X"], arrays["index"], len(ids), report)


def _arrays(results: list, n_features: int) -> dict:
    """What the cache file holds, from the per-track ``(vector, problem, fixes)`` results: ``X``
    and the catalog ``index`` of its rows, and every track's skip reason and repairs."""
    kept = [i for i, r in enumerate(results) if r[0] is not None]
    skipped = [(i, problem) for i, (v, problem, _) in enumerate(results) if v is None]
    fixes = [(i, note) for i, (_, _, notes) in enumerate(results) for note in notes]
    X = (np.stack([results[i][0] for i in kept]).astype(np.float32) if kept
         else np.zeros((0, n_features), np.float32))
    return {"X": X, "index": np.asarray(kept, dtype=np.int64),
            "skip_index": np.asarray([i for i, _ in skipped], dtype=np.int64),
            "skip_reasons": np.asarray([r for _, r in skipped], dtype=str),
            "fix_index": np.asarray([i for i, _ in fixes], dtype=np.int64),
            "fix_notes": np.asarray([n for _, n in fixes], dtype=str)}


def _report(arrays: dict, ids: list) -> SkipReport:
    """The :class:`~mrlib.audio.SkipReport` of :func:`_arrays`' skip reasons and repairs."""
    report = SkipReport(n_total=len(ids))
    for i, reason in zip(arrays["skip_index"], arrays["skip_reasons"]):
        report.skip(ids[i], str(reason))
    for i, note in zip(arrays["fix_index"], arrays["fix_notes"]):
        report.fix(ids[i], str(note))
    return report


def _cache_file(catalog, cache_dir, config: dict, ids: list, paths: list) -> Path:
    """Where :func:`catalog_features` caches a catalog's features: named by a hash of the
    configuration, the track ids and the audio paths."""
    key = hashlib.sha1(json.dumps(
        {"config": config, "ids": [str(i) for i in ids], "paths": [str(p) for p in paths]},
        sort_keys=True).encode()).hexdigest()[:16]
    folder = Path(cache_dir) if cache_dir is not None else Path(catalog.root) / "features" / "handcrafted"
    return folder / f"{getattr(catalog, 'name', 'catalog')}_{key}.npz"
