"""Music catalogs: track ids, artists, artist-disjoint splits, audio paths, tags, vocabulary.

Every source writes one on-disk format (:mod:`mrlib.catalog_format`: ``tracks.csv``,
``tags.csv``, ``vocabulary.csv``, ``audio/``, ``catalog.json``). This module is the one entry
point, :func:`load`, for the sources ``"synthetic"`` (:mod:`mrlib.synth_catalog`), ``"music21"``
(:mod:`mrlib.music21_catalog`), ``"mtat"`` (:mod:`mrlib.mtat`),
``"folder"`` (:func:`from_folder`: any folder of audio plus a tags CSV) or a path to a folder
in the format above. Catalog indices 0 ... N-1 (the row order of ``tracks.csv``) are the
currency between modules.

Command line::

    python -m mrlib.catalog build synthetic --n-tracks 1000 --seed 0 [--duration 30] [--jobs 2] [--events]
    python -m mrlib.catalog info synthetic_n1000_s0
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from mrlib import music21_catalog, mtat
from mrlib.catalog_format import (AUDIO_EXTENSIONS, SPLITS, TRACK_COLUMNS, Catalog,  # noqa: F401
                                  _read_json, artist_disjoint_split, duplicate_audio, format_skipped,
                                  read, read_table)
from mrlib.folder_catalog import from_folder
from mrlib.paths import LockedError, data_dir, path_argument
from mrlib.synth_catalog import build_synthetic, synthetic_root  # noqa: F401

__all__ = [
    "SPLITS", "TRACK_COLUMNS", "AUDIO_EXTENSIONS", "Catalog", "artist_disjoint_split", "read",
    "load", "lesson_catalog", "build", "build_synthetic", "synthetic_root", "from_folder",
    "format_skipped", "read_table", "duplicate_audio", "BUILDERS", "LOADERS", "main"
]


# --------------------------------------------------------------------------------------
# One entry point: registries of the sources by name
# --------------------------------------------------------------------------------------
#: Generated catalogs, by name: the builder writes the folder and returns it.
BUILDERS: dict[str, Callable[..., Path]] = {"synthetic": build_synthetic,
                                            "music21": music21_catalog.build}


def _load_music21(**kwargs: Any) -> Catalog:
    if "duration_s" in kwargs:
        # one name for the track length across catalogs, so a notebook's ``duration_s``
        # parameter reaches either (music21 clips its works to ``clip_s``)
        if "clip_s" in kwargs:
            raise TypeError("give duration_s or clip_s for the music21 catalog, not both")
        kwargs["clip_s"] = kwargs.pop("duration_s")
    return read(build("music21", **kwargs))


#: Catalog sources by name: the loader returns the :class:`Catalog`.
LOADERS: dict[str, Callable[..., Catalog]] = {
    "synthetic": lambda **kw: read(build("synthetic", **kw)),
    "music21": _load_music21,
    "mtat": mtat.load_catalog,
    "folder": from_folder,
}


def build(name: str, **kwargs: Any) -> Path:
    """Build a generated catalog and return its folder: ``'synthetic'`` (:func:`build_synthetic`)
    or ``'music21'`` (``mrlib.music21_catalog.build``); keyword arguments go to the builder.

    Notebook: 00_overview.ipynb
    """
    if name not in BUILDERS:
        raise ValueError(f"cannot build {name!r}: buildable catalogs are {tuple(BUILDERS)}")
    return BUILDERS[name](**kwargs)


def load(name_or_path: str | Path = "synthetic", **kwargs: Any) -> Catalog:
    """Load a catalog by source name or folder, building generated ones when needed.

    Parameters
    ----------
    name_or_path : str or path
        * ``"synthetic"`` — :func:`build_synthetic` ``(n_tracks=200, seed=0, duration_s=30.0,
          sr=22050, ...)`` into ``data_dir()/synthetic_n{N}_s{seed}`` if it is missing or
          incomplete, then read it (``events=True``: the variant with temporally sparse tags);
        * ``"music21"`` — ``mrlib.music21_catalog.build(**kwargs)``, then read its folder
          (``duration_s`` is accepted for its ``clip_s``);
        * ``"mtat"`` — ``mrlib.mtat.load_catalog(**kwargs)`` (e.g. ``folder=...``);
        * ``"folder"`` — :func:`from_folder` ``(**kwargs)`` (``audio_dir=..., tags_csv=...``);
        * any other name in :data:`LOADERS` (its loader), or in :data:`BUILDERS` only (its
          folder, built if needed, then read);
        * a folder with ``tracks.csv`` (absolute, relative, or a name under ``data_dir()``),
          read by :func:`read` (keyword ``allow_outside`` only).
    **kwargs
        Passed to the builder or loader.

    Returns
    -------
    Catalog

    Notebook: 00_overview.ipynb
    """
    if isinstance(name_or_path, str) and name_or_path in LOADERS:
        return LOADERS[name_or_path](**kwargs)
    if isinstance(name_or_path, str) and name_or_path in BUILDERS:   # a builder without a loader
        return read(build(name_or_path, **kwargs))
    if not isinstance(name_or_path, (str, Path)):
        raise TypeError(f"name_or_path must be a str or a Path, got {type(name_or_path).__name__}")
    allow_outside = kwargs.pop("allow_outside", None)
    if kwargs:
        raise TypeError(f"unexpected keyword arguments {sorted(kwargs)} for a catalog folder "
                        "(it takes allow_outside only)")
    for cand in (Path(name_or_path).expanduser(), data_dir() / str(name_or_path)):
        if (cand / "tracks.csv").is_file():
            return read(cand, allow_outside=allow_outside)
    sources = tuple(dict.fromkeys([*LOADERS, *BUILDERS]))
    raise FileNotFoundError(f"no catalog {str(name_or_path)!r}: not a source name {sources} and no "
                            f"tracks.csv in {Path(name_or_path)} or {data_dir() / str(name_or_path)}")


def lesson_catalog(name_or_path: str | Path, *, n_tracks: int, seed: int,
                   duration_s: float | None = None, **build_kwargs: Any) -> Catalog:
    """The catalog a notebook's ``catalog`` parameter names, at the notebook's size and seed.

    A generated catalog (a name in :data:`BUILDERS`: ``"synthetic"``, ``"music21"``) is built
    the first time and read afterwards, with ``n_tracks``, ``seed``, the track length
    ``duration_s`` (a music21 clip's length) and ``build_kwargs`` (``n_jobs``, ``progress``,
    a builder's own options). Any other source name or folder is loaded as it is: a catalog
    someone recorded has its own size, so these parameters do not apply to it.

    Parameters
    ----------
    name_or_path : str or path
        What :func:`load` takes.
    n_tracks, seed : int
        Size and seed of a generated catalog.
    duration_s : float, optional
        Seconds per generated track; None keeps the builder's default.
    **build_kwargs
        Passed to the builder of a generated catalog.

    Returns
    -------
    Catalog

    Notebook: 00_overview.ipynb
    """
    if not (isinstance(name_or_path, str) and name_or_path in BUILDERS):
        return load(name_or_path)
    if duration_s is not None:
        build_kwargs["duration_s"] = duration_s
    return load(name_or_path, n_tracks=n_tracks, seed=seed, **build_kwargs)


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m mrlib.catalog", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build a generated catalog (resumable)")
    b.add_argument("name", choices=list(BUILDERS))
    i = sub.add_parser("info", help="describe a catalog")
    i.add_argument("name", help="'synthetic' (with --n-tracks/--seed ...) or a catalog folder / name")
    for p in (b, i):
        p.add_argument("--n-tracks", type=int, default=200)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--duration", type=float, default=30.0, help="seconds per track")
        p.add_argument("--sr", type=int, default=22050)
        p.add_argument("--format", default=None, choices=["flac", "wav"],
                       help="synthetic: audio files (default: flac)")
        p.add_argument("--root", default=None, type=path_argument,
                       help="output folder (default: under the data root)")
        p.add_argument("--events", action="store_true",
                       help="synthetic: the variant with temporally sparse tags (bells, guitar_solo, riser, choir)")
        p.add_argument("--instrumentation", choices=music21_catalog.INSTRUMENTATION, default=None,
                       help="music21: ensembles from one palette for every collection "
                            "(independent, the default) or from each collection's own (by_collection)")
    b.add_argument("--jobs", type=int, default=2)
    b.add_argument("--overwrite", action="store_true", help="rebuild a folder built with other settings")
    b.add_argument("--no-progress", action="store_true")
    return ap


def _cli_build(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    kw = dict(n_tracks=args.n_tracks, seed=args.seed, sr=args.sr, n_jobs=args.jobs,
              progress=not args.no_progress, overwrite=args.overwrite, root=args.root)
    if args.name == "synthetic":
        kw.update(duration_s=args.duration, audio_format=args.format or "flac", events=args.events)
    else:   # music21 clips its works to --duration; --format does not apply
        kw.update(clip_s=args.duration, instrumentation=args.instrumentation or "independent")
    root = build(args.name, **kw)
    dt = time.perf_counter() - t0
    cat = read(root)
    print(f"wrote {root} ({len(cat)} tracks, {cat.tracks['duration_s'].sum() / 60:.1f} min of audio) "
          f"in {dt:.1f} s")
    return 0


def _given(args: argparse.Namespace) -> dict[str, Any]:
    """The options given with a value other than their default, as ``{"--flag": value}`` (a
    float as typed: ``2`` for 2.0)."""
    default = vars(_parser().parse_args([args.cmd, args.name]))
    return {f"--{k.replace('_', '-')}": f"{v:g}" if isinstance(v, float) else v
            for k, v in vars(args).items() if v != default[k]}


def _cli_info(args: argparse.Namespace) -> int:
    if args.name in BUILDERS:   # a generated catalog is described where it was built, never built here
        if args.root:
            root = Path(args.root)
        elif args.name == "synthetic":
            root = synthetic_root(args.n_tracks, args.seed, args.duration, args.sr,
                                  args.format or "flac", args.events)
        else:
            root = music21_catalog.music21_root(args.n_tracks, args.seed, args.duration, args.sr,
                                                args.instrumentation or "independent")
        info = _read_json(root / "catalog.json")
        if not info.get("complete"):
            # size and seed first, then the others as typed
            given = {"--n-tracks": args.n_tracks, "--seed": args.seed, **_given(args)}
            flags = " ".join(flag if value is True else f"{flag} {value}"
                             for flag, value in given.items())
            print(f"{root}: not built{' completely' if info else ''}; run "
                  f"python -m mrlib.catalog build {args.name} {flags}")
            return 1
        cat = read(root)
    else:   # a folder or a loader: the flags that pick a generated catalog would be ignored
        given = list(_given(args))
        if given:
            raise ValueError(f"{' '.join(given)} pick one of the generated catalogs "
                             f"({', '.join(BUILDERS)}); {args.name!r} is read as it is: leave "
                             "them out")
        cat = load(args.name)
    print(cat.summary())
    if cat.info.get("config"):
        print(f"  config: {json.dumps(cat.info['config'], sort_keys=True)}")
    if "build_seconds" in cat.info:
        print(f"  built in {cat.info['build_seconds']} s")
    return 0


def main(argv: Iterable[str] | None = None) -> int:
    """``python -m mrlib.catalog build|info ...``; returns the exit status.

    Notebook: 00_overview.ipynb
    """
    args = _parser().parse_args(list(argv) if argv is not None else None)
    try:
        # one generated catalog's options, refused for the other (a folder's: by _cli_info)
        for flag, value, only in (("--events", args.events, "synthetic"),
                                  ("--format", args.format, "synthetic"),
                                  ("--instrumentation", args.instrumentation, "music21")):
            if value and args.name in {"synthetic", "music21"} - {only}:
                raise ValueError(f"{flag} applies to the {only} catalog only")
        return _cli_build(args) if args.cmd == "build" else _cli_info(args)
    except (FileNotFoundError, ValueError, LockedError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if args.cmd == "build":   # a build keeps every finished track and goes on from there
            print("\ninterrupted: run the same command again to finish the build",
                  file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
