"""Real music from the package registries: the ``music21`` catalog (SPEC §3.4).

No MagnaTagATune, GTZAN or FMA audio installs from a package registry, but real repertoire
does: ``music21`` ships a corpus of about 15,000 scores with metadata (Essen folk songs, O'Neill's
and Ryan's fiddle tunes, Aird's airs, Bach chorales, Palestrina masses, Monteverdi madrigals,
trecento, Josquin, a few quartets and songs). This module turns it into a catalog in the
standard on-disk format (SPEC §3.1) in five steps per work:

1. **parse** the score with music21 (one tune of a multi-tune abc file, or a whole file);
2. **clip by measures**: keep whole measures until ``clip_s`` seconds are covered, expanding the
   repeats first (long scores are cut to a few measures more than needed *before* the expansion,
   which is what keeps whole multi-movement files cheap); a piece shorter than ``clip_s`` is
   played again from the top (strophic songs and dance tunes are performed that way);
3. **assign instruments** by a documented rule (``data/repertoire_programs.csv``): the table
   lists General MIDI ensembles with weights; every artist has a seeded favourite ensemble that
   it uses with probability :data:`ARTIST_LOYALTY` (an audible "artist style", which is why
   artist-disjoint splits matter), otherwise a seeded draw by weight; part *i* (top to bottom)
   gets the *i*-th program of the ensemble, the last one repeating. By default
   (``instrumentation="independent"``) every work draws from one palette pooled over all
   collections, so the instrument says nothing about the collection and cannot stand in for the
   genre tags; ``instrumentation="by_collection"`` draws from the collection's own palette
   (period instruments: fiddles for O'Neill's, organ for Bach), a named variant in which timbre
   gives the genre away (the mean-CQT Euclidean baseline then matches trained networks).
   The palette avoids the programs that ``TimGM6mb.sf2`` renders out of tune (measured with a
   CQT on single notes: Accordion 21 and Tango Accordion 23 are ~0.7 semitone flat from about
   F#5 up, Harmonica 22 ~0.3 semitone flat around F#4-C5, Whistle 78 three semitones sharp and
   silent above G5);
   stand-ins are named in the table (GM piccolo for the tin whistle, reed organ for the
   harmonium and concertina);
4. **render** the MIDI with the General MIDI soundfont shipped in ``pretty_midi``
   (``TimGM6mb.sf2``) through the ``midirenderer`` wheel, mix to mono, resample to ``sr`` and cut
   to exactly ``clip_s`` seconds (50 ms fade-out), loudness-normalised to -20 dBFS RMS with
   the peak kept under -1 dBFS;
5. **tag** from the metadata, in the five categories of the 2020 paper:

   ===========  ==========================================================================
   Genre        ``style_*`` (folk song, fiddle tune, chorale, renaissance polyphony,
                medieval, classical/romantic), ``coll_*`` (the collection), ``region_*``
                (Essen locale or the collection's country), ``composer_*`` (art music),
                ``genre_sacred``/``genre_secular`` and Essen song types (``genre_love_song`` …)
   Recording    ``gm_*`` (the General MIDI programs assigned: audible) and ``ensemble_*``
                (solo / small / quartet / large, from the number of sounding parts)
   Mood         ``mode_major``/``mode_minor`` (explicit key mode where the encoding states it,
                else Krumhansl-Kessler key-finding likelihoods), ``mode_modal`` (explicit
                church modes, and pre-1600 repertoire) and ``tonic_*``
   Movement     ``meter_duple``/``meter_triple``/``meter_irregular``, ``meter_compound``,
                ``dance_*`` (the abc ``R:`` field or the title), ``tempo_slow|moderate|fast``
                (soft memberships of the notated beat's bpm)
   Lyrics       ``lyrics_vocal``/``lyrics_instrumental`` (was the work sung?),
                ``lyrics_in_score`` (text encoded) and ``lang_*``: *not audible*, since
                everything is rendered instrumentally (the ceiling the SPEC asks for)
   ===========  ==========================================================================

Works are drawn by a seeded, stratified draw (:func:`stratum_quotas`: square-root allocation
across strata, capped by what each stratum holds); a work that fails to parse, expand or render
is skipped with its reason and replaced by the next work of the same stratum's seeded
permutation. Artists (for artist-disjoint splits): the composer, else the collection's book or
sub-collection (the Essen source book, the O'Neill's file, the Ryan's/Cole's edition, …).

Everything is deterministic given ``seed`` and the package versions; per-work results are cached
under ``<root>/cache/works/`` so an interrupted build resumes where it stopped.

Notebook: 00_overview.ipynb
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import io
import json
import math
import os
import re
import sys
import time
import warnings
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from mrlib import paths

__all__ = [
    "STRATA",
    "ARTIST_LOYALTY",
    "INSTRUMENTATION",
    "Clip",
    "SkipWork",
    "inventory",
    "stratum_quotas",
    "draw_order",
    "default_qpm",
    "soundfont_path",
    "load_program_table",
    "assign_programs",
    "parse_work",
    "clip_score",
    "pitch_class_histogram",
    "key_likelihoods",
    "to_midi",
    "render_midi",
    "work_tags",
    "tag_category",
    "render_work",
    "chroma_agreement",
    "build",
    "main",
]

#: Bump when the rendering or tagging rules change: invalidates the per-work caches.
RENDER_VERSION = 2

#: Probability that a work uses its artist's favourite ensemble (else a weighted draw).
ARTIST_LOYALTY = 0.6

#: How ensembles are drawn: from one palette pooled over all collections (the default: the
#: instrument is independent of the collection) or from the work's collection's palette.
INSTRUMENTATION = ("independent", "by_collection")

#: A long score whose excerpts fail to expand is expanded whole only when it has at most this
#: many times the measures of the first excerpt (whole-quartet expansions take a minute).
MAX_FULL_EXPAND_FACTOR = 6

#: Works shorter than this (one pass through the measures) are skipped as "too short".
MIN_PIECE_S = 2.0

#: Loudness normalisation: target RMS and peak ceiling (linear, full scale = 1).
TARGET_RMS = 0.1  # -20 dBFS
PEAK_CEILING = 0.891  # -1 dBFS

#: Velocity of the top part and of the other parts (the melody stands out a little).
VELOCITY_TOP, VELOCITY_OTHER = 92, 76

CATEGORIES = ("Genre", "Recording", "Mood", "Movement", "Lyrics")
_PREFIX_CATEGORY = (
    ("style_", "Genre"), ("coll_", "Genre"), ("region_", "Genre"), ("composer_", "Genre"),
    ("genre_", "Genre"), ("gm_", "Recording"), ("ensemble_", "Recording"), ("mode_", "Mood"),
    ("tonic_", "Mood"), ("meter_", "Movement"), ("dance_", "Movement"), ("tempo_", "Movement"),
    ("lyrics_", "Lyrics"), ("lang_", "Lyrics"),
)


@dataclasses.dataclass(frozen=True)
class Stratum:
    """What a collection contributes to the tags and to the default rendering.

    Attributes
    ----------
    style, collection : str
        Genre tags every work of the stratum carries.
    region : str or None
        Default ``region_*`` tag (Essen works use their own ``O:`` locale instead).
    qpm : float
        Default tempo in quarter notes per minute when the score has no metronome mark and the
        work has no dance type.
    vocal : float
        Likelihood that the work was sung (``lyrics_vocal``).
    language : dict
        ``lang_*`` likelihoods of a sung work.
    sacred : float
        Default likelihood of ``genre_sacred``.
    modal : bool
        Pre-1600 repertoire: ``mode_modal`` = 1 whatever the key-finding says.
    """

    style: str
    collection: str
    region: str | None
    qpm: float
    vocal: float
    language: Mapping[str, float]
    sacred: float
    modal: bool = False


#: The strata of the stratified draw, in their fixed order.
STRATA: dict[str, Stratum] = {
    "essen_german": Stratum("folk_song", "essen", "germany", 100, 1.0, {"german": 1.0}, 0.0),
    "essen_china": Stratum("folk_song", "essen", "china", 92, 1.0, {"chinese": 1.0}, 0.0),
    "essen_luxembourg": Stratum("folk_song", "essen", "luxembourg", 100, 1.0,
                                {"luxembourgish": 1.0}, 0.0),
    "essen_lorraine": Stratum("folk_song", "essen", "lorraine", 100, 1.0, {"german": 1.0}, 0.0),
    "essen_ireland": Stratum("folk_song", "essen", "ireland", 96, 1.0,
                             {"irish": 0.5, "english": 0.5}, 0.0),
    "oneills": Stratum("fiddle_tune", "oneills", "ireland", 180, 0.0, {}, 0.0),
    "ryans": Stratum("fiddle_tune", "ryans", None, 180, 0.0, {}, 0.0),
    "airds": Stratum("fiddle_tune", "airds", "scotland", 116, 0.3, {"english": 1.0}, 0.0),
    "miscfolk": Stratum("fiddle_tune", "miscfolk", None, 120, 0.0, {}, 0.0),
    "bach": Stratum("chorale", "bach", "germany", 84, 1.0, {"german": 1.0}, 1.0),
    "palestrina": Stratum("renaissance_polyphony", "palestrina", "italy", 150, 1.0,
                          {"latin": 1.0}, 1.0, True),
    "monteverdi": Stratum("renaissance_polyphony", "monteverdi", "italy", 132, 1.0,
                          {"italian": 1.0}, 0.0, True),
    "renaissance": Stratum("renaissance_polyphony", "renaissance", None, 140, 1.0,
                           {"french": 1.0}, 0.0, True),
    "trecento": Stratum("medieval", "trecento", "italy", 150, 1.0, {"latin": 1.0}, 1.0, True),
    "classical": Stratum("classical_romantic", "classical", None, 112, 0.0, {}, 0.0),
}

#: Corpus folders that are not repertoire (test files, chord exercises, lead sheets).
_EXCLUDED_FOLDERS = {"demos", "theoryExercises", "leadSheet"}

#: Dance type -> default tempo (quarter notes per minute) when the score gives none.
DANCE_QPM = {
    "reel": 200, "hornpipe": 160, "jig": 180, "slip_jig": 180, "slide": 210, "polka": 180,
    "strathspey": 128, "fling": 140, "clog": 150, "march": 120, "waltz": 150, "air": 84,
    "walkaround": 140, "gavotte": 120, "quickstep": 200,
}
_DANCE_PATTERNS = (  # (regex on the lower-cased R: field or title, dance type); first match wins
    (r"slip\s*-?\s*jig", "slip_jig"), (r"highland fling|\bfling\b", "fling"),
    (r"\breel\b", "reel"), (r"hornpipe", "hornpipe"), (r"\bjig\b", "jig"),
    (r"strathspey", "strathspey"), (r"\bclog\b", "clog"), (r"\bwaltz\b", "waltz"),
    (r"\bmarch\b", "march"), (r"\bpolka\b", "polka"), (r"\bslide\b", "slide"),
    (r"walk\s*-?\s*around", "walkaround"), (r"gavotte", "gavotte"),
    (r"quick\s*-?\s*step", "quickstep"), (r"\bair\b", "air"),
)
#: Essen song types (German/Chinese ``R:`` field) -> Genre tag.
_ESSEN_TYPES = (
    (r"liebe", "love_song"), (r"ballade|romanze", "ballad"), (r"soldat|krieg", "soldier_song"),
    (r"kinder", "children_song"), (r"tanz", "dance_song"), (r"xiaodiao", "xiaodiao"),
    (r"shange", "mountain_song"), (r"haozi|arbeit", "work_song"), (r"trink", "drinking_song"),
)
_SACRED = re.compile(
    r"kyrie|gloria|credo|sanctus|agnus|benedic|magnificat|\bave\b|missa|\bmass\b|salve|alleluia|"
    r"jesu|christe|domine|\bdeus\b|virg[oi]|laudate|per illud|prayer|religi|geistlich|choral")
#: Essen ``O:`` locale keywords -> region tag (first match wins).
_REGIONS = (
    ("china", "china"), ("taiwan", "china"), ("luxemburg", "luxembourg"),
    ("lothringen", "lorraine"), ("irland", "ireland"), ("schottland", "scotland"),
    ("gottschee", "gottschee"), ("jugoslawien", "gottschee"), ("niederlande", "netherlands"),
    ("oesterreich", "austria"), ("schweiz", "switzerland"), ("schlesien", "silesia"),
    ("polen", "silesia"), ("ungarn", "hungary"), ("mexiko", "mexico"), ("usa", "usa"),
    ("deutschland", "germany"),
)
#: Josquin's pieces in the corpus (file stem -> language of the text).
_JOSQUIN_LANG = {
    "4vPerIlludAveProlatum": "latin", "adieuMesAmours": "french", "fortunaDunGranTempo": "italian",
    "laDeplorationDeLaMorteDeJohannesOckeghem": "french", "laPlusDesPlus": "french",
    "milleRegrets": "french", "oVenusBant": "dutch", "petiteCamusette": "french",
}
#: Classical songs: composer folder -> language (used only when the score carries lyrics).
_CLASSICAL_LANG = {
    "schubert": "german", "schumann_robert": "german", "schumann_clara": "german",
    "verdi": "italian", "handel": "italian", "beach": "english", "johnson_j_r": "english",
    "liliuokalani": "hawaiian", "webern": "latin",
}
_CLASSICAL_REGION = {
    "beethoven": "austria", "mozart": "austria", "haydn": "austria", "schubert": "austria",
    "schoenberg": "austria", "webern": "austria", "schumann_robert": "germany",
    "schumann_clara": "germany", "weber": "germany", "cpebach": "germany", "handel": "england",
    "chopin": "poland", "corelli": "italy", "verdi": "italy", "beach": "usa", "joplin": "usa",
    "johnson_j_r": "usa", "liliuokalani": "hawaii",
}
#: Krumhansl & Kessler (1982) probe-tone profiles, tonic first (major, minor).
_KK_PROFILES = np.array([
    [6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88],
    [6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17],
])
#: Slope of the logistic that turns the major-minor correlation gap into a likelihood.
_MODE_SLOPE = 12.0
PITCH_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
_EXPLICIT_MODES = {
    "major": ("major", 0.0), "ionian": ("major", 0.0), "minor": ("minor", 0.0),
    "aeolian": ("minor", 0.0), "dorian": ("minor", 1.0), "phrygian": ("minor", 1.0),
    "locrian": ("minor", 1.0), "mixolydian": ("major", 1.0), "lydian": ("major", 1.0),
}
_ABC_MODE_WORDS = {
    "m": "minor", "min": "minor", "minor": "minor", "aeo": "aeolian", "maj": "major",
    "major": "major", "ion": "ionian", "dor": "dorian", "mix": "mixolydian", "phr": "phrygian",
    "lyd": "lydian", "loc": "locrian",
}
#: Tempo bands on the notated beat (beats per minute), as soft memberships.
TEMPO_BANDS = (70.0, 110.0)
_TEMPO_SOFTNESS = 0.12  # in log2 units: ±0.12 octave ≈ ±9 % around each boundary


class SkipWork(Exception):
    """A work that cannot become a track; ``str(exc)`` is the reason written to skipped.csv.

    Notebook: 00_overview.ipynb
    """


# --------------------------------------------------------------------------------------------
# small helpers


def _slug(text: str) -> str:
    """Lower-case ASCII identifier: runs of anything else become one underscore."""
    text = str(text).strip().lower().replace("ü", "ue").replace("ö", "oe").replace("ä", "ae")
    text = re.sub(r"[^a-z0-9]+", "_", text.encode("ascii", "ignore").decode())
    return text.strip("_") or "x"


def _str(value: Any) -> str:
    """A text field of the inventory, '' when missing (pandas stores missing text as NaN)."""
    return value if isinstance(value, str) else ""


def _crc(text: str) -> int:
    return zlib.crc32(str(text).encode("utf-8"))


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _check_positive(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value}")
    return float(value)


def _match_first(patterns, text: str) -> str | None:
    for pattern, name in patterns:
        if re.search(pattern, text):
            return name
    return None


def _corpus_root() -> Path:
    from music21 import common

    return Path(common.getCorpusFilePath())


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for name in ("music21", "midirenderer", "pretty_midi", "numpy", "scipy", "soundfile"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:  # pragma: no cover - all are pinned in requirements.txt
            out[name] = "missing"
    return out


def soundfont_path() -> Path:
    """The General MIDI soundfont shipped inside ``pretty_midi`` (``TimGM6mb.sf2``).

    Returns
    -------
    pathlib.Path
        Absolute path of the ~6 MB SF2 file.

    Notebook: 00_overview.ipynb
    """
    import pretty_midi

    path = Path(pretty_midi.__file__).resolve().parent / "TimGM6mb.sf2"
    if not path.is_file():
        raise FileNotFoundError(f"pretty_midi ships no soundfont at {path}; reinstall pretty_midi")
    return path


@functools.lru_cache(maxsize=1)
def _soundfont_bytes() -> bytes:
    # Read once per process: midirenderer takes the soundfont as bytes on every call.
    return soundfont_path().read_bytes()


# --------------------------------------------------------------------------------------------
# the corpus inventory


def _scan_abc(path: Path) -> dict[int, dict]:
    """Header fields of every tune of an abc file: {X number: {field: value, 'lyrics': bool}}."""
    tunes: dict[int, dict] = {}
    current: dict | None = None
    in_header = False
    # latin-1 never fails to decode, and the fields we read are ASCII keywords.
    for line in path.read_text(encoding="latin-1").splitlines():
        m = re.match(r"^([A-Za-z]):\s*(.*?)\s*$", line)
        if m and m.group(1) == "X":
            num = re.match(r"\d+", m.group(2))
            current = {"lyrics": False}
            in_header = True
            if num:
                tunes.setdefault(int(num.group()), current)
            continue
        if current is None or not m:
            continue
        field, value = m.group(1), m.group(2)
        if field in "wW":
            current["lyrics"] = True
        elif in_header and field in "TROSBCKM" and field not in current:
            current[field] = value
            if field == "K":
                in_header = False
    return tunes


def _trecento_composer(raw: str | None) -> str | None:
    """'Gherardello F-Pn 568' -> 'gherardello'; anonymous -> None (manuscript sigla dropped)."""
    if not isinstance(raw, str) or not raw.strip():  # pandas stores a missing name as NaN
        return None
    text = re.split(r"[\n(]", raw)[0]
    words = []
    for token in text.split():
        if re.search(r"\d|\?|^[A-Z]{1,3}-", token):
            break
        words.append(token)
    name = _slug(" ".join(words))
    name = {"grattosus": "gratiosus"}.get(name, name)  # one encoder's typo in the corpus
    return None if not words or name.startswith(("anon", "anonymous")) else name


def _essen_region(locale: str | None) -> str | None:
    return _match_first(_REGIONS, str(locale).lower()) if locale else None


@functools.lru_cache(maxsize=1)
def _inventory_cached() -> pd.DataFrame:
    from music21 import corpus

    bundle = corpus.corpora.CoreCorpus().metadataBundle
    bundle.read()
    root = _corpus_root()
    abc_cache: dict[str, dict[int, dict]] = {}
    rows = []
    # MetadataBundle.__getitem__ rebuilds a list per index (quadratic iteration): read the
    # entries mapping directly, which music21 10.x keeps as an ordered dict.
    entries = getattr(bundle, "_metadataEntries", None)
    for entry in (entries.values() if isinstance(entries, Mapping) else bundle):
        md = entry.metadata
        if md is None:  # an opus-level entry (a whole multi-tune file): its tunes are listed too
            continue
        rel = str(entry.sourcePath).replace(os.sep, "/")
        folder = rel.split("/")[0]
        stem, ext = os.path.splitext(rel.split("/")[-1])
        ext = ext.lower()
        if folder in _EXCLUDED_FOLDERS or ext == ".rntxt" or stem.endswith("_bak"):
            continue
        number = int(entry.number) if entry.number not in (None, "") else None
        header: dict = {}
        if ext == ".abc":
            if rel not in abc_cache:
                abc_cache[rel] = _scan_abc(root / rel)
            tunes = abc_cache[rel]
            header = tunes.get(number if number is not None else min(tunes, default=0), {})
        stratum = _stratum_of(folder, stem, ext)
        if stratum is None:
            continue
        rows.append({
            "path": rel, "number": number, "folder": folder, "stem": stem, "ext": ext,
            "stratum": stratum, "title": str(md.title or header.get("T") or stem),
            "composer_raw": md.composer, "n_parts": int(md.numberOfParts or 1),
            "quarter_length": float(md.scoreQuarterLength or 0.0),
            "abc_R": header.get("R"), "abc_O": header.get("O") or md.localeOfComposition,
            "abc_S": header.get("S"), "abc_B": header.get("B"), "abc_C": header.get("C"),
            "abc_K": header.get("K"), "abc_lyrics": bool(header.get("lyrics", False)),
        })
    df = pd.DataFrame(rows)
    # Josquin's abc files hold one voice per tune: the work is the whole file, voices merged.
    jos = df["folder"].eq("josquin") & df["ext"].eq(".abc")
    merged = (df[jos].groupby("path", sort=True)
              .agg(**{c: (c, "first") for c in df.columns if c not in ("path", "n_parts")},
                   n_parts=("n_parts", "sum")).reset_index())
    merged["number"] = None
    df = pd.concat([df[~jos], merged[df.columns]], ignore_index=True)
    df["merge_tunes"] = df["folder"].eq("josquin") & df["ext"].eq(".abc")
    # One encoding per work: the same folder/stem/number in several formats keeps the first of
    # this preference order (MusicXML is the richest in instruments and key modes).
    pref = {".mxl": 0, ".musicxml": 1, ".xml": 2, ".krn": 3, ".abc": 4}
    df["_pref"] = df["ext"].map(pref).fillna(9)
    df["_dir"] = df["path"].map(lambda p: p.rsplit("/", 1)[0])
    df["_num"] = df["number"].map(lambda n: -1 if n is None or pd.isna(n) else int(n))
    df = (df.sort_values(["_dir", "stem", "_num", "_pref"])
          .drop_duplicates(["_dir", "stem", "_num"], keep="first"))
    df["work_id"] = [p if n < 0 else f"{p}#{n}" for p, n in zip(df["path"], df["_num"])]
    df["track_id"] = [_slug(d.replace("/", "-")) + "-" + _slug(s) + ("" if n < 0 else f"-{n}")
                      for d, s, n in zip(df["_dir"], df["stem"], df["_num"])]
    dup = df["track_id"].duplicated(keep=False)
    df.loc[dup, "track_id"] = [f"{t}-{_crc(w) % 10**6:06d}"
                               for t, w in zip(df.loc[dup, "track_id"], df.loc[dup, "work_id"])]
    df["number"] = df["_num"].astype("int64")  # -1: the whole file
    df = df.drop(columns=["_pref", "_dir", "_num"])
    df["composer"] = [_composer_of(r) for r in df.itertuples()]
    df["artist_id"] = [_artist_of(r) for r in df.itertuples()]
    df["region"] = [_region_of(r) for r in df.itertuples()]
    df["dance"] = [_dance_of(r) for r in df.itertuples()]
    order = {s: i for i, s in enumerate(STRATA)}
    df = df.sort_values(["stratum", "work_id"], key=lambda c: c.map(order) if c.name == "stratum"
                        else c).reset_index(drop=True)
    return df


def _stratum_of(folder: str, stem: str, ext: str) -> str | None:
    if folder == "essenFolksong":
        if stem.startswith("test"):  # the Essen test files re-use songs from the others
            return None
        return {"han": "essen_china", "lux": "essen_luxembourg", "lot": "essen_lorraine",
                "irl": "essen_ireland"}.get(re.sub(r"\d+$", "", stem), "essen_german")
    fixed = {"oneills1850": "oneills", "ryansMammoth": "ryans", "airdsAirs": "airds",
             "miscFolk": "miscfolk", "nottingham-dataset": "miscfolk", "bach": "bach",
             "palestrina": "palestrina", "josquin": "renaissance", "luca": "renaissance",
             "lusitano": "renaissance", "trecento": "trecento", "ciconia": "trecento"}
    if folder == "monteverdi":
        return "monteverdi" if ext in (".mxl", ".xml", ".musicxml") else None
    return fixed.get(folder, "classical")


def _composer_of(r) -> str | None:
    fixed = {"bach": "bach_js", "palestrina": "palestrina", "monteverdi": "monteverdi"}
    if r.stratum in fixed:
        return fixed[r.stratum]
    if r.stratum == "renaissance":
        return r.folder.lower()
    if r.stratum == "trecento":
        return ("johannes_ciconia" if r.folder == "ciconia"
                else _trecento_composer(r.composer_raw))
    if r.stratum == "classical":
        return r.folder.lower()
    return None


def _artist_of(r) -> str:
    """The composer, else the collection's book or sub-collection (SPEC §3.4)."""
    if isinstance(r.composer, str):
        return r.composer
    if r.stratum.startswith("essen"):
        book = re.sub(r"\d+$", "", r.stem)
        source = r.abc_S.split(",")[0] if isinstance(r.abc_S, str) else ""
        return f"essen_{_slug(book)}" + (f"_{_slug(source)}" if source.strip(" ])") else "")
    if r.stratum == "ryans":
        if isinstance(r.abc_C, str) and _slug(r.abc_C) not in ("x", "trad", "traditional"):
            return f"ryans_{_slug(r.abc_C)}"
        return "ryans_coles1000" if "cole" in str(r.abc_B).lower() else "ryans_mammoth"
    if r.stratum == "trecento":  # anonymous: the edition volume / manuscript is the "book"
        return _slug(re.match(r"(PMFC_\d+|[A-Za-z]+)", r.stem).group(1))
    return f"{_slug(r.folder)}_{_slug(r.stem)}"


def _region_of(r) -> str | None:
    if r.stratum.startswith("essen"):
        return _essen_region(r.abc_O) or STRATA[r.stratum].region
    if r.stratum == "miscfolk":
        return {"americanfifeopus": "usa", "northumbrianminstrelsyopus": "england"}.get(r.stem)
    if r.stratum == "classical":
        return _CLASSICAL_REGION.get(r.folder.lower())
    if r.stratum == "renaissance":
        return {"josquin": "franco_flemish", "lusitano": "portugal", "luca": "italy"}.get(
            r.folder.lower())
    return STRATA[r.stratum].region


def _dance_of(r) -> str | None:
    if r.stratum not in ("oneills", "ryans", "airds", "miscfolk"):
        return None
    text = " | ".join(v for v in (r.abc_R, r.title) if isinstance(v, str)).lower()
    return _match_first(_DANCE_PATTERNS, text)


def inventory() -> pd.DataFrame:
    """The music21 corpus as a table of works, one row per renderable work.

    Built from music21's metadata bundle plus a scan of the abc headers (``R:`` dance type,
    ``O:`` locale, ``S:``/``B:`` source book, ``C:`` composer, ``K:`` key/mode, lyrics lines).
    Excluded: the ``demos``, ``theoryExercises`` and ``leadSheet`` folders, roman-numeral
    analyses (``.rntxt``), the Essen ``test*`` files and backup files. A work encoded in several
    formats appears once (MusicXML preferred). Josquin's abc files, one voice per tune, become
    one work per file with the voices merged. Memoised per process.

    Returns
    -------
    pandas.DataFrame
        One row per work (about 14,500), sorted by stratum then ``work_id``; columns include
        ``work_id`` (``"<corpus path>#<tune number>"``), ``track_id`` (a filesystem-safe slug),
        ``path``, ``number`` (int64, -1 for a whole file), ``stratum``, ``title``,
        ``composer``, ``artist_id``, ``region``, ``dance``, ``n_parts`` and the raw abc fields.

    Notebook: 00_overview.ipynb
    """
    return _inventory_cached().copy()


# --------------------------------------------------------------------------------------------
# the stratified draw


def stratum_quotas(sizes: Mapping[str, int], n: int) -> dict[str, int]:
    """Split ``n`` draws across strata in proportion to the square root of their sizes.

    Square-root allocation keeps the 8,500 Essen songs from drowning the 100 trecento pieces
    while still giving big collections more tracks. A stratum never gets more than it holds;
    what it cannot take is re-allocated to the others (water-filling); rounding is by largest
    remainder, ties broken by stratum name.

    Parameters
    ----------
    sizes : mapping str -> int
        Number of available works per stratum (>= 0).
    n : int
        Total number of draws (>= 0). If it exceeds ``sum(sizes)`` every stratum is exhausted.

    Returns
    -------
    dict str -> int
        Quota per stratum (same keys), summing to ``min(n, sum(sizes))``.

    Notebook: 00_overview.ipynb
    """
    n = _check_int("n", n, 0)
    for name, size in sizes.items():
        _check_int(f"sizes[{name!r}]", size, 0)
    quota = {s: 0 for s in sizes}
    active = sorted(s for s in sizes if sizes[s] > 0)
    remaining = min(n, sum(sizes.values()))
    while remaining > 0 and active:
        weights = {s: math.sqrt(sizes[s]) for s in active}
        total = sum(weights.values())
        ideal = {s: remaining * weights[s] / total for s in active}
        full = [s for s in active if quota[s] + ideal[s] >= sizes[s]]
        if full:  # these strata are exhausted: give them everything and re-allocate the rest
            for s in full:
                remaining -= sizes[s] - quota[s]
                quota[s] = sizes[s]
            active = [s for s in active if s not in full]
            continue
        base = {s: int(math.floor(ideal[s])) for s in active}
        left = remaining - sum(base.values())
        for s in sorted(active, key=lambda s: (-(ideal[s] - base[s]), s))[:left]:
            base[s] += 1
        for s in active:
            quota[s] += base[s]
        remaining = 0
    return quota


def draw_order(works: pd.DataFrame, seed: int) -> dict[str, list[int]]:
    """A seeded permutation of every stratum's works: the order in which they are tried.

    The first ``quota`` works of a stratum are drawn; a failed work is replaced by the next one.
    Each stratum has its own random stream (``seed``, CRC-32 of its name), so adding or removing
    a stratum leaves the others' draws unchanged.

    Parameters
    ----------
    works : pandas.DataFrame
        The :func:`inventory` (or a subset of it) with a ``stratum`` column.
    seed : int
        Seed of the draw.

    Returns
    -------
    dict str -> list of int
        Row positions (``iloc``) in ``works`` per stratum, in draw order.

    Notebook: 00_overview.ipynb
    """
    seed = _check_int("seed", seed, 0)
    out = {}
    for stratum in STRATA:
        idx = np.flatnonzero(works["stratum"].to_numpy() == stratum)
        if idx.size:
            rng = np.random.default_rng([seed, _crc(stratum)])
            out[stratum] = idx[rng.permutation(idx.size)].tolist()
    return out


# --------------------------------------------------------------------------------------------
# instruments


def load_program_table(path: str | os.PathLike | None = None) -> pd.DataFrame:
    """The General MIDI instrumentation rule: ``data/repertoire_programs.csv``.

    Parameters
    ----------
    path : path-like, optional
        Another table in the same format (defaults to the repository's).

    Returns
    -------
    pandas.DataFrame
        Columns ``stratum, ensemble, weight, programs, rationale``; ``programs`` is a tuple of
        GM program numbers (0-127, top voice first) or the string ``"score"`` (use the
        instruments the score declares).

    Notebook: 00_overview.ipynb
    """
    default = paths.repo_root() / "data" / "repertoire_programs.csv"
    path = Path(path) if path is not None else default
    if not path.is_file():
        raise FileNotFoundError(f"program table not found: {path}")
    table = pd.read_csv(path)
    missing = {"stratum", "ensemble", "weight", "programs"} - set(table.columns)
    if missing:
        raise ValueError(f"{path}: missing columns {sorted(missing)}")

    def parse(value: str):
        if str(value).strip() == "score":
            return "score"
        progs = tuple(int(v) for v in str(value).split(";"))
        if not all(0 <= p <= 127 for p in progs):
            raise ValueError(f"{path}: GM programs must be in 0..127, got {value!r}")
        return progs

    table["programs"] = table["programs"].map(parse)
    if (table["weight"] <= 0).any():
        raise ValueError(f"{path}: weights must be > 0")
    unknown = set(table["stratum"]) - set(STRATA)
    if unknown:
        raise ValueError(f"{path}: unknown strata {sorted(unknown)}; known: {list(STRATA)}")
    return table


@functools.lru_cache(maxsize=4)
def _program_table_cached(path: str | None) -> pd.DataFrame:
    return load_program_table(path)


def _palette_of(table: pd.DataFrame, stratum: str) -> tuple[list, list, np.ndarray]:
    """(ensemble names, programs, probabilities) of a stratum's palette."""
    rows = table[table["stratum"] == stratum]
    if rows.empty:
        raise ValueError(f"no ensembles for stratum {stratum!r} in the program table")
    w = rows["weight"].to_numpy(float)
    return list(rows["ensemble"]), list(rows["programs"]), w / w.sum()


def _pooled_palette_of(table: pd.DataFrame) -> tuple[list, list, np.ndarray]:
    """One palette for every collection: each (ensemble, programs) of the table once, weighted
    by the sum of its weights; ``as_scored`` is left out (a score's declared instruments belong
    to its collection)."""
    rows = table[table["programs"].map(lambda p: p != "score")]
    w = rows.groupby(["ensemble", "programs"], sort=False)["weight"].sum()
    return ([e for e, _ in w.index], [q for _, q in w.index],
            w.to_numpy(float) / w.to_numpy(float).sum())


def _palette_for(table: pd.DataFrame, stratum: str, instrumentation: str):
    """The palette a work of ``stratum`` draws from; an unknown stratum is an error either way."""
    own = _palette_of(table, stratum)
    return _pooled_palette_of(table) if instrumentation == "independent" else own


@functools.lru_cache(maxsize=None)
def _palette(stratum: str, instrumentation: str) -> tuple[list, list, np.ndarray]:
    return _palette_for(_program_table_cached(None), stratum, instrumentation)


def _check_instrumentation(instrumentation: str) -> str:
    if instrumentation not in INSTRUMENTATION:
        raise ValueError(f"instrumentation must be one of {INSTRUMENTATION}, "
                         f"got {instrumentation!r}")
    return instrumentation


def assign_programs(stratum: str, artist_id: str, work_id: str, n_parts: int, seed: int,
                    declared: Sequence[int | None] | None = None,
                    table: pd.DataFrame | None = None,
                    instrumentation: str = "independent") -> tuple[str, list[int]]:
    """General MIDI programs for the parts of a work, by the documented rule.

    The palette is the whole table pooled (``instrumentation="independent"``: the draw does not
    depend on ``stratum``) or the stratum's rows (``"by_collection"``). The artist's favourite
    ensemble is a weighted draw from the palette with the
    stream (``seed``, CRC-32 of ``artist_id``); the work uses it with probability
    :data:`ARTIST_LOYALTY`, otherwise an independent weighted draw with the stream (``seed``,
    CRC-32 of ``work_id``). Part *i* (score order, top voice first) gets program *i* of the
    ensemble, the last one repeating for extra parts; the ensemble ``as_scored`` uses the
    programs the score declares (``declared``), piano (0) where a part declares none.

    Parameters
    ----------
    stratum, artist_id, work_id : str
        As in :func:`inventory`.
    n_parts : int
        Number of parts (>= 1).
    seed : int
        Catalog seed.
    declared : sequence of int or None, optional
        Program each part declares (music21 instrument), for ``as_scored``.
    table : pandas.DataFrame, optional
        :func:`load_program_table` output (default: the repository's table).
    instrumentation : {"independent", "by_collection"}
        One palette for all collections, or the collection's own (see the module docstring).

    Returns
    -------
    (str, list of int)
        The ensemble name and one GM program (0-127) per part.

    Notebook: 00_overview.ipynb
    """
    n_parts = _check_int("n_parts", n_parts, 1)
    seed = _check_int("seed", seed, 0)
    instrumentation = _check_instrumentation(instrumentation)
    names, palette, p = (_palette(stratum, instrumentation) if table is None
                         else _palette_for(table, stratum, instrumentation))
    favourite = np.random.default_rng([seed, _crc(artist_id), 1]).choice(len(names), p=p)
    rng = np.random.default_rng([seed, _crc(work_id), 2])
    loyal = rng.random() < ARTIST_LOYALTY
    pick = favourite if loyal else rng.choice(len(names), p=p)
    name, programs = names[pick], palette[pick]
    if programs == "score":
        declared = list(declared or [])
        progs = [int(declared[i]) if i < len(declared) and declared[i] is not None else 0
                 for i in range(n_parts)]
    else:
        progs = [int(programs[min(i, len(programs) - 1)]) for i in range(n_parts)]
    return str(name), progs


# --------------------------------------------------------------------------------------------
# parsing and clipping


def parse_work(work: Mapping) -> Any:
    """Parse one work of the corpus into a music21 ``Score``.

    Parameters
    ----------
    work : mapping
        A row of :func:`inventory` (needs ``path``, ``number``, ``merge_tunes``).

    Returns
    -------
    music21.stream.Score
        The score; for a merged file (Josquin) every tune becomes a part.

    Raises
    ------
    SkipWork
        When music21 cannot parse the file (the message names the exception).

    Notebook: 00_overview.ipynb
    """
    from music21 import converter, stream

    path = _corpus_root() / str(work["path"])
    number = work.get("number", -1)
    number = None if number is None or pd.isna(number) or int(number) < 0 else int(number)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # forceSource: never read or write music21's pickle cache (no side effects, and the
            # result does not depend on what an earlier session cached).
            parsed = converter.parse(path, number=number, forceSource=True)
    except Exception as exc:  # music21 raises many types; all mean "cannot parse"
        raise SkipWork(f"parse: {type(exc).__name__}: {str(exc)[:200]}") from None
    if bool(work.get("merge_tunes", False)) and isinstance(parsed, stream.Opus):
        score = stream.Score()
        for sub in parsed.scores:
            for part in (sub.parts or [sub]):
                score.insert(0, part)
        return score
    if isinstance(parsed, stream.Opus):
        if not parsed.scores:
            raise SkipWork("parse: the file holds no score")
        parsed = parsed.scores[0]
    if not isinstance(parsed, stream.Score):
        score = stream.Score()
        score.insert(0, parsed)
        return score
    return parsed


@dataclasses.dataclass
class Clip:
    """The notes of a work clipped to whole measures, in seconds, ready for MIDI.

    Attributes
    ----------
    onset_s, offset_s : numpy.ndarray
        float64 (n,), note start and end in seconds from the clip's start (offset > onset),
        after looping; notes start before ``clip_s``.
    pitch : numpy.ndarray
        int16 (n,), MIDI note numbers (0-127).
    part : numpy.ndarray
        int16 (n,), part index (score order, top first).
    n_parts : int
        Number of parts in the score (some may be silent in the clip).
    qpm : float
        Tempo at the start, quarter notes per minute.
    tempo_source : str
        ``"score"`` (a metronome mark) or ``"default"`` (the stratum/dance rule).
    beat_ql : float
        Notated beat in quarter lengths (1.5 for 6/8).
    time_signature : str or None
        The time signature in force (``"6/8"``), None when the score has none.
    n_measures : int
        Whole measures kept (after repeat expansion) for one pass.
    piece_s : float
        Length of one pass in seconds.
    passes : int
        Number of passes played (> 1 when the piece is shorter than ``clip_s``).
    expanded : bool
        Whether repeats were expanded.
    key : tuple (str, str) or None
        Key the encoding states (tonic name, mode), None when it gives a key signature only.
    has_lyrics : bool
        Whether notes of the clip carry lyrics.
    declared_programs : list of int or None
        GM program each part declares (music21 instrument), None where unknown.

    Notebook: 00_overview.ipynb
    """

    onset_s: np.ndarray
    offset_s: np.ndarray
    pitch: np.ndarray
    part: np.ndarray
    n_parts: int
    qpm: float
    tempo_source: str
    beat_ql: float
    time_signature: str | None
    n_measures: int
    piece_s: float
    passes: int
    expanded: bool
    key: tuple[str, str] | None
    has_lyrics: bool
    declared_programs: list[int | None]

    @property
    def n_notes(self) -> int:
        return int(self.pitch.size)


class _TempoMap:
    """Piecewise-constant tempo: quarter-length offsets -> seconds, vectorised."""

    def __init__(self, starts_ql: Sequence[float], qpms: Sequence[float]):
        self.starts = np.asarray(starts_ql, float)
        self.spq = 60.0 / np.asarray(qpms, float)  # seconds per quarter note
        seg = np.diff(self.starts) * self.spq[:-1]
        self.cum = np.concatenate([[0.0], np.cumsum(seg)])

    def seconds(self, ql) -> np.ndarray:
        ql = np.asarray(ql, float)
        i = np.clip(np.searchsorted(self.starts, ql, side="right") - 1, 0, None)
        return self.cum[i] + (ql - self.starts[i]) * self.spq[i]


def _tempo_map(part, default_qpm: float) -> tuple[_TempoMap, float, str]:
    from music21 import tempo

    marks = []
    for mm in part.flatten().getElementsByClass(tempo.MetronomeMark):
        try:
            q = mm.getQuarterBPM()
        except Exception:  # a text-only mark without a number
            q = None
        if q is not None and 20.0 <= float(q) <= 400.0:
            marks.append((float(mm.offset), float(q)))
    if not marks:
        return _TempoMap([0.0], [default_qpm]), float(default_qpm), "default"
    marks.sort()
    # The first mark governs from the very start (pickups precede the mark in many encodings).
    starts, qpms = [0.0], [marks[0][1]]
    for off, q in marks[1:]:
        if off > starts[-1]:
            starts.append(off)
            qpms.append(q)
        else:
            qpms[-1] = q
    return _TempoMap(starts, qpms), marks[0][1], "score"


def _measure_bounds(part) -> np.ndarray:
    """(n, 2) float64 start/end quarter-length offsets of the part's measures (may be empty)."""
    from music21 import stream

    bounds = [(float(m.offset), float(m.offset) + float(m.duration.quarterLength))
              for m in part.getElementsByClass(stream.Measure)]
    return np.asarray(bounds, float).reshape(-1, 2)


def _has_repeats(score) -> bool:
    from music21 import bar, repeat

    return any(True for _ in score.recurse().getElementsByClass((bar.Repeat, repeat.RepeatMark)))


def _pitch_ties(n):
    """(midi, tie type or None) for each pitch of a Note or Chord."""
    from music21 import chord

    if isinstance(n, chord.Chord):
        for sub in n.notes:
            tie = sub.tie or n.tie
            yield int(round(sub.pitch.ps)), (tie.type if tie is not None else None)
    else:
        yield int(round(n.pitch.ps)), (n.tie.type if n.tie is not None else None)


def _extract_notes(score, end_ql: float) -> tuple[list[np.ndarray], bool, list[int | None]]:
    """Per part (k, 3) [onset_ql, end_ql, midi], ties merged; lyrics flag; declared programs."""
    from music21 import harmony, note, percussion

    per_part, has_lyrics, declared = [], False, []
    for part in score.parts:
        try:
            inst = part.getInstrument(returnDefault=False)
            declared.append(None if inst is None or inst.midiProgram is None
                            else int(inst.midiProgram))
        except Exception:
            declared.append(None)
        on, off, mid = [], [], []
        open_ties: dict[int, int] = {}
        for n in part.flatten().notes:
            if isinstance(n, (harmony.ChordSymbol, note.Unpitched, percussion.PercussionChord)):
                continue
            start, dur = float(n.offset), float(n.duration.quarterLength)
            if n.duration.isGrace or dur <= 0 or start >= end_ql:
                continue
            has_lyrics = has_lyrics or bool(n.lyrics)
            for midi, tie in _pitch_ties(n):
                if not 0 <= midi <= 127:
                    continue
                j = open_ties.get(midi)
                # A tied continuation extends the open note instead of re-striking it.
                if tie in ("stop", "continue") and j is not None and abs(off[j] - start) < 1e-3:
                    off[j] = start + dur
                    if tie == "stop":
                        del open_ties[midi]
                    continue
                on.append(start)
                off.append(start + dur)
                mid.append(midi)
                if tie in ("start", "continue"):
                    open_ties[midi] = len(on) - 1
                else:
                    open_ties.pop(midi, None)
        arr = np.column_stack([on, off, mid]).astype(float) if on else np.zeros((0, 3))
        arr[:, 1] = np.minimum(arr[:, 1], end_ql)
        per_part.append(arr)
    return per_part, has_lyrics, declared


def clip_score(score, clip_s: float = 30.0, default_qpm: float = 100.0) -> Clip:
    """Clip a score to whole measures covering ``clip_s`` seconds, repeats expanded.

    Steps: the tempo is the score's first metronome mark (20-400 qpm), else ``default_qpm``;
    a score longer than 2.5 × ``clip_s`` that has repeats is first cut to the measures that
    cover 1.25 × ``clip_s`` (two measures to spare), so that expanding its repeats stays cheap
    (if expanding the excerpt fails, a twice longer excerpt is tried, then the whole score when
    it has at most :data:`MAX_FULL_EXPAND_FACTOR` times the first excerpt's measures); after
    expansion, whole
    measures are kept until their end reaches ``clip_s``; ties are merged, grace notes dropped;
    a piece shorter than ``clip_s`` is played again from the top until it is covered. A score
    without measures (some abc) is clipped at the last note that starts before ``clip_s``.

    Parameters
    ----------
    score : music21.stream.Score
        From :func:`parse_work`.
    clip_s : float
        Target length in seconds (> 0).
    default_qpm : float
        Tempo (quarter notes per minute) when the score has no metronome mark.

    Returns
    -------
    Clip
        The note events in seconds and what was done.

    Raises
    ------
    SkipWork
        ``"expand repeats: ..."`` when the repeats cannot be expanded, ``"no notes"`` or
        ``"too short: ..."`` (one pass under :data:`MIN_PIECE_S` seconds).

    Notebook: 00_overview.ipynb
    """
    from music21 import key as m21key
    from music21 import meter

    clip_s = _check_positive("clip_s", clip_s)
    default_qpm = _check_positive("default_qpm", default_qpm)
    if not score.parts:
        raise SkipWork("no notes: the score has no parts")
    expanded = False
    if _has_repeats(score) and len(_measure_bounds(score.parts[0])):
        tmap, _, _ = _tempo_map(score.parts[0], default_qpm)
        bounds = _measure_bounds(score.parts[0])
        ends_s = tmap.seconds(bounds[:, 1])
        n_all = len(bounds)
        # Excerpts to try, shortest first. An excerpt can cut a repeat bracket in two, so a
        # failure retries a twice longer one; the whole score is expanded only when it is not
        # much longer than that (a whole quartet takes a minute to expand: skip it instead).
        cuts = []
        if ends_s[-1] > 2.5 * clip_s:
            k = int(np.searchsorted(ends_s, 1.25 * clip_s)) + 2
            cuts = [c for c in (k, 2 * k) if c < n_all]
            if n_all <= MAX_FULL_EXPAND_FACTOR * k:
                cuts.append(n_all)
        else:
            cuts = [n_all]
        error = None
        for cut in cuts:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    work = score if cut >= n_all else score.measures(0, cut, indicesNotNumbers=True)
                    expanded_score = work.expandRepeats()
            except Exception as exc:  # music21's ExpanderException, StreamException, ...
                error = exc
                continue
            score, expanded, error = expanded_score, True, None
            break
        if error is not None or not expanded:
            what = f"{type(error).__name__}: {str(error)[:200]}" if error else "no excerpt to try"
            raise SkipWork(f"expand repeats: {what}"
                           + ("" if cuts and cuts[-1] >= n_all else
                              f" (excerpts of {cuts} of {n_all} measures tried)"))

    part0 = score.parts[0]
    tmap, qpm, tempo_source = _tempo_map(part0, default_qpm)
    bounds = _measure_bounds(part0)
    if len(bounds):
        ends_s = tmap.seconds(bounds[:, 1])
        k = int(np.searchsorted(ends_s, clip_s - 1e-9))  # first measure ending at/after clip_s
        k = min(k, len(bounds) - 1)
        end_ql, n_measures = float(bounds[k, 1]), k + 1
    else:
        end_ql, n_measures = float(score.highestTime), 0
    per_part, has_lyrics, declared = _extract_notes(score, end_ql)
    if not len(bounds):  # no measures: cut after the last note that starts before clip_s
        onsets = np.concatenate([p[:, 0] for p in per_part]) if per_part else np.zeros(0)
        late = onsets[tmap.seconds(onsets) >= clip_s]
        if late.size:
            end_ql = float(late.min())
            per_part = [p[p[:, 0] < end_ql] for p in per_part]
            for p in per_part:
                p[:, 1] = np.minimum(p[:, 1], end_ql)
    n_total = sum(len(p) for p in per_part)
    if n_total == 0:
        raise SkipWork("no notes: nothing pitched in the clipped measures")
    end_ql = max(end_ql, max(float(p[:, 1].max()) for p in per_part if len(p)))
    piece_s = float(tmap.seconds(end_ql))
    if piece_s < MIN_PIECE_S:
        raise SkipWork(f"too short: one pass lasts {piece_s:.2f} s < {MIN_PIECE_S} s")

    on = np.concatenate([tmap.seconds(p[:, 0]) for p in per_part])
    off = np.concatenate([tmap.seconds(p[:, 1]) for p in per_part])
    pitch = np.concatenate([p[:, 2] for p in per_part]).astype(np.int16)
    part = np.concatenate([np.full(len(p), i, np.int16) for i, p in enumerate(per_part)])
    passes = max(1, int(math.ceil(clip_s / piece_s - 1e-9)))
    if passes > 1:  # strophic repetition: the whole pass again, back to back
        shift = np.repeat(np.arange(passes) * piece_s, on.size)
        on, off = np.tile(on, passes) + shift, np.tile(off, passes) + shift
        pitch, part = np.tile(pitch, passes), np.tile(part, passes)
    keep = on < clip_s
    on, off, pitch, part = on[keep], np.minimum(off[keep], clip_s), pitch[keep], part[keep]
    order = np.lexsort((pitch, part, on))

    ts_all = list(part0.flatten().getElementsByClass(meter.TimeSignature))
    # Some abc encodings carry a bogus 1/16 "meter" taken from the L: field: skip those.
    ts = next((t for t in ts_all if t.numerator >= 2), ts_all[0] if ts_all else None)
    keys = [k for k in part0.flatten().getElementsByClass(m21key.Key)]
    key = (keys[0].tonic.name, str(keys[0].mode)) if keys else None
    return Clip(
        onset_s=on[order], offset_s=off[order], pitch=pitch[order], part=part[order],
        n_parts=len(per_part), qpm=float(qpm), tempo_source=tempo_source,
        beat_ql=float(ts.beatDuration.quarterLength) if ts is not None else 1.0,
        time_signature=ts.ratioString if ts is not None else None, n_measures=n_measures,
        piece_s=piece_s, passes=passes, expanded=expanded, key=key, has_lyrics=has_lyrics,
        declared_programs=declared)


def default_qpm(work: Mapping, seed: int) -> float:
    """Tempo for a score without a metronome mark: dance type, else stratum, ±8 % seeded jitter.

    Parameters
    ----------
    work : mapping
        A row of :func:`inventory` (``stratum``, ``dance``, ``work_id``).
    seed : int
        Catalog seed; the jitter uses the stream (``seed``, CRC-32 of ``work_id``, 3).

    Returns
    -------
    float
        Quarter notes per minute.

    Notebook: 00_overview.ipynb
    """
    dance = work.get("dance")
    base = DANCE_QPM.get(dance, STRATA[work["stratum"]].qpm) if isinstance(dance, str) \
        else STRATA[work["stratum"]].qpm
    jitter = np.random.default_rng([int(seed), _crc(work["work_id"]), 3]).uniform(0.92, 1.08)
    return float(base * jitter)


# --------------------------------------------------------------------------------------------
# MIDI and audio


def to_midi(clip: Clip, programs: Sequence[int]) -> bytes:
    """Write the clip as a Standard MIDI File, one instrument (channel) per part.

    Parameters
    ----------
    clip : Clip
        From :func:`clip_score`.
    programs : sequence of int
        GM program (0-127) per part, ``len >= clip.n_parts``.

    Returns
    -------
    bytes
        The MIDI file. Parts beyond the 15th share the 15th's channel (channel 10 is drums).

    Notebook: 00_overview.ipynb
    """
    import pretty_midi

    if len(programs) < clip.n_parts:
        raise ValueError(f"need one program per part: {clip.n_parts} parts, "
                         f"{len(programs)} programs")
    pm = pretty_midi.PrettyMIDI(resolution=960, initial_tempo=120.0)
    instruments: dict[int, Any] = {}
    for i in range(clip.n_parts):
        slot = min(i, 14)
        if slot not in instruments:
            instruments[slot] = pretty_midi.Instrument(program=int(programs[i]), name=f"part {i}")
    for on, off, p, i in zip(clip.onset_s.tolist(), clip.offset_s.tolist(),
                             clip.pitch.tolist(), clip.part.tolist()):
        vel = VELOCITY_TOP if i == 0 else VELOCITY_OTHER
        instruments[min(i, 14)].notes.append(
            pretty_midi.Note(velocity=vel, pitch=int(p), start=on, end=max(off, on + 0.01)))
    pm.instruments.extend(inst for inst in instruments.values() if inst.notes)
    buf = io.BytesIO()
    pm.write(buf)
    return buf.getvalue()


def render_midi(midi: bytes, sr: int = 22050, duration_s: float | None = None) -> np.ndarray:
    """Render MIDI with ``TimGM6mb.sf2`` through ``midirenderer``; mono, resampled, normalised.

    Parameters
    ----------
    midi : bytes
        A Standard MIDI File.
    sr : int
        Output sample rate in Hz.
    duration_s : float, optional
        Cut (or zero-pad) to exactly this many seconds, with a 50 ms half-cosine fade-out.

    Returns
    -------
    numpy.ndarray
        float32 (n,), mono, RMS -20 dBFS with peaks under -1 dBFS (silence stays silence).

    Notebook: 00_overview.ipynb
    """
    import midirenderer
    import soundfile as sf
    from scipy.signal import resample_poly

    sr = _check_int("sr", sr, 1000)
    wav = midirenderer.render_wave_from(_soundfont_bytes(), bytes(midi))
    y, sr_in = sf.read(io.BytesIO(wav), dtype="float32", always_2d=True)
    y = y.mean(axis=1)
    if sr_in != sr:
        g = math.gcd(int(sr_in), sr)
        y = resample_poly(y, sr // g, int(sr_in) // g).astype(np.float32)
    if duration_s is not None:
        n = int(round(_check_positive("duration_s", duration_s) * sr))
        y = np.pad(y[:n], (0, max(0, n - y.size)))
        fade = min(n, int(0.05 * sr))
        if fade:
            y[n - fade:] *= (0.5 + 0.5 * np.cos(np.linspace(0, np.pi, fade))).astype(np.float32)
    rms = float(np.sqrt(np.mean(np.square(y, dtype=np.float64)))) if y.size else 0.0
    peak = float(np.abs(y).max()) if y.size else 0.0
    if rms > 0:
        y = y * np.float32(min(TARGET_RMS / rms, PEAK_CEILING / peak))
    return y.astype(np.float32, copy=False)


# --------------------------------------------------------------------------------------------
# tags


def pitch_class_histogram(clip: Clip) -> np.ndarray:
    """Duration-weighted pitch-class histogram of a clip.

    Parameters
    ----------
    clip : Clip
        Note events in seconds.

    Returns
    -------
    numpy.ndarray
        float64 (12,), C = 0, summing to 1 (all zeros for an empty clip).

    Notebook: 00_overview.ipynb
    """
    w = np.clip(clip.offset_s - clip.onset_s, 0.0, None)
    hist = np.bincount(clip.pitch.astype(np.int64) % 12, weights=w, minlength=12)
    total = hist.sum()
    return hist / total if total > 0 else hist


def key_likelihoods(hist: np.ndarray) -> tuple[float, float, int]:
    """Krumhansl-Kessler key finding on a pitch-class histogram.

    The histogram is correlated with the 12 rotations of the major and minor probe-tone
    profiles (Krumhansl & Kessler 1982); the likelihood of major is a logistic of the gap
    between the best major and the best minor correlation (slope 12).

    Parameters
    ----------
    hist : array-like
        (12,) non-negative pitch-class weights, C = 0.

    Returns
    -------
    (float, float, int)
        P(major), P(minor) = 1 - P(major), and the tonic pitch class (0-11) of the best key.

    Notebook: 00_overview.ipynb
    """
    h = np.asarray(hist, float)
    if h.shape != (12,) or (h < 0).any():
        raise ValueError(f"hist must be 12 non-negative weights, got shape {h.shape}")
    if not h.any() or np.allclose(h, h[0]):
        return 0.5, 0.5, 0
    # rot[m, t, i] = profile m of tonic t at pitch class i
    rot = np.stack([np.stack([np.roll(p, t) for t in range(12)]) for p in _KK_PROFILES])
    hc = (h - h.mean()) / np.linalg.norm(h - h.mean())
    pc = rot - rot.mean(axis=2, keepdims=True)
    r = (pc @ hc) / np.linalg.norm(pc, axis=2)  # (2, 12) Pearson correlations
    best = np.unravel_index(int(np.argmax(r)), r.shape)
    p_major = 1.0 / (1.0 + math.exp(-_MODE_SLOPE * (r[0].max() - r[1].max())))
    return float(p_major), float(1.0 - p_major), int(best[1])


def _abc_key_mode(field: str | None) -> tuple[str, str] | None:
    """'Ador' -> ('A', 'dorian'); 'G' -> None (abc K: without a mode word states no mode)."""
    if not field:
        return None
    m = re.match(r"^\s*([A-Ga-g])([#b]?)\s*([A-Za-z]*)", str(field))
    if not m or not m.group(3):
        return None
    word = m.group(3).lower()
    mode = _ABC_MODE_WORDS.get(word, _ABC_MODE_WORDS.get(word[:3]))
    if mode is None:
        return None
    return m.group(1).upper() + m.group(2).replace("b", "-"), mode


def _tonic_pc(name: str) -> int:
    from music21 import pitch

    return int(pitch.Pitch(name).pitchClass)


def _soft_bands(bpm: float) -> dict[str, float]:
    x = math.log2(max(bpm, 1e-6))
    lo, hi = (math.log2(b) for b in TEMPO_BANDS)
    slow = 1.0 / (1.0 + math.exp((x - lo) / _TEMPO_SOFTNESS * 4))
    fast = 1.0 / (1.0 + math.exp(-(x - hi) / _TEMPO_SOFTNESS * 4))
    return {"tempo_slow": slow, "tempo_moderate": max(0.0, 1.0 - slow - fast),
            "tempo_fast": fast}


def work_tags(work: Mapping, clip: Clip, programs: Sequence[int]) -> dict[str, float]:
    """Tag likelihoods of a rendered work, in the five categories (see the module docstring).

    Parameters
    ----------
    work : mapping
        A row of :func:`inventory`.
    clip : Clip
        The clipped notes (mode, meter, tempo, sounding parts, lyrics).
    programs : sequence of int
        The GM programs used (``gm_*`` tags for the sounding parts).

    Returns
    -------
    dict str -> float
        Non-zero tags only, values in [0, 1], rounded to 3 decimals; :func:`tag_category`
        gives each tag's category.

    Notebook: 00_overview.ipynb
    """
    import pretty_midi

    st = STRATA[work["stratum"]]
    tags: dict[str, float] = {}

    def put(tag: str, value: float):
        value = round(float(min(1.0, max(0.0, value))), 3)
        if value > 0:
            tags[tag] = max(tags.get(tag, 0.0), value)

    # Genre
    put(f"style_{st.style}", 1)
    put(f"coll_{st.collection}", 1)
    if isinstance(work.get("region"), str):
        put(f"region_{work['region']}", 1)
    if isinstance(work.get("composer"), str):
        put(f"composer_{work['composer']}", 1)
    title = _str(work.get("title")).lower()
    song_type = _str(work.get("abc_R")).lower()
    sacred = st.sacred
    if work["stratum"].startswith("essen"):
        essen_type = _match_first(_ESSEN_TYPES, song_type)
        if essen_type:
            put(f"genre_{essen_type}", 1)
        sacred = 1.0 if re.search(r"religi|geistlich", song_type) else 0.0
    elif work["stratum"] == "trecento":
        vol = re.match(r"PMFC_(\d+)", str(work.get("stem", "")))
        secular = vol is not None and int(vol.group(1)) in (4, 6)  # Landini, Italian secular
        sacred = 0.0 if secular else (1.0 if _SACRED.search(title + " " + str(work.get("stem")))
                                      else 0.5)  # latin motets: ceremonial rather than liturgical
    elif work["stratum"] in ("renaissance", "classical"):
        sacred = 1.0 if _SACRED.search(title + " " + str(work.get("stem", "")).lower()) else 0.0
    put("genre_sacred", sacred)
    put("genre_secular", 1.0 - sacred)

    # Recording: the programs of the parts that sound in the clip
    sounding = sorted(set(clip.part.tolist()))
    for i in sounding:
        put("gm_" + _slug(pretty_midi.program_to_instrument_name(int(programs[i]))), 1)
    n = len(sounding)
    put({1: "ensemble_solo", 2: "ensemble_small", 3: "ensemble_small",
         4: "ensemble_quartet"}.get(n, "ensemble_large"), 1)

    # Mood: mode and tonic
    p_major, p_minor, tonic = key_likelihoods(pitch_class_histogram(clip))
    explicit = _abc_key_mode(_str(work.get("abc_K"))) if work.get("ext") == ".abc" else clip.key
    modal = 1.0 if st.modal else 0.0
    if explicit is not None and explicit[1] in _EXPLICIT_MODES:
        family, is_modal = _EXPLICIT_MODES[explicit[1]]
        weight = 0.5 if is_modal else 1.0  # a church mode leans major or minor, no more
        p_major, p_minor = (weight, 0.0) if family == "major" else (0.0, weight)
        modal = max(modal, is_modal)
        try:
            tonic = _tonic_pc(explicit[0])
        except Exception:
            pass
    put("mode_major", p_major)
    put("mode_minor", p_minor)
    put("mode_modal", modal)
    put(f"tonic_{PITCH_NAMES[tonic]}", 1)

    # Movement: meter, dance, tempo band of the notated beat
    if clip.time_signature:
        from music21 import meter

        try:
            ts = meter.TimeSignature(clip.time_signature)
            beats, division = ts.beatCount, ts.beatDivisionCount
        except Exception:  # an additive or odd signature music21 cannot re-read: irregular
            beats, division = 0, 0
        put({2: "meter_duple", 4: "meter_duple", 3: "meter_triple"}.get(beats,
                                                                          "meter_irregular"), 1)
        put("meter_compound", 1.0 if division == 3 else 0.0)
    if isinstance(work.get("dance"), str):
        put(f"dance_{work['dance']}", 1)
    for tag, v in _soft_bands(clip.qpm / clip.beat_ql).items():
        put(tag, v)

    # Lyrics (inaudible: everything is rendered instrumentally)
    vocal, language = st.vocal, dict(st.language)
    stratum = work["stratum"]
    if stratum == "oneills":
        vocal = 0.5 if work.get("dance") == "air" else 0.0  # slow airs are song melodies
    elif stratum == "miscfolk":
        vocal = 0.5 if "northumbrian" in str(work.get("stem", "")).lower() else 0.0
    elif stratum.startswith("essen") and work.get("region") in ("netherlands",):
        language = {"dutch": 1.0}
    elif stratum == "renaissance":
        folder = str(work.get("folder", "")).lower()
        lang = _JOSQUIN_LANG.get(str(work.get("stem")), {"luca": "latin"}.get(folder, "italian"))
        language = {lang: 1.0}
    elif stratum == "trecento":
        language = {"latin": 1.0} if sacred > 0 else {"italian": 1.0}
    elif stratum == "classical":
        vocal = 1.0 if clip.has_lyrics else 0.0
        lang = _CLASSICAL_LANG.get(str(work.get("folder", "")).lower())
        language = {lang: 1.0} if lang else {}
    in_score = clip.has_lyrics or bool(work.get("abc_lyrics", False))
    put("lyrics_vocal", max(vocal, 1.0 if in_score else 0.0))
    put("lyrics_instrumental", 1.0 - max(vocal, 1.0 if in_score else 0.0))
    put("lyrics_in_score", 1.0 if in_score else 0.0)
    if max(vocal, in_score) > 0:
        for lang, v in language.items():
            put(f"lang_{lang}", v * max(vocal, 1.0 if in_score else 0.0))
    return tags


def tag_category(tag: str) -> str:
    """The category of a tag of this catalog, from its prefix.

    Parameters
    ----------
    tag : str
        A tag name such as ``"dance_reel"``.

    Returns
    -------
    str
        One of ``Genre, Recording, Mood, Movement, Lyrics``.

    Notebook: 00_overview.ipynb
    """
    for prefix, category in _PREFIX_CATEGORY:
        if tag.startswith(prefix):
            return category
    raise ValueError(f"unknown tag prefix: {tag!r}")


# --------------------------------------------------------------------------------------------
# one work, end to end


def render_work(work: Mapping | str, clip_s: float = 30.0, sr: int = 22050,
                seed: int = 0, instrumentation: str = "independent") -> dict:
    """Parse, clip, instrument, render and tag one work (what the build does per work).

    Parameters
    ----------
    work : mapping or str
        A row of :func:`inventory`, or its ``work_id`` (e.g. ``"bach/bwv101.7.mxl"``).
    clip_s : float
        Clip length in seconds.
    sr : int
        Sample rate of the returned audio (Hz).
    seed : int
        Catalog seed (tempo jitter and ensemble choice).
    instrumentation : {"independent", "by_collection"}
        Palette of the ensemble draw (:func:`assign_programs`).

    Returns
    -------
    dict
        ``audio`` float32 (clip_s·sr,), ``clip`` (:class:`Clip`), ``programs`` (list of int),
        ``ensemble`` (str), ``tags`` (dict), ``midi`` (bytes) and ``timing`` (CPU seconds of
        ``parse``, ``clip``, ``render``).

    Raises
    ------
    SkipWork
        With the reason, when the work cannot be rendered.

    Notebook: 00_overview.ipynb
    """
    if isinstance(work, str):
        inv = _inventory_cached()
        hit = inv[inv["work_id"] == work]
        if hit.empty:
            raise ValueError(f"unknown work_id {work!r}; see inventory()['work_id']")
        work = hit.iloc[0].to_dict()
    clip_s = _check_positive("clip_s", clip_s)
    sr = _check_int("sr", sr, 1000)
    seed = _check_int("seed", seed, 0)
    t0 = time.process_time()
    score = parse_work(work)
    t1 = time.process_time()
    clip = clip_score(score, clip_s, default_qpm(work, seed))
    t2 = time.process_time()
    ensemble, programs = assign_programs(work["stratum"], work["artist_id"], work["work_id"],
                                         clip.n_parts, seed, clip.declared_programs,
                                         instrumentation=instrumentation)
    midi = to_midi(clip, programs)
    try:
        audio = render_midi(midi, sr, clip_s)
    except Exception as exc:
        raise SkipWork(f"render: {type(exc).__name__}: {str(exc)[:200]}") from None
    t3 = time.process_time()
    if float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) < 1e-4:
        raise SkipWork("render: silent audio")
    tags = work_tags(work, clip, programs)
    return {"audio": audio, "clip": clip, "programs": programs, "ensemble": ensemble,
            "tags": tags, "midi": midi,
            "timing": {"parse": t1 - t0, "clip": t2 - t1, "render": t3 - t2}}


def chroma_agreement(audio: np.ndarray, sr: int, clip: Clip) -> dict[str, float]:
    """How well the rendered audio's chroma matches the score's pitch classes.

    Parameters
    ----------
    audio : numpy.ndarray
        float32 (n,) mono audio of the clip.
    sr : int
        Its sample rate (Hz).
    clip : Clip
        The notes that were rendered.

    Returns
    -------
    dict
        ``correlation`` (Pearson r between the time-averaged ``librosa.feature.chroma_cqt``
        and :func:`pitch_class_histogram`) and ``top3_overlap`` (how many of the score's three
        strongest pitch classes are among the audio's three strongest, 0-3).

    Notebook: 00_overview.ipynb
    """
    import librosa

    sr = _check_int("sr", sr, 1000)
    y = np.asarray(audio, np.float32)
    chroma = librosa.feature.chroma_cqt(y=y, sr=sr).mean(axis=1)
    hist = pitch_class_histogram(clip)
    r = float(np.corrcoef(chroma, hist)[0, 1])
    top = len(set(np.argsort(-chroma)[:3]) & set(np.argsort(-hist)[:3]))
    return {"correlation": r, "top3_overlap": float(top)}


# --------------------------------------------------------------------------------------------
# the build


def _config_key(clip_s: float, sr: int, seed: int, instrumentation: str) -> str:
    info = {"clip_s": clip_s, "sr": sr, "seed": seed, "render_version": RENDER_VERSION,
            "instrumentation": instrumentation,
            "loyalty": ARTIST_LOYALTY, "versions": _versions(),
            "programs": hashlib.sha1((paths.repo_root() / "data" / "repertoire_programs.csv")
                                     .read_bytes()).hexdigest()}
    return hashlib.sha1(json.dumps(info, sort_keys=True).encode()).hexdigest()[:16]


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _process_work(work: dict, clip_s: float, sr: int, seed: int, instrumentation: str,
                  root: str, config_key: str) -> dict:
    """One work -> a cached record (status ok with tags and audio, or skipped with a reason)."""
    import soundfile as sf

    root_p = Path(root)
    record = {"work_id": work["work_id"], "track_id": work["track_id"],
              "stratum": work["stratum"], "config_key": config_key}
    t0 = time.process_time()
    try:
        out = render_work(work, clip_s, sr, seed, instrumentation)
    except SkipWork as exc:
        record.update(status="skipped", reason=str(exc))
    except Exception as exc:  # anything else is a bug in the corpus or here: report, don't die
        record.update(status="skipped", reason=f"error: {type(exc).__name__}: {str(exc)[:200]}")
    else:
        rel = f"audio/{work['track_id']}.flac"
        buf = io.BytesIO()
        sf.write(buf, out["audio"], sr, format="FLAC", subtype="PCM_16")
        _atomic_write(root_p / rel, buf.getvalue())
        clip = out["clip"]
        record.update(
            status="ok", path=rel, duration_s=round(out["audio"].size / sr, 6), tags=out["tags"],
            ensemble=out["ensemble"], programs=out["programs"], qpm=round(clip.qpm, 3),
            tempo_source=clip.tempo_source, time_signature=clip.time_signature,
            n_parts=clip.n_parts, n_notes=clip.n_notes, n_measures=clip.n_measures,
            passes=clip.passes, expanded=clip.expanded,
            timing={k: round(v, 4) for k, v in out["timing"].items()})
    record["cpu_s"] = round(time.process_time() - t0, 4)
    _atomic_write(root_p / "cache" / "works" / f"{work['track_id']}.json",
                  json.dumps(record, sort_keys=True).encode())
    return record


def _split(artist_ids: np.ndarray, seed: int) -> np.ndarray:
    """Artist-disjoint 60/20/20 split with the catalog module's shared helper."""
    from mrlib.catalog import artist_disjoint_split  # imported late: catalog imports us lazily

    out = np.asarray(artist_disjoint_split(artist_ids, fractions=(0.6, 0.2, 0.2), seed=seed))
    return out.astype(object)


def build(n_tracks: int = 200, seed: int = 0, root: str | os.PathLike | None = None,
          clip_s: float = 30.0, sr: int = 22050, n_jobs: int = 2,
          progress: bool = True, instrumentation: str = "independent",
          overwrite: bool = False) -> Path:
    """Build the ``music21`` catalog: draw, render and tag ``n_tracks`` works.

    Works are drawn by :func:`stratum_quotas` and :func:`draw_order`; each is rendered by
    :func:`render_work` in parallel (joblib, ``n_jobs`` processes); a skipped work is replaced by
    the next of its stratum (a stratum that runs out hands its remaining quota to the others),
    so the catalog reaches ``n_tracks`` whenever the corpus allows. Every per-work result is
    cached in ``<root>/cache/works/`` (keyed by the rendering configuration and the package
    versions): an interrupted build resumes without redoing finished works, and a finished build
    returns at once.

    Parameters
    ----------
    n_tracks : int
        Number of tracks wanted (>= 1).
    seed : int
        Seed of the draw, tempi and instruments (>= 0).
    root : path-like, optional
        Output folder; default ``mrlib.paths.data_dir() / f"music21_n{n_tracks}_s{seed}"``,
        with ``_by_collection`` appended for that instrumentation.
    clip_s : float
        Length of every track in seconds.
    sr : int
        Audio sample rate in Hz (written as 16-bit mono FLAC).
    n_jobs : int
        Worker processes (1 = in this process).
    progress : bool
        Show a tqdm progress bar.
    instrumentation : {"independent", "by_collection"}
        Ensembles drawn from one palette for every collection (default), or from each
        collection's own palette, where timbre gives the collection away
        (:func:`assign_programs`).
    overwrite : bool
        Build into a folder that holds a catalog of other settings, or one that no music21 build
        wrote (a hand-made catalog): its files are first moved into ``replaced-<time>/``.
        Without it such a folder is an error and nothing in it changes.

    Returns
    -------
    pathlib.Path
        ``root``, holding ``tracks.csv`` (track_id, artist_id, split, path, duration_s, plus
        work_id, stratum, title), ``tags.csv``, ``vocabulary.csv``, ``skipped.csv`` (work,
        reason), ``audio/*.flac`` and ``catalog.json`` (config, seed, versions, timing, the
        failure report and ``"complete": true``, written last).

    Notebook: 00_overview.ipynb
    """
    n_tracks = _check_int("n_tracks", n_tracks, 1)
    seed = _check_int("seed", seed, 0)
    clip_s = _check_positive("clip_s", clip_s)
    sr = _check_int("sr", sr, 1000)
    n_jobs = _check_int("n_jobs", n_jobs, 1)
    instrumentation = _check_instrumentation(instrumentation)
    suffix = "" if instrumentation == "independent" else f"_{instrumentation}"
    root = (Path(root) if root is not None
            else paths.data_dir() / f"music21_n{n_tracks}_s{seed}{suffix}")
    config = {"n_tracks": n_tracks, "seed": seed, "clip_s": clip_s, "sr": sr,
              "instrumentation": instrumentation}
    key = _config_key(clip_s, sr, seed, instrumentation)
    info = paths.read_json_or_empty(root / "catalog.json")
    if info.get("complete") and _same_build(info, config, key):
        return root
    root.mkdir(parents=True, exist_ok=True)
    with paths.FolderLock(root, "catalog"):
        # read again under the lock: another build may have finished or replaced it meanwhile
        _make_room(root, paths.read_json_or_empty(root / "catalog.json"), config, key, overwrite)
        return _build_locked(root, config, key, n_jobs, progress)


_CATALOG_FILES = ("tracks.csv", "tags.csv", "vocabulary.csv", "skipped.csv", "catalog.json")


def _same_build(info: dict, config: dict, key: str) -> bool:
    return info.get("config") == config and info.get("config_key") == key


def _make_room(root: Path, info: dict, config: dict, key: str, overwrite: bool) -> None:
    """Refuse (or, with ``overwrite``, move aside) a folder that holds another catalog.

    Ours: a music21 manifest of the same settings, or the per-work cache of an interrupted
    build (no manifest yet). Anything else that looks like a catalog belongs to someone else.
    """
    present = [f for f in _CATALOG_FILES if (root / f).exists()]
    if (root / "audio").is_dir() and any((root / "audio").iterdir()):
        present.append("audio/")
    ours = info.get("name") == "music21" if info else (root / "cache" / "works").is_dir()
    if not present or (ours and (not info or _same_build(info, config, key))):
        return
    what = (f"a music21 catalog built with {info.get('config')}, not {config}" if ours
            else "a catalog that no music21 build wrote")
    if not overwrite:
        raise ValueError(f"{root} holds {what} ({', '.join(present)}); nothing was changed. "
                         "Choose another root, or pass overwrite=True (--overwrite) to move those "
                         "files into a replaced-<time>/ folder and build here")
    paths.move_aside(root, present + (["cache/"] if (root / "cache").is_dir() else []), "music21")


def _build_locked(root: Path, config: dict, key: str, n_jobs: int, progress: bool) -> Path:
    """The build proper, in a locked folder that is empty or holds this build's own files."""
    from joblib import Parallel, delayed

    n_tracks, seed = config["n_tracks"], config["seed"]
    clip_s, sr, instrumentation = config["clip_s"], config["sr"], config["instrumentation"]
    manifest = root / "catalog.json"
    (root / "audio").mkdir(parents=True, exist_ok=True)
    (root / "cache" / "works").mkdir(parents=True, exist_ok=True)
    wall0 = time.perf_counter()

    works = _inventory_cached()
    queues = draw_order(works, seed)
    quota = stratum_quotas({s: len(q) for s, q in queues.items()}, n_tracks)
    pos = {s: 0 for s in queues}
    ok: dict[str, list[dict]] = {s: [] for s in queues}
    skipped: list[dict] = []
    records: list[dict] = []
    bar = tqdm(total=sum(quota.values()), desc="music21 catalog", unit="work",
               disable=not progress)
    pool = Parallel(n_jobs=n_jobs, return_as="generator_unordered") if n_jobs > 1 else None
    while True:
        batch = []
        for s, q in queues.items():
            need = quota[s] - len(ok[s])
            take = q[pos[s]:pos[s] + need]
            pos[s] += len(take)
            batch.extend(take)
        if not batch:
            short = {s: quota[s] - len(ok[s]) for s in queues if quota[s] > len(ok[s])}
            if not short:
                break
            # Exhausted strata hand their missing tracks to strata that still have works.
            spare = {s: len(queues[s]) - pos[s] for s in queues if len(queues[s]) > pos[s]}
            if not spare:
                break
            for s in short:
                quota[s] = len(ok[s])
            for s, extra in stratum_quotas(spare, sum(short.values())).items():
                quota[s] += extra
            continue
        todo, results = [], {}
        for i in batch:
            work = works.iloc[i]
            cached = root / "cache" / "works" / f"{work['track_id']}.json"
            rec = None
            if cached.is_file():
                try:
                    rec = json.loads(cached.read_text())
                except json.JSONDecodeError:
                    rec = None
                if rec and (rec.get("config_key") != key or (
                        rec.get("status") == "ok" and not (root / rec["path"]).is_file())):
                    rec = None
            if rec is None:
                todo.append(i)
            else:
                results[i] = rec
                bar.update(1)
        # Longest first (parts x length: whole quartets parse for seconds, a folk tune in
        # milliseconds) so that the workers finish together; results are keyed by work, so the
        # completion order does not change the catalog.
        todo.sort(key=lambda i: (-float(works.iloc[i]["n_parts"])
                                 * float(works.iloc[i]["quarter_length"]), i))
        args = [(works.iloc[i].to_dict(), clip_s, sr, seed, instrumentation, str(root), key)
                for i in todo]
        if pool is None:
            outs = (_process_work(*a) for a in args)
        else:
            outs = pool(delayed(_process_work)(*a) for a in args)
        index_of = {works.iloc[i]["track_id"]: i for i in todo}
        for rec in outs:
            results[index_of[rec["track_id"]]] = rec
            bar.update(1)
        for i in batch:
            rec = results[i]
            records.append(rec)
            if rec["status"] == "ok":
                ok[rec["stratum"]].append(rec)
            else:
                skipped.append(rec)
                bar.total += 1  # a replacement will be tried
        bar.refresh()
    bar.close()

    kept = [r for s in STRATA if s in ok for r in ok[s]]
    if not kept:
        raise RuntimeError(f"no work could be rendered; first reasons: "
                           f"{[r['reason'] for r in skipped[:5]]}")
    by_id = works.set_index("work_id")
    tracks = pd.DataFrame({
        "track_id": [r["track_id"] for r in kept],
        "artist_id": [by_id.at[r["work_id"], "artist_id"] for r in kept],
        "split": "",
        "path": [r["path"] for r in kept],
        "duration_s": [r["duration_s"] for r in kept],
        "work_id": [r["work_id"] for r in kept],
        "stratum": [r["stratum"] for r in kept],
        "title": [by_id.at[r["work_id"], "title"] for r in kept],
    })
    tracks["split"] = _split(tracks["artist_id"].to_numpy(), seed)
    all_tags = sorted({t for r in kept for t in r["tags"]},
                      key=lambda t: (CATEGORIES.index(tag_category(t)), t))
    T = np.zeros((len(kept), len(all_tags)), np.float32)
    col = {t: j for j, t in enumerate(all_tags)}
    for i, r in enumerate(kept):
        for t, v in r["tags"].items():
            T[i, col[t]] = v
    tags = pd.DataFrame(T, columns=all_tags)
    tags.insert(0, "track_id", tracks["track_id"].to_numpy())
    vocab = pd.DataFrame({"tag": all_tags, "category": [tag_category(t) for t in all_tags]})
    skipped_df = pd.DataFrame({"work": [r["work_id"] for r in skipped],
                               "reason": [r["reason"] for r in skipped]},
                              columns=["work", "reason"])
    # Stale audio from an earlier, different draw into the same folder would mislead a reader.
    wanted = {Path(p).name for p in tracks["path"]}
    for f in (root / "audio").glob("*.flac"):
        if f.name not in wanted:
            f.unlink()

    tracks.to_csv(root / "tracks.csv", index=False)
    tags.to_csv(root / "tags.csv", index=False, float_format="%.3f")
    vocab.to_csv(root / "vocabulary.csv", index=False)
    skipped_df.to_csv(root / "skipped.csv", index=False)
    cpu = {k: float(sum(r.get("timing", {}).get(k, 0.0) for r in kept))
           for k in ("parse", "clip", "render")}
    audio_s = float(tracks["duration_s"].sum())
    attempted = len(records)
    info = {
        "name": "music21", "config": config, "config_key": key, "seed": seed,
        "versions": _versions(), "render_version": RENDER_VERSION,
        "soundfont": soundfont_path().name, "n_tracks": len(kept),
        "requested": n_tracks, "attempted": attempted,
        "success_rate": len(kept) / attempted if attempted else 0.0,
        "quota": {s: quota[s] for s in queues}, "rendered_per_stratum":
            {s: len(ok[s]) for s in queues},
        "failures": {"count": len(skipped), "works": skipped_df.to_dict("records")},
        "timing": {"wall_s_this_run": round(time.perf_counter() - wall0, 3),
                   "cpu_s": {k: round(v, 3) for k, v in cpu.items()},
                   # all works tried, skipped ones included, as measured in the workers
                   "cpu_s_all_works": round(sum(r.get("cpu_s", 0.0) for r in records), 3),
                   "audio_s": audio_s,
                   "render_cpu_s_per_audio_s": round(cpu["render"] / audio_s, 5)
                   if audio_s else None},
        "splits": tracks["split"].value_counts().to_dict(),
        "complete": False,
    }
    info["complete"] = True  # last key, and the file is replaced atomically
    _atomic_write(manifest, json.dumps(info, indent=2, sort_keys=False).encode())
    return root


# --------------------------------------------------------------------------------------------
# command line


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m mrlib.repertoire build --n-tracks N --seed S [--root DIR] ...``.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments (default ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status (0 on success).

    Notebook: 00_overview.ipynb
    """
    parser = argparse.ArgumentParser(prog="python -m mrlib.repertoire",
                                     description="Build the music21 real-music catalog.")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="draw, render and tag works into a catalog folder")
    b.add_argument("--n-tracks", type=int, default=200)
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--root", type=str, default=None)
    b.add_argument("--clip-s", type=float, default=30.0)
    b.add_argument("--sr", type=int, default=22050)
    b.add_argument("--n-jobs", type=int, default=2)
    b.add_argument("--instrumentation", choices=INSTRUMENTATION, default="independent",
                   help="ensembles from one palette for all collections (default) or from "
                        "each collection's own")
    b.add_argument("--no-progress", action="store_true")
    b.add_argument("--overwrite", action="store_true",
                   help="move a folder's other catalog into replaced-<time>/ and build there")
    args = parser.parse_args(argv)
    # Run through the imported module, not ``__main__``: under ``python -m`` the worker
    # processes must unpickle ``mrlib.repertoire._process_work`` by reference.
    from mrlib import repertoire

    try:
        root = repertoire.build(n_tracks=args.n_tracks, seed=args.seed, root=args.root,
                                clip_s=args.clip_s, sr=args.sr, n_jobs=args.n_jobs,
                                progress=not args.no_progress,
                                instrumentation=args.instrumentation, overwrite=args.overwrite)
    except (ValueError, paths.LockedError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    info = json.loads((root / "catalog.json").read_text())
    print(f"{root}: {info['n_tracks']} tracks ({info['attempted']} works tried, "
          f"{info['failures']['count']} skipped; see skipped.csv)")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
