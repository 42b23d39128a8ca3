"""The on-disk catalog format: the :class:`Catalog`, its folder, and artist-disjoint splits.

One on-disk format for every source::

    <root>/tracks.csv       track_id, artist_id, split, path, duration_s   (row i = index i)
    <root>/tags.csv         track_id, <one column per tag>                 (likelihoods in [0, 1])
    <root>/vocabulary.csv   tag, category
    <root>/audio/           the audio files (``path`` is relative to <root> or absolute)
    <root>/catalog.json     build config, seed, package versions, and a ``complete`` flag
    <root>/attributes.csv   (synthetic only) the latent attributes behind the tags

This module reads and writes that format and imports no builder, so that every builder
(:mod:`mrlib.synth_catalog`, :mod:`mrlib.music21_catalog`, :mod:`mrlib.mtat`,
:mod:`mrlib.folder_catalog`) can use it; :mod:`mrlib.catalog` is the entry point above them all.
"""
from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import platform
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import soundfile
from scipy.sparse import coo_array
from scipy.sparse.csgraph import connected_components

from mrlib.checks import check_choice, check_int, is_int
from mrlib.paths import atomic_path, data_dir, package_versions
from mrlib.paths import read_json_or_empty as _read_json

__all__ = [
    "SPLITS", "TRACK_COLUMNS", "AUDIO_EXTENSIONS", "FORMAT_VERSION", "Catalog",
    "artist_disjoint_split", "group_duplicates", "duplicate_audio", "read", "read_table",
    "format_skipped", "default_root"
]


def default_root(source: str, n_tracks: int, seed: int, duration_s: float = 30.0, sr: int = 22050,
                 *variants: str) -> Path:
    """Folder of a generated catalog: ``data_dir()/<source>_n{N}_s{seed}``, with ``_d{duration}``
    and ``_sr{sr}`` appended when they differ from 30 s and 22,050 Hz, then ``_<variant>`` for
    each non-empty variant, so that catalogs built with other settings never share a folder.

    Notebook: 00_overview.ipynb
    """
    name = f"{source}_n{n_tracks}_s{seed}"
    if float(duration_s) != 30.0:
        name += f"_d{float(duration_s):g}"
    if int(sr) != 22050:
        name += f"_sr{int(sr)}"
    return data_dir() / "_".join([name, *filter(None, variants)])


SPLITS = ("train", "val", "test")
TRACK_COLUMNS = ("track_id", "artist_id", "split", "path", "duration_s")
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")
FORMAT_VERSION = 1
# the tables Catalog.save writes (attributes.csv only for a catalog that has attributes)
_SAVED_TABLES = ("tracks.csv", "tags.csv", "vocabulary.csv", "attributes.csv")


def _require_columns(table: pd.DataFrame, needed: Sequence[str], where: str,
                     hint: str = "") -> None:
    """Refuse a table without the ``needed`` columns with a ``ValueError`` naming ``where``, the
    missing columns and those it has (the first 12), then ``hint``."""
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise ValueError(f"{where} is missing column(s) {missing}; its columns are "
                         f"{list(table.columns)[:12]}{hint}")


def _no_duplicates(values: pd.Series, where: str) -> None:
    """Refuse repeated ``values`` with a ``ValueError`` naming ``where`` and the first 10."""
    if values.duplicated().any():
        raise ValueError(f"{where}: duplicate(s) {list(values[values.duplicated()])[:10]}")


def _read_vocabulary(path: Path, columns: Sequence[str], tags_name: str) -> pd.DataFrame:
    """``tag, category`` of the vocabulary CSV at ``path``, refused unless its tags are distinct
    and exactly the tag ``columns`` of the tags table ``tags_name``."""
    vocab = read_table(path, columns=("tag", "category"))
    _no_duplicates(vocab["tag"], f"{path}, column 'tag'")
    known, tags = set(columns), set(vocab["tag"])
    absent = [t for t in vocab["tag"] if t not in known]
    unknown = [c for c in columns if c not in tags]
    if absent or unknown:
        raise ValueError(f"vocabulary and tags CSV disagree: tags in {path.name} without a column "
                         f"in {tags_name}: {absent[:10]}; tag columns not in the vocabulary: "
                         f"{unknown[:10]}")
    return vocab[["tag", "category"]].reset_index(drop=True)


def _skipped_frame(ids: Sequence = (), rows: Sequence = (), reasons: Sequence = ()) -> pd.DataFrame:
    """The layout of :attr:`Catalog.skipped`: ``track_id`` (str), ``row`` (int64), ``reason``."""
    return pd.DataFrame({"track_id": pd.Series(ids, dtype=str),
                         "row": pd.Series(rows, dtype="int64"),
                         "reason": pd.Series(reasons, dtype=str)})


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
    skipped: pd.DataFrame = field(default_factory=_skipped_frame)

    def __post_init__(self):
        self.root = Path(self.root)
        _require_columns(self.tracks, TRACK_COLUMNS, "tracks")
        _require_columns(self.vocabulary, ("tag", "category"), "vocabulary")
        self.tracks = self.tracks.reset_index(drop=True).astype(
            {"track_id": str, "artist_id": str, "duration_s": float})
        self.vocabulary = self.vocabulary.reset_index(drop=True)
        self.tags = np.asarray(self.tags, dtype=np.float32)
        n, m = len(self.tracks), len(self.vocabulary)
        if self.tags.shape != (n, m):
            raise ValueError(f"tags must have shape (N, m) = ({n}, {m}) (tracks x vocabulary), "
                             f"got {self.tags.shape}")
        if self.tags.size and (not np.isfinite(self.tags).all() or self.tags.min() < 0 or self.tags.max() > 1):
            raise ValueError("tags must be finite likelihoods in [0, 1]")
        bad = sorted(set(self.tracks["split"]) - set(SPLITS))
        if bad:
            raise ValueError(f"split values must be in {SPLITS}, got {bad}")
        _no_duplicates(self.tracks["track_id"], "track_id")
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
        check_choice("category", category, self.categories)
        return np.flatnonzero(self.vocabulary["category"].to_numpy() == category).astype(np.int64)

    def top_tags(self, i: int, k: int | None = None, threshold: float = 0.5,
                 category: bool = False) -> list[str]:
        """The tags of track ``i`` with likelihood ≥ ``threshold``, most likely first.

        Parameters
        ----------
        i : int
            Catalog index of the track.
        k : int, optional
            Keep the first ``k`` (default: all above the threshold).
        threshold : float, default 0.5
            Smallest likelihood kept, in [0, 1].
        category : bool, default False
            Write each tag as ``"tag (Cat)"``, with the first three letters of its category.

        Returns
        -------
        list of str
            Ties in likelihood keep the vocabulary's order.

        Notebook: 02_similarity.ipynb
        """
        if not 0 <= int(i) < len(self):
            raise IndexError(f"track index {i} out of range for a catalog of {len(self)} tracks")
        k = None if k is None else check_int("k", k, 0)
        row = self.tags[int(i)]
        order = [j for j in np.argsort(-row, kind="stable") if row[j] >= threshold][:k]
        cats = self.vocabulary["category"].to_numpy()
        names = self.tag_names
        return [f"{names[j]} ({cats[j][:3]})" if category else names[j] for j in order]

    def split_indices(self, split: str) -> np.ndarray:
        """Catalog indices (int64, increasing) of the tracks in one split.

        Parameters
        ----------
        split : {'train', 'val', 'test'}

        Notebook: 00_overview.ipynb
        """
        check_choice("split", split, SPLITS)
        return np.flatnonzero(self.tracks["split"].to_numpy() == split).astype(np.int64)

    def audio_path(self, i: int) -> Path:
        """Absolute path of track ``i``'s audio file.

        Notebook: 00_overview.ipynb
        """
        if not is_int(i):
            raise TypeError(f"track index must be an int, got {type(i).__name__}")
        if not -len(self) <= i < len(self):
            raise IndexError(f"track index {i} out of range for a catalog of {len(self)} tracks")
        # joined to root: an absolute path replaces it
        return (self.root / self.tracks["path"].iat[int(i)]).resolve()

    def tags_frame(self) -> pd.DataFrame:
        """``track_id`` + one column per tag (the layout of ``tags.csv``).

        Notebook: 02_similarity.ipynb
        """
        df = pd.DataFrame(self.tags, columns=self.tag_names)
        df.insert(0, "track_id", self.tracks["track_id"].to_numpy())
        return df

    def save(self, root: str | Path) -> Path:
        """Write the catalog in the on-disk format (each file atomically) into the folder
        ``root`` and return it.

        ``root`` has no default: the catalog's own root may be a folder of the user's (the audio
        folder of :func:`from_folder`, which may hold the user's own ``tags.csv``), and a save
        must never overwrite a file it was not told to. Audio files are not copied: relative
        paths are rewritten against the new root when the files lie below it, and stored
        absolute otherwise (``catalog.json`` then says ``allow_outside_paths: true``, so that
        :func:`read` accepts them).

        Raises
        ------
        FileExistsError
            ``root`` holds catalog tables (``tags.csv`` ...) but no ``catalog.json``: files that
            no save wrote, which are left as they are.

        Notebook: 00_overview.ipynb
        """
        root = Path(root)
        # a folder with catalog tables but no catalog.json holds files no save wrote (a user's
        # own tags.csv): refuse rather than replace them
        theirs = [f for f in _SAVED_TABLES if (root / f).exists()]
        if theirs and not (root / "catalog.json").exists():
            raise FileExistsError(f"{root} holds {', '.join(theirs)} but no catalog.json: a save would "
                                  "replace files that no catalog wrote; save into another folder")
        root.mkdir(parents=True, exist_ok=True)
        real_root = root.resolve()
        paths = [p.relative_to(real_root).as_posix() if p.is_relative_to(real_root) else str(p)
                 for p in map(self.audio_path, range(len(self)))]
        _write_csv(self.tracks.assign(path=paths)[list(TRACK_COLUMNS)], root / "tracks.csv")
        _write_csv(self.tags_frame(), root / "tags.csv")
        _write_csv(self.vocabulary[["tag", "category"]], root / "vocabulary.csv")
        if self.attributes is not None:
            _write_csv(self.attributes, root / "attributes.csv")
        # catalog.json is written with sorted keys: the order here does not matter
        info = {"name": self.name, "format": FORMAT_VERSION, "complete": True, **self.info,
                "n_tracks": len(self)}
        # audio stored by an absolute path lies elsewhere by construction: read() accepts it
        if any(Path(p).is_absolute() for p in paths):
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
# Small I/O helpers: every file is written to a temporary name and renamed into place
# (atomic_path), so an interrupted build never leaves a half-written file under its final name.
# --------------------------------------------------------------------------------------
def _write_csv(df: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g", lineterminator="\n")


def _write_json(obj: dict, path: Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=1, sort_keys=True, default=str) + "\n")


def read_table(path: str | Path, sep: str | None = None,
               columns: Sequence[str] = ()) -> pd.DataFrame:
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
    columns : sequence of str, optional
        Columns the table must have.

    Returns
    -------
    pandas.DataFrame of str

    Raises
    ------
    ValueError
        An empty file; UTF-16 or another non-UTF-8 encoding (with the line of the first bad
        byte); a row with more or fewer fields than the header (its line); duplicate or
        empty column names; a quoting error (its line); a missing one of ``columns``.

    Notebook: 00_overview.ipynb
    """
    path = Path(path)
    raw = path.read_bytes()
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
    try:   # (line, fields) of each row that is not blank
        rows = [(reader.line_num, row) for row in reader if len(row) > 1 or (row and row[0].strip())]
    except csv.Error as err:
        raise ValueError(f"{path} line {reader.line_num}: {err}") from None
    if not rows:
        raise ValueError(f"{path} is empty: expected a header line of column names, then its "
                         "rows")
    names = [c.strip() for c in rows.pop(0)[1]]
    for line, row in rows:
        if len(row) != len(names):
            raise ValueError(f"{path} line {line}: {len(row)} field(s), but the header has "
                             f"{len(names)} ({', '.join(names[:6])}"
                             f"{', ...' if len(names) > 6 else ''}); check separators and "
                             "quotes on that line")
    unnamed = [i + 1 for i, c in enumerate(names) if not c]
    if unnamed:
        raise ValueError(f"{path}: column(s) {unnamed} of the header have no name")
    dups = [f"{c!r} (columns {names.index(c) + 1} and {i + 1})"
            for i, c in enumerate(names) if names.index(c) < i]
    if dups:
        raise ValueError(f"{path}: duplicate column name(s) {', '.join(dups)}; every column "
                         "(every tag) needs its own name")
    df = pd.DataFrame([row for _, row in rows], columns=names, dtype=str)
    df.attrs["lines"] = [line for line, _ in rows]
    _require_columns(df, columns, str(path))
    return df


def _numeric(df: pd.DataFrame, columns: Sequence[str], path: Path) -> np.ndarray:
    """float64 values of tag columns held as text; an error names the first bad cell's line and
    column."""
    values = df[list(columns)].apply(lambda col: pd.to_numeric(col.str.strip(), errors="coerce"))
    arr = values.to_numpy(dtype=np.float64)
    bad = ~np.isfinite(arr)
    if bad.any():
        r, c = (int(x) for x in np.argwhere(bad)[0])
        raise ValueError(f"{path} line {df.attrs['lines'][r]}, column {columns[c]!r}: "
                         f"{df[columns[c]].iat[r]!r} is not a number (expected a likelihood in "
                         f"[0, 1]); {int(bad.sum())} such cell(s) in all")
    return arr


def duplicate_audio(paths: Sequence[str | Path]) -> dict[int, int]:
    """Files with the same content: ``{index: index of the first file with that content}``.

    Files are grouped by size first; only files that share a size are hashed (SHA-256), so a
    collection without duplicates costs one ``stat`` per file. Unreadable files are left out.

    Notebook: 00_overview.ipynb
    """
    by_size: dict[int, list[int]] = {}
    for i, p in enumerate(paths):
        with contextlib.suppress(OSError):
            by_size.setdefault(os.stat(p).st_size, []).append(i)
    # one digest table for all sizes: files of equal content have equal size
    out, first_of = {}, {}
    for i in [i for group in by_size.values() if len(group) > 1 for i in group]:
        with contextlib.suppress(OSError), open(paths[i], "rb") as fh:
            first = first_of.setdefault(hashlib.file_digest(fh, "sha256").hexdigest(), i)
            if first != i:
                out[i] = first
    return out


def _warn_same_audio(pairs: Sequence[tuple[int, int]], ids: Sequence, tracks: str) -> None:
    """Warn of the ``(track, first copy)`` index ``pairs`` that share a recording, by ``ids``;
    ``tracks`` says what they are, with ``{}`` for their number (warns for the loader's caller)."""
    if pairs:
        warnings.warn(f"{tracks.format(len(pairs))} have the same audio as another (kept in the "
                      "same split): " + ", ".join(f"{ids[a]} = {ids[b]}" for a, b in pairs[:10]),
                      stacklevel=4)


def group_duplicates(artists: np.ndarray, pairs: list[tuple[int, int]]) -> np.ndarray:
    """Split groups: artists, merged wherever two tracks share a recording, so that
    :func:`artist_disjoint_split` keeps every copy of a recording in one split. A group is a
    connected component of the graph whose edges join the artists of two copies, named after
    its first artist in sorted order.

    Notebook: 00_overview.ipynb
    """
    names, artist_of = np.unique([str(a) for a in artists], return_inverse=True)
    edges = artist_of[np.asarray(pairs, dtype=np.int64).reshape(-1, 2)]
    graph = coo_array((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(names.size,) * 2)
    _, component = connected_components(graph, directed=False)
    first = np.unique(component, return_index=True)[1]     # each component's first artist
    return names[first[component[artist_of]]]


def _versions() -> dict[str, str]:
    return {"python": platform.python_version(), "libsndfile": soundfile.__libsndfile_version__,
            **package_versions(("mrlib", "numpy", "scipy", "pandas", "soundfile"))}


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
    check_int("seed", seed, 0)
    ids = np.asarray([str(a) for a in artist_ids])
    uniq, inverse, counts = np.unique(ids, return_inverse=True, return_counts=True)
    rng = np.random.default_rng(seed)
    # largest artists first (hardest to place), ties broken by a seeded permutation
    order = np.lexsort((rng.permutation(uniq.size), -counts))
    filled = np.zeros(3)
    split_of = np.empty(uniq.size, dtype=int)
    for a in order:
        # a split with no share never receives an artist; ties -> train before val before test
        s = int(np.argmax(np.where(fr > 0, fr * ids.size - filled, -np.inf)))
        split_of[a] = s
        filled[s] += counts[a]
    return np.asarray(SPLITS)[split_of[inverse]]


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
    tracks = read_table(root / "tracks.csv", columns=TRACK_COLUMNS)
    # unknown durations are written as empty cells
    tracks["duration_s"] = pd.to_numeric(tracks["duration_s"], errors="coerce")
    tags_df = read_table(root / "tags.csv", columns=("track_id",))
    vocab = _read_vocabulary(root / "vocabulary.csv", list(tags_df.columns.drop("track_id")),
                             "tags.csv")
    tags = _numeric(tags_df, list(vocab["tag"]), root / "tags.csv")
    tag_ids = tags_df["track_id"]
    if set(tag_ids) != set(tracks["track_id"]) or tag_ids.duplicated().any():
        raise ValueError("tags.csv must list the track ids of tracks.csv, each once")
    tags = tags[pd.Index(tag_ids).get_indexer(tracks["track_id"])]   # rows in tracks.csv order
    if allow_outside is None:
        allow_outside = bool(info.get("allow_outside_paths", False))
    _check_track_paths(root, tracks, allow_outside)
    attributes = (pd.read_csv(root / "attributes.csv", keep_default_na=False)
                  if (root / "attributes.csv").is_file() else None)
    return Catalog(name=name or info.get("name") or root.name, root=root.resolve(), tracks=tracks,
                   tags=tags.astype(np.float32), vocabulary=vocab,
                   attributes=attributes, info=info)


def _check_track_paths(root: Path, tracks: pd.DataFrame, allow_outside: bool) -> None:
    """Paths of ``tracks.csv`` stay inside the folder (unless allowed) and are not shared."""
    real_root = root.resolve()
    lines = tracks.attrs["lines"]      # set by read_table
    owner: dict[Path, int] = {}
    for i, rel in enumerate(tracks["path"]):
        if not rel:
            continue
        full = (root / rel).resolve()      # an absolute path replaces root
        if not allow_outside and not full.is_relative_to(real_root):
            how = "absolute path" if Path(rel).is_absolute() else "via .. or a symlink"
            raise ValueError(
                f"{root / 'tracks.csv'} line {lines[i]}, column 'path': {rel!r} leads outside the "
                f"catalog folder ({how} to {full}); keep audio under {root}, or pass "
                'allow_outside=True (or "allow_outside_paths": true in catalog.json) to allow it')
        if full in owner:
            j = owner[full]
            raise ValueError(
                f"{root / 'tracks.csv'} lines {lines[j]} and {lines[i]}: track ids "
                f"{tracks['track_id'].iat[j]!r} and {tracks['track_id'].iat[i]!r} share the audio "
                f"file {rel!r}; one recording must not count as two tracks (it could sit in two "
                "splits)")
        owner[full] = i


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
