"""MagnaTagATune (MTAT) from a local folder: tags, artists, artist-disjoint splits, fixtures.

No MTAT file can be installed from a package registry, so this module reads the folder a user
already has::

    <folder>/annotations_final.csv   clip_id, 188 tag columns (0/1), mp3_path
    <folder>/clip_info_final.csv     clip_id, track_number, title, artist, album, url,
                                     segmentStart, segmentEnd, original_url, mp3_path
    <folder>/comparisons_final.csv   see mrlib.odd_one_out
    <folder>/[mp3/|audio/]0/ ... f/  the mp3 clips, at the paths the tables name

All three tables are tab-separated with a header row. In the release every field is in double
quotes and lines end with CRLF (seen for ``annotations_final.csv`` in a public reader; the
other two are read the same way, and bare fields or LF line ends work too).
:func:`load_catalog` turns the folder into a :class:`mrlib.catalog.Catalog` (tags in [0, 1],
artists from ``clip_info_final.csv``, an artist-disjoint train/val/test split, the tag
vocabulary with the five categories of the 2020 paper). :func:`write_fixture` writes a small
folder in exactly this format, with tiny generated mp3 clips, for tests and offline lessons.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from mrlib.catalog_format import (Catalog, _skipped_frame, _warn_same_audio, artist_disjoint_split,
                                  duplicate_audio, group_duplicates)
from mrlib.checks import check_choice
from mrlib.odd_one_out import ID_COLUMNS, read_comparisons
from mrlib.mtat_fixture import FixtureInfo, write_fixture
from mrlib.mtat_format import (ANNOTATIONS_FILE, CATEGORIES, CLIP_INFO_COLUMNS, CLIP_INFO_FILE,
                               COMPARISONS_FILE, MTAT_TAGS, TAG_CATEGORIES, _require_file,
                               read_annotations, read_clip_info, tag_category)
from mrlib.paths import data_dir

__all__ = [
    "ANNOTATIONS_FILE", "CLIP_INFO_FILE", "COMPARISONS_FILE", "CLIP_INFO_COLUMNS", "MTAT_TAGS",
    "TAG_CATEGORIES", "CATEGORIES", "MTATReport", "FixtureInfo", "tag_category",
    "read_annotations", "read_clip_info", "catalog_frames", "load_catalog", "write_fixture"
]


# --------------------------------------------------------------------------------------------
# the catalog
# --------------------------------------------------------------------------------------------
@dataclass
class MTATReport:
    """What :func:`catalog_frames` dropped (clips without usable audio) and why.

    Attributes
    ----------
    n_clips : int
        Clips in the annotations (after ``subset``).
    audio_root : Path or None
        Folder the mp3 paths are relative to (None when audio was not checked).
    ids : list of int
        Clip ids dropped.
    reasons : list of str
        One reason per dropped clip ("missing: ...", "empty: ...").
    rows : list of int
        Their data rows in ``annotations_final.csv`` (0 = first clip).

    Notebook: 08_triplet_matchnet.ipynb
    """

    n_clips: int
    audio_root: Path | None
    ids: list = field(default_factory=list)
    reasons: list = field(default_factory=list)
    rows: list = field(default_factory=list)

    def __str__(self) -> str:
        head = f"MTAT: {self.n_clips - len(self.ids)} of {self.n_clips} clips kept"
        if not self.ids:
            return head
        by_reason = pd.Series([r.split(":")[0] for r in self.reasons]).value_counts()
        detail = ", ".join(f"{n} {r}" for r, n in by_reason.items())
        shown = ", ".join(str(i) for i in self.ids[:10]) + (" ..." if len(self.ids) > 10 else "")
        return f"{head}; skipped {len(self.ids)} ({detail}): clip ids {shown}"


def _find_audio_root(folder: Path, mp3_paths: Sequence[str], audio_dir, required: bool = True) -> Path:
    candidates = [Path(audio_dir)] if audio_dir is not None else [
        folder, folder / "mp3", folder / "audio"]
    probe = [p for p in list(mp3_paths)[:50] if p]
    hits = [sum((cand / p).is_file() for p in probe) for cand in candidates]
    if probe and max(hits) == 0 and required:
        raise FileNotFoundError(
            f"no mp3 clip found under {', '.join(str(c) for c in candidates)} "
            f"(looked for e.g. {probe[0]!r}); pass audio_dir= the folder that holds 0/ ... f/, "
            "or check_audio=False to load tags and comparisons without audio"
        )
    return candidates[hits.index(max(hits))]    # the first with the most clips


def catalog_frames(
    folder: str | Path | None = None,
    *,
    audio_dir: str | Path | None = None,
    subset: str = "all",
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
    seed: int = 0,
    check_audio: bool = True,
    allow_outside: bool = False,
) -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame, MTATReport]:
    """The parts of the MTAT catalog as plain tables (what :func:`load_catalog` wraps).

    Parameters
    ----------
    folder : str or Path, optional
        The MTAT folder (default ``mrlib.paths.data_dir() / "mtat"``).
    audio_dir : str or Path, optional
        Folder the ``mp3_path`` entries are relative to; default: the first of ``folder``,
        ``folder/mp3``, ``folder/audio`` where the clips are found.
    subset : {"all", "compared"}, default "all"
        ``"compared"`` keeps only the clips that appear in ``comparisons_final.csv`` (about a
        thousand: what the 2017 protocol needs, without featurising all 25,863 clips).
    fractions : (float, float, float), default (0.6, 0.2, 0.2)
        Shares of clips for the artist-disjoint train/val/test split
        (:func:`mrlib.catalog.artist_disjoint_split`, the suite's one split rule).
    seed : int, default 0
        Seed of the split.
    check_audio : bool, default True
        Drop (and report) clips whose mp3 is missing or empty (0 bytes: the release is known
        to hold a few empty files). Decoding problems are left to the feature extractors
        (:func:`mrlib.audio.load_audio` reports them). With False, every annotated clip is
        kept; the audio folder is still located when the clips can be found. Clips whose
        mp3 has the same content as another's (SHA-256 among files of equal size) are
        reported in a warning and kept in the same split.
    allow_outside : bool, default False
        Accept ``mp3_path`` entries that lead outside the audio folder (absolute, ``..``, or
        a symlink out); otherwise such clips are dropped and reported.

    Returns
    -------
    tracks : pandas.DataFrame
        ``track_id`` (the MTAT clip id, int64), ``artist_id`` (artist name, str), ``split``,
        ``path`` (relative to ``folder`` when inside it, else absolute; str), ``duration_s``
        (segmentEnd - segmentStart, float64, NaN if unknown), plus ``title`` and ``album``.
    tags : numpy.ndarray of float32, shape (N, m)
        Tag matrix in [0, 1] (0/1 in the release).
    vocabulary : pandas.DataFrame
        ``tag, category`` for the m columns of ``tags``.
    report : MTATReport
        Clips dropped for missing audio.

    Raises
    ------
    FileNotFoundError
        A release table is missing.
    ValueError
        A release table lacks one of its columns (:data:`mrlib.mtat_format.CLIP_INFO_COLUMNS`
        for ``clip_info_final.csv``); the message names the file and the columns.

    Notebook: 08_triplet_matchnet.ipynb
    """
    folder = Path(data_dir() / "mtat" if folder is None else folder)
    check_choice("subset", subset, ("all", "compared"))
    # a missing folder is named by read_annotations, with what it must hold
    ann = read_annotations(folder / ANNOTATIONS_FILE)
    info = read_clip_info(folder / CLIP_INFO_FILE)
    tag_frame = ann.drop(columns=["clip_id", "mp3_path"])
    keep = np.ones(len(ann), dtype=bool)
    if subset == "compared":
        comp = read_comparisons(_require_file(folder / COMPARISONS_FILE))
        keep &= ann.clip_id.isin(np.unique(comp[list(ID_COLUMNS)].to_numpy())).to_numpy()
    report = MTATReport(n_clips=int(keep.sum()), audio_root=None)
    # Unchecked audio need not be found, but paths still point where the clips are if they are.
    root = _find_audio_root(folder, ann.mp3_path[keep].tolist(), audio_dir, required=check_audio)
    if check_audio:
        _drop_unusable_audio(ann, keep, root, allow_outside, report)
    ann = ann.loc[keep].reset_index(drop=True)
    if len(ann) == 0:
        raise ValueError(f"no MTAT clip left in {folder} (subset={subset!r}); {report}")
    tracks = _tracks(ann, info, folder, root, fractions, seed, check_audio)
    vocabulary = pd.DataFrame({"tag": list(tag_frame.columns), "category": list(map(tag_category, tag_frame.columns))})
    return tracks, tag_frame.loc[keep].to_numpy(np.float32), vocabulary, report


def _drop_unusable_audio(ann: pd.DataFrame, keep: np.ndarray, root: Path, allow_outside: bool,
                         report: MTATReport) -> None:
    """Unset ``keep`` of the clips whose mp3 is missing, empty or outside ``root``; report them."""
    report.audio_root = root
    real_root = root.resolve()
    for i in np.flatnonzero(keep):
        p = root / ann.mp3_path.iat[i]
        if not ann.mp3_path.iat[i] or not p.is_file():
            reason = f"missing: no file {ann.mp3_path.iat[i]!r} under {root}"
        elif not allow_outside and not p.resolve().is_relative_to(real_root):
            reason = (f"outside the audio folder: {ann.mp3_path.iat[i]!r} leads to "
                      f"{p.resolve()} (pass allow_outside=True to allow)")
        elif p.stat().st_size == 0:
            reason = "empty: 0 bytes"
        else:
            continue
        keep[i] = False
        report.ids.append(int(ann.clip_id.iat[i]))
        report.reasons.append(reason)
        report.rows.append(int(i))


def _tracks(ann: pd.DataFrame, info: pd.DataFrame, folder: Path, root: Path, fractions, seed: int,
            check_audio: bool) -> pd.DataFrame:
    """The ``tracks`` table of the kept clips: artists from the clip info, the artist-disjoint
    split (copies of one recording kept together), paths relative to ``folder`` when inside it."""
    info = info.drop_duplicates("clip_id").set_index("clip_id").reindex(ann.clip_id)
    artist = info["artist"].fillna("").astype(str).str.strip().to_numpy(dtype=str)
    # A clip without an artist becomes its own artist: it can sit in any split without
    # leaking another artist's material.
    artist = np.where(artist == "", "unknown-artist-" + ann.clip_id.astype(str).to_numpy(), artist)
    base, real_folder = root.resolve(), folder.resolve()
    if base.is_relative_to(real_folder):    # paths relative to the folder; absolute outside it
        base = base.relative_to(real_folder)
    pairs = sorted(duplicate_audio([root / p for p in ann.mp3_path]).items()) if check_audio else []
    _warn_same_audio(pairs, ann.clip_id.to_numpy(), "{} MTAT clip(s)")
    return pd.DataFrame({
        "track_id": ann.clip_id.to_numpy(np.int64),
        "artist_id": artist.astype(str),
        "split": artist_disjoint_split(group_duplicates(artist, pairs), fractions, seed),
        "path": [(base / p).as_posix() for p in ann.mp3_path],
        "duration_s": (info["segmentEnd"] - info["segmentStart"]).to_numpy(float),
        "title": info["title"].fillna("").astype(str).to_numpy(),
        "album": info["album"].fillna("").astype(str).to_numpy(),
    })


def load_catalog(folder: str | Path | None = None, *, verbose: bool = True, **kwargs):
    """Load MagnaTagATune from a local folder as a :class:`mrlib.catalog.Catalog`.

    ``mrlib.catalog.load("mtat", folder=...)`` calls this.

    Parameters
    ----------
    folder : str or Path, optional
        The MTAT folder (default ``mrlib.paths.data_dir() / "mtat"``); see the module
        docstring for its layout.
    verbose : bool, default True
        Print the report of skipped clips when there are any.
    **kwargs
        Passed to :func:`catalog_frames`: ``audio_dir``, ``subset``, ``fractions``, ``seed``,
        ``check_audio``, ``allow_outside``.

    Returns
    -------
    mrlib.catalog.Catalog
        ``name="mtat"``, ``root=folder``; ``tracks`` [track_id (the MTAT clip id, as str in
        the Catalog), artist_id, split, path (relative to root), duration_s, title, album];
        ``tags`` float32 (N, m) in [0, 1]; ``vocabulary`` [tag, category]; ``skipped`` the
        clips left out (``track_id, row, reason``); ``info`` the loading options.

    Notebook: 08_triplet_matchnet.ipynb
    """
    folder = data_dir() / "mtat" if folder is None else folder
    tracks, tags, vocabulary, report = catalog_frames(folder, **kwargs)
    if verbose and report.ids:
        print(report)
    # as given: Catalog.save writes a tuple as a list and a path as text (json)
    info = {"source": "mtat", "folder": folder, "audio_root": report.audio_root, **kwargs}
    skipped = _skipped_frame([str(i) for i in report.ids], report.rows, report.reasons)
    return Catalog(name="mtat", root=Path(folder), tracks=tracks, tags=tags,
                   vocabulary=vocabulary, info=info, skipped=skipped)
