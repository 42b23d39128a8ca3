"""The MagnaTagATune release format: its file names and columns, its 188 tags and their
categories, and readers of its two tag tables (``comparisons_final.csv``: :mod:`mrlib.odd_one_out`)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mrlib.catalog_format import _no_duplicates, _numeric, read_table

__all__ = ["ANNOTATIONS_FILE", "CLIP_INFO_FILE", "COMPARISONS_FILE", "CLIP_INFO_COLUMNS", "MTAT_TAGS",
           "TAG_CATEGORIES", "CATEGORIES", "tag_category", "read_annotations", "read_clip_info"]

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

_BY_CATEGORY = (("Genre", _GENRE), ("Recording", _RECORDING), ("Mood", _MOOD),
                ("Movement", _MOVEMENT), ("Lyrics", _LYRICS), ("Other", _OTHER))
TAG_CATEGORIES: dict[str, str] = {t: cat for cat, tags in _BY_CATEGORY for t in tags}


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
def _require_file(path: Path) -> Path:
    if not path.is_file():
        raise FileNotFoundError(
            f"MagnaTagATune file missing: {path}. The folder must hold {ANNOTATIONS_FILE}, "
            f"{CLIP_INFO_FILE} and {COMPARISONS_FILE} (tab-separated, from the MTAT release) "
            "and the mp3 clips in the sub-folders 0 ... f that the tables name."
        )
    return path


def _int_column(df: pd.DataFrame, col: str, where: Path) -> np.ndarray:
    values = pd.to_numeric(df[col], errors="coerce")
    bad = values.isna() | (values != np.round(values))
    if bad.any():
        raise ValueError(f"{where}: column {col!r} must hold integer ids, found e.g. "
                         f"{df.loc[bad, col].head(3).tolist()}")
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
    path = _require_file(Path(path))
    # Everything as text first: ids, paths and titles stay verbatim; numbers are checked.
    # read_table names the file and line of an encoding, quoting or row-length problem and
    # refuses duplicate column names (two tags of one name).
    df = read_table(path, sep="\t", columns=("clip_id", "mp3_path"))
    tag_cols = [c for c in df.columns if c not in ("clip_id", "mp3_path")]
    if not tag_cols:
        raise ValueError(f"{path}: no tag columns between clip_id and mp3_path")
    out = pd.DataFrame({"clip_id": _int_column(df, "clip_id", path)})
    _no_duplicates(out.clip_id, f"{path}, column 'clip_id'")
    tags = _numeric(df, tag_cols, path).astype(np.float32)
    if tags.min(initial=0) < 0 or tags.max(initial=0) > 1:
        raise ValueError(f"{path}: tag values must be numbers in [0, 1]")
    out = pd.concat([out, pd.DataFrame(tags, columns=tag_cols)], axis=1)
    out["mp3_path"] = df["mp3_path"].astype(str).to_numpy()
    return out


def read_clip_info(path: str | Path) -> pd.DataFrame:
    """Read ``clip_info_final.csv``: title, artist, album and segment of each clip.

    Parameters
    ----------
    path : str or Path
        The tab-separated file with (at least) the columns :data:`CLIP_INFO_COLUMNS`.

    Returns
    -------
    pandas.DataFrame
        Those columns; ``clip_id`` int64, ``segmentStart``/``segmentEnd`` float64 seconds
        (NaN where not a number), the rest str.

    Raises
    ------
    FileNotFoundError, ValueError
        Missing file; a missing one of those columns; clip ids that are not integers.

    Notebook: 08_triplet_matchnet.ipynb
    """
    path = _require_file(Path(path))
    # as text, like read_annotations
    df = read_table(path, sep="\t", columns=CLIP_INFO_COLUMNS)
    df["clip_id"] = _int_column(df, "clip_id", path)
    for col in ("segmentStart", "segmentEnd"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(np.float64)
    return df
