"""The synthetic catalog on disk: :mod:`mrlib.synth`'s tracks rendered into the catalog format.

Command line: ``python -m mrlib.catalog build synthetic --n-tracks 1000 --seed 0``.
"""
from __future__ import annotations

import os
import shutil
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
from joblib import Parallel, delayed
from tqdm.auto import tqdm

from mrlib import synth
from mrlib.catalog_format import (FORMAT_VERSION, _SAVED_TABLES, Catalog, _read_json, _versions,
                                  _write_csv, _write_json, artist_disjoint_split, default_root)
from mrlib.checks import check_choice, check_int, rule
from mrlib.paths import FolderLock, atomic_path, move_aside, remove_dead_temporaries
from mrlib.synth_render import _check_sr_duration

__all__ = ["synthetic_root", "build_synthetic"]


def synthetic_root(n_tracks: int = 200, seed: int = 0, duration_s: float = 30.0, sr: int = 22050,
                   audio_format: str = "flac", events: bool = False) -> Path:
    """Folder of a synthetic catalog: ``data_dir()/synthetic_n{N}_s{seed}``, with ``_d{duration}``,
    ``_sr{sr}`` and ``_{format}`` appended when they differ from 30 s, 22,050 Hz and FLAC, and
    ``_ev`` for the events variant (e.g. ``synthetic_n2000_s0_d15_ev``).

    Notebook: 00_overview.ipynb
    """
    return default_root("synthetic", n_tracks, seed, duration_s, sr,
                        "" if audio_format == "flac" else audio_format, "ev" if events else "")


def _render_to_file(attrs, seed: int, sr: int, duration_s: float, path: str, audio_format: str,
                    parent: int | None = None) -> str:
    """Worker: render one track and write it atomically (temporary name, then rename).

    ``parent`` is the pid of the build; a worker whose build died (it was re-parented) writes
    nothing more, so a killed build stops writing at once instead of when its queue drains.
    """
    if parent is not None and os.getppid() != parent:
        return ""

    y = synth.render_catalog_track(attrs, seed, sr=sr, duration_s=duration_s)
    if parent is not None and os.getppid() != parent:
        return ""
    with atomic_path(path) as tmp:
        sf.write(tmp, y, sr, subtype="PCM_16", format=audio_format.upper())
    return path


def build_synthetic(n_tracks: int = 200, seed: int = 0, duration_s: float = 30.0, sr: int = 22050, *,
                    root: str | Path | None = None, n_jobs: int = 2, progress: bool = True,
                    audio_format: str = "flac", overwrite: bool = False, events: bool = False) -> Path:
    """Generate (or finish generating) a synthetic catalog on disk; resumable.

    The tables (tracks, tags, vocabulary, latent attributes) are written first; then every
    track whose audio file is missing is rendered and written as 16-bit FLAC (or WAV) under a
    temporary name and renamed; ``catalog.json`` gets ``complete: true`` last. Running it again
    after an interruption renders only the missing tracks; on a complete catalog it returns at
    once. The folder is locked while it is written (:class:`mrlib.paths.FolderLock`): a second
    build gets an error naming the first; the lock of a killed build is recovered.

    Parameters
    ----------
    n_tracks : int
        Number of tracks N (>= 1).
    seed : int
        Catalog seed (>= 0): same seed, byte-identical tags and audio.
    duration_s : float
        Track length in seconds (0.5 ... 600).
    sr : int
        Sample rate in Hz (8,000 ... 96,000).
    root : path, optional
        Where to write; default :func:`synthetic_root`.
    n_jobs : int
        Worker processes (joblib); 1 renders in this process.
    progress : bool
        Show a tqdm progress bar.
    audio_format : {'flac', 'wav'}
        16-bit FLAC (about 15% smaller) or WAV (a little faster to write).
    overwrite : bool
        If the folder holds a catalog built with another configuration, delete it and rebuild
        (otherwise that is an error). A catalog that differs only by the generator version
        (:data:`mrlib.synth.GENERATOR_VERSION`) is a stale cache: it is rebuilt with a warning.
        A folder that holds catalog files but no readable ``catalog.json`` of a synthetic build
        (a hand-made catalog) is never written over: without ``overwrite`` it is an error; with
        it, its files are first moved into ``<root>/replaced-<time>/``.
    events : bool
        The events variant (:func:`mrlib.synth.sample_catalog` ``(events=True)``): the default
        catalog plus temporally sparse tags (``bells``, ``guitar_solo``, ``riser``, ``choir``),
        each heard in one window of its track; in its own folder (``..._ev``) and recorded as
        ``"events": true`` in the config. Without it the config has no ``events`` key.

    Returns
    -------
    pathlib.Path
        The catalog folder.

    Notebook: 00_overview.ipynb
    """
    for nm, v, lo in (("n_tracks", n_tracks, 1), ("seed", seed, 0), ("n_jobs", n_jobs, 1)):
        check_int(nm, v, lo)
    _check_sr_duration(sr, duration_s)
    check_choice("audio_format", audio_format, ("flac", "wav"))
    rule(lambda v: isinstance(v, (bool, np.bool_)), "a bool")("events", events)
    root = Path(root) if root is not None else synthetic_root(n_tracks, seed, duration_s, sr, audio_format,
                                                              events)
    config = {"source": "synthetic", "n_tracks": int(n_tracks), "seed": int(seed),
              "duration_s": float(duration_s), "sr": int(sr), "audio_format": audio_format,
              "generator_version": synth.GENERATOR_VERSION, "format": FORMAT_VERSION}
    if events:      # only then: a default catalog's config (and so its cache) is unchanged
        config["events"] = True
    info = _read_json(root / "catalog.json")
    if info.get("config") == config and info.get("complete"):
        return root                      # built: nothing to write, no lock needed
    with FolderLock(root, "catalog"):
        if _clear_other_build(root, config, overwrite):
            return root
        t_start = time.perf_counter()
        (root / "audio").mkdir(parents=True, exist_ok=True)
        info = {"name": root.name, "config": config, "complete": False, "versions": _versions(),
                "format": FORMAT_VERSION}
        _write_json(info, root / "catalog.json")
        attrs, tracks = _write_tables(root, config)
        _render_missing(root, attrs, tracks, config, n_jobs=n_jobs, progress=progress)
        info.update(complete=True, n_tracks=config["n_tracks"],
                    build_seconds=round(time.perf_counter() - t_start, 2))
        _write_json(info, root / "catalog.json")
        return root


_CATALOG_FILES = (*_SAVED_TABLES, "catalog.json")


def _clear_other_build(root: Path, config: dict, overwrite: bool) -> bool:
    """Make ``root`` ready for this build: move a hand-made catalog aside, delete one of other
    settings (only with ``overwrite``); True when it already holds this build, complete."""
    info = _read_json(root / "catalog.json")   # again: another build may have finished it
    old = info.get("config") or {}
    if old.get("source") != "synthetic":     # an empty folder, or a catalog made by hand
        foreign = [f for f in _CATALOG_FILES if (root / f).exists()]
        foreign += ["audio/"] if (root / "audio").is_dir() and any((root / "audio").iterdir()) else []
        if foreign and not overwrite:
            raise ValueError(
                f"{root} holds a catalog that no synthetic build wrote ({', '.join(foreign)}; "
                f"catalog.json {'missing or unreadable' if not info else 'of another source'}); "
                "nothing was changed. Choose another --root, or pass overwrite=True "
                "(--overwrite) to move those files into a replaced-<time>/ folder and build here")
        if foreign:
            move_aside(root, foreign, "catalog")
        return False
    if old == config:
        return bool(info.get("complete"))
    versions_only = {k: v for k, v in old.items() if k not in ("generator_version", "format")} == \
        {k: v for k, v in config.items() if k not in ("generator_version", "format")}
    if versions_only and not overwrite:
        # a cache written by an older generator: same settings, other bytes -> regenerate
        warnings.warn(f"{root} was built by synth generator version {old.get('generator_version')!r} "
                      f"(now {config['generator_version']!r}); rebuilding it", stacklevel=3)
    elif not overwrite:
        raise ValueError(f"{root} holds a catalog built with {info.get('config')}, not {config}; "
                         f"pass overwrite=True (or --overwrite) to rebuild it, or choose another root")
    for f in _CATALOG_FILES:
        (root / f).unlink(missing_ok=True)
    shutil.rmtree(root / "audio", ignore_errors=True)
    return False


def _write_tables(root: Path, config: dict) -> tuple[list, pd.DataFrame]:
    """Sample the catalog of ``config`` and write its tables; returns the track attributes and
    tracks."""
    n_tracks, seed, events = config["n_tracks"], config["seed"], config.get("events", False)
    attrs, tags, vocab = synth.sample_catalog(n_tracks, seed, events=events)
    artist_ids = [f"art{a.artist:05d}" for a in attrs]
    width = max(5, len(str(n_tracks - 1)))
    ids = [f"syn{i:0{width}d}" for i in range(n_tracks)]
    tracks = pd.DataFrame({"track_id": ids, "artist_id": artist_ids,
                           "split": artist_disjoint_split(artist_ids, seed=seed),
                           "path": [f"audio/{t}.{config['audio_format']}" for t in ids],
                           "duration_s": config["duration_s"]})
    cat = Catalog(root.name, root, tracks, tags, vocab, attributes=synth.attributes_frame(attrs, events=events))
    for name, table in (("tracks", tracks), ("tags", cat.tags_frame()), ("vocabulary", vocab),
                        ("attributes", cat.attributes)):
        _write_csv(table, root / f"{name}.csv")
    return attrs, tracks


def _render_missing(root: Path, attrs: list, tracks: pd.DataFrame, config: dict, *, n_jobs,
                    progress) -> None:
    """Render every track whose audio file is missing (in ``n_jobs`` processes)."""
    remove_dead_temporaries(root / "audio")     # left by workers killed mid-write
    paths = [root / p for p in tracks["path"]]
    settings = [config[k] for k in ("seed", "sr", "duration_s")]
    jobs = [(attrs[i], *settings, str(p), config["audio_format"])
            for i, p in enumerate(paths) if not p.is_file()]
    n_jobs = n_jobs if len(jobs) > 1 else 1         # in this process: no parent to watch
    par = Parallel(n_jobs=n_jobs, return_as="generator_unordered", batch_size=4)
    done = par(delayed(_render_to_file)(*job, os.getpid() if n_jobs > 1 else None) for job in jobs)
    for _ in tqdm(done, total=len(paths), initial=len(paths) - len(jobs), desc=f"synthesising {root.name}",
                  unit="track", disable=not progress):
        pass
    missing = [t for t, p in zip(tracks["track_id"], paths) if not p.is_file()]
    if missing:    # pragma: no cover - a worker failed without raising
        raise RuntimeError(f"{len(missing)} audio files were not written: {missing[:10]}")
