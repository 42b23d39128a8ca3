"""The synthetic catalog: latent musical attributes -> tags (with annotator noise) -> audio.

A deterministic, dependency-free stand-in for a professionally annotated catalog (SPEC §3.1).
Each track is described by latent attributes (genre, instrumentation/production, mood,
movement, lyrics themes) drawn from an artist's personal style; the tags are noisy
observations of those attributes, and the audio is rendered from them, so that

* a CQT model can *hear* Genre, Recording, Mood and Movement (tempo, meter, rhythm, chords,
  timbres, mode, brightness, dynamics, structure),
* it can *not* hear Lyrics (they are never read by the renderer), which caps what audio can
  learn of an oracle that uses them,
* artists carry a personal style (palette, key, tempo, production), so artist-disjoint splits
  matter: without them a model can recognise the artist instead of the music.

Every tag of the default vocabulary (46 tags) is true of the whole track: any patch of it hears
the genre, the instruments and the mood. The **events variant** (``events=True``) adds tags that
are *temporally sparse*: each of :data:`EVENT_VOCABULARY` (bells, a guitar solo, a riser, a
choir) is present in a track with probability :data:`EVENT_PROB` and then sounds, prominent, in
one window of 15-25 % of the track only, so most patches of a track tagged ``bells`` hear no
bell. A model that embeds patches must then pool over time to find the tag; this is the
condition under which the 2020 paper's AutoPool beats mean pooling (notebook 05). The events
are drawn from their own random stream, so with ``events=False`` the catalog (attributes, tags
and audio) is exactly the default one, and with ``events=True`` it is the default one plus the
event layers and columns.

Two public entry points (CONTRIBUTING.md):

* :func:`sample_catalog` ``(n_tracks, seed, events=False) -> (attributes, tags, vocabulary)``;
* :func:`generate_track` ``(attrs, sr, duration_s, seed) -> float32 mono audio``.

Rendering is vectorised numpy: notes are rendered once per (instrument, pitch, length) into a
per-track cache (music repeats) from band-limited wavetables, closed-form FM, or a
Karplus-Strong string run one period per numpy step; drums are rendered once per track and
added at their onsets. A 30 s track at 22,050 Hz takes well under 0.15 s on one core.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import NamedTuple, Sequence

import numpy as np
import pandas as pd
from scipy import signal

__all__ = [
    "GENERATOR_VERSION",
    "CATEGORIES",
    "VOCABULARY",
    "GENRES",
    "MOODS",
    "INSTRUMENTS",
    "EVENT_VOCABULARY",
    "EVENT_TAGS",
    "EVENT_PROB",
    "EVENT_SPAN",
    "TrackAttributes",
    "SyntheticCatalog",
    "vocabulary",
    "track_seed",
    "sample_catalog",
    "attributes_frame",
    "relevance",
    "scale_pitch_classes",
    "generate_track",
    "render_catalog_track",
]

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
    ("love", "Lyrics", "theme (not audible)"),
    ("freedom", "Lyrics", "theme (not audible)"),
    ("nature", "Lyrics", "theme (not audible)"),
    ("death", "Lyrics", "theme (not audible)"),
    ("party", "Lyrics", "theme (not audible)"),
    ("politics", "Lyrics", "theme (not audible)"),
    ("faith", "Lyrics", "theme (not audible)"),
    ("travel", "Lyrics", "theme (not audible)"),
)
TAGS = tuple(t for t, _, _ in VOCABULARY)
_TAG_INDEX = {t: i for i, t in enumerate(TAGS)}
_BY_CATEGORY = {c: tuple(t for t, cat, _ in VOCABULARY if cat == c) for c in CATEGORIES}
LYRICS = _BY_CATEGORY["Lyrics"]

#: The temporally sparse tags of the events variant, in tag-matrix column order after the 46
#: of :data:`VOCABULARY`. They are Recording tags (an instrument or a solo that is heard), but
#: each sounds in one window of the track only.
EVENT_VOCABULARY: tuple[tuple[str, str, str], ...] = (
    ("bells", "Recording", "church-bell strikes (inharmonic partials) on the tonic triad, high register, "
                           "in one window of 15-25% of the track"),
    ("guitar_solo", "Recording", "a distorted lead-guitar lick with vibrato in the pentatonic scale, "
                                 "in one window of 15-25% of the track"),
    ("riser", "Recording", "a rising band of filtered noise (200 Hz to 6 kHz) that swells and stops, "
                           "in one window of 15-25% of the track"),
    ("choir", "Recording", "voices singing 'aah' (formants, vibrato) on the tonic and fifth, "
                           "in one window of 15-25% of the track"),
)
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
GENRE_NAMES = tuple(GENRES)
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
MOOD_NAMES = tuple(MOODS)
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
    _check_int("seed", seed, 0)
    _check_int("index", index, 0)
    return np.random.SeedSequence(int(seed), spawn_key=(int(stream), int(index)))


def _check_int(name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} ({value!r})")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def _draw(rng: np.random.Generator, weights: dict[str, float]) -> str:
    keys = list(weights)
    p = np.array([weights[k] for k in keys], dtype=float)
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


def _mix(a: dict[str, float], b: dict[str, float], w: float) -> dict[str, float]:
    """(1 - w) * normalised a + w * normalised b, over the union of keys."""
    sa, sb = sum(a.values()), sum(b.values())
    keys = list(dict.fromkeys([*a, *b]))
    return {k: (1 - w) * a.get(k, 0.0) / sa + w * b.get(k, 0.0) / sb for k in keys}


@dataclass(frozen=True)
class _Artist:
    genre: str
    genre2: str
    melody: str
    chords: str
    bass: str
    kit: str
    tonic: int
    tempo_factor: float
    brightness: float
    mood_bias: dict[str, float]
    lyrics_bias: dict[str, float]
    echo_prob: float
    lofi_prob: float
    loudness_offset: float


def _sample_artist(rng: np.random.Generator) -> _Artist:
    genre = _draw(rng, GENRE_POPULARITY)
    others = {g: w for g, w in GENRE_POPULARITY.items() if g != genre}
    genre2 = _draw(rng, others) if rng.random() < 0.5 else genre
    style = GENRES[genre]
    moods = rng.dirichlet(np.full(len(MOOD_NAMES), 1.0))
    lyr = rng.dirichlet(np.full(len(LYRICS), 0.6))
    return _Artist(
        genre=genre, genre2=genre2,
        melody=_draw(rng, style.melody), chords=_draw(rng, style.chords),
        bass=_draw(rng, style.bass_instr), kit=_draw(rng, style.kit),
        tonic=int(rng.integers(12)),
        tempo_factor=float(np.exp(rng.normal(0.0, 0.06))),
        brightness=float(rng.normal(0.0, 0.1)),
        mood_bias={m: 0.4 + 2.0 * float(x) for m, x in zip(MOOD_NAMES, moods)},
        lyrics_bias={t: 0.2 + 3.0 * float(x) for t, x in zip(LYRICS, lyr)},
        echo_prob=float(rng.choice([0.02, 0.1, 0.6], p=[0.5, 0.3, 0.2])),
        lofi_prob=float(rng.choice([0.01, 0.5], p=[0.85, 0.15])),
        loudness_offset=float(rng.normal(0.0, 1.5)),
    )


def _sample_track(index: int, artist_id: int, artist: _Artist,
                  rng: np.random.Generator) -> TrackAttributes:
    # The draws, in this order: genre, mood and key, instruments and production, movement, lyrics.
    genre, genre2, g2w = _sample_genre(artist, rng)
    style, style2 = GENRES[genre], GENRES[genre2]
    key = _sample_mood_key(artist, genre, rng)
    ms, ms2 = MOODS[key["mood"]], MOODS[key["mood2"]]
    sound = _sample_sound(artist, genre, style, style2, g2w, key["mood"], ms, ms2, rng)
    movement = _sample_movement(genre, key["mood"], sound["kit"], rng)
    # Lyrics: inaudible; drawn from the artist's favourite themes and the mood.
    lyrics: tuple[str, ...] = ()
    if rng.random() >= style.instrumental:
        w = {t: artist.lyrics_bias[t] * LYRICS_MOODS[t].get(key["mood"], 1.0) for t in LYRICS}
        first = _draw(rng, w)
        lyrics = (first,)
        if rng.random() < 0.4:
            lyrics = (first, _draw(rng, {t: v for t, v in w.items() if t != first}))
    return TrackAttributes(index=index, artist=artist_id, genre=genre, genre2=genre2, genre2_weight=g2w,
                           swing=float(style.swing), lyrics=lyrics, **key, **sound, **movement)


def _sample_genre(artist: _Artist, rng: np.random.Generator) -> tuple[str, str, float]:
    """Genre: mostly the artist's own; sometimes the artist's influence or another genre; and
    a secondary genre with its weight (0: none)."""
    u = rng.random()
    if u < 0.8:
        genre = artist.genre
    elif u < 0.92 and artist.genre2 != artist.genre:
        genre = artist.genre2
    else:
        genre = _draw(rng, GENRE_POPULARITY)
    genre2, g2w = genre, 0.0
    if rng.random() < 0.4:
        pool = {g: w for g, w in GENRE_POPULARITY.items() if g != genre}
        genre2 = artist.genre2 if artist.genre2 != genre else _draw(rng, pool)
        g2w = float(np.round(rng.uniform(0.2, 0.5), 2))
    return genre, genre2, g2w


def _sample_mood_key(artist: _Artist, genre: str, rng: np.random.Generator) -> dict:
    """Moods (main and secondary), mode, tonic, tempo and meter."""
    style = GENRES[genre]
    mood_prior = {m: GENRE_MOODS[genre].get(m, 0.2) * artist.mood_bias[m] for m in MOOD_NAMES}
    mood = _draw(rng, mood_prior)
    mood2 = mood
    if rng.random() < 0.35:
        mood2 = _draw(rng, {m: w for m, w in mood_prior.items() if m != mood})
    ms, ms2 = MOODS[mood], MOODS[mood2]
    minor = rng.random() < min(1.0, ms.minor + style.minor_bias * (ms.minor > 0.0))
    mode = ms.minor_mode if minor else ms.major_mode
    tonic = artist.tonic if rng.random() < 0.6 else int((artist.tonic + rng.choice([2, 5, 7, 10]))
                                                      % 12 if rng.random() < 0.6 else rng.integers(12))
    lo, hi = style.tempo
    mood_tempo = ms.tempo * (ms2.tempo / ms.tempo) ** 0.5   # the secondary mood half-way
    tempo = float(np.clip(rng.uniform(lo, hi) * mood_tempo * artist.tempo_factor, 0.85 * lo, 1.15 * hi))
    meters = list(style.meters)
    meter = int(meters[int(rng.choice(len(meters), p=np.array(list(style.meters.values()))))])
    return dict(mood=mood, mood2=mood2, mode=mode, tonic=int(tonic), tempo_bpm=round(tempo, 2), meter=meter)


def _sample_sound(artist: _Artist, genre: str, style: GenreStyle, style2: GenreStyle, g2w: float,
                  mood: str, ms: MoodStyle, ms2: MoodStyle, rng: np.random.Generator) -> dict:
    """Instruments (the artist's favourites most of the time, else the mixed genre prior),
    accompaniment and bass patterns, and the production."""
    def role(fav: str, prior: dict[str, float], prior2: dict[str, float]) -> str:
        if fav in prior and rng.random() < 0.7:
            return fav
        return _draw(rng, _mix(prior, prior2, g2w) if g2w > 0 else prior)

    melody = role(artist.melody, style.melody, style2.melody)
    chords = role(artist.chords, style.chords, style2.chords)
    bass = role(artist.bass, style.bass_instr, style2.bass_instr)
    if style.drums is None or rng.random() >= style.drum_prob:
        kit = "none"
    else:
        kit = role(artist.kit, style.kit, style2.kit)
    comp = style.comp[int(rng.integers(len(style.comp)))]
    bass_pattern = style.bass[int(rng.integers(len(style.bass)))]
    if genre == "ambient" and rng.random() < 0.35:
        bass = "none"
    guitar_drive = float(rng.uniform(4.0, 9.0)) if "dist_guitar" in (melody, chords) else 0.0
    master_drive = float(rng.uniform(2.0, 4.0)) if rng.random() < style.saturation else 0.0
    lofi = bool(rng.random() < artist.lofi_prob + (0.25 if genre == "hip_hop" else 0.0))
    echo_p = artist.echo_prob + (0.4 if mood == "dreamy" else 0.0) + (0.2 if genre == "reggae" else 0.0)
    echo = float(rng.uniform(0.3, 0.5)) if rng.random() < echo_p else 0.0
    brightness = float(np.clip(0.5 * (ms.brightness + ms2.brightness * 0.5) / 0.75
                               + artist.brightness + rng.normal(0, 0.05), 0.0, 1.0))
    loud = (2 * ms.loudness_db + ms2.loudness_db) / 3 + artist.loudness_offset
    density = float(style.density * ms.density * (ms2.density / ms.density) ** 0.5 * rng.uniform(0.85, 1.15))
    register = int(ms.register + rng.integers(-1, 2))
    return dict(melody=melody, chords=chords, bass=bass, kit=kit, comp=comp, bass_pattern=bass_pattern,
                guitar_drive=round(guitar_drive, 3), master_drive=round(master_drive, 3), lofi=lofi,
                echo=round(echo, 3), brightness=round(brightness, 3), loudness_db=round(loud, 2),
                density=round(density, 3), register=register)


def _sample_movement(genre: str, mood: str, kit: str, rng: np.random.Generator) -> dict:
    """Movement: structure, tempo curve, dynamics curve, breaks."""
    rep_p = {"electro": 0.55, "hip_hop": 0.5, "reggae": 0.4, "ambient": 0.35}.get(genre, 0.15)
    evo_p = {"classical": 0.45, "jazz": 0.4, "ambient": 0.2}.get(genre, 0.12)
    u = rng.random()
    structure = "repetitive" if u < rep_p else ("evolving" if u < rep_p + evo_p else "song")
    u = rng.random()
    tempo_change = "acceleration" if u < 0.1 else ("slowing_down" if u < 0.18 else "steady")
    if genre in ("electro", "hip_hop") and tempo_change != "steady" and rng.random() < 0.7:
        tempo_change = "steady"   # machines rarely drift
    cres_p = 0.35 if mood == "epic" else 0.1
    u = rng.random()
    dynamics_change = "crescendo" if u < cres_p else ("decrescendo" if u < cres_p + 0.1 else "flat")
    breaks = bool(kit != "none" and rng.random() < (0.45 if genre in ("electro", "hip_hop") else 0.15))
    return dict(structure=structure, tempo_change=tempo_change, dynamics_change=dynamics_change, breaks=breaks)


def relevance(attrs: TrackAttributes, events: bool = False) -> np.ndarray:
    """The noise-free relevance of every tag for one track, from its latent attributes.

    Parameters
    ----------
    attrs : TrackAttributes
    events : bool
        Append the relevances of :data:`EVENT_TAGS` (the events variant's vocabulary).

    Returns
    -------
    numpy.ndarray
        float32 (m,) in [0, 1], in :func:`vocabulary` order: 1 for the main genre, mood and the
        present movement/lyrics tags, the influence weight for ``genre2``, 0.5 for a secondary
        mood, Recording relevances from the instruments and the production, and (with
        ``events``) 1 for each event of ``attrs.events``.

    Notebook: 02_similarity.ipynb
    """
    if events:
        return np.concatenate([relevance(attrs), _event_relevance(attrs)])
    r = np.zeros(len(TAGS), dtype=np.float32)
    r[_TAG_INDEX[attrs.genre]] = 1.0
    if attrs.genre2 != attrs.genre:
        r[_TAG_INDEX[attrs.genre2]] = max(r[_TAG_INDEX[attrs.genre2]], attrs.genre2_weight)
    r[_TAG_INDEX[attrs.mood]] = 1.0
    if attrs.mood2 != attrs.mood:
        r[_TAG_INDEX[attrs.mood2]] = 0.5

    # Recording: presence tags weighted by how exposed the role is; family shares.
    roles = [(attrs.melody, 1.0), (attrs.chords, 1.0)]
    if attrs.bass != "none":
        roles.append((attrs.bass, 0.6))
    families = []
    for instr, weight in roles:
        _, contrib, family = INSTRUMENTS[instr]
        families.append(family)
        for tag, v in contrib.items():
            r[_TAG_INDEX[tag]] = max(r[_TAG_INDEX[tag]], v * weight)
    if attrs.kit != "none":
        contrib, family = KITS[attrs.kit]
        families.append(family)
        for tag, v in contrib.items():
            r[_TAG_INDEX[tag]] = max(r[_TAG_INDEX[tag]], v)
    fam = np.array(families)
    share = {f: float(np.mean(fam == f)) for f in ("acoustic", "electric", "electronic")}
    r[_TAG_INDEX["acoustic"]] = 1.0 if share["acoustic"] == 1.0 else (0.5 if share["acoustic"] >= 0.6 else 0.0)
    r[_TAG_INDEX["electric"]] = min(1.0, 2.0 * share["electric"]) if share["electric"] > 0 else 0.0
    r[_TAG_INDEX["electronic"]] = min(1.0, 1.6 * share["electronic"]) if share["electronic"] > 0 else 0.0
    r[_TAG_INDEX["saturated"]] = max(r[_TAG_INDEX["saturated"]], min(1.0, attrs.master_drive / 3.0))
    r[_TAG_INDEX["lo_fi"]] = 1.0 if attrs.lofi else 0.0
    r[_TAG_INDEX["echo"]] = min(1.0, attrs.echo / 0.35)

    for tag in (attrs.structure, attrs.tempo_change, attrs.dynamics_change):
        if tag in _TAG_INDEX:
            r[_TAG_INDEX[tag]] = 1.0
    if attrs.breaks:
        r[_TAG_INDEX["breaks"]] = 1.0
    for t in attrs.lyrics:
        r[_TAG_INDEX[t]] = 1.0
    return r


def _event_relevance(attrs: TrackAttributes) -> np.ndarray:
    """1 for each event of the track, in :data:`EVENT_TAGS` order: the tag is true of the whole
    track although it sounds in one window only."""
    present = {tag for tag, _, _ in attrs.events}
    return np.array([t in present for t in EVENT_TAGS], dtype=np.float32)


def _sample_events(rng: np.random.Generator) -> tuple[tuple[str, float, float], ...]:
    """Each event independently with probability :data:`EVENT_PROB`, in one window of
    :data:`EVENT_SPAN` of the duration at a uniform position. Three draws per event whether or
    not it is present, so one event's draws never shift another's."""
    out = []
    for tag in EVENT_TAGS:
        u, w, x = rng.random(3)
        span = round(EVENT_SPAN[0] + w * (EVENT_SPAN[1] - EVENT_SPAN[0]), 4)
        start = math.floor(x * (1.0 - span) * 1e4) / 1e4      # 4 decimals, end still <= 1
        if u < EVENT_PROB:
            out.append((tag, start, float(round(start + span, 4))))
    return tuple(out)


def _annotate(rel: np.ndarray, rng: np.random.Generator, p_miss: float, p_false: float) -> np.ndarray:
    """Professional-annotator noise on a relevance vector: misses, graded confidence, and a few
    false positives; rounded to 0.01 so the CSV round-trips exactly."""
    m = rel.size
    u_miss, u_false = rng.random(m), rng.random(m)
    conf = rng.uniform(0.7, 1.0, m)
    jitter = rng.normal(0.0, 0.05, m)
    false_level = rng.uniform(0.2, 0.6, m)
    present = rel > 0
    out = np.where(present & (u_miss >= p_miss), np.clip(rel * conf + jitter, 0.05, 1.0), 0.0)
    out = np.where(~present & (u_false < p_false), false_level, out)
    return (np.round(out * 100) / 100).astype(np.float32)


def sample_catalog(n_tracks: int, seed: int = 0, *, n_artists: int | None = None,
                   p_miss: float = 0.08, p_false: float = 0.015, events: bool = False) -> SyntheticCatalog:
    """Sample a synthetic catalog's latent attributes and noisy tag likelihoods.

    Artists are drawn first (a main genre and an influence, favourite instruments, key,
    tempo, moods, lyrics themes, production habits); each track then draws its attributes
    from its artist's style, and the annotators observe them with noise.

    Parameters
    ----------
    n_tracks : int
        Number of tracks N (>= 1).
    seed : int
        Catalog seed; same seed, same attributes and same tag bytes.
    n_artists : int, optional
        Number of artists; default ``max(3, round(N / 5))`` (about 5 tracks per artist, with a
        long tail: artist shares follow a Dirichlet(1) draw, every artist has a track).
    p_miss : float
        Probability that an annotator misses a relevant tag (likelihood 0).
    p_false : float
        Per-tag probability of a false positive (likelihood in [0.2, 0.6]).
    events : bool
        The events variant: every track also draws its temporally sparse events
        (``attrs.events``, from a random stream of their own), and the tags get the
        :data:`EVENT_TAGS` columns, with the same annotator noise. The attributes (but
        ``events``) and the 46 first tag columns are those of the default catalog.

    Returns
    -------
    SyntheticCatalog
        ``(attributes, tags, vocabulary)``: a list of N :class:`TrackAttributes`; tags float32
        (N, m) in [0, 1] (multiples of 0.01); vocabulary DataFrame ``[tag, category]`` (m = 46,
        or 50 with ``events``).

    Notebook: 02_similarity.ipynb
    """
    _check_int("n_tracks", n_tracks, 1)
    _check_int("seed", seed, 0)
    if n_artists is None:
        n_artists = max(3, int(round(n_tracks / 5)))
    _check_int("n_artists", n_artists, 1)
    n_artists = min(n_artists, n_tracks)
    for name, p in (("p_miss", p_miss), ("p_false", p_false)):
        if not 0.0 <= p < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {p}")

    artists = [_sample_artist(np.random.default_rng(track_seed(seed, a, _STREAM_ARTISTS)))
               for a in range(n_artists)]
    # Every artist gets one track, the rest follow Dirichlet shares; then shuffle the order.
    rng = np.random.default_rng(track_seed(seed, 0, _STREAM_ASSIGN))
    shares = rng.dirichlet(np.ones(n_artists))
    extra = rng.choice(n_artists, size=n_tracks - n_artists, p=shares)
    artist_of = rng.permutation(np.concatenate([np.arange(n_artists), extra]))

    events = bool(events)
    attrs = []
    tags = np.zeros((n_tracks, len(TAGS) + (len(EVENT_TAGS) if events else 0)), dtype=np.float32)
    for i in range(n_tracks):
        a = int(artist_of[i])
        at = _sample_track(i, a, artists[a], np.random.default_rng(track_seed(seed, i, _STREAM_TRACKS)))
        tags[i, :len(TAGS)] = _annotate(relevance(at), np.random.default_rng(track_seed(seed, i, _STREAM_TAGS)),
                                        p_miss, p_false)
        if events:
            rng = np.random.default_rng(track_seed(seed, i, _STREAM_EVENTS))
            at = dataclasses.replace(at, events=_sample_events(rng))
            tags[i, len(TAGS):] = _annotate(_event_relevance(at), rng, p_miss, p_false)
        attrs.append(at)
    return SyntheticCatalog(attrs, tags, vocabulary(events=events))


def attributes_frame(attrs: Sequence[TrackAttributes], events: bool | None = None) -> pd.DataFrame:
    """The latent attributes as a table (one row per track; lyrics joined with ``|``).

    Parameters
    ----------
    attrs : sequence of TrackAttributes
    events : bool, optional
        Include the ``events`` column, each event written ``tag@start-end`` (fractions of the
        duration) and joined with ``|``. Default: when some track has an event. Without it the
        table of a default catalog is the one it always was.

    Returns
    -------
    pandas.DataFrame
        One column per :class:`TrackAttributes` field (``events`` as above).

    Notebook: 02_similarity.ipynb
    """
    if events is None:
        events = any(a.events for a in attrs)
    rows = []
    for a in attrs:
        d = dataclasses.asdict(a)
        d["lyrics"] = "|".join(a.lyrics)
        d["events"] = "|".join(f"{t}@{s:.4f}-{e:.4f}" for t, s, e in a.events)
        rows.append(d)
    columns = [f.name for f in dataclasses.fields(TrackAttributes)]
    if not events:
        columns.remove("events")
    return pd.DataFrame(rows, columns=columns)


def scale_pitch_classes(attrs: TrackAttributes) -> np.ndarray:
    """Pitch classes (0-11, absolute) of the track's scale: tonic + mode.

    Notebook: 01_cqt.ipynb
    """
    return np.sort((attrs.tonic + np.array(MODES[attrs.mode])) % 12)


# --------------------------------------------------------------------------------------
# Sound: wavetables, envelopes and the note engines
# --------------------------------------------------------------------------------------
_TABLE_LEN = 4096          # power of two: phase wrap is a bitwise and
_HARMONIC_STEPS = (1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 24, 32, 40, 48, 64)
_SPECTRA = {
    # amplitude of harmonic k (1-based) for each additive timbre
    "saw": lambda k: 1.0 / k,
    "piano_bright": lambda k: 1.0 / k ** 1.1 * (1.0 + 0.5 * (k == 2)),
    "piano_body": lambda k: 1.0 / k ** 2.5,
    "strings": lambda k: 1.0 / k ** 1.2 * (1.0 + 0.6 * ((k >= 3) & (k <= 5))),
    "organ": lambda k: np.select([k == 1, k == 2, k == 3, k == 4, k == 6, k == 8],
                                 [1.0, 0.8, 0.6, 0.45, 0.3, 0.2], 0.0),
    "flute": lambda k: np.select([k == 1, k == 2, k == 3, k == 4], [1.0, 0.3, 0.1, 0.04], 0.0),
    "pad": lambda k: 1.0 / k ** 1.6,
}


@functools.lru_cache(maxsize=None)
def _wavetable(timbre: str, n_harmonics: int) -> np.ndarray:
    """One period of a band-limited periodic wave (unit peak), by inverse real FFT."""
    spec = np.zeros(_TABLE_LEN // 2 + 1, dtype=complex)
    k = np.arange(1, n_harmonics + 1)
    # sine phases (-i): a saw's partials add to a ramp, not a spike with a huge crest factor
    spec[1:n_harmonics + 1] = -1j * _SPECTRA[timbre](k)
    table = np.fft.irfft(spec, _TABLE_LEN)
    return (table / np.abs(table).max()).astype(np.float32)


def _table_for(timbre: str, freq: float, sr: int, max_harmonics: int) -> np.ndarray:
    # Band-limit: the highest partial stays below 0.45 sr, so no aliasing folds back.
    k = max(1, min(max_harmonics, int(0.45 * sr / (freq * 1.01))))
    k = max(h for h in _HARMONIC_STEPS if h <= k)
    return _wavetable(timbre, k)


def _osc(table: np.ndarray, freq: float, n: int, sr: int, vib_rate: float = 0.0,
         vib_depth: float = 0.0) -> np.ndarray:
    """Table-lookup oscillator. The phase is a 48.16 fixed-point integer ramp (exact, cheap);
    vibrato adds the closed-form phase of f(1 + d sin 2πvt), which stays small."""
    inc = int(round(freq * _TABLE_LEN / sr * 65536.0))
    idx = (_ramp(n) * inc) >> 16
    if vib_depth > 0:
        t = _t(n, sr)
        amp = np.float32(freq * vib_depth * _TABLE_LEN / (2 * np.pi * vib_rate))
        idx = idx + (amp * (np.float32(1.0) - np.cos(np.float32(2 * np.pi * vib_rate) * t))).astype(np.int64)
    return table[idx & (_TABLE_LEN - 1)]


@functools.lru_cache(maxsize=16)
def _ramp_cached(n: int) -> np.ndarray:
    return np.arange(n, dtype=np.int64)


def _ramp(n: int) -> np.ndarray:
    return _ramp_cached(1 << max(10, (n - 1).bit_length()))[:n]


@functools.lru_cache(maxsize=64)
def _time_axis(n: int, sr: int) -> np.ndarray:
    """Seconds of samples 0 ... n-1 (float32), shared by all notes of that length bucket."""
    return np.arange(n, dtype=np.float32) / np.float32(sr)


def _t(n: int, sr: int) -> np.ndarray:
    # one cached axis per power-of-two size: a slice of it is exactly arange(n) / sr
    return _time_axis(1 << max(10, (n - 1).bit_length()), sr)[:n]


def _attack_decay(n: int, sr: int, attack: float, decay: float = 1.0, sustain: float = 1.0) -> np.ndarray:
    """Linear attack then exponential decay towards ``sustain`` (the release is applied later)."""
    t = _t(n, sr)
    env = np.minimum(t / np.float32(max(attack, 1e-4)), np.float32(1.0))
    if sustain < 1.0:
        env = env * (np.float32(sustain) + np.float32(1.0 - sustain) * np.exp(-t / np.float32(decay)))
    return env


@functools.lru_cache(maxsize=256)
def _release_curve(n: int, release: float, sr: int) -> np.ndarray:
    """Exponential release (-35 dB after ``release`` s) ending exactly at zero, so a note cut at
    its template length never clicks."""
    t = _t(n, sr)
    env = np.exp(-t / np.float32(release / 4.0))
    tail = min(n, max(8, int(0.004 * sr)))
    env[n - tail:] *= np.linspace(1.0, 0.0, tail, dtype=np.float32)
    return env


# A fixed noise source shared by all plucks: a pluck is a pure function of its pitch/length.
_NOISE = np.random.default_rng(20200504).standard_normal(1 << 15).astype(np.float32)


def _karplus_strong(freq: float, n: int, sr: int, t60: float, bright: float) -> np.ndarray:
    """Karplus-Strong plucked string, vectorised one delay line (period) at a time.

    ``y[k] = x[k] + g/2 (y[k-N] + y[k-N-1])``: the block of N samples starting at k only reads
    the previous N+1 samples, so each period is one numpy step. The integer delay N detunes
    the string (f = sr / (N + 1/2)); reading the output at the ratio f_target / f fixes it.
    """
    period = sr / freq
    N = max(2, int(period - 0.5))
    f_ks = sr / (N + 0.5)
    ratio = freq / f_ks                           # <= 1: read slower to lower the pitch
    m = int(math.ceil(n * ratio)) + 2
    # excitation: one period of noise, low-passed by a one-pole filter (dark = soft pluck)
    exc = _NOISE[(int(freq * 7919) % 4096):][:N].astype(np.float64)
    a = 1.0 - bright
    exc = signal.lfilter([1.0 - a], [1.0, -a], exc)
    exc -= exc.mean()
    exc /= np.abs(exc).max() + 1e-12
    g = 10.0 ** (-3.0 * (N / sr) / t60)           # loss per period: -60 dB after t60 seconds
    n_blocks = -(-m // N)
    y = np.zeros((n_blocks + 1) * N + 1, dtype=np.float32)   # y[0] is the y[-1] = 0 term
    y[1:N + 1] = exc
    h = np.float32(0.5 * g)
    for b in range(1, n_blocks):
        s = 1 + b * N
        np.add(y[s - N:s], y[s - N - 1:s - 1], out=y[s:s + N])
        y[s:s + N] *= h
    y = y[1:m + 1]
    x = np.arange(n, dtype=np.float64) * ratio
    i = x.astype(np.int64)
    w = (x - i).astype(np.float32)                # linear interpolation, vectorised
    return y[i] * (1.0 - w) + y[i + 1] * w


def _fm(freq: float, n: int, sr: int, ratio: float, index: float, index_decay: float,
        index_floor: float = 0.0) -> np.ndarray:
    """Two-operator FM: sin(2π f t + I(t) sin(2π r f t)), I(t) = I exp(-t/τ) + floor."""
    t = _t(n, sr)
    idx = np.float32(index) * np.exp(-t / np.float32(index_decay)) + np.float32(index_floor)
    w = np.float32(2 * np.pi * freq)
    return np.sin(w * t + idx * np.sin(np.float32(ratio) * w * t))


def _midi_hz(midi: float) -> float:
    return 440.0 * 2.0 ** ((midi - 69.0) / 12.0)


#: engine -> (release in s, extra samples rendered after the note-off in s)
_RELEASE = {"piano": (0.15, 0.3), "fm_epiano": (0.2, 0.35), "ks_bright": (0.25, 0.4),
            "ks_dark": (0.15, 0.3), "ks_sustain": (0.1, 0.2), "ks_bass": (0.08, 0.15),
            "ks_upright": (0.08, 0.15), "strings": (0.3, 0.45), "organ": (0.06, 0.1),
            "flute": (0.12, 0.2), "saw_lead": (0.12, 0.2), "pad": (0.6, 0.9),
            "fm_bell": (0.4, 0.8), "fm_bass": (0.08, 0.12)}


def _source(engine: str, midi: int, n: int, sr: int) -> np.ndarray:
    """The first n samples of a held note (attack and natural decay, no release), float32.

    Every engine is prefix-consistent (``_source(e, p, m)[:n] == _source(e, p, n)``), so a
    cached longer rendering serves shorter notes unchanged.
    """
    f = _midi_hz(midi)
    t = _t(n, sr)
    if engine == "piano":
        t60 = float(np.clip(2.5 - (midi - 48) * 0.04, 0.6, 3.0))   # low notes ring longer
        bright = _osc(_table_for("piano_bright", f, sr, 24), f, n, sr)
        body = _osc(_table_for("piano_body", f, sr, 8), f, n, sr)
        y = bright * (np.float32(0.6) * np.exp(-t / np.float32(0.12))) + body * np.exp(-t * np.float32(6.9 / t60))
        return y * _attack_decay(n, sr, 0.002)
    if engine == "fm_epiano":
        y = _fm(f, n, sr, 1.0, 1.6, 0.35, 0.15) * np.float32(0.8) + _fm(f, n, sr, 14.0, 0.25, 0.05) * np.float32(0.15)
        return y * np.exp(-t / np.float32(1.6)) * _attack_decay(n, sr, 0.002)
    if engine in ("ks_bright", "ks_dark", "ks_sustain", "ks_bass", "ks_upright"):
        t60, bright = {"ks_bright": (1.6, 0.85), "ks_dark": (2.2, 0.45), "ks_sustain": (4.0, 0.6),
                       "ks_bass": (1.6, 0.4), "ks_upright": (0.9, 0.3)}[engine]
        return _karplus_strong(f, n, sr, t60, bright) * _attack_decay(n, sr, 0.001)
    if engine == "strings":
        y = _osc(_table_for("strings", f, sr, 24), f, n, sr, 5.5, 0.004)
        return y * _attack_decay(n, sr, 0.12)
    if engine == "organ":
        y = _osc(_table_for("organ", f, sr, 8), f, n, sr)
        trem = np.float32(1.0) + np.float32(0.15) * np.sin(np.float32(2 * np.pi * 6.0) * t)  # Leslie-ish
        return y * trem * _attack_decay(n, sr, 0.008) * np.float32(0.7)
    if engine == "flute":
        y = _osc(_table_for("flute", f, sr, 4), f, n, sr, 5.0, 0.005)
        return y * _attack_decay(n, sr, 0.05)
    if engine == "saw_lead":
        y = _osc(_table_for("saw", f, sr, 32), f, n, sr, 5.5, 0.003)
        return y * _attack_decay(n, sr, 0.01, 0.3, 0.7) * np.float32(0.6)
    if engine == "pad":
        tab = _table_for("pad", f * 1.01, sr, 16)
        y = _osc(tab, f * 1.0035, n, sr) + _osc(tab, f / 1.0035, n, sr)   # ±6 cents chorus
        return y * _attack_decay(n, sr, 0.35) * np.float32(0.5)
    if engine == "fm_bell":
        y = _fm(f, n, sr, 3.5, 2.5, 0.4, 0.2)
        return y * np.exp(-t / np.float32(1.0)) * _attack_decay(n, sr, 0.002) * np.float32(0.7)
    if engine == "fm_bass":
        y = _fm(f, n, sr, 1.0, 2.5, 0.12, 0.6) * np.float32(0.6) \
            + np.sin(np.float32(2 * np.pi * f) * t) * np.float32(0.6)
        return y * _attack_decay(n, sr, 0.004, 0.4, 0.75)
    raise ValueError(f"unknown engine {engine!r}")


class _NoteCache:
    """Per-track note renderer. Sources (held notes) are rendered once per (engine, pitch) and
    grown on demand; a note of a given length bucket is the source's prefix with a release."""

    def __init__(self, sr: int):
        self.sr = sr
        self.q = max(1, int(0.025 * sr))         # note lengths bucketed to 25 ms
        self.sources: dict[tuple, np.ndarray] = {}
        self.notes: dict[tuple, np.ndarray] = {}

    def source(self, engine: str, midi: int, n: int) -> np.ndarray:
        src = self.sources.get((engine, midi))
        if src is None or src.size < n:
            size = max(n, 2 * self.sr if src is None else 2 * src.size)
            src = _source(engine, midi, size, self.sr)
            self.sources[(engine, midi)] = src
        return src[:n]

    def get(self, engine: str, midi: int, dur_s: float) -> np.ndarray:
        hold = max(1, int(round(dur_s * self.sr / self.q)))
        key = (engine, midi, hold)
        out = self.notes.get(key)
        if out is None:
            release, tail = _RELEASE[engine]
            hold_n, tail_n = hold * self.q, max(16, int(tail * self.sr))
            out = self.source(engine, midi, hold_n + tail_n).copy()
            out[hold_n:] *= _release_curve(tail_n, release, self.sr)
            self.notes[key] = out
        return out


# --------------------------------------------------------------------------------------
# Drums
# --------------------------------------------------------------------------------------
#: 16th-note grids for a 4/4 bar (12 steps for 3/4); x = full, o = soft. Voices: k kick,
#: s snare, c clap, h closed hat, o open hat, r ride, m rim.
DRUM_PATTERNS: dict[str, dict[int, dict[str, str]]] = {
    "pop": {4: {"k": "x.......x.x.....", "s": "....x.......x...", "h": "x.o.x.o.x.o.x.o."},
            3: {"k": "x...........", "s": "....x...x...", "h": "x.o.x.o.x.o."}},
    "rock": {4: {"k": "x.....x.x.......", "s": "....x.......x...", "h": "x.x.x.x.x.x.x.x."}},
    "electro": {4: {"k": "x...x...x...x...", "c": "....x.......x...", "o": "..x...x...x...x.",
                    "h": "o.o.o.o.o.o.o.o."}},
    "jazz": {4: {"r": "x...x.x.x...x.x.", "h": "....x.......x...", "k": "o.......o......."}},
    "blues": {4: {"k": "x.......x.......", "s": "....x.......x...", "h": "x.x.x.x.x.x.x.x."}},
    "folk": {4: {"k": "x.......x.......", "s": "....o.......o...", "h": "o...o...o...o..."},
             3: {"k": "x...........", "s": "....o...o...", "h": "o...o...o..."}},
    "reggae": {4: {"k": "........x.......", "m": "........x.......", "h": "..x...x...x...x."}},
    "ambient": {4: {"k": "x...............", "h": "........o......."}},
    "hip_hop": {4: {"k": "x......x..x.....", "s": "....x.......x...", "h": "x.x.x.x.x.x.x.x."}},
}


def _drum_kit(kit: str, sr: int, rng: np.random.Generator, tonic: int) -> dict[str, list[np.ndarray]]:
    """Render a track's drum samples (a few variants per voice for a live kit). The pitched
    parts are tuned to the key, as producers tune their kicks: the kick sits on the tonic
    (41-78 Hz), the snare's body on the dominant."""
    kick_f = _midi_hz(28 + (tonic - 4) % 12)                  # E1 ... D#2
    snare_f = _midi_hz(48 + (tonic + 7) % 12)                 # C3 ... B3
    n_var = 3 if kit == "live" else 1
    out: dict[str, list[np.ndarray]] = {}

    def t_axis(dur):
        return np.arange(int(dur * sr), dtype=np.float32) / np.float32(sr)

    def noise(n):
        return rng.standard_normal(n, dtype=np.float32)

    for v in "kscormh":
        variants = []
        for _ in range(n_var):
            if v == "k":
                t = t_axis(0.4 if kit == "live" else 0.6)
                f0, f1, dec = (kick_f, 95.0, 0.18) if kit == "live" else (kick_f, 75.0, 0.4)
                phase = 2 * np.pi * (f0 * t + f1 * 0.03 * (1 - np.exp(-t / 0.03)))
                y = np.sin(phase) * np.exp(-t / dec)
                y[: int(0.004 * sr)] += noise(int(0.004 * sr)) * 0.3
            elif v == "s":
                t = t_axis(0.25)
                nz = np.diff(noise(t.size + 1))
                y = nz * 0.35 * np.exp(-t / 0.07) + np.sin(2 * np.pi * snare_f * t) \
                    * 0.6 * np.exp(-t / 0.05)
            elif v == "c":
                t = t_axis(0.25)
                env = np.exp(-t / 0.09) * 0.6
                for d in (0.0, 0.011, 0.022):
                    env += np.where(t >= d, np.exp(-np.maximum(t - d, 0) / 0.006), 0.0)
                y = np.diff(noise(t.size + 1)) * env * 0.3
            elif v in "ho":
                t = t_axis(0.08 if v == "h" else 0.35)
                dec = 0.025 if v == "h" else 0.15
                if kit == "live":
                    src = np.diff(np.diff(noise(t.size + 2)))
                else:   # classic metallic hat: six detuned square waves
                    src = sum(np.sign(np.sin(2 * np.pi * fr * t)) for fr in (205, 304, 370, 523, 540, 800))
                    src = np.diff(np.diff(np.concatenate([[0, 0], src]))).astype(np.float32)
                y = src * np.exp(-t / dec) * 0.12
            elif v == "r":
                t = t_axis(0.9)
                y = np.sin(2 * np.pi * 520 * t + 3 * np.sin(2 * np.pi * 1410 * t)) * 0.25 * np.exp(-t / 0.5) \
                    + np.diff(noise(t.size + 1)) * 0.05 * np.exp(-t / 0.3)
            else:   # rim
                t = t_axis(0.08)
                y = (np.sin(2 * np.pi * 900 * t) * 0.5 + np.diff(noise(t.size + 1)) * 0.3) * np.exp(-t / 0.02)
            variants.append(np.asarray(y, dtype=np.float32))
        out[v] = variants
    return out


# --------------------------------------------------------------------------------------
# Composition: timeline, harmony, melody, accompaniment, bass, drums
# --------------------------------------------------------------------------------------
def _chord(style: GenreStyle, mode: str, degree: int) -> tuple[int, tuple[int, ...]]:
    """(root in semitones above the tonic, chord intervals above the root)."""
    sc = MODES[mode]
    root = sc[degree % 7]
    if style.chord_kind == "dom7" and mode in ("major", "lydian"):
        return root, (0, 4, 7, 10)      # the blues: dominant sevenths on I, IV and V
    if style.chord_kind == "power":
        return root, (0, 7, 12)
    n = 4 if style.chord_kind in ("seventh", "dom7") else 3      # a minor blues: diatonic 7ths
    iv = tuple((sc[(degree + 2 * j) % 7] - root) % 12 for j in range(n))   # stacked thirds
    return root, iv


class _Events:
    """Note events of one role: onset (beats), duration (beats), MIDI pitch, velocity."""

    def __init__(self):
        self.on, self.dur, self.midi, self.vel = [], [], [], []

    def add(self, on, dur, midi, vel):
        self.on.append(on)
        self.dur.append(dur)
        self.midi.append(int(midi))
        self.vel.append(vel)


def _swing_map(pos: np.ndarray, swing: float) -> np.ndarray:
    """Delay off-beat subdivisions: beat fraction 0.5 -> 0.5 + swing/6 (triplet at 1)."""
    if swing <= 0:
        return pos
    beat = np.floor(pos)
    f = pos - beat
    mid = 0.5 + swing / 6.0
    f2 = np.where(f < 0.5, f * (mid / 0.5), mid + (f - 0.5) * ((1 - mid) / 0.5))
    return beat + f2


def _melody_phrase(rng: np.random.Generator, n_beats: int, chord_at, density: float, start_deg: int) -> list[tuple[float, float, int]]:
    """A phrase of (onset beat, duration beats, scale degree): rhythm cells by density, a
    random walk on the scale that lands on chord tones on the beat, ends long on a chord tone."""
    cells_by_density = [
        ([4], [8], [6, 2], [4], [2, 2]),            # sparse (steps of a 16th)
        ([2, 2], [4], [3, 1], [1, 1, 2], [2, 1, 1]),
        ([1, 1, 1, 1], [2, 1, 1], [1, 1, 2], [2, 2]),
    ]
    level = 0 if density < 0.9 else (1 if density < 1.6 else 2)
    cells = cells_by_density[level]
    p_rest = 0.25 if level == 0 else 0.12
    notes, step, deg = [], 0, start_deg
    total = n_beats * 4
    while step < total:
        cell = cells[int(rng.integers(len(cells)))]
        for d in cell:
            if step >= total:
                break
            d = min(d, total - step)
            beat = step / 4.0
            tones = chord_at(beat)
            if step % 4 == 0 and rng.random() < 0.75:
                # nearest chord tone (in scale degrees, any octave)
                cands = np.array([t + 7 * o for t in tones for o in (-1, 0, 1, 2)])
                deg = int(cands[np.argmin(np.abs(cands - deg) + rng.random(cands.size) * 0.1)])
            else:
                deg += int(rng.choice([-2, -1, 1, 2, 3, -3], p=[0.1, 0.32, 0.32, 0.1, 0.08, 0.08]))
            if deg > 9 or deg < -3:              # stay in a singable range: reflect back
                deg = int(np.clip(deg, -3, 9)) - int(np.sign(deg)) * 2
            if not (rng.random() < p_rest and step % 4 != 0):
                notes.append((beat, d / 4.0, deg))
            step += d
    if notes:   # cadence: the phrase ends on a chord tone, held
        b, d, g = notes[-1]
        tones = chord_at(b)
        cands = np.array([t + 7 * o for t in tones for o in (-1, 0, 1)])
        notes[-1] = (b, max(d, (total - b * 4) / 4.0), int(cands[np.argmin(np.abs(cands - g))]))
    return notes


# --------------------------------------------------------------------------------------
# Events: the temporally sparse layers of the events variant
# --------------------------------------------------------------------------------------
#: An event's RMS over its window, relative to the produced band's RMS over the track: about
#: the melody's share of the mix, so while it sounds an event is as prominent as the melody.
_EVENT_LEVEL = 0.7
#: Church-bell partials: (ratio to the strike pitch, amplitude, decay in s) of the hum, prime,
#: minor-third tierce, quint, nominal and upper partials; the tierce and the stretched upper
#: partials make a bell inharmonic, unlike every pitched instrument of the catalog.
_BELL_PARTIALS = ((0.5, 0.4, 2.0), (1.0, 0.55, 1.4), (1.19, 0.5, 1.1), (1.5, 0.25, 0.9), (2.0, 0.7, 0.8),
                  (2.51, 0.3, 0.45), (2.66, 0.25, 0.4), (3.01, 0.2, 0.3), (4.07, 0.12, 0.2))
#: Formants of a sung "aah": (centre Hz, bandwidth Hz, gain).
_VOWEL_AH = ((800.0, 80.0, 1.0), (1150.0, 90.0, 0.63), (2900.0, 120.0, 0.25), (3900.0, 130.0, 0.1))


def _events_rng(seed: int | np.random.SeedSequence, tag: str) -> np.random.Generator:
    """One event's audio stream: a child of the track's audio seed that no other layer and no
    other event draws from, so adding or removing an event changes only its own window."""
    key = (_STREAM_EVENTS, EVENT_TAGS.index(tag))
    if isinstance(seed, np.random.SeedSequence):
        ss = np.random.SeedSequence(seed.entropy, spawn_key=tuple(seed.spawn_key) + key)
    else:
        ss = np.random.SeedSequence(int(seed), spawn_key=key)
    return np.random.default_rng(ss)


def _grid(beat_times: np.ndarray, step: float, t0: float, dur: float) -> np.ndarray:
    """Onsets (s from ``t0``) of a grid of ``step`` beats that fall in ``[t0, t0 + dur)``,
    through the track's tempo curve; ``[0]`` when none does (a window shorter than a step)."""
    pos = np.arange(0.0, beat_times.size - 1, step)
    t = np.interp(pos, np.arange(beat_times.size), beat_times) - t0
    t = t[(t >= 0) & (t < dur)]
    return t if t.size else np.zeros(1)


def _place(notes, m: int, sr: int) -> np.ndarray:
    """Sum ``(onset s, samples)`` pairs into a float32 buffer of m samples (tails cut)."""
    out = np.zeros(m, dtype=np.float32)
    for t, y in notes:
        s0 = int(round(t * sr))
        if 0 <= s0 < m:
            k = min(y.size, m - s0)
            out[s0:s0 + k] += y[:k]
    return out


def _bells(attrs: TrackAttributes, m: int, sr: int, t0: float, beat_times: np.ndarray,
           rng: np.random.Generator) -> np.ndarray:
    """Peals of the tonic triad (octave, fifth, third, tonic in a shuffled order per round), one
    strike a beat (two beats above 100 bpm), strike pitches C5 ... B6."""
    base = 72 + attrs.tonic
    steps = (12, 7, MODES[attrs.mode][2], 0)
    onsets = _grid(beat_times, 1.0 if attrs.tempo_bpm < 100 else 2.0, t0, m / sr)
    order = np.concatenate([rng.permutation(4) for _ in range(-(-onsets.size // 4))])
    n_strike = int(1.6 * sr)
    t = _t(n_strike, sr)
    strikes: dict[int, np.ndarray] = {}
    notes = []
    for k, on in enumerate(onsets):
        p = base + steps[order[k]]
        if p not in strikes:
            f, y = _midi_hz(p), np.zeros(n_strike, dtype=np.float32)
            for ratio, amp, decay in _BELL_PARTIALS:
                if ratio * f < 0.45 * sr:
                    partial = np.sin(np.float32(2 * np.pi * ratio * f) * t)
                    y += np.float32(amp) * partial * np.exp(-t / np.float32(decay))
            strikes[p] = y * _attack_decay(n_strike, sr, 0.001)
        notes.append((on, strikes[p] * np.float32(rng.uniform(0.75, 1.0))))
    return _place(notes, m, sr)


def _guitar_solo(attrs: TrackAttributes, m: int, sr: int, t0: float, beat_times: np.ndarray,
                 rng: np.random.Generator) -> np.ndarray:
    """A lick on the 16th-note grid: a random walk on two octaves of the pentatonic scale
    (E4 ... D#6), Karplus-Strong notes, then vibrato, hard distortion and a cabinet band-pass."""
    penta = (0, 2, 4, 7, 9) if attrs.mode in ("major", "lydian") else (0, 3, 5, 7, 10)
    base = 64 + (attrs.tonic - 4) % 12
    pitches = [base + 12 * o + x for o in (0, 1) for x in penta] + [base + 24]
    grid = _grid(beat_times, 0.25, t0, m / sr)
    cells = ((1, 1, 2), (2, 2), (1, 1, 1, 1), (3, 1), (4,), (2, 1, 1))
    seq, k, idx = [], 0, 5
    while k < grid.size:
        for d in cells[int(rng.integers(len(cells)))]:
            if k >= grid.size:
                break
            idx = int(np.clip(idx + rng.choice([-2, -1, 1, 2]), 0, len(pitches) - 1))
            end = grid[k + d] if k + d < grid.size else m / sr
            if rng.random() >= 0.1:
                seq.append((grid[k], end - grid[k], pitches[idx]))
            k += d
    longest: dict[int, float] = {}
    for _, d, p in seq:
        longest[p] = max(longest.get(p, 0.0), d)
    src = {p: _source("ks_sustain", p, int(d * sr) + 1, sr) for p, d in longest.items()}
    rel = int(0.015 * sr)
    notes = []
    for on, d, p in seq:
        y = src[p][:int(d * sr) + 1].copy()
        y[-min(rel, y.size):] *= np.linspace(1, 0, min(rel, y.size), dtype=np.float32)
        notes.append((on, y))
    y = _place(notes, m, sr)
    # vibrato: a delay of A (1 - cos wt) samples bends the pitch by up to +-1.2 % at 5.5 Hz
    w = 2 * np.pi * 5.5
    pos = np.arange(m) - (0.012 * sr / w) * (1.0 - np.cos(w * np.arange(m) / sr))
    y = np.interp(pos, np.arange(m), y).astype(np.float32)
    y = np.tanh(np.float32(12.0) / (np.abs(y).max() + 1e-9) * y)
    sos = signal.butter(2, [250.0, min(5000.0, 0.45 * sr)], btype="bandpass", fs=sr, output="sos")
    return signal.sosfilt(sos, y).astype(np.float32)


def _riser(attrs: TrackAttributes, m: int, sr: int, t0: float, beat_times: np.ndarray,
           rng: np.random.Generator) -> np.ndarray:
    """White noise through a band-pass (Q = 3) whose centre rises exponentially from 200 Hz to
    6 kHz, swelling by 24 dB; the filter is updated every 512 samples."""
    block = 512
    n_blocks = -(-m // block)
    frac = (np.arange(n_blocks) + 0.5) / n_blocks
    w0 = 2 * np.pi * 200.0 * (min(6000.0, 0.4 * sr) / 200.0) ** frac / sr
    alpha = np.sin(w0) / (2 * 3.0)
    noise = rng.standard_normal(n_blocks * block)
    out = np.empty_like(noise)
    zi = np.zeros(2)
    for j in range(n_blocks):
        a0 = 1 + alpha[j]
        b = np.array([alpha[j], 0.0, -alpha[j]]) / a0
        a = np.array([1.0, -2 * np.cos(w0[j]) / a0, (1 - alpha[j]) / a0])
        sl = slice(j * block, (j + 1) * block)
        out[sl], zi = signal.lfilter(b, a, noise[sl], zi=zi)
    swell = 10 ** (np.linspace(-24.0, 0.0, m) / 20)
    return (out[:m] * swell).astype(np.float32)


def _choir(attrs: TrackAttributes, m: int, sr: int, t0: float, beat_times: np.ndarray,
           rng: np.random.Generator) -> np.ndarray:
    """Voices on the tonic, fifth, octave and twelfth (A3 ... G#4 up), two slightly detuned saws
    each with its own vibrato, through the formants of "aah", with a slow swell."""
    root = 57 + (attrs.tonic - 9) % 12
    src = np.zeros(m, dtype=np.float32)
    for p in (root, root + 7, root + 12, root + 19):
        for detune in (0.997, 1.003):
            f = _midi_hz(p) * detune
            src += _osc(_table_for("saw", f, sr, 32), f, m, sr, float(rng.uniform(4.6, 5.8)), 0.006)
    out = np.zeros(m, dtype=np.float32)
    for fc, bw, gain in _VOWEL_AH:
        if fc + bw < 0.45 * sr:
            sos = signal.butter(1, [fc - bw / 2, fc + bw / 2], btype="bandpass", fs=sr, output="sos")
            out += np.float32(gain) * signal.sosfilt(sos, src).astype(np.float32)
    return out * _attack_decay(m, sr, 0.3)


_EVENT_RENDERERS = {"bells": _bells, "guitar_solo": _guitar_solo, "riser": _riser, "choir": _choir}


def _render_events(attrs: TrackAttributes, n: int, sr: int, beat_times: np.ndarray,
                   seed: int | np.random.SeedSequence, band_rms: float) -> np.ndarray:
    """The event layers of a track, float32 (n,), zero outside the windows: each event is
    rendered in its window only, at an RMS of ``_EVENT_LEVEL * band_rms`` over the window,
    faded in and out inside it (5 and 30 ms) so that it neither clicks nor rings past its end."""
    out = np.zeros(n, dtype=np.float32)
    for tag, start, end in attrs.events:
        if tag not in _EVENT_RENDERERS:
            raise ValueError(f"attrs.events has {tag!r}, not one of {list(EVENT_TAGS)}")
        if not 0.0 <= start < end <= 1.0:
            raise ValueError(f"event {tag!r} has the window ({start}, {end}), not 0 <= start < end <= 1")
        s0, s1 = int(round(start * n)), int(round(end * n))
        m = s1 - s0
        if m < int(0.05 * sr):
            continue
        y = _EVENT_RENDERERS[tag](attrs, m, sr, s0 / sr, beat_times, _events_rng(seed, tag))
        fade_in, fade_out = int(0.005 * sr), int(0.03 * sr)
        y[:fade_in] *= np.linspace(0, 1, fade_in, dtype=np.float32)
        y[m - fade_out:] *= np.linspace(1, 0, fade_out, dtype=np.float32)
        level = _EVENT_LEVEL * band_rms / (float(np.sqrt(np.mean(y.astype(np.float64) ** 2))) + 1e-9)
        out[s0:s1] += np.float32(level) * y
    return out


def _overdub(out: np.ndarray, layer: np.ndarray, events) -> None:
    """Add the event layer to the finished track in place; a window whose sum would pass 0.98
    goes through a soft limiter (0.98 tanh(x / 0.98)), that window only."""
    n = out.size
    windows = [slice(int(round(start * n)), int(round(end * n))) for _, start, end in events]
    inside = np.zeros(n, dtype=bool)
    for w in windows:
        inside[w] = True
    out[inside] += layer[inside]           # outside, not even the sign of a zero changes
    for w in windows:
        seg = out[w]
        if seg.size and np.abs(seg).max() > 0.98:
            seg[:] = np.float32(0.98) * np.tanh(seg / np.float32(0.98))


def generate_track(attrs: TrackAttributes, sr: int = 22050, duration_s: float = 30.0,
                   seed: int | np.random.SeedSequence = 0) -> np.ndarray:
    """Render one synthetic track from its latent attributes.

    The genre fixes the drum pattern, meter, swing, chord progressions (one chord per bar,
    two bars in ambient, the 12-bar form in blues), accompaniment and bass patterns; the
    instruments fix the timbres; the mood the mode, register, density, brightness and loudness;
    the movement the tempo curve, the loudness curve, the form (AABA, a looped A, or a new
    section every phrase) and breaks. Each event of ``attrs.events`` (the events variant) adds
    its layer in its window only, from a random stream of its own. ``attrs.lyrics`` is never
    read.

    Parameters
    ----------
    attrs : TrackAttributes
        The latent description (from :func:`sample_catalog`).
    sr : int
        Sample rate in Hz (8,000 ... 96,000).
    duration_s : float
        Length in seconds (0.5 ... 600).
    seed : int or numpy.random.SeedSequence
        Seed of the musical choices (progression, melody, humanisation). The same
        (attrs, sr, duration_s, seed) always gives the same samples.

    Returns
    -------
    numpy.ndarray
        float32 (round(duration_s * sr),), mono, peak <= 0.98, no NaN.

    Notebook: 01_cqt.ipynb
    """
    _check_track_args(attrs, sr, duration_s, seed)
    rng = np.random.default_rng(seed)
    style = GENRES[attrs.genre]
    n = int(round(duration_s * sr))
    beat_times, n_bars = _timeline(attrs, duration_s)
    harmony = _Harmony(attrs, style, n_bars, rng)
    mel = _melody(attrs, style, harmony, rng)
    comp, bass = _accompaniment(attrs, style, harmony, n_bars, rng)
    drum_hits = _drum_hits(attrs, style, n_bars, harmony.sec_len)
    stems = _render_stems(attrs, {"melody": mel, "chords": comp, "bass": bass}, beat_times, n, sr, rng)
    stems["drums"] = _render_drums(attrs, drum_hits, beat_times, n, sr, rng)
    mix = _produce(attrs, stems, n, sr, duration_s, rng)
    # Events are overdubs on the produced band: the band alone sets the loudness and the peak
    # gain below, so an event leaves every sample outside its window exactly as it was.
    overdub = _render_events(attrs, n, sr, beat_times, seed, _rms(mix)) if attrs.events else None
    return _master(attrs, mix, overdub, n, sr)


def _check_track_args(attrs, sr, duration_s, seed) -> None:
    if not isinstance(attrs, TrackAttributes):
        raise TypeError(f"attrs must be a TrackAttributes, got {type(attrs).__name__}")
    _check_int("sr", sr, 8000)
    if sr > 96000:
        raise ValueError(f"sr must be <= 96000 Hz, got {sr}")
    if not (isinstance(duration_s, (int, float)) and 0.5 <= duration_s <= 600):
        raise ValueError(f"duration_s must be a number in [0.5, 600] seconds, got {duration_s!r}")
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        _check_int("seed", seed, 0)
    elif not isinstance(seed, np.random.SeedSequence):
        raise TypeError(f"seed must be an int or a numpy SeedSequence, got {type(seed).__name__}")
    for field, allowed in (("genre", GENRES), ("mood", MOODS), ("mode", MODES), ("melody", INSTRUMENTS),
                           ("chords", INSTRUMENTS)):
        if getattr(attrs, field) not in allowed:
            raise ValueError(f"attrs.{field}={getattr(attrs, field)!r} is not one of {sorted(allowed)}")


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.dot(x, x) / max(1, x.size))) + 1e-9


def _timeline(attrs: TrackAttributes, duration_s: float) -> tuple[np.ndarray, int]:
    """Seconds of each beat index (through the tempo curve), and the number of bars."""
    meter = attrs.meter
    n_beats = int(duration_s * attrs.tempo_bpm * 1.35 / 60.0) + 2 * meter + 2
    frac = np.arange(n_beats + 1) / max(1.0, duration_s * attrs.tempo_bpm / 60.0)
    ramp = {"acceleration": 1.0 + 0.25 * np.clip(frac, 0, 1),
            "slowing_down": 1.0 - 0.2 * np.clip(frac, 0, 1)}.get(attrs.tempo_change, np.ones_like(frac))
    beat_times = np.concatenate([[0.0], np.cumsum(60.0 / (attrs.tempo_bpm * ramp[:-1]))])
    return beat_times, int(np.searchsorted(beat_times, duration_s) // meter) + 1


class _Harmony:
    """Harmony and form: sections labelled by the structure (AABA, a looped A, or a new
    section every phrase), each label with its progression, one chord per ``chord_bars``."""

    def __init__(self, attrs: TrackAttributes, style: GenreStyle, n_bars: int, rng: np.random.Generator):
        self.attrs, self.style = attrs, style
        prog_ids = rng.permutation(len(style.progressions))
        self.sec_len = len(style.progressions[0]) * style.chord_bars
        n_sections = -(-n_bars // self.sec_len)
        if attrs.structure == "repetitive":
            self.form = [0] * n_sections
        elif attrs.structure == "evolving":
            self.form = list(range(n_sections))
        else:
            self.form = [[0, 0, 1, 0][s % 4] for s in range(n_sections)]
        self.label_prog = {lab: style.progressions[prog_ids[lab % len(prog_ids)]] for lab in set(self.form)}

    def chord_of(self, bar: int) -> tuple[int, tuple[int, ...], int]:
        """(root, intervals, scale degree) of the chord of a bar."""
        lab = self.form[min(bar // self.sec_len, len(self.form) - 1)]
        degree = self.label_prog[lab][(bar % self.sec_len) // self.style.chord_bars]
        root, iv = _chord(self.style, self.attrs.mode, degree)
        return root, iv, degree


def _melody(attrs: TrackAttributes, style: GenreStyle, harmony: _Harmony, rng: np.random.Generator) -> _Events:
    """The melody: one per section label, two phrases per section (question and answer)."""
    mel = _Events()
    meter, sec_len = attrs.meter, harmony.sec_len
    scale = MODES[attrs.mode]
    tonic_midi = 60 + attrs.tonic if attrs.tonic < 7 else 48 + attrs.tonic      # C4 ... F#4 / G3 ... B3
    sec_beats = sec_len * meter
    melodies: dict[int, list[tuple[float, float, int]]] = {}
    start_deg = 4
    for s, lab in enumerate(harmony.form):
        if lab not in melodies:
            def chord_at(beat, s0=s):
                _, _, d = harmony.chord_of(s0 * sec_len + int(beat // meter))
                kind4 = style.chord_kind in ("seventh", "dom7")
                return [d, d + 2, d + 4] + ([d + 6] if kind4 else [])
            half = sec_beats // 2 if sec_len >= 2 else sec_beats
            p1 = _melody_phrase(rng, half, chord_at, attrs.density, start_deg)
            if attrs.structure == "repetitive":
                p2 = [(b + half, d, g) for b, d, g in p1]        # the loop: the phrase again
            else:   # answer phrase; often it restates the opening of the question
                rest = sec_beats - half
                p2 = _melody_phrase(rng, rest, lambda b: chord_at(b + half), attrs.density,
                                    p1[-1][2] if p1 else start_deg)
                if p1 and rng.random() < 0.6:
                    q = rest / 2
                    p2 = [x for x in p1 if x[0] < q] + [x for x in p2 if x[0] >= q]
                p2 = [(b + half, d, g) for b, d, g in p2]
            melodies[lab] = p1 + sorted(p2)
        base = s * sec_beats
        for b, d, g in melodies[lab]:
            g = g + attrs.register                # a diatonic shift keeps the melody in key
            pitch = tonic_midi + 12 * (g // 7) + scale[g % 7]
            mel.add(base + b, d * 0.92, pitch, 0.8 + 0.2 * ((b % meter) == 0))
    return mel


def _accompaniment(attrs: TrackAttributes, style: GenreStyle, harmony: _Harmony, n_bars: int,
                   rng: np.random.Generator) -> tuple[_Events, _Events]:
    """Chords in the accompaniment pattern and the bass line, bar by bar."""
    comp, bass = _Events(), _Events()
    for bar in range(n_bars):
        root, iv, _ = harmony.chord_of(bar)
        pcs = [(attrs.tonic + root + x) % 12 for x in iv]
        voiced = sorted({53 + (p - 53) % 12 for p in pcs})        # close voicing, F3 ... E4
        _comp_bar(comp, attrs, style, bar, voiced, rng)
        if attrs.bass != "none":
            nroot, _, _ = harmony.chord_of(bar + 1)
            _bass_bar(bass, attrs, style, bar, root, iv, nroot, rng)
    return comp, bass


def _comp_bar(comp: _Events, attrs: TrackAttributes, style: GenreStyle, bar: int, voiced: list[int],
              rng: np.random.Generator) -> None:
    """One bar of the accompaniment, in the pattern ``attrs.comp``."""
    meter, cstyle, chord_vel = attrs.meter, attrs.comp, 0.55
    b0 = bar * meter
    if cstyle in ("block", "pad"):
        if bar % style.chord_bars == 0:
            for p in voiced:
                comp.add(b0, meter * style.chord_bars * 0.98, p, chord_vel)
    elif cstyle in ("strum", "eighths", "shuffle"):
        step = 1.0 if cstyle == "strum" else 0.5
        for k in range(int(meter / step)):
            for j, p in enumerate(voiced):    # strum: 12 ms between strings
                comp.add(b0 + k * step + j * 0.012 * attrs.tempo_bpm / 60.0, step * 0.9, p,
                         chord_vel * (1.0 if k % 2 == 0 else 0.75))
    elif cstyle == "arp":
        order = voiced + [voiced[1] + 12] if len(voiced) > 2 else voiced * 2
        for k in range(meter * 2):
            comp.add(b0 + k * 0.5, 0.9, order[k % len(order)], chord_vel)
    elif cstyle == "alberti":
        low = [voiced[0] - 12, voiced[-1] - 12, voiced[1] - 12, voiced[-1] - 12]
        for k in range(meter * 2):
            comp.add(b0 + k * 0.5, 0.5, low[k % 4], chord_vel)
    elif cstyle == "skank":
        for k in range(meter):
            for p in voiced:
                comp.add(b0 + k + 0.5, 0.2, p, chord_vel)
    elif cstyle == "stabs":
        for pos in (0.0, 0.75, 1.5, 2.5, 3.25)[: 5 if meter == 4 else 3]:
            for p in voiced:
                comp.add(b0 + pos, 0.2, p, chord_vel)
    elif cstyle == "comping":
        for k in range(meter):
            if rng.random() < 0.55:
                pos = k + (0.0 if rng.random() < 0.5 else 0.5)
                for p in voiced:
                    comp.add(b0 + pos, 0.4 + 0.5 * rng.random(), p, chord_vel * 0.8)


def _bass_bar(bass: _Events, attrs: TrackAttributes, style: GenreStyle, bar: int, root: int,
              iv: tuple[int, ...], nroot: int, rng: np.random.Generator) -> None:
    """One bar of the bass line (root in E1 ... D#2), in the pattern ``attrs.bass_pattern``."""
    meter, bp = attrs.meter, attrs.bass_pattern
    b0 = bar * meter
    rb = 28 + (attrs.tonic + root - 4) % 12
    fifth = rb + 7
    nb = 28 + (attrs.tonic + nroot - 4) % 12
    if bp == "root":
        bass.add(b0, meter * 0.95, rb, 0.9)
    elif bp == "sustained":
        if bar % style.chord_bars == 0:
            bass.add(b0, meter * style.chord_bars * 0.98, rb, 0.9)
    elif bp == "root_fifth":
        bass.add(b0, meter / 2 * 0.9, rb, 0.9)
        bass.add(b0 + meter / 2 if meter == 4 else b0 + 2, meter / 2 * 0.9 if meter == 4 else 0.9, fifth, 0.8)
    elif bp == "eighths":
        for k in range(meter * 2):
            bass.add(b0 + k * 0.5, 0.45, rb, 0.8 + 0.1 * (k % 2 == 0))
    elif bp == "octave":
        for k in range(meter * 2):
            bass.add(b0 + k * 0.5, 0.4, rb + 12 * (k % 2), 0.85)
    elif bp == "syncopated":
        for pos, p in ((0.0, rb), (1.5, rb), (2.5, fifth), (3.0, rb))[: 4 if meter == 4 else 2]:
            bass.add(b0 + pos, 0.45, p, 0.9)
    elif bp == "reggae":
        for pos, p, d in ((0.0, rb, 1.0), (1.5, rb, 0.4), (2.0, fifth, 0.9), (3.5, rb + 12, 0.4)):
            bass.add(b0 + pos, d, p, 0.9)
    elif bp == "walking":
        third = rb + iv[1] if len(iv) > 1 else rb + 4
        line = [rb, third, fifth, nb + (1 if rng.random() < 0.5 else -1)]
        for k in range(meter):
            bass.add(b0 + k, 0.9, line[k % 4], 0.85)


def _drum_hits(attrs: TrackAttributes, style: GenreStyle, n_bars: int,
               sec_len: int) -> tuple[list[float], list[str], list[float]]:
    """Drum hits (beat position, voice, velocity) of the genre's pattern, with breaks, a
    build-up or fade-out, and a 16th-note fill at the end of every section."""
    drum_on, drum_voice, drum_vel = [], [], []
    if attrs.kit == "none" or style.drums is None:
        return drum_on, drum_voice, drum_vel
    meter = attrs.meter
    pat = DRUM_PATTERNS[style.drums]
    pat = pat.get(meter) or pat[4]
    steps = 4 * meter
    for bar in range(n_bars):
        if attrs.breaks and bar % 8 in (6, 7):
            continue
        if attrs.dynamics_change == "crescendo" and bar < min(sec_len, n_bars // 3):
            continue     # build-up: the drums enter after the first section
        if attrs.dynamics_change == "decrescendo" and bar >= n_bars - min(sec_len, n_bars // 3):
            continue
        section_end = (bar % sec_len == sec_len - 1) and attrs.structure != "repetitive"
        for voice, row in pat.items():
            row = row[:steps].ljust(steps, ".")
            for k, ch in enumerate(row):
                if ch == ".":
                    continue
                if section_end and k >= steps - 4 and voice in "sc":
                    continue           # the fill replaces the last beat's backbeat
                drum_on.append(bar * meter + k / 4.0)
                drum_voice.append(voice)
                drum_vel.append(1.0 if ch == "x" else 0.5)
        if section_end and ("s" in pat or "c" in pat):
            v = "s" if "s" in pat else "c"
            for k in range(4):        # a 16th-note fill, rising
                drum_on.append(bar * meter + meter - 1 + k / 4.0)
                drum_voice.append(v)
                drum_vel.append(0.45 + 0.15 * k)
    return drum_on, drum_voice, drum_vel


def _to_seconds(pos, swing: float, beat_times: np.ndarray) -> np.ndarray:
    """Seconds of beat positions (swing first, then the tempo curve)."""
    return np.interp(_swing_map(np.asarray(pos, dtype=np.float64), swing),
                     np.arange(beat_times.size), beat_times)


def _render_stems(attrs: TrackAttributes, parts: dict[str, _Events], beat_times: np.ndarray, n: int,
                  sr: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Audio (n,) of the melody, the chords and (if any) the bass, from the note cache."""
    cache = _NoteCache(sr)
    live = attrs.kit == "live"
    stems = {}
    roles = (("melody", attrs.melody), ("chords", attrs.chords)) + \
        ((("bass", attrs.bass),) if attrs.bass != "none" else ())
    for name, instrument in roles:
        ev, engine = parts[name], INSTRUMENTS[instrument][0]
        buf = np.zeros(n + sr, dtype=np.float32)       # one second of slack for tails
        if ev.on:
            on = np.array(ev.on)
            t0, t1 = _to_seconds(on, attrs.swing, beat_times), _to_seconds(on + np.array(ev.dur), attrs.swing,
                                                                          beat_times)
            if name != "melody" or not live:
                jitter = np.zeros(on.size)
            else:     # a human player: +-6 ms
                jitter = rng.normal(0.0, 0.006, on.size)
            starts = np.round((t0 + jitter) * sr).astype(np.int64)
            for s0, d, p, v in zip(starts, t1 - t0, ev.midi, ev.vel):
                if s0 >= n or s0 < 0:
                    continue
                tpl = cache.get(engine, p, float(d))
                m = min(tpl.size, buf.size - s0)
                buf[s0:s0 + m] += np.float32(v) * tpl[:m]
        stems[name] = buf[:n]
    return stems


def _render_drums(attrs: TrackAttributes, hits, beat_times: np.ndarray, n: int, sr: int,
                  rng: np.random.Generator) -> np.ndarray:
    """Audio (n,) of the drum hits (a live kit is humanised: timing, velocity, sample variant)."""
    drum_on, drum_voice, drum_vel = hits
    drums = np.zeros(n + sr, dtype=np.float32)
    if drum_on:
        kit = _drum_kit(attrs.kit, sr, rng, attrs.tonic)
        times = _to_seconds(np.array(drum_on), attrs.swing, beat_times)
        nvar = len(kit["k"])
        if attrs.kit == "live":
            times = times + rng.normal(0.0, 0.004, times.size)
            vel = np.array(drum_vel) * rng.uniform(0.8, 1.0, times.size)
            var = rng.integers(0, nvar, times.size)
        else:
            vel, var = np.array(drum_vel), np.zeros(times.size, dtype=int)
        starts = np.round(times * sr).astype(np.int64)
        for s0, vc, v, k in zip(starts, drum_voice, vel, var):
            if 0 <= s0 < n:
                smp = kit[vc][k]
                m = min(smp.size, drums.size - s0)
                drums[s0:s0 + m] += np.float32(v) * smp[:m]
    return drums[:n]


def _produce(attrs: TrackAttributes, stems: dict[str, np.ndarray], n: int, sr: int, duration_s: float,
             rng: np.random.Generator) -> np.ndarray:
    """Production: guitar drive, the balance of the stems, master drive, brightness filter,
    echo and lo-fi (band-limit, hiss, crackle)."""
    if attrs.guitar_drive > 0:
        for name, instr in (("melody", attrs.melody), ("chords", attrs.chords)):
            if instr == "dist_guitar":
                g = np.float32(attrs.guitar_drive)
                stems[name] = np.tanh(g * stems[name]) / np.tanh(g)
    # balance: each stem to a target level relative to the melody (loudness-independent)
    levels = {"melody": 1.0, "chords": 0.55, "bass": 0.75, "drums": 0.8}
    if attrs.genre in ("hip_hop", "electro", "reggae"):
        levels.update(bass=0.95, drums=0.95)
    if attrs.genre in ("ambient", "classical"):
        levels.update(chords=0.7, drums=0.4)
    mix = np.zeros(n, dtype=np.float32)
    for name, x in stems.items():
        if x.any():
            mix += np.float32(levels[name] / _rms(x)) * x
    if attrs.master_drive > 0:
        g = np.float32(attrs.master_drive)
        mix = mix / np.float32(np.abs(mix).max() + 1e-9)
        mix = np.tanh(g * mix) / np.tanh(g)
    # brightness: one-pole low-pass, cut-off 1.2 kHz (dark) ... 10 kHz (bright); lo-fi adds a
    # 2nd-order Butterworth at 3.2 kHz. One cascade (second-order sections) for both.
    fc = min(1200.0 * 2.0 ** (3.0 * attrs.brightness), 0.45 * sr)
    a = math.exp(-2 * math.pi * fc / sr)
    sos = [[1 - a, 0.0, 0.0, 1.0, -a, 0.0]]
    if attrs.lofi:
        sos = np.vstack([sos, signal.butter(2, min(3200.0, 0.45 * sr) / (sr / 2), output="sos")])
    if attrs.echo > 0:
        # feedback delay of a dotted eighth: y[k] = x[k] + g y[k - D], one delay block at a time
        D = max(1, int(round(0.75 * 60.0 / attrs.tempo_bpm * sr)))
        y = np.concatenate([mix, np.zeros((-mix.size) % D, dtype=np.float32)]).reshape(-1, D)
        g = np.float32(attrs.echo)
        for r in range(1, y.shape[0]):
            y[r] += g * y[r - 1]
        mix = np.float32(0.7) * mix + np.float32(0.5) * (y.reshape(-1)[:n] - mix)
    mix = signal.sosfilt(np.asarray(sos, dtype=np.float64), mix).astype(np.float32)
    if attrs.lofi:
        # hiss: the shared noise table from a random offset (a 1.5 s loop is inaudible as such)
        reps = -(-n // _NOISE.size) + 1
        off = int(rng.integers(_NOISE.size))
        hiss = np.tile(_NOISE, reps)[off:off + n] * np.float32(0.02 * _rms(mix))
        crackle = np.zeros(n, dtype=np.float32)
        pos = rng.integers(0, n, max(1, int(duration_s * 6)))
        crackle[pos] = rng.uniform(-1, 1, pos.size).astype(np.float32) * np.float32(0.4 * np.abs(mix).max())
        mix = mix + hiss + crackle
    return mix


def _master(attrs: TrackAttributes, mix: np.ndarray, overdub: np.ndarray | None, n: int, sr: int) -> np.ndarray:
    """Dynamics: the movement envelope, then the target loudness, never clipping; the events
    overdubbed; short fades at both ends."""
    n_env = 64
    if attrs.dynamics_change == "crescendo":
        env_db = np.linspace(-15.0, 0.0, n_env)
    elif attrs.dynamics_change == "decrescendo":
        env_db = np.linspace(0.0, -15.0, n_env)
    else:
        env_db = np.zeros(n_env)
    if attrs.dynamics_change != "flat":
        # gain per 256-sample block (0.006 dB steps: inaudible), much cheaper than per sample
        blocks = -(-n // 256)
        env = 10 ** (np.interp(np.arange(blocks), np.linspace(0, blocks - 1, n_env), env_db) / 20)
        env = np.repeat(env.astype(np.float32), 256)[:n]
        mix = mix * env
        if overdub is not None:
            overdub *= env
        ref = 10 ** (-7.5 / 20)        # the target loudness is the loudness in the middle
    else:
        ref = 1.0
    gain = 10 ** (attrs.loudness_db / 20) * ref / _rms(mix)
    peak = float(np.abs(mix).max()) + 1e-9
    gain = min(gain, 0.98 / peak)
    out = (mix * np.float32(gain)).astype(np.float32)
    if overdub is not None:
        _overdub(out, overdub * np.float32(gain), attrs.events)
    np.clip(out, -0.98, 0.98, out=out)          # only float rounding can reach past 0.98 here
    fade = min(n // 4, int(0.01 * sr))
    out[:fade] *= np.linspace(0, 1, fade, dtype=np.float32)
    fade = min(n // 4, int(0.05 * sr))
    out[n - fade:] *= np.linspace(1, 0, fade, dtype=np.float32)
    return out


def render_catalog_track(attrs: TrackAttributes, catalog_seed: int, sr: int = 22050,
                         duration_s: float = 30.0) -> np.ndarray:
    """Render track ``attrs.index`` of the catalog with seed ``catalog_seed``.

    The audio seed is :func:`track_seed` ``(catalog_seed, attrs.index)``, so the result does not
    depend on which worker renders it, or when.

    Returns
    -------
    numpy.ndarray
        float32 (round(duration_s * sr),) mono audio.

    Notebook: 00_overview.ipynb
    """
    return generate_track(attrs, sr=sr, duration_s=duration_s, seed=track_seed(catalog_seed, attrs.index))
