"""MagnaTagATune (MTAT) from a local folder: tags, artists, artist-disjoint splits, fixtures.

No MTAT file can be installed from a package registry, so this module reads the folder a user
already has::

    <folder>/annotations_final.csv   clip_id, 188 tag columns (0/1), mp3_path
    <folder>/clip_info_final.csv     clip_id, track_number, title, artist, album, url,
                                     segmentStart, segmentEnd, original_url, mp3_path
    <folder>/comparisons_final.csv   see mrlib.comparisons
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

import csv
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from mrlib.comparisons import simulate_votes, write_comparisons

__all__ = [
    "ANNOTATIONS_FILE",
    "CLIP_INFO_FILE",
    "COMPARISONS_FILE",
    "CLIP_INFO_COLUMNS",
    "MTAT_TAGS",
    "TAG_CATEGORIES",
    "CATEGORIES",
    "SYNONYMS",
    "MTATReport",
    "FixtureInfo",
    "tag_category",
    "read_annotations",
    "read_clip_info",
    "catalog_frames",
    "load_catalog",
    "write_fixture",
]

ANNOTATIONS_FILE = "annotations_final.csv"
CLIP_INFO_FILE = "clip_info_final.csv"
COMPARISONS_FILE = "comparisons_final.csv"
CLIP_INFO_COLUMNS = ("clip_id", "track_number", "title", "artist", "album", "url",
                     "segmentStart", "segmentEnd", "original_url", "mp3_path")

#: The 188 tag columns of ``annotations_final.csv``, in file order (misspellings included:
#: "clasical", "harpsicord" are separate columns in the release).
MTAT_TAGS: tuple[str, ...] = (
    "no voice", "singer", "duet", "plucking", "hard rock", "world", "bongos", "harpsichord",
    "female singing", "clasical", "sitar", "chorus", "female opera", "male vocal", "vocals",
    "clarinet", "heavy", "silence", "beats", "men", "woodwind", "funky", "no strings", "chimes",
    "foreign", "no piano", "horns", "classical", "female", "no voices", "soft rock", "eerie",
    "spacey", "jazz", "guitar", "quiet", "no beat", "banjo", "electric", "solo", "violins",
    "folk", "female voice", "wind", "happy", "ambient", "new age", "synth", "funk",
    "no singing", "middle eastern", "trumpet", "percussion", "drum", "airy", "voice",
    "repetitive", "birds", "space", "strings", "bass", "harpsicord", "medieval", "male voice",
    "girl", "keyboard", "acoustic", "loud", "classic", "string", "drums", "electronic",
    "not classical", "chanting", "no violin", "not rock", "no guitar", "organ", "no vocal",
    "talking", "choral", "weird", "opera", "soprano", "fast", "acoustic guitar",
    "electric guitar", "male singer", "man singing", "classical guitar", "country", "violin",
    "electro", "reggae", "tribal", "dark", "male opera", "no vocals", "irish", "electronica",
    "horn", "operatic", "arabic", "lol", "low", "instrumental", "trance", "chant", "strange",
    "drone", "synthesizer", "heavy metal", "modern", "disco", "bells", "man", "deep",
    "fast beat", "industrial", "hard", "harp", "no flute", "jungle", "pop", "lute",
    "female vocal", "oboe", "mellow", "orchestral", "viola", "light", "echo", "piano",
    "celtic", "male vocals", "orchestra", "eastern", "old", "flutes", "punk", "spanish", "sad",
    "sax", "slow", "male", "blues", "vocal", "indian", "no singer", "scary", "india", "woman",
    "woman singing", "rock", "dance", "piano solo", "guitars", "no drums", "jazzy", "singing",
    "cello", "calm", "female vocals", "voices", "different", "techno", "clapping", "house",
    "monks", "flute", "not opera", "not english", "oriental", "beat", "upbeat", "soft",
    "noise", "choir", "female singer", "rap", "metal", "hip hop", "quick", "water", "baroque",
    "women", "fiddle", "english",
)

CATEGORIES = ("Genre", "Recording", "Mood", "Movement", "Lyrics", "Other")

# The 2020 paper's categories, mapped onto MTAT's free-form player tags. Judgement calls are
# commented; anything unlisted (including tags a user's own file adds) is "Other".
_GENRE = (
    "hard rock", "world", "clasical", "classical", "classic", "soft rock", "jazz", "jazzy",
    "folk", "ambient", "new age", "funk", "funky", "middle eastern", "medieval", "baroque",
    "electronic", "electronica", "electro", "not classical", "not rock", "opera", "not opera",
    "country", "reggae", "tribal", "irish", "celtic", "arabic", "trance", "heavy metal",
    "metal", "disco", "industrial", "jungle", "pop", "eastern", "oriental", "punk", "spanish",
    "blues", "indian", "india", "rock", "dance", "techno", "house", "rap", "hip hop",
    "foreign",   # regional style; players also use it for non-English singing
)
# Instrumentation, voices and production ("Recording" in the 2020 paper).
_RECORDING = (
    "no voice", "singer", "duet", "plucking", "bongos", "harpsichord", "harpsicord",
    "female singing", "sitar", "chorus", "female opera", "male vocal", "vocals", "clarinet",
    "silence", "men", "woodwind", "no strings", "chimes", "no piano", "horns", "female",
    "no voices", "guitar", "guitars", "banjo", "electric", "solo", "violins", "female voice",
    "wind", "synth", "no singing", "trumpet", "percussion", "drum", "drums", "voice", "voices",
    "birds", "strings", "string", "bass", "male voice", "girl", "keyboard", "acoustic",
    "chanting", "chant", "no violin", "no guitar", "organ", "no vocal", "no vocals", "talking",
    "choral", "choir", "soprano", "acoustic guitar", "electric guitar", "male singer",
    "man singing", "classical guitar", "violin", "fiddle", "male opera", "horn", "operatic",
    "instrumental", "drone", "synthesizer", "bells", "man", "harp", "no flute", "lute",
    "female vocal", "female vocals", "female singer", "oboe", "orchestral", "orchestra",
    "viola", "echo", "piano", "piano solo", "male vocals", "flutes", "flute", "sax", "male",
    "vocal", "no singer", "woman", "woman singing", "women", "no drums", "singing", "cello",
    "clapping", "monks", "noise", "water",
)
_MOOD = (
    "heavy", "eerie", "spacey", "space", "quiet", "happy", "airy", "loud", "weird", "strange",
    "dark", "deep", "hard", "low", "mellow", "light", "sad", "scary", "calm", "soft",
)
# Tempo and rhythm words ("Movement").
_MOVEMENT = (
    "fast", "slow", "quick", "beat", "beats", "no beat", "fast beat", "upbeat", "repetitive",
)
# Language of the lyrics.
_LYRICS = ("english", "not english")
_OTHER = ("lol", "different", "modern", "old")

TAG_CATEGORIES: dict[str, str] = {}
for _cat, _tags in (("Genre", _GENRE), ("Recording", _RECORDING), ("Mood", _MOOD),
                    ("Movement", _MOVEMENT), ("Lyrics", _LYRICS), ("Other", _OTHER)):
    for _t in _tags:
        if _t in TAG_CATEGORIES:
            raise RuntimeError(f"tag {_t!r} listed in two categories")  # guards the table above
        TAG_CATEGORIES[_t] = _cat

#: Groups of MTAT tags that name the same thing; with ``merge_synonyms=True`` each group
#: becomes one tag named after its first member, present if any member is.
SYNONYMS: tuple[tuple[str, ...], ...] = (
    ("classical", "clasical", "classic"),
    ("harpsichord", "harpsicord"),
    ("beat", "beats"),
    ("drums", "drum"),
    ("guitar", "guitars"),
    ("violin", "violins", "fiddle"),
    ("strings", "string"),
    ("flute", "flutes"),
    ("horns", "horn"),
    ("synth", "synthesizer"),
    ("choir", "choral", "chorus"),
    ("chant", "chanting"),
    ("opera", "operatic"),
    ("orchestra", "orchestral"),
    ("india", "indian"),
    ("jazz", "jazzy"),
    ("electronic", "electronica", "electro"),
    ("weird", "strange"),
    ("space", "spacey"),
    ("fast", "quick"),
    ("vocal", "vocals", "voice", "voices", "singing", "singer"),
    ("female vocal", "female vocals", "female voice", "female singer", "female singing",
     "female", "woman", "woman singing", "women", "girl"),
    ("male vocal", "male vocals", "male voice", "male singer", "man singing", "male", "man",
     "men"),
    ("no vocal", "no vocals", "no voice", "no voices", "no singing", "no singer",
     "instrumental"),
    ("no beat", "no drums"),
)


def tag_category(tag: str) -> str:
    """Category of an MTAT tag: Genre, Recording, Mood, Movement, Lyrics or Other.

    Parameters
    ----------
    tag : str
        A tag name (case and surrounding spaces are ignored).

    Returns
    -------
    str
        One of :data:`CATEGORIES`; "Other" for a tag not in :data:`TAG_CATEGORIES`.

    Notebook: 08_triplet_matchnet.ipynb
    """
    if not isinstance(tag, str):
        raise TypeError(f"tag must be a str, got {type(tag).__name__}")
    return TAG_CATEGORIES.get(tag.strip().lower(), "Other")


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------
def _require_file(folder: Path, name: str) -> Path:
    path = folder / name
    if not path.is_file():
        raise FileNotFoundError(
            f"MagnaTagATune file missing: {path}. The folder must hold {ANNOTATIONS_FILE}, "
            f"{CLIP_INFO_FILE} and {COMPARISONS_FILE} (tab-separated, from the MTAT release) "
            "and the mp3 clips in the sub-folders 0 ... f that the tables name."
        )
    return path


def _read_tsv(path: Path) -> pd.DataFrame:
    # Everything as text first: ids, paths and titles stay verbatim; numbers are checked.
    # read_table names the file and line of an encoding, quoting or row-length problem and
    # refuses duplicate column names (two tags of one name).
    from mrlib.catalog import read_table  # lazy: mrlib.catalog imports this module

    return read_table(path, sep="\t")


def _int_column(df: pd.DataFrame, col: str, where: Path) -> np.ndarray:
    values = pd.to_numeric(df[col], errors="coerce")
    if values.isna().any() or (values != np.round(values)).any():
        bad = df.loc[values.isna() | (values != np.round(values)), col].head(3).tolist()
        raise ValueError(f"{where}: column {col!r} must hold integer ids, found e.g. {bad}")
    return values.to_numpy(np.int64)


def read_annotations(path: str | Path) -> pd.DataFrame:
    """Read ``annotations_final.csv``: one row per clip, its tags (0/1) and its mp3 path.

    Parameters
    ----------
    path : str or Path
        The tab-separated file: ``clip_id``, the tag columns, ``mp3_path`` (last).

    Returns
    -------
    pandas.DataFrame
        ``clip_id`` (int64), one float32 column per tag in file order, ``mp3_path`` (str).

    Raises
    ------
    FileNotFoundError, ValueError
        Missing file; missing ``clip_id``/``mp3_path``; duplicate clip ids; tag values that
        are not numbers in [0, 1].

    Notebook: 08_triplet_matchnet.ipynb
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotations file not found: {path} (expected {ANNOTATIONS_FILE})")
    df = _read_tsv(path)
    for col in ("clip_id", "mp3_path"):
        if col not in df.columns:
            raise ValueError(f"{path}: no {col!r} column; {ANNOTATIONS_FILE} has clip_id, "
                             f"the tag columns and mp3_path, got {list(df.columns)[:5]}...")
    tag_cols = [c for c in df.columns if c not in ("clip_id", "mp3_path")]
    if not tag_cols:
        raise ValueError(f"{path}: no tag columns between clip_id and mp3_path")
    out = pd.DataFrame({"clip_id": _int_column(df, "clip_id", path)})
    if out.clip_id.duplicated().any():
        dup = out.clip_id[out.clip_id.duplicated()].head(3).tolist()
        raise ValueError(f"{path}: clip ids must be unique, repeated e.g. {dup}")
    tags = df[tag_cols].apply(pd.to_numeric, errors="coerce").to_numpy(np.float32)
    if not np.isfinite(tags).all() or tags.min(initial=0) < 0 or tags.max(initial=0) > 1:
        raise ValueError(f"{path}: tag values must be numbers in [0, 1]")
    out = pd.concat([out, pd.DataFrame(tags, columns=tag_cols)], axis=1)
    out["mp3_path"] = df["mp3_path"].astype(str).to_numpy()
    return out


def read_clip_info(path: str | Path) -> pd.DataFrame:
    """Read ``clip_info_final.csv``: title, artist, album and segment of each clip.

    Parameters
    ----------
    path : str or Path
        The tab-separated file with the columns :data:`CLIP_INFO_COLUMNS`.

    Returns
    -------
    pandas.DataFrame
        Those columns; ``clip_id`` int64, ``segmentStart``/``segmentEnd`` float64 seconds
        (NaN where not a number), the rest str.

    Notebook: 08_triplet_matchnet.ipynb
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"clip info file not found: {path} (expected {CLIP_INFO_FILE})")
    df = _read_tsv(path)
    missing = [c for c in ("clip_id", "artist") if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; {CLIP_INFO_FILE} has "
                         f"{list(CLIP_INFO_COLUMNS)}")
    out = df.copy()
    out["clip_id"] = _int_column(df, "clip_id", path)
    for col in ("segmentStart", "segmentEnd"):
        if col in out.columns:
            out[col] = pd.to_numeric(out[col], errors="coerce").astype(np.float64)
    return out


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

    @property
    def count(self) -> int:
        """Number of dropped clips (int).

        Notebook: 08_triplet_matchnet.ipynb
        """
        return len(self.ids)

    def to_frame(self) -> pd.DataFrame:
        """The dropped clips as a table.

        Returns
        -------
        pandas.DataFrame
            ``track_id`` (str), ``row`` (int64, data row in ``annotations_final.csv``),
            ``reason`` (str): the layout of ``mrlib.catalog.Catalog.skipped``.

        Notebook: 08_triplet_matchnet.ipynb
        """
        return pd.DataFrame({"track_id": pd.Series([str(i) for i in self.ids], dtype=str),
                             "row": pd.Series(self.rows, dtype="int64"),
                             "reason": pd.Series(self.reasons, dtype=str)})

    def __str__(self) -> str:
        head = f"MTAT: {self.n_clips - self.count} of {self.n_clips} clips kept"
        if not self.count:
            return head
        by_reason = pd.Series([r.split(":")[0] for r in self.reasons]).value_counts()
        detail = ", ".join(f"{n} {r}" for r, n in by_reason.items())
        shown = ", ".join(str(i) for i in self.ids[:10]) + (" ..." if self.count > 10 else "")
        return f"{head}; skipped {self.count} ({detail}): clip ids {shown}"


def _find_audio_root(folder: Path, mp3_paths: Sequence[str], audio_dir, required: bool = True) -> Path:
    candidates = [Path(audio_dir)] if audio_dir is not None else [
        folder, folder / "mp3", folder / "audio"]
    probe = [p for p in list(mp3_paths)[:50] if p]
    best, best_hits = candidates[0], -1
    for cand in candidates:
        hits = sum((cand / p).is_file() for p in probe)
        if hits > best_hits:
            best, best_hits = cand, hits
    if probe and best_hits == 0 and required:
        raise FileNotFoundError(
            f"no mp3 clip found under {', '.join(str(c) for c in candidates)} "
            f"(looked for e.g. {probe[0]!r}); pass audio_dir= the folder that holds 0/ ... f/, "
            "or check_audio=False to load tags and comparisons without audio"
        )
    return best


def _merge_synonyms(tags: pd.DataFrame) -> pd.DataFrame:
    out = tags.copy()
    for group in SYNONYMS:
        present = [t for t in group if t in out.columns]
        if len(present) < 2:
            continue
        merged = out[present].max(axis=1)
        out = out.drop(columns=present[1:])
        out[present[0]] = merged
    return out


def catalog_frames(
    folder: str | Path | None = None,
    *,
    audio_dir: str | Path | None = None,
    subset: str = "all",
    merge_synonyms: bool = False,
    top_k: int | None = None,
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
    merge_synonyms : bool, default False
        Merge the tag groups in :data:`SYNONYMS` (max over members).
    top_k : int, optional
        Keep the ``top_k`` most frequent tags (after merging; counted over all annotated clips,
        ties broken by file order), e.g. 50 as in most MTAT tagging work.
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

    Notebook: 08_triplet_matchnet.ipynb
    """
    if folder is None:
        from mrlib.paths import data_dir

        folder = data_dir() / "mtat"
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"MagnaTagATune folder not found: {folder}. It must hold {ANNOTATIONS_FILE}, "
            f"{CLIP_INFO_FILE}, {COMPARISONS_FILE} and the mp3 clips (folders 0 ... f)."
        )
    if subset not in ("all", "compared"):
        raise ValueError(f"subset must be 'all' or 'compared', got {subset!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer))
                              or top_k < 1):
        raise ValueError(f"top_k must be a positive integer or None, got {top_k!r}")

    from mrlib.catalog import artist_disjoint_split  # lazy: mrlib.catalog imports this module

    ann = read_annotations(_require_file(folder, ANNOTATIONS_FILE))
    info = read_clip_info(_require_file(folder, CLIP_INFO_FILE))
    tag_frame = ann.drop(columns=["clip_id", "mp3_path"])
    if merge_synonyms:
        tag_frame = _merge_synonyms(tag_frame)
    if top_k is not None:
        freq = tag_frame.sum(axis=0).to_numpy()
        order = np.argsort(-freq, kind="stable")[:top_k]
        tag_frame = tag_frame.iloc[:, np.sort(order)]

    keep = np.ones(len(ann), dtype=bool)
    if subset == "compared":
        from mrlib.comparisons import ID_COLUMNS, read_comparisons

        comp = read_comparisons(_require_file(folder, COMPARISONS_FILE))
        keep &= ann.clip_id.isin(np.unique(comp[list(ID_COLUMNS)].to_numpy())).to_numpy()

    report = MTATReport(n_clips=int(keep.sum()), audio_root=None)
    if check_audio:
        root = _find_audio_root(folder, ann.mp3_path[keep].tolist(), audio_dir)
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
    else:
        # Paths still point where the clips are, if they can be found (no error if not).
        root = _find_audio_root(folder, ann.mp3_path[keep].tolist(), audio_dir, required=False)

    ann = ann.loc[keep].reset_index(drop=True)
    tags = tag_frame.loc[keep].to_numpy(np.float32)
    if len(ann) == 0:
        raise ValueError(f"no MTAT clip left in {folder} (subset={subset!r}); {report}")

    info = info.drop_duplicates("clip_id").set_index("clip_id")
    info = info.reindex(ann.clip_id)
    artist = info["artist"].fillna("").astype(str).str.strip().to_numpy(dtype=object)
    no_artist = artist == ""
    # A clip without an artist becomes its own artist: it can sit in any split without
    # leaking another artist's material.
    artist[no_artist] = [f"unknown-artist-{c}" for c in ann.clip_id[no_artist]]
    duration = (info.get("segmentEnd", pd.Series(np.nan, index=info.index))
                - info.get("segmentStart", pd.Series(np.nan, index=info.index))).to_numpy(float)

    try:
        rel_root = root.resolve().relative_to(folder.resolve())
        paths = [(rel_root / p).as_posix() for p in ann.mp3_path]
    except ValueError:                                  # audio outside the folder
        paths = [(root.resolve() / p).as_posix() for p in ann.mp3_path]
    groups = artist.astype(str)
    if check_audio:
        from mrlib.catalog import _group_duplicates, duplicate_audio

        pairs = sorted(duplicate_audio([root / p for p in ann.mp3_path]).items())
        if pairs:
            warnings.warn(f"{len(pairs)} MTAT clip(s) have the same audio as another (kept in "
                          "the same split): " + ", ".join(
                              f"{ann.clip_id.iat[a]} = {ann.clip_id.iat[b]}" for a, b in pairs[:10]),
                          stacklevel=2)
            groups = _group_duplicates(groups, pairs)
    tracks = pd.DataFrame({
        "track_id": ann.clip_id.to_numpy(np.int64),
        "artist_id": artist.astype(str),
        "split": artist_disjoint_split(groups, fractions, seed),
        "path": paths,
        "duration_s": duration,
        "title": info["title"].fillna("").astype(str).to_numpy() if "title" in info else "",
        "album": info["album"].fillna("").astype(str).to_numpy() if "album" in info else "",
    })
    vocabulary = pd.DataFrame({"tag": list(tag_frame.columns),
                               "category": [tag_category(t) for t in tag_frame.columns]})
    return tracks, tags, vocabulary, report


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
        Passed to :func:`catalog_frames`: ``audio_dir``, ``subset``, ``merge_synonyms``,
        ``top_k``, ``fractions``, ``seed``, ``check_audio``.

    Returns
    -------
    mrlib.catalog.Catalog
        ``name="mtat"``, ``root=folder``; ``tracks`` [track_id (the MTAT clip id, as str in
        the Catalog), artist_id, split, path (relative to root), duration_s, title, album];
        ``tags`` float32 (N, m) in [0, 1]; ``vocabulary`` [tag, category]; ``skipped`` the
        clips left out (``track_id, row, reason``); ``info`` the loading options.

    Notebook: 08_triplet_matchnet.ipynb
    """
    from mrlib.catalog import Catalog  # lazy: mrlib.catalog imports this module

    if folder is None:
        from mrlib.paths import data_dir

        folder = data_dir() / "mtat"
    tracks, tags, vocabulary, report = catalog_frames(folder, **kwargs)
    if verbose and report.count:
        print(report)
    info = {"source": "mtat", "folder": str(folder),
            "audio_root": None if report.audio_root is None else str(report.audio_root),
            **{k: (list(v) if isinstance(v, tuple) else v if not isinstance(v, Path) else str(v))
               for k, v in kwargs.items()}}
    return Catalog(name="mtat", root=Path(folder), tracks=tracks, tags=tags,
                   vocabulary=vocabulary, info=info, skipped=report.to_frame())


# --------------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------------
@dataclass
class FixtureInfo:
    """What :func:`write_fixture` wrote.

    Attributes
    ----------
    folder : Path
    files : dict of str -> Path
        ``annotations``, ``clip_info``, ``comparisons``.
    clip_ids : numpy.ndarray of int64, shape (N,)
        Clip ids in annotation order (not 0 ... N-1: ids and indices must not be confused).
    artists : numpy.ndarray of str, shape (N,)
    S : numpy.ndarray of float64, shape (N, N)
        The similarity the simulated players voted by (cosine of the clips' latent style).
    style : numpy.ndarray of float64, shape (N, 3)
        Latent (pitch, brightness, noisiness) of each clip, in [0, 1]: what the audio encodes.
    broken : list of int
        Clip ids written as empty (0-byte) mp3 files.

    Notebook: 08_triplet_matchnet.ipynb
    """

    folder: Path
    files: dict
    clip_ids: np.ndarray
    artists: np.ndarray
    S: np.ndarray
    style: np.ndarray
    broken: list


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def _fixture_audio(style: np.ndarray, sr: int, duration_s: float, rng: np.random.Generator) -> np.ndarray:
    """A short tone whose pitch, brightness and noise level follow ``style`` (3 numbers in [0, 1])."""
    pitch, bright, noisy = style
    n = int(round(sr * duration_s))
    t = np.arange(n) / sr
    f0 = 110.0 * 2.0 ** (3.0 * pitch)                    # 110 Hz ... 880 Hz
    y = np.zeros(n)
    for h in range(1, 13):
        if h * f0 >= 0.45 * sr:
            break
        # Brighter styles keep more energy in the upper harmonics.
        y += (h ** -(3.0 - 2.5 * bright)) * np.sin(2 * np.pi * h * f0 * t + rng.uniform(0, 2 * np.pi))
    # Four notes per second: an amplitude envelope gives the clip some rhythm.
    env = 0.6 + 0.4 * np.cos(2 * np.pi * 4.0 * t) ** 2
    y = y / max(np.abs(y).max(), 1e-9) * env
    y = (1 - 0.8 * noisy) * y + 0.8 * noisy * rng.uniform(-1, 1, n)
    return (0.5 * y / max(np.abs(y).max(), 1e-9)).astype(np.float32)


def write_fixture(
    folder: str | Path,
    n_clips: int = 24,
    n_artists: int = 6,
    n_comparisons: int = 20,
    *,
    tags: Sequence[str] = MTAT_TAGS,
    sr: int = 16000,
    duration_s: float = 2.0,
    n_players: int = 7,
    noise: float = 0.05,
    n_broken: int = 0,
    audio: bool = True,
    seed: int = 0,
) -> FixtureInfo:
    """Write a small MagnaTagATune-format folder: the three tables and tiny generated mp3 clips.

    Each artist has a latent style (pitch, brightness, noisiness); its clips vary around it.
    The audio renders the style, the tags are drawn from it (each artist favours a few tags),
    and ``comparisons_final.csv`` holds votes of simulated players
    (:func:`mrlib.comparisons.simulate_votes`) by the cosine similarity of the styles, so the
    votes are audible and a handcrafted-feature baseline can learn them.

    Parameters
    ----------
    folder : str or Path
        Created if missing; the files are (over)written there, the mp3s under ``mp3/0`` ... ``mp3/f``.
    n_clips : int, default 24
    n_artists : int, default 6
        1 <= n_artists <= n_clips.
    n_comparisons : int, default 20
        Rows of ``comparisons_final.csv`` (distinct clip triples).
    tags : sequence of str, default :data:`MTAT_TAGS`
        Tag columns to write (all 188 by default: the exact release format).
    sr : int, default 16000
        Sample rate of the clips (the release's clips are 16 kHz mono mp3).
    duration_s : float, default 2.0
        Clip length in seconds (the release's are about 29 s).
    n_players : int, default 7
    noise : float, default 0.05
        Vote noise, see :func:`mrlib.comparisons.simulate_votes`.
    n_broken : int, default 0
        The last ``n_broken`` clips get empty (0-byte) mp3 files, as three clips of the release
        have, to exercise skip reports.
    audio : bool, default True
        Write the mp3 clips (False: the tables only).
    seed : int, default 0

    Returns
    -------
    FixtureInfo

    Notebook: 08_triplet_matchnet.ipynb
    """
    for name, value, low in (("n_clips", n_clips, 3), ("n_artists", n_artists, 1),
                             ("n_comparisons", n_comparisons, 1), ("sr", sr, 1000),
                             ("n_players", n_players, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if n_artists > n_clips:
        raise ValueError(f"n_artists={n_artists} exceeds n_clips={n_clips}")
    if not 0 <= n_broken <= n_clips:
        raise ValueError(f"n_broken must lie in [0, n_clips], got {n_broken}")
    if not (np.isfinite(duration_s) and duration_s > 0):
        raise ValueError(f"duration_s must be > 0, got {duration_s}")
    tags = [str(t) for t in tags]
    if not tags or len(set(tags)) != len(tags) or {"clip_id", "mp3_path"} & set(tags):
        raise ValueError("tags must be distinct names other than clip_id and mp3_path")

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)

    # Ids as in the release: increasing, with gaps, not starting at 0.
    clip_ids = 2 + np.cumsum(rng.integers(1, 6, size=n_clips)).astype(np.int64)
    artist_of = np.concatenate([np.arange(n_artists),
                                rng.integers(0, n_artists, n_clips - n_artists)])
    rng.shuffle(artist_of)
    artist_names = np.array([f"Fixture Artist {chr(65 + a % 26)}{a // 26 or ''}"
                             for a in range(n_artists)])
    artist_style = rng.uniform(0.1, 0.9, size=(n_artists, 3))
    style = np.clip(artist_style[artist_of] + rng.normal(0, 0.07, size=(n_clips, 3)), 0, 1)

    # Tags: each artist favours three tags (present with probability 0.8), anything else is
    # a rare false positive (probability 0.02), like noisy crowd-sourced annotations.
    favoured = np.stack([rng.choice(len(tags), size=min(3, len(tags)), replace=False)
                         for _ in range(n_artists)])
    p = np.full((n_clips, len(tags)), 0.02)
    p[np.arange(n_clips)[:, None], favoured[artist_of]] = 0.8
    tag_matrix = (rng.random((n_clips, len(tags))) < p).astype(np.int64)

    # Paths and clip info in the release's shape: <hex dir>/<artist>-<album>-<nn>-<title>-<start>-<end>.mp3
    track_no = np.zeros(n_clips, dtype=np.int64)
    for a in range(n_artists):
        members = np.flatnonzero(artist_of == a)
        track_no[members] = np.arange(1, len(members) + 1)
    seg_len = int(round(duration_s))
    rows_info, mp3_paths = [], []
    for i in range(n_clips):
        artist = artist_names[artist_of[i]]
        album = f"Fixture Album {artist_of[i] + 1}"
        title = f"Fixture Track {track_no[i]}"
        start = 30 * int(rng.integers(0, 4))
        end = start + seg_len
        rel = (f"{format(i % 16, 'x')}/{_slug(artist)}-{_slug(album)}-{track_no[i]:02d}-"
               f"{_slug(title)}-{start}-{end}.mp3")
        mp3_paths.append(rel)
        rows_info.append({
            "clip_id": clip_ids[i], "track_number": track_no[i], "title": title,
            "artist": artist, "album": album,
            "url": f"http://example.invalid/albums/{_slug(album)}/",
            "segmentStart": start, "segmentEnd": end,
            "original_url": f"http://example.invalid/all/{track_no[i]:02d}-{_slug(title)}.mp3",
            "mp3_path": rel,
        })

    files = {"annotations": folder / ANNOTATIONS_FILE, "clip_info": folder / CLIP_INFO_FILE,
             "comparisons": folder / COMPARISONS_FILE}
    ann = pd.DataFrame(tag_matrix, columns=tags)
    ann.insert(0, "clip_id", clip_ids)
    ann["mp3_path"] = mp3_paths
    quoted = {"sep": "\t", "index": False, "quoting": csv.QUOTE_ALL, "lineterminator": "\r\n"}
    ann.to_csv(files["annotations"], **quoted)
    pd.DataFrame(rows_info, columns=list(CLIP_INFO_COLUMNS)).to_csv(files["clip_info"], **quoted)

    centred = style - 0.5
    unit = centred / np.maximum(np.linalg.norm(centred, axis=1, keepdims=True), 1e-12)
    S = 0.5 * (1.0 + unit @ unit.T)                        # cosine mapped to [0, 1]
    votes = simulate_votes(S, n_comparisons, n_players=n_players, noise=noise,
                           seed=int(rng.integers(2**31)), clip_ids=clip_ids, paths=mp3_paths)
    write_comparisons(votes, files["comparisons"])

    broken = []
    if audio:
        import soundfile as sf

        audio_root = folder / "mp3"
        for i in range(n_clips):
            path = audio_root / mp3_paths[i]
            path.parent.mkdir(parents=True, exist_ok=True)
            if i >= n_clips - n_broken:
                path.write_bytes(b"")
                broken.append(int(clip_ids[i]))
                continue
            y = _fixture_audio(style[i], sr, duration_s, rng)
            sf.write(path, y, sr, format="MP3", subtype="MPEG_LAYER_III")
    return FixtureInfo(folder=folder, files=files, clip_ids=clip_ids,
                       artists=artist_names[artist_of], S=S, style=style, broken=broken)
