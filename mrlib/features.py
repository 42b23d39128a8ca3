r"""Log-CQT features: the transform, a cached parallel extractor, and patches.

The 2020 paper's input: a constant-Q transform with 96 bins, 12 per octave, from
:math:`f_{min}` = 32.70 Hz (C1) to 7.90 kHz (B8, the centre of the 96th bin; the 95th is at
7.46 kHz), power, log-scaled,

.. math::

    X_{\log}[k, t] = 10 \log_{10} \max\bigl(|X[k, t]|^2,\; 10^{-10}\bigr) \quad\text{(dB)},

at 43.07 frames/s (hop 1024 at 44.1 kHz, or hop 512 at 22.05 kHz for the default catalog), then
patches of 96 × 512 frames (11.88 s). ``librosa.cqt`` is the reference implementation; the
optional :func:`cqt_torch` runs the same transform as a strided convolution on any torch device
(both, with :class:`FeatureConfig`, live in :mod:`mrlib.cqt` and are re-exported here).

:func:`extract` computes every track of a catalog in parallel (joblib) and caches one float16
``.npy`` per track under ``<catalog.root>/features/<config.key()>/`` with a ``manifest.json``.
float16 is enough: its spacing is 0.06 dB at 100 dB, far below anything the network can use, and it
halves the cache. Bad audio goes through :mod:`mrlib.audio` and ends in the
:class:`~mrlib.audio.SkipReport` of the returned :class:`FeatureSet`.

Notebook: 01_cqt.ipynb
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from joblib import Parallel, delayed
from tqdm.auto import tqdm

from mrlib.audio import SkipReport, read_audio
from mrlib.checks import as_float_matrix, check_choice, check_indices, check_int, check_n_jobs, is_int
from mrlib.cqt import FORMAT_VERSION, FeatureConfig, _as_config, cqt, cqt_torch
from mrlib.paths import atomic_path, read_json_or_empty, write_json_atomic

__all__ = [
    "FeatureConfig", "FeatureSet", "CoarseFeatures", "coarsen_features", "cqt", "cqt_torch",
    "extract", "random_patches", "tracks_patches", "test_patches", "FORMAT_VERSION"
]

_MANIFEST = "manifest.json"


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
    """Size and modification time of a track's audio; None when it cannot be read."""
    with contextlib.suppress(OSError):
        st = path.stat()
        return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    return None


def _cache_valid(file: Path, entry: dict, config: FeatureConfig, verify: str) -> bool:
    """Is the cached file the complete, uncorrupted array the manifest describes?"""
    try:
        # A missing file fails to load; memory-mapped, np.load reads the header only, and a
        # truncated file cannot be mapped.
        array = np.load(file, mmap_mode="r", allow_pickle=False)
        layout_ok = (array.dtype == np.float16 and array.shape == tuple(entry["shape"])
                     and array.ndim == 2 and array.shape[0] == config.n_bins
                     and array.flags.c_contiguous
                     # neither truncated nor padded
                     and file.stat().st_size == array.offset + array.nbytes)
        return layout_ok and (verify != "checksum" or zlib.crc32(file.read_bytes()) == entry["crc32"])
    except Exception:
        return False


def _save_feature(feature: np.ndarray, out_file: str) -> dict:
    """Write one float16 feature atomically; return its manifest fields."""
    feature = np.ascontiguousarray(feature, dtype=np.float16)
    buffer = io.BytesIO()
    np.save(buffer, feature, allow_pickle=False)
    data = buffer.getvalue()
    # Write-then-rename is atomic: a killed worker leaves a stray temporary, never half a
    # feature. (No fsync: after an OS crash the size check on reuse catches a torn file.)
    with atomic_path(out_file) as tmp:
        tmp.write_bytes(data)
    return {"shape": list(feature.shape), "crc32": zlib.crc32(data)}


#: Most samples given to one multichannel librosa.cqt call (~12 min at 22,050 Hz; ~50 MB).
_MAX_BATCH_SAMPLES = 2 ** 24


def _compute_batch(items: list[tuple[int, str, str]], config: FeatureConfig) -> list[dict]:
    """Worker: audio -> log-CQT -> float16 .npy for a few tracks. Never raises on bad audio.

    Tracks of equal length (after loading) share one multichannel CQT call; if such a call fails,
    its tracks are retried one by one so only the culprit is skipped.
    """
    records: list[dict] = []
    by_length: dict[int, list] = {}
    for index, source, out_file in items:
        result = read_audio(source, config.sr, config.min_duration_s, config.max_duration_s,
                            pad_fraction=config.pad_fraction)
        record: dict[str, Any] = {"index": index, "fixes": list(result.fixes),
                                  "problem": result.problem}
        records.append(record)
        if result.problem is None:
            by_length.setdefault(len(result.y), []).append((record, result.y, out_file))
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


def _write_manifest(cache_dir: Path, config: FeatureConfig, tracks: dict) -> None:
    import librosa

    manifest = {"format": FORMAT_VERSION, "key": config.key(), "config": config.to_dict(),
                "librosa": librosa.__version__, "dtype": "float16",
                "layout": "one <track_id>.npy per track, float16 (n_bins, T), log-power dB",
                "tracks": tracks}
    write_json_atomic(manifest, cache_dir / _MANIFEST, sort_keys=True)


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
    return root, ids, [root / str(p) for p in tracks["path"]]   # an absolute path replaces root


def extract(
    catalog,
    config: FeatureConfig | None = None,
    n_jobs: int = 2,
    progress: bool = True,
    *,
    verify: str = "size",
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
    verify : {"size", "checksum"}, default "size"
        How a cached file is checked: header + exact byte size (cheap), or also the CRC-32 of the
        whole file (reads everything).
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
    config = _as_config(config)
    check_choice("verify", verify, ("size", "checksum"))
    check_n_jobs(n_jobs)
    root, ids, paths = _catalog_table(catalog)
    cache = Path(cache_dir) if cache_dir is not None else root / "features" / config.key()
    cache.mkdir(parents=True, exist_ok=True)
    for stale in cache.glob("*.part"):   # atomic_path's temporaries, left by killed workers
        with contextlib.suppress(OSError):    # gone already, or not ours to delete
            if time.time() - stale.stat().st_mtime > 3600:   # a concurrent run's are younger
                stale.unlink()
    # the manifest's entries; start afresh when it is missing, damaged, or another config's
    # (the files are re-validated either way)
    manifest = read_json_or_empty(cache / _MANIFEST)
    ours = (manifest.get("format") == FORMAT_VERSION
            and manifest.get("config") == config.to_dict()
            and isinstance(manifest.get("tracks"), dict))
    entries = manifest["tracks"] if ours else {}

    files = [cache / _safe_name(t) for t in ids]
    report = SkipReport(n_total=len(ids))
    todo = _tracks_to_compute(ids, paths, files, entries, config, verify, report)
    if todo:    # a cache read whole is not written to: it may be a read-only copy
        _compute_and_record(todo, ids, paths, files, entries, config, n_jobs, report, progress, cache)

    # Skips in catalog order, whatever order the workers finished in.
    order = {t: k for k, t in enumerate(ids)}
    report.skipped.sort(key=lambda e: order[e[0]])
    report.fixed.sort(key=lambda e: order[e[0]])
    shapes = [tuple(entries[t]["shape"]) if t in entries else None for t in ids]
    fs = FeatureSet(config=config, cache_dir=cache, track_ids=ids,
                    files=[f if s is not None else None for f, s in zip(files, shapes)],
                    shapes=shapes, report=report, n_computed=len(todo) - report.count,
                    n_cached=len(ids) - len(todo))
    if verbose and (report.count or report.fixed):
        print(report)
    return fs


def _tracks_to_compute(ids, paths, files, entries: dict, config, verify: str, report) -> list[int]:
    """Indices of the tracks whose cached feature cannot be reused; drops their manifest entries
    and reports the repairs recorded for the reused ones."""
    todo = []
    for i, (track_id, source, file) in enumerate(zip(ids, paths, files)):
        entry = entries.get(track_id)
        signature = _source_signature(source)
        # Reuse when the file is sound and the audio has not changed (or is gone: keep what we have).
        if (entry is not None and (signature is None or entry.get("source") == signature)
                and _cache_valid(file, entry, config, verify)):
            for note in entry.get("fixes", []):
                report.fix(track_id, note)
        else:
            entries.pop(track_id, None)
            todo.append(i)
    return todo


def _compute_and_record(todo, ids, paths, files, entries: dict, config, n_jobs: int, report, progress: bool,
                        cache: Path) -> None:
    """Compute the ``todo`` tracks, record each in ``entries`` and ``report``, and write the
    manifest of ``cache`` every 30 s and at the end (also on interruption)."""
    bar = tqdm(total=len(todo), desc="log-CQT", unit="track", disable=not progress)
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
                _write_manifest(cache, config, entries)
                last_save = time.monotonic()
    finally:
        bar.close()
        _write_manifest(cache, config, entries)


def _run(todo: list[int], paths, files, config, n_jobs: int):
    """Yield lists of worker records as batches finish (in parallel when n_jobs != 1)."""
    items = [(i, str(paths[i]), str(files[i])) for i in todo]
    workers = (os.cpu_count() or 1) if n_jobs == -1 else n_jobs
    # Batches of up to 16 tracks amortise librosa's filter bases; at least ~4 batches per worker
    # keep the workers evenly loaded and the progress bar moving.
    size = int(np.clip(len(items) // (4 * workers), 1, 16))
    batches = [items[k:k + size] for k in range(0, len(items), size)]
    if n_jobs == 1 or len(batches) == 1:
        return (_compute_batch(batch, config) for batch in batches)
    # Unordered: a slow batch does not hold up the others; records carry their index.
    return Parallel(n_jobs=n_jobs, return_as="generator_unordered", batch_size=1)(
        delayed(_compute_batch)(batch, config) for batch in batches)


@dataclass(eq=False, repr=False)
class FeatureSet:
    """Cached log-CQT features of a catalog, looked up by catalog index.

    Attributes
    ----------
    config : FeatureConfig
    cache_dir : pathlib.Path
    track_ids : list of str, length N
    files, shapes : list, length N
        Each track's cached ``.npy`` and its shape ``(n_bins, T)``; None without features.
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

    config: FeatureConfig
    cache_dir: Path
    track_ids: list[str]
    files: list[Path | None]
    shapes: list[tuple | None]
    report: SkipReport
    n_computed: int = 0
    n_cached: int = 0
    _memory: dict[int, np.ndarray] | None = field(default=None, init=False)

    def __len__(self) -> int:
        return len(self.track_ids)

    @property
    def available(self) -> np.ndarray:
        """Bool mask (N,): True where the track has features."""
        return np.array([f is not None for f in self.files], dtype=bool)

    @property
    def indices(self) -> np.ndarray:
        """Catalog indices (int64) of the tracks that have features."""
        return np.flatnonzero(self.available).astype(np.int64)

    @property
    def n_frames(self) -> np.ndarray:
        """Frames T_i per track, int64 (N,); 0 where unavailable."""
        return np.array([s[1] if s is not None else 0 for s in self.shapes], dtype=np.int64)

    def __getitem__(self, i) -> np.ndarray:
        if not is_int(i):
            raise TypeError(f"FeatureSet is indexed by an integer catalog index, got {i!r}")
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"catalog index {i} out of range for {n} tracks")
        i = int(i) % n
        if self.files[i] is None:
            reason = self.report.reasons.get(self.track_ids[i], "no features")
            raise KeyError(f"track {i} ({self.track_ids[i]!r}) has no features: {reason}")
        if self._memory is not None:
            return self._memory[i]
        try:
            array = np.load(self.files[i], mmap_mode="r", allow_pickle=False)
        except Exception as error:
            raise OSError(f"cached feature {self.files[i]} is unreadable ({error}); run "
                          "mrlib.features.extract again to rebuild it") from error
        if array.shape != self.shapes[i]:
            raise OSError(f"cached feature {self.files[i]} has shape {array.shape}, expected "
                          f"{self.shapes[i]}; run mrlib.features.extract again to rebuild it")
        return array

    def preload(self, progress: bool = False) -> "FeatureSet":
        """Read every available feature into memory (returns self).

        Notebook: 01_cqt.ipynb
        """
        self._memory = {int(i): np.array(self[int(i)])     # a copy in memory of the mapped file
                        for i in tqdm(self.indices, desc="load features", disable=not progress)}
        return self

    def __getstate__(self):
        return {**self.__dict__, "_memory": None}   # workers re-open files instead of copying arrays

    def __repr__(self) -> str:
        return (f"FeatureSet({int(self.available.sum())}/{len(self)} tracks, key={self.config.key()!r}, "
                f"skipped={self.report.count})")


# ---------------------------------------------------------------------------------------------
# A coarser time-frequency grid for CPU lessons
# ---------------------------------------------------------------------------------------------
class CoarseFeatures:
    """Log-CQT features pooled onto a coarser grid, indexed by catalog index like a FeatureSet.

    Attributes
    ----------
    freq_pool, time_pool : int
        Bins and frames merged into one.
    available : numpy.ndarray of bool, shape (N,)
        Tracks that have features.

    Notes
    -----
    ``features[i]`` is a float32 array ``(n_bins // freq_pool, T_i // time_pool)`` in dB;
    indexing a track without features raises ``KeyError``. Plain arrays inside, so it pickles
    cheaply to worker processes.

    Notebook: 08_triplet_matchnet.ipynb
    """

    def __init__(self, arrays: Sequence[np.ndarray | None], freq_pool: int, time_pool: int):
        self._arrays = list(arrays)
        self.freq_pool, self.time_pool = int(freq_pool), int(time_pool)
        self.available = np.array([a is not None for a in self._arrays], dtype=bool)

    def __len__(self) -> int:
        return len(self._arrays)

    def __getitem__(self, i) -> np.ndarray:
        if not is_int(i):
            raise TypeError(f"CoarseFeatures is indexed by an integer catalog index, got {i!r}")
        a = self._arrays[int(i)]
        if a is None:
            raise KeyError(f"track {int(i)} has no features (skipped when extracting)")
        return a

    def __repr__(self) -> str:
        return (f"CoarseFeatures({int(self.available.sum())}/{len(self)} tracks, "
                f"pool=({self.freq_pool}, {self.time_pool}))")


def coarsen_features(features, freq_pool: int = 4, time_pool: int = 8) -> CoarseFeatures:
    r"""Pool log-CQT features over blocks of ``freq_pool`` bins x ``time_pool`` frames.

    Each block's *power* is averaged and taken back to dB,
    :math:`10 \log_{10}\big(\operatorname{mean}\, 10^{X/10}\big)`, so a merged bin holds the
    energy of the bins it replaces (a mean of dB values would be a geometric mean of powers,
    biased towards the quiet bins). Trailing frames that do not fill a block are dropped.

    Why: the tower's cost grows with the patch area. With ``(4, 8)`` the default grid (96 bins,
    12 per octave, 43.07 frames/s) becomes 24 bins (3 per octave) at 5.38 frames/s, so a
    3-second patch costs 32 times less — what lets ten-fold cross-validation of Triplet
    MatchNet run in minutes on a laptop CPU. Timbre (spectral envelope), loudness and slow
    rhythm survive; pitch detail does not. ``(1, 1)`` keeps the grid (the paper's setting).

    Parameters
    ----------
    features : mrlib.features.FeatureSet or sequence of arrays
        ``features[i]`` -> (n_bins, T_i) log-power in dB, finite (a NaN or inf is refused with a
        ``ValueError`` naming the track); tracks without features (``available`` False) stay
        without.
    freq_pool : int, default 4
        Must divide ``n_bins``.
    time_pool : int, default 8
        At most the shortest track's frame count.

    Returns
    -------
    CoarseFeatures
        ``[i]`` -> float32 (n_bins // freq_pool, T_i // time_pool).

    Notebook: 08_triplet_matchnet.ipynb
    """
    check_features(features)
    freq_pool, time_pool = check_int("freq_pool", freq_pool), check_int("time_pool", time_pool)
    out: list[np.ndarray | None] = [None] * len(features)   # None: a track without features
    for i in np.flatnonzero(_available(features)).tolist():
        x = as_float_matrix(f"feature {i}", features[i]).astype(np.float64)   # 2-D, finite
        F, T = x.shape
        if F % freq_pool:
            raise ValueError(f"freq_pool={freq_pool} must divide the {F} bins")
        if T < time_pool:
            raise ValueError(f"track {i} has {T} frames, fewer than time_pool={time_pool}")
        T2 = T // time_pool
        power = 10.0 ** (x[:, :T2 * time_pool] / 10.0)
        power = power.reshape(F // freq_pool, freq_pool, T2, time_pool).mean(axis=(1, 3))
        out[i] = (10.0 * np.log10(power)).astype(np.float32)
    return CoarseFeatures(out, freq_pool, time_pool)


def _available(features) -> np.ndarray:
    """Bool mask (N,) of the tracks with features: ``features.available``, or all of a sequence."""
    available = getattr(features, "available", None)
    return np.ones(len(features), bool) if available is None else np.asarray(available, bool)


def check_features(features) -> None:
    """Raise unless ``features`` is a non-empty sequence indexable by catalog index."""
    if not hasattr(features, "__getitem__") or not hasattr(features, "__len__"):
        raise TypeError("features must be indexable by catalog index (a mrlib.features.FeatureSet "
                        f"or a sequence of (n_bins, T) arrays), got {type(features).__name__}")
    if len(features) == 0:
        raise ValueError("features is empty")


# ---------------------------------------------------------------------------------------------
# Patches
# ---------------------------------------------------------------------------------------------

def random_patches(feature, patch_len: int, n: int, rng) -> np.ndarray:
    """``n`` patches of ``patch_len`` frames at uniformly random offsets in one track.

    A track shorter than ``patch_len`` is looped (it stays music, with a seam), from a random
    phase of the loop.

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

    Returns
    -------
    numpy.ndarray, shape (n, n_bins, patch_len), same dtype as ``feature``
        A new array (safe to modify).

    Notebook: 01_cqt.ipynb
    """
    if not (isinstance(rng, np.random.Generator) or is_int(rng)):
        raise TypeError("rng must be a numpy.random.Generator or an int seed, got "
                        f"{type(rng).__name__}")
    rng = np.random.default_rng(rng)     # a Generator comes back as it is
    patch_len, n = check_int("patch_len", patch_len, 1), check_int("n", n, 0)
    feature = np.asarray(feature)     # a memory-mapped feature stays mapped
    if feature.ndim != 2 or feature.shape[1] == 0:
        raise ValueError(f"feature must be (n_bins, T) with T > 0, got shape {feature.shape}")
    if feature.dtype.kind not in "fiu":
        raise TypeError(f"feature must be a numeric (log-CQT) array, got dtype {feature.dtype}")
    T = feature.shape[1]
    if T >= patch_len:
        starts = rng.integers(0, T - patch_len + 1, size=n)
        columns = starts[:, None] + np.arange(patch_len)
    else:
        starts = rng.integers(0, T, size=n)
        columns = (starts[:, None] + np.arange(patch_len)) % T
    # One gather for all patches: (n_bins, n, L) -> (n, n_bins, L). Only the needed columns of a
    # memory-mapped feature are read.
    return np.ascontiguousarray(feature[:, columns].transpose(1, 0, 2))


def tracks_patches(features, tracks, patch_len: int, n: int, rng) -> np.ndarray:
    """``n`` random patches (:func:`random_patches`) of each of several tracks, track by track.

    Parameters
    ----------
    features : FeatureSet or sequence of arrays
        ``features[i]`` is track ``i``'s log-CQT, shape ``(n_bins, T_i)``.
    tracks : sequence of int
        The tracks, in the order their patches are drawn and returned.
    patch_len, n, rng
        As in :func:`random_patches`.

    Returns
    -------
    np.ndarray, shape (len(tracks) * n, n_bins, patch_len)
        The ``n`` patches of ``tracks[0]``, then the ``n`` of ``tracks[1]``, and so on.

    Notebook: 06_training.ipynb
    """
    tracks = np.asarray(tracks)
    if tracks.ndim != 1 or tracks.size == 0:
        raise ValueError(f"tracks must be a non-empty 1-D sequence of track indices, got shape {tracks.shape}")
    tracks = check_indices("tracks", tracks, len(features), "the tracks of features")
    return np.concatenate([random_patches(features[int(t)], patch_len, n, rng) for t in tracks])


def test_patches(feature, patch_len: int, n: int = 8, seed: int = 0) -> np.ndarray:
    """The seeded test-time representation: ``n`` (= 8) patches of one track.

    Equal to ``random_patches(feature, patch_len, n, np.random.default_rng(seed))``; the same
    seed gives the same patches on every run, so evaluations are comparable. Models
    average their embeddings (or tag probabilities) over the patches.

    Parameters
    ----------
    feature : array_like, shape (n_bins, T)
    patch_len : int
    n : int, default 8
    seed : int, default 0

    Returns
    -------
    numpy.ndarray, shape (n, n_bins, patch_len), dtype of ``feature``

    Notebook: 01_cqt.ipynb
    """
    return random_patches(feature, patch_len, n, np.random.default_rng(check_int("seed", seed, 0)))


# pytest would collect a module-level ``test_*`` function imported into a test file; tell it not to.
test_patches.__test__ = False
