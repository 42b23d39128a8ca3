"""A small MagnaTagATune-format folder with tiny generated mp3 clips, for tests and offline lessons."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from mrlib.checks import check_int, check_positive
from mrlib.music21_corpus import _slug
from mrlib.odd_one_out import simulate_votes, write_comparisons
from mrlib.mtat_format import ANNOTATIONS_FILE, CLIP_INFO_COLUMNS, CLIP_INFO_FILE, COMPARISONS_FILE, MTAT_TAGS

__all__ = ["FixtureInfo", "write_fixture"]

_SR = 16000    # the sample rate of the clips, as the release's


@dataclass
class FixtureInfo:
    """What :func:`write_fixture` wrote.

    Attributes
    ----------
    folder : Path
        Where the three tables are, under their release names, and the clips, under ``mp3/``.
    clip_ids : numpy.ndarray of int64, shape (N,)
        Clip ids in annotation order (not 0 ... N-1: ids and indices must not be confused).
    artists : numpy.ndarray of str, shape (N,)
    broken : list of int
        Clip ids written as empty (0-byte) mp3 files.

    Notebook: 08_triplet_matchnet.ipynb
    """

    folder: Path
    clip_ids: np.ndarray
    artists: np.ndarray
    broken: list


def _fixture_audio(style: np.ndarray, sr: int, duration_s: float, rng: np.random.Generator) -> np.ndarray:
    """A short tone whose pitch, brightness and noise level follow ``style`` (3 numbers in [0, 1])."""
    pitch, bright, noisy = style
    n = int(round(sr * duration_s))
    t = np.arange(n) / sr
    f0 = 110.0 * 2.0 ** (3.0 * pitch)                    # 110 Hz ... 880 Hz
    h = np.arange(1, 13)
    h = h[h * f0 < 0.45 * sr][:, None]                   # the harmonics below 0.45 sr, one a row
    # Brighter styles keep more energy in the upper harmonics.
    y = ((h ** -(3.0 - 2.5 * bright)) * np.sin(2 * np.pi * h * f0 * t
                                               + rng.uniform(0, 2 * np.pi, size=h.shape))).sum(0)
    # Four notes per second: an amplitude envelope gives the clip some rhythm.
    env = 0.6 + 0.4 * np.cos(2 * np.pi * 4.0 * t) ** 2
    y = y / max(np.abs(y).max(), 1e-9) * env
    y = (1 - 0.8 * noisy) * y + 0.8 * noisy * rng.uniform(-1, 1, n)
    return (0.5 * y / max(np.abs(y).max(), 1e-9)).astype(np.float32)


def write_fixture(
    folder: str | Path,
    n_clips: int = 24,
    n_artists: int = 6,
    n_comparisons: int = 20,
    *,
    duration_s: float = 2.0,
    n_broken: int = 0,
    audio: bool = True,
    seed: int = 0,
) -> FixtureInfo:
    """Write a small MagnaTagATune-format folder: the three tables (all 188 tag columns: the
    exact release format) and tiny generated mp3 clips (16 kHz mono, as the release's).

    Each artist has a latent style (pitch, brightness, noisiness); its clips vary around it.
    The audio renders the style, the tags are drawn from it (each artist favours a few tags),
    and ``comparisons_final.csv`` holds votes of simulated players
    (:func:`mrlib.odd_one_out.simulate_votes`: 7 players, noise 0.05) by the cosine similarity of
    the styles, so the votes are audible and a handcrafted-feature baseline can learn them.

    Parameters
    ----------
    folder : str or Path
        Created if missing; the files are (over)written there, the mp3s under ``mp3/0`` ... ``mp3/f``.
    n_clips : int, default 24
    n_artists : int, default 6
        1 <= n_artists <= n_clips.
    n_comparisons : int, default 20
        Rows of ``comparisons_final.csv`` (distinct clip triples).
    duration_s : float, default 2.0
        Clip length in seconds (the release's are about 29 s).
    n_broken : int, default 0
        The last ``n_broken`` clips get empty (0-byte) mp3 files, as three clips of the release
        have, to exercise skip reports.
    audio : bool, default True
        Write the mp3 clips (False: the tables only).
    seed : int, default 0

    Returns
    -------
    FixtureInfo

    Notebook: 08_triplet_matchnet.ipynb
    """
    # every argument is checked before anything is written
    for name, value, low in (("n_clips", n_clips, 3), ("n_artists", n_artists, 1),
                             ("n_comparisons", n_comparisons, 1), ("n_broken", n_broken, 0)):
        check_int(name, value, low)
    if n_artists > n_clips or n_broken > n_clips:
        raise ValueError(f"n_artists={n_artists} and n_broken={n_broken} must not exceed "
                         f"n_clips={n_clips}")
    check_positive("duration_s", duration_s)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    clip_ids, artist_of, artist_names, style = _fixture_clips(rng, n_clips, n_artists)
    # 0/1 tags: each artist favours three tags (present with probability 0.8), anything else is
    # a rare false positive (probability 0.02), like noisy crowd-sourced annotations
    favoured = np.stack([rng.choice(len(MTAT_TAGS), 3, replace=False) for _ in range(n_artists)])
    p = np.full((n_clips, len(MTAT_TAGS)), 0.02)
    p[np.arange(n_clips)[:, None], favoured[artist_of]] = 0.8
    ann = pd.DataFrame((rng.random(p.shape) < p).astype(np.int64), columns=MTAT_TAGS)
    clip_info = _clip_info(rng, clip_ids, artist_of, artist_names, duration_s)
    mp3_paths = clip_info["mp3_path"].tolist()
    ann.insert(0, "clip_id", clip_ids)
    ann["mp3_path"] = mp3_paths
    quoted = {"sep": "\t", "index": False, "quoting": csv.QUOTE_ALL, "lineterminator": "\r\n"}
    ann.to_csv(folder / ANNOTATIONS_FILE, **quoted)
    clip_info[list(CLIP_INFO_COLUMNS)].to_csv(folder / CLIP_INFO_FILE, **quoted)
    centred = style - 0.5
    unit = centred / np.maximum(np.linalg.norm(centred, axis=1, keepdims=True), 1e-12)
    S = 0.5 * (1.0 + unit @ unit.T)                        # cosine mapped to [0, 1]
    votes = simulate_votes(S, n_comparisons, n_players=7, noise=0.05,
                           seed=int(rng.integers(2**31)), clip_ids=clip_ids, paths=mp3_paths)
    write_comparisons(votes, folder / COMPARISONS_FILE)
    broken = (_write_clips(folder / "mp3", mp3_paths, clip_ids, style, n_broken, duration_s, rng)
              if audio else [])
    return FixtureInfo(folder=folder, clip_ids=clip_ids,
                       artists=artist_names[artist_of], broken=broken)


def _fixture_clips(rng: np.random.Generator, n_clips: int, n_artists: int):
    """Clip ids, each clip's artist (index), the artist names, and each clip's latent style."""
    # Ids as in the release: increasing, with gaps, not starting at 0.
    clip_ids = 2 + np.cumsum(rng.integers(1, 6, size=n_clips)).astype(np.int64)
    artist_of = np.concatenate([np.arange(n_artists),
                                rng.integers(0, n_artists, n_clips - n_artists)])
    rng.shuffle(artist_of)
    artist_names = np.array([f"Fixture Artist {chr(65 + a % 26)}{a // 26 or ''}"
                             for a in range(n_artists)])
    artist_style = rng.uniform(0.1, 0.9, size=(n_artists, 3))
    style = np.clip(artist_style[artist_of] + rng.normal(0, 0.07, size=(n_clips, 3)), 0, 1)
    return clip_ids, artist_of, artist_names, style


def _clip_info(rng: np.random.Generator, clip_ids: np.ndarray, artist_of: np.ndarray,
               artist_names: np.ndarray, duration_s: float) -> pd.DataFrame:
    """The table of ``clip_info_final.csv``, in the release's shape; its mp3 paths are
    ``<hex dir>/<artist>-<album>-<nn>-<title>-<start>-<end>.mp3``."""
    # Each artist's clips numbered 1, 2, ... in clip order.
    track_no = pd.Series(artist_of).groupby(artist_of).cumcount().to_numpy(np.int64) + 1
    info = pd.DataFrame({"clip_id": clip_ids, "track_number": track_no,
                         "title": [f"Fixture Track {n}" for n in track_no],
                         "artist": artist_names[artist_of],
                         "album": [f"Fixture Album {a + 1}" for a in artist_of]})
    info["url"] = [f"http://example.invalid/albums/{_slug(album)}/" for album in info.album]
    info["segmentStart"] = 30 * rng.integers(0, 4, size=len(clip_ids))
    info["segmentEnd"] = info.segmentStart + int(round(duration_s))
    info["original_url"] = [f"http://example.invalid/all/{n:02d}-{_slug(title)}.mp3"
                            for n, title in zip(track_no, info.title)]
    info["mp3_path"] = [f"{i % 16:x}/{_slug(c.artist)}-{_slug(c.album)}-{c.track_number:02d}-"
                        f"{_slug(c.title)}-{c.segmentStart}-{c.segmentEnd}.mp3"
                        for i, c in enumerate(info.itertuples())]
    return info


def _write_clips(audio_root: Path, mp3_paths: list[str], clip_ids: np.ndarray, style: np.ndarray,
                 n_broken: int, duration_s: float, rng: np.random.Generator) -> list[int]:
    """Write the mp3 clips (the last ``n_broken`` empty); returns the ids of the empty ones."""
    n_sound = len(mp3_paths) - n_broken
    for i, rel in enumerate(mp3_paths):
        path = audio_root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if i < n_sound:
            y = _fixture_audio(style[i], _SR, duration_s, rng)
            sf.write(path, y, _SR, format="MP3", subtype="MPEG_LAYER_III")
        else:
            path.write_bytes(b"")
    return [int(c) for c in clip_ids[n_sound:]]
