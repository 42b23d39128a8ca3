"""One music21 work as sound: its instruments (General MIDI programs), the parsed score, the
clip cut by measures, and its MIDI rendered with the General MIDI soundfont.

Notebook: 00_overview.ipynb
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mrlib import paths
from mrlib.checks import check_choice, check_int, check_positive
from mrlib.music21_corpus import DANCE_QPM, STRATA, SkipWork, _corpus_root, _crc


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


def _versions() -> dict[str, str]:
    names = ("music21", "midirenderer", "pretty_midi", "numpy", "scipy", "soundfile")
    return paths.package_versions(names, missing="missing")


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
# instruments


def load_program_table() -> pd.DataFrame:
    """The General MIDI instrumentation rule: ``data/repertoire_programs.csv``.

    Returns
    -------
    pandas.DataFrame
        Columns ``stratum, ensemble, weight, programs, rationale``; ``programs`` is a tuple of
        GM program numbers (0-127, top voice first) or the string ``"score"`` (use the
        instruments the score declares).

    Notebook: 00_overview.ipynb
    """
    table = pd.read_csv(paths.repo_root() / "data" / "repertoire_programs.csv")
    table["programs"] = [p if p == "score" else tuple(int(v) for v in p.split(";"))
                         for p in table["programs"].astype(str)]
    return table


@functools.lru_cache(maxsize=None)
def _palette(stratum: str, instrumentation: str) -> tuple[list, list, np.ndarray]:
    """(ensemble names, programs, probabilities) of the palette a work of ``stratum`` (one of
    :data:`STRATA`) draws from: the pooled one, or the stratum's rows. Computed once per process.

    The pooled palette holds each (ensemble, programs) of the table once, weighted by the sum
    of its weights; ``as_scored`` is left out (a score's declared instruments belong to its
    collection)."""
    table = load_program_table()
    rows = table[table["stratum"] == stratum]
    if instrumentation == "independent":
        rows = table[table["programs"].map(lambda p: p != "score")]
    # a stratum lists an (ensemble, programs) once: the sum is its own weight
    w = rows.groupby(["ensemble", "programs"], sort=False)["weight"].sum()
    p = w.to_numpy(float)
    return [e for e, _ in w.index], [q for _, q in w.index], p / p.sum()


def assign_programs(stratum: str, artist_id: str, work_id: str, n_parts: int, seed: int,
                    declared: Sequence[int | None] | None = None,
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
    instrumentation : {"independent", "by_collection"}
        One palette for all collections, or the collection's own (see the module docstring).

    Returns
    -------
    (str, list of int)
        The ensemble name and one GM program (0-127) per part.

    Notebook: 00_overview.ipynb
    """
    n_parts = check_int("n_parts", n_parts, 1)
    seed = check_int("seed", seed, 0)
    check_choice("instrumentation", instrumentation, INSTRUMENTATION)
    check_choice("stratum", stratum, STRATA)    # the pooled palette too: a typo is an error
    names, palette, p = _palette(stratum, instrumentation)
    favourite = np.random.default_rng([seed, _crc(artist_id), 1]).choice(len(names), p=p)
    rng = np.random.default_rng([seed, _crc(work_id), 2])
    pick = favourite if rng.random() < ARTIST_LOYALTY else rng.choice(len(names), p=p)
    name, programs = names[pick], palette[pick]
    if programs == "score":  # piano where a part declares nothing; the trailing 0 repeats
        programs = [0 if p is None else p for p in declared or []] + [0]
    return str(name), [int(programs[min(i, len(programs) - 1)]) for i in range(n_parts)]


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

    number = int(work["number"])
    try:
        with warnings.catch_warnings(action="ignore"):
            # forceSource: never read or write music21's pickle cache (no side effects, and the
            # result does not depend on what an earlier session cached).
            parsed = converter.parse(_corpus_root() / str(work["path"]),
                                     number=number if number >= 0 else None, forceSource=True)
    except Exception as exc:  # music21 raises many types; all mean "cannot parse"
        raise SkipWork(f"parse: {type(exc).__name__}: {str(exc)[:200]}") from None
    if isinstance(parsed, stream.Opus) and not work.get("merge_tunes", False):
        if not parsed.scores:
            raise SkipWork("parse: the file holds no score")
        parsed = parsed.scores[0]
    if isinstance(parsed, stream.Score):
        return parsed
    score = stream.Score()   # every tune of a merged file, or a lone part, becomes a part
    for part in ([p for sub in parsed.scores for p in (sub.parts or [sub])]
                 if isinstance(parsed, stream.Opus) else [parsed]):
        score.insert(0, part)
    return score


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


def _seconds_of(starts_ql: Sequence[float], qpms: Sequence[float]) -> Callable:
    """Piecewise-constant tempo: the function from quarter-length offsets to seconds, vectorised."""
    starts, spq = np.asarray(starts_ql, float), 60.0 / np.asarray(qpms, float)  # s per quarter
    cum = np.concatenate([[0.0], np.cumsum(np.diff(starts) * spq[:-1])])

    def seconds(ql) -> np.ndarray:
        ql = np.asarray(ql, float)
        i = np.clip(np.searchsorted(starts, ql, side="right") - 1, 0, None)
        return cum[i] + (ql - starts[i]) * spq[i]
    return seconds


def _tempo_map(part, default_qpm: float) -> tuple[Callable, float, str]:
    from music21 import tempo

    marks = []
    for mm in part.flatten().getElementsByClass(tempo.MetronomeMark):
        q = None
        with contextlib.suppress(Exception):  # a text-only mark without a number
            q = mm.getQuarterBPM()
        if q is not None and 20.0 <= float(q) <= 400.0:
            marks.append((float(mm.offset), float(q)))
    if not marks:
        return _seconds_of([0.0], [default_qpm]), float(default_qpm), "default"
    marks.sort()
    # The first mark governs from the very start (pickups precede the mark in many encodings);
    # of the marks at one offset, the last in sorted order holds.
    qpm_from = {0.0: marks[0][1], **dict(marks[1:])}
    return _seconds_of(list(qpm_from), list(qpm_from.values())), marks[0][1], "score"


def _measure_bounds(part) -> np.ndarray:
    """(n, 2) float64 start/end quarter-length offsets of the part's measures (may be empty)."""
    from music21 import stream

    bounds = [(float(m.offset), float(m.offset) + float(m.duration.quarterLength))
              for m in part.getElementsByClass(stream.Measure)]
    return np.asarray(bounds, float).reshape(-1, 2)


def _extract_notes(score, end_ql: float) -> tuple[list[np.ndarray], bool, list[int | None]]:
    """Per part (k, 3) [onset_ql, end_ql, midi], ties merged; lyrics flag; declared programs."""
    from music21 import chord, harmony, note, percussion

    per_part, has_lyrics, declared = [], False, []
    for part in score.parts:
        program = None
        with contextlib.suppress(Exception):  # an instrument music21 cannot read: none declared
            program = getattr(part.getInstrument(returnDefault=False), "midiProgram", None)
        declared.append(None if program is None else int(program))
        kept: list[list[float]] = []   # [onset_ql, end_ql, midi]
        open_ties: dict[int, int] = {}
        for n in part.flatten().notes:
            if isinstance(n, (harmony.ChordSymbol, note.Unpitched, percussion.PercussionChord)):
                continue
            start, dur = float(n.offset), float(n.duration.quarterLength)
            if n.duration.isGrace or dur <= 0 or start >= end_ql:
                continue
            has_lyrics = has_lyrics or bool(n.lyrics)
            for sub in (n.notes if isinstance(n, chord.Chord) else [n]):   # each pitch
                midi, tie = int(round(sub.pitch.ps)), sub.tie or n.tie
                tie = tie.type if tie is not None else None
                if not 0 <= midi <= 127:
                    continue
                j = open_ties.get(midi)
                # A tied continuation extends the open note instead of re-striking it.
                if tie in ("stop", "continue") and j is not None and abs(kept[j][1] - start) < 1e-3:
                    kept[j][1] = start + dur
                    if tie == "stop":
                        del open_ties[midi]
                    continue
                kept.append([start, start + dur, midi])
                if tie in ("start", "continue"):
                    open_ties[midi] = len(kept) - 1
                else:
                    open_ties.pop(midi, None)
        arr = np.array(kept, float).reshape(-1, 3)
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
    expansion, whole measures are kept until their end reaches ``clip_s``; ties are merged,
    grace notes dropped; a piece shorter than ``clip_s`` is played again from the top until it
    is covered. A score without measures (some abc) is clipped at the last note that starts
    before ``clip_s``.

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
    from music21 import bar, repeat

    clip_s = check_positive("clip_s", clip_s)
    default_qpm = check_positive("default_qpm", default_qpm)
    if not score.parts:
        raise SkipWork("no notes: the score has no parts")
    repeats = score.recurse().getElementsByClass((bar.Repeat, repeat.RepeatMark))
    expanded = any(True for _ in repeats) and len(_measure_bounds(score.parts[0])) > 0
    if expanded:
        score = _expand_repeats(score, clip_s, default_qpm)
    part0 = score.parts[0]
    tmap, qpm, tempo_source = _tempo_map(part0, default_qpm)
    bounds = _measure_bounds(part0)
    if len(bounds):
        # the first measure ending at or after clip_s, else the last
        k = min(int(np.searchsorted(tmap(bounds[:, 1]), clip_s - 1e-9)), len(bounds) - 1)
        end_ql, n_measures = float(bounds[k, 1]), k + 1
    else:
        end_ql, n_measures = float(score.highestTime), 0
    per_part, has_lyrics, declared = _extract_notes(score, end_ql)
    if not len(bounds):  # no measures: cut after the last note that starts before clip_s
        per_part, end_ql = _cut_unmeasured(per_part, tmap, clip_s, end_ql)
    if sum(len(p) for p in per_part) == 0:
        raise SkipWork("no notes: nothing pitched in the clipped measures")
    piece_s = float(tmap(end_ql))
    if piece_s < MIN_PIECE_S:
        raise SkipWork(f"too short: one pass lasts {piece_s:.2f} s < {MIN_PIECE_S} s")
    (on, off, pitch, part), passes = _repeat_passes(per_part, tmap, piece_s, clip_s)
    ts, key = _meter_and_key(part0)
    return Clip(
        onset_s=on, offset_s=off, pitch=pitch, part=part,
        n_parts=len(per_part), qpm=float(qpm), tempo_source=tempo_source,
        beat_ql=float(ts.beatDuration.quarterLength) if ts is not None else 1.0,
        time_signature=ts.ratioString if ts is not None else None, n_measures=n_measures,
        piece_s=piece_s, passes=passes, expanded=expanded, key=key, has_lyrics=has_lyrics,
        declared_programs=declared)


def _expand_repeats(score, clip_s: float, default_qpm: float):
    """The score with its repeats expanded: of an excerpt a little longer than ``clip_s`` when
    the score is long (cheap), else whole; :class:`SkipWork` when no expansion succeeds."""
    tmap, _, _ = _tempo_map(score.parts[0], default_qpm)
    bounds = _measure_bounds(score.parts[0])
    ends_s = tmap(bounds[:, 1])
    n_all = len(bounds)
    # Excerpts to try, shortest first. An excerpt can cut a repeat bracket in two, so a
    # failure retries a twice longer one; the whole score is expanded only when it is not
    # much longer than that (a whole quartet takes a minute to expand: skip it instead).
    cuts = [n_all]
    if ends_s[-1] > 2.5 * clip_s:
        k = int(np.searchsorted(ends_s, 1.25 * clip_s)) + 2
        cuts = [c for c in (k, 2 * k) if c < n_all] + \
            ([n_all] if n_all <= MAX_FULL_EXPAND_FACTOR * k else [])
    for cut in cuts:   # never empty: n_all > 6 k keeps the excerpts k and 2 k < n_all
        try:
            with warnings.catch_warnings(action="ignore"):
                work = score if cut >= n_all else score.measures(0, cut, indicesNotNumbers=True)
                return work.expandRepeats()
        except Exception as exc:  # music21's ExpanderException, StreamException, ...
            error = exc
    tried = "" if cuts[-1] >= n_all else f" (excerpts of {cuts} of {n_all} measures tried)"
    raise SkipWork(f"expand repeats: {type(error).__name__}: {str(error)[:200]}{tried}")


def _cut_unmeasured(per_part: list[np.ndarray], tmap: Callable, clip_s: float,
                    end_ql: float) -> tuple[list[np.ndarray], float]:
    """Notes of a score without measures, cut after the last note that starts before ``clip_s``."""
    onsets = np.concatenate([p[:, 0] for p in per_part])
    late = onsets[tmap(onsets) >= clip_s]
    if late.size:
        end_ql = float(late.min())
        # the notes that start before end_ql, their ends cut there (onset and pitch < inf)
        per_part = [np.minimum(p[p[:, 0] < end_ql], (np.inf, end_ql, np.inf)) for p in per_part]
    return per_part, end_ql


def _repeat_passes(per_part: list[np.ndarray], tmap: Callable, piece_s: float, clip_s: float):
    """Note events ``(onset_s, offset_s, pitch, part)`` of the clip, sorted, with the piece
    played again back to back until ``clip_s`` is covered; and the number of passes."""
    notes = np.concatenate(per_part)
    on, off, pitch = tmap(notes[:, 0]), tmap(notes[:, 1]), notes[:, 2].astype(np.int16)
    part = np.concatenate([np.full(len(p), i, np.int16) for i, p in enumerate(per_part)])
    # strophic repetition: the whole pass again, back to back (one pass: shifted by 0)
    passes = max(1, int(math.ceil(clip_s / piece_s - 1e-9)))
    shift = np.repeat(np.arange(passes) * piece_s, on.size)
    on, off = np.tile(on, passes) + shift, np.tile(off, passes) + shift
    pitch, part = np.tile(pitch, passes), np.tile(part, passes)
    keep = on < clip_s
    on, off, pitch, part = on[keep], np.minimum(off[keep], clip_s), pitch[keep], part[keep]
    order = np.lexsort((pitch, part, on))
    return (on[order], off[order], pitch[order], part[order]), passes


def _meter_and_key(part0):
    """The first real time signature of the top part (or None), and its first key as
    ``(tonic, mode)`` (or None)."""
    from music21 import key as m21key
    from music21 import meter

    ts_all = list(part0.flatten().getElementsByClass(meter.TimeSignature))
    # Some abc encodings carry a bogus 1/16 "meter" taken from the L: field: skip those.
    ts = next((t for t in ts_all if t.numerator >= 2), ts_all[0] if ts_all else None)
    keys = list(part0.flatten().getElementsByClass(m21key.Key))
    return ts, ((keys[0].tonic.name, str(keys[0].mode)) if keys else None)


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
    base = DANCE_QPM.get(work.get("dance"), STRATA[work["stratum"]].qpm)   # no dance: None or NaN
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
    # one instrument per part up to the 15th, which the parts after it share
    instruments = {i: pretty_midi.Instrument(program=int(programs[i]), name=f"part {i}")
                   for i in range(min(clip.n_parts, 15))}
    for on, off, p, i in zip(clip.onset_s.tolist(), clip.offset_s.tolist(),
                             clip.pitch.tolist(), clip.part.tolist()):
        vel = VELOCITY_TOP if i == 0 else VELOCITY_OTHER
        instruments[min(i, 14)].notes.append(
            pretty_midi.Note(velocity=vel, pitch=int(p), start=on, end=max(off, on + 0.01)))
    pm.instruments.extend(inst for inst in instruments.values() if inst.notes)
    buf = io.BytesIO()
    pm.write(buf)
    return buf.getvalue()


def render_midi(midi: bytes, sr: int, duration_s: float) -> np.ndarray:
    """Render MIDI with ``TimGM6mb.sf2`` through ``midirenderer``; mono, resampled, normalised.

    Parameters
    ----------
    midi : bytes
        A Standard MIDI File.
    sr : int
        Output sample rate in Hz.
    duration_s : float
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

    sr = check_int("sr", sr, 1000)
    wav = midirenderer.render_wave_from(_soundfont_bytes(), bytes(midi))
    y, sr_in = sf.read(io.BytesIO(wav), dtype="float32", always_2d=True)
    y = y.mean(axis=1)
    if sr_in != sr:     # resample_poly reduces the ratio sr / sr_in itself
        y = resample_poly(y, sr, int(sr_in)).astype(np.float32)
    n = int(round(check_positive("duration_s", duration_s) * sr))
    y = np.pad(y[:n], (0, max(0, n - y.size)))
    fade = min(n, int(0.05 * sr))
    y[n - fade:] *= (0.5 + 0.5 * np.cos(np.linspace(0, np.pi, fade))).astype(np.float32)
    rms = float(np.sqrt(np.mean(np.square(y, dtype=np.float64)))) if y.size else 0.0
    if rms > 0:
        y = y * np.float32(min(TARGET_RMS / rms, PEAK_CEILING / float(np.abs(y).max())))
    return y.astype(np.float32, copy=False)
