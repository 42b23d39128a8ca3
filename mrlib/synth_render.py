"""Rendering a synthetic track: the events variant's temporally sparse layers, and
:func:`generate_track`, which turns a track's latent attributes into audio.

Notebook: 01_cqt.ipynb
"""
from __future__ import annotations

import math

import numpy as np
from scipy import signal

from mrlib.checks import check_choice, check_int, is_int, rule
from mrlib.synth_sound import (DRUM_PATTERNS, _NOISE, _attack_decay, _chord, _drum_kit, _melody_phrase,
                               _fade, _midi_hz, _NoteCache, _osc, _t, _table_for)
from mrlib.synth_styles import (_STREAM_EVENTS, EVENT_TAGS, GENRES, INSTRUMENTS, KITS, MODES, MOODS,
                                GenreStyle, TrackAttributes, track_seed)

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


def _grid(beat_times: np.ndarray, step: float, t0: float, dur: float) -> np.ndarray:
    """Onsets (s from ``t0``) of a grid of ``step`` beats that fall in ``[t0, t0 + dur)``,
    through the track's tempo curve; ``[0]`` when none does (a window shorter than a step)."""
    t = _to_seconds(np.arange(0.0, beat_times.size - 1, step), 0.0, beat_times) - t0
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
    onsets = _grid(beat_times, 1.0 if attrs.tempo_bpm < 100 else 2.0, t0, m / sr)
    order = np.concatenate([rng.permutation(4) for _ in range(-(-onsets.size // 4))])
    n_strike = int(1.6 * sr)
    t = _t(n_strike, sr)

    def strike(f: float) -> np.ndarray:        # the partials below 0.45 sr
        y = np.zeros(n_strike, dtype=np.float32)
        for ratio, amp, decay in _BELL_PARTIALS:
            if ratio * f < 0.45 * sr:
                partial = np.sin(np.float32(2 * np.pi * ratio * f) * t)
                y += np.float32(amp) * partial * np.exp(-t / np.float32(decay))
        return y * _attack_decay(n_strike, sr, 0.001)

    strikes = [strike(_midi_hz(72 + attrs.tonic + step)) for step in (12, 7, MODES[attrs.mode][2], 0)]
    notes = [(on, strikes[i] * np.float32(rng.uniform(0.75, 1.0))) for on, i in zip(onsets, order)]
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
    cache, notes, k, idx = _NoteCache(sr), [], 0, 5
    while k < grid.size:
        for d in cells[int(rng.integers(len(cells)))]:
            if k >= grid.size:
                break
            idx = int(np.clip(idx + rng.choice([-2, -1, 1, 2]), 0, len(pitches) - 1))
            end = grid[k + d] if k + d < grid.size else m / sr
            if rng.random() >= 0.1:
                y = cache.source("ks_sustain", pitches[idx], int((end - grid[k]) * sr) + 1).copy()
                notes.append((grid[k], _fade(y, 0, min(int(0.015 * sr), y.size))))   # 15 ms release
            k += d
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
    noise = rng.standard_normal((n_blocks, block))      # a block a row
    out = np.empty_like(noise)
    zi = np.zeros(2)
    for j in range(n_blocks):
        a0 = 1 + alpha[j]
        b = np.array([alpha[j], 0.0, -alpha[j]]) / a0
        a = np.array([1.0, -2 * np.cos(w0[j]) / a0, (1 - alpha[j]) / a0])
        out[j], zi = signal.lfilter(b, a, noise[j], zi=zi)
    return (out.ravel()[:m] * 10 ** (np.linspace(-24.0, 0.0, m) / 20)).astype(np.float32)     # the swell


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
                   seed: np.random.SeedSequence, band_rms: float) -> np.ndarray:
    """The event layers of a track, float32 (n,), zero outside the windows: each event is
    rendered in its window only, at an RMS of ``_EVENT_LEVEL * band_rms`` over the window,
    faded in and out inside it (5 and 30 ms) so that it neither clicks nor rings past its end."""
    out = np.zeros(n, dtype=np.float32)
    for tag, start, end in attrs.events:
        s0, s1 = int(round(start * n)), int(round(end * n))
        m = s1 - s0
        if m < int(0.05 * sr):
            continue
        # the event's audio stream: a child of the track's audio seed that no other layer and no
        # other event draws from, so adding or removing an event changes only its own window
        key = tuple(seed.spawn_key) + (_STREAM_EVENTS, EVENT_TAGS.index(tag))
        rng = np.random.default_rng(np.random.SeedSequence(seed.entropy, spawn_key=key))
        y = _EVENT_RENDERERS[tag](attrs, m, sr, s0 / sr, beat_times, rng)
        _fade(y, int(0.005 * sr), int(0.03 * sr))
        level = _EVENT_LEVEL * band_rms / (float(np.sqrt(np.mean(y.astype(np.float64) ** 2))) + 1e-9)
        out[s0:s1] += np.float32(level) * y
    return out


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
    if not isinstance(attrs, TrackAttributes):
        raise TypeError(f"attrs must be a TrackAttributes, got {type(attrs).__name__}")
    _check_sr_duration(sr, duration_s)
    if is_int(seed):     # as a SeedSequence, the same stream; the events spawn theirs from it
        seed = np.random.SeedSequence(check_int("seed", seed, 0))
    elif not isinstance(seed, np.random.SeedSequence):
        raise TypeError(f"seed must be an int or a numpy SeedSequence, got {type(seed).__name__}")
    for field, allowed in (("genre", GENRES), ("mood", MOODS), ("mode", MODES), ("melody", INSTRUMENTS),
                           ("chords", INSTRUMENTS), ("bass", [*INSTRUMENTS, "none"]), ("kit", [*KITS, "none"]),
                           ("comp", sorted({c for g in GENRES.values() for c in g.comp})),
                           ("bass_pattern", sorted({b for g in GENRES.values() for b in g.bass}))):
        check_choice(f"attrs.{field}", getattr(attrs, field), allowed)
    for tag, start, end in attrs.events:
        check_choice("an event's tag (attrs.events)", tag, EVENT_TAGS)
        if not 0.0 <= start < end <= 1.0:
            raise ValueError(f"event {tag!r} has the window ({start}, {end}), not 0 <= start < end <= 1")
    rng = np.random.default_rng(seed)
    style = GENRES[attrs.genre]
    n = int(round(duration_s * sr))
    beat_times, n_bars = _timeline(attrs, duration_s)
    form, sec_len, chords = _harmony(attrs, style, n_bars, rng)
    mel = _melody(attrs, style, form, sec_len, chords, rng)
    comp, bass = _accompaniment(attrs, style, chords, n_bars, rng)
    stems = _render_stems(attrs, {"melody": mel, "chords": comp, "bass": bass}, beat_times, n, sr, rng)
    stems["drums"] = _render_drums(attrs, _drum_hits(attrs, style, n_bars, sec_len), beat_times, n, sr, rng)
    mix = _produce(attrs, stems, n, sr, duration_s, rng)
    # Events are overdubs on the produced band: the band alone sets the loudness and the peak
    # gain below, so an event leaves every sample outside its window exactly as it was.
    overdub = _render_events(attrs, n, sr, beat_times, seed, _rms(mix))      # zeros without events
    return _master(attrs, mix, overdub, n, sr)


def _check_sr_duration(sr, duration_s) -> None:
    """The checks of ``sr`` and ``duration_s`` of :func:`generate_track`, which a catalog build
    runs before it writes anything."""
    rule(lambda v: v <= 96000, "<= 96000 Hz")("sr", check_int("sr", sr, 8000))
    rule(lambda v: isinstance(v, (int, float)) and 0.5 <= v <= 600,
         "a number in [0.5, 600] seconds")("duration_s", duration_s)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.dot(x, x) / max(1, x.size))) + 1e-9


def _timeline(attrs: TrackAttributes, duration_s: float) -> tuple[np.ndarray, int]:
    """Seconds of each beat index (through the tempo curve), and the number of bars."""
    n_beats = int(duration_s * attrs.tempo_bpm * 1.35 / 60.0) + 2 * attrs.meter + 2
    frac = np.arange(n_beats + 1) / max(1.0, duration_s * attrs.tempo_bpm / 60.0)
    ramp = {"acceleration": 1.0 + 0.25 * np.clip(frac, 0, 1),
            "slowing_down": 1.0 - 0.2 * np.clip(frac, 0, 1)}.get(attrs.tempo_change, np.ones_like(frac))
    beat_times = np.concatenate([[0.0], np.cumsum(60.0 / (attrs.tempo_bpm * ramp[:-1]))])
    return beat_times, int(np.searchsorted(beat_times, duration_s) // attrs.meter) + 1


def _harmony(attrs: TrackAttributes, style: GenreStyle, n_bars: int,
             rng: np.random.Generator) -> tuple[list[int], int, list[tuple[int, tuple[int, ...], int]]]:
    """Harmony and form: sections labelled by the structure (AABA, a looped A, or a new
    section every phrase), each label with its progression, one chord per ``chord_bars``.
    Returns the form (a label per section), the bars per section, and the chord (root,
    intervals, scale degree) of every bar of the sections and of the bar after them."""
    prog_ids = rng.permutation(len(style.progressions))
    sec_len = len(style.progressions[0]) * style.chord_bars
    n_sections = -(-n_bars // sec_len)
    form = {"repetitive": [0] * n_sections, "evolving": list(range(n_sections))}.get(
        attrs.structure, [[0, 0, 1, 0][s % 4] for s in range(n_sections)])
    progs = [style.progressions[prog_ids[lab % len(prog_ids)]] for lab in form]
    degrees = [p[b // style.chord_bars] for p in progs for b in range(sec_len)] + [progs[-1][0]]
    return form, sec_len, [(*_chord(style, attrs.mode, d), d) for d in degrees]


def _melody(attrs: TrackAttributes, style: GenreStyle, form: list[int], sec_len: int, chords: list,
            rng: np.random.Generator) -> list:
    """The melody: one per section label, two phrases per section (question and answer)."""
    mel = []
    meter, scale, reg = attrs.meter, MODES[attrs.mode], attrs.register
    tonic_midi = 60 + attrs.tonic if attrs.tonic < 7 else 48 + attrs.tonic      # C4 ... F#4 / G3 ... B3
    sec_beats = sec_len * meter
    melodies: dict[int, list[tuple[float, float, int]]] = {}
    for s, lab in enumerate(form):
        if lab not in melodies:
            def chord_at(beat, s0=s):
                d = chords[s0 * sec_len + int(beat // meter)][2]
                return [d, d + 2, d + 4] + ([d + 6] if style.chord_kind in ("seventh", "dom7") else [])
            half = sec_beats // 2 if sec_len >= 2 else sec_beats
            p1 = _melody_phrase(rng, half, chord_at, attrs.density, 4)
            if attrs.structure == "repetitive":
                p2 = p1                                          # the loop: the phrase again
            else:   # answer phrase; often it restates the opening of the question
                rest = sec_beats - half
                p2 = _melody_phrase(rng, rest, lambda b: chord_at(b + half), attrs.density,
                                    p1[-1][2] if p1 else 4)
                if p1 and rng.random() < 0.6:
                    p2 = [x for x in p1 if x[0] < rest / 2] + [x for x in p2 if x[0] >= rest / 2]
            melodies[lab] = p1 + sorted((b + half, d, g) for b, d, g in p2)
        # a diatonic shift (the register) keeps the melody in key
        mel += [(s * sec_beats + b, d * 0.92, tonic_midi + 12 * ((g + reg) // 7) + scale[(g + reg) % 7],
                 0.8 + 0.2 * ((b % meter) == 0)) for b, d, g in melodies[lab]]
    return mel


def _accompaniment(attrs: TrackAttributes, style: GenreStyle, chords: list, n_bars: int,
                   rng: np.random.Generator) -> tuple[list, list]:
    """Chords in the accompaniment pattern and the bass line, bar by bar."""
    comp, bass = [], []
    for bar in range(n_bars):
        root, iv, _ = chords[bar]
        voiced = sorted({53 + (attrs.tonic + root + x - 53) % 12 for x in iv})   # close, F3 ... E4
        comp += _comp_bar(attrs, style, bar * attrs.meter, bar, voiced, rng)
        if attrs.bass != "none":
            bass += _bass_bar(attrs, style, bar * attrs.meter, bar, root, iv, chords[bar + 1][0], rng)
    return comp, bass


def _comp_bar(attrs: TrackAttributes, style: GenreStyle, b0: int, bar: int, voiced: list[int],
              rng: np.random.Generator) -> list:
    """The notes of one bar (starting at beat ``b0``) of the accompaniment ``attrs.comp``."""
    meter, cstyle, vel = attrs.meter, attrs.comp, 0.55
    if cstyle in ("block", "pad"):
        chord_len = meter * style.chord_bars * 0.98
        return [(b0, chord_len, p, vel) for p in voiced] if bar % style.chord_bars == 0 else []
    if cstyle in ("strum", "eighths", "shuffle"):
        step = 1.0 if cstyle == "strum" else 0.5
        # strum: 12 ms between strings
        return [(b0 + k * step + j * 0.012 * attrs.tempo_bpm / 60.0, step * 0.9, p,
                 vel * (1.0 if k % 2 == 0 else 0.75))
                for k in range(int(meter / step)) for j, p in enumerate(voiced)]
    if cstyle in ("arp", "alberti"):
        order, dur = (voiced + [voiced[1] + 12] if len(voiced) > 2 else voiced * 2), 0.9
        if cstyle == "alberti":
            order, dur = [voiced[i] - 12 for i in (0, -1, 1, -1)], 0.5
        return [(b0 + k * 0.5, dur, order[k % len(order)], vel) for k in range(meter * 2)]
    if cstyle in ("skank", "stabs"):
        pos = [k + 0.5 for k in range(meter)] if cstyle == "skank" else \
            (0.0, 0.75, 1.5, 2.5, 3.25)[: 5 if meter == 4 else 3]
        return [(b0 + x, 0.2, p, vel) for x in pos for p in voiced]
    notes = []     # comping
    for k in range(meter):
        if rng.random() < 0.55:
            pos = k + (0.0 if rng.random() < 0.5 else 0.5)
            notes += [(b0 + pos, 0.4 + 0.5 * rng.random(), p, vel * 0.8) for p in voiced]
    return notes


def _bass_bar(attrs: TrackAttributes, style: GenreStyle, b0: int, bar: int, root: int,
              iv: tuple[int, ...], nroot: int, rng: np.random.Generator) -> list:
    """The notes of one bar of the bass line (root in E1 ... D#2), in ``attrs.bass_pattern``."""
    meter, bp = attrs.meter, attrs.bass_pattern
    rb = 28 + (attrs.tonic + root - 4) % 12
    fifth = rb + 7
    if bp == "walking":
        nb = 28 + (attrs.tonic + nroot - 4) % 12
        line = [rb, rb + iv[1] if len(iv) > 1 else rb + 4, fifth, nb + (1 if rng.random() < 0.5 else -1)]
        return [(b0 + k, 0.9, line[k % 4], 0.85) for k in range(meter)]
    if bp == "sustained":
        return [(b0, meter * style.chord_bars * 0.98, rb, 0.9)] if bar % style.chord_bars == 0 else []
    if bp == "root":
        return [(b0, meter * 0.95, rb, 0.9)]
    if bp == "root_fifth":
        return [(b0, meter / 2 * 0.9, rb, 0.9), (b0 + 2, 1.8 if meter == 4 else 0.9, fifth, 0.8)]
    if bp == "eighths":
        return [(b0 + k * 0.5, 0.45, rb, 0.8 + 0.1 * (k % 2 == 0)) for k in range(meter * 2)]
    if bp == "octave":
        return [(b0 + k * 0.5, 0.4, rb + 12 * (k % 2), 0.85) for k in range(meter * 2)]
    if bp == "syncopated":
        return [(b0 + pos, 0.45, p, 0.9) for pos, p in
                ((0.0, rb), (1.5, rb), (2.5, fifth), (3.0, rb))[: 4 if meter == 4 else 2]]
    # reggae (generate_track refuses any other pattern)
    return [(b0 + pos, d, p, 0.9) for pos, p, d in
            ((0.0, rb, 1.0), (1.5, rb, 0.4), (2.0, fifth, 0.9), (3.5, rb + 12, 0.4))]


def _drum_hits(attrs: TrackAttributes, style: GenreStyle, n_bars: int,
               sec_len: int) -> list[tuple[float, str, float]]:
    """Drum hits (beat position, voice, velocity) of the genre's pattern, with breaks, a
    build-up or fade-out, and a 16th-note fill at the end of every section."""
    hits: list[tuple[float, str, float]] = []
    if attrs.kit == "none" or style.drums is None:
        return hits
    meter, edge = attrs.meter, min(sec_len, n_bars // 3)
    pat = DRUM_PATTERNS[style.drums].get(meter) or DRUM_PATTERNS[style.drums][4]
    steps, fill = 4 * meter, "s" if "s" in pat else "c"
    for bar in range(n_bars):
        # a break, or before the build-up's end (the drums enter after the first section), or
        # after the fade-out's start
        if ((attrs.breaks and bar % 8 in (6, 7)) or (attrs.dynamics_change == "crescendo" and bar < edge)
                or (attrs.dynamics_change == "decrescendo" and bar >= n_bars - edge)):
            continue
        section_end = (bar % sec_len == sec_len - 1) and attrs.structure != "repetitive"
        # on a section's end the fill replaces the last beat's backbeat
        hits += [(bar * meter + k / 4.0, voice, 1.0 if ch == "x" else 0.5)
                 for voice, row in pat.items() for k, ch in enumerate(row[:steps])
                 if ch != "." and not (section_end and k >= steps - 4 and voice in "sc")]
        if section_end and fill in pat:       # a 16th-note fill, rising
            hits += [(bar * meter + meter - 1 + k / 4.0, fill, 0.45 + 0.15 * k) for k in range(4)]
    return hits


def _to_seconds(pos, swing: float, beat_times: np.ndarray) -> np.ndarray:
    """Seconds of beat positions: swing first (it delays the off-beat subdivisions, beat
    fraction 0.5 -> 0.5 + swing/6, a triplet at 1), then the tempo curve."""
    pos = np.asarray(pos, dtype=np.float64)
    if swing > 0:
        beat = np.floor(pos)
        f = pos - beat
        mid = 0.5 + swing / 6.0
        pos = beat + np.where(f < 0.5, f * (mid / 0.5), mid + (f - 0.5) * ((1 - mid) / 0.5))
    return np.interp(pos, np.arange(beat_times.size), beat_times)


def _render_stems(attrs: TrackAttributes, parts: dict[str, list], beat_times: np.ndarray, n: int,
                  sr: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Audio (n,) of the melody, the chords and (if any) the bass, from the note cache; the
    notes of each role are (onset beat, duration beats, MIDI pitch, velocity)."""
    cache = _NoteCache(sr)
    stems = {}
    for name, notes in parts.items():       # the role names are those of their instruments
        if getattr(attrs, name) == "none":
            continue
        engine = INSTRUMENTS[getattr(attrs, name)][0]
        on, dur, midi, vel = np.array(notes, dtype=np.float64).reshape(-1, 4).T
        t0, t1 = _to_seconds([on, on + dur], attrs.swing, beat_times)
        # a human player: +-6 ms
        jitter = rng.normal(0.0, 0.006, on.size) if name == "melody" and attrs.kit == "live" else 0.0
        notes = ((t, np.float32(v) * cache.get(engine, int(p), float(d)))
                 for t, d, p, v in zip(t0 + jitter, t1 - t0, midi, vel))
        stems[name] = _place(notes, n, sr)
    return stems


def _render_drums(attrs: TrackAttributes, hits, beat_times: np.ndarray, n: int, sr: int,
                  rng: np.random.Generator) -> np.ndarray:
    """Audio (n,) of the drum hits (a live kit is humanised: timing, velocity, sample variant)."""
    if not hits:
        return np.zeros(n, dtype=np.float32)
    drum_on, drum_voice, drum_vel = zip(*hits)
    kit = _drum_kit(attrs.kit, sr, rng, attrs.tonic)
    times = _to_seconds(np.array(drum_on), attrs.swing, beat_times)
    if attrs.kit == "live":
        times = times + rng.normal(0.0, 0.004, times.size)
        vel = np.array(drum_vel) * rng.uniform(0.8, 1.0, times.size)
        var = rng.integers(0, len(kit["k"]), times.size)
    else:
        vel, var = np.array(drum_vel), np.zeros(times.size, dtype=int)
    samples = (np.float32(v) * kit[vc][k] for vc, v, k in zip(drum_voice, vel, var))
    return _place(zip(times, samples), n, sr)


def _produce(attrs: TrackAttributes, stems: dict[str, np.ndarray], n: int, sr: int, duration_s: float,
             rng: np.random.Generator) -> np.ndarray:
    """Production: guitar drive, the balance of the stems, master drive, brightness filter,
    echo and lo-fi (band-limit, hiss, crackle)."""
    for name in ("melody", "chords"):
        if attrs.guitar_drive > 0 and getattr(attrs, name) == "dist_guitar":
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
        # feedback delay of a dotted eighth: y[k] = x[k] + g y[k - D]; with the signal in rows
        # of D samples that is the one-pole filter y[r] = x[r] + g y[r - 1] down the rows
        D = max(1, int(round(0.75 * 60.0 / attrs.tempo_bpm * sr)))
        y = np.concatenate([mix, np.zeros((-mix.size) % D, dtype=np.float32)]).reshape(-1, D)
        y = signal.lfilter(np.float32([1]), np.float32([1, -attrs.echo]), y, axis=0)
        mix = np.float32(0.7) * mix + np.float32(0.5) * (y.reshape(-1)[:n] - mix)
    mix = signal.sosfilt(np.asarray(sos, dtype=np.float64), mix).astype(np.float32)
    if attrs.lofi:
        # hiss: the shared noise table from a random offset (a 1.5 s loop is inaudible as such)
        off = int(rng.integers(_NOISE.size))
        hiss = _NOISE.take(np.arange(off, off + n), mode="wrap") * np.float32(0.02 * _rms(mix))
        crackle = np.zeros(n, dtype=np.float32)
        pos = rng.integers(0, n, max(1, int(duration_s * 6)))
        crackle[pos] = rng.uniform(-1, 1, pos.size).astype(np.float32) * np.float32(0.4 * np.abs(mix).max())
        mix = mix + hiss + crackle
    return mix


#: Loudness ramp (dB at the start, dB at the end) of each dynamics change; flat has none.
_DYNAMICS_DB = {"crescendo": (-15.0, 0.0), "decrescendo": (0.0, -15.0)}


def _master(attrs: TrackAttributes, mix: np.ndarray, overdub: np.ndarray, n: int, sr: int) -> np.ndarray:
    """Dynamics: the movement envelope, then the target loudness, never clipping; the events
    overdubbed; short fades at both ends."""
    ref = 1.0
    if attrs.dynamics_change != "flat":
        # gain per 256-sample block (0.006 dB steps: inaudible), much cheaper than per sample,
        # interpolated between 64 breakpoints of the dB ramp
        db0, db1 = _DYNAMICS_DB.get(attrs.dynamics_change, (0.0, 0.0))
        blocks = -(-n // 256)
        env_db = np.interp(np.arange(blocks), np.linspace(0, blocks - 1, 64), np.linspace(db0, db1, 64))
        env = np.repeat((10 ** (env_db / 20)).astype(np.float32), 256)[:n]
        mix = mix * env
        overdub *= env
        ref = 10 ** (-7.5 / 20)        # the target loudness is the loudness in the middle
    gain = 10 ** (attrs.loudness_db / 20) * ref / _rms(mix)
    gain = min(gain, 0.98 / (float(np.abs(mix).max()) + 1e-9))
    out = (mix * np.float32(gain)).astype(np.float32)
    # the event layer, in the windows only: outside, not even the sign of a zero changes; a
    # window whose sum would pass 0.98 goes through a soft limiter (0.98 tanh(x / 0.98))
    windows = [slice(int(round(start * n)), int(round(end * n))) for _, start, end in attrs.events]
    inside = np.zeros(n, dtype=bool)
    for w in windows:
        inside[w] = True
    out[inside] += (overdub * np.float32(gain))[inside]
    for w in windows:
        seg = out[w]
        if seg.size and np.abs(seg).max() > 0.98:
            seg[:] = np.float32(0.98) * np.tanh(seg / np.float32(0.98))
    np.clip(out, -0.98, 0.98, out=out)          # only float rounding can reach past 0.98 here
    return _fade(out, min(n // 4, int(0.01 * sr)), min(n // 4, int(0.05 * sr)))


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
