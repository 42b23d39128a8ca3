"""Real music from the package registries: the ``music21`` catalog.

No MagnaTagATune, GTZAN or FMA audio installs from a package registry, but real repertoire
does: ``music21`` ships a corpus of about 15,000 scores with metadata (Essen folk songs, O'Neill's
and Ryan's fiddle tunes, Aird's airs, Bach chorales, Palestrina masses, Monteverdi madrigals,
trecento, Josquin, a few quartets and songs). This module turns it into a catalog in the
standard on-disk format (:mod:`mrlib.catalog_format`) in five steps per work:

1. **parse** the score with music21 (one tune of a multi-tune abc file, or a whole file);
2. **clip by measures**: keep whole measures until ``clip_s`` seconds are covered, expanding the
   repeats first (long scores are cut to a few measures more than needed *before* the expansion,
   which is what keeps whole multi-movement files cheap); a piece shorter than ``clip_s`` is
   played again from the top (strophic songs and dance tunes are performed that way);
3. **assign instruments** by a documented rule (``data/repertoire_programs.csv``): the table
   lists General MIDI ensembles with weights; every artist has a seeded favourite ensemble that
   it uses with probability :data:`ARTIST_LOYALTY` (an audible "artist style", which is why
   artist-disjoint splits matter), otherwise a seeded draw by weight; part *i* (top to bottom)
   gets the *i*-th program of the ensemble, the last one repeating. By default
   (``instrumentation="independent"``) every work draws from one palette pooled over all
   collections, so the instrument says nothing about the collection and cannot stand in for the
   genre tags; ``instrumentation="by_collection"`` draws from the collection's own palette
   (period instruments: fiddles for O'Neill's, organ for Bach), a named variant in which timbre
   gives the genre away (the mean-CQT Euclidean baseline then matches trained networks).
   The palette avoids the programs that ``TimGM6mb.sf2`` renders out of tune (measured with a
   CQT on single notes: Accordion 21 and Tango Accordion 23 are ~0.7 semitone flat from about
   F#5 up, Harmonica 22 ~0.3 semitone flat around F#4-C5, Whistle 78 three semitones sharp and
   silent above G5);
   stand-ins are named in the table (GM piccolo for the tin whistle, reed organ for the
   harmonium and concertina);
4. **render** the MIDI with the General MIDI soundfont shipped in ``pretty_midi``
   (``TimGM6mb.sf2``) through the ``midirenderer`` wheel, mix to mono, resample to ``sr`` and cut
   to exactly ``clip_s`` seconds (50 ms fade-out), loudness-normalised to -20 dBFS RMS with
   the peak kept under -1 dBFS;
5. **tag** from the metadata, in the five categories of the 2020 paper:

   ===========  ==========================================================================
   Genre        ``style_*`` (folk song, fiddle tune, chorale, renaissance polyphony,
                medieval, classical/romantic), ``coll_*`` (the collection), ``region_*``
                (Essen locale or the collection's country), ``composer_*`` (art music),
                ``genre_sacred``/``genre_secular`` and Essen song types (``genre_love_song`` …)
   Recording    ``gm_*`` (the General MIDI programs assigned: audible) and ``ensemble_*``
                (solo / small / quartet / large, from the number of sounding parts)
   Mood         ``mode_major``/``mode_minor`` (explicit key mode where the encoding states it,
                else Krumhansl-Kessler key-finding likelihoods), ``mode_modal`` (explicit
                church modes, and pre-1600 repertoire) and ``tonic_*``
   Movement     ``meter_duple``/``meter_triple``/``meter_irregular``, ``meter_compound``,
                ``dance_*`` (the abc ``R:`` field or the title), ``tempo_slow|moderate|fast``
                (soft memberships of the notated beat's bpm)
   Lyrics       ``lyrics_vocal``/``lyrics_instrumental`` (was the work sung?),
                ``lyrics_in_score`` (text encoded) and ``lang_*``: *not audible*, since
                everything is rendered instrumentally (a ceiling no audio model can pass)
   ===========  ==========================================================================

Works are drawn by a seeded, stratified draw (:func:`stratum_quotas`: square-root allocation
across strata, capped by what each stratum holds); a work that fails to parse, expand or render
is skipped with its reason and replaced by the next work of the same stratum's seeded
permutation. Artists (for artist-disjoint splits): the composer, else the collection's book or
sub-collection (the Essen source book, the O'Neill's file, the Ryan's/Cole's edition, …).

Everything is deterministic given ``seed`` and the package versions; per-work results are cached
under ``<root>/cache/works/`` so an interrupted build resumes where it stopped.

Notebook: 00_overview.ipynb
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
from joblib import Parallel, delayed
from tqdm.auto import tqdm

from mrlib import paths
from mrlib.catalog_format import artist_disjoint_split, default_root
from mrlib.checks import check_choice, check_int, check_positive
from mrlib.music21_corpus import STRATA, SkipWork, _inventory_cached, draw_order, stratum_quotas
from mrlib.music21_score import (ARTIST_LOYALTY, INSTRUMENTATION, _versions, assign_programs,
                                 clip_score, default_qpm, parse_work, render_midi, soundfont_path,
                                 to_midi)
from mrlib.music21_tags import CATEGORIES, tag_category, work_tags

__all__ = ["INSTRUMENTATION", "render_work", "music21_root", "build"]

#: Bump when the rendering or tagging rules change: invalidates the per-work caches.
RENDER_VERSION = 2
# --------------------------------------------------------------------------------------------
# one work, end to end


def render_work(work: Mapping, clip_s: float = 30.0, sr: int = 22050,
                seed: int = 0, instrumentation: str = "independent") -> dict:
    """Parse, clip, instrument, render and tag one work (what the build does per work).

    Parameters
    ----------
    work : mapping
        A row of :func:`inventory`.
    clip_s : float
        Clip length in seconds.
    sr : int
        Sample rate of the returned audio (Hz).
    seed : int
        Catalog seed (tempo jitter and ensemble choice).
    instrumentation : {"independent", "by_collection"}
        Palette of the ensemble draw (:func:`assign_programs`).

    Returns
    -------
    dict
        ``audio`` float32 (clip_s·sr,), ``clip`` (:class:`Clip`), ``programs`` (list of int),
        ``ensemble`` (str), ``tags`` (dict), ``midi`` (bytes) and ``timing`` (CPU seconds of
        ``parse``, ``clip``, ``render``).

    Raises
    ------
    SkipWork
        With the reason, when the work cannot be rendered.

    Notebook: 00_overview.ipynb
    """
    clip_s = check_positive("clip_s", clip_s)
    sr = check_int("sr", sr, 1000)
    seed = check_int("seed", seed, 0)
    t0 = time.process_time()
    score = parse_work(work)
    t1 = time.process_time()
    clip = clip_score(score, clip_s, default_qpm(work, seed))
    t2 = time.process_time()
    ensemble, programs = assign_programs(work["stratum"], work["artist_id"], work["work_id"],
                                         clip.n_parts, seed, clip.declared_programs,
                                         instrumentation=instrumentation)
    midi = to_midi(clip, programs)
    try:
        audio = render_midi(midi, sr, clip_s)
    except Exception as exc:
        raise SkipWork(f"render: {type(exc).__name__}: {str(exc)[:200]}") from None
    t3 = time.process_time()
    if float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) < 1e-4:
        raise SkipWork("render: silent audio")
    return {"audio": audio, "clip": clip, "programs": programs, "ensemble": ensemble,
            "tags": work_tags(work, clip, programs), "midi": midi,
            "timing": {"parse": t1 - t0, "clip": t2 - t1, "render": t3 - t2}}


# --------------------------------------------------------------------------------------------
# the build


def _config_key(config: dict) -> str:
    """The hash of what a rendered work depends on (the build's config less n_tracks)."""
    info = {**config, "render_version": RENDER_VERSION, "loyalty": ARTIST_LOYALTY,
            "versions": _versions(),
            "programs": hashlib.sha1((paths.repo_root() / "data" / "repertoire_programs.csv")
                                     .read_bytes()).hexdigest()}
    del info["n_tracks"]
    return hashlib.sha1(json.dumps(info, sort_keys=True).encode()).hexdigest()[:16]


def _process_work(work: dict, config: dict, root: Path, config_key: str) -> dict:
    """One work -> a cached record (status ok with tags and audio, or skipped with a reason)."""
    record = {**{k: work[k] for k in ("work_id", "track_id", "stratum")}, "config_key": config_key}
    sr = config["sr"]
    t0 = time.process_time()
    try:
        out = render_work(work, config["clip_s"], sr, config["seed"], config["instrumentation"])
    except SkipWork as exc:
        record.update(status="skipped", reason=str(exc))
    except Exception as exc:  # anything else is a bug in the corpus or here: report, don't die
        record.update(status="skipped", reason=f"error: {type(exc).__name__}: {str(exc)[:200]}")
    else:
        rel = f"audio/{work['track_id']}.flac"
        with paths.atomic_path(root / rel) as tmp:
            sf.write(tmp, out["audio"], sr, format="FLAC", subtype="PCM_16")
        clip = out["clip"]
        record.update(
            status="ok", path=rel, duration_s=round(out["audio"].size / sr, 6), tags=out["tags"],
            ensemble=out["ensemble"], programs=out["programs"], qpm=round(clip.qpm, 3),
            n_notes=int(clip.pitch.size), timing={k: round(v, 4) for k, v in out["timing"].items()},
            **{k: getattr(clip, k) for k in ("tempo_source", "time_signature", "n_parts",
                                             "n_measures", "passes", "expanded")})
    record["cpu_s"] = round(time.process_time() - t0, 4)
    paths.write_json_atomic(record, root / "cache" / "works" / f"{work['track_id']}.json",
                            indent=None, sort_keys=True)
    return record


def music21_root(n_tracks: int = 200, seed: int = 0, clip_s: float = 30.0, sr: int = 22050,
                 instrumentation: str = "independent") -> Path:
    """Folder of a music21 catalog: ``data_dir()/music21_n{N}_s{seed}``, with ``_d{clip_s}`` and
    ``_sr{sr}`` appended when they differ from 30 s and 22,050 Hz, and ``_by_collection`` for that
    instrumentation (e.g. ``music21_n2000_s0_d15``): builds of other settings never share a folder.

    Notebook: 00_overview.ipynb
    """
    return default_root("music21", n_tracks, seed, clip_s, sr,
                        "" if instrumentation == "independent" else instrumentation)


def build(n_tracks: int = 200, seed: int = 0, root: str | os.PathLike | None = None,
          clip_s: float = 30.0, sr: int = 22050, n_jobs: int = 2,
          progress: bool = True, instrumentation: str = "independent",
          overwrite: bool = False) -> Path:
    """Build the ``music21`` catalog: draw, render and tag ``n_tracks`` works.

    Works are drawn by :func:`stratum_quotas` and :func:`draw_order`; each is rendered by
    :func:`render_work` in parallel (joblib, ``n_jobs`` processes); a skipped work is replaced by
    the next of its stratum (a stratum that runs out hands its remaining quota to the others),
    so the catalog reaches ``n_tracks`` whenever the corpus allows. Every per-work result is
    cached in ``<root>/cache/works/`` (keyed by the rendering configuration and the package
    versions): an interrupted build resumes without redoing finished works, and a finished build
    returns at once.

    Parameters
    ----------
    n_tracks : int
        Number of tracks wanted (>= 1).
    seed : int
        Seed of the draw, tempi and instruments (>= 0).
    root : path-like, optional
        Output folder; default :func:`music21_root` of these settings.
    clip_s : float
        Length of every track in seconds.
    sr : int
        Audio sample rate in Hz (written as 16-bit mono FLAC).
    n_jobs : int
        Worker processes (1 = in this process).
    progress : bool
        Show a tqdm progress bar.
    instrumentation : {"independent", "by_collection"}
        Ensembles drawn from one palette for every collection (default), or from each
        collection's own palette, where timbre gives the collection away
        (:func:`assign_programs`).
    overwrite : bool
        Build into a folder that holds a catalog of other settings, or one that no music21 build
        wrote (a hand-made catalog): its files are first moved into ``replaced-<time>/``.
        Without it such a folder is an error and nothing in it changes.

    Returns
    -------
    pathlib.Path
        ``root``, holding ``tracks.csv`` (track_id, artist_id, split, path, duration_s, plus
        work_id, stratum, title), ``tags.csv``, ``vocabulary.csv``, ``skipped.csv`` (work,
        reason), ``audio/*.flac`` and ``catalog.json`` (config, versions, timing, the
        number of failed works and ``"complete": true``, written last).

    Notebook: 00_overview.ipynb
    """
    # named as music21_root names them, so that it takes the config as it is
    config = {"n_tracks": check_int("n_tracks", n_tracks, 1), "seed": check_int("seed", seed, 0),
              "clip_s": check_positive("clip_s", clip_s), "sr": check_int("sr", sr, 1000),
              "instrumentation": check_choice("instrumentation", instrumentation, INSTRUMENTATION)}
    n_jobs = check_int("n_jobs", n_jobs, 1)
    root = Path(root) if root is not None else music21_root(**config)
    key = _config_key(config)
    info = paths.read_json_or_empty(root / "catalog.json")
    if info.get("complete") and _same_build(info, config, key):
        return root
    with paths.FolderLock(root, "catalog"):      # it creates the folder
        # read again under the lock: another build may have finished or replaced it meanwhile
        _make_room(root, paths.read_json_or_empty(root / "catalog.json"), config, key, overwrite)
        return _build_locked(root, config, key, n_jobs, progress)


_CATALOG_FILES = ("tracks.csv", "tags.csv", "vocabulary.csv", "skipped.csv", "catalog.json")


def _same_build(info: dict, config: dict, key: str) -> bool:
    return info.get("config") == config and info.get("config_key") == key


def _make_room(root: Path, info: dict, config: dict, key: str, overwrite: bool) -> None:
    """Refuse (or, with ``overwrite``, move aside) a folder that holds another catalog.

    Ours: a music21 manifest of the same settings, or the per-work cache of an interrupted
    build (no manifest yet). Anything else that looks like a catalog belongs to someone else.
    """
    present = [f for f in _CATALOG_FILES if (root / f).exists()]
    if (root / "audio").is_dir() and any((root / "audio").iterdir()):
        present.append("audio/")
    ours = info.get("name") == "music21" if info else (root / "cache" / "works").is_dir()
    if not present or (ours and (not info or _same_build(info, config, key))):
        return
    what = (f"a music21 catalog built with {info.get('config')}, not {config}" if ours
            else "a catalog that no music21 build wrote")
    if not overwrite:
        raise ValueError(f"{root} holds {what} ({', '.join(present)}); nothing was changed. "
                         "Choose another root, or pass overwrite=True (--overwrite) to move those "
                         "files into a replaced-<time>/ folder and build here")
    paths.move_aside(root, present + (["cache/"] if (root / "cache").is_dir() else []), "music21")


def _build_locked(root: Path, config: dict, key: str, n_jobs: int, progress: bool) -> Path:
    """The build proper, in a locked folder that is empty or holds this build's own files."""
    for folder in (root / "audio", root / "cache" / "works"):
        folder.mkdir(parents=True, exist_ok=True)
        paths.remove_dead_temporaries(folder)      # left by workers killed mid-write
    wall0 = time.perf_counter()
    works = _inventory_cached()
    queues = draw_order(works, config["seed"])
    quota = stratum_quotas({s: len(q) for s, q in queues.items()}, config["n_tracks"])
    ok, records = _render_draw(root, works, queues, quota, config, key, n_jobs, progress)
    skipped = [r for r in records if r["status"] != "ok"]
    kept = [r for s in STRATA if s in ok for r in ok[s]]
    if not kept:
        raise RuntimeError(f"no work could be rendered; first reasons: "
                           f"{[r['reason'] for r in skipped[:5]]}")
    tracks = _write_tables(root, works, kept, skipped, config["seed"])
    cpu = {k: float(sum(r.get("timing", {}).get(k, 0.0) for r in kept))
           for k in ("parse", "clip", "render")}
    audio_s = float(tracks["duration_s"].sum())
    # what tracks.csv and skipped.csv list (splits, strata, failed works) is not repeated here
    paths.write_json_atomic({
        "name": "music21", "config": config, "config_key": key, "versions": _versions(),
        "render_version": RENDER_VERSION, "soundfont": soundfont_path().name,
        "n_tracks": len(kept), "attempted": len(records), "quota": quota,
        "failures": {"count": len(skipped)},
        "timing": {"wall_s_this_run": round(time.perf_counter() - wall0, 3),
                   "cpu_s": {k: round(v, 3) for k, v in cpu.items()},
                   # all works tried, skipped ones included, as measured in the workers
                   "cpu_s_all_works": round(sum(r.get("cpu_s", 0.0) for r in records), 3),
                   "audio_s": audio_s,
                   # audio_s > 0: kept is not empty and every clip lasts clip_s > 0
                   "render_cpu_s_per_audio_s": round(cpu["render"] / audio_s, 5)},
        "complete": True,  # last key, and the file is replaced atomically
    }, root / "catalog.json", indent=2)
    return root


def _next_batch(queues: dict[str, list[int]], quota: dict[str, int], pos: dict[str, int],
                ok: dict[str, list]) -> list[int]:
    """The next works to try: what each stratum still misses of its quota, from its draw order.
    When none is left, exhausted strata hand their missing tracks to strata that still have
    works (``quota`` is updated); an empty list when nothing more can be tried."""
    while True:
        batch = []
        for s, q in queues.items():
            take = q[pos[s]:pos[s] + quota[s] - len(ok[s])]
            pos[s] += len(take)
            batch.extend(take)
        if batch:
            return batch
        short = {s: quota[s] - len(ok[s]) for s in queues if quota[s] > len(ok[s])}
        spare = {s: len(queues[s]) - pos[s] for s in queues if len(queues[s]) > pos[s]}
        if not short or not spare:
            return []
        for s in short:
            quota[s] = len(ok[s])
        for s, extra in stratum_quotas(spare, sum(short.values())).items():
            quota[s] += extra


def _cached_record(root: Path, work, key: str) -> dict | None:
    """The cached result of a work for this configuration, if it is there and still valid."""
    rec = paths.read_json_or_empty(root / "cache" / "works" / f"{work['track_id']}.json")
    missing_audio = rec.get("status") == "ok" and not (root / rec["path"]).is_file()
    return rec if rec.get("config_key") == key and not missing_audio else None


def _render_draw(root: Path, works: pd.DataFrame, queues, quota, config: dict, key: str,
                 n_jobs: int, progress: bool):
    """Render works in draw order until every stratum meets its quota (a skipped work is
    replaced by the next of its stratum); returns the ok records by stratum and every record
    in the order tried."""
    pos = {s: 0 for s in queues}
    ok: dict[str, list[dict]] = {s: [] for s in queues}
    records: list[dict] = []
    bar = tqdm(total=sum(quota.values()), desc="music21 catalog", unit="work", disable=not progress)
    pool = Parallel(n_jobs=n_jobs, return_as="generator_unordered")   # n_jobs=1: in this process
    size = works["n_parts"].to_numpy(float) * works["quarter_length"].to_numpy(float)
    track_id = works["track_id"].to_numpy()
    while batch := _next_batch(queues, quota, pos, ok):
        results = {track_id[i]: rec for i in batch
                   if (rec := _cached_record(root, works.iloc[i], key))}
        bar.update(len(results))
        # Longest first (parts x length: whole quartets parse for seconds, a folk tune in
        # milliseconds) so that the workers finish together; results are keyed by work, so the
        # completion order does not change the catalog.
        todo = sorted((i for i in batch if track_id[i] not in results), key=lambda i: (-size[i], i))
        for rec in pool(delayed(_process_work)(works.iloc[i].to_dict(), config, root, key)
                        for i in todo):
            results[rec["track_id"]] = rec
            bar.update(1)
        for rec in (results[track_id[i]] for i in batch):
            records.append(rec)
            if rec["status"] == "ok":
                ok[rec["stratum"]].append(rec)
            else:
                bar.total += 1  # a replacement will be tried
        bar.refresh()
    bar.close()
    return ok, records


def _write_tables(root: Path, works: pd.DataFrame, kept: list[dict], skipped: list[dict],
                  seed: int) -> pd.DataFrame:
    """Write tracks, tags, vocabulary and skipped works (and remove stale audio)."""
    tracks = pd.DataFrame(kept, columns=["track_id", "path", "duration_s", "work_id", "stratum"])
    meta = works.set_index("work_id").loc[tracks["work_id"]]
    tracks.insert(1, "artist_id", meta["artist_id"].to_numpy())
    # artist-disjoint 60/20/20, the shared rule of every catalog
    tracks.insert(2, "split", artist_disjoint_split(tracks["artist_id"], seed=seed))
    tracks["title"] = meta["title"].to_numpy()
    all_tags = sorted({t for r in kept for t in r["tags"]},
                      key=lambda t: (CATEGORIES.index(tag_category(t)), t))
    # a tag a work does not carry is 0
    tags = pd.DataFrame([r["tags"] for r in kept], columns=all_tags).fillna(0.0).astype(np.float32)
    tags.insert(0, "track_id", tracks["track_id"].to_numpy())
    vocab = pd.DataFrame({"tag": all_tags, "category": [tag_category(t) for t in all_tags]})
    # Stale audio from an earlier, different draw into the same folder would mislead a reader.
    for f in set((root / "audio").glob("*.flac")) - {root / p for p in tracks["path"]}:
        f.unlink()
    tracks.to_csv(root / "tracks.csv", index=False)
    tags.to_csv(root / "tags.csv", index=False, float_format="%.3f")
    vocab.to_csv(root / "vocabulary.csv", index=False)
    pd.DataFrame([(r["work_id"], r["reason"]) for r in skipped],
                 columns=["work", "reason"]).to_csv(root / "skipped.csv", index=False)
    return tracks


if __name__ == "__main__":   # the build's command line is the catalogs' own
    raise SystemExit("python -m mrlib.music21_catalog has no command line; build with "
                     "python -m mrlib.catalog build music21 [--instrumentation by_collection] ...")
