"""The synthetic catalog's world: the tag vocabulary, the genre and mood styles, the
instruments, the latent attributes of a track, and the seeded random streams.

Notebook: 00_overview.ipynb
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd

from mrlib.checks import check_int


#: Bumped whenever a change to this module changes the bytes of a catalog (tags or audio);
#: it is stored in ``catalog.json`` so a stale cache is detected instead of silently reused.
GENERATOR_VERSION = "2"

# --------------------------------------------------------------------------------------
# Vocabulary: 46 tags in the five categories of Prétet et al. 2020 (§4.1)
# --------------------------------------------------------------------------------------
CATEGORIES = ("Genre", "Recording", "Mood", "Movement", "Lyrics")

#: (tag, category, what makes it true in the generator). The order is the column order of
#: the tag matrix.
VOCABULARY: tuple[tuple[str, str, str], ...] = (
    ("pop", "Genre", "4/4 backbeat, I-V-vi-IV style progressions, 96-124 bpm"),
    ("rock", "Genre", "driving 8th hats, power chords, distorted guitars, 108-150 bpm"),
    ("electro", "Genre", "four-on-the-floor drum machine, minor synth loops, 118-132 bpm"),
    ("jazz", "Genre", "swung ride, walking bass, ii-V-I seventh chords, 100-170 bpm"),
    ("blues", "Genre", "12-bar dominant-seventh shuffle, 70-110 bpm"),
    ("folk", "Genre", "strummed/arpeggiated acoustic guitar, light or no drums, 3/4 or 4/4"),
    ("reggae", "Genre", "one-drop drums, off-beat chord skank, 66-84 bpm"),
    ("ambient", "Genre", "slow pads, two-bar chords, mostly no drums, 60-80 bpm"),
    ("hip_hop", "Genre", "swung boom-bap drum machine, seventh-chord loops, 80-98 bpm"),
    ("classical", "Genre", "piano/strings, Alberti and arpeggio accompaniment, cadences, no drums"),
    ("acoustic", "Recording", "every instrument is acoustic (piano, guitar, strings, flute, live kit)"),
    ("electric", "Recording", "electric guitar, electric bass, electric piano or organ"),
    ("electronic", "Recording", "synthesisers and/or a drum machine carry the track"),
    ("saturated", "Recording", "distortion on the guitars or on the mix"),
    ("guitar", "Recording", "plucked (Karplus-Strong) guitar"),
    ("piano", "Recording", "acoustic or electric piano"),
    ("strings", "Recording", "bowed strings (additive, vibrato, slow attack)"),
    ("synth", "Recording", "FM or wavetable synthesiser"),
    ("live_drums", "Recording", "humanised acoustic drum kit"),
    ("drum_machine", "Recording", "quantised drum machine"),
    ("lo_fi", "Recording", "band-limited mix with hiss and crackle"),
    ("echo", "Recording", "tempo-synced feedback delay"),
    ("happy", "Mood", "major mode, bright, faster, dense melody"),
    ("sad", "Mood", "minor mode, dark, slower, soft"),
    ("calm", "Mood", "major mode, soft, slow, sparse"),
    ("energetic", "Mood", "fast, loud, bright, dense"),
    ("dark", "Mood", "minor mode, low register, dark timbre"),
    ("epic", "Mood", "loud, wide register, strings and crescendos"),
    ("romantic", "Mood", "major mode, moderate tempo and dynamics"),
    ("tense", "Mood", "harmonic minor, accented, medium-fast"),
    ("dreamy", "Mood", "lydian mode, soft, echo and pads"),
    ("repetitive", "Movement", "one section looped with identical melody"),
    ("evolving", "Movement", "a new section (melody and progression) every phrase"),
    ("acceleration", "Movement", "tempo rises by about 25% over the track"),
    ("slowing_down", "Movement", "tempo falls by about 20% over the track"),
    ("crescendo", "Movement", "loudness rises by 15 dB, drums enter late"),
    ("decrescendo", "Movement", "loudness falls by 15 dB, drums leave early"),
    ("breaks", "Movement", "drums and bass drop out for two bars in every eight"),
) + tuple((theme, "Lyrics", "theme (not audible)") for theme in
          ("love", "freedom", "nature", "death", "party", "politics", "faith", "travel"))
TAGS = tuple(t for t, _, _ in VOCABULARY)
_TAG_INDEX = {t: i for i, t in enumerate(TAGS)}
LYRICS = tuple(t for t, cat, _ in VOCABULARY if cat == "Lyrics")

#: The temporally sparse tags of the events variant, in tag-matrix column order after the 46
#: of :data:`VOCABULARY`. They are Recording tags (an instrument or a solo that is heard), but
#: each sounds in one window of the track only.
EVENT_VOCABULARY: tuple[tuple[str, str, str], ...] = tuple(
    (tag, "Recording", f"{what}, in one window of 15-25% of the track") for tag, what in (
        ("bells", "church-bell strikes (inharmonic partials) on the tonic triad, high register"),
        ("guitar_solo", "a distorted lead-guitar lick with vibrato in the pentatonic scale"),
        ("riser", "a rising band of filtered noise (200 Hz to 6 kHz) that swells and stops"),
        ("choir", "voices singing 'aah' (formants, vibrato) on the tonic and fifth")))
EVENT_TAGS = tuple(t for t, _, _ in EVENT_VOCABULARY)
#: Probability that each event is present in a track (independently of the other events).
EVENT_PROB = 0.3
#: Range of an event's window length, as a fraction of the track's duration.
EVENT_SPAN = (0.15, 0.25)


def vocabulary(descriptions: bool = False, events: bool = False) -> pd.DataFrame:
    """The synthetic catalog's tag vocabulary, in tag-matrix column order.

    Parameters
    ----------
    descriptions : bool
        Add a ``description`` column saying what makes each tag true in the generator.
    events : bool
        The vocabulary of the events variant: :data:`EVENT_VOCABULARY` after the 46 tags.

    Returns
    -------
    pandas.DataFrame
        Columns ``tag, category`` (+ ``description``), one row per tag (46 rows, 50 with
        ``events``).

    Notebook: 02_similarity.ipynb
    """
    rows = VOCABULARY + (EVENT_VOCABULARY if events else ())
    df = pd.DataFrame(rows, columns=["tag", "category", "description"])
    return df if descriptions else df[["tag", "category"]].copy()


# --------------------------------------------------------------------------------------
# Musical styles
# --------------------------------------------------------------------------------------
MODES = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "harmonic_minor": (0, 2, 3, 5, 7, 8, 11),
    "lydian": (0, 2, 4, 6, 7, 9, 11),
}


@dataclass(frozen=True)
class GenreStyle:
    """What a genre fixes: tempo range (bpm), meters (beats per bar -> probability), swing,
    chord progressions (scale degrees, one per ``chord_bars`` bars), accompaniment and bass
    patterns, drums, and the prior over instruments per role (weights, normalised when drawn).

    Notebook: 01_cqt.ipynb
    """

    tempo: tuple[float, float]
    meters: dict[int, float]
    swing: float
    progressions: tuple[tuple[int, ...], ...]
    chord_kind: str            # triad | seventh | power | dom7
    chord_bars: int            # bars per chord
    comp: tuple[str, ...]      # accompaniment styles, one drawn per track
    bass: tuple[str, ...]      # bass patterns
    drums: str | None          # drum pattern name
    drum_prob: float           # probability that a track of this genre has drums at all
    density: float             # melody notes per beat, before mood
    melody: dict[str, float]
    chords: dict[str, float]
    bass_instr: dict[str, float]
    kit: dict[str, float]
    minor_bias: float          # added to the mood's minor probability
    instrumental: float        # probability that a track has no lyrics
    saturation: float          # probability of a saturated master bus


GENRES: dict[str, GenreStyle] = {
    "pop": GenreStyle((96, 124), {4: 1.0}, 0.0, ((0, 4, 5, 3), (5, 3, 0, 4), (0, 5, 3, 4), (0, 3, 4, 3)),
                      "triad", 1, ("strum", "block", "arp"), ("syncopated", "root_fifth"), "pop", 0.95, 1.4,
                      {"synth_lead": 3, "piano": 3, "e_guitar": 2, "flute": 1, "strings": 1},
                      {"piano": 4, "ac_guitar": 2, "synth_pad": 2, "e_guitar": 2},
                      {"e_bass": 6, "synth_bass": 4}, {"live": 6, "machine": 4}, 0.0, 0.1, 0.05),
    "rock": GenreStyle((108, 150), {4: 1.0}, 0.0, ((0, 3, 4, 3), (0, 4, 3, 0), (0, 5, 3, 4), (0, 0, 3, 4)),
                       "power", 1, ("strum", "eighths"), ("eighths", "root_fifth"), "rock", 1.0, 1.6,
                       {"dist_guitar": 5, "e_guitar": 3, "organ": 2},
                       {"dist_guitar": 6, "e_guitar": 3, "organ": 1},
                       {"e_bass": 1}, {"live": 1}, 0.2, 0.1, 0.4),
    "electro": GenreStyle((118, 132), {4: 1.0}, 0.0, ((0, 5, 2, 6), (0, 0, 5, 6), (0, 3, 5, 4)),
                          "triad", 1, ("pad", "stabs"), ("octave", "syncopated"), "electro", 1.0, 1.8,
                          {"synth_lead": 6, "fm_bell": 3, "piano": 1},
                          {"synth_pad": 6, "synth_lead": 2, "e_piano": 2},
                          {"synth_bass": 1}, {"machine": 1}, 0.3, 0.5, 0.15),
    "jazz": GenreStyle((100, 170), {4: 1.0}, 0.9, ((1, 4, 0, 0), (0, 5, 1, 4), (2, 5, 1, 4)),
                       "seventh", 1, ("comping",), ("walking",), "jazz", 0.85, 2.0,
                       {"e_piano": 2, "piano": 3, "flute": 3, "e_guitar": 2},
                       {"piano": 5, "e_piano": 4, "e_guitar": 1},
                       {"upright_bass": 9, "e_bass": 1}, {"live": 1}, 0.0, 0.6, 0.0),
    "blues": GenreStyle((70, 110), {4: 1.0}, 1.0, ((0, 0, 0, 0, 3, 3, 0, 0, 4, 3, 0, 4),),
                        "dom7", 1, ("shuffle", "strum"), ("walking", "root_fifth"), "blues", 1.0, 1.2,
                        {"e_guitar": 5, "dist_guitar": 2, "piano": 2, "organ": 1},
                        {"piano": 3, "e_guitar": 4, "organ": 3},
                        {"e_bass": 6, "upright_bass": 4}, {"live": 1}, 0.0, 0.2, 0.25),
    "folk": GenreStyle((85, 125), {4: 0.6, 3: 0.4}, 0.0, ((0, 3, 4, 0), (0, 0, 3, 4), (0, 5, 3, 4)),
                       "triad", 1, ("arp", "strum"), ("root_fifth", "root"), "folk", 0.5, 1.3,
                       {"flute": 4, "ac_guitar": 2, "strings": 3, "piano": 1},
                       {"ac_guitar": 8, "piano": 2},
                       {"upright_bass": 7, "e_bass": 3}, {"live": 1}, 0.0, 0.15, 0.0),
    "reggae": GenreStyle((66, 84), {4: 1.0}, 0.2, ((0, 3, 0, 4), (0, 5, 3, 4), (0, 0, 3, 3)),
                         "triad", 1, ("skank",), ("reggae",), "reggae", 1.0, 1.2,
                         {"organ": 3, "synth_lead": 2, "e_guitar": 3, "piano": 2},
                         {"e_guitar": 5, "organ": 4, "piano": 1},
                         {"e_bass": 7, "synth_bass": 3}, {"live": 8, "machine": 2}, 0.1, 0.1, 0.0),
    "ambient": GenreStyle((60, 80), {4: 1.0}, 0.0, ((0, 3), (0, 5), (5, 3), (0, 4)),
                          "seventh", 2, ("pad",), ("sustained",), "ambient", 0.2, 0.6,
                          {"fm_bell": 4, "synth_lead": 1, "flute": 2, "piano": 3},
                          {"synth_pad": 7, "strings": 3},
                          {"synth_bass": 6, "upright_bass": 4}, {"machine": 1}, 0.1, 0.9, 0.0),
    "hip_hop": GenreStyle((80, 98), {4: 1.0}, 0.55, ((0, 5), (0, 3), (0, 0, 5, 4), (0, 3, 5, 4)),
                          "seventh", 1, ("block", "stabs"), ("syncopated", "sustained"), "hip_hop", 1.0, 1.5,
                          {"piano": 4, "e_piano": 2, "fm_bell": 2, "synth_lead": 2},
                          {"e_piano": 4, "piano": 3, "synth_pad": 3},
                          {"synth_bass": 7, "e_bass": 3}, {"machine": 8, "live": 2}, 0.35, 0.1, 0.3),
    "classical": GenreStyle((72, 120), {4: 0.5, 3: 0.5}, 0.0, ((0, 3, 4, 0), (0, 5, 1, 4), (0, 1, 4, 0)),
                            "triad", 1, ("alberti", "arp", "block"), ("root",), None, 0.0, 1.6,
                            {"strings": 4, "piano": 4, "flute": 2},
                            {"piano": 5, "strings": 5},
                            {"upright_bass": 6, "piano": 4}, {"live": 1}, 0.0, 0.95, 0.0),
}
#: How often each genre leads an artist (a pop-majority catalog, as in the 2020 paper).
GENRE_POPULARITY = {"pop": 20, "rock": 13, "electro": 13, "jazz": 7, "blues": 6, "folk": 9,
                    "reggae": 6, "ambient": 7, "hip_hop": 11, "classical": 8}


@dataclass(frozen=True)
class MoodStyle:
    """What a mood fixes: P(minor), the mode family, tempo factor, brightness (0-1), loudness
    (target RMS in dBFS), melody density factor and register shift (scale degrees).

    Notebook: 01_cqt.ipynb
    """

    minor: float
    minor_mode: str
    major_mode: str
    tempo: float
    brightness: float
    loudness_db: float
    density: float
    register: int


MOODS: dict[str, MoodStyle] = {
    "happy": MoodStyle(0.05, "minor", "major", 1.08, 0.75, -17.0, 1.15, 3),
    "sad": MoodStyle(0.9, "minor", "major", 0.84, 0.3, -25.0, 0.7, -2),
    "calm": MoodStyle(0.15, "minor", "major", 0.86, 0.35, -25.0, 0.6, 0),
    "energetic": MoodStyle(0.45, "minor", "major", 1.14, 0.85, -15.0, 1.35, 2),
    "dark": MoodStyle(0.95, "minor", "major", 0.95, 0.2, -20.0, 0.8, -4),
    "epic": MoodStyle(0.7, "minor", "major", 1.0, 0.65, -16.0, 1.0, 0),
    "romantic": MoodStyle(0.2, "minor", "major", 0.9, 0.5, -22.0, 0.9, 1),
    "tense": MoodStyle(1.0, "harmonic_minor", "major", 1.05, 0.55, -18.0, 1.05, 0),
    "dreamy": MoodStyle(0.0, "minor", "lydian", 0.86, 0.42, -23.0, 0.7, 2),
}
#: Genre -> prior weight of each mood (moods missing from a row get weight 0.2).
GENRE_MOODS = {
    "pop": {"happy": 4, "romantic": 3, "energetic": 2, "sad": 2, "dreamy": 1},
    "rock": {"energetic": 5, "dark": 2, "tense": 2, "epic": 2, "sad": 1},
    "electro": {"energetic": 5, "dark": 3, "tense": 2, "happy": 2, "dreamy": 1},
    "jazz": {"romantic": 3, "calm": 3, "happy": 2, "sad": 2},
    "blues": {"sad": 4, "romantic": 2, "energetic": 1, "dark": 1},
    "folk": {"happy": 3, "calm": 3, "sad": 2, "romantic": 2},
    "reggae": {"happy": 4, "calm": 3, "romantic": 2},
    "ambient": {"calm": 4, "dreamy": 4, "dark": 2, "sad": 1},
    "hip_hop": {"dark": 3, "energetic": 3, "tense": 2, "sad": 1, "happy": 1},
    "classical": {"epic": 3, "sad": 2, "calm": 2, "romantic": 2, "tense": 1},
}

#: Instrument -> (engine, recording-tag contributions, family). Families: acoustic,
#: electric, electronic; they drive the acoustic/electric/electronic tags.
INSTRUMENTS: dict[str, tuple[str, dict[str, float], str]] = {
    "piano": ("piano", {"piano": 1.0}, "acoustic"),
    "e_piano": ("fm_epiano", {"piano": 0.6}, "electric"),
    "ac_guitar": ("ks_bright", {"guitar": 1.0}, "acoustic"),
    "e_guitar": ("ks_dark", {"guitar": 1.0}, "electric"),
    "dist_guitar": ("ks_sustain", {"guitar": 1.0, "saturated": 1.0}, "electric"),
    "strings": ("strings", {"strings": 1.0}, "acoustic"),
    "organ": ("organ", {}, "electric"),
    "flute": ("flute", {}, "acoustic"),
    "synth_lead": ("saw_lead", {"synth": 1.0}, "electronic"),
    "synth_pad": ("pad", {"synth": 1.0}, "electronic"),
    "fm_bell": ("fm_bell", {"synth": 1.0}, "electronic"),
    "e_bass": ("ks_bass", {}, "electric"),
    "upright_bass": ("ks_upright", {}, "acoustic"),
    "synth_bass": ("fm_bass", {"synth": 1.0}, "electronic"),
}
KITS = {"live": ({"live_drums": 1.0}, "acoustic"), "machine": ({"drum_machine": 1.0}, "electronic")}

#: Lyrics themes: affinity with moods (a realistic correlation: the theme is not audible,
#: but a sad song is more often about death than about a party).
LYRICS_MOODS = {
    "love": {"romantic": 3.0, "happy": 1.5, "sad": 1.5, "dreamy": 1.5},
    "freedom": {"energetic": 2.0, "epic": 2.0, "happy": 1.3},
    "nature": {"calm": 2.5, "dreamy": 2.0},
    "death": {"dark": 3.0, "sad": 2.0, "tense": 1.5},
    "party": {"energetic": 3.0, "happy": 2.5},
    "politics": {"tense": 2.5, "dark": 1.5, "energetic": 1.3},
    "faith": {"epic": 2.0, "calm": 1.5, "sad": 1.3},
    "travel": {"happy": 1.5, "dreamy": 1.5, "calm": 1.3},
}


# --------------------------------------------------------------------------------------
# Latent attributes
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrackAttributes:
    """The latent description of one synthetic track (everything the renderer and the
    annotators see). Frozen: use :func:`dataclasses.replace` to vary one attribute.

    Attributes
    ----------
    index : int
        Catalog index (row of ``tracks.csv``).
    artist : int
        Artist index (0 ... n_artists - 1).
    genre, genre2 : str
        Main genre and an influence (``genre2 == genre`` when there is none).
    genre2_weight : float
        Strength of the influence in [0, 0.5]: it mixes the instrument prior and becomes the
        influence's tag relevance.
    mood, mood2 : str
        Main and secondary mood (``mood2 == mood`` when none). Labels: their audible effect was
        drawn into ``mode``, ``tempo_bpm``, ``brightness``, ``loudness_db``, ``density`` and
        ``register`` by :func:`sample_catalog` (the secondary mood half-way).
    mode : str
        One of :data:`MODES`.
    tonic : int
        Tonic pitch class, 0 = C ... 11 = B.
    tempo_bpm : float
        Initial tempo in beats per minute.
    meter : int
        Beats per bar (3 or 4).
    swing : float
        0 = straight, 1 = triplet swing of the off-beat eighths.
    melody, chords, bass, kit : str
        Instruments per role (keys of :data:`INSTRUMENTS`; ``bass`` may be ``"none"``; ``kit``
        is ``"live"``, ``"machine"`` or ``"none"``).
    comp, bass_pattern : str
        Accompaniment style and bass pattern.
    guitar_drive, master_drive : float
        Distortion drive on the guitar stems and on the mix (0 = clean).
    lofi : bool
        Band-limited mix with hiss and crackle.
    echo : float
        Feedback gain of a tempo-synced delay (0 = none).
    brightness : float
        Spectral tilt in [0, 1] (low-pass cut-off from 1.2 to 10 kHz).
    loudness_db : float
        Target RMS of the mix in dBFS before movement envelopes.
    density : float
        Melody notes per beat (approximate).
    register : int
        Melody register shift in scale degrees (a diatonic transposition).
    structure : str
        ``"song"`` (AABA), ``"repetitive"`` or ``"evolving"``.
    tempo_change : str
        ``"steady"``, ``"acceleration"`` or ``"slowing_down"``.
    dynamics_change : str
        ``"flat"``, ``"crescendo"`` or ``"decrescendo"``.
    breaks : bool
        Drums and bass drop out for two bars in every eight.
    lyrics : tuple of str
        Lyrics themes; empty for an instrumental. **Never read by the renderer.**
    events : tuple of (str, float, float)
        Temporally sparse events of the events variant: ``(tag, start, end)`` with the tag one
        of :data:`EVENT_TAGS` and its window ``[start, end)`` as fractions of the track's
        duration; empty in the default catalog.

    Notebook: 02_similarity.ipynb
    """

    index: int
    artist: int
    genre: str
    genre2: str
    genre2_weight: float
    mood: str
    mood2: str
    mode: str
    tonic: int
    tempo_bpm: float
    meter: int
    swing: float
    melody: str
    chords: str
    bass: str
    kit: str
    comp: str
    bass_pattern: str
    guitar_drive: float
    master_drive: float
    lofi: bool
    echo: float
    brightness: float
    loudness_db: float
    density: float
    register: int
    structure: str
    tempo_change: str
    dynamics_change: str
    breaks: bool
    lyrics: tuple[str, ...]
    events: tuple[tuple[str, float, float], ...] = ()


class SyntheticCatalog(NamedTuple):
    """What :func:`sample_catalog` returns (a tuple: ``attrs, tags, vocab = ...``).

    Notebook: 02_similarity.ipynb
    """

    attributes: list[TrackAttributes]
    tags: np.ndarray
    vocabulary: pd.DataFrame


# Independent random streams derived from the catalog seed: what happens in one (say, the
# audio of track 7) never shifts another (the tags of track 8), whatever the order of work.
_STREAM_ARTISTS, _STREAM_TRACKS, _STREAM_TAGS, _STREAM_AUDIO, _STREAM_ASSIGN = 1, 2, 3, 4, 5
# The events variant draws everything (presence, windows, tag noise, event audio) from this one,
# so switching events on leaves every draw of the default catalog where it was.
_STREAM_EVENTS = 6


def track_seed(seed: int, index: int, stream: int = _STREAM_AUDIO) -> np.random.SeedSequence:
    """The seed of one track's random stream: a function of (catalog seed, stream, index) only.

    Parameters
    ----------
    seed : int
        Catalog seed (>= 0).
    index : int
        Track index (>= 0).
    stream : int
        Which stream (audio by default; tags, attributes and artists use others).

    Returns
    -------
    numpy.random.SeedSequence
        ``SeedSequence(seed, spawn_key=(stream, index))``: parallel workers that render tracks
        in any order draw exactly the same numbers.

    Notebook: 00_overview.ipynb
    """
    check_int("seed", seed, 0)
    check_int("index", index, 0)
    return np.random.SeedSequence(int(seed), spawn_key=(int(stream), int(index)))


def _draw(rng: np.random.Generator, weights: dict[str, float], without: str | None = None) -> str:
    """A key of ``weights``, drawn by weight (the key ``without`` left out)."""
    keys = [k for k in weights if k != without]
    p = np.array([weights[k] for k in keys], dtype=float)
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


def _mix(a: dict[str, float], b: dict[str, float], w: float) -> dict[str, float]:
    """(1 - w) * normalised a + w * normalised b, over the union of keys."""
    sa, sb = sum(a.values()), sum(b.values())
    return {k: (1 - w) * a.get(k, 0.0) / sa + w * b.get(k, 0.0) / sb for k in {**a, **b}}
