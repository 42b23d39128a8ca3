r"""Log-CQT features: the transform, a cached parallel extractor, and patches.

The 2020 paper's input (SPEC §3.3): a constant-Q transform with 96 bins, 12 per octave, from
:math:`f_{min}` = 32.70 Hz (C1) to 7.90 kHz (B8; SPEC §3.3's "7.46 kHz" is the 95th bin's
centre, one bin short), power, log-scaled,

.. math::

    X_{\log}[k, t] = 10 \log_{10} \max\bigl(|X[k, t]|^2,\; 10^{-10}\bigr) \quad\text{(dB)},

at 43.07 frames/s (hop 1024 at 44.1 kHz, or hop 512 at 22.05 kHz for the default catalog), then
patches of 96 × 512 frames (11.88 s). ``librosa.cqt`` is the reference implementation; the
optional :func:`cqt_torch` runs the same transform as a strided convolution on any torch device.

:func:`extract` computes every track of a catalog in parallel (joblib) and caches one float16
``.npy`` per track under ``<catalog.root>/features/<config.key()>/`` with a ``manifest.json``.
float16 is enough: its spacing is 0.06 dB at 100 dB, far below anything the network can use, and it
halves the cache. Bad audio goes through :mod:`mrlib.audio` and ends in the
:class:`~mrlib.audio.SkipReport` of the returned :class:`FeatureSet`.

Notebook: 01_cqt.ipynb
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import os
import re
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mrlib.audio import (DEFAULT_MIN_DURATION_S, DEFAULT_PAD_FRACTION, SkipReport, read_audio)

__all__ = [
    "FeatureConfig",
    "FeatureSet",
    "cqt",
    "cqt_torch",
    "extract",
    "random_patches",
    "test_patches",
    "FORMAT_VERSION",
]

#: Version of the cache layout and of the feature computation; part of :meth:`FeatureConfig.key`,
#: so changing how features are computed never reuses an old cache.
FORMAT_VERSION = 1

_MANIFEST = "manifest.json"


@dataclass(frozen=True)
class FeatureConfig:
    """Everything that determines the features (and so the cache folder).

    Parameters
    ----------
    sr : int, default 22050
        Sample rate (Hz) the audio is resampled to.
    hop_length : int, default 512
        Hop between CQT frames in samples (512 at 22,050 Hz = 43.07 frames/s, as the paper's
        1024 at 44.1 kHz).
    n_bins : int, default 96
        CQT bins (8 octaves).
    bins_per_octave : int, default 12
        Semitone resolution.
    fmin : float, default 32.70
        Centre frequency of the lowest bin (Hz), C1.
    log_floor : float, default 1e-10
        Power floor before the log: -100 dB.
    min_duration_s : float, default 5.0
        Shortest usable track (s); see :func:`mrlib.audio.read_audio`.
    max_duration_s : float or None, default None
        Keep at most this many seconds from the start of each track.
    pad_fraction : float, default 0.5
        Tracks of at least ``pad_fraction * min_duration_s`` are zero-padded to the minimum.

    Notebook: 01_cqt.ipynb
    """

    sr: int = 22050
    hop_length: int = 512
    n_bins: int = 96
    bins_per_octave: int = 12
    fmin: float = 32.70
    log_floor: float = 1e-10
    min_duration_s: float = DEFAULT_MIN_DURATION_S
    max_duration_s: float | None = None
    pad_fraction: float = DEFAULT_PAD_FRACTION

    def __post_init__(self):
        for name in ("sr", "hop_length", "n_bins", "bins_per_octave"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"FeatureConfig.{name} must be a positive integer, got {value!r}")
        if not (isinstance(self.fmin, (int, float)) and self.fmin > 0 and math.isfinite(self.fmin)):
            raise ValueError(f"FeatureConfig.fmin must be a positive frequency in Hz, got {self.fmin!r}")
        if not (isinstance(self.log_floor, (int, float)) and self.log_floor > 0):
            raise ValueError(f"FeatureConfig.log_floor must be > 0, got {self.log_floor!r}")
        f_top = self.fmin * 2.0 ** ((self.n_bins - 1) / self.bins_per_octave)
        # The top filter's band reaches ~half a bin above its centre: keep it below Nyquist.
        if f_top * 2.0 ** (1.0 / self.bins_per_octave) >= self.sr / 2:
            raise ValueError(f"the top CQT bin ({f_top:.0f} Hz) is too close to Nyquist "
                             f"({self.sr / 2:.0f} Hz): lower n_bins or fmin, or raise sr")
        if not (isinstance(self.min_duration_s, (int, float)) and self.min_duration_s >= 0):
            raise ValueError(f"FeatureConfig.min_duration_s must be >= 0, got {self.min_duration_s!r}")
        if self.max_duration_s is not None and not (
                isinstance(self.max_duration_s, (int, float)) and self.max_duration_s >= max(
                    self.min_duration_s, 1e-9)):
            raise ValueError(f"FeatureConfig.max_duration_s must be None or >= min_duration_s, "
                             f"got {self.max_duration_s!r}")
        if not (isinstance(self.pad_fraction, (int, float)) and 0 <= self.pad_fraction <= 1):
            raise ValueError(f"FeatureConfig.pad_fraction must be in [0, 1], got {self.pad_fraction!r}")

    @classmethod
    def paper(cls, **overrides) -> "FeatureConfig":
        """The paper's setting: 44.1 kHz, hop 1024 (same 43.07 frames/s), 96 bins from C1.

        Notebook: 01_cqt.ipynb
        """
        return cls(**{"sr": 44100, "hop_length": 1024, **overrides})

    @property
    def frame_rate(self) -> float:
        """CQT frames per second (``sr / hop_length``)."""
        return self.sr / self.hop_length

    def frequencies(self) -> np.ndarray:
        """Centre frequencies of the bins in Hz, float64 (n_bins,)."""
        return self.fmin * 2.0 ** (np.arange(self.n_bins) / self.bins_per_octave)

    def to_dict(self) -> dict:
        """The fields as a plain dict (for manifests and results)."""
        return dataclasses.asdict(self)

    def key(self) -> str:
        """Short stable name of the cache folder: readable prefix + 10 hex digits of a hash.

        The hash covers every field and :data:`FORMAT_VERSION`, so two configs share a cache only
        if they produce the same features, e.g. ``'cqt22050h512b96-1a2b3c4d5e'``.

        Notebook: 01_cqt.ipynb
        """
        payload = json.dumps({"format": FORMAT_VERSION, **self.to_dict()}, sort_keys=True)
        digest = hashlib.sha1(payload.encode()).hexdigest()[:10]
        return f"cqt{self.sr}h{self.hop_length}b{self.n_bins}-{digest}"


def _check_signal(y, name="y") -> np.ndarray:
    y = np.asarray(y)
    if y.dtype.kind not in "fiu":
        raise TypeError(f"{name} must be a real-valued audio array, got dtype {y.dtype}")
    if y.ndim not in (1, 2):
        raise ValueError(f"{name} must be mono audio (n_samples,) or a batch (batch, n_samples), "
                         f"got shape {y.shape}")
    if y.size == 0:
        raise ValueError(f"{name} is empty")
    y = y.astype(np.float32, copy=False)
    if not np.isfinite(y).all():
        raise ValueError(f"{name} contains NaN or inf samples; load it with mrlib.audio.load_audio")
    return y


def cqt(y, config: FeatureConfig | None = None) -> np.ndarray:
    """Log-power constant-Q transform in dB, with ``librosa.cqt`` as the engine.

    Parameters
    ----------
    y : array_like of float, shape (n_samples,) or (batch, n_samples)
        Mono audio at ``config.sr`` Hz (full scale = 1). A batch of equal-length tracks is one
        multichannel ``librosa.cqt`` call: the same numbers bit for bit, but the filter bases
        (a fixed ~20 ms per call) are built once.
    config : FeatureConfig, optional
        Transform settings; default ``FeatureConfig()`` (22,050 Hz, hop 512, 96 bins from C1).

    Returns
    -------
    numpy.ndarray of float32, shape (n_bins, T) or (batch, n_bins, T)
        ``T = 1 + n_samples // hop_length``;
        ``10 * log10(max(|librosa.cqt(y)|**2, log_floor))`` in dB; frame t is centred on sample
        ``t * hop_length`` (librosa's zero-padded centring). Lowest bin first.

    Examples
    --------
    >>> y = np.sin(2 * np.pi * 440.0 * np.arange(22050) / 22050).astype(np.float32)
    >>> X = cqt(y)
    >>> X.shape, int(X[:, 20].argmax())  # A4 is 45 semitones above C1
    ((96, 44), 45)

    Notebook: 01_cqt.ipynb
    """
    import librosa

    config = FeatureConfig() if config is None else config
    if not isinstance(config, FeatureConfig):
        raise TypeError(f"config must be a FeatureConfig, got {type(config).__name__}")
    y = _check_signal(y)
    C = librosa.cqt(y, sr=config.sr, hop_length=config.hop_length, fmin=config.fmin,
                    n_bins=config.n_bins, bins_per_octave=config.bins_per_octave)
    power = C.real ** 2 + C.imag ** 2  # |C|^2 without the sqrt of np.abs
    log_power = 10.0 * np.log10(np.maximum(power, config.log_floor))
    # librosa returns a Fortran-ordered array; C order makes frame slices and .npy files plain.
    return np.ascontiguousarray(log_power, dtype=np.float32)


# ---------------------------------------------------------------------------------------------
# torch CQT: librosa's own linear operator, measured once, applied as polyphase convolutions.
# ---------------------------------------------------------------------------------------------

_NUMPY_KERNELS: dict[FeatureConfig, list] = {}
_KERNELS: dict[tuple, list] = {}


def _librosa_response(config: FeatureConfig) -> tuple[int, np.ndarray]:
    """Complex impulse response g_k[tau] of ``librosa.cqt`` (before the log), float64.

    librosa's CQT is linear in y and, since it only halves the rate while the hop stays even,
    periodic with period ``hop_length``: X[k, t] = sum_n y[n] g_k[n - t * hop]. An impulse at
    sample c + p gives X[k, t] = g_k[c + p - t * hop], i.e. the taps of one residue class modulo
    hop; ``hop_length`` impulses (one per channel, one librosa call) give every tap — including
    the effects of librosa's sparsified FFT bases and of its soxr decimation filters.

    Returns ``(tau_min, G)`` with G of shape (n_bins, n_taps) and G[:, j] = g[tau_min + j].
    """
    import librosa

    hop = config.hop_length
    lengths, _ = librosa.filters.wavelet_lengths(freqs=config.frequencies(), sr=config.sr)
    # Decimation filters widen the longest wavelet by ~28 % (at 1e-12 of its energy): measure 40 %.
    half = int(math.ceil(1.4 * lengths.max() / hop)) * hop
    c = half + hop
    probes = np.zeros((hop, 2 * c), dtype=np.float64)
    probes[np.arange(hop), c + np.arange(hop)] = 1.0
    X = librosa.cqt(probes, sr=config.sr, hop_length=hop, fmin=config.fmin,
                    n_bins=config.n_bins, bins_per_octave=config.bins_per_octave)
    n_frames = X.shape[-1]
    tau = (c + np.arange(hop))[:, None] - hop * np.arange(n_frames)[None, :]  # (hop, frames)
    tau_min = int(tau.min())
    G = np.zeros((config.n_bins, int(tau.max()) - tau_min + 1), dtype=np.complex128)
    for p in range(hop):
        G[:, tau[p] - tau_min] = X[p]
    return tau_min, G


def _polyphase_kernels(config: FeatureConfig) -> list:
    """Per-octave polyphase kernels: (bins slice, float32 weight (2 n, hop, Q), left pad).

    Each octave keeps the taps that carry all but 1e-12 of its energy on either side (short
    kernels for high octaves). The taps are laid out polyphase, W[j, r, q] = g_j[tau_0 + q hop + r]
    (rows: real parts then imaginary parts), so that the strided correlation becomes a stride-1
    ``conv1d`` with ``hop`` input channels: a dense product that BLAS / cuDNN run fast, where a
    stride-512 convolution with a 30,000-tap kernel is slow on CPU. Cached per config (~6 MB).
    """
    if config in _NUMPY_KERNELS:
        return _NUMPY_KERNELS[config]
    hop = config.hop_length
    tau_min, G = _librosa_response(config)
    energy = np.abs(G) ** 2
    groups = []
    for top in range(config.n_bins, 0, -config.bins_per_octave):
        lo = max(0, top - config.bins_per_octave)
        cum = np.cumsum(energy[lo:top], axis=1)
        cum /= cum[:, -1:]
        first = int(min(np.searchsorted(row, 1e-12) for row in cum))
        last = int(max(np.searchsorted(row, 1.0 - 1e-12) for row in cum))
        n_q = -(-(last - first + 1) // hop)  # ceil: taps rounded up to whole hops
        block = np.zeros((top - lo, n_q * hop), dtype=np.complex128)
        taps = G[lo:top, first:first + n_q * hop]
        block[:, :taps.shape[1]] = taps
        weight = np.concatenate([block.real, block.imag]).reshape(2 * (top - lo), n_q, hop)
        weight = np.ascontiguousarray(weight.transpose(0, 2, 1), dtype=np.float32)  # (2n, hop, Q)
        groups.append((slice(lo, top), weight, -(tau_min + first)))
    _NUMPY_KERNELS[config] = groups
    return groups


def _torch_kernels(config: FeatureConfig, device) -> list:
    """:func:`_polyphase_kernels` as torch tensors on ``device`` (cached per config and device)."""
    import torch

    key = (config, str(device))
    if key not in _KERNELS:
        _KERNELS[key] = [(bins, torch.as_tensor(w, device=device), left)
                         for bins, w, left in _polyphase_kernels(config)]
    return _KERNELS[key]


def cqt_torch(y, config: FeatureConfig | None = None, device=None):
    """Log-power CQT (dB) in torch, on any device; agrees with :func:`cqt` (librosa).

    librosa's CQT (sparsified FFT-domain wavelets, octave-by-octave soxr decimation) is a linear,
    hop-periodic operator on the signal: ``X[k, t] = sum_n y[n] g_k[n - t * hop]``. Its complex
    impulse responses g_k are measured once per config by feeding ``librosa.cqt`` one impulse per
    hop phase (``hop_length`` impulses in one multichannel call, 3–10 s on a CPU, cached in
    memory), and then applied here as one polyphase ``conv1d`` per octave on the full-rate signal.
    So this *is* librosa's transform, decimation and sparsity included — not a look-alike — and
    the log-CQTs agree to a correlation above 0.999 on noise, tones, chirps and music (tested:
    ≥ 0.99); only the first and last frames differ by more than a fraction of a dB, where soxr
    treats the signal's ends differently. Runs on CUDA, MPS or CPU; batches are one call.

    Parameters
    ----------
    y : array_like or torch.Tensor of float, shape (n_samples,) or (batch, n_samples)
        Mono audio at ``config.sr``.
    config : FeatureConfig, optional
        Default ``FeatureConfig()``.
    device : str or torch.device, optional
        Where to compute (default: ``y``'s device if it is a tensor, else CPU).

    Returns
    -------
    torch.Tensor of float32, shape (n_bins, T) or (batch, n_bins, T), on ``device``
        ``T = 1 + n_samples // hop_length``, dB as :func:`cqt`.

    Notebook: 01_cqt.ipynb
    """
    import torch

    config = FeatureConfig() if config is None else config
    if not isinstance(config, FeatureConfig):
        raise TypeError(f"config must be a FeatureConfig, got {type(config).__name__}")
    if isinstance(y, torch.Tensor):
        device = y.device if device is None else torch.device(device)
        x = y.detach().to(device=device, dtype=torch.float32)
    else:
        device = torch.device("cpu" if device is None else device)
        arr = np.asarray(y)
        if arr.dtype.kind not in "fiu":
            raise TypeError(f"y must be real-valued audio, got dtype {arr.dtype}")
        x = torch.as_tensor(arr.astype(np.float32, copy=False), device=device)
    single = x.ndim == 1
    if x.ndim not in (1, 2) or x.shape[-1] == 0:
        raise ValueError(f"y must be (n_samples,) or (batch, n_samples) with n_samples > 0, "
                         f"got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError("y contains NaN or inf samples")
    x = x.reshape(-1, 1, x.shape[-1])
    n = x.shape[-1]
    n_frames = 1 + n // config.hop_length
    out = torch.empty((x.shape[0], config.n_bins, n_frames), dtype=torch.float32, device=device)
    hop = config.hop_length
    with torch.no_grad():
        for bins, weight, left in _torch_kernels(config, device):
            n_q = weight.shape[-1]
            # out[t] = sum_tau y[t hop + tau] g[tau]; with x[j] = y[j - left] and tau = q hop + r
            # - left: out[t] = sum_{r, q} x[(t + q) hop + r] W[r, q], i.e. a stride-1 conv1d of
            # the (hop, blocks) polyphase view of x.
            n_blocks = n_frames - 1 + n_q
            total = n_blocks * hop
            if left >= 0:
                padded = torch.nn.functional.pad(x, (left, max(0, total - left - n)))
            else:
                padded = x[..., -left:]
                padded = torch.nn.functional.pad(padded, (0, max(0, total - padded.shape[-1])))
            blocks = padded[..., :total].reshape(x.shape[0], n_blocks, hop).transpose(1, 2)
            resp = torch.nn.functional.conv1d(blocks, weight)  # (batch, 2n, n_frames)
            k = weight.shape[0] // 2
            power = resp[:, :k] ** 2 + resp[:, k:] ** 2
            out[:, bins] = 10.0 * torch.log10(torch.clamp(power, min=config.log_floor))
    return out[0] if single else out


# ---------------------------------------------------------------------------------------------
# The cache and the parallel extractor
# ---------------------------------------------------------------------------------------------

def _safe_name(track_id: str) -> str:
    """A file name for a track id; ids with path separators or odd characters get a hash."""
    clean = re.sub(r"[^A-Za-z0-9._-]", "_", track_id)
    if clean != track_id or clean in ("", ".", "..") or len(clean) > 120:
        clean = f"{clean[:80]}-{hashlib.sha1(track_id.encode()).hexdigest()[:8]}"
    return clean + ".npy"


def _source_signature(path: Path) -> dict | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _header(file: Path) -> tuple[tuple, np.dtype, int]:
    """Shape, dtype and data offset from a .npy header (raises on a damaged file)."""
    with open(file, "rb") as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f"unsupported .npy version {version}")
        if fortran:
            raise ValueError("Fortran-ordered array")
        return shape, dtype, f.tell()


def _cache_valid(file: Path, entry: dict, config: FeatureConfig, verify: str) -> bool:
    """Is the cached file the complete, uncorrupted array the manifest describes?"""
    try:
        if not file.is_file():
            return False
        if verify == "exists":
            return True
        shape, dtype, offset = _header(file)
        expected = tuple(entry["shape"])
        if (dtype != np.float16 or shape != expected or len(shape) != 2
                or shape[0] != config.n_bins):
            return False
        if file.stat().st_size != offset + int(np.prod(shape)) * 2:
            return False  # truncated (or padded) data
        if verify == "checksum":
            return zlib.crc32(file.read_bytes()) == entry["crc32"]
        return True
    except Exception:
        return False


def _save_feature(feature: np.ndarray, out_file: str) -> dict:
    """Write one float16 feature atomically; return its manifest fields."""
    feature = np.ascontiguousarray(feature, dtype=np.float16)
    buffer = io.BytesIO()
    np.save(buffer, feature, allow_pickle=False)
    data = buffer.getvalue()
    out = Path(out_file)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    # Write-then-rename is atomic: a killed worker leaves a stray temporary, never half a
    # feature. (No fsync: after an OS crash the size check on reuse catches a torn file.)
    tmp.write_bytes(data)
    os.replace(tmp, out)
    return {"shape": list(feature.shape), "crc32": zlib.crc32(data)}


#: Most samples given to one multichannel librosa.cqt call (~12 min at 22,050 Hz; ~50 MB).
_MAX_BATCH_SAMPLES = 2 ** 24


def _compute_batch(items: list[tuple[int, str, str]], config: FeatureConfig) -> list[dict]:
    """Worker: audio -> log-CQT -> float16 .npy for a few tracks. Never raises on bad audio.

    Tracks of equal length (after loading) share one multichannel CQT call; if such a call fails,
    its tracks are retried one by one so only the culprit is skipped.
    """
    records, loaded = [], []
    for index, source, out_file in items:
        result = read_audio(source, config.sr, config.min_duration_s, config.max_duration_s,
                            pad_fraction=config.pad_fraction)
        record: dict[str, Any] = {"index": index, "fixes": list(result.fixes),
                                  "problem": result.problem}
        records.append(record)
        if result.problem is None:
            loaded.append((record, result.y, out_file))
    by_length: dict[int, list] = {}
    for item in loaded:
        by_length.setdefault(len(item[1]), []).append(item)
    for length, members in by_length.items():
        step = max(1, _MAX_BATCH_SAMPLES // length)
        for k in range(0, len(members), step):
            group = members[k:k + step]
            try:
                features = cqt(np.stack([y for _, y, _ in group]), config)
            except Exception:
                features = None
            for j, (record, y, out_file) in enumerate(group):
                if features is not None:
                    record.update(_save_feature(features[j], out_file))
                    continue
                try:  # the batch failed: isolate the track that breaks librosa
                    record.update(_save_feature(cqt(y, config), out_file))
                except Exception as error:
                    record["problem"] = f"cqt failed: {type(error).__name__}: {error}"
    return records


def _read_manifest(cache_dir: Path, config: FeatureConfig) -> dict:
    path = cache_dir / _MANIFEST
    try:
        manifest = json.loads(path.read_text())
        if manifest.get("config") != config.to_dict() or manifest.get("format") != FORMAT_VERSION:
            raise ValueError("manifest of another config")
        if not isinstance(manifest.get("tracks"), dict):
            raise ValueError("no tracks")
        return manifest
    except Exception:  # missing or damaged manifest: start afresh (files are re-validated)
        return {}


def _write_manifest(cache_dir: Path, config: FeatureConfig, tracks: dict) -> None:
    import librosa

    manifest = {"format": FORMAT_VERSION, "key": config.key(), "config": config.to_dict(),
                "librosa": librosa.__version__, "dtype": "float16",
                "layout": "one <track_id>.npy per track, float16 (n_bins, T), log-power dB",
                "tracks": tracks}
    tmp = cache_dir / f".{_MANIFEST}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True))
    os.replace(tmp, cache_dir / _MANIFEST)


def _catalog_table(catalog) -> tuple[Path, list[str], list[Path]]:
    if not hasattr(catalog, "tracks") or not hasattr(catalog, "root"):
        raise TypeError("catalog must be a mrlib.catalog.Catalog (or have .root and .tracks "
                        f"[track_id, path]), got {type(catalog).__name__}")
    tracks = catalog.tracks
    missing = {"track_id", "path"} - set(tracks.columns)
    if missing:
        raise ValueError(f"catalog.tracks lacks columns {sorted(missing)}")
    root = Path(catalog.root)
    ids = [str(t) for t in tracks["track_id"]]
    if len(set(ids)) != len(ids):
        raise ValueError("catalog.tracks has duplicate track ids")
    paths = []
    for p in tracks["path"]:
        p = Path(str(p))
        paths.append(p if p.is_absolute() else root / p)
    return root, ids, paths


def extract(
    catalog,
    config: FeatureConfig | None = None,
    n_jobs: int = 2,
    progress: bool = True,
    *,
    verify: str = "size",
    overwrite: bool = False,
    cache_dir: str | os.PathLike | None = None,
    verbose: bool = True,
) -> "FeatureSet":
    """Log-CQT of every track of a catalog, in parallel, cached on disk.

    Each track's feature is ``cqt(load_audio(path))`` stored as float16 in
    ``<catalog.root>/features/<config.key()>/<track_id>.npy`` (written atomically: a crash never
    leaves half a file) and listed in ``manifest.json`` with its shape, a CRC-32 and the size and
    modification time of its audio. The next call reuses every file that is still valid and whose
    audio is unchanged; a damaged file (unreadable header, wrong shape or dtype, truncated data,
    or — with ``verify="checksum"`` — any changed byte) is recomputed. Bad audio is skipped and
    listed by id and reason in ``FeatureSet.report``, printed at the end.

    Work goes to the processes in batches of up to 16 tracks; equal-length tracks of a batch
    (a synthetic or MagnaTagATune catalog: all of them) share one multichannel ``librosa.cqt``
    call, bit-identical to separate calls but about twice as fast on 30-s tracks, because
    librosa rebuilds its filter bases on every call.

    Parameters
    ----------
    catalog : mrlib.catalog.Catalog
        Or any object with ``root`` (Path) and ``tracks`` (DataFrame with ``track_id``, ``path``;
        relative paths are relative to ``root``).
    config : FeatureConfig, optional
        Default ``FeatureConfig()``.
    n_jobs : int, default 2
        Worker processes (joblib/loky); 1 computes in this process; -1 uses every core.
    progress : bool, default True
        tqdm bar over the tracks to compute.
    verify : {"size", "checksum", "exists"}, default "size"
        How a cached file is checked: header + exact byte size (cheap), plus CRC-32 of the whole
        file (reads everything), or only existence.
    overwrite : bool, default False
        Recompute everything.
    cache_dir : path, optional
        Cache folder instead of ``<catalog.root>/features/<config.key()>``.
    verbose : bool, default True
        Print the skip report when something was skipped or fixed.

    Returns
    -------
    FeatureSet
        Features by catalog index, ``available`` mask, ``report`` (SkipReport), and the counts
        ``n_computed`` / ``n_cached`` of this call.

    Notebook: 01_cqt.ipynb
    """
    config = FeatureConfig() if config is None else config
    if not isinstance(config, FeatureConfig):
        raise TypeError(f"config must be a FeatureConfig, got {type(config).__name__}")
    if verify not in ("size", "checksum", "exists"):
        raise ValueError(f"verify must be 'size', 'checksum' or 'exists', got {verify!r}")
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, (int, np.integer)) or n_jobs == 0 or n_jobs < -1:
        raise ValueError(f"n_jobs must be a positive integer or -1, got {n_jobs!r}")
    root, ids, paths = _catalog_table(catalog)
    cache = Path(cache_dir) if cache_dir is not None else root / "features" / config.key()
    cache.mkdir(parents=True, exist_ok=True)
    # Temporaries of killed workers; an hour's grace leaves a concurrent run's files alone.
    for stale in cache.glob(".*.tmp"):
        try:
            if time.time() - stale.stat().st_mtime > 3600:
                stale.unlink()
        except OSError:
            pass
    manifest = {} if overwrite else _read_manifest(cache, config)
    entries: dict = dict(manifest.get("tracks", {}))

    files = [cache / _safe_name(t) for t in ids]
    report = SkipReport(n_total=len(ids))
    todo, n_cached = [], 0
    for i, (track_id, source, file) in enumerate(zip(ids, paths, files)):
        entry = entries.get(track_id)
        signature = _source_signature(source)
        # Reuse when the file is sound and the audio has not changed (or is gone: keep what we have).
        if (entry is not None and (signature is None or entry.get("source") == signature)
                and _cache_valid(file, entry, config, verify)):
            n_cached += 1
            for note in entry.get("fixes", []):
                report.fix(track_id, note)
        else:
            entries.pop(track_id, None)
            todo.append(i)

    def save():
        _write_manifest(cache, config, entries)

    from tqdm.auto import tqdm

    bar = tqdm(total=len(todo), desc="log-CQT", unit="track", disable=not progress or not todo)
    last_save = time.monotonic()
    try:
        for records in _run(todo, paths, files, config, n_jobs):
            for record in records:
                i = record["index"]
                track_id = ids[i]
                if record["problem"] is not None:
                    report.skip(track_id, record["problem"])
                    continue
                for note in record["fixes"]:
                    report.fix(track_id, note)
                entries[track_id] = {"file": files[i].name, "shape": record["shape"],
                                     "crc32": record["crc32"], "fixes": record["fixes"],
                                     "source": _source_signature(paths[i])}
            bar.update(len(records))
            if time.monotonic() - last_save > 30:  # an interrupted run keeps what it finished
                save()
                last_save = time.monotonic()
    finally:
        bar.close()
        save()

    # Skips in catalog order, whatever order the workers finished in.
    order = {t: k for k, t in enumerate(ids)}
    report.skipped.sort(key=lambda e: order[e[0]])
    report.fixed.sort(key=lambda e: order[e[0]])
    shapes = [tuple(entries[t]["shape"]) if t in entries else None for t in ids]
    fs = FeatureSet(config=config, cache_dir=cache, track_ids=ids,
                    files=[f if s is not None else None for f, s in zip(files, shapes)],
                    shapes=shapes, report=report, n_computed=len(todo) - report.count,
                    n_cached=n_cached)
    if verbose and (report.count or report.fixed):
        print(report)
    return fs


def _run(todo: list[int], paths, files, config, n_jobs: int):
    """Yield lists of worker records as batches finish (in parallel when n_jobs != 1)."""
    if not todo:
        return iter(())
    items = [(i, str(paths[i]), str(files[i])) for i in todo]
    workers = (os.cpu_count() or 1) if n_jobs == -1 else n_jobs
    # Batches of up to 16 tracks amortise librosa's filter bases; at least ~4 batches per worker
    # keep the workers evenly loaded and the progress bar moving.
    size = int(np.clip(len(items) // (4 * workers), 1, 16))
    batches = [items[k:k + size] for k in range(0, len(items), size)]
    if n_jobs == 1 or len(batches) == 1:
        return (_compute_batch(batch, config) for batch in batches)
    from joblib import Parallel, delayed

    # Unordered: a slow batch does not hold up the others; records carry their index.
    return Parallel(n_jobs=n_jobs, return_as="generator_unordered", batch_size=1)(
        delayed(_compute_batch)(batch, config) for batch in batches)


class FeatureSet:
    """Cached log-CQT features of a catalog, looked up by catalog index.

    Attributes
    ----------
    config : FeatureConfig
    cache_dir : pathlib.Path
    track_ids : list of str, length N
    report : mrlib.audio.SkipReport
        Tracks without features (id and reason) and tracks that were repaired.
    n_computed, n_cached : int
        Tracks computed / reused by the :func:`extract` call that built this set.

    Notes
    -----
    ``fs[i]`` opens the file memory-mapped (read-only float16, shape (n_bins, T_i)): slicing a
    patch reads only that patch. :meth:`preload` keeps every array in memory instead. The object
    pickles to a few paths, so DataLoader workers can share it.

    Notebook: 01_cqt.ipynb
    """

    def __init__(self, config: FeatureConfig, cache_dir: Path, track_ids: Sequence[str],
                 files: Sequence[Path | None], shapes: Sequence[tuple | None],
                 report: SkipReport, n_computed: int = 0, n_cached: int = 0, mmap: bool = True):
        self.config = config
        self.cache_dir = Path(cache_dir)
        self.track_ids = list(track_ids)
        self._files = list(files)
        self._shapes = list(shapes)
        self.report = report
        self.n_computed = int(n_computed)
        self.n_cached = int(n_cached)
        self.mmap = bool(mmap)
        self._memory: dict[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.track_ids)

    @property
    def available(self) -> np.ndarray:
        """Bool mask (N,): True where the track has features."""
        return np.array([f is not None for f in self._files], dtype=bool)

    @property
    def indices(self) -> np.ndarray:
        """Catalog indices (int64) of the tracks that have features."""
        return np.flatnonzero(self.available).astype(np.int64)

    @property
    def n_frames(self) -> np.ndarray:
        """Frames T_i per track, int64 (N,); 0 where unavailable."""
        return np.array([s[1] if s is not None else 0 for s in self._shapes], dtype=np.int64)

    def _index(self, i) -> int:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise TypeError(f"FeatureSet is indexed by an integer catalog index, got {i!r}")
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"catalog index {i} out of range for {n} tracks")
        return int(i) % n

    def __getitem__(self, i) -> np.ndarray:
        i = self._index(i)
        if self._files[i] is None:
            reason = self.report.reasons.get(self.track_ids[i], "no features")
            raise KeyError(f"track {i} ({self.track_ids[i]!r}) has no features: {reason}")
        if self._memory is not None:
            return self._memory[i]
        try:
            array = np.load(self._files[i], mmap_mode="r" if self.mmap else None, allow_pickle=False)
        except Exception as error:
            raise OSError(f"cached feature {self._files[i]} is unreadable ({error}); run "
                          "mrlib.features.extract again to rebuild it") from error
        if array.shape != self._shapes[i]:
            raise OSError(f"cached feature {self._files[i]} has shape {array.shape}, expected "
                          f"{self._shapes[i]}; run mrlib.features.extract again to rebuild it")
        return array

    def preload(self, progress: bool = False) -> "FeatureSet":
        """Read every available feature into memory (returns self).

        Notebook: 01_cqt.ipynb
        """
        from tqdm.auto import tqdm

        memory = {}
        saved, self.mmap = self.mmap, False
        try:
            for i in tqdm(self.indices, desc="load features", disable=not progress):
                memory[int(i)] = self[int(i)]
        finally:
            self.mmap = saved
        self._memory = memory
        return self

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_memory"] = None  # workers re-open files instead of copying arrays
        return state

    def __repr__(self) -> str:
        return (f"FeatureSet({int(self.available.sum())}/{len(self)} tracks, key={self.config.key()!r}, "
                f"skipped={self.report.count})")


# ---------------------------------------------------------------------------------------------
# Patches
# ---------------------------------------------------------------------------------------------

def _as_rng(rng) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng must be a numpy.random.Generator or an int seed, got {type(rng).__name__}")


def random_patches(feature, patch_len: int, n: int, rng, pad: str = "wrap") -> np.ndarray:
    """``n`` patches of ``patch_len`` frames at uniformly random offsets in one track.

    Parameters
    ----------
    feature : array_like, shape (n_bins, T)
        One track's log-CQT (float16 from the cache, or float32).
    patch_len : int
        Frames per patch (512 = 11.88 s in the paper).
    n : int
        Number of patches (drawn independently, so they may overlap).
    rng : numpy.random.Generator or int
        Source of the offsets (an int is a seed).
    pad : {"wrap", "floor"}, default "wrap"
        For a track shorter than ``patch_len``: ``"wrap"`` loops the track (keeps it music, with
        a seam), ``"floor"`` appends frames at the feature's minimum value (silence in dB). A
        random phase of the loop is used for ``"wrap"``, the start for ``"floor"``.

    Returns
    -------
    numpy.ndarray, shape (n, n_bins, patch_len), same dtype as ``feature``
        A new array (safe to modify).

    Notebook: 01_cqt.ipynb
    """
    rng = _as_rng(rng)
    if isinstance(patch_len, bool) or not isinstance(patch_len, (int, np.integer)) or patch_len < 1:
        raise ValueError(f"patch_len must be a positive integer (frames), got {patch_len!r}")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    if pad not in ("wrap", "floor"):
        raise ValueError(f"pad must be 'wrap' or 'floor', got {pad!r}")
    if getattr(feature, "ndim", None) != 2:
        feature = np.asarray(feature)
    if feature.ndim != 2 or feature.shape[1] == 0:
        raise ValueError(f"feature must be (n_bins, T) with T > 0, got shape {feature.shape}")
    T = feature.shape[1]
    if T >= patch_len:
        starts = rng.integers(0, T - patch_len + 1, size=n)
        columns = starts[:, None] + np.arange(patch_len)
    elif pad == "wrap":
        starts = rng.integers(0, T, size=n)
        columns = (starts[:, None] + np.arange(patch_len)) % T
    else:
        # Every patch is the whole track followed by "silence": the feature's minimum (dB).
        feature = np.asarray(feature)
        floor = np.full((feature.shape[0], patch_len - T), feature.min(), dtype=feature.dtype)
        return np.repeat(np.concatenate([feature, floor], axis=1)[None], n, axis=0)
    # One gather for all patches: (n_bins, n, L) -> (n, n_bins, L). Only the needed columns of a
    # memory-mapped feature are read.
    return np.ascontiguousarray(np.asarray(feature)[:, columns].transpose(1, 0, 2))


def test_patches(feature, patch_len: int, n: int = 8, seed: int = 0, pad: str = "wrap") -> np.ndarray:
    """The seeded test-time representation: ``n`` (= 8) patches of one track.

    Equal to ``random_patches(feature, patch_len, n, np.random.default_rng(seed), pad)``; the same
    seed gives the same patches on every run, so evaluations are comparable (SPEC §3.3). Models
    average their embeddings (or tag probabilities) over the patches.

    Parameters
    ----------
    feature : array_like, shape (n_bins, T)
    patch_len : int
    n : int, default 8
    seed : int, default 0
    pad : {"wrap", "floor"}, default "wrap"

    Returns
    -------
    numpy.ndarray, shape (n, n_bins, patch_len), dtype of ``feature``

    Notebook: 01_cqt.ipynb
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int, got {seed!r}")
    return random_patches(feature, patch_len, n, np.random.default_rng(int(seed)), pad=pad)


# pytest would collect a module-level ``test_*`` function imported into a test file; tell it not to.
test_patches.__test__ = False
