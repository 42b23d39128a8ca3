"""Music catalogs: track ids, artists, artist-disjoint splits, audio paths, tags, vocabulary.

One on-disk format for every source (SPEC §3.1)::

    <root>/tracks.csv       track_id, artist_id, split, path, duration_s   (row i = index i)
    <root>/tags.csv         track_id, <one column per tag>                 (likelihoods in [0, 1])
    <root>/vocabulary.csv   tag, category
    <root>/audio/           the audio files (``path`` is relative to <root> or absolute)
    <root>/catalog.json     build config, seed, package versions, and a ``complete`` flag
    <root>/attributes.csv   (synthetic only) the latent attributes behind the tags

and one entry point, :func:`load`, for the sources ``"synthetic"`` (built here from
:mod:`mrlib.synth`), ``"music21"`` (:mod:`mrlib.repertoire`), ``"mtat"`` (:mod:`mrlib.mtat`),
``"folder"`` (:func:`from_folder`: any folder of audio plus a tags CSV) or a path to a folder
in the format above. Catalog indices 0 ... N-1 (the row order of ``tracks.csv``) are the
currency between modules.

Command line::

    python -m mrlib.catalog build synthetic --n-tracks 1000 --seed 0 [--duration 30] [--jobs 2] [--events]
    python -m mrlib.catalog info synthetic_n1000_s0
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import platform
import shutil
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from mrlib.paths import data_dir, move_aside
from mrlib.paths import read_json_or_empty as _read_json

__all__ = [
    "SPLITS",
    "TRACK_COLUMNS",
    "AUDIO_EXTENSIONS",
    "Catalog",
    "artist_disjoint_split",
    "read",
    "load",
    "build",
    "build_synthetic",
    "synthetic_root",
    "from_folder",
    "format_skipped",
    "read_table",
    "duplicate_audio",
    "main",
]

SPLITS = ("train", "val", "test")
TRACK_COLUMNS = ("track_id", "artist_id", "split", "path", "duration_s")
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")
FORMAT_VERSION = 1
_SKIP_COLUMNS = ["track_id", "row", "reason"]


def _empty_skipped() -> pd.DataFrame:
    return pd.DataFrame({"track_id": pd.Series(dtype=str), "row": pd.Series(dtype="int64"),
                         "reason": pd.Series(dtype=str)})


# --------------------------------------------------------------------------------------
# The Catalog
# --------------------------------------------------------------------------------------
@dataclass
class Catalog:
    """A music catalog in memory.

    Attributes
    ----------
    name : str
        Short name (the folder name for on-disk catalogs).
    root : pathlib.Path
        Folder that relative audio paths are resolved against.
    tracks : pandas.DataFrame
        One row per track, columns ``track_id, artist_id, split, path, duration_s``; ids are
        strings, ``split`` is one of ``train, val, test``, ``duration_s`` in seconds.
    tags : numpy.ndarray
        float32 (N, m) tag likelihoods in [0, 1]; column j is ``vocabulary.tag[j]``.
    vocabulary : pandas.DataFrame
        ``tag, category``, m rows.
    attributes : pandas.DataFrame or None
        Latent attributes per track (synthetic catalogs), row i = track i.
    info : dict
        The content of ``catalog.json`` (build config, versions), if any.
    skipped : pandas.DataFrame
        ``track_id, row, reason`` of input rows left out when the catalog was made (from
        :func:`from_folder`); empty otherwise.

    Notebook: 00_overview.ipynb
    """

    name: str
    root: Path
    tracks: pd.DataFrame
    tags: np.ndarray
    vocabulary: pd.DataFrame
    attributes: pd.DataFrame | None = None
    info: dict = field(default_factory=dict)
    skipped: pd.DataFrame = field(default_factory=_empty_skipped)

    def __post_init__(self):
        self.root = Path(self.root)
        missing = [c for c in TRACK_COLUMNS if c not in self.tracks.columns]
        if missing:
            raise ValueError(f"tracks is missing column(s) {missing}; expected {list(TRACK_COLUMNS)}, "
                             f"got {list(self.tracks.columns)}")
        missing = [c for c in ("tag", "category") if c not in self.vocabulary.columns]
        if missing:
            raise ValueError(f"vocabulary is missing column(s) {missing}; got {list(self.vocabulary.columns)}")
        self.tracks = self.tracks.reset_index(drop=True)
        self.tracks["track_id"] = self.tracks["track_id"].astype(str)
        self.tracks["artist_id"] = self.tracks["artist_id"].astype(str)
        self.tracks["duration_s"] = self.tracks["duration_s"].astype(float)
        self.vocabulary = self.vocabulary.reset_index(drop=True)
        tags = np.asarray(self.tags)
        n, m = len(self.tracks), len(self.vocabulary)
        if tags.ndim != 2 or tags.shape != (n, m):
            raise ValueError(f"tags must have shape (N, m) = ({n}, {m}) (tracks x vocabulary), got {tags.shape}")
        self.tags = tags.astype(np.float32, copy=False)
        if self.tags.size and (not np.isfinite(self.tags).all() or self.tags.min() < 0 or self.tags.max() > 1):
            raise ValueError("tags must be finite likelihoods in [0, 1]")
        bad = sorted(set(self.tracks["split"]) - set(SPLITS))
        if bad:
            raise ValueError(f"split values must be in {SPLITS}, got {bad}")
        dup = self.tracks["track_id"][self.tracks["track_id"].duplicated()]
        if len(dup):
            raise ValueError(f"duplicate track_id(s): {list(dup[:10])}")
        if self.attributes is not None and len(self.attributes) != n:
            raise ValueError(f"attributes has {len(self.attributes)} rows for {n} tracks")

    def __len__(self) -> int:
        return len(self.tracks)

    def __repr__(self) -> str:
        counts = self.tracks["split"].value_counts()
        parts = ", ".join(f"{s}={int(counts.get(s, 0))}" for s in SPLITS)
        return (f"Catalog(name={self.name!r}, N={len(self)}, m={len(self.vocabulary)}, "
                f"artists={self.tracks['artist_id'].nunique()}, {parts}, root={str(self.root)!r})")

    @property
    def tag_names(self) -> list[str]:
        """Tag names in column order of :attr:`tags`.

        Notebook: 02_similarity.ipynb
        """
        return list(self.vocabulary["tag"])

    @property
    def categories(self) -> list[str]:
        """Tag categories, in order of first appearance in the vocabulary.

        Notebook: 02_similarity.ipynb
        """
        return list(dict.fromkeys(self.vocabulary["category"]))

    @property
    def track_ids(self) -> np.ndarray:
        """Track ids (str) in catalog order.

        Notebook: 00_overview.ipynb
        """
        return self.tracks["track_id"].to_numpy(dtype=str)

    def category_indices(self, category: str) -> np.ndarray:
        """Column indices (int64) of the tags of one category.

        Notebook: 02_similarity.ipynb
        """
        if category not in self.categories:
            raise ValueError(f"unknown category {category!r}; this catalog has {self.categories}")
        return np.flatnonzero(self.vocabulary["category"].to_numpy() == category).astype(np.int64)

    def split_indices(self, split: str) -> np.ndarray:
        """Catalog indices (int64, increasing) of the tracks in one split.

        Parameters
        ----------
        split : {'train', 'val', 'test'}

        Notebook: 00_overview.ipynb
        """
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        return np.flatnonzero(self.tracks["split"].to_numpy() == split).astype(np.int64)

    def audio_path(self, i: int) -> Path:
        """Absolute path of track ``i``'s audio file.

        Notebook: 00_overview.ipynb
        """
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise TypeError(f"track index must be an int, got {type(i).__name__}")
        if not -len(self) <= i < len(self):
            raise IndexError(f"track index {i} out of range for a catalog of {len(self)} tracks")
        p = Path(self.tracks["path"].iat[int(i)])
        return (p if p.is_absolute() else self.root / p).resolve()

    def tags_frame(self) -> pd.DataFrame:
        """``track_id`` + one column per tag (the layout of ``tags.csv``).

        Notebook: 02_similarity.ipynb
        """
        df = pd.DataFrame(self.tags, columns=self.tag_names)
        df.insert(0, "track_id", self.tracks["track_id"].to_numpy())
        return df

    def save(self, root: str | Path | None = None) -> Path:
        """Write the catalog in the on-disk format (each file atomically) and return the folder.

        Audio files are not copied: relative paths are rewritten against the new root when the
        files lie below it, and stored absolute otherwise (``catalog.json`` then says
        ``allow_outside_paths: true``, so that :func:`read` accepts them).

        Notebook: 00_overview.ipynb
        """
        root = Path(root) if root is not None else self.root
        root.mkdir(parents=True, exist_ok=True)
        tracks = self.tracks.copy()
        paths = []
        for i in range(len(self)):
            p = self.audio_path(i)
            try:
                paths.append(p.relative_to(root.resolve()).as_posix())
            except ValueError:
                paths.append(str(p))
        tracks["path"] = paths
        outside = any(Path(p).is_absolute() for p in paths)
        _write_csv(tracks[list(TRACK_COLUMNS)], root / "tracks.csv")
        _write_csv(self.tags_frame(), root / "tags.csv")
        _write_csv(self.vocabulary[["tag", "category"]], root / "vocabulary.csv")
        if self.attributes is not None:
            _write_csv(self.attributes, root / "attributes.csv")
        info = dict(self.info)
        info.setdefault("name", self.name)
        info.setdefault("format", FORMAT_VERSION)
        info["n_tracks"] = len(self)
        info.setdefault("complete", True)
        if outside:  # this catalog's audio lies elsewhere by construction: read() accepts it
            info["allow_outside_paths"] = True
        _write_json(info, root / "catalog.json")
        return root

    def summary(self) -> str:
        """A few lines that describe the catalog (sizes, splits, tags per category).

        Notebook: 00_overview.ipynb
        """
        lines = [repr(self)]
        tpt = (self.tags > 0).sum(1)
        lines.append(f"  tags: m={len(self.vocabulary)}, per track {tpt.mean():.1f} "
                     f"(min {tpt.min() if len(self) else 0}, max {tpt.max() if len(self) else 0}), "
                     f"density {float((self.tags > 0).mean()):.3f}")
        for c in self.categories:
            idx = self.category_indices(c)
            lines.append(f"  {c:<10s} {len(idx):3d} tags: {', '.join(self.vocabulary['tag'].iloc[idx])}")
        lines.append(f"  audio: {self.tracks['duration_s'].sum() / 60:.1f} min in total")
        if len(self.skipped):
            lines.append("  " + format_skipped(self.skipped).replace("\n", "\n  "))
        return "\n".join(lines)


# --------------------------------------------------------------------------------------
# Small I/O helpers: every file is written to a temporary name and renamed into place, so
# an interrupted build never leaves a half-written file under its final name.
# --------------------------------------------------------------------------------------
def _part(path: Path) -> Path:
    """Temporary name next to ``path``, unique per process: two processes building the same
    catalog at once (they write identical bytes) never rename each other's half-written file."""
    return path.with_name(f"{path.name}.{os.getpid()}.part")


def _write_csv(df: pd.DataFrame, path: Path) -> None:
    tmp = _part(path)
    df.to_csv(tmp, index=False, float_format="%.6g", lineterminator="\n")
    os.replace(tmp, path)


def _write_json(obj: dict, path: Path) -> None:
    tmp = _part(path)
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)


def read_table(path: str | Path, sep: str | None = None) -> pd.DataFrame:
    """Read a CSV/TSV table as text, with errors that name the file, the line and the column.

    Every cell stays a string (ids such as ``"NA"`` or ``"007"`` survive); blank lines are
    skipped. ``df.attrs["lines"]`` holds each row's line number in the file.

    Parameters
    ----------
    path : path
        The file: UTF-8 (a BOM is fine), one header line of distinct, non-empty column names.
    sep : str, optional
        The separator; default: tab if the header has one, else ``;`` if it has ``;`` and no
        ``,``, else ``,``.

    Returns
    -------
    pandas.DataFrame of str

    Raises
    ------
    ValueError
        An empty file; UTF-16 or another non-UTF-8 encoding (with the line of the first bad
        byte); a row with more or fewer fields than the header (its line); duplicate or
        empty column names; a quoting error (its line).

    Notebook: 00_overview.ipynb
    """
    path = Path(path)
    raw = path.read_bytes()
    if not raw.strip():
        raise ValueError(f"{path} is empty: expected a header line of column names, then one "
                         "row per track")
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in raw[:200]:
        raise ValueError(f"{path} is UTF-16 encoded (or binary); save it as UTF-8 text "
                         "(in a spreadsheet: 'CSV UTF-8')")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[:err.start].count(b"\n") + 1
        raise ValueError(f"{path} is not UTF-8: byte 0x{raw[err.start]:02x} on line {line} "
                         "(a latin-1 or Windows-1252 file?); save it as UTF-8") from None
    if sep is None:
        header = text.split("\n", 1)[0]
        sep = "\t" if "\t" in header else (";" if ";" in header and "," not in header else ",")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep, quotechar='"')
    rows, lines, columns = [], [], None
    try:
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if columns is None:
                columns = [c.strip() for c in row]
                continue
            if len(row) != len(columns):
                raise ValueError(f"{path} line {reader.line_num}: {len(row)} field(s), but the "
                                 f"header has {len(columns)} ({', '.join(columns[:6])}"
                                 f"{', ...' if len(columns) > 6 else ''}); check separators "
                                 "and quotes on that line")
            rows.append(row)
            lines.append(reader.line_num)
    except csv.Error as err:
        raise ValueError(f"{path} line {reader.line_num}: {err}") from None
    unnamed = [i + 1 for i, c in enumerate(columns) if not c]
    if unnamed:
        raise ValueError(f"{path}: column(s) {unnamed} of the header have no name")
    seen: dict[str, int] = {}
    dups = []
    for i, c in enumerate(columns):
        if c in seen:
            dups.append(f"{c!r} (columns {seen[c] + 1} and {i + 1})")
        seen.setdefault(c, i)
    if dups:
        raise ValueError(f"{path}: duplicate column name(s) {', '.join(dups)}; every column "
                         "(every tag) needs its own name")
    df = pd.DataFrame(rows, columns=columns, dtype=str)
    df.attrs["lines"] = lines
    return df


def _numeric(df: pd.DataFrame, columns: Sequence[str], path: Path, what: str) -> np.ndarray:
    """float64 values of text columns; an error names the first bad cell's line and column."""
    values = df[list(columns)].apply(lambda col: pd.to_numeric(col.str.strip(), errors="coerce"))
    arr = values.to_numpy(dtype=np.float64)
    bad = ~np.isfinite(arr)
    if bad.any():
        r, c = (int(x) for x in np.argwhere(bad)[0])
        lines = df.attrs.get("lines") or list(range(2, len(df) + 2))
        raise ValueError(f"{path} line {lines[r]}, column {columns[c]!r}: "
                         f"{df[columns[c]].iat[r]!r} is not a number (expected {what}); "
                         f"{int(bad.sum())} such cell(s) in all")
    return arr


def duplicate_audio(paths: Sequence[str | Path]) -> dict[int, int]:
    """Files with the same content: ``{index: index of the first file with that content}``.

    Files are grouped by size first; only files that share a size are hashed (SHA-256), so a
    collection without duplicates costs one ``stat`` per file. Unreadable files are left out.

    Notebook: 00_overview.ipynb
    """
    by_size: dict[int, list[int]] = {}
    for i, p in enumerate(paths):
        try:
            by_size.setdefault(os.stat(p).st_size, []).append(i)
        except OSError:
            continue
    out: dict[int, int] = {}
    for group in by_size.values():
        if len(group) < 2:
            continue
        first_of: dict[str, int] = {}
        for i in group:
            h = hashlib.sha256()
            try:
                with open(paths[i], "rb") as fh:
                    for block in iter(lambda: fh.read(1 << 20), b""):
                        h.update(block)
            except OSError:
                continue
            d = h.hexdigest()
            if d in first_of:
                out[i] = first_of[d]
            else:
                first_of[d] = i
    return out


def _group_duplicates(artists: np.ndarray, pairs: list[tuple[int, int]]) -> np.ndarray:
    """Split groups: artists, merged wherever two tracks share a recording (union-find), so
    that :func:`artist_disjoint_split` keeps every copy of a recording in one split."""
    parent: dict[str, str] = {}

    def find(a: str) -> str:
        while parent.get(a, a) != a:
            a = parent[a]
        return a

    for a, b in pairs:
        ra, rb = find(str(artists[a])), find(str(artists[b]))
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return np.asarray([find(str(a)) for a in artists])


def _inside(path: Path, root: Path) -> bool:
    """Whether ``path`` (symlinks resolved) lies inside ``root``."""
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


def _versions() -> dict[str, str]:
    from importlib import metadata

    import soundfile

    out = {"python": platform.python_version(), "libsndfile": soundfile.__libsndfile_version__}
    for pkg in ("mrlib", "numpy", "scipy", "pandas", "soundfile"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:  # pragma: no cover - mrlib not installed
            pass
    return out


# --------------------------------------------------------------------------------------
# Splits
# --------------------------------------------------------------------------------------
def artist_disjoint_split(artist_ids: Sequence, fractions: Sequence[float] = (0.6, 0.2, 0.2),
                          seed: int = 0) -> np.ndarray:
    """Assign train/val/test so that no artist appears in two splits, close to ``fractions``.

    Artists are visited from the largest to the smallest (ties in a seeded random order) and
    each goes, whole, to the split that is furthest below its target number of tracks:
    greedy bin filling, which lands within one artist's size of the target. Deterministic
    given (artist_ids, fractions, seed), whatever the order of the rows.

    Parameters
    ----------
    artist_ids : sequence (N,)
        Artist of each track (any hashable values; compared as strings).
    fractions : 3 floats
        Target shares of (train, val, test); non-negative, sum to 1.
    seed : int
        Seed of the tie-breaking order.

    Returns
    -------
    numpy.ndarray
        (N,) str array of ``'train'``, ``'val'``, ``'test'``.

    Notebook: 00_overview.ipynb
    """
    fr = np.asarray(fractions, dtype=float)
    if fr.shape != (3,) or (fr < 0).any() or not np.isclose(fr.sum(), 1.0):
        raise ValueError(f"fractions must be 3 non-negative numbers summing to 1, got {tuple(fractions)}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    ids = np.asarray([str(a) for a in artist_ids])
    out = np.empty(ids.size, dtype="<U5")
    if ids.size == 0:
        return out
    uniq, inverse, counts = np.unique(ids, return_inverse=True, return_counts=True)
    rng = np.random.default_rng(seed)
    # largest artists first (hardest to place), ties broken by a seeded permutation
    order = np.lexsort((rng.permutation(uniq.size), -counts))
    target = fr * ids.size
    filled = np.zeros(3)
    split_of = np.empty(uniq.size, dtype=int)
    for a in order:
        deficit = target - filled
        deficit[fr == 0] = -np.inf
        s = int(np.argmax(deficit))            # ties -> train before val before test
        split_of[a] = s
        filled[s] += counts[a]
    out[:] = np.asarray(SPLITS)[split_of[inverse]]
    return out


# --------------------------------------------------------------------------------------
# Reading a catalog folder
# --------------------------------------------------------------------------------------
def read(root: str | Path, name: str | None = None, allow_outside: bool | None = None) -> Catalog:
    """Read a catalog folder (``tracks.csv``, ``tags.csv``, ``vocabulary.csv``, ...).

    Parameters
    ----------
    root : path
        The catalog folder.
    name : str, optional
        Name to give it (default: ``catalog.json``'s name, else the folder name).
    allow_outside : bool, optional
        Accept audio paths that lead outside the folder (absolute, ``..``, or a symlink out).
        Default: ``catalog.json``'s ``allow_outside_paths`` (set by :meth:`Catalog.save` when
        it stores absolute paths), else False: such a path is an error, so that a catalog
        never reads files its folder does not hold without being told to.

    Returns
    -------
    Catalog

    Raises
    ------
    FileNotFoundError
        A required file is missing.
    ValueError
        The files disagree (track ids, tag columns vs vocabulary), the build is incomplete, a
        file is not readable as UTF-8 CSV (file, line and column named), a tag cell is not a
        number, a path leads outside the folder, or two track ids share one audio file.

    Notebook: 00_overview.ipynb
    """
    root = Path(root).expanduser()
    for f in ("tracks.csv", "tags.csv", "vocabulary.csv"):
        if not (root / f).is_file():
            raise FileNotFoundError(f"{root} is not a catalog folder: {f} is missing "
                                    f"(expected tracks.csv, tags.csv, vocabulary.csv)")
    info = _read_json(root / "catalog.json")
    if info and not info.get("complete", True):
        raise ValueError(f"{root} holds an incomplete build (catalog.json: complete=false); "
                         f"build it again to resume, e.g. mrlib.catalog.build('synthetic', ...)")
    # every cell read as text: ids such as "NA" or "null" stay strings
    tracks = read_table(root / "tracks.csv")
    if "duration_s" in tracks.columns:   # unknown durations are written as empty cells
        tracks["duration_s"] = pd.to_numeric(tracks["duration_s"], errors="coerce")
    vocab = read_table(root / "vocabulary.csv")
    tags_df = read_table(root / "tags.csv")
    if "track_id" not in tags_df.columns:
        raise ValueError(f"{root / 'tags.csv'} has no track_id column")
    if "tag" in vocab.columns and vocab["tag"].duplicated().any():
        dup = vocab["tag"][vocab["tag"].duplicated()].tolist()
        raise ValueError(f"{root / 'vocabulary.csv'}: duplicate tag name(s) {dup[:10]}")
    tag_cols = list(vocab["tag"]) if "tag" in vocab.columns else []
    missing = [t for t in tag_cols if t not in tags_df.columns]
    extra = [c for c in tags_df.columns if c != "track_id" and c not in set(tag_cols)]
    if missing or extra:
        raise ValueError(f"tags.csv and vocabulary.csv disagree: tags missing from tags.csv {missing[:10]}, "
                         f"columns not in the vocabulary {extra[:10]}")
    tag_values = pd.DataFrame(_numeric(tags_df, tag_cols, root / "tags.csv", "a likelihood in [0, 1]"),
                              columns=tag_cols) if tag_cols else pd.DataFrame(index=tags_df.index)
    tag_values.insert(0, "track_id", tags_df["track_id"].to_numpy())
    tags_df = tag_values
    if "track_id" in tracks.columns and list(tags_df["track_id"]) != list(tracks["track_id"]):
        if set(tags_df["track_id"]) != set(tracks["track_id"]) or tags_df["track_id"].duplicated().any():
            raise ValueError("tags.csv and tracks.csv list different track ids")
        tags_df = tags_df.set_index("track_id").loc[tracks["track_id"]].reset_index()
    if allow_outside is None:
        allow_outside = bool(info.get("allow_outside_paths", False))
    if "path" in tracks.columns:
        _check_track_paths(root, tracks, allow_outside)
    attributes = None
    if (root / "attributes.csv").is_file():
        attributes = pd.read_csv(root / "attributes.csv", keep_default_na=False)
    return Catalog(name=name or info.get("name") or root.name, root=root.resolve(), tracks=tracks,
                   tags=tags_df[tag_cols].to_numpy(dtype=np.float32), vocabulary=vocab[["tag", "category"]],
                   attributes=attributes, info=info)


def _check_track_paths(root: Path, tracks: pd.DataFrame, allow_outside: bool) -> None:
    """Paths of ``tracks.csv`` stay inside the folder (unless allowed) and are not shared."""
    real_root = root.resolve()
    lines = tracks.attrs.get("lines") or list(range(2, len(tracks) + 2))
    owner: dict[Path, int] = {}
    for i, rel in enumerate(tracks["path"]):
        if not rel:
            continue
        p = Path(rel)
        full = (p if p.is_absolute() else root / p).resolve()
        if not allow_outside:
            try:
                full.relative_to(real_root)
            except ValueError:
                raise ValueError(
                    f"{root / 'tracks.csv'} line {lines[i]}, column 'path': {rel!r} leads outside "
                    f"the catalog folder ({'absolute path' if p.is_absolute() else 'via .. or a symlink'}"
                    f" to {full}); keep audio under {root}, or pass allow_outside=True (or set "
                    '"allow_outside_paths": true in catalog.json) to allow it') from None
        if full in owner:
            j = owner[full]
            raise ValueError(
                f"{root / 'tracks.csv'} lines {lines[j]} and {lines[i]}: track ids "
                f"{tracks['track_id'].iat[j]!r} and {tracks['track_id'].iat[i]!r} share the audio "
                f"file {rel!r}; one recording must not count as two tracks (it could sit in two "
                "splits)")
        owner[full] = i


# --------------------------------------------------------------------------------------
# The synthetic catalog
# --------------------------------------------------------------------------------------
def synthetic_root(n_tracks: int = 200, seed: int = 0, duration_s: float = 30.0, sr: int = 22050,
                   audio_format: str = "flac", events: bool = False) -> Path:
    """Folder of a synthetic catalog: ``data_dir()/synthetic_n{N}_s{seed}``, with ``_d{duration}``,
    ``_sr{sr}`` and ``_{format}`` appended when they differ from 30 s, 22,050 Hz and FLAC, and
    ``_ev`` for the events variant (e.g. ``synthetic_n2000_s0_d15_ev``).

    Notebook: 00_overview.ipynb
    """
    name = f"synthetic_n{n_tracks}_s{seed}"
    if float(duration_s) != 30.0:
        name += f"_d{float(duration_s):g}"
    if int(sr) != 22050:
        name += f"_sr{int(sr)}"
    if audio_format != "flac":
        name += f"_{audio_format}"
    if events:
        name += "_ev"
    return data_dir() / name


def _render_to_file(attrs, seed: int, sr: int, duration_s: float, path: str, audio_format: str,
                    parent: int | None = None) -> str:
    """Worker: render one track and write it atomically (temporary name, then rename).

    ``parent`` is the pid of the build; a worker whose build died (it was re-parented) writes
    nothing more, so a killed build stops writing at once instead of when its queue drains.
    """
    import soundfile as sf

    from mrlib import synth

    if parent is not None and os.getppid() != parent:
        return ""

    y = synth.render_catalog_track(attrs, seed, sr=sr, duration_s=duration_s)
    if parent is not None and os.getppid() != parent:
        return ""
    final = Path(path)
    tmp = _part(final)
    sf.write(tmp, y, sr, subtype="PCM_16", format=audio_format.upper())
    os.replace(tmp, final)
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
        Sample rate in Hz.
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
    from mrlib import synth

    for nm, v, lo in (("n_tracks", n_tracks, 1), ("seed", seed, 0), ("sr", sr, 8000), ("n_jobs", n_jobs, 1)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
            raise ValueError(f"{nm} must be an int >= {lo}, got {v!r}")
    if not isinstance(duration_s, (int, float)) or not 0.5 <= float(duration_s) <= 600:
        raise ValueError(f"duration_s must be in [0.5, 600] seconds, got {duration_s!r}")
    if audio_format not in ("flac", "wav"):
        raise ValueError(f"audio_format must be 'flac' or 'wav', got {audio_format!r}")
    if not isinstance(events, (bool, np.bool_)):
        raise ValueError(f"events must be a bool, got {events!r}")
    events = bool(events)
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
    from mrlib.paths import FolderLock

    lock = FolderLock(root, "catalog").acquire()
    try:
        return _build_synthetic_locked(root, config, attrs_seed=(n_tracks, seed), sr=sr,
                                       duration_s=duration_s, audio_format=audio_format,
                                       n_jobs=n_jobs, progress=progress, overwrite=overwrite)
    finally:
        lock.release()


_CATALOG_FILES = ("tracks.csv", "tags.csv", "vocabulary.csv", "attributes.csv", "catalog.json")


def _foreign_files(root: Path, info: dict) -> list[str]:
    """Catalog files in ``root`` that no synthetic build of mrlib wrote (a hand-made catalog)."""
    if (info.get("config") or {}).get("source") == "synthetic":
        return []
    found = [f for f in _CATALOG_FILES if (root / f).exists()]
    if (root / "audio").is_dir() and any((root / "audio").iterdir()):
        found.append("audio/")
    return found


def _build_synthetic_locked(root: Path, config: dict, *, attrs_seed, sr, duration_s, audio_format,
                            n_jobs, progress, overwrite) -> Path:
    from mrlib import synth

    n_tracks, seed = attrs_seed
    info = _read_json(root / "catalog.json")   # again: another build may have finished it
    foreign = _foreign_files(root, info)
    if foreign:
        if not overwrite:
            raise ValueError(
                f"{root} holds a catalog that no synthetic build wrote ({', '.join(foreign)}; "
                f"catalog.json {'missing or unreadable' if not info else 'of another source'}); "
                "nothing was changed. Choose another --root, or pass overwrite=True "
                "(--overwrite) to move those files into a replaced-<time>/ folder and build here")
        move_aside(root, foreign, "catalog")
        info = {}
    if info:
        old = info.get("config") or {}
        versions_only = {k: v for k, v in old.items() if k not in ("generator_version", "format")} == \
            {k: v for k, v in config.items() if k not in ("generator_version", "format")}
        if old != config and versions_only and not overwrite:
            # a cache written by an older generator: same settings, other bytes -> regenerate
            warnings.warn(f"{root} was built by synth generator version {old.get('generator_version')!r} "
                          f"(now {config['generator_version']!r}); rebuilding it", stacklevel=3)
            overwrite = True
        if old != config:
            if not overwrite:
                raise ValueError(f"{root} holds a catalog built with {info.get('config')}, not {config}; "
                                 f"pass overwrite=True (or --overwrite) to rebuild it, or choose another root")
            for f in _CATALOG_FILES:
                (root / f).unlink(missing_ok=True)
            shutil.rmtree(root / "audio", ignore_errors=True)
            info = {}
        elif info.get("complete"):
            return root
    t_start = time.perf_counter()
    (root / "audio").mkdir(parents=True, exist_ok=True)
    info = {"name": root.name, "config": config, "complete": False, "versions": _versions(),
            "format": FORMAT_VERSION}
    _write_json(info, root / "catalog.json")

    events = bool(config.get("events", False))
    attrs, tags, vocab = synth.sample_catalog(n_tracks, seed, events=events)
    artist_ids = [f"art{a.artist:05d}" for a in attrs]
    width = max(5, len(str(n_tracks - 1)))
    ids = [f"syn{i:0{width}d}" for i in range(n_tracks)]
    tracks = pd.DataFrame({"track_id": ids, "artist_id": artist_ids,
                           "split": artist_disjoint_split(artist_ids, seed=seed),
                           "path": [f"audio/{t}.{audio_format}" for t in ids],
                           "duration_s": float(duration_s)})
    cat = Catalog(root.name, root, tracks, tags, vocab, attributes=synth.attributes_frame(attrs, events=events))
    _write_csv(tracks, root / "tracks.csv")
    _write_csv(cat.tags_frame(), root / "tags.csv")
    _write_csv(vocab, root / "vocabulary.csv")
    _write_csv(cat.attributes, root / "attributes.csv")

    now = time.time()
    for stale in (root / "audio").glob("*.part"):
        # left by an interrupted write; a fresh one may belong to a concurrent build
        if now - stale.stat().st_mtime > 600:
            stale.unlink(missing_ok=True)
    todo = [i for i in range(n_tracks) if not (root / tracks["path"].iat[i]).is_file()]
    from tqdm.auto import tqdm

    bar = tqdm(total=n_tracks, initial=n_tracks - len(todo), desc=f"synthesising {root.name}",
               unit="track", disable=not progress)
    jobs = [(attrs[i], int(seed), int(sr), float(duration_s), str(root / tracks["path"].iat[i]), audio_format)
            for i in todo]
    parent = os.getpid() if n_jobs != 1 and len(jobs) > 1 else None
    if n_jobs == 1 or len(jobs) <= 1:
        for job in jobs:
            _render_to_file(*job)
            bar.update(1)
    else:
        from joblib import Parallel, delayed

        par = Parallel(n_jobs=n_jobs, return_as="generator_unordered", batch_size=4)
        for _ in par(delayed(_render_to_file)(*job, parent) for job in jobs):
            bar.update(1)
    bar.close()

    missing = [t for t, p in zip(ids, tracks["path"]) if not (root / p).is_file()]
    if missing:    # pragma: no cover - a worker failed without raising
        raise RuntimeError(f"{len(missing)} audio files were not written: {missing[:10]}")
    info.update(complete=True, n_tracks=int(n_tracks), build_seconds=round(time.perf_counter() - t_start, 2))
    _write_json(info, root / "catalog.json")
    return root


# --------------------------------------------------------------------------------------
# Any folder of audio plus a tags CSV
# --------------------------------------------------------------------------------------
def format_skipped(skipped: pd.DataFrame, max_ids: int = 10) -> str:
    """Human-readable skip report: the count, then per reason the count and the first ids.

    Notebook: 00_overview.ipynb
    """
    if len(skipped) == 0:
        return "nothing skipped"
    lines = [f"skipped {len(skipped)} row(s):"]
    for reason, grp in skipped.groupby("reason", sort=False):
        ids = list(grp["track_id"].astype(str))
        more = f" ... (+{len(ids) - max_ids})" if len(ids) > max_ids else ""
        lines.append(f"  {len(ids)} x {reason}: {', '.join(ids[:max_ids])}{more}")
    return "\n".join(lines)


def _audio_duration(path: Path) -> tuple[float | None, str | None]:
    """(duration in s, None) from the file header, or (None, why it cannot be read)."""
    import soundfile as sf

    try:
        if os.path.getsize(path) == 0:
            return None, "empty audio file (0 bytes)"
    except OSError as err:
        return None, f"unreadable audio ({type(err).__name__})"
    try:
        info = sf.info(str(path))
        if info.samplerate <= 0 or info.frames <= 0:
            return None, "empty audio file (0 frames)"
        return info.frames / info.samplerate, None
    except Exception as err:  # libsndfile cannot read it: try librosa's other back-ends
        try:
            import librosa

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return float(librosa.get_duration(path=str(path))), None
        except Exception:
            return None, f"unreadable audio ({type(err).__name__})"


def from_folder(audio_dir: str | Path, tags_csv: str | Path, vocabulary_csv: str | Path | None = None, *,
                name: str | None = None, id_column: str = "track_id", path_column: str | None = None,
                artist_column: str = "artist_id", split_column: str = "split",
                fractions: Sequence[float] = (0.6, 0.2, 0.2), seed: int = 0, min_duration_s: float = 1.0,
                check_audio: bool = True, strict: bool = False, progress: bool = True,
                allow_outside: bool = False, duplicates: str = "group") -> Catalog:
    """Make a catalog from any folder of audio files plus a tags CSV (your own collection).

    The CSV has one row per track: an id column, optionally a file column (relative to
    ``audio_dir``; otherwise the file is found by id, ``<id>.<ext>`` anywhere below
    ``audio_dir``), optionally an artist and a split column, and one numeric column per tag
    (likelihoods in [0, 1]). Rows that cannot be used are skipped, never silently: each is
    listed in ``catalog.skipped`` (id, CSV row, reason) and summarised in a warning.

    Parameters
    ----------
    audio_dir : path
        Folder with the audio (wav, flac, ogg, mp3, aiff; searched recursively).
    tags_csv : path
        The tags table (comma-, tab- or semicolon-separated, from its header line).
    vocabulary_csv : path, optional
        ``tag, category`` for the tag columns; default: every tag in category ``"Tag"``.
    name : str, optional
        Catalog name (default: the folder name).
    id_column, path_column, artist_column, split_column : str
        Column names. Without an artist column each track is its own artist; without a split
        column the split is :func:`artist_disjoint_split` ``(artists, fractions, seed)``.
    fractions, seed
        For the split, when the CSV has none.
    min_duration_s : float
        Shorter files are skipped.
    check_audio : bool
        Read every file's header (duration, readable); off, ``duration_s`` is NaN.
    strict : bool
        Raise ``ValueError`` on the first bad row instead of skipping.
    progress : bool
        Progress bar over the audio checks.
    allow_outside : bool, default False
        Accept files outside ``audio_dir`` (an absolute or ``..`` path in the path column, a
        symlink out). Off, such rows are skipped and reported.

    duplicates : {"group", "skip", "error"}, default "group"
        Rows whose audio has the same content as an earlier row's (SHA-256, compared among
        files of equal size): ``"group"`` keeps them, warns, and
        assigns the split so that every copy lands in the same split (their artists are
        grouped); ``"skip"`` leaves the later copies out (reported in ``skipped``);
        ``"error"`` raises. One recording under two ids must never sit in two splits.

    Returns
    -------
    Catalog
        ``root`` is ``audio_dir``; paths are relative to it.

    Raises
    ------
    FileNotFoundError
        ``audio_dir`` or a CSV does not exist.
    ValueError
        Missing columns, a vocabulary that does not match the tag columns, no tag columns,
        duplicate column names, a CSV that is not UTF-8 or has rows of the wrong length (file
        and line named), no usable row, or (``strict``) any bad row.

    Notebook: 00_overview.ipynb
    """
    audio_dir, tags_csv = Path(audio_dir).expanduser(), Path(tags_csv).expanduser()
    if duplicates not in ("group", "skip", "error"):
        raise ValueError(f"duplicates must be 'group', 'skip' or 'error', got {duplicates!r}")
    if not audio_dir.is_dir():
        raise FileNotFoundError(f"audio folder not found: {audio_dir}")
    if not tags_csv.is_file():
        raise FileNotFoundError(f"tags CSV not found: {tags_csv}")
    # every cell as text: an id such as "NA" or "nan" stays a string; tag cells are parsed
    # below, where empty or non-numeric cells become NaN and are reported.
    df = read_table(tags_csv)
    if id_column not in df.columns:
        raise ValueError(f"{tags_csv.name}: missing id column {id_column!r}; columns are {list(df.columns)} "
                         f"(pass id_column=... to name another)")
    if path_column is not None and path_column not in df.columns:
        raise ValueError(f"{tags_csv.name}: missing path column {path_column!r}; columns are {list(df.columns)}")
    meta = {id_column, path_column, artist_column, split_column, "duration_s"}
    tag_cols = [c for c in df.columns if c not in meta]
    if vocabulary_csv is not None:
        vocabulary_csv = Path(vocabulary_csv).expanduser()
        if not vocabulary_csv.is_file():
            raise FileNotFoundError(f"vocabulary CSV not found: {vocabulary_csv}")
        vocab = read_table(vocabulary_csv)
        missing = [c for c in ("tag", "category") if c not in vocab.columns]
        if missing:
            raise ValueError(f"{vocabulary_csv.name}: missing column(s) {missing}; columns are {list(vocab.columns)}")
        absent = [t for t in vocab["tag"] if t not in tag_cols]
        unknown = [t for t in tag_cols if t not in set(vocab["tag"])]
        if absent or unknown:
            raise ValueError(f"vocabulary and tags CSV disagree: tags in {vocabulary_csv.name} without a column "
                             f"in {tags_csv.name}: {absent[:10]}; tag columns not in the vocabulary: {unknown[:10]}")
        if vocab["tag"].duplicated().any():
            raise ValueError(f"{vocabulary_csv.name}: duplicate tags {list(vocab['tag'][vocab['tag'].duplicated()])}")
        tag_cols = list(vocab["tag"])
        vocab = vocab[["tag", "category"]].reset_index(drop=True)
    else:
        vocab = pd.DataFrame({"tag": tag_cols, "category": "Tag"})
    if not tag_cols:
        raise ValueError(f"{tags_csv.name}: no tag columns (only {list(df.columns)})")

    skipped: list[tuple[str, int, str]] = []

    def skip(tid, row, reason):
        if strict:
            raise ValueError(f"{tags_csv.name} row {row} (track_id {tid!r}): {reason}")
        skipped.append((str(tid), int(row), reason))

    # Row checks: ids, duplicates, tag values, split values.
    values = df[tag_cols].apply(lambda col: pd.to_numeric(col.str.strip(), errors="coerce")).to_numpy(dtype=np.float64)
    raw_nan = df[tag_cols].apply(lambda col: col.str.strip().str.lower().isin(["", "nan", "na", "n/a", "null"])).to_numpy()
    ok = np.ones(len(df), dtype=bool)
    first_row: dict[str, int] = {}
    ids = df[id_column].astype(str).str.strip()
    line_of = df.attrs["lines"]
    for r in range(len(df)):
        tid, row = ids.iat[r], line_of[r]       # the line in the file
        bad_val = np.isnan(values[r])
        if tid == "":
            ok[r] = False
            skip("", row, "empty track id")
        elif tid in first_row:
            ok[r] = False
            skip(tid, row, f"duplicate track id (first at row {first_row[tid]}, kept)")
        elif bad_val.any():
            ok[r] = False
            cols = [c for c, b in zip(tag_cols, bad_val) if b]
            what = "missing (NaN)" if raw_nan[r][bad_val].all() else "not a number"
            skip(tid, row, f"tag value {what} in {cols[:5]}")
        elif ((values[r] < 0) | (values[r] > 1)).any():
            ok[r] = False
            cols = [c for c, v in zip(tag_cols, values[r]) if not 0 <= v <= 1]
            skip(tid, row, f"tag value outside [0, 1] in {cols[:5]}")
        elif split_column in df.columns and str(df[split_column].iat[r]) not in SPLITS:
            ok[r] = False
            skip(tid, row, f"split {df[split_column].iat[r]!r} is not one of {SPLITS}")
        if ok[r]:
            first_row[tid] = row

    # Files: by the path column, else by id among the audio files below audio_dir.
    files = [p for p in audio_dir.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file()]
    by_stem: dict[str, list[Path]] = {}
    for p in files:
        by_stem.setdefault(p.stem, []).append(p)
    paths: list[Path | None] = [None] * len(df)
    durations = np.full(len(df), np.nan)
    from tqdm.auto import tqdm

    for r in tqdm(np.flatnonzero(ok), desc="checking audio", unit="file", disable=not progress):
        tid, row = ids.iat[r], line_of[r]
        if path_column is not None:
            rel = str(df[path_column].iat[r])
            p = Path(rel) if Path(rel).is_absolute() else audio_dir / rel
            if not p.is_file():
                ok[r] = False
                skip(tid, row, f"file not found: {rel}")
                continue
            if not allow_outside and not _inside(p, audio_dir):
                ok[r] = False
                skip(tid, row, f"outside the audio folder: {rel} (pass allow_outside=True to allow)")
                continue
        else:
            cands = by_stem.get(tid, [])
            if not cands:
                ok[r] = False
                skip(tid, row, f"file not found: no {tid}.<{'|'.join(e[1:] for e in AUDIO_EXTENSIONS)}> "
                               f"below {audio_dir.name}/")
                continue
            if len(cands) > 1:
                ok[r] = False
                skip(tid, row, f"ambiguous: {len(cands)} audio files named {tid}.*")
                continue
            p = cands[0]
            if not allow_outside and not _inside(p, audio_dir):
                ok[r] = False
                skip(tid, row, f"outside the audio folder: {p.relative_to(audio_dir)} is a symlink "
                               "out (pass allow_outside=True to allow)")
                continue
        if check_audio:
            dur, problem = _audio_duration(p)
            if problem:
                ok[r] = False
                skip(tid, row, problem)
                continue
            if dur < min_duration_s:
                ok[r] = False
                skip(tid, row, f"too short ({dur:.2f} s < {min_duration_s} s)")
                continue
            durations[r] = dur
        paths[r] = p

    # One recording under several ids: reported, and kept in one split (or skipped).
    usable = np.flatnonzero(ok)
    same_as: dict[int, int] = {}                      # row -> row of the first copy
    for k, first in sorted(duplicate_audio([paths[r] for r in usable]).items()):
        r, r0 = int(usable[k]), int(usable[first])
        if duplicates == "skip":
            ok[r] = False
            skip(ids.iat[r], line_of[r], f"same audio as track {ids.iat[r0]!r} (line "
                                         f"{line_of[r0]}): duplicate recording")
        else:
            same_as[r] = r0
    if same_as and duplicates == "error":
        r, r0 = next(iter(same_as.items()))
        raise ValueError(f"{tags_csv.name}: {len(same_as)} row(s) name the same audio as another, "
                         f"e.g. line {line_of[r]} ({ids.iat[r]!r}) and line {line_of[r0]} "
                         f"({ids.iat[r0]!r})")

    # Audio files that no row names: reported too (unknown ids), never silently ignored.
    if path_column is None:
        listed = set(ids)
        for p in sorted(files):
            if p.stem not in listed:
                skipped.append((p.stem, -1, "unknown id: audio file has no row in the tags CSV"))
    keep = np.flatnonzero(ok)
    if keep.size == 0:
        raise ValueError(f"no usable rows in {tags_csv.name}:\n{format_skipped(pd.DataFrame(skipped, columns=_SKIP_COLUMNS))}")

    kept_ids = ids.iloc[keep].to_numpy(dtype=str)
    if artist_column in df.columns:
        artists = df[artist_column].iloc[keep].astype(str).str.strip().to_numpy()
        artists = np.where(artists == "", kept_ids, artists)     # no artist: its own
    else:
        artists = kept_ids.copy()
    position = {int(r): k for k, r in enumerate(keep)}
    pairs = [(position[r], position[r0]) for r, r0 in same_as.items()]
    if pairs:
        warnings.warn(f"from_folder({audio_dir.name}): {len(pairs)} track(s) have the same audio "
                      "as another (kept in the same split): " + ", ".join(
                          f"{kept_ids[a]} = {kept_ids[b]}" for a, b in pairs[:10]), stacklevel=2)
    if split_column in df.columns:
        split = df[split_column].iloc[keep].astype(str).to_numpy()
        spread = pd.DataFrame({"a": artists, "s": split}).groupby("a")["s"].nunique()
        if (spread > 1).any():
            warnings.warn(f"the split column of {tags_csv.name} is not artist-disjoint: "
                          f"{int((spread > 1).sum())} artist(s) appear in several splits, "
                          f"e.g. {list(spread[spread > 1].index[:5])}", stacklevel=2)
        crossing = [(a, b) for a, b in pairs if split[a] != split[b]]
        if crossing:
            warnings.warn(f"the split column of {tags_csv.name} puts one recording in two splits: "
                          + ", ".join(f"{kept_ids[a]} ({split[a]}) = {kept_ids[b]} ({split[b]})"
                                      for a, b in crossing[:10]), stacklevel=2)
    else:
        split = artist_disjoint_split(_group_duplicates(artists, pairs), fractions, seed)
    root = audio_dir.resolve()
    tracks = pd.DataFrame({
        "track_id": kept_ids, "artist_id": artists, "split": split,
        "path": [Path(os.path.relpath(paths[r].resolve(), root)).as_posix() for r in keep],
        "duration_s": durations[keep]})
    skipped_df = pd.DataFrame(skipped, columns=_SKIP_COLUMNS) if skipped else _empty_skipped()
    if len(skipped_df):
        warnings.warn(f"from_folder({audio_dir.name}): kept {keep.size} track(s); "
                      + format_skipped(skipped_df), stacklevel=2)
    info = {"name": name or audio_dir.name, "source": "folder", "format": FORMAT_VERSION,
            "config": {"audio_dir": str(root), "tags_csv": str(tags_csv.resolve()),
                       "vocabulary_csv": str(vocabulary_csv) if vocabulary_csv else None, "seed": seed,
                       "fractions": list(map(float, fractions))},
            "n_skipped": len(skipped_df), "complete": True}
    return Catalog(name=name or audio_dir.name, root=root, tracks=tracks,
                   tags=values[keep].astype(np.float32), vocabulary=vocab, info=info, skipped=skipped_df)


# --------------------------------------------------------------------------------------
# One entry point
# --------------------------------------------------------------------------------------
def build(name: str, **kwargs: Any) -> Path:
    """Build a generated catalog and return its folder: ``'synthetic'`` (:func:`build_synthetic`)
    or ``'music21'`` (``mrlib.repertoire.build``); keyword arguments go to the builder.

    Notebook: 00_overview.ipynb
    """
    if name == "synthetic":
        return build_synthetic(**kwargs)
    if name == "music21":
        from mrlib import repertoire

        return Path(repertoire.build(**kwargs))
    raise ValueError(f"cannot build {name!r}: buildable catalogs are 'synthetic' and 'music21'")


def load(name_or_path: str | Path = "synthetic", **kwargs: Any) -> Catalog:
    """Load a catalog by source name or folder, building generated ones when needed.

    Parameters
    ----------
    name_or_path : str or path
        * ``"synthetic"`` — :func:`build_synthetic` ``(n_tracks=200, seed=0, duration_s=30.0,
          sr=22050, ...)`` into ``data_dir()/synthetic_n{N}_s{seed}`` if it is missing or
          incomplete, then read it (``events=True``: the variant with temporally sparse tags);
        * ``"music21"`` — ``mrlib.repertoire.build(**kwargs)``, then read its folder
          (``duration_s`` is accepted for its ``clip_s``);
        * ``"mtat"`` — ``mrlib.mtat.load_catalog(**kwargs)`` (e.g. ``folder=...``);
        * ``"folder"`` — :func:`from_folder` ``(**kwargs)`` (``audio_dir=..., tags_csv=...``);
        * a folder with ``tracks.csv`` (absolute, relative, or a name under ``data_dir()``),
          read by :func:`read` (keyword ``allow_outside`` only).
    **kwargs
        Passed to the builder or loader.

    Returns
    -------
    Catalog

    Notebook: 00_overview.ipynb
    """
    if isinstance(name_or_path, str) and name_or_path == "synthetic":
        return read(build_synthetic(**kwargs))
    if isinstance(name_or_path, str) and name_or_path == "music21":
        if "duration_s" in kwargs:
            # one name for the track length across catalogs, so a notebook's ``duration_s``
            # parameter reaches either (music21 clips its works to ``clip_s``)
            if "clip_s" in kwargs:
                raise TypeError("give duration_s or clip_s for the music21 catalog, not both")
            kwargs["clip_s"] = kwargs.pop("duration_s")
        return read(build("music21", **kwargs))
    if isinstance(name_or_path, str) and name_or_path == "mtat":
        from mrlib import mtat

        return mtat.load_catalog(**kwargs)
    if isinstance(name_or_path, str) and name_or_path == "folder":
        return from_folder(**kwargs)
    if not isinstance(name_or_path, (str, Path)):
        raise TypeError(f"name_or_path must be a str or a Path, got {type(name_or_path).__name__}")
    allow_outside = kwargs.pop("allow_outside", None)
    if kwargs:
        raise TypeError(f"unexpected keyword arguments {sorted(kwargs)} for a catalog folder "
                        "(it takes allow_outside only)")
    for cand in (Path(name_or_path).expanduser(), data_dir() / str(name_or_path)):
        if (cand / "tracks.csv").is_file():
            return read(cand, allow_outside=allow_outside)
    raise FileNotFoundError(f"no catalog {str(name_or_path)!r}: not a source name ('synthetic', 'music21', "
                            f"'mtat', 'folder') and no tracks.csv in {Path(name_or_path)} or "
                            f"{data_dir() / str(name_or_path)}")


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------
def main(argv: Iterable[str] | None = None) -> int:
    """``python -m mrlib.catalog build|info ...``; returns the exit status.

    Notebook: 00_overview.ipynb
    """
    ap = argparse.ArgumentParser(prog="python -m mrlib.catalog", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build a generated catalog (resumable)")
    b.add_argument("name", choices=["synthetic", "music21"])
    i = sub.add_parser("info", help="describe a catalog")
    i.add_argument("name", help="'synthetic' (with --n-tracks/--seed ...) or a catalog folder / name")
    for p in (b, i):
        p.add_argument("--n-tracks", type=int, default=200)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--duration", type=float, default=30.0, help="seconds per track")
        p.add_argument("--sr", type=int, default=22050)
        p.add_argument("--format", default="flac", choices=["flac", "wav"])
        p.add_argument("--root", default=None, help="output folder (default: under the data root)")
        p.add_argument("--events", action="store_true",
                       help="synthetic: the variant with temporally sparse tags (bells, guitar_solo, riser, choir)")
    b.add_argument("--jobs", type=int, default=2)
    b.add_argument("--overwrite", action="store_true", help="rebuild a folder built with other settings")
    b.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(list(argv) if argv is not None else None)
    from mrlib.paths import LockedError

    try:
        if args.cmd == "build":
            t0 = time.perf_counter()
            if args.name == "synthetic":
                root = build_synthetic(args.n_tracks, args.seed, args.duration, args.sr, root=args.root,
                                       n_jobs=args.jobs, progress=not args.no_progress,
                                       audio_format=args.format, overwrite=args.overwrite, events=args.events)
            else:
                if args.events:
                    raise ValueError("--events is a variant of the synthetic catalog only")
                kw = dict(n_tracks=args.n_tracks, seed=args.seed, clip_s=args.duration, sr=args.sr,
                          n_jobs=args.jobs, progress=not args.no_progress, overwrite=args.overwrite)
                if args.root:
                    kw["root"] = args.root
                root = build("music21", **kw)
            dt = time.perf_counter() - t0
            cat = read(root)
            print(f"wrote {root} ({len(cat)} tracks, {cat.tracks['duration_s'].sum() / 60:.1f} min of audio) "
                  f"in {dt:.1f} s")
            return 0
        if args.name == "synthetic":
            root = Path(args.root) if args.root else synthetic_root(args.n_tracks, args.seed, args.duration,
                                                                    args.sr, args.format, args.events)
            info = _read_json(root / "catalog.json")
            if not info.get("complete"):
                print(f"{root}: not built{' completely' if info else ''}; run "
                      f"python -m mrlib.catalog build synthetic --n-tracks {args.n_tracks} --seed {args.seed}"
                      f"{' --events' if args.events else ''}")
                return 1
            cat = read(root)
        else:
            cat = load(args.name)
        print(cat.summary())
        if cat.info.get("config"):
            print(f"  config: {json.dumps(cat.info['config'], sort_keys=True)}")
        if "build_seconds" in cat.info:
            print(f"  built in {cat.info['build_seconds']} s")
        return 0
    except (FileNotFoundError, ValueError, LockedError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
