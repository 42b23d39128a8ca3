"""The synthetic catalog: latent musical attributes -> tags (with annotator noise) -> audio.

A deterministic, dependency-free stand-in for a professionally annotated catalog.
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
import math
from types import SimpleNamespace
from typing import Sequence

import numpy as np
import pandas as pd

from mrlib.checks import check_int, rule
from mrlib.synth_render import generate_track, render_catalog_track
from mrlib.synth_styles import (  # noqa: F401 (the public names stay importable from mrlib.synth)
    _STREAM_ARTISTS, _STREAM_ASSIGN, _STREAM_EVENTS, _STREAM_TAGS, _STREAM_TRACKS, _TAG_INDEX,
    CATEGORIES, EVENT_PROB, EVENT_SPAN, EVENT_TAGS, EVENT_VOCABULARY, GENERATOR_VERSION, GENRE_MOODS,
    GENRE_POPULARITY, GENRES, INSTRUMENTS, KITS, LYRICS, LYRICS_MOODS, MODES, MOODS,
    TAGS, VOCABULARY, SyntheticCatalog, TrackAttributes, _draw, _mix, track_seed, vocabulary)

__all__ = [
    "GENERATOR_VERSION", "CATEGORIES", "VOCABULARY", "GENRES", "MOODS", "INSTRUMENTS",
    "EVENT_VOCABULARY", "EVENT_TAGS", "EVENT_PROB", "EVENT_SPAN", "TrackAttributes",
    "SyntheticCatalog", "vocabulary", "track_seed", "sample_catalog", "attributes_frame",
    "relevance", "generate_track", "render_catalog_track"
]
#: Annotator noise: the probability that a relevant tag is missed (likelihood 0), and the
#: per-tag probability of a false positive (likelihood in [0.2, 0.6]).
_P_MISS, _P_FALSE = 0.08, 0.015


def _sample_artist(rng: np.random.Generator) -> SimpleNamespace:
    """An artist's personal style: genres, favourite instruments, key, tempo, brightness,
    moods, lyrics themes and production habits."""
    genre = _draw(rng, GENRE_POPULARITY)
    genre2 = _draw(rng, GENRE_POPULARITY, without=genre) if rng.random() < 0.5 else genre
    style = GENRES[genre]
    moods = rng.dirichlet(np.full(len(MOODS), 1.0))
    lyr = rng.dirichlet(np.full(len(LYRICS), 0.6))
    return SimpleNamespace(
        genre=genre, genre2=genre2,
        melody=_draw(rng, style.melody), chords=_draw(rng, style.chords),
        bass=_draw(rng, style.bass_instr), kit=_draw(rng, style.kit),
        tonic=int(rng.integers(12)),
        tempo_factor=float(np.exp(rng.normal(0.0, 0.06))),
        brightness=float(rng.normal(0.0, 0.1)),
        mood_bias={m: 0.4 + 2.0 * float(x) for m, x in zip(MOODS, moods)},
        lyrics_bias={t: 0.2 + 3.0 * float(x) for t, x in zip(LYRICS, lyr)},
        echo_prob=float(rng.choice([0.02, 0.1, 0.6], p=[0.5, 0.3, 0.2])),
        lofi_prob=float(rng.choice([0.01, 0.5], p=[0.85, 0.15])),
        loudness_offset=float(rng.normal(0.0, 1.5)),
    )


def _sample_track(index: int, artist_id: int, artist: SimpleNamespace,
                  rng: np.random.Generator) -> TrackAttributes:
    # The draws, in this order: genre, mood and key, instruments and production, movement, lyrics.
    genre, genre2, g2w = _sample_genre(artist, rng)
    style = GENRES[genre]
    key = _sample_mood_key(artist, genre, rng)
    sound = _sample_sound(artist, genre, genre2, g2w, key["mood"], key["mood2"], rng)
    movement = _sample_movement(genre, key["mood"], sound["kit"], rng)
    # Lyrics: inaudible; drawn from the artist's favourite themes and the mood.
    lyrics: tuple[str, ...] = ()
    if rng.random() >= style.instrumental:
        w = {t: artist.lyrics_bias[t] * LYRICS_MOODS[t].get(key["mood"], 1.0) for t in LYRICS}
        lyrics = (_draw(rng, w),)
        if rng.random() < 0.4:
            lyrics += (_draw(rng, w, without=lyrics[0]),)
    return TrackAttributes(index=index, artist=artist_id, genre=genre, genre2=genre2, genre2_weight=g2w,
                           swing=float(style.swing), lyrics=lyrics, **key, **sound, **movement)


def _sample_genre(artist: SimpleNamespace, rng: np.random.Generator) -> tuple[str, str, float]:
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
        genre2 = (artist.genre2 if artist.genre2 != genre
                  else _draw(rng, GENRE_POPULARITY, without=genre))
        g2w = float(np.round(rng.uniform(0.2, 0.5), 2))
    return genre, genre2, g2w


def _sample_mood_key(artist: SimpleNamespace, genre: str, rng: np.random.Generator) -> dict:
    """Moods (main and secondary), mode, tonic, tempo and meter."""
    style = GENRES[genre]
    mood_prior = {m: GENRE_MOODS[genre].get(m, 0.2) * artist.mood_bias[m] for m in MOODS}
    mood = _draw(rng, mood_prior)
    mood2 = _draw(rng, mood_prior, without=mood) if rng.random() < 0.35 else mood
    ms, ms2 = MOODS[mood], MOODS[mood2]
    minor = rng.random() < min(1.0, ms.minor + style.minor_bias * (ms.minor > 0.0))
    mode = ms.minor_mode if minor else ms.major_mode
    tonic = artist.tonic if rng.random() < 0.6 else int((artist.tonic + rng.choice([2, 5, 7, 10]))
                                                      % 12 if rng.random() < 0.6 else rng.integers(12))
    lo, hi = style.tempo
    mood_tempo = ms.tempo * (ms2.tempo / ms.tempo) ** 0.5   # the secondary mood half-way
    tempo = float(np.clip(rng.uniform(lo, hi) * mood_tempo * artist.tempo_factor, 0.85 * lo, 1.15 * hi))
    meter = int(_draw(rng, style.meters))
    return dict(mood=mood, mood2=mood2, mode=mode, tonic=int(tonic), tempo_bpm=round(tempo, 2), meter=meter)


def _sample_sound(artist: SimpleNamespace, genre: str, genre2: str, g2w: float, mood: str, mood2: str,
                  rng: np.random.Generator) -> dict:
    """Instruments (the artist's favourites most of the time, else the mixed genre prior),
    accompaniment and bass patterns, and the production."""
    style, style2, ms, ms2 = GENRES[genre], GENRES[genre2], MOODS[mood], MOODS[mood2]

    def role(fav: str, prior: dict[str, float], prior2: dict[str, float]) -> str:
        if fav in prior and rng.random() < 0.7:
            return fav
        return _draw(rng, _mix(prior, prior2, g2w) if g2w > 0 else prior)

    melody = role(artist.melody, style.melody, style2.melody)
    chords = role(artist.chords, style.chords, style2.chords)
    bass = role(artist.bass, style.bass_instr, style2.bass_instr)
    kit = "none" if style.drums is None or rng.random() >= style.drum_prob else \
        role(artist.kit, style.kit, style2.kit)
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


def relevance(attrs: TrackAttributes) -> np.ndarray:
    """The noise-free relevance of every tag for one track, from its latent attributes.

    Parameters
    ----------
    attrs : TrackAttributes

    Returns
    -------
    numpy.ndarray
        float32 (m,) in [0, 1], in :func:`vocabulary` order: 1 for the main genre, mood and the
        present movement/lyrics tags, the influence weight for ``genre2``, 0.5 for a secondary
        mood, and Recording relevances from the instruments and the production (the events
        variant's tags are not among them).

    Notebook: 02_similarity.ipynb
    """
    r = np.zeros(len(TAGS), dtype=np.float32)
    # the influence and the secondary mood first: when there is none, the main one overwrites it
    r[_TAG_INDEX[attrs.genre2]] = attrs.genre2_weight
    r[_TAG_INDEX[attrs.mood2]] = 0.5
    r[_TAG_INDEX[attrs.genre]] = 1.0
    r[_TAG_INDEX[attrs.mood]] = 1.0

    # Recording: presence tags weighted by how exposed the role is; family shares.
    # (tag contributions, family) of each role, with its weight
    roles = [(INSTRUMENTS[attrs.melody][1:], 1.0), (INSTRUMENTS[attrs.chords][1:], 1.0)]
    roles += [(INSTRUMENTS[attrs.bass][1:], 0.6)] if attrs.bass != "none" else []
    roles += [(KITS[attrs.kit], 1.0)] if attrs.kit != "none" else []
    for (contrib, _), weight in roles:
        for tag, v in contrib.items():
            r[_TAG_INDEX[tag]] = max(r[_TAG_INDEX[tag]], v * weight)
    fam = np.array([family for (_, family), _ in roles])
    share = {f: float(np.mean(fam == f)) for f in ("acoustic", "electric", "electronic")}
    r[_TAG_INDEX["acoustic"]] = 1.0 if share["acoustic"] == 1.0 else (0.5 if share["acoustic"] >= 0.6 else 0.0)
    r[_TAG_INDEX["electric"]] = min(1.0, 2.0 * share["electric"])
    r[_TAG_INDEX["electronic"]] = min(1.0, 1.6 * share["electronic"])
    r[_TAG_INDEX["saturated"]] = max(r[_TAG_INDEX["saturated"]], min(1.0, attrs.master_drive / 3.0))
    r[_TAG_INDEX["lo_fi"]] = 1.0 if attrs.lofi else 0.0
    r[_TAG_INDEX["echo"]] = min(1.0, attrs.echo / 0.35)

    # the movements "song", "steady" and "flat" have no tag
    movement = {attrs.structure, attrs.tempo_change, attrs.dynamics_change} & _TAG_INDEX.keys()
    for tag in [*movement, *attrs.lyrics] + (["breaks"] if attrs.breaks else []):
        r[_TAG_INDEX[tag]] = 1.0
    return r


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


def _annotate(rel: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Professional-annotator noise on a relevance vector: misses, graded confidence, and a few
    false positives; rounded to 0.01 so the CSV round-trips exactly."""
    m = rel.size
    u_miss, u_false = rng.random(m), rng.random(m)
    conf = rng.uniform(0.7, 1.0, m)
    jitter = rng.normal(0.0, 0.05, m)
    false_level = rng.uniform(0.2, 0.6, m)
    present = rel > 0
    out = np.where(present & (u_miss >= _P_MISS), np.clip(rel * conf + jitter, 0.05, 1.0), 0.0)
    out = np.where(~present & (u_false < _P_FALSE), false_level, out)
    return (np.round(out * 100) / 100).astype(np.float32)


def sample_catalog(n_tracks: int, seed: int = 0, *, events: bool = False) -> SyntheticCatalog:
    """Sample a synthetic catalog's latent attributes and noisy tag likelihoods.

    Artists are drawn first (a main genre and an influence, favourite instruments, key,
    tempo, moods, lyrics themes, production habits); each track then draws its attributes
    from its artist's style, and the annotators observe them with noise: they miss a relevant
    tag with probability 0.08 and tag an irrelevant one (likelihood 0.2 ... 0.6) with
    probability 0.015. There are ``max(3, round(N / 5))`` artists (at most N): about 5 tracks
    per artist, with a long tail (artist shares follow a Dirichlet(1) draw, every artist has a
    track).

    Parameters
    ----------
    n_tracks : int
        Number of tracks N (>= 1).
    seed : int
        Catalog seed; same seed, same attributes and same tag bytes.
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
    check_int("n_tracks", n_tracks, 1)
    check_int("seed", seed, 0)
    rule(lambda v: isinstance(v, (bool, np.bool_)), "a bool", TypeError)("events", events)
    n_artists = min(max(3, int(round(n_tracks / 5))), n_tracks)

    artists = [_sample_artist(np.random.default_rng(track_seed(seed, a, _STREAM_ARTISTS)))
               for a in range(n_artists)]
    # Every artist gets one track, the rest follow Dirichlet shares; then shuffle the order.
    rng = np.random.default_rng(track_seed(seed, 0, _STREAM_ASSIGN))
    shares = rng.dirichlet(np.ones(n_artists))
    extra = rng.choice(n_artists, size=n_tracks - n_artists, p=shares)
    artist_of = rng.permutation(np.concatenate([np.arange(n_artists), extra]))

    attrs = []
    tags = np.zeros((n_tracks, len(TAGS) + (len(EVENT_TAGS) if events else 0)), dtype=np.float32)
    for i, a in enumerate(artist_of.tolist()):
        at = _sample_track(i, a, artists[a], np.random.default_rng(track_seed(seed, i, _STREAM_TRACKS)))
        tags[i, :len(TAGS)] = _annotate(relevance(at), np.random.default_rng(track_seed(seed, i, _STREAM_TAGS)))
        if events:
            rng = np.random.default_rng(track_seed(seed, i, _STREAM_EVENTS))
            at = dataclasses.replace(at, events=_sample_events(rng))
            # relevance 1 for each event: the tag is true of the whole track although it sounds
            # in one window only
            present = {tag for tag, _, _ in at.events}
            tags[i, len(TAGS):] = _annotate(np.float32([t in present for t in EVENT_TAGS]), rng)
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
    events = any(a.events for a in attrs) if events is None else events
    rows = [{**dataclasses.asdict(a), "lyrics": "|".join(a.lyrics),
             "events": "|".join(f"{t}@{s:.4f}-{e:.4f}" for t, s, e in a.events)} for a in attrs]
    columns = [f.name for f in dataclasses.fields(TrackAttributes) if events or f.name != "events"]
    return pd.DataFrame(rows, columns=columns)

