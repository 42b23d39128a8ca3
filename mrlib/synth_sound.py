"""The synthetic catalog's instruments and composition: wavetables, envelopes, the note
engines (wavetable, FM, Karplus-Strong), drum kits, chords and melody phrases.

Notebook: 01_cqt.ipynb
"""
from __future__ import annotations

import functools
import math

import numpy as np
from scipy import signal

from mrlib.synth_styles import MODES, GenreStyle

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
    idx = (np.arange(n, dtype=np.int64) * inc) >> 16
    if vib_depth > 0:
        t = _t(n, sr)
        amp = np.float32(freq * vib_depth * _TABLE_LEN / (2 * np.pi * vib_rate))
        idx = idx + (amp * (np.float32(1.0) - np.cos(np.float32(2 * np.pi * vib_rate) * t))).astype(np.int64)
    return table[idx & (_TABLE_LEN - 1)]


def _t(n: int, sr: int) -> np.ndarray:
    """Seconds of samples 0 ... n-1 (float32)."""
    return np.arange(n, dtype=np.float32) / np.float32(sr)


def _attack_decay(n: int, sr: int, attack: float, decay: float = 1.0, sustain: float = 1.0) -> np.ndarray:
    """Linear attack then exponential decay towards ``sustain`` (the release is applied later)."""
    t = _t(n, sr)
    env = np.minimum(t / np.float32(max(attack, 1e-4)), np.float32(1.0))
    if sustain < 1.0:
        env = env * (np.float32(sustain) + np.float32(1.0 - sustain) * np.exp(-t / np.float32(decay)))
    return env


def _fade(y: np.ndarray, n_in: int, n_out: int) -> np.ndarray:
    """``y`` with linear fades over its first ``n_in`` and its last ``n_out`` samples, in place."""
    y[:n_in] *= np.linspace(0, 1, n_in, dtype=np.float32)
    y[y.size - n_out:] *= np.linspace(1, 0, n_out, dtype=np.float32)
    return y


@functools.lru_cache(maxsize=256)
def _release_curve(n: int, release: float, sr: int) -> np.ndarray:
    """Exponential release (-35 dB after ``release`` s) ending exactly at zero, so a note cut at
    its template length never clicks."""
    env = np.exp(-_t(n, sr) / np.float32(release / 4.0))
    return _fade(env, 0, min(n, max(8, int(0.004 * sr))))


# A fixed noise source shared by all plucks: a pluck is a pure function of its pitch/length.
_NOISE = np.random.default_rng(20200504).standard_normal(1 << 15).astype(np.float32)


def _karplus_strong(freq: float, n: int, sr: int, t60: float, bright: float) -> np.ndarray:
    """Karplus-Strong plucked string, vectorised one delay line (period) at a time.

    ``y[k] = x[k] + g/2 (y[k-N] + y[k-N-1])``: the block of N samples starting at k only reads
    the previous N+1 samples, so each period is one numpy step. The integer delay N detunes
    the string (f = sr / (N + 1/2)); reading the output at the ratio f_target / f fixes it.
    """
    N = max(2, int(sr / freq - 0.5))
    ratio = freq / (sr / (N + 0.5))               # <= 1: read slower to lower the pitch
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


#: The engines that are one wavetable oscillator: engine -> (timbre, most harmonics, vibrato rate
#: in Hz and depth, :func:`_attack_decay` arguments after ``sr``, gain).
_WAVETABLE_ENGINES = {"strings": ("strings", 24, 5.5, 0.004, (0.12,), 1.0),
                      "flute": ("flute", 4, 5.0, 0.005, (0.05,), 1.0),
                      "saw_lead": ("saw", 32, 5.5, 0.003, (0.01, 0.3, 0.7), 0.6)}


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
    if engine in _WAVETABLE_ENGINES:
        timbre, max_harmonics, vib_rate, vib_depth, envelope, gain = _WAVETABLE_ENGINES[engine]
        y = _osc(_table_for(timbre, f, sr, max_harmonics), f, n, sr, vib_rate, vib_depth)
        return y * _attack_decay(n, sr, *envelope) * np.float32(gain)     # x 1.0 is exact
    if engine == "organ":
        y = _osc(_table_for("organ", f, sr, 8), f, n, sr)
        trem = np.float32(1.0) + np.float32(0.15) * np.sin(np.float32(2 * np.pi * 6.0) * t)  # Leslie-ish
        return y * trem * _attack_decay(n, sr, 0.008) * np.float32(0.7)
    if engine == "pad":
        tab = _table_for("pad", f * 1.01, sr, 16)
        y = _osc(tab, f * 1.0035, n, sr) + _osc(tab, f / 1.0035, n, sr)   # ±6 cents chorus
        return y * _attack_decay(n, sr, 0.35) * np.float32(0.5)
    if engine == "fm_bell":
        y = _fm(f, n, sr, 3.5, 2.5, 0.4, 0.2)
        return y * np.exp(-t / np.float32(1.0)) * _attack_decay(n, sr, 0.002) * np.float32(0.7)
    # fm_bass (the callers pass the engines of INSTRUMENTS only)
    y = _fm(f, n, sr, 1.0, 2.5, 0.12, 0.6) * np.float32(0.6) \
        + np.sin(np.float32(2 * np.pi * f) * t) * np.float32(0.6)
    return y * _attack_decay(n, sr, 0.004, 0.4, 0.75)


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
    live = kit == "live"
    length = {"k": 0.4 if live else 0.6, "s": 0.25, "c": 0.25, "o": 0.35, "r": 0.9, "m": 0.08, "h": 0.08}

    noise = functools.partial(rng.standard_normal, dtype=np.float32)

    def voice(v):     # one variant of voice v
        t = _t(int(length[v] * sr), sr)
        if v == "k":
            f1, dec = (95.0, 0.18) if live else (75.0, 0.4)
            phase = 2 * np.pi * (kick_f * t + f1 * 0.03 * (1 - np.exp(-t / 0.03)))
            y = np.sin(phase) * np.exp(-t / dec)
            y[: int(0.004 * sr)] += noise(int(0.004 * sr)) * 0.3
            return y
        if v == "s":
            return np.diff(noise(t.size + 1)) * 0.35 * np.exp(-t / 0.07) + np.sin(2 * np.pi * snare_f * t) \
                * 0.6 * np.exp(-t / 0.05)
        if v == "c":
            env = np.exp(-t / 0.09) * 0.6
            for d in (0.0, 0.011, 0.022):
                env += np.where(t >= d, np.exp(-np.maximum(t - d, 0) / 0.006), 0.0)
            return np.diff(noise(t.size + 1)) * env * 0.3
        if v in "ho":
            if live:
                src = np.diff(np.diff(noise(t.size + 2)))
            else:   # classic metallic hat: six detuned square waves
                src = sum(np.sign(np.sin(2 * np.pi * fr * t)) for fr in (205, 304, 370, 523, 540, 800))
                src = np.diff(np.diff(np.concatenate([[0, 0], src]))).astype(np.float32)
            return src * np.exp(-t / (0.025 if v == "h" else 0.15)) * 0.12
        if v == "r":
            return np.sin(2 * np.pi * 520 * t + 3 * np.sin(2 * np.pi * 1410 * t)) * 0.25 * np.exp(-t / 0.5) \
                + np.diff(noise(t.size + 1)) * 0.05 * np.exp(-t / 0.3)
        # rim
        return (np.sin(2 * np.pi * 900 * t) * 0.5 + np.diff(noise(t.size + 1)) * 0.3) * np.exp(-t / 0.02)

    return {v: [np.asarray(voice(v), dtype=np.float32) for _ in range(3 if live else 1)] for v in "kscormh"}


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
    return root, tuple((sc[(degree + 2 * j) % 7] - root) % 12 for j in range(n))   # stacked thirds


def _melody_phrase(rng: np.random.Generator, n_beats: int, chord_at, density: float, start_deg: int) -> list[tuple[float, float, int]]:
    """A phrase of (onset beat, duration beats, scale degree): rhythm cells by density, a
    random walk on the scale that lands on chord tones on the beat, ends long on a chord tone."""
    level = 0 if density < 0.9 else (1 if density < 1.6 else 2)
    cells = [([4], [8], [6, 2], [4], [2, 2]),            # sparse (steps of a 16th)
             ([2, 2], [4], [3, 1], [1, 1, 2], [2, 1, 1]),
             ([1, 1, 1, 1], [2, 1, 1], [1, 1, 2], [2, 2])][level]
    p_rest = 0.25 if level == 0 else 0.12
    notes, step, deg, total = [], 0, start_deg, n_beats * 4
    while step < total:
        for d in cells[int(rng.integers(len(cells)))]:
            if step >= total:
                break
            d = min(d, total - step)
            beat = step / 4.0
            if step % 4 == 0 and rng.random() < 0.75:
                # nearest chord tone (in scale degrees, any octave)
                cands = np.array([t + 7 * o for t in chord_at(beat) for o in (-1, 0, 1, 2)])
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
        cands = np.array([t + 7 * o for t in chord_at(b) for o in (-1, 0, 1)])
        notes[-1] = (b, max(d, (total - b * 4) / 4.0), int(cands[np.argmin(np.abs(cands - g))]))
    return notes
