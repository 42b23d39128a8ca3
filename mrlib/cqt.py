r"""The log-CQT transform of the 2020 paper: its configuration, librosa's engine, a torch twin.

A constant-Q transform with 96 bins, 12 per octave, from :math:`f_{min}` = 32.70 Hz (C1),
power, log-scaled,

.. math::

    X_{\log}[k, t] = 10 \log_{10} \max\bigl(|X[k, t]|^2,\; 10^{-10}\bigr) \quad\text{(dB)},

at 43.07 frames/s. :func:`cqt` runs ``librosa.cqt``, the reference; :func:`cqt_torch` applies
the same linear operator as strided convolutions on any torch device. :class:`FeatureConfig`
names the setting and keys the feature cache of :mod:`mrlib.features`.

Notebook: 01_cqt.ipynb
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
from dataclasses import dataclass

import numpy as np

from mrlib.audio import DEFAULT_MIN_DURATION_S, DEFAULT_PAD_FRACTION
from mrlib.checks import is_int, rule, validate_fields

__all__ = ["FORMAT_VERSION", "FeatureConfig", "cqt", "cqt_torch"]

#: Version of the cache layout and of the feature computation; part of :meth:`FeatureConfig.key`,
#: so changing how features are computed never reuses an old cache.
FORMAT_VERSION = 1


_POSITIVE_INT = (rule(lambda v: is_int(v) and v >= 1, "a positive integer"),)
#: Field -> its checks (:func:`mrlib.checks.validate_fields`); values are checked, not converted,
#: and every refusal is a ``ValueError``. The float fields take Python numbers only, as key()
#: hashes the fields as JSON.
_FEATURE_CHECKS: dict[str, tuple] = {
    **dict.fromkeys(("sr", "hop_length", "n_bins", "bins_per_octave"), _POSITIVE_INT),
    "fmin": (rule(lambda v: isinstance(v, (int, float)) and v > 0 and math.isfinite(v),
                  "a positive frequency in Hz"),),
    "log_floor": (rule(lambda v: isinstance(v, (int, float)) and v > 0, "> 0"),),
    "min_duration_s": (rule(lambda v: isinstance(v, (int, float)) and v >= 0, ">= 0"),),
    "max_duration_s": (rule(lambda v: isinstance(v, (int, float)), "None or >= min_duration_s",
                            optional=True),),
    "pad_fraction": (rule(lambda v: isinstance(v, (int, float)) and 0 <= v <= 1, "in [0, 1]"),),
}


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
        validate_fields(self, _FEATURE_CHECKS)
        f_top = self.fmin * 2.0 ** ((self.n_bins - 1) / self.bins_per_octave)
        # The top filter's band reaches ~half a bin above its centre: keep it below Nyquist.
        if f_top * 2.0 ** (1.0 / self.bins_per_octave) >= self.sr / 2:
            raise ValueError(f"the top CQT bin ({f_top:.0f} Hz) is too close to Nyquist "
                             f"({self.sr / 2:.0f} Hz): lower n_bins or fmin, or raise sr")
        # Written as "not >=" so that a NaN fails too.
        if self.max_duration_s is not None and not (
                self.max_duration_s >= max(self.min_duration_s, 1e-9)):
            raise ValueError(f"FeatureConfig.max_duration_s must be None or >= min_duration_s, "
                             f"got {self.max_duration_s!r}")

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


def _as_config(config) -> FeatureConfig:
    """``config``, or ``FeatureConfig()`` for None; a ``TypeError`` for anything else."""
    config = FeatureConfig() if config is None else config
    if not isinstance(config, FeatureConfig):
        raise TypeError(f"config must be a FeatureConfig, got {type(config).__name__}")
    return config


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

    config = _as_config(config)
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
    G[:, tau - tau_min] = X.transpose(1, 0, 2)      # X[p, k, t] is tap tau[p, t] of bin k
    return tau_min, G


@functools.cache
def _polyphase_kernels(config: FeatureConfig) -> list:
    """Per-octave polyphase kernels: (bins slice, float32 weight (2 n, hop, Q), left pad).

    Each octave keeps the taps that carry all but 1e-12 of its energy on either side (short
    kernels for high octaves). The taps are laid out polyphase, W[j, r, q] = g_j[tau_0 + q hop + r]
    (rows: real parts then imaginary parts), so that the strided correlation becomes a stride-1
    ``conv1d`` with ``hop`` input channels: a dense product that BLAS / cuDNN run fast, where a
    stride-512 convolution with a 30,000-tap kernel is slow on CPU. Cached per config (~6 MB).
    """
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
    return groups


@functools.cache
def _torch_kernels(config: FeatureConfig, device: str) -> list:
    """:func:`_polyphase_kernels` as torch tensors on ``device`` (cached per config and device)."""
    import torch

    return [(bins, torch.as_tensor(w, device=device), left)
            for bins, w, left in _polyphase_kernels(config)]


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

    config = _as_config(config)
    if isinstance(y, torch.Tensor):
        device = y.device if device is None else torch.device(device)
        x = y.detach().to(device=device, dtype=torch.float32)
    else:
        device = torch.device("cpu" if device is None else device)
        x = torch.as_tensor(_check_signal(y), device=device)
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
        for bins, weight, left in _torch_kernels(config, str(device)):
            n_q = weight.shape[-1]
            # out[t] = sum_tau y[t hop + tau] g[tau]; with x[j] = y[j - left] and tau = q hop + r
            # - left: out[t] = sum_{r, q} x[(t + q) hop + r] W[r, q], i.e. a stride-1 conv1d of
            # the (hop, blocks) polyphase view of x.
            n_blocks = n_frames - 1 + n_q
            total = n_blocks * hop
            # a negative left pad drops the samples before the kernel's first tap
            padded = torch.nn.functional.pad(x, (left, max(0, total - left - n)))
            blocks = padded[..., :total].reshape(x.shape[0], n_blocks, hop).transpose(1, 2)
            resp = torch.nn.functional.conv1d(blocks, weight)  # (batch, 2n, n_frames)
            k = weight.shape[0] // 2
            power = resp[:, :k] ** 2 + resp[:, k:] ** 2
            out[:, bins] = 10.0 * torch.log10(torch.clamp(power, min=config.log_floor))
    return out[0] if single else out
