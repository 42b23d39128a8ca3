"""A catalog from any folder of audio files plus a tags CSV (your own collection)."""
from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import soundfile as sf
from tqdm.auto import tqdm

from mrlib.catalog_format import (AUDIO_EXTENSIONS, FORMAT_VERSION, SPLITS, Catalog,
                                  _read_vocabulary, _require_columns, _skipped_frame,
                                  _warn_same_audio, artist_disjoint_split, duplicate_audio,
                                  format_skipped, group_duplicates, read_table)
from mrlib.checks import check_choice, is_real

__all__ = ["from_folder"]


def _audio_duration(path: Path) -> tuple[float | None, str | None]:
    """(duration in s, None) from the file header, or (None, why it cannot be read)."""
    try:
        if os.path.getsize(path) == 0:
            return None, "empty audio file (0 bytes)"
        info = sf.info(str(path))
        if info.samplerate <= 0 or info.frames <= 0:
            return None, "empty audio file (0 frames)"
        return info.frames / info.samplerate, None
    except Exception as err:  # libsndfile cannot read it (or no size): try librosa's back-ends
        try:
            import librosa  # heavy, and needed only for files libsndfile cannot read

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return float(librosa.get_duration(path=str(path))), None
        except Exception:
            return None, f"unreadable audio ({type(err).__name__})"


def from_folder(audio_dir: str | Path, tags_csv: str | Path, vocabulary_csv: str | Path | None = None, *,
                id_column: str = "track_id", path_column: str | None = None,
                artist_column: str = "artist_id", split_column: str = "split",
                fractions: Sequence[float] = (0.6, 0.2, 0.2), seed: int = 0, min_duration_s: float = 1.0,
                strict: bool = False, progress: bool = True, allow_outside: bool = False,
                duplicates: str = "group") -> Catalog:
    """Make a catalog from any folder of audio files plus a tags CSV (your own collection).

    The CSV has one row per track: an id column, optionally a file column (relative to
    ``audio_dir``; otherwise the file is found by id, ``<id>.<ext>`` anywhere below
    ``audio_dir``), optionally an artist and a split column, and one numeric column per
    tag (likelihoods in [0, 1]). Rows that cannot be used are skipped, never silently: each is
    listed in ``catalog.skipped`` (id, CSV row, reason) and summarised in a warning.

    Parameters
    ----------
    audio_dir : path
        Folder with the audio (wav, flac, ogg, mp3, aiff; searched recursively).
    tags_csv : path
        The tags table (comma-, tab- or semicolon-separated, from its header line).
    vocabulary_csv : path, optional
        ``tag, category`` for the tag columns; default: every tag in category ``"Tag"``.
    id_column, path_column, artist_column, split_column : str
        Column names. Without an artist column each track is its own artist; without a split
        column the split is :func:`artist_disjoint_split` ``(artists, fractions, seed)``.
    fractions, seed
        For the split, when the CSV has none.
    min_duration_s : float, default 1.0
        Shorter files are skipped (each file's header is read); 0 keeps every readable file.
    strict : bool
        Raise ``ValueError`` on the first bad row instead of skipping.
    progress : bool
        Progress bar over the audio checks.
    allow_outside : bool, default False
        Accept files outside ``audio_dir`` (an absolute or ``..`` path in the path column, a
        symlink out). Off, such rows are skipped and reported.
    duplicates : {"group", "skip", "error"}, default "group"
        Rows whose audio has the same content as an earlier row's (SHA-256, compared among
        files of equal size): ``"group"`` keeps them, warns, and puts every copy in one split
        (their artists are grouped; a CSV split column that parts them is kept, with a warning
        naming the copies); ``"skip"`` leaves the later copies out (reported in ``skipped``);
        ``"error"`` raises.

    Returns
    -------
    Catalog
        Named after ``audio_dir``, its ``root``; paths are relative to it.

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
    check_choice("duplicates", duplicates, ("group", "skip", "error"))
    if not (is_real(min_duration_s) and 0 <= min_duration_s < math.inf):   # NaN compares False
        raise ValueError(f"min_duration_s must be a number of seconds >= 0, got {min_duration_s!r}")
    if not audio_dir.is_dir():
        raise FileNotFoundError(f"audio folder not found: {audio_dir}")
    name = audio_dir.resolve().name      # "." names the folder it stands for
    df, tag_cols, vocab, vocabulary_csv = _read_tables(tags_csv, vocabulary_csv, id_column, path_column,
                                                       {artist_column, split_column, "duration_s"})
    rows = _Rows(df, df[id_column].astype(str).str.strip(), tags_csv.name, strict)
    values = _check_rows(rows, df[tag_cols], split_column)
    same_as = _locate_audio(rows, audio_dir, path_column, allow_outside, progress, min_duration_s,
                            duplicates)
    keep, skipped = np.flatnonzero(rows.ok), _skipped_frame(*zip(*rows.skipped))
    if keep.size == 0:
        raise ValueError(f"no usable rows in {tags_csv.name}:\n{format_skipped(skipped)}")
    tracks = _tracks(rows, keep, same_as, artist_column, split_column, fractions, seed, audio_dir)
    if len(skipped):
        warnings.warn(f"from_folder({name}): kept {keep.size} track(s); "
                      + format_skipped(skipped), stacklevel=2)
    config = {"audio_dir": str(audio_dir.resolve()), "tags_csv": str(tags_csv.resolve()),
              "vocabulary_csv": str(vocabulary_csv) if vocabulary_csv else None, "seed": seed,
              "fractions": list(map(float, fractions))}
    info = {"name": name, "source": "folder", "format": FORMAT_VERSION, "config": config,
            "n_skipped": len(skipped), "complete": True}
    return Catalog(name=name, root=audio_dir.resolve(), tracks=tracks,
                   tags=values[keep].astype(np.float32), vocabulary=vocab, info=info, skipped=skipped)


def _tracks(rows: "_Rows", keep: np.ndarray, same_as: dict[int, int], artist_column: str,
            split_column: str, fractions, seed: int, audio_dir: Path) -> pd.DataFrame:
    """The ``tracks`` table of the kept rows: artists (a row without one is its own) and the
    split (the CSV's, else artist-disjoint with every copy of a recording in one split)."""
    df = rows.df
    kept_ids = rows.ids.iloc[keep].to_numpy(dtype=str)
    artists = kept_ids.copy()
    if artist_column in df.columns:
        artists = df[artist_column].iloc[keep].astype(str).str.strip().to_numpy()
        artists = np.where(artists == "", kept_ids, artists)     # no artist: its own
    position = {int(r): k for k, r in enumerate(keep)}
    pairs = [(position[r], position[r0]) for r, r0 in same_as.items()]
    # the CSV's own split is kept as it is, with a warning where it parts an artist or a recording
    if split_column in df.columns:
        split = df[split_column].iloc[keep].astype(str).to_numpy()
        spread = pd.DataFrame({"a": artists, "s": split}).groupby("a")["s"].nunique()
        if (spread > 1).any():
            warnings.warn(f"the split column of {rows.csv_name} is not artist-disjoint: "
                          f"{int((spread > 1).sum())} artist(s) appear in several splits, "
                          f"e.g. {list(spread[spread > 1].index[:5])}", stacklevel=3)
        crossing = [(a, b) for a, b in pairs if split[a] != split[b]]
        if crossing:
            warnings.warn(f"the split column of {rows.csv_name} puts one recording in two splits: "
                          + ", ".join(f"{kept_ids[a]} ({split[a]}) = {kept_ids[b]} ({split[b]})"
                                      for a, b in crossing[:10]), stacklevel=3)
    else:
        split = artist_disjoint_split(group_duplicates(artists, pairs), fractions, seed)
    root = audio_dir.resolve()
    # copies that the CSV's own split puts in two splits have had their own warning
    _warn_same_audio([(a, b) for a, b in pairs if split[a] == split[b]], kept_ids,
                     f"from_folder({root.name}): {{}} track(s)")
    return pd.DataFrame({
        "track_id": kept_ids, "artist_id": artists, "split": split,
        "path": [Path(os.path.relpath(rows.paths[r].resolve(), root)).as_posix() for r in keep],
        "duration_s": rows.durations[keep]})


def _read_tables(tags_csv: Path, vocabulary_csv, id_column: str, path_column: str | None, meta: set):
    """The tags table, its tag columns, and the vocabulary (given, or every tag in "Tag")."""
    if not tags_csv.is_file():
        raise FileNotFoundError(f"tags CSV not found: {tags_csv}")
    # every cell as text: an id such as "NA" or "nan" stays a string; tag cells are parsed
    # later, where empty or non-numeric cells become NaN and are reported.
    df = read_table(tags_csv)
    _require_columns(df, [c for c in (id_column, path_column) if c is not None], tags_csv.name,
                     " (pass id_column=... or path_column=... to name others)")
    meta = meta | {id_column, path_column}
    tag_cols = [c for c in df.columns if c not in meta]
    if vocabulary_csv is None:
        vocab = pd.DataFrame({"tag": tag_cols, "category": "Tag"})
    else:
        vocabulary_csv = Path(vocabulary_csv).expanduser()
        if not vocabulary_csv.is_file():
            raise FileNotFoundError(f"vocabulary CSV not found: {vocabulary_csv}")
        vocab = _read_vocabulary(vocabulary_csv, tag_cols, tags_csv.name)
        tag_cols = list(vocab["tag"])
    if not tag_cols:
        raise ValueError(f"{tags_csv.name}: no tag columns (only {list(df.columns)})")
    return df, tag_cols, vocab, vocabulary_csv


class _Rows:
    """The rows of the tags CSV as they pass the checks: which are still usable, their audio
    files and durations, and the ``(id, line, reason)`` of every row left out."""

    def __init__(self, df: pd.DataFrame, ids: pd.Series, csv_name: str, strict: bool):
        self.df, self.ids, self.csv_name, self.strict = df, ids, csv_name, strict
        self.lines = df.attrs["lines"]                 # the line of each row in the file
        self.ok = np.ones(len(df), dtype=bool)
        self.paths: list[Path | None] = [None] * len(df)
        self.durations = np.full(len(df), np.nan)
        self.skipped: list[tuple[str, int, str]] = []

    def skip(self, r: int, reason: str) -> None:
        """Leave row ``r`` out (or, ``strict``, raise)."""
        tid, row = self.ids.iat[r], self.lines[r]
        if self.strict:
            raise ValueError(f"{self.csv_name} row {row} (track_id {tid!r}): {reason}")
        self.ok[r] = False
        self.skipped.append((str(tid), int(row), reason))


def _check_rows(rows: _Rows, tag_text: pd.DataFrame, split_column: str) -> np.ndarray:
    """Row checks (ids, duplicates, tag values, split values); returns the tag values (R, m)."""
    tag_cols = np.array(tag_text.columns)
    text = tag_text.apply(lambda col: col.str.strip())
    values = text.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    missing = text.apply(lambda col: col.str.lower().isin(["", "nan", "na", "n/a", "null"]))
    missing = missing.to_numpy()
    bad, outside = np.isnan(values), (values < 0) | (values > 1)
    split = rows.df[split_column] if split_column in rows.df.columns else None
    first_row: dict[str, int] = {}
    for r, tid in enumerate(rows.ids):
        if tid == "":
            rows.skip(r, "empty track id")
        elif tid in first_row:
            rows.skip(r, f"duplicate track id (first at row {first_row[tid]}, kept)")
        elif bad[r].any():
            what = "missing (NaN)" if missing[r][bad[r]].all() else "not a number"
            rows.skip(r, f"tag value {what} in {tag_cols[bad[r]][:5].tolist()}")
        elif outside[r].any():
            rows.skip(r, f"tag value outside [0, 1] in {tag_cols[outside[r]][:5].tolist()}")
        elif split is not None and str(split.iat[r]) not in SPLITS:
            rows.skip(r, f"split {split.iat[r]!r} is not one of {SPLITS}")
        else:
            first_row[tid] = rows.lines[r]
    return values


def _locate_audio(rows: _Rows, audio_dir: Path, path_column: str | None, allow_outside: bool,
                  progress: bool, min_duration_s: float, duplicates: str) -> dict[int, int]:
    """Each usable row's file (by the path column, else by id among the audio files below
    ``audio_dir``, which notes the files no row names) and its duration from the file header;
    returns :func:`_duplicate_rows`."""
    files = [p for p in audio_dir.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file()]
    by_stem: dict[str, list[Path]] = {}
    for p in files:
        by_stem.setdefault(p.stem, []).append(p)
    real_dir = audio_dir.resolve()
    for r in tqdm(np.flatnonzero(rows.ok), desc="checking audio", unit="file", disable=not progress):
        if path_column is None:
            p, problem = _file_by_id(rows.ids.iat[r], by_stem, audio_dir)
        else:
            rel = str(rows.df[path_column].iat[r])
            p = audio_dir / rel      # an absolute path replaces audio_dir
            problem = None if p.is_file() else f"file not found: {rel}"
        if problem is None and not allow_outside and not p.resolve().is_relative_to(real_dir):
            problem = (f"outside the audio folder: {os.path.relpath(p, audio_dir)} leads to "
                       f"{p.resolve()} (pass allow_outside=True to allow)")
        if problem is None:
            dur, problem = _audio_duration(p)
            if problem is None and dur < min_duration_s:
                problem = f"too short ({dur:.2f} s < {min_duration_s} s)"
            rows.durations[r] = dur if problem is None else np.nan
        if problem is not None:
            rows.skip(r, problem)
            continue
        rows.paths[r] = p
    same_as = _duplicate_rows(rows, duplicates)
    if path_column is None:   # audio files that no row names (unknown ids): reported, not ignored
        listed = set(rows.ids)
        rows.skipped += [(f.stem, -1, "unknown id: audio file has no row in the tags CSV")
                         for f in sorted(files) if f.stem not in listed]
    return same_as


def _file_by_id(tid: str, by_stem: dict[str, list[Path]],
                audio_dir: Path) -> tuple[Path | None, str | None]:
    """(file, None) of the one audio file named ``<tid>.<ext>``, or (None, why not)."""
    cands = by_stem.get(tid, [])
    if not cands:
        return None, (f"file not found: no {tid}.<{'|'.join(e[1:] for e in AUDIO_EXTENSIONS)}> "
                      f"below {audio_dir.name}/")
    if len(cands) > 1:
        return None, f"ambiguous: {len(cands)} audio files named {tid}.*"
    return cands[0], None


def _duplicate_rows(rows: _Rows, duplicates: str) -> dict[int, int]:
    """One recording under several ids: ``{row: row of the first copy}`` (kept in one split),
    or the later copies skipped, or an error, as ``duplicates`` says."""
    usable = np.flatnonzero(rows.ok)
    same_as: dict[int, int] = {}
    for k, first in sorted(duplicate_audio([rows.paths[r] for r in usable]).items()):
        r, r0 = int(usable[k]), int(usable[first])
        if duplicates == "skip":
            rows.skip(r, f"same audio as track {rows.ids.iat[r0]!r} (line {rows.lines[r0]}): "
                         "duplicate recording")
        else:
            same_as[r] = r0
    if same_as and duplicates == "error":
        r, r0 = next(iter(same_as.items()))
        raise ValueError(f"{rows.csv_name}: {len(same_as)} row(s) name the same audio as another, "
                         f"e.g. line {rows.lines[r]} ({rows.ids.iat[r]!r}) and line {rows.lines[r0]} "
                         f"({rows.ids.iat[r0]!r})")
    return same_as

