"""Robust audio loading for batch jobs, and the report of what was skipped or fixed.

A batch job over a catalog (feature extraction, rendering, tagging) must never crash on one bad
file and must never lose a track silently. :func:`load_audio` therefore *returns* a
problem instead of raising: it gives ``(y, None)`` for a usable track and ``(None, reason)`` for
one that has to be skipped. Sound repairs (resampling, zero-padding a slightly short track,
truncating a very long one, down-mixing) are applied and announced with an
:class:`AudioFixWarning`; a :class:`SkipReport` collects skips and fixes by track id so the job
can print a summary and write a CSV at the end.

The decisions, in the order they are checked:

=================  ===========================================================================
missing            the path does not exist                                      → skip
empty              0 bytes, or a valid header with 0 samples                    → skip
unreadable         libsndfile (and the audioread fallback) cannot decode it     → skip
non-finite         any NaN or ±inf sample (a broken float file; zeroing them    → skip
                   would invent audio)
silent             RMS level below :data:`DEFAULT_SILENCE_DB` (−80 dBFS),        → skip
                   all-zero included
too short          shorter than ``pad_fraction × min_duration_s``               → skip
short              between ``pad_fraction × min_duration_s`` and the minimum    → zero-pad at the
                                                                                  end (warning)
very long          longer than ``max_duration_s`` (when given)                  → keep the start
                                                                                  (only that much
                                                                                  is decoded)
multichannel       more than one channel                                        → mean of channels
other rate         native rate ≠ ``sr`` (8 kHz, 96 kHz …)                       → soxr_hq resample
                                                                                  (warning)
=================  ===========================================================================

Why pad only when the track is at least half the minimum: a few seconds of trailing silence in a
long-enough track leave most random patches full of music, whereas padding a 1-second blip to a
12-second patch would teach the network what silence looks like.

Notebook: 01_cqt.ipynb
"""
from __future__ import annotations

import csv
import math
import os
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from mrlib.checks import check_positive, check_values, is_int, is_real, rule

__all__ = [
    "AudioFixWarning", "AudioResult", "SkipReport", "read_audio", "load_audio", "player",
    "DEFAULT_SR", "DEFAULT_MIN_DURATION_S", "DEFAULT_PAD_FRACTION", "DEFAULT_SILENCE_DB"
]

#: Default target sample rate (Hz): the default catalog's rate.
DEFAULT_SR = 22050
#: Default minimum duration (s) a usable track must reach (after zero-padding).
DEFAULT_MIN_DURATION_S = 5.0
#: Tracks at least this fraction of the minimum are zero-padded; shorter ones are skipped.
DEFAULT_PAD_FRACTION = 0.5
#: RMS level (dB relative to full scale) below which a track counts as silent.
DEFAULT_SILENCE_DB = -80.0


class AudioFixWarning(UserWarning):
    """A track was usable after a sound repair (resampled, zero-padded).

    Notebook: 01_cqt.ipynb
    """


@dataclass(frozen=True)
class AudioResult:
    """Everything :func:`read_audio` learnt about one file.

    Attributes
    ----------
    y : numpy.ndarray of float32, shape (n_samples,), or None
        Mono audio at ``sr`` in [-1, 1] (full scale), or None when the track is skipped.
    sr : int
        Sample rate of ``y`` (Hz), the requested one.
    problem : str or None
        Why the track is skipped (``"kind: detail"``), None when ``y`` is usable.
    fixes : tuple of str
        Repairs applied (``"kind: detail"``), e.g. ``"resampled: 8000 Hz -> 22050 Hz"``
        (the file's own rate and channels are named in the repair that changed them).

    Notebook: 01_cqt.ipynb
    """

    y: np.ndarray | None
    sr: int
    problem: str | None
    fixes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True when the track is usable (``y`` is not None)."""
        return self.y is not None


#: The checks of the reading parameters (a message reads ``read_audio.<name> must be ...``).
_PARAMS = {
    "sr": (rule(lambda v: is_int(v) and v > 0, "a positive integer sample rate in Hz"),),
    "min_duration_s": (rule(lambda v: is_real(v) and 0 <= v < math.inf, "a finite number >= 0"),),
    "max_duration_s": (rule(lambda v: is_real(v) and 0 < v < math.inf,
                            "None or a finite number > 0", optional=True),),
    "pad_fraction": (rule(lambda v: is_real(v) and 0 <= v <= 1, "a number in [0, 1]"),),
}
#: The check of a skip's reason and of a fix's note (``ValueError``).
_TEXT = rule(lambda v: isinstance(v, str) and v != "", "a non-empty str")


def _decode(path: Path, max_duration_s: float | None) -> tuple[np.ndarray, int]:
    """Decode to float32 (n_frames, n_channels); only the first ``max_duration_s`` is read."""
    import soundfile as sf

    # Decode only what is kept: a 2-hour file truncated to 5 minutes stays cheap. One extra
    # second keeps the resampler's edge clean before the exact cut.
    keep_s = None if max_duration_s is None else max_duration_s + 1.0
    try:
        with sf.SoundFile(str(path)) as f:
            native_sr = int(f.samplerate)
            frames = f.frames if keep_s is None else min(f.frames, math.ceil(keep_s * native_sr))
            data = f.read(frames, dtype="float32", always_2d=True)
        return data, native_sr
    except Exception as sf_error:  # libsndfile cannot read it: try audioread (mp3/m4a backends)
        try:
            import librosa

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # librosa's "PySoundFile failed" FutureWarning
                y, native_sr = librosa.load(str(path), sr=None, mono=False, duration=keep_s,
                                            dtype=np.float32)
        except Exception:
            raise sf_error from None
        y = np.atleast_2d(y).T  # librosa gives (channels, n) or (n,)
        return np.ascontiguousarray(y, dtype=np.float32), int(native_sr)


def read_audio(
    path: str | os.PathLike,
    sr: int = DEFAULT_SR,
    min_duration_s: float = DEFAULT_MIN_DURATION_S,
    max_duration_s: float | None = None,
    *,
    pad_fraction: float = DEFAULT_PAD_FRACTION,
) -> AudioResult:
    """Read one audio file robustly and say what was done to it; never raises on bad audio.

    The checks and repairs are listed in the module docstring (:mod:`mrlib.audio`).

    Parameters
    ----------
    path : str or os.PathLike
        Audio file (anything libsndfile reads: WAV, FLAC, OGG, MP3 …).
    sr : int, default 22050
        Target sample rate in Hz; other rates are resampled with soxr (``soxr_hq``).
    min_duration_s : float, default 5.0
        Minimum duration in seconds of a usable track.
    max_duration_s : float or None, default None
        Keep at most this many seconds from the start (only that much is decoded).
    pad_fraction : float in [0, 1], default 0.5
        A track of at least ``pad_fraction * min_duration_s`` seconds is zero-padded at the end
        up to ``min_duration_s``; a shorter one is skipped.

    Returns
    -------
    AudioResult
        ``y`` (float32, mono, at ``sr``) or None, ``problem`` and ``fixes``.

    Raises
    ------
    ValueError
        Only for invalid parameters, never for a bad file.

    Notebook: 01_cqt.ipynb
    """
    check_values("read_audio", {"sr": sr, "min_duration_s": min_duration_s,
                                "max_duration_s": max_duration_s, "pad_fraction": pad_fraction},
                 _PARAMS)
    if max_duration_s is not None and max_duration_s < min_duration_s:
        raise ValueError(f"max_duration_s ({max_duration_s}) must be >= min_duration_s "
                         f"({min_duration_s})")
    sr = int(sr)
    decoded = _decode_checked(Path(path), sr, max_duration_s)
    if isinstance(decoded, AudioResult):
        return decoded
    data, native_sr = decoded
    n_frames, n_channels = data.shape
    y = data.mean(axis=1, dtype=np.float32) if n_channels > 1 else data[:, 0]
    fixes = [f"downmixed: {n_channels} channels to mono"] if n_channels > 1 else []
    # Mean square in float64: float32 accumulation of millions of tiny values loses digits.
    mean_square = float(np.mean(np.square(y, dtype=np.float64)))
    level_db = 10.0 * math.log10(mean_square) if mean_square > 0 else -math.inf
    duration = n_frames / native_sr
    shortest = pad_fraction * min_duration_s
    if level_db < DEFAULT_SILENCE_DB:
        problem = f"silent: RMS {level_db:.1f} dBFS < {DEFAULT_SILENCE_DB:g} dBFS"
    elif duration < shortest:  # (pad_fraction <= 1, so this is also below the minimum)
        problem = (f"too short: {duration:.2f} s < {shortest:.2f} s "
                   f"({pad_fraction:g} x the {min_duration_s:g} s minimum)")
    else:
        y = _conform(y, native_sr, sr, min_duration_s, max_duration_s, fixes)
        return AudioResult(y, sr, None, tuple(fixes))
    return AudioResult(None, sr, problem, tuple(fixes))


def _decode_checked(path: Path, sr: int, max_duration_s: float | None):
    """``(data (frames, channels), native rate)``, or the :class:`AudioResult` of a file that
    is missing, unreadable, empty or holds non-finite samples."""
    if not path.exists():
        return AudioResult(None, sr, f"missing: no such file {str(path)!r}")
    if path.is_dir():
        return AudioResult(None, sr, f"unreadable: {str(path)!r} is a folder")
    if path.stat().st_size == 0:
        return AudioResult(None, sr, "empty: 0 bytes")
    try:
        data, native_sr = _decode(path, max_duration_s)
    except Exception as error:  # corrupt, truncated header, unknown format, permission …
        message = " ".join(str(error).split()) or type(error).__name__
        return AudioResult(None, sr, f"unreadable: {type(error).__name__}: {message[:200]}")
    if len(data) == 0:
        return AudioResult(None, sr, "empty: 0 samples")
    finite = np.isfinite(data)
    if not finite.all():   # one pass over every file; the counts only for a bad one
        n_nan = int(np.isnan(data).sum())
        n_inf = int((~finite).sum()) - n_nan
        return AudioResult(None, sr, f"non-finite: {n_nan} NaN and {n_inf} inf samples")
    return data, native_sr


def _conform(y: np.ndarray, native_sr: int, sr: int, min_duration_s: float,
             max_duration_s: float | None, fixes: list[str]) -> np.ndarray:
    """Resample to ``sr``, truncate to ``max_duration_s``, pad to ``min_duration_s``; each
    repair is added to ``fixes``."""
    if native_sr != sr:
        import librosa  # heavy: only when a file needs resampling

        y = librosa.resample(y, orig_sr=native_sr, target_sr=sr, res_type="soxr_hq")
        fixes.append(f"resampled: {native_sr} Hz -> {sr} Hz")
    if max_duration_s is not None:
        n_max = int(round(max_duration_s * sr))
        if len(y) > n_max:
            y = y[:n_max]
            fixes.append(f"truncated: kept the first {max_duration_s:g} s")
    n_min = int(math.ceil(min_duration_s * sr))
    if len(y) < n_min:
        fixes.append(f"padded: {len(y) / sr:.2f} s -> {min_duration_s:g} s with trailing zeros")
        y = np.concatenate([y, np.zeros(n_min - len(y), dtype=np.float32)])
    return np.ascontiguousarray(y, dtype=np.float32)


def load_audio(
    path: str | os.PathLike,
    sr: int = DEFAULT_SR,
    min_duration_s: float = DEFAULT_MIN_DURATION_S,
    max_duration_s: float | None = None,
    *,
    pad_fraction: float = DEFAULT_PAD_FRACTION,
    warn: bool = True,
) -> tuple[np.ndarray | None, str | None]:
    """Load one audio file as float32 mono at ``sr``, or say why it cannot be used.

    The batch-job contract: ``(y, None)`` for a usable track, ``(None, reason)`` for one to
    skip — a bad file never raises. Resampling and zero-padding are announced with an
    :class:`AudioFixWarning` (``warn=False`` silences them; :func:`read_audio` returns them).

    Parameters
    ----------
    path : str or os.PathLike
        Audio file.
    sr : int, default 22050
        Target sample rate (Hz).
    min_duration_s : float, default 5.0
        Minimum duration (s); see ``pad_fraction``.
    max_duration_s : float or None, default None
        Keep at most this many seconds from the start.
    pad_fraction : float, default 0.5
        Tracks of at least ``pad_fraction * min_duration_s`` s are zero-padded to the minimum,
        shorter ones are skipped.
    warn : bool, default True
        Emit :class:`AudioFixWarning` for resampled / padded tracks.

    Returns
    -------
    y : numpy.ndarray of float32, shape (n_samples,), or None
        Mono audio in full-scale units at ``sr`` Hz.
    problem : str or None
        ``"kind: detail"`` (kinds: missing, empty, unreadable, non-finite, silent, too short)
        when ``y`` is None, else None.

    Examples
    --------
    >>> y, problem = load_audio("no/such/file.wav")
    >>> y is None, problem.split(":")[0]
    (True, 'missing')

    Notebook: 01_cqt.ipynb
    """
    result = read_audio(path, sr, min_duration_s, max_duration_s, pad_fraction=pad_fraction)
    if warn:
        for fix in result.fixes:
            if fix.startswith(("resampled", "padded")):
                warnings.warn(f"{Path(path).name}: {fix}", AudioFixWarning, stacklevel=2)
    return result.y, result.problem


@dataclass
class SkipReport:
    """What a batch job skipped and what it repaired, by track id — nothing is lost silently.

    Attributes
    ----------
    skipped : list of (track_id, reason)
        Tracks that produced no output; reasons are ``"kind: detail"``.
    fixed : list of (track_id, note)
        Tracks that were used after a repair (resampled, padded, truncated, down-mixed).
    n_total : int or None
        Tracks the job looked at (for the summary line), when known.

    Examples
    --------
    >>> report = SkipReport(n_total=3)
    >>> report.skip("t1", "silent: RMS -inf dBFS < -80 dBFS")
    >>> report.count, report.ids
    (1, ['t1'])

    Notebook: 01_cqt.ipynb
    """

    skipped: list[tuple[str, str]] = field(default_factory=list)
    fixed: list[tuple[str, str]] = field(default_factory=list)
    n_total: int | None = None

    def skip(self, track_id, reason: str) -> None:
        """Record a skipped track (``reason`` as ``"kind: detail"``)."""
        self.skipped.append((str(track_id), _TEXT(f"reason of {track_id!r}", reason)))

    def fix(self, track_id, note: str) -> None:
        """Record a repair applied to a track that was kept."""
        self.fixed.append((str(track_id), _TEXT(f"note of {track_id!r}", note)))

    @property
    def count(self) -> int:
        """Number of skipped tracks."""
        return len(self.skipped)

    @property
    def ids(self) -> list[str]:
        """Ids of the skipped tracks, in the order they were recorded."""
        return [track_id for track_id, _ in self.skipped]

    @property
    def reasons(self) -> dict[str, str]:
        """``{track_id: reason}`` for the skipped tracks."""
        return dict(self.skipped)

    def by_kind(self) -> dict[str, int]:
        """Skips counted by kind (the part of the reason before the first colon)."""
        return _kinds(self.skipped)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self.skipped)

    def __str__(self) -> str:
        total = "" if self.n_total is None else f" of {self.n_total}"
        lines = [f"SkipReport: {self.count}{total} tracks skipped, {len(self.fixed)} fixed"]
        for action, entries in (("skipped", self.skipped), ("fixed", self.fixed)):
            if entries:
                kinds = ", ".join(f"{k} {n}" for k, n in sorted(_kinds(entries).items()))
                lines.append(f"  {action} by kind: {kinds}")
                lines += [f"    {action} {t}: {r}" for t, r in entries[:20]]
                if len(entries) > 20:
                    lines.append(f"    … and {len(entries) - 20} more {action} (see to_csv())")
        return "\n".join(lines)

    def to_csv(self, path: str | os.PathLike) -> Path:
        """Write every entry to ``path`` (columns ``track_id, action, reason``); returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows([("track_id", "action", "reason")]
                                    + [(t, "skipped", r) for t, r in self.skipped]
                                    + [(t, "fixed", r) for t, r in self.fixed])
        return path


def player(path: str | os.PathLike, seconds: float = 4.0, sr: int = DEFAULT_SR):
    """An audio player for the first ``seconds`` of a file, for a notebook.

    Short by default: a notebook stores its players in the page, about 45 kB per second at the
    default rate. The file is read with :func:`load_audio` (``warn=False``), so a track that
    cannot be used gives a line of text saying why instead of a player.

    Parameters
    ----------
    path : str or os.PathLike
        Audio file (e.g. ``catalog.audio_path(i)``).
    seconds : float, default 4.0
        Length played, from the start (s), > 0.
    sr : int, default 22050
        Sample rate of the player (Hz).

    Returns
    -------
    IPython.display.Audio or str

    Notebook: 03_mining.ipynb
    """
    from IPython.display import Audio   # notebooks only: the package does not need IPython

    seconds = check_positive("seconds", seconds)
    y, problem = load_audio(path, sr=sr, min_duration_s=min(seconds, DEFAULT_MIN_DURATION_S),
                            max_duration_s=seconds, warn=False)
    if y is None:
        return f"{Path(path).name} cannot be played: {problem}"
    return Audio(y[: int(seconds * sr)], rate=sr, normalize=False)


def _kinds(entries: Iterable[tuple[str, str]]) -> dict[str, int]:
    """Entries counted by kind (the part of the reason or note before the first colon)."""
    return dict(Counter(text.split(":", 1)[0] for _, text in entries))
