"""Tags of a rendered music21 work, from its metadata and its score, in the five categories
of the 2020 paper.

Notebook: 00_overview.ipynb
"""
from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Mapping, Sequence

import numpy as np

from mrlib.music21_corpus import STRATA, _match_first, _slug, _str
from mrlib.music21_score import Clip

#: Category -> the prefixes of its tags (``str.startswith`` takes the tuple).
_PREFIX_CATEGORY = {
    "Genre": ("style_", "coll_", "region_", "composer_", "genre_"),
    "Recording": ("gm_", "ensemble_"), "Mood": ("mode_", "tonic_"),
    "Movement": ("meter_", "dance_", "tempo_"), "Lyrics": ("lyrics_", "lang_"),
}
CATEGORIES = tuple(_PREFIX_CATEGORY)

#: Essen song types (German/Chinese ``R:`` field) -> Genre tag.
_ESSEN_TYPES = (
    (r"liebe", "love_song"), (r"ballade|romanze", "ballad"), (r"soldat|krieg", "soldier_song"),
    (r"kinder", "children_song"), (r"tanz", "dance_song"), (r"xiaodiao", "xiaodiao"),
    (r"shange", "mountain_song"), (r"haozi|arbeit", "work_song"), (r"trink", "drinking_song"),
)
_SACRED = re.compile(
    r"kyrie|gloria|credo|sanctus|agnus|benedic|magnificat|\bave\b|missa|\bmass\b|salve|alleluia|"
    r"jesu|christe|domine|\bdeus\b|virg[oi]|laudate|per illud|prayer|religi|geistlich|choral")
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
#: Tempo bands on the notated beat (beats per minute), as soft memberships.
TEMPO_BANDS = (70.0, 110.0)
_TEMPO_SOFTNESS = 0.12  # in log2 units: ±0.12 octave ≈ ±9 % around each boundary


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
    p_major = 1.0 / (1.0 + math.exp(-_MODE_SLOPE * (r[0].max() - r[1].max())))
    return float(p_major), float(1.0 - p_major), int(np.argmax(r)) % 12   # the best key's tonic


def _abc_key_mode(field: str | None) -> tuple[str, str] | None:
    """'Ador' -> ('A', 'dorian'); 'G' -> None (abc K: without a mode word states no mode)."""
    m = re.match(r"^\s*([A-Ga-g])([#b]?)\s*([A-Za-z]*)", str(field))
    word = m.group(3).lower() if m else ""
    # abc names a mode by (at least) its first three letters, and minor by "m" as well
    mode = "minor" if word == "m" else next(
        (k for k in _EXPLICIT_MODES if len(word) >= 3 and k.startswith(word[:3])), None)
    return (m.group(1).upper() + m.group(2).replace("b", "-"), mode) if mode else None


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
    st = STRATA[work["stratum"]]
    genre = _genre_tags(work, st)
    # the families' prefixes differ, so no tag is set twice with two values
    raw = {**genre, **_recording_tags(clip, programs), **_mood_tags(work, clip, st),
           **_movement_tags(work, clip), **_lyrics_tags(work, clip, st, genre["genre_sacred"])}
    tags = {tag: round(float(min(1.0, max(0.0, v))), 3) for tag, v in raw.items()}
    return {tag: v for tag, v in tags.items() if v > 0}


def _genre_tags(work: Mapping, st) -> dict[str, float]:
    """Genre: style, collection, region, composer, song type, sacred/secular."""
    tags = {f"style_{st.style}": 1, f"coll_{st.collection}": 1}
    for field in ("region", "composer"):    # not a str (None or NaN) when the work has none
        if isinstance(work.get(field), str):
            tags[f"{field}_{work[field]}"] = 1
    title = _str(work.get("title")).lower()
    song_type = _str(work.get("abc_R")).lower()
    sacred = st.sacred
    if work["stratum"].startswith("essen"):
        if essen_type := _match_first(_ESSEN_TYPES, song_type):
            tags[f"genre_{essen_type}"] = 1
        sacred = 1.0 if re.search(r"religi|geistlich", song_type) else 0.0
    elif work["stratum"] == "trecento":
        vol = re.match(r"PMFC_(\d+)", str(work.get("stem", "")))
        secular = vol is not None and int(vol.group(1)) in (4, 6)  # Landini, Italian secular
        sacred = 0.0 if secular else (1.0 if _SACRED.search(title + " " + str(work.get("stem")))
                                      else 0.5)  # latin motets: ceremonial rather than liturgical
    elif work["stratum"] in ("renaissance", "classical"):
        sacred = 1.0 if _SACRED.search(title + " " + str(work.get("stem", "")).lower()) else 0.0
    return {**tags, "genre_sacred": sacred, "genre_secular": 1.0 - sacred}


def _recording_tags(clip: Clip, programs: Sequence[int]) -> dict[str, float]:
    """Recording: the programs of the parts that sound in the clip, and the ensemble size."""
    import pretty_midi

    sounding = sorted(set(clip.part.tolist()))
    tags = {"gm_" + _slug(pretty_midi.program_to_instrument_name(int(programs[i]))): 1
            for i in sounding}
    return {**tags, {1: "ensemble_solo", 2: "ensemble_small", 3: "ensemble_small",
                     4: "ensemble_quartet"}.get(len(sounding), "ensemble_large"): 1}


def _mood_tags(work: Mapping, clip: Clip, st) -> dict[str, float]:
    """Mood: mode (explicit where the encoding states it, else key-finding) and tonic."""
    from music21 import pitch

    p_major, p_minor, tonic = key_likelihoods(pitch_class_histogram(clip))
    explicit = _abc_key_mode(_str(work.get("abc_K"))) if work.get("ext") == ".abc" else clip.key
    modal = 1.0 if st.modal else 0.0
    if explicit is not None and explicit[1] in _EXPLICIT_MODES:
        family, is_modal = _EXPLICIT_MODES[explicit[1]]
        weight = 0.5 if is_modal else 1.0  # a church mode leans major or minor, no more
        p_major, p_minor = (weight, 0.0) if family == "major" else (0.0, weight)
        modal = max(modal, is_modal)
        with contextlib.suppress(Exception):  # a name music21 cannot read: key-finding's tonic
            tonic = int(pitch.Pitch(explicit[0]).pitchClass)
    return {"mode_major": p_major, "mode_minor": p_minor, "mode_modal": modal,
            f"tonic_{PITCH_NAMES[tonic]}": 1}


def _movement_tags(work: Mapping, clip: Clip) -> dict[str, float]:
    """Movement: meter, dance, tempo band of the notated beat."""
    tags = {}
    if clip.time_signature:
        from music21 import meter

        try:
            ts = meter.TimeSignature(clip.time_signature)
            beats, division = ts.beatCount, ts.beatDivisionCount
        except Exception:  # an additive or odd signature music21 cannot re-read: irregular
            beats, division = 0, 0
        tags[{2: "meter_duple", 4: "meter_duple", 3: "meter_triple"}.get(beats,
                                                                           "meter_irregular")] = 1
        tags["meter_compound"] = float(division == 3)
    if isinstance(work.get("dance"), str):
        tags[f"dance_{work['dance']}"] = 1
    return {**tags, **_soft_bands(clip.qpm / clip.beat_ql)}


def _lyrics_tags(work: Mapping, clip: Clip, st, sacred: float) -> dict[str, float]:
    """Lyrics (inaudible: everything is rendered instrumentally): sung or not, text, language."""
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
    in_score = float(clip.has_lyrics or bool(work.get("abc_lyrics", False)))
    sung = max(vocal, in_score)
    # work_tags drops the zeros of a work that was not sung
    return {"lyrics_vocal": sung, "lyrics_instrumental": 1.0 - sung, "lyrics_in_score": in_score,
            **{f"lang_{lang}": v * sung for lang, v in language.items()}}


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
    for category, prefixes in _PREFIX_CATEGORY.items():
        if tag.startswith(prefixes):
            return category
    raise ValueError(f"unknown tag prefix: {tag!r}")
