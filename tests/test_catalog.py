"""Tests of mrlib.catalog: the Catalog contract, artist-disjoint splits, the synthetic build
(determinism, parallel = sequential, resume after an interruption), load() dispatch,
from_folder() validation with every error message, and the CLI."""
from __future__ import annotations

import json
import os
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from mrlib import catalog as C
from mrlib import synth_catalog
from mrlib.paths import data_dir
from mrlib import synth

SMALL = dict(n_tracks=12, seed=0, duration_s=5.0, n_jobs=1, progress=False)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One small synthetic catalog for the read-only tests of this module."""
    root = tmp_path_factory.mktemp("cat") / "syn"
    return C.build_synthetic(root=root, **SMALL)


# ------------------------------------------------------------------ splits
def test_artist_disjoint_split_fractions_and_disjointness():
    rng = np.random.default_rng(0)
    artists = rng.integers(0, 250, 1000)               # ~4 tracks per artist, uneven
    split = C.artist_disjoint_split(artists, seed=0)
    assert split.shape == (1000,) and set(split) == {"train", "val", "test"}
    per_artist = pd.DataFrame({"a": artists, "s": split}).groupby("a")["s"].nunique()
    assert (per_artist == 1).all()
    shares = pd.Series(split).value_counts(normalize=True)
    for s, target in zip(C.SPLITS, (0.6, 0.2, 0.2)):
        assert abs(shares[s] - target) < 0.01, shares


def test_artist_disjoint_split_is_deterministic_and_row_order_free():
    artists = np.repeat(np.arange(40), np.arange(1, 41) % 7 + 1)
    a = C.artist_disjoint_split(artists, seed=3)
    assert np.array_equal(a, C.artist_disjoint_split(list(artists), seed=3))
    perm = np.random.default_rng(1).permutation(artists.size)
    assert np.array_equal(C.artist_disjoint_split(artists[perm], seed=3), a[perm])


def test_artist_disjoint_split_edge_cases():
    assert C.artist_disjoint_split([], seed=0).shape == (0,)
    only = C.artist_disjoint_split(np.arange(10), fractions=(0.5, 0.5, 0.0))
    assert "test" not in set(only) and (only == "train").sum() == 5
    for bad in ((0.5, 0.5), (0.7, 0.2, 0.2), (1.2, -0.1, -0.1)):
        with pytest.raises(ValueError, match="fractions"):
            C.artist_disjoint_split(np.arange(5), fractions=bad)
    with pytest.raises(ValueError, match="seed must be >= 0, got -1"):
        C.artist_disjoint_split(np.arange(5), seed=-1)
    with pytest.raises(TypeError, match="seed must be an int"):
        C.artist_disjoint_split(np.arange(5), seed=1.5)


# ------------------------------------------------------------------ the synthetic build
def test_build_writes_the_on_disk_format(built):
    for f in ("tracks.csv", "tags.csv", "vocabulary.csv", "catalog.json", "attributes.csv"):
        assert (built / f).is_file(), f
    info = json.loads((built / "catalog.json").read_text())
    assert info["complete"] is True and info["config"]["seed"] == 0 and "numpy" in info["versions"]
    tracks = pd.read_csv(built / "tracks.csv")
    assert list(tracks.columns) == list(C.TRACK_COLUMNS)
    tags = pd.read_csv(built / "tags.csv")
    assert list(tags.columns) == ["track_id"] + list(synth.TAGS)
    assert not list((built / "audio").glob("*.part"))


def test_read_gives_the_contract(built):
    cat = C.read(built)
    n, m = len(cat), len(cat.vocabulary)
    assert n == 12 and cat.tags.shape == (n, m) and cat.tags.dtype == np.float32
    assert cat.tags.min() >= 0 and cat.tags.max() <= 1
    assert cat.tag_names == list(synth.TAGS) and cat.categories == list(synth.CATEGORIES)
    assert list(cat.tracks.columns) == list(C.TRACK_COLUMNS)
    parts = [cat.split_indices(s) for s in C.SPLITS]
    assert all(p.dtype == np.int64 for p in parts)
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(n))
    by_split = [set(cat.tracks["artist_id"].iloc[p]) for p in parts]
    assert not (by_split[0] & by_split[1] or by_split[0] & by_split[2] or by_split[1] & by_split[2])
    # the tags on disk are the generator's, exactly
    _, tags, _ = synth.sample_catalog(12, 0)
    assert np.array_equal(cat.tags, tags)
    assert cat.attributes is not None and list(cat.attributes["genre"]) == \
        [a.genre for a in synth.sample_catalog(12, 0).attributes]
    for i in (0, 11):
        p = cat.audio_path(i)
        assert p.is_absolute() and p.is_file()
        y, sr = sf.read(p, dtype="float32")
        assert sr == 22050 and y.shape == (5 * 22050,) and np.abs(y).max() > 0.01
    # 16-bit FLAC holds the rendered float audio to within one quantisation step
    a0 = synth.sample_catalog(12, 0).attributes[0]
    y0 = synth.render_catalog_track(a0, 0, 22050, 5.0)
    assert np.abs(sf.read(cat.audio_path(0), dtype="float32")[0] - y0).max() <= 1.0 / 32768 + 1e-7
    assert cat.category_indices("Lyrics").tolist() == [synth.TAGS.index(t) for t in synth.LYRICS]
    assert "N=12" in repr(cat) and "Lyrics" in cat.summary()


def test_same_seed_byte_identical_other_seed_differs(built, tmp_path):
    again = C.build_synthetic(root=tmp_path / "again", **SMALL)
    other = C.build_synthetic(root=tmp_path / "other", **{**SMALL, "seed": 1})
    for f in ("tracks.csv", "tags.csv", "vocabulary.csv", "attributes.csv"):
        assert (built / f).read_bytes() == (again / f).read_bytes(), f
    assert (built / "tags.csv").read_bytes() != (other / "tags.csv").read_bytes()
    for p in sorted((built / "audio").iterdir()):
        assert p.read_bytes() == (again / "audio" / p.name).read_bytes(), p.name
        assert p.read_bytes() != (other / "audio" / p.name).read_bytes(), p.name


def test_parallel_build_equals_sequential(built, tmp_path):
    par = C.build_synthetic(root=tmp_path / "par", **{**SMALL, "n_jobs": 2})
    for p in sorted((built / "audio").iterdir()):
        assert p.read_bytes() == (par / "audio" / p.name).read_bytes(), p.name


class _Crash(Exception):
    """Stands for a kill, a power cut or Ctrl-C in the middle of a build."""


def test_interrupted_build_resumes_without_redoing_finished_tracks(built, tmp_path, monkeypatch):
    root = tmp_path / "resume"
    real = synth_catalog._render_to_file
    calls, crash = [], True

    def flaky(*args):
        calls.append(args[4])
        if len(calls) == 6 and crash:
            raise _Crash("simulated interruption")
        return real(*args)

    monkeypatch.setattr(synth_catalog, "_render_to_file", flaky)
    with pytest.raises(_Crash):
        C.build_synthetic(root=root, **SMALL)
    done = sorted((root / "audio").glob("*.flac"))
    assert len(done) == 5
    assert json.loads((root / "catalog.json").read_text())["complete"] is False
    with pytest.raises(ValueError, match="incomplete"):
        C.read(root)
    torn = root / "audio" / "syn00005.flac.12345.part"                       # a torn write ...
    torn.write_bytes(b"half a file")
    os.utime(torn, (time.time() - 3600, time.time() - 3600))                  # ... an hour ago
    stamps = {p.name: p.stat().st_mtime_ns for p in done}

    calls.clear()
    crash = False
    C.build_synthetic(root=root, **SMALL)
    assert len(calls) == 12 - 5                                  # only the missing tracks
    assert {p.name: p.stat().st_mtime_ns for p in done} == stamps
    assert not list((root / "audio").glob("*.part"))
    for p in sorted((built / "audio").iterdir()):                # same bytes as uninterrupted
        assert p.read_bytes() == (root / "audio" / p.name).read_bytes(), p.name
    calls.clear()
    C.build_synthetic(root=root, **SMALL)                         # complete: nothing to do
    assert calls == []


def test_build_refuses_a_folder_with_another_config(built, tmp_path):
    root = tmp_path / "cfg"
    C.build_synthetic(root=root, **{**SMALL, "n_tracks": 4})
    with pytest.raises(ValueError, match="overwrite"):
        C.build_synthetic(root=root, **{**SMALL, "n_tracks": 5})
    C.build_synthetic(root=root, overwrite=True, **{**SMALL, "n_tracks": 5})
    assert len(C.read(root)) == 5 and len(list((root / "audio").iterdir())) == 5


def test_a_cache_from_an_older_generator_is_rebuilt(tmp_path):
    root = C.build_synthetic(root=tmp_path / "stale", **{**SMALL, "n_tracks": 3})
    info = json.loads((root / "catalog.json").read_text())
    info["config"]["generator_version"] = "0"
    (root / "catalog.json").write_text(json.dumps(info))
    (root / "audio" / "syn00000.flac").write_bytes(b"old bytes")
    with pytest.warns(UserWarning, match="generator version '0'.*rebuilding"):
        C.build_synthetic(root=root, **{**SMALL, "n_tracks": 3})
    info = json.loads((root / "catalog.json").read_text())
    assert info["config"]["generator_version"] == synth.GENERATOR_VERSION and info["complete"]
    assert sf.read(root / "audio" / "syn00000.flac")[0].shape == (5 * 22050,)


@pytest.mark.parametrize("kw,match", [({"n_tracks": 0}, "n_tracks"), ({"seed": -1}, "seed"),
                                      ({"duration_s": 0.1}, "duration_s"), ({"n_jobs": 0}, "n_jobs"),
                                      ({"audio_format": "mp3"}, "audio_format"),
                                      ({"sr": 100000}, "sr must be <= 96000")])
def test_build_validates(tmp_path, kw, match):
    with pytest.raises(ValueError, match=match):
        C.build_synthetic(root=tmp_path / "x", **{**SMALL, **kw})
    assert not (tmp_path / "x").exists()         # refused before a file is written


# ------------------------------------------------------------------ load()
def test_load_synthetic_builds_under_the_data_root_and_reuses_it():
    cat = C.load("synthetic", n_tracks=6, seed=2, duration_s=2.0, n_jobs=1, progress=False)
    assert cat.root == (data_dir() / "synthetic_n6_s2_d2").resolve()
    assert len(cat) == 6 and cat.name == "synthetic_n6_s2_d2"
    stamp = (cat.root / "catalog.json").stat().st_mtime_ns
    again = C.load("synthetic", n_tracks=6, seed=2, duration_s=2.0, n_jobs=1, progress=False)
    assert (cat.root / "catalog.json").stat().st_mtime_ns == stamp
    assert np.array_equal(again.tags, cat.tags)
    # by folder name under the data root, and by path
    assert len(C.load("synthetic_n6_s2_d2")) == 6 and len(C.load(cat.root)) == 6


def test_events_variant_builds_in_its_own_folder_and_adds_event_columns():
    kw = dict(n_tracks=8, seed=0, duration_s=2.0, n_jobs=1, progress=False)
    plain, ev = C.load("synthetic", **kw), C.load("synthetic", events=True, **kw)
    assert plain.name == "synthetic_n8_s0_d2" and ev.name == "synthetic_n8_s0_d2_ev"
    assert ev.root == C.synthetic_root(8, 0, 2.0, events=True).resolve() != plain.root
    assert "events" not in plain.info["config"] and ev.info["config"]["events"] is True
    # on disk: the 46 tags, then the event tags, in category Recording
    n_plain = len(synth.TAGS)
    assert list(pd.read_csv(ev.root / "tags.csv").columns) == ["track_id", *synth.TAGS, *synth.EVENT_TAGS]
    voc = pd.read_csv(ev.root / "vocabulary.csv")
    assert list(voc["tag"].iloc[n_plain:]) == list(synth.EVENT_TAGS)
    assert set(voc["category"].iloc[n_plain:]) == {"Recording"}
    assert ev.category_indices("Recording").tolist()[-len(synth.EVENT_TAGS):] == \
        list(range(n_plain, n_plain + len(synth.EVENT_TAGS)))
    assert np.array_equal(ev.tags[:, :n_plain], plain.tags)
    assert "events" in ev.attributes.columns and "events" not in plain.attributes.columns
    # a track without events sounds as in the default catalog; one with events does not
    for i, events in enumerate(ev.attributes["events"]):
        same = ev.audio_path(i).read_bytes() == plain.audio_path(i).read_bytes()
        assert same == (events == ""), (i, events)
    assert (ev.attributes["events"] != "").any()
    with pytest.raises(ValueError, match="events"):
        C.build_synthetic(events="yes", **kw)


@pytest.fixture
def seen(built, monkeypatch):
    """The keyword arguments the music21 builder received; the builder returns ``built``."""
    received = {}

    def fake_build(**kw):
        received["music21"] = kw
        return built

    monkeypatch.setitem(C.BUILDERS, "music21", fake_build)
    return received


def test_load_dispatches_music21_and_mtat(built, seen, monkeypatch):
    cat = C.load("music21", n_tracks=12, seed=0)
    assert seen["music21"] == {"n_tracks": 12, "seed": 0} and len(cat) == 12
    # the notebooks' duration_s reaches the music21 builder as its clip length
    C.load("music21", n_tracks=12, seed=0, duration_s=12.0)
    assert seen["music21"] == {"n_tracks": 12, "seed": 0, "clip_s": 12.0}
    with pytest.raises(TypeError, match="not both"):
        C.load("music21", n_tracks=12, duration_s=12.0, clip_s=10.0)

    monkeypatch.setitem(C.LOADERS, "mtat", lambda **kw: (seen.setdefault("mtat", kw), C.read(built))[1])
    assert len(C.load("mtat", folder="/somewhere")) == 12 and seen["mtat"] == {"folder": "/somewhere"}


def test_lesson_catalog_sizes_generated_catalogs_and_reads_others_as_they_are(built, seen, monkeypatch):
    C.lesson_catalog("music21", n_tracks=12, seed=3, duration_s=20.0, progress=False)
    assert seen["music21"] == {"n_tracks": 12, "seed": 3, "clip_s": 20.0, "progress": False}
    C.lesson_catalog("music21", n_tracks=12, seed=3)
    assert seen["music21"] == {"n_tracks": 12, "seed": 3}
    # a folder has its own size: the notebook's n_tracks, seed and duration_s do not reach it
    # (load() refuses them for a folder, so this would raise if they did)
    cat = C.lesson_catalog(built, n_tracks=999, seed=7, duration_s=1.0, n_jobs=2)
    assert len(cat) == SMALL["n_tracks"] and cat.root == C.read(built).root
    monkeypatch.setitem(C.LOADERS, "mtat", lambda **kw: (seen.__setitem__("mtat", kw), C.read(built))[1])
    assert len(C.lesson_catalog("mtat", n_tracks=999, seed=7)) == 12 and seen["mtat"] == {}


def test_a_builder_entered_in_builders_alone_is_loaded_and_named(built, monkeypatch):
    # CONTRIBUTING: a new catalog is a builder and/or a loader; a builder alone must reach load(),
    # lesson_catalog() (the notebooks) and the errors' lists of sources
    received = {}
    monkeypatch.setitem(C.BUILDERS, "toy", lambda **kw: (received.update(kw), built)[1])
    assert len(C.load("toy", n_tracks=12)) == 12 and received == {"n_tracks": 12}
    assert len(C.lesson_catalog("toy", n_tracks=12, seed=3)) == 12 and received == {"n_tracks": 12, "seed": 3}
    with pytest.raises(ValueError, match=r"cannot build 'nope': buildable catalogs are \(.*'toy'\)"):
        C.build("nope")
    with pytest.raises(FileNotFoundError, match=r"not a source name \(.*'folder', 'toy'\)"):
        C.load("nope")


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no catalog 'nope'"):
        C.load("nope")
    with pytest.raises(TypeError, match="keyword"):
        C.load(tmp_path, n_tracks=3)
    with pytest.raises(FileNotFoundError, match="tracks.csv"):
        C.read(tmp_path)
    with pytest.raises(ValueError, match="cannot build"):
        C.build("mtat")


# ------------------------------------------------------------------ the Catalog contract
def _toy(n=4, m=3, **over):
    tracks = pd.DataFrame({"track_id": [f"t{i}" for i in range(n)], "artist_id": ["a", "a", "b", "c"][:n],
                           "split": ["train", "train", "val", "test"][:n], "path": [f"{i}.wav" for i in range(n)],
                           "duration_s": 1.0})
    vocab = pd.DataFrame({"tag": [f"g{j}" for j in range(m)], "category": ["Genre"] * m})
    kw = dict(name="toy", root="/tmp", tracks=tracks, tags=np.full((n, m), 0.5, np.float32), vocabulary=vocab)
    kw.update(over)
    return C.Catalog(**kw)


def test_catalog_validates_its_fields():
    cat = _toy()
    assert len(cat) == 4 and cat.split_indices("val").tolist() == [2]
    with pytest.raises(ValueError, match="shape"):
        _toy(tags=np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        _toy(tags=np.full((4, 3), 1.5))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        _toy(tags=np.full((4, 3), np.nan))
    with pytest.raises(ValueError, match="missing column"):
        _toy(tracks=cat.tracks.drop(columns="split"))
    with pytest.raises(ValueError, match="split values"):
        _toy(tracks=cat.tracks.assign(split=["train", "dev", "val", "test"]))
    with pytest.raises(ValueError, match="duplicate"):
        _toy(tracks=cat.tracks.assign(track_id=["x", "x", "y", "z"]))
    with pytest.raises(ValueError, match="split must be"):
        cat.split_indices("validation")
    with pytest.raises(IndexError):
        cat.audio_path(4)
    with pytest.raises(ValueError, match=r"category must be one of \('Genre',\), got 'Mood'"):
        cat.category_indices("Mood")


# ------------------------------------------------------------------ from_folder
def _wav(path, seconds=2.0, sr=16000):
    t = np.arange(int(seconds * sr)) / sr
    sf.write(path, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), sr)


@pytest.fixture()
def folder(tmp_path):
    audio = tmp_path / "music"
    (audio / "sub").mkdir(parents=True)
    for tid in ("a1", "a2", "a3", "a4", "b1", "b2", "dup"):
        _wav(audio / f"{tid}.wav")
    _wav(audio / "sub" / "c1.flac")                        # found recursively, any format
    _wav(audio / "short.wav", seconds=0.2)
    (audio / "broken.wav").write_bytes(b"RIFF not really a wav file")
    _wav(audio / "orphan.wav")                              # no row in the CSV
    rows = [("a1", "art1", 0.9, 0.0), ("a2", "art1", 0.1, 1.0), ("a3", "art2", 0.5, 0.5),
            ("a4", "art3", 0.0, 0.2), ("b1", "art4", 1.0, 1.0), ("b2", "", 0.3, 0.7),
            ("c1", "art5", 0.2, 0.2), ("dup", "art6", 0.5, 0.5), ("dup", "art6", 0.6, 0.6),
            ("gone", "art7", 0.5, 0.5), ("neg", "art8", -0.1, 0.5), ("big", "art8", 0.5, 1.2),
            ("nan", "art9", np.nan, 0.5), ("short", "art9", 0.5, 0.5), ("broken", "art9", 0.5, 0.5),
            ("text", "art9", 0.5, "high")]
    df = pd.DataFrame(rows, columns=["track_id", "artist_id", "rock", "calm"])
    df.to_csv(tmp_path / "tags.csv", index=False)
    pd.DataFrame({"tag": ["rock", "calm"], "category": ["Genre", "Mood"]}).to_csv(tmp_path / "vocab.csv", index=False)
    return audio, tmp_path / "tags.csv", tmp_path / "vocab.csv"


def test_from_folder_keeps_good_rows_and_reports_every_bad_one(folder):
    audio, tags_csv, vocab_csv = folder
    with pytest.warns(UserWarning) as rec:
        cat = C.from_folder(audio, tags_csv, vocab_csv, progress=False)
    same, skipped = sorted((str(w.message) for w in rec), key=lambda m: "skipped" in m)
    assert len(rec) == 2 and "skipped 9 row(s)" in skipped
    # the fixture's files share one recording: said, and every copy goes to one split
    assert "6 track(s) have the same audio as another (kept in the same split)" in same
    copies = cat.tracks["track_id"] != "c1"                      # c1 is the one other recording
    assert cat.tracks.loc[copies, "split"].nunique() == 1
    assert list(cat.track_ids) == ["a1", "a2", "a3", "a4", "b1", "b2", "c1", "dup"]
    assert cat.tags.dtype == np.float32 and cat.tags[0].tolist() == pytest.approx([0.9, 0.0])
    assert cat.categories == ["Genre", "Mood"]
    assert cat.tracks["duration_s"].iloc[0] == pytest.approx(2.0)
    assert cat.audio_path(6).name == "c1.flac" and cat.audio_path(6).is_file()
    assert cat.tracks["artist_id"].iloc[5] == "b2"                       # blank artist: its own
    reasons = dict(zip(cat.skipped["track_id"], cat.skipped["reason"]))
    assert reasons["dup"].startswith("duplicate track id (first at row 9")
    assert reasons["gone"].startswith("file not found")
    assert "outside [0, 1]" in reasons["neg"] and "['rock']" in reasons["neg"]
    assert "outside [0, 1]" in reasons["big"] and "['calm']" in reasons["big"]
    assert reasons["nan"] == "tag value missing (NaN) in ['rock']"
    assert reasons["short"].startswith("too short")
    assert reasons["broken"].startswith("unreadable audio")
    assert reasons["orphan"].startswith("unknown id")
    assert reasons["text"] == "tag value not a number in ['calm']"
    assert len(cat.skipped) == 9
    report = C.format_skipped(cat.skipped)
    assert report.startswith("skipped 9 row(s)") and "gone" in report
    # artist-disjoint split, assigned deterministically
    by_artist = cat.tracks.groupby("artist_id")["split"].nunique()
    assert (by_artist == 1).all()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = C.from_folder(audio, tags_csv, vocab_csv, progress=False)
    assert again.tracks.equals(cat.tracks)


def test_from_folder_round_trips_through_save(folder, tmp_path):
    audio, tags_csv, vocab_csv = folder
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cat = C.from_folder(audio, tags_csv, vocab_csv, progress=False)
    back = C.read(cat.save(tmp_path / "saved"))
    assert np.array_equal(back.tags, cat.tags) and list(back.track_ids) == list(cat.track_ids)
    assert back.audio_path(0) == cat.audio_path(0)
    # ids that look like missing values stay ids; unknown durations stay NaN
    odd = C.Catalog("odd", cat.root, cat.tracks.assign(track_id=["NA", "null", "nan"] + list(cat.track_ids[3:]),
                                                       duration_s=np.nan), cat.tags, cat.vocabulary)
    back = C.read(odd.save(tmp_path / "odd"))
    assert list(back.track_ids[:3]) == ["NA", "null", "nan"] and back.tracks["duration_s"].isna().all()


def test_save_needs_a_folder_so_the_users_own_files_stay(tmp_path):
    audio = tmp_path / "music"
    audio.mkdir()
    sf.write(audio / "a.wav", np.zeros(16000, np.float32), 8000)
    mine = "track_id,rock\na,0.5\nb,0.25\n"                # the user's tags, beside the audio
    (audio / "tags.csv").write_text(mine)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                    # b has no audio: skipped
        cat = C.from_folder(audio, audio / "tags.csv", progress=False)
    with pytest.raises(TypeError, match="root"):
        cat.save()                                         # had written into the audio folder
    with pytest.raises(FileExistsError, match=r"holds tags\.csv but no catalog\.json"):
        cat.save(audio)                                    # named, but the tags.csv is the user's
    assert (audio / "tags.csv").read_text() == mine and not (audio / "tracks.csv").exists()
    again = C.read(cat.save(tmp_path / "saved"))           # a catalog's own folder is saved over
    assert len(C.read(again.save(tmp_path / "saved"))) == len(cat)


def test_read_names_the_file_of_a_missing_column(folder, tmp_path):
    audio, tags_csv, vocab_csv = folder
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        root = C.from_folder(audio, tags_csv, vocab_csv, progress=False).save(tmp_path / "saved")
    tracks = (root / "tracks.csv").read_text()
    (root / "tracks.csv").write_text(tracks.replace(",split,", ",fold,", 1))
    with pytest.raises(ValueError, match=r"tracks\.csv is missing column\(s\) \['split'\]"):
        C.read(root)
    (root / "tracks.csv").write_text(tracks)
    (root / "vocabulary.csv").write_text("tag,kind\nrock,Genre\ncalm,Mood\n")
    # a KeyError about pandas' index before
    with pytest.raises(ValueError, match=r"vocabulary\.csv is missing column\(s\) \['category'\]"):
        C.read(root)


def test_read_matches_tags_rows_to_tracks_by_id(built, tmp_path):
    root = tmp_path / "copy"
    C.read(built).save(root)
    cat = C.read(root)
    lines = (root / "tags.csv").read_text().splitlines()
    (root / "tags.csv").write_text("\n".join([lines[0], *lines[:0:-1]]) + "\n")   # rows reversed
    np.testing.assert_array_equal(C.read(root).tags, cat.tags)
    # two rows of one id (even in the order of tracks.csv) name the file, not a duplicate track
    tracks = (root / "tracks.csv").read_text().splitlines()
    (root / "tracks.csv").write_text("\n".join([*tracks, tracks[1]]) + "\n")
    (root / "tags.csv").write_text("\n".join([*lines, lines[1]]) + "\n")
    with pytest.raises(ValueError, match="tags.csv must list the track ids of tracks.csv, each once"):
        C.read(root)


def test_from_folder_error_messages(folder, tmp_path):
    audio, tags_csv, vocab_csv = folder
    with pytest.raises(FileNotFoundError, match="audio folder not found"):
        C.from_folder(tmp_path / "nowhere", tags_csv)
    with pytest.raises(ValueError, match=r"duplicates must be one of \('group', 'skip', 'error'\)"):
        C.from_folder(audio, tags_csv, duplicates="keep")
    with pytest.raises(FileNotFoundError, match="tags CSV not found"):
        C.from_folder(audio, tmp_path / "none.csv")
    for bad in (None, -1.0, "1", float("nan"), float("inf")):    # each had switched the check off
        with pytest.raises(ValueError, match="min_duration_s must be a number of seconds >= 0"):
            C.from_folder(audio, tags_csv, min_duration_s=bad)
    with pytest.raises(ValueError, match=r"missing column\(s\) \['clip_id'\].*pass id_column"):
        C.from_folder(audio, tags_csv, id_column="clip_id")
    with pytest.raises(ValueError, match=r"missing column\(s\) \['file'\]"):
        C.from_folder(audio, tags_csv, path_column="file")
    bad_vocab = tmp_path / "v2.csv"
    pd.DataFrame({"name": ["rock"], "category": ["Genre"]}).to_csv(bad_vocab, index=False)
    with pytest.raises(ValueError, match=r"missing column\(s\) \['tag'\]"):
        C.from_folder(audio, tags_csv, bad_vocab)
    pd.DataFrame({"tag": ["rock", "jazz"], "category": ["Genre", "Genre"]}).to_csv(bad_vocab, index=False)
    with pytest.raises(ValueError, match=r"without a column .*\['jazz'\].*not in the vocabulary: \['calm'\]"):
        C.from_folder(audio, tags_csv, bad_vocab)
    only_ids = tmp_path / "ids.csv"
    pd.DataFrame({"track_id": ["a1"]}).to_csv(only_ids, index=False)
    with pytest.raises(ValueError, match="no tag columns"):
        C.from_folder(audio, only_ids)
    with pytest.raises(ValueError, match=r"row 10 \(track_id 'dup'\): duplicate track id \(first at row 9, kept\)"):
        C.from_folder(audio, tags_csv, vocab_csv, strict=True, progress=False)
    none_ok = tmp_path / "none_ok.csv"
    pd.DataFrame({"track_id": ["zz"], "rock": [0.5]}).to_csv(none_ok, index=False)
    with pytest.raises(ValueError, match="no usable rows"):
        C.from_folder(audio, none_ok, progress=False)


def test_from_folder_with_path_and_split_columns(folder, tmp_path):
    audio, _, _ = folder
    csv = tmp_path / "with_split.tsv"
    pd.DataFrame({"track_id": ["x", "y", "z", "w", "v"],
                  "file": ["a1.wav", "sub/c1.flac", "b1.wav", "nope.wav", "a2.wav"],
                  "artist_id": ["p", "p", "q", "r", "s"], "split": ["train", "test", "val", "train", "dev"],
                  "happy": [0.1, 0.2, 0.3, 0.4, 0.5]}).to_csv(csv, sep="\t", index=False)
    with pytest.warns(UserWarning) as rec:
        cat = C.from_folder(audio, csv, path_column="file", progress=False)
    messages = " ".join(str(w.message) for w in rec)
    assert "not artist-disjoint" in messages and "file not found: nope.wav" in messages
    assert list(cat.tracks["split"]) == ["train", "test", "val"]
    assert cat.vocabulary.to_dict("list") == {"tag": ["happy"], "category": ["Tag"]}
    assert "split 'dev' is not one of" in messages
    assert cat.skipped["track_id"].tolist() == ["v", "w"]            # path column: no orphan scan
    # x and z are one recording that the CSV puts in two splits: said once, and truly
    assert "puts one recording in two splits: x (train) = z (val)" in messages or \
        "puts one recording in two splits: z (val) = x (train)" in messages
    assert "kept in the same split" not in messages
    # each warning points at the caller's line, not into mrlib
    assert {Path(w.filename).name for w in rec} == {Path(__file__).name}


def test_from_folder_of_the_current_folder_is_named_after_it(folder, monkeypatch):
    audio, tags_csv, vocab_csv = folder
    monkeypatch.chdir(audio)
    with pytest.warns(UserWarning) as rec:
        cat = C.from_folder(".", tags_csv, vocab_csv, progress=False)
    assert len(rec) == 2 and all(str(w.message).startswith(f"from_folder({audio.name}): ") for w in rec)
    assert cat.name == cat.info["name"] == audio.name


def test_from_folder_reads_artist_and_split_from_the_users_column_names(folder, tmp_path):
    # a collection's own table names its columns as it likes: the same rows under other names
    # give the same catalog
    audio, _, _ = folder
    rows = {"track_id": ["x", "y", "z"], "file": ["a1.wav", "sub/c1.flac", "b2.wav"],
            "happy": [0.1, 0.2, 0.3]}
    default, renamed = tmp_path / "default.csv", tmp_path / "renamed.csv"
    pd.DataFrame({**rows, "artist_id": ["p", "p", "q"], "split": ["train", "train", "test"]}).to_csv(
        default, index=False)
    pd.DataFrame({**rows, "artist": ["p", "p", "q"], "set": ["train", "train", "test"]}).to_csv(
        renamed, index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = C.from_folder(audio, default, path_column="file", progress=False)
        b = C.from_folder(audio, renamed, path_column="file", artist_column="artist",
                          split_column="set", progress=False)
    assert list(b.tracks["split"]) == ["train", "train", "test"]
    assert b.tracks["artist_id"].nunique() == 2
    pd.testing.assert_frame_equal(a.tracks, b.tracks)
    assert "set" not in b.vocabulary["tag"].tolist() and "artist" not in b.vocabulary["tag"].tolist()


def test_load_folder_dispatch(folder):
    audio, tags_csv, vocab_csv = folder
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cat = C.load("folder", audio_dir=audio, tags_csv=tags_csv, vocabulary_csv=vocab_csv, progress=False)
    assert len(cat) == 8


# ------------------------------------------------------------------ CLI
def test_cli_build_and_info(capsys):
    rc = C.main(["build", "synthetic", "--n-tracks", "4", "--seed", "1", "--duration", "2", "--jobs", "1",
                 "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0 and "wrote" in out and "synthetic_n4_s1_d2" in out and " s" in out
    rc = C.main(["info", "synthetic", "--n-tracks", "4", "--seed", "1", "--duration", "2"])
    out = capsys.readouterr().out
    assert rc == 0 and "N=4" in out and "Movement" in out
    assert C.main(["info", "synthetic", "--n-tracks", "5", "--duration", "2"]) == 1
    assert "not built; run python -m mrlib.catalog build synthetic --n-tracks 5 --seed 0 --duration 2\n" \
        in capsys.readouterr().out
    # info describes a generated catalog; it never builds one (music21 took minutes)
    assert C.main(["info", "music21", "--n-tracks", "3", "--duration", "4"]) == 1
    assert "music21_n3_s0_d4: not built; run python -m mrlib.catalog build music21 --n-tracks 3 " \
        "--seed 0 --duration 4" in capsys.readouterr().out
    assert not list(data_dir().glob("music21_*"))
    assert C.main(["info", "no_such_catalog"]) == 2
    # the events variant: its own folder, found again by info --events
    rc = C.main(["build", "synthetic", "--n-tracks", "4", "--seed", "1", "--duration", "2", "--jobs", "1",
                 "--no-progress", "--events"])
    assert rc == 0 and "synthetic_n4_s1_d2_ev" in capsys.readouterr().out
    rc = C.main(["info", "synthetic", "--n-tracks", "4", "--seed", "1", "--duration", "2", "--events"])
    out = capsys.readouterr().out
    assert rc == 0 and '"events": true' in out
    for cmd in ("build", "info"):
        assert C.main([cmd, "music21", "--events"]) == 2
        assert "synthetic catalog only" in capsys.readouterr().err
    # a folder is read as it is: the flags that pick a generated catalog are refused, not ignored
    folder = str(data_dir() / "synthetic_n4_s1_d2_ev")
    assert C.main(["info", folder]) == 0 and "N=4" in capsys.readouterr().out
    assert C.main(["info", folder, "--n-tracks", "9", "--events"]) == 2
    assert "--n-tracks --events pick one of the generated catalogs" in capsys.readouterr().err


def test_top_tags_orders_by_likelihood_and_cuts_at_the_threshold(tmp_path):
    from mrlib.catalog_format import Catalog

    tracks = pd.DataFrame({"track_id": ["a", "b"], "artist_id": ["x", "y"], "split": ["train", "test"],
                           "path": ["a.flac", "b.flac"], "duration_s": [1.0, 1.0]})
    vocab = pd.DataFrame({"tag": ["rock", "calm", "piano", "love"],
                          "category": ["Genre", "Mood", "Instrument", "Lyrics"]})
    tags = np.array([[0.9, 0.5, 0.2, 0.5], [0.0, 0.0, 0.0, 0.0]], dtype=np.float32)
    cat = Catalog(name="toy", root=tmp_path, tracks=tracks, tags=tags, vocabulary=vocab)
    assert cat.top_tags(0) == ["rock", "calm", "love"]            # ties keep the vocabulary order
    assert cat.top_tags(0, k=2, category=True) == ["rock (Gen)", "calm (Moo)"]
    assert cat.top_tags(0, threshold=0.1) == ["rock", "calm", "love", "piano"]
    assert cat.top_tags(1) == []
    with pytest.raises(IndexError):
        cat.top_tags(2)
    # k is a count: a float or a bool is refused by name, not by a slice's own error
    with pytest.raises(TypeError, match="k must be an int"):
        cat.top_tags(0, k=1.5)
    with pytest.raises(ValueError, match="k must be >= 0"):
        cat.top_tags(0, k=-1)


def test_read_table_refuses_a_table_without_the_columns_asked_for(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,b\n1,2\n")
    assert list(C.read_table(path, columns=("b", "a")).columns) == ["a", "b"]
    with pytest.raises(ValueError, match=r"t\.csv is missing column\(s\) \['c'\]; its columns are \['a', 'b'\]"):
        C.read_table(path, columns=("a", "c"))
