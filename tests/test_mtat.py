"""Tests of mrlib.mtat: the MagnaTagATune file formats, the fixture writer, tags, categories,
artist-disjoint splits and the catalog tables."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mrlib.mtat_format import _BY_CATEGORY
from mrlib.odd_one_out import ID_COLUMNS, comparisons_to_triplets, read_comparisons
from mrlib.mtat import (
    ANNOTATIONS_FILE,
    CATEGORIES,
    CLIP_INFO_COLUMNS,
    CLIP_INFO_FILE,
    COMPARISONS_FILE,
    MTAT_TAGS,
    TAG_CATEGORIES,
    catalog_frames,
    read_annotations,
    read_clip_info,
    tag_category,
    write_fixture,
)


@pytest.fixture(scope="module")
def fixture_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mtat")
    info = write_fixture(folder, n_clips=24, n_artists=6, n_comparisons=20, n_broken=2,
                         duration_s=1.0, seed=0)
    return folder, info


def test_tag_table_covers_the_release():
    assert len(MTAT_TAGS) == 188 and len(set(MTAT_TAGS)) == 188
    assert set(TAG_CATEGORIES) == set(MTAT_TAGS)          # every tag has exactly one category
    assert sum(len(tags) for _, tags in _BY_CATEGORY) == 188   # none is listed in two
    assert set(TAG_CATEGORIES.values()) <= set(CATEGORIES)
    spot = {"rock": "Genre", "piano": "Recording", "female vocal": "Recording", "sad": "Mood",
            "fast": "Movement", "no beat": "Movement", "english": "Lyrics", "lol": "Other"}
    for tag, cat in spot.items():
        assert tag_category(tag) == cat
    assert tag_category("  ROCK ") == "Genre" and tag_category("zydeco") == "Other"
    with pytest.raises(TypeError):
        tag_category(3)


def test_fixture_files_have_the_release_format(fixture_dir):
    folder, info = fixture_dir
    raw = (folder / ANNOTATIONS_FILE).read_bytes()
    header = raw.split(b"\r\n")[0].split(b"\t")
    assert header[0] == b'"clip_id"' and header[-1] == b'"mp3_path"'
    assert [h.strip(b'"').decode() for h in header[1:-1]] == list(MTAT_TAGS)
    lines = raw.split(b"\r\n")
    assert lines[-1] == b"" and len(lines) == 24 + 2           # header, 24 rows, final CRLF
    assert all(field.startswith(b'"') and field.endswith(b'"') for field in lines[1].split(b"\t"))
    info_header = (folder / CLIP_INFO_FILE).read_bytes().split(b"\r\n")[0]
    assert info_header == b"\t".join(b'"%s"' % c.encode() for c in CLIP_INFO_COLUMNS)
    comp = read_comparisons(folder / COMPARISONS_FILE)
    assert len(comp) == 20
    assert set(comp[list(ID_COLUMNS)].to_numpy().ravel()) <= set(info.clip_ids)
    ann = read_annotations(folder / ANNOTATIONS_FILE)
    np.testing.assert_array_equal(ann.clip_id, info.clip_ids)
    assert (np.diff(info.clip_ids) > 0).all() and info.clip_ids[0] > 2     # ids, not indices
    tags = ann[list(MTAT_TAGS)].to_numpy()
    assert tags.dtype == np.float32 and set(np.unique(tags)) <= {0.0, 1.0}
    clip_info = read_clip_info(folder / CLIP_INFO_FILE)
    assert list(clip_info.columns) == list(CLIP_INFO_COLUMNS)
    assert (clip_info.segmentEnd - clip_info.segmentStart == 1.0).all()
    # the mp3 clips exist where the tables say; the broken ones are empty
    for clip_id, rel in zip(ann.clip_id, ann.mp3_path):
        path = folder / "mp3" / rel
        assert path.is_file()
        assert (path.stat().st_size == 0) == (clip_id in info.broken)
    assert len(info.broken) == 2


def test_fixture_is_deterministic(tmp_path):
    a = write_fixture(tmp_path / "a", n_clips=8, n_artists=3, n_comparisons=5, audio=False, seed=3)
    b = write_fixture(tmp_path / "b", n_clips=8, n_artists=3, n_comparisons=5, audio=False, seed=3)
    for name in (ANNOTATIONS_FILE, CLIP_INFO_FILE, COMPARISONS_FILE):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    np.testing.assert_array_equal(a.artists, b.artists)
    assert not (tmp_path / "a" / "mp3").exists()


def test_catalog_frames(fixture_dir):
    folder, info = fixture_dir
    tracks, tags, vocab, report = catalog_frames(folder, seed=1)
    # the two empty mp3s are dropped and reported, nothing else is lost
    assert sorted(report.ids) == sorted(info.broken)
    assert [r.split(":")[0] for r in report.reasons] == ["empty", "empty"]
    assert "skipped 2" in str(report) and report.rows == [22, 23]
    assert len(tracks) == len(tags) == 22
    assert list(tracks.columns[:5]) == ["track_id", "artist_id", "split", "path", "duration_s"]
    assert tracks.track_id.dtype == np.int64
    assert not set(tracks.track_id) & set(info.broken)
    assert tags.dtype == np.float32 and tags.shape[1] == 188
    assert tags.min() >= 0 and tags.max() <= 1
    assert list(vocab.columns) == ["tag", "category"] and list(vocab.tag) == list(MTAT_TAGS)
    assert set(vocab.category) <= set(CATEGORIES)
    for path in tracks.path:                                   # relative to the folder
        assert not path.startswith("/") and (folder / path).is_file()
    np.testing.assert_allclose(tracks.duration_s, 1.0)
    # artists from clip_info, one split per artist
    artist_of = dict(zip(info.clip_ids, info.artists))
    assert (tracks.artist_id == tracks.track_id.map(artist_of)).all()
    assert (tracks.groupby("artist_id").split.nunique() == 1).all()
    assert set(tracks.split) == {"train", "val", "test"}
    # the tag matrix is the annotations' rows for the kept clips
    ann = read_annotations(folder / ANNOTATIONS_FILE).set_index("clip_id")
    np.testing.assert_array_equal(tags, ann.loc[tracks.track_id, list(MTAT_TAGS)].to_numpy())


def test_compared_subset_keeps_the_clips_the_votes_name(fixture_dir):
    # the 2017 protocol needs only the compared clips: about a thousand of the release's 25,863
    folder, _ = fixture_dir
    comp = read_comparisons(folder / COMPARISONS_FILE)
    tracks, tags, _, report = catalog_frames(folder, subset="compared", check_audio=False)
    assert set(tracks.track_id) == set(np.unique(comp[list(ID_COLUMNS)].to_numpy()))
    assert report.n_clips == len(tracks) == len(tags) < 24
    ann = read_annotations(folder / ANNOTATIONS_FILE).set_index("clip_id")
    np.testing.assert_array_equal(tags, ann.loc[tracks.track_id, list(MTAT_TAGS)].to_numpy())


def test_fixture_votes_become_catalog_triplets(fixture_dir):
    folder, info = fixture_dir
    tracks, _, _, _ = catalog_frames(folder)
    comp = read_comparisons(folder / COMPARISONS_FILE)
    t, r = comparisons_to_triplets(comp, id_to_index=tracks.track_id)
    assert t.min() >= 0 and t.max() < len(tracks)
    # rows naming a broken (dropped) clip are counted, not silently lost
    has_broken = comp[list(ID_COLUMNS)].isin(info.broken).any(axis=1).to_numpy()
    t_ids, plain = comparisons_to_triplets(comp)
    expected_missing = int(has_broken[np.unique(plain.rows)].sum())
    assert expected_missing > 0                                # the fixture exercises it
    assert r.n_missing_clips == expected_missing
    assert r.n_kept_rows == plain.n_kept_rows - expected_missing
    # the other triplets are the id triplets, translated to catalog indices
    pos = {c: i for i, c in enumerate(tracks.track_id)}
    keep = ~has_broken[plain.rows]
    np.testing.assert_array_equal(t, np.vectorize(pos.get)(t_ids[keep]))


def test_missing_things_give_clear_errors(tmp_path, fixture_dir):
    with pytest.raises(FileNotFoundError, match=r"nowhere/annotations_final\.csv\. The folder must hold"):
        catalog_frames(tmp_path / "nowhere")
    folder = tmp_path / "partial"
    write_fixture(folder, n_clips=6, n_artists=2, n_comparisons=3, audio=False)
    (folder / CLIP_INFO_FILE).unlink()
    with pytest.raises(FileNotFoundError, match="clip_info_final.csv"):
        catalog_frames(folder)
    folder = tmp_path / "noaudio"
    write_fixture(folder, n_clips=6, n_artists=2, n_comparisons=3, audio=False)
    with pytest.raises(FileNotFoundError, match="audio_dir"):
        catalog_frames(folder)
    tracks, _, _, report = catalog_frames(folder, check_audio=False)
    assert len(tracks) == 6 and report.ids == []
    src, _ = fixture_dir                                    # audio found through audio_dir
    tracks, _, _, _ = catalog_frames(src, audio_dir=src / "mp3")
    assert len(tracks) == 22
    with pytest.raises(ValueError, match="subset"):
        catalog_frames(src, subset="some")
    bad = tmp_path / "bad_annotations.csv"
    bad.write_text("clip_id\trock\tmp3_path\n1\t2\ta.mp3\n")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        read_annotations(bad)


def test_load_catalog(fixture_dir):
    from mrlib.catalog import Catalog, load
    from mrlib.mtat import load_catalog

    folder, info = fixture_dir
    catalog = load_catalog(folder, verbose=False)
    assert isinstance(catalog, Catalog)
    assert catalog.name == "mtat" and len(catalog) == 22
    assert catalog.tags.shape == (22, 188) and catalog.tags.dtype == np.float32
    assert list(catalog.vocabulary.columns) == ["tag", "category"]
    assert sorted(catalog.skipped.track_id) == sorted(str(i) for i in info.broken)
    assert catalog.audio_path(0).is_file()
    # the Catalog keeps ids as str; the comparisons name int ids: they still meet
    comp = read_comparisons(folder / COMPARISONS_FILE)
    t_cat, r_cat = comparisons_to_triplets(comp, id_to_index=catalog.tracks.track_id)
    frames = catalog_frames(folder)[0]
    t_int, _ = comparisons_to_triplets(comp, id_to_index=frames.track_id)
    np.testing.assert_array_equal(t_cat, t_int)
    assert r_cat.n_triplets > 0
    via_load = load("mtat", folder=folder, verbose=False)
    pd.testing.assert_frame_equal(via_load.tracks, catalog.tracks)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(n_clips=2), ValueError, "n_clips must be >= 3"),
    (dict(n_clips=5.0), TypeError, "n_clips must be an int"),
    (dict(n_clips=5, n_artists=6), ValueError, "must not exceed n_clips=5"),
    (dict(n_clips=5, n_artists=2, n_broken=6), ValueError, "must not exceed n_clips=5"),
    (dict(n_broken=-1), ValueError, "n_broken must be >= 0"),
    (dict(duration_s=float("nan")), ValueError, "duration_s must be a finite number > 0"),
])
def test_write_fixture_names_a_bad_argument(tmp_path, kwargs, error, match):
    with pytest.raises(error, match=match):
        write_fixture(tmp_path / "fx", audio=False, **kwargs)
    assert not (tmp_path / "fx").exists()                      # checked before anything is written


def test_a_tag_cell_that_is_not_a_number_is_named_by_line_and_column(tmp_path):
    bad = tmp_path / "annotations_final.csv"
    bad.write_text("clip_id\trock\tmp3_path\n1\t0\ta.mp3\n2\tyes\tb.mp3\n")
    with pytest.raises(ValueError, match=r"line 3, column 'rock': 'yes' is not a number"):
        read_annotations(bad)


def test_clip_info_without_a_release_column_is_refused(tmp_path):
    bad = tmp_path / "clip_info_final.csv"
    bad.write_text("clip_id\tartist\tmp3_path\n1\tA\ta.mp3\n")
    with pytest.raises(ValueError, match=r"missing column\(s\) \['track_number', 'title'"):
        read_clip_info(bad)
