"""Tests of mrlib.music21_catalog: the music21 real-music catalog.

The inventory is read once per session (music21's metadata bundle, a few seconds); builds are
tiny (8 works, 6-second clips, one process) and written below tmp_path.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from mrlib import music21_catalog as R
from mrlib import catalog, music21_corpus, music21_score, music21_tags
from mrlib.music21_corpus import STRATA, SkipWork, draw_order, inventory, stratum_quotas
from mrlib.music21_score import (ARTIST_LOYALTY, TARGET_RMS, Clip, assign_programs, clip_score,
                                 load_program_table, render_midi, to_midi)
from mrlib.music21_tags import (CATEGORIES, key_likelihoods, pitch_class_histogram, tag_category,
                                work_tags)

music21 = pytest.importorskip("music21")
from music21 import bar, meter, note, stream, tempo  # noqa: E402

N_SMALL, CLIP_SMALL = 8, 6.0


@pytest.fixture(scope="module")
def inv() -> pd.DataFrame:
    return inventory()


@pytest.fixture(scope="module")
def small_build(tmp_path_factory):
    root = tmp_path_factory.mktemp("m21") / "cat"
    R.build(n_tracks=N_SMALL, seed=0, root=root, clip_s=CLIP_SMALL, n_jobs=1, progress=False)
    return root


def _clip(pitches, dur=0.4, step=0.45, part=None, n_parts=1) -> Clip:
    p = np.asarray(pitches, np.int16)
    on = np.arange(p.size) * step
    part = np.zeros(p.size, np.int16) if part is None else np.asarray(part, np.int16)
    return Clip(on, on + dur, p, part, n_parts, 120.0, "default", 1.0, "4/4", 0,
                float(on[-1] + step), 1, False, None, False, [None] * n_parts)


# ------------------------------------------------------------------------------------------
# inventory and draw


def test_inventory_covers_the_corpus(inv):
    assert len(inv) > 14_000  # ~15,000 scores minus opus entries, duplicates and exclusions
    counts = inv["stratum"].value_counts()
    assert set(counts.index) == set(STRATA)
    assert counts["essen_german"] > 5000 and counts["bach"] > 300 and counts["trecento"] > 80
    assert inv["work_id"].is_unique and inv["track_id"].is_unique
    assert inv["track_id"].str.fullmatch(r"[a-z0-9_\-]+").all()
    assert inv["artist_id"].map(lambda a: isinstance(a, str) and len(a) > 0).all()
    assert not inv["path"].str.endswith(".rntxt").any()
    assert not inv["path"].str.startswith(("demos/", "theoryExercises/", "leadSheet/")).any()
    # one encoding per work: Beethoven's movements exist as .krn and .mxl, MusicXML is kept
    op18 = inv[inv["path"].str.startswith("beethoven/opus18no1/movement1")]
    assert list(op18["ext"]) == [".mxl"]
    # Josquin's abc voices are merged into one work per file
    jos = inv[inv["folder"] == "josquin"]
    assert jos["merge_tunes"].all() and jos["path"].is_unique and (jos["number"] == -1).all()
    # artists: the composer, else the book
    assert set(inv.loc[inv["stratum"] == "bach", "artist_id"]) == {"bach_js"}
    assert inv.loc[inv["stratum"] == "oneills", "artist_id"].nunique() > 30
    assert inv.loc[inv["stratum"] == "essen_german", "artist_id"].nunique() >= 5


def test_inventory_reads_abc_headers(inv):
    ryans = inv[inv["stratum"] == "ryans"]
    almack = ryans[ryans["path"] == "ryansMammoth/AlmacksHornpipe.abc"].iloc[0]
    assert almack["dance"] == "hornpipe"  # R:hornpipe
    han = inv[inv["work_id"] == "essenFolksong/han1.abc#1"].iloc[0]
    assert han["region"] == "china" and han["stratum"] == "essen_china"
    lux = inv[inv["stratum"] == "essen_luxembourg"]
    assert (lux["region"] == "luxembourg").mean() > 0.95


def test_trecento_composers_and_books():
    assert music21_corpus._trecento_composer("Gherardello F-Pn 568") == "gherardello"
    assert music21_corpus._trecento_composer("Philippe de Vitry\n(1291 - 1361)") == "philippe_de_vitry"
    assert music21_corpus._trecento_composer("Johannes Ciconia (opus dubium)") == "johannes_ciconia"
    assert music21_corpus._trecento_composer("Anonymous I-Rvat 1419") is None
    assert music21_corpus._trecento_composer(float("nan")) is None and music21_corpus._trecento_composer(None) is None


def test_anonymous_works_belong_to_their_book(inv):
    tre = inv[inv["stratum"] == "trecento"]
    anon = tre[tre["composer"].isna()]
    assert len(anon) > 20
    # anonymous works: the edition volume (PMFC 12, 13, ...) or the manuscript is the artist
    assert anon["artist_id"].str.fullmatch(r"pmfc_\d+|fava").all()
    named = tre[tre["composer"].notna()]
    assert (named["artist_id"] == named["composer"]).all()
    assert not inv["artist_id"].str.contains("nan").any()


def test_stratum_quotas_hand_worked():
    # sqrt weights 10, 5, 1 -> ideal 6.25, 3.125, 0.625 -> floors 6, 3, 0; one left for c (.625)
    assert stratum_quotas({"a": 100, "b": 25, "c": 1}, 10) == {"a": 6, "b": 3, "c": 1}
    # b is capped at its size (ideal 6.19 > 2); the 48 left go to a
    assert stratum_quotas({"a": 100, "b": 2}, 50) == {"a": 48, "b": 2}
    # asking for more than there is exhausts every stratum
    assert stratum_quotas({"a": 3, "b": 0, "c": 2}, 10) == {"a": 3, "b": 0, "c": 2}
    assert stratum_quotas({"a": 3}, 0) == {"a": 0}


def test_stratum_quotas_properties():
    rng = np.random.default_rng(0)
    for _ in range(200):
        sizes = {f"s{i}": int(v) for i, v in enumerate(rng.integers(0, 300, rng.integers(1, 12)))}
        n = int(rng.integers(0, 1500))
        q = stratum_quotas(sizes, n)
        assert sum(q.values()) == min(n, sum(sizes.values()))
        assert all(0 <= q[s] <= sizes[s] for s in sizes)
        # strata that are not full share lambda * sqrt(size), each within one draw (rounding)
        free = [s for s in sizes if q[s] < sizes[s] and sizes[s] > 0]
        for s in free:
            for t in free:
                rs, rt = math.sqrt(sizes[s]), math.sqrt(sizes[t])
                assert q[s] / rs <= q[t] / rt + 1 / rs + 1 / rt + 1e-9
        # a full stratum is full because its sqrt share reached its size: sqrt(size) <= lambda
        for s in sizes:
            if q[s] == sizes[s] and sizes[s] > 0 and free:
                lam = max(q[t] / math.sqrt(sizes[t]) for t in free)
                assert math.sqrt(sizes[s]) <= lam + 1 / math.sqrt(sizes[s]) + 1e-9


def test_stratum_quotas_validates():
    with pytest.raises(ValueError):
        stratum_quotas({"a": 3}, -1)
    with pytest.raises(TypeError):
        stratum_quotas({"a": 3}, 2.5)
    with pytest.raises(ValueError):
        stratum_quotas({"a": -3}, 2)


def test_draw_order_is_seeded_and_per_stratum(inv):
    a, b, c = draw_order(inv, 0), draw_order(inv, 0), draw_order(inv, 1)
    assert a == b and a != c
    for s, order in a.items():
        assert sorted(order) == np.flatnonzero(inv["stratum"].to_numpy() == s).tolist()
    # dropping a stratum leaves the others' draws (as work ids) unchanged
    sub = inv[inv["stratum"] != "bach"].reset_index(drop=True)
    d = draw_order(sub, 0)
    assert "bach" not in d
    for s in ("palestrina", "oneills"):
        assert list(sub.iloc[d[s]]["work_id"]) == list(inv.iloc[a[s]]["work_id"])


# ------------------------------------------------------------------------------------------
# instruments


def test_program_table_is_complete_and_in_tune():
    table = load_program_table()
    assert set(table["stratum"]) == set(STRATA) and (table["weight"] > 0).all()
    assert list(table.columns) == ["stratum", "ensemble", "weight", "programs", "rationale"]
    progs = {p for ps in table["programs"] if ps != "score" for p in ps}
    assert all(0 <= p <= 127 for p in progs)
    # programs TimGM6mb renders out of tune are not in the palette (see the module docstring)
    assert not progs & {21, 22, 23, 78}


def test_palette_programs_render_the_right_pitch_classes():
    # A melodic figure in two registers (66..80 and 74..88: the corpus's melodies, and where
    # the excluded programs go wrong) through every program of the table: the rendered chroma
    # must follow the notes (catches detuned or transposed samples). Programs play one after
    # the other, 14 per MIDI file (one channel each): one render and one chroma serve them all.
    import librosa

    table = load_program_table()
    progs = sorted({p for ps in table["programs"] if ps != "score" for p in ps})
    steps = np.array([2, 5, 9, 7, 5, 4, 2, 0, 2, 9, 12, 14])
    figures = [(base + steps).astype(np.int16) for base in (66, 74)]
    seg, sr = 6.0, 22050
    for batch in (progs[:14], progs[14:28], progs[28:]):
        if not batch:
            continue
        k = len(batch)
        on, pitch, part = [], [], []
        for i in range(k):
            for j, fig in enumerate(figures):
                on.append(seg * (2 * i + j) + np.arange(fig.size) * 0.45)
                pitch.append(fig)
                part.append(np.full(fig.size, i, np.int16))
        on = np.concatenate(on)
        clip = Clip(on, on + 0.4, np.concatenate(pitch), np.concatenate(part), k, 120.0,
                    "default", 1.0, "4/4", 0, seg * 2 * k, 1, False, None, False, [None] * k)
        y = render_midi(to_midi(clip, batch), sr, seg * 2 * k)
        chroma = librosa.feature.chroma_cqt(y=y, sr=sr, hop_length=512)
        t = librosa.frames_to_time(np.arange(chroma.shape[1]), sr=sr, hop_length=512)
        for i, prog in enumerate(batch):
            for j, fig in enumerate(figures):
                t0 = seg * (2 * i + j)
                c = chroma[:, (t >= t0) & (t < t0 + 5.4)].mean(axis=1)
                r = np.corrcoef(c, np.bincount(fig % 12, minlength=12))[0, 1]
                assert r > 0.75, (prog, int(fig[0]), r)


def test_assign_programs_rule():
    table = load_program_table()
    kw = {"instrumentation": "by_collection"}
    name, progs = assign_programs("bach", "bach_js", "bach/x.mxl", 6, seed=3, **kw)
    assert len(progs) == 6 and (name, progs) == assign_programs("bach", "bach_js",
                                                                  "bach/x.mxl", 6, seed=3, **kw)
    row = table[(table["stratum"] == "bach") & (table["ensemble"] == name)].iloc[0]
    expected = [row["programs"][min(i, len(row["programs"]) - 1)] for i in range(6)]
    assert progs == expected  # part i gets program i, the last one repeating
    # as_scored: declared programs, piano where a part declares none
    scored = [w for w in map(str, range(100))
              if assign_programs("classical", "x", w, 1, 0, **kw)[0] == "as_scored"]
    assert assign_programs("classical", "x", scored[0], 3, 0, [40, None, 42],
                             **kw) == ("as_scored", [40, 0, 42])
    for mode in R.INSTRUMENTATION:
        for stratum in ("nope", ["bach"]):    # an unhashable one too: a ValueError naming it
            with pytest.raises(ValueError, match=r"^stratum must be one of \('essen_german', "):
                assign_programs(stratum, "x", "w", 1, 0, instrumentation=mode)
    with pytest.raises(ValueError):
        assign_programs("bach", "x", "w", 0, 0)
    with pytest.raises(ValueError, match="instrumentation"):
        assign_programs("bach", "x", "w", 1, 0, instrumentation="by_genre")


def test_instrument_choice_is_independent_of_the_collection():
    # The default rule draws every work's ensemble from one pooled palette: the programs are a
    # function of (seed, artist, work, parts) alone, so the instrument cannot reveal the
    # collection (and through it the genre tags).
    strata = list(load_program_table()["stratum"].unique())
    for seed in (0, 5):
        for k in range(40):
            artist, work = f"artist{k % 7}", f"work{k}"
            picks = {s: assign_programs(s, artist, work, 1 + k % 4, seed) for s in strata}
            assert len({(n, tuple(p)) for n, p in picks.values()}) == 1, picks
    # the pooled palette: every ensemble of the table but the score's own, weights summed
    names, programs, p = music21_score._palette("bach", "independent")
    assert "as_scored" not in names and "score" not in programs
    assert abs(p.sum() - 1) < 1e-12 and len(set(zip(names, map(str, programs)))) == len(names)
    # by collection, the same artist and work get the collection's instruments
    fiddles = {assign_programs("oneills", "a", f"w{i}", 1, 0,
                                 instrumentation="by_collection")[0] for i in range(50)}
    assert fiddles <= set(load_program_table().query("stratum == 'oneills'")["ensemble"])
    # over many artists the independent draw spreads across the pooled palette
    used = {assign_programs("bach", f"a{j}", "w", 1, 0)[0] for j in range(300)}
    assert len(used) > 0.6 * len(set(names))


def test_artist_loyalty_is_statistically_right():
    # P(work uses the artist's favourite) = L + (1 - L) * w_fav / sum(w)
    table = load_program_table()
    rows = table[table["stratum"] == "oneills"]
    w = dict(zip(rows["ensemble"], rows["weight"] / rows["weight"].sum()))
    n, seed = 1500, 11
    kw = {"instrumentation": "by_collection"}
    names = [assign_programs("oneills", "artist_a", f"work{i}", 1, seed, **kw)[0]
             for i in range(n)]
    fav = max(set(names), key=names.count)
    p = ARTIST_LOYALTY + (1 - ARTIST_LOYALTY) * w[fav]
    k = names.count(fav)
    assert abs(k - n * p) < 4.5 * math.sqrt(n * p * (1 - p))  # binomial, ~4.5 sigma
    # a different artist may have another favourite, but the same loyalty
    favs = {max(set(x), key=x.count) for x in (
        [assign_programs("oneills", f"art{j}", f"w{i}", 1, seed, **kw)[0] for i in range(60)]
        for j in range(12))}
    assert len(favs) > 1


# ------------------------------------------------------------------------------------------
# clipping, key, tags


def test_tempo_map_hand_worked():
    tm = music21_score._seconds_of([0.0, 4.0], [60.0, 120.0])
    assert np.allclose(tm([0, 2, 4, 6, 8]), [0, 2, 4, 5, 6])


def _score_with_repeat(qpm=120.0, tie=False):
    """4 bars of 4/4 quarter notes; bar 2 ends with a repeat to the start."""
    part = stream.Part()
    pitches = [[60, 62, 64, 65], [67, 69, 71, 72], [72, 71, 69, 67], [65, 64, 62, 60]]
    for i, bar_p in enumerate(pitches):
        m = stream.Measure(number=i + 1)
        if i == 0:
            m.insert(0, meter.TimeSignature("4/4"))
            m.insert(0, tempo.MetronomeMark(number=qpm))
        if tie and i == 3:
            a, b = note.Note(65, quarterLength=2), note.Note(65, quarterLength=2)
            a.tie, b.tie = music21.tie.Tie("start"), music21.tie.Tie("stop")
            m.append([a, b])
        else:
            for p in bar_p:
                m.append(note.Note(p, quarterLength=1))
        if i == 1:
            m.rightBarline = bar.Repeat(direction="end")
        part.append(m)
    score = stream.Score()
    score.insert(0, part)
    return score


def test_clip_score_expands_repeats_and_clips_by_measures():
    # 120 qpm: a bar lasts 2 s. Performed order: bars 1 2 1 2 3 4 (12 s).
    clip = clip_score(_score_with_repeat(), clip_s=5.0)
    assert clip.expanded and clip.tempo_source == "score" and clip.qpm == 120
    assert clip.n_measures == 3 and clip.passes == 1  # whole bars until 5 s are covered: 6 s
    assert clip.time_signature == "4/4" and clip.beat_ql == 1.0
    # notes starting before 5 s: bars 1, 2 and the first half of the repeated bar 1
    assert clip.pitch.tolist() == [60, 62, 64, 65, 67, 69, 71, 72, 60, 62]
    assert np.allclose(clip.onset_s, np.arange(10) * 0.5)
    assert np.allclose(clip.offset_s, np.minimum(np.arange(10) * 0.5 + 0.5, 5.0))


def test_clip_score_loops_short_pieces_and_merges_ties():
    clip = clip_score(_score_with_repeat(qpm=240.0, tie=True), clip_s=10.0)
    # 240 qpm: the performed piece lasts 6 s, so it is played twice to cover 10 s
    assert clip.piece_s == pytest.approx(6.0) and clip.passes == 2
    one_pass = [60, 62, 64, 65, 67, 69, 71, 72] * 2 + [72, 71, 69, 67] + [65]  # tied F: one note
    assert clip.pitch.tolist() == (one_pass * 2)[:len(clip.pitch)]
    tied = len(one_pass) - 1  # the tied half+half F that ends the first pass
    assert clip.offset_s[tied] - clip.onset_s[tied] == pytest.approx(1.0)  # 4 quarters at 240
    assert clip.onset_s.max() < 10.0 and clip.offset_s.max() <= 10.0
    assert np.all(np.diff(clip.onset_s) >= 0)


def test_clip_score_default_tempo_and_errors():
    score = _score_with_repeat()
    for mm in list(score.recurse().getElementsByClass(tempo.MetronomeMark)):
        mm.activeSite.remove(mm)
    clip = clip_score(score, clip_s=3.0, default_qpm=60.0)  # a bar = 4 s
    assert clip.tempo_source == "default" and clip.n_measures == 1
    with pytest.raises(ValueError):
        clip_score(score, clip_s=0)
    empty = stream.Score()
    empty.insert(0, stream.Part())
    with pytest.raises(SkipWork, match="no notes"):
        clip_score(empty, 5.0)


def test_key_likelihoods_against_a_plain_loop():
    rng = np.random.default_rng(0)
    major, minor = music21_tags._KK_PROFILES
    # hand-worked: a histogram shaped like the A-minor profile is A minor
    p_maj, p_min, tonic = key_likelihoods(np.roll(minor, 9))
    assert tonic == 9 and p_min > 0.5
    p_maj, p_min, tonic = key_likelihoods(np.roll(major, 7))
    assert tonic == 7 and p_maj > 0.5 and p_maj + p_min == pytest.approx(1)
    for _ in range(50):
        h = rng.random(12) ** 3
        best, r_best = None, {0: -2.0, 1: -2.0}
        for mode, prof in enumerate((major, minor)):
            for t in range(12):
                r = np.corrcoef(h, np.roll(prof, t))[0, 1]
                r_best[mode] = max(r_best[mode], r)
                if best is None or r > best[0]:
                    best = (r, t)
        p_maj, _, tonic = key_likelihoods(h)
        assert tonic == best[1]
        assert p_maj == pytest.approx(1 / (1 + math.exp(-12 * (r_best[0] - r_best[1]))))
    assert key_likelihoods(np.zeros(12)) == (0.5, 0.5, 0)
    with pytest.raises(ValueError):
        key_likelihoods(np.ones(11))


def test_abc_key_mode():
    assert music21_tags._abc_key_mode("Ador") == ("A", "dorian")
    assert music21_tags._abc_key_mode("E Minor") == ("E", "minor")
    assert music21_tags._abc_key_mode("Em") == ("E", "minor")
    assert music21_tags._abc_key_mode("Bb mix") == ("B-", "mixolydian")
    assert music21_tags._abc_key_mode("G") is None and music21_tags._abc_key_mode("") is None


def test_pitch_class_histogram_weights_by_duration():
    clip = _clip([60, 64, 72], dur=1.0, step=1.0)
    clip.offset_s[2] = clip.onset_s[2] + 2.0  # the second C lasts twice as long
    h = pitch_class_histogram(clip)
    assert h.dtype == np.float64 and h.shape == (12,)
    assert h[0] == pytest.approx(0.75) and h[4] == pytest.approx(0.25) and h.sum() == 1


def test_work_tags_categories_and_rules(inv):
    work = inv[inv["path"] == "ryansMammoth/AlmacksHornpipe.abc"].iloc[0].to_dict()
    clip = _clip([69, 73, 76, 81, 76, 73] * 4)
    clip.time_signature, clip.beat_ql, clip.qpm = "6/8", 1.5, 180.0  # 120 dotted-quarter bpm
    tags = work_tags(work, clip, [110])
    assert all(0 < v <= 1 for v in tags.values())
    assert {tag_category(t) for t in tags} == set(CATEGORIES)
    assert tags["style_fiddle_tune"] == 1 and tags["coll_ryans"] == 1
    assert tags["dance_hornpipe"] == 1 and tags["gm_fiddle"] == 1
    assert tags["ensemble_solo"] == 1 and tags["lyrics_instrumental"] == 1
    assert tags["meter_duple"] == 1 and tags["meter_compound"] == 1
    assert tags["tempo_fast"] > 0.9  # 120 bpm on the notated (dotted-quarter) beat
    assert tags["mode_major"] > 0.5 and tags["tonic_A"] == 1  # K:A states no mode: inferred
    # an explicit church mode in the abc K: field wins over key finding
    tags = work_tags({**work, "abc_K": "Ador"}, clip, [110])
    assert tags["mode_modal"] == 1 and tags["mode_minor"] == 0.5 and "mode_major" not in tags
    with pytest.raises(ValueError):
        tag_category("nonsense")


# ------------------------------------------------------------------------------------------
# rendering real works


def _chroma_agreement(audio: np.ndarray, sr: int, clip: Clip) -> dict[str, float]:
    """Pearson r of the audio's time-averaged chroma and the clip's pitch-class histogram, and
    how many of the score's three strongest pitch classes are among the audio's three."""
    import librosa

    chroma = librosa.feature.chroma_cqt(y=audio, sr=sr).mean(axis=1)
    hist = pitch_class_histogram(clip)
    top = len(set(np.argsort(-chroma)[:3]) & set(np.argsort(-hist)[:3]))
    return {"correlation": float(np.corrcoef(chroma, hist)[0, 1]), "top3_overlap": top}


def test_rendered_works_sound_like_their_scores(inv):
    """Not silent, and the audio's chroma agrees with the clipped score's notes."""
    order = draw_order(inv, 0)
    picks = [order[s][0] for s in ("essen_german", "oneills", "bach", "palestrina",
                                   "essen_china", "trecento")]
    rs, tops = [], []
    for i in picks:
        out = R.render_work(inv.iloc[i].to_dict(), clip_s=8.0, sr=22050, seed=0)
        y = out["audio"]
        assert y.dtype == np.float32 and y.shape == (8 * 22050,)
        rms = float(np.sqrt(np.mean(y.astype(np.float64) ** 2)))
        assert rms == pytest.approx(TARGET_RMS, rel=0.05) or np.abs(y).max() > 0.85
        assert np.abs(y).max() <= 0.9
        agree = _chroma_agreement(y, 22050, out["clip"])
        rs.append(agree["correlation"])
        tops.append(agree["top3_overlap"])
    assert min(rs) > 0.6 and np.mean(rs) > 0.85, rs
    # A plucked ensemble (harp) on sustained polyphony decays within long notes, which can move
    # one or two of the audio's three strongest pitch classes; the correlation above still holds.
    assert np.mean(tops) >= 2 and min(tops) >= 1, tops


def test_render_work_is_deterministic(inv):
    w = inv[inv["work_id"] == "essenFolksong/han1.abc#1"].iloc[0].to_dict()
    a = R.render_work(w, clip_s=4.0, seed=5)
    b = R.render_work(dict(w), clip_s=4.0, seed=5)
    assert np.array_equal(a["audio"], b["audio"]) and a["tags"] == b["tags"]
    c = R.render_work(w, clip_s=4.0, seed=6)  # another seed: other tempo jitter
    assert c["clip"].qpm != a["clip"].qpm
    with pytest.raises(ValueError):
        R.render_work(w, clip_s=-1.0)


# ------------------------------------------------------------------------------------------
# the build


def test_build_writes_the_catalog_format(small_build):
    root = small_build
    tracks = pd.read_csv(root / "tracks.csv")
    assert list(tracks.columns[:5]) == ["track_id", "artist_id", "split", "path", "duration_s"]
    assert len(tracks) == N_SMALL and tracks["track_id"].is_unique
    assert np.allclose(tracks["duration_s"], CLIP_SMALL)
    tags = pd.read_csv(root / "tags.csv")
    vocab = pd.read_csv(root / "vocabulary.csv")
    assert list(tags.columns) == ["track_id"] + list(vocab["tag"])
    assert list(tags["track_id"]) == list(tracks["track_id"])
    T = tags.drop(columns="track_id").to_numpy()
    assert ((T >= 0) & (T <= 1)).all() and (T.max(axis=0) > 0).all()
    assert set(vocab["category"]) <= set(CATEGORIES)
    assert list(vocab["category"]) == [tag_category(t) for t in vocab["tag"]]
    skipped = pd.read_csv(root / "skipped.csv")
    assert list(skipped.columns) == ["work", "reason"]
    info = json.loads((root / "catalog.json").read_text())
    assert info["complete"] is True and list(info)[-1] == "complete"
    assert info["config"] == {"n_tracks": N_SMALL, "seed": 0, "clip_s": CLIP_SMALL, "sr": 22050,
                              "instrumentation": "independent"}
    assert info["n_tracks"] == N_SMALL and info["failures"]["count"] == len(skipped)
    assert set(info["versions"]) >= {"music21", "midirenderer", "pretty_midi"}
    # artist-disjoint splits
    owners = tracks.groupby("artist_id")["split"].nunique()
    assert (owners == 1).all() and set(tracks["split"]) <= {"train", "val", "test"}
    # audio: 16-bit mono FLAC at 22,050 Hz, clip_s long, not silent
    for p in tracks["path"]:
        meta = sf.info(root / p)
        assert (meta.samplerate, meta.channels, meta.subtype) == (22050, 1, "PCM_16")
        y, _ = sf.read(root / p, dtype="float32")
        assert y.size == int(CLIP_SMALL * 22050) and np.sqrt(np.mean(y ** 2)) > 0.01


def test_build_is_read_by_the_catalog_module(small_build):
    cat = catalog.read(small_build)
    assert len(cat) == N_SMALL and cat.tags.shape[0] == N_SMALL
    assert cat.audio_path(0).is_file()


def test_build_audio_matches_render_work(small_build, inv):
    tracks = pd.read_csv(small_build / "tracks.csv")
    row = tracks.iloc[0]
    out = R.render_work(inv.set_index("work_id", drop=False).loc[row["work_id"]].to_dict(),
                        clip_s=CLIP_SMALL, seed=0)
    y, _ = sf.read(small_build / row["path"], dtype="float32")
    assert np.abs(y - out["audio"]).max() <= 1.5 / 32768  # 16-bit quantisation only
    tags = pd.read_csv(small_build / "tags.csv").set_index("track_id").loc[row["track_id"]]
    assert {t: v for t, v in tags.items() if v > 0} == pytest.approx(out["tags"], abs=1e-6)


def test_finished_build_returns_at_once(small_build, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("a finished build must not render again")

    monkeypatch.setattr(R, "_process_work", boom)
    assert R.build(n_tracks=N_SMALL, seed=0, root=small_build, clip_s=CLIP_SMALL, n_jobs=1,
                   progress=False) == small_build
    assert catalog.main(["build", "music21", "--n-tracks", str(N_SMALL), "--seed", "0", "--root",
                         str(small_build), "--duration", str(CLIP_SMALL), "--jobs", "1",
                         "--no-progress"]) == 0


def test_interrupted_build_resumes(small_build, tmp_path, monkeypatch):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(small_build, root)
    before = {f: (root / f).read_bytes() for f in ("tracks.csv", "tags.csv", "vocabulary.csv")}
    # simulate an interruption: no catalog.json, two works never finished
    (root / "catalog.json").unlink()
    tracks = pd.read_csv(root / "tracks.csv")
    lost = list(tracks["track_id"][:2])
    for t in lost:
        (root / "cache" / "works" / f"{t}.json").unlink()
    (root / "audio" / f"{lost[0]}.flac").unlink()
    calls = []
    real = R._process_work
    monkeypatch.setattr(R, "_process_work",
                        lambda w, *a: calls.append(w["track_id"]) or real(w, *a))
    R.build(n_tracks=N_SMALL, seed=0, root=root, clip_s=CLIP_SMALL, n_jobs=1, progress=False)
    assert sorted(calls) == sorted(lost)
    assert {f: (root / f).read_bytes() for f in before} == before


def test_a_resumed_build_removes_the_temporaries_of_killed_workers(small_build, tmp_path):
    import shutil
    import subprocess
    import sys

    root = tmp_path / "copy"
    shutil.copytree(small_build, root)
    (root / "catalog.json").unlink()                 # killed before the end
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()                                      # a pid that no process has any more
    track = pd.read_csv(root / "tracks.csv")["track_id"][0]
    left = [root / "audio" / f"{track}.flac.{proc.pid}.part",
            root / "cache" / "works" / f"{track}.json.{proc.pid}.part"]
    for f in left:
        f.write_bytes(b"half a file")
    R.build(n_tracks=N_SMALL, seed=0, root=root, clip_s=CLIP_SMALL, n_jobs=1, progress=False)
    assert not any(f.exists() for f in left)
    assert (root / "catalog.json").is_file()


def test_failed_works_are_replaced_and_reported(inv, tmp_path, monkeypatch):
    order = draw_order(inv, 0)
    bad = {inv.iloc[order["essen_german"][0]]["work_id"], inv.iloc[order["oneills"][0]]["work_id"]}
    real = R.render_work

    def flaky(work, *a, **k):
        if work["work_id"] in bad:
            raise SkipWork("parse: simulated failure")
        return real(work, *a, **k)

    monkeypatch.setattr(R, "render_work", flaky)
    root = R.build(n_tracks=N_SMALL, seed=0, root=tmp_path / "c", clip_s=3.0, n_jobs=1,
                   progress=False)
    tracks = pd.read_csv(root / "tracks.csv")
    skipped = pd.read_csv(root / "skipped.csv")
    assert len(tracks) == N_SMALL and not set(tracks["work_id"]) & bad
    assert set(skipped["work"]) == bad and (skipped["reason"] == "parse: simulated failure").all()
    # replacements come from the same strata: the next works of their draw order
    for s in ("essen_german", "oneills"):
        assert inv.iloc[order[s][1]]["work_id"] in set(tracks["work_id"])
    info = json.loads((root / "catalog.json").read_text())
    assert info["attempted"] == N_SMALL + 2 and info["failures"] == {"count": 2}


def test_default_folders_name_the_settings_so_two_builds_never_meet(tmp_path, monkeypatch):
    """Two clip lengths of the same draw build side by side under the data root (one folder for
    both made the second build refuse the first's files); the defaults keep the short name."""
    monkeypatch.setenv("MRLIB_DATA", str(tmp_path))
    assert R.music21_root(200, 0) == tmp_path / "music21_n200_s0"
    assert R.music21_root(2000, 1, 15.0, 16000, "by_collection") == \
        tmp_path / "music21_n2000_s1_d15_sr16000_by_collection"
    roots = [R.build(n_tracks=2, seed=0, clip_s=clip, n_jobs=1, progress=False) for clip in (3.0, 4.0)]
    assert roots == [tmp_path / "music21_n2_s0_d3", tmp_path / "music21_n2_s0_d4"]
    assert [json.loads((r / "catalog.json").read_text())["config"]["clip_s"] for r in roots] == [3.0, 4.0]


def test_build_validates_arguments(tmp_path):
    with pytest.raises(ValueError):
        R.build(n_tracks=0, root=tmp_path)
    with pytest.raises(TypeError):
        R.build(n_tracks=2.5, root=tmp_path)
    with pytest.raises(ValueError):
        R.build(n_tracks=2, clip_s=-3, root=tmp_path)
    with pytest.raises(ValueError):
        R.build(n_tracks=2, sr=100, root=tmp_path)
    with pytest.raises(ValueError):
        R.build(n_tracks=2, n_jobs=0, root=tmp_path)


@pytest.mark.slow
def test_parallel_build_equals_serial(small_build, tmp_path):
    root = R.build(n_tracks=N_SMALL, seed=0, root=tmp_path / "par", clip_s=CLIP_SMALL, n_jobs=2,
                   progress=False)
    for f in ("tracks.csv", "tags.csv", "vocabulary.csv", "skipped.csv"):
        assert (root / f).read_bytes() == (small_build / f).read_bytes(), f
    for p in pd.read_csv(root / "tracks.csv")["path"]:
        a, _ = sf.read(root / p, dtype="int16")
        b, _ = sf.read(small_build / p, dtype="int16")
        assert np.array_equal(a, b)


def test_build_refuses_a_hand_made_folder_and_other_settings(small_build, tmp_path, monkeypatch):
    import shutil

    def boom(*a, **k):
        raise AssertionError("nothing may be rendered into a refused folder")

    # a hand-made catalog (no manifest, no build cache) is never written over
    hand = tmp_path / "hand"
    (hand / "audio").mkdir(parents=True)
    (hand / "audio" / "a.wav").write_bytes(b"RIFF")
    (hand / "tracks.csv").write_text("track_id,path\na,audio/a.wav\n")
    (hand / "tags.csv").write_text("track_id,rock\na,1\n")
    before = {f: (hand / f).read_bytes() for f in ("tracks.csv", "tags.csv")}
    monkeypatch.setattr(R, "_process_work", boom)
    with pytest.raises(ValueError, match="no music21 build wrote.*nothing was changed"):
        R.build(n_tracks=N_SMALL, root=hand, clip_s=CLIP_SMALL, n_jobs=1, progress=False)
    assert catalog.main(["build", "music21", "--n-tracks", "2", "--root", str(hand), "--jobs",
                         "1", "--no-progress"]) == 2
    assert {f: (hand / f).read_bytes() for f in before} == before
    assert not (hand / ".mrlib.lock").exists()
    # a finished build with other settings needs overwrite, which keeps the old files aside
    other = tmp_path / "other"
    shutil.copytree(small_build, other)
    with pytest.raises(ValueError, match="built with .*by_collection"):
        R.build(n_tracks=N_SMALL, root=other, clip_s=CLIP_SMALL, n_jobs=1, progress=False,
                instrumentation="by_collection")
    monkeypatch.undo()
    R.build(n_tracks=N_SMALL, root=other, clip_s=CLIP_SMALL, n_jobs=1, progress=False,
            instrumentation="by_collection", overwrite=True)
    kept = list(other.glob("replaced-*"))
    assert len(kept) == 1 and (kept[0] / "tracks.csv").read_bytes() == \
        (small_build / "tracks.csv").read_bytes()
    info = json.loads((other / "catalog.json").read_text())
    assert info["config"]["instrumentation"] == "by_collection" and info["complete"]


def test_a_catalog_folder_being_built_refuses_a_second_build(tmp_path):
    from mrlib.paths import FolderLock, LockedError

    root = tmp_path / "c"
    with FolderLock(root, "catalog"):
        with pytest.raises(LockedError):
            R.build(n_tracks=2, root=root, clip_s=3.0, n_jobs=1, progress=False)
