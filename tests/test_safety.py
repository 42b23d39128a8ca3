"""Runs never lose data (issue 17): each probe of bad input, interruption and concurrency.

Training probes run in this process on the small in-memory data of ``test_train`` (seconds
each); the ones that need a second process (a live run, a ``kill -9``) run the command line on
a 30-track catalog of 6 s tracks under a private data root. Catalog, CSV, suite and book
probes use files written here.
"""
from __future__ import annotations

import builtins
import hashlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mrlib import train as T
from mrlib.paths import FolderLock, LockedError
from resume_check import assert_resumed_exactly

TINY = dict(width=0.0625, patch_len=32, n_neg=12, negatives_per_batch=6, batch_tracks=12,
            steps_per_epoch=2, val_patches=2, eval_batch=64, patience=0, prefetch=0)


def toy_data(n: int = 40, n_bins: int = 24, frames: int = 60, seed: int = 0) -> T.TrainData:
    from mrlib import synth

    cat = synth.sample_catalog(n, seed)
    rng = np.random.default_rng(seed)
    feats = [rng.standard_normal((n_bins, frames)).astype(np.float16) for _ in range(n)]
    split = np.array(["train"] * n, dtype=object)
    split[: n // 4] = "val"
    return T.TrainData(features=feats, tags=cat.tags, categories=list(cat.vocabulary["category"]),
                       split=split, track_ids=[f"t{i:03d}" for i in range(n)],
                       available=np.ones(n, bool), n_bins=n_bins, name="toy")


@pytest.fixture(scope="module")
def data() -> T.TrainData:
    return toy_data()


def cfg(folder: Path, **kw) -> T.TrainConfig:
    return T.TrainConfig(**{**TINY, "epochs": 1, "out_dir": str(folder), **kw})


def snapshot(folder: Path) -> dict:
    """SHA-256 of every file of a folder (lock files left out)."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and ".mrlib.lock" not in p.name}


@pytest.fixture
def finished(tmp_path, data):
    run = T.train(cfg(tmp_path / "R"), data=data, progress=False)
    return run.path, snapshot(run.path)


# ------------------------------------------------------------------------------------------
# 1. inputs are validated before the run folder is touched
# ------------------------------------------------------------------------------------------
def test_mistyped_catalog_leaves_a_finished_run_intact(finished):
    folder, before = finished
    with pytest.raises(FileNotFoundError, match="'synthetc' is not a catalog"):
        T.train(cfg(folder, catalog="synthetc", system="at"), progress=False)
    assert snapshot(folder) == before


def test_invalid_features_are_refused_up_front(finished):
    folder, before = finished
    with pytest.raises(ValueError, match=r"features must be keyword arguments of FeatureConfig "
                                         r"\[.*\]; got .*unexpected keyword argument 'nonsense'"):
        cfg(folder, features={"nonsense": 1})
    with pytest.raises(ValueError, match=r"features must be .*; got \{'n_bins': 0\}: .*n_bins"):
        cfg(folder, features={"n_bins": 0})
    proc = subprocess.run([sys.executable, "-m", "mrlib.train", "--features", '{"nonsense": 1}',
                           "--out", str(folder)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "nonsense" in proc.stderr
    assert snapshot(folder) == before


def test_bad_device_is_refused_before_the_folder(finished, data):
    folder, before = finished
    with pytest.raises(ValueError, match="device"):
        T.train(cfg(folder, device="tpu"), data=data, progress=False)
    assert snapshot(folder) == before


def test_patch_len_longer_than_every_track_is_refused(finished, data):
    folder, before = finished
    with pytest.raises(ValueError, match=r"patch_len=100000 frames is longer than the longest track \(60"):
        T.train(cfg(folder, patch_len=100000), data=data, progress=False, replace=True)
    assert snapshot(folder) == before


def test_too_few_validation_tracks_leave_no_folder_behind(tmp_path, data):
    # was refused after config.json had been written, so a fresh folder stayed behind
    few_val = T.TrainData(**{**vars(data), "split": np.where(np.arange(len(data)) < 5, "val", "train")})
    with pytest.raises(ValueError, match="only 5 validation tracks"):
        T.train(cfg(tmp_path / "new"), data=few_val, progress=False)
    assert [p.name for p in (tmp_path / "new").iterdir()] == [".mrlib.lock.os"]   # filelock's own


def test_a_run_that_cannot_fit_in_memory_is_refused(finished, data, monkeypatch):
    folder, before = finished
    monkeypatch.setattr(T, "memory_available", lambda device: 1e6)
    with pytest.raises(MemoryError, match=r"needs roughly .* GiB .* are free"):
        T.train(cfg(folder, system="at"), data=data, progress=False, replace=True)
    assert snapshot(folder) == before


# ------------------------------------------------------------------------------------------
# replacing a run: an explicit flag, and the old run kept until the first checkpoint
# ------------------------------------------------------------------------------------------
def test_another_config_needs_replace(finished, data):
    folder, before = finished
    with pytest.raises(T.RunExistsError, match=r"finished training run of another configuration.*'seed': \(0, 1\)"):
        T.train(cfg(folder, seed=1), data=data, progress=False)
    assert snapshot(folder) == before
    run = T.train(cfg(folder, seed=1), data=data, progress=False, replace=True)
    assert run.config.seed == 1 and not (folder / ".previous-run").exists()


def test_the_same_config_trains_again_without_a_flag(finished, data):
    folder, before = finished
    old = np.load(folder / "embeddings.npy")
    again = T.train(cfg(folder), data=data, progress=False)          # a notebook re-executed
    np.testing.assert_array_equal(again.embeddings, old)              # seeded: the same run
    assert not (folder / ".previous-run").exists()


def test_resume_returns_a_finished_run_of_the_same_config(finished, data, capsys):
    folder, before = finished
    run = T.train(cfg(folder, n_jobs=1, prefetch=2), data=data, progress=False, resume=True)
    assert "nothing retrained" in capsys.readouterr().out
    assert run.path == folder and snapshot(folder) == before
    # the same call without data (as an experiment runner may make) does not load the catalog
    run = T.train(cfg(folder), progress=False, resume=True)
    assert snapshot(folder) == before


def test_a_replacing_run_that_fails_before_its_first_checkpoint_restores_the_old(finished, data,
                                                                                  monkeypatch):
    folder, before = finished

    def boom(*a, **k):
        raise RuntimeError("validation blew up")

    monkeypatch.setattr(T, "_validate", boom)
    with pytest.raises(RuntimeError, match="blew up"):
        T.train(cfg(folder, seed=1), data=data, progress=False, replace=True)
    assert snapshot(folder) == before


def test_a_replacing_run_killed_before_its_first_checkpoint_is_rolled_back(finished, data, capsys):
    folder, before = finished
    aside = folder / ".previous-run"       # what a kill -9 between move and checkpoint leaves
    aside.mkdir()
    for name in before:
        os.replace(folder / name, aside / name)
    T.TrainConfig(**{**cfg(folder).to_dict(), "seed": 1}).to_json(folder / "config.json")
    T.train(cfg(folder), data=data, progress=False, resume=True)
    out = capsys.readouterr().out
    assert "previous run is restored" in out and "nothing retrained" in out
    assert snapshot(folder) == before


# ------------------------------------------------------------------------------------------
# 3. config replays and default run names
# ------------------------------------------------------------------------------------------
def test_config_replay_goes_to_a_new_folder(finished):
    folder, before = finished
    replay, _ = T.config_from_args(["--config", str(folder / "config.json"), "--seed", "1"])
    assert replay.out_dir is None and replay.run_dir() != folder
    same, _ = T.config_from_args(["--config", str(folder / "config.json"), "--resume"])
    assert same.run_dir() == folder                  # --resume continues the saved run
    told, _ = T.config_from_args(["--config", str(folder / "config.json"), "--out", "elsewhere"])
    assert told.out_dir == "elsewhere"


def test_default_folders_differ_in_every_result_field():
    base = T.TrainConfig()
    names = {base.run_dir().name}
    for change in (dict(lr=0.01), dict(width=0.25), dict(n_tracks=400), dict(seed=1),
                   dict(catalog="music21"), dict(patch_len=64), dict(features={"sr": 44100})):
        names.add(base.replace(**change).run_dir().name)
    assert len(names) == 8
    # fields a resume may change keep the folder: a run resumed with more epochs finds itself
    assert base.replace(epochs=20, device="cpu", n_jobs=1).run_dir() == base.run_dir()
    assert base.name == "tl_distance_s0" and base.run_dir().name.startswith("tl_distance_s0-")
    assert base.replace(run_name="mine").run_dir().name == "mine"


# ------------------------------------------------------------------------------------------
# 2. one writer per run folder; the lock of a killed writer recovered
# ------------------------------------------------------------------------------------------
def test_a_live_lock_refuses_a_second_writer(finished, data):
    folder, before = finished
    with FolderLock(folder, "training run"):
        with pytest.raises(LockedError, match=f"in use by pid {os.getpid()} on {socket.gethostname()}"):
            T.train(cfg(folder), data=data, progress=False, resume=True)
    assert snapshot(folder) == before
    assert not (folder / ".mrlib.lock").exists()


def _hold_lock(folder: Path) -> subprocess.Popen:
    """Another process that takes the lock of ``folder`` and keeps it until it is killed."""
    proc = subprocess.Popen([sys.executable, "-c",
                             "import sys, time; from mrlib.paths import FolderLock; "
                             "lock = FolderLock(sys.argv[1], 'catalog').acquire(); "
                             "print('held', flush=True); time.sleep(600)", str(folder)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_killed_holder_does_not_block_the_next_writer(tmp_path):
    holder = _hold_lock(tmp_path)
    try:
        with pytest.raises(LockedError, match=f"in use by pid {holder.pid} on {socket.gethostname()}"):
            FolderLock(tmp_path, "catalog").acquire()
    finally:
        os.kill(holder.pid, signal.SIGKILL)           # no clean-up of its own runs
        holder.wait()
    assert json.loads((tmp_path / ".mrlib.lock").read_text())["pid"] == holder.pid
    said = []
    with FolderLock(tmp_path, "catalog", log=said.append):
        assert json.loads((tmp_path / ".mrlib.lock").read_text())["pid"] == os.getpid()
    assert len(said) == 1 and f"pid {holder.pid}" in said[0] and "no longer running" in said[0]
    assert not (tmp_path / ".mrlib.lock").exists()


def test_the_lock_of_a_killed_writer_is_recovered_and_reported(finished, data, capsys):
    folder, before = finished
    holder = _hold_lock(folder)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    T.train(cfg(folder), data=data, progress=False, resume=True)
    assert "recovered a stale lock" in capsys.readouterr().out
    assert snapshot(folder) == before and not (folder / ".mrlib.lock").exists()


def test_a_lock_from_another_host_is_not_broken(tmp_path):
    (tmp_path / ".mrlib.lock").write_text(json.dumps(
        {"pid": 1, "host": "not-" + socket.gethostname(), "since": "t", "command": "c"}))
    with pytest.raises(LockedError, match="another host.*delete"):
        FolderLock(tmp_path, "catalog").acquire()


TINY_CLI = ["--n-tracks", "30", "--catalog-kwargs", '{"duration_s": 6.0}', "--width", "0.0625",
            "--patch-len", "32", "--n-neg", "10", "--negatives-per-batch", "6", "--val-patches", "2",
            "--eval-batch", "64", "--patience", "0", "--no-progress", "--prefetch", "0"]


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory):
    root = tmp_path_factory.mktemp("safety_cli")
    env = dict(os.environ, MRLIB_DATA=str(root / "data"), MRLIB_RUNS=str(root / "runs"),
               OMP_NUM_THREADS="1")
    env.pop("MRLIB_RECORD", None)
    subprocess.run([sys.executable, "-m", "mrlib.catalog", "build", "synthetic", "--n-tracks", "30",
                    "--duration", "6", "--jobs", "1", "--no-progress"], env=env, check=True,
                   capture_output=True, timeout=300)
    return env


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    t0 = time.time()
    while not path.exists():
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.time() - t0 < timeout, f"{path} did not appear"
        time.sleep(0.05)


def test_a_second_run_into_a_live_folder_is_refused_and_the_first_finishes(tmp_path, cli_env):
    folder = tmp_path / "live"
    first = subprocess.Popen([sys.executable, "-m", "mrlib.train", *TINY_CLI, "--epochs", "3",
                              "--steps-per-epoch", "25", "--out", str(folder)],
                             env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(folder / ".mrlib.lock", first)
    second = subprocess.run([sys.executable, "-m", "mrlib.train", *TINY_CLI, "--system", "at",
                             "--seed", "1", "--epochs", "1", "--steps-per-epoch", "2", "--replace",
                             "--out", str(folder)], env=cli_env, capture_output=True, text=True,
                            timeout=300)
    was_live = first.poll() is None
    out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err[-2000:]
    if was_live:
        assert second.returncode == 2 and f"in use by pid {first.pid}" in second.stderr
    run = T.load_run(folder)
    assert (run.config.system, run.config.seed, run.summary["epochs_run"]) == ("tl", 0, 3)
    assert len(run.metrics) == 4 and run.embeddings.shape[0] == 30


def test_probes_on_the_command_line_leave_a_finished_run_intact(tmp_path, cli_env):
    """The issue's probes as a new user types them, against one finished run."""
    folder = tmp_path / "R"
    train = [sys.executable, "-m", "mrlib.train"]
    done = subprocess.run(train + [*TINY_CLI, "--epochs", "1", "--steps-per-epoch", "2",
                                   "--out", str(folder)], env=cli_env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    before = snapshot(folder)
    for args, says in ((["--catalog", "synthetc"], "'synthetc' is not a catalog"),
                       ([*TINY_CLI, "--features", '{"nonsense": 1}'],
                        "unexpected keyword argument 'nonsense'"),
                       ([*TINY_CLI, "--system", "at"], "another configuration")):
        probe = subprocess.run(train + args + ["--out", str(folder)], env=cli_env,
                               capture_output=True, text=True, timeout=300)
        assert probe.returncode == 2 and says in probe.stderr, probe.stderr[-2000:]
        assert snapshot(folder) == before
    replay = subprocess.run(train + ["--config", str(folder / "config.json"), "--seed", "1",
                                     "--no-progress"], env=cli_env, capture_output=True, text=True,
                            timeout=300)
    assert replay.returncode == 0, replay.stderr[-2000:]
    assert snapshot(folder) == before
    new = [p for p in (Path(cli_env["MRLIB_RUNS"]) / "train").iterdir()
           if p.name.startswith("tl_distance_s1-")]
    assert len(new) == 1 and T.load_run(new[0]).config.seed == 1


def test_resume_with_every_checkpoint_corrupt_is_one_line_and_exit_2(tmp_path, cli_env):
    folder = tmp_path / "broken"
    args = [sys.executable, "-m", "mrlib.train", *TINY_CLI, "--epochs", "2", "--steps-per-epoch", "2",
            "--out", str(folder)]
    # no pipes: the feature extraction's idle worker processes would hold them open for minutes
    crashed = subprocess.run(args + ["--stop-after-epoch", "1"], env=cli_env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, timeout=300)
    assert crashed.returncode == 3
    for name in ("checkpoint.pt", "checkpoint.prev.pt"):
        path = folder / name
        path.write_bytes(path.read_bytes()[:100])              # truncated, as by a full disk
    before = snapshot(folder)
    resumed = subprocess.run(args + ["--resume"], env=cli_env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 2 and "Traceback" not in resumed.stderr, resumed.stderr[-2000:]
    assert "no usable checkpoint" in resumed.stderr and "without resume" in resumed.stderr
    assert snapshot(folder) == before


def test_kill_9_leaves_a_stale_lock_and_the_resumed_run_ends_bit_for_bit(tmp_path, cli_env):
    folder = tmp_path / "killed"
    base = [sys.executable, "-m", "mrlib.train", *TINY_CLI, "--epochs", "2", "--steps-per-epoch", "3",
            "--out", str(folder)]
    proc = subprocess.Popen(base + ["--epochs", "40"], env=cli_env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    _wait_for(folder / "checkpoint.pt", proc)
    # past epoch 0, whose checkpoint holds the RNG states a fresh start has anyway
    while T.load_checkpoint(folder / "checkpoint.pt")["epoch"] < 1:
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (folder / ".mrlib.lock").exists()
    assert not (folder / "summary.json").exists()                 # killed mid-run
    # one more epoch than the last checkpoint holds, so the resumed run trains after the kill
    epochs = str(T.load_checkpoint(folder / "checkpoint.pt")["epoch"] + 1)
    resumed = subprocess.run(base + ["--epochs", epochs, "--resume"], env=cli_env,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "recovered a stale lock" in resumed.stdout
    reference = subprocess.run(base[:-1] + [str(tmp_path / "whole"), "--epochs", epochs],
                               env=cli_env, capture_output=True, text=True, timeout=300)
    assert reference.returncode == 0, reference.stderr[-2000:]
    assert_resumed_exactly(T.load_run(tmp_path / "whole"), T.load_run(folder))


def _cut_off_writes_to(monkeypatch, prefix: str, folder: Path | None = None) -> None:
    """Every file whose name starts with ``prefix`` (in ``folder``, or anywhere) gets half of
    its first write, then Ctrl-C: what a kill in the middle of that write leaves."""
    real = io.open

    def opener(file, mode="r", *args, **kwargs):
        fh = real(file, mode, *args, **kwargs)
        path = Path(os.fsdecode(file)) if isinstance(file, (str, bytes, os.PathLike)) else Path()
        if "w" in str(mode) and path.name.startswith(prefix) and \
                (folder is None or path.parent == folder):
            write = fh.write

            def half(data):
                write(data[: len(data) // 2])
                fh.flush()
                raise KeyboardInterrupt
            fh.write = half
        return fh

    monkeypatch.setattr(io, "open", opener)          # pathlib's write_text
    monkeypatch.setattr(builtins, "open", opener)


@pytest.mark.parametrize("name", ["config.json", "summary.json"])
def test_a_run_cut_off_while_writing_its_json_files_is_finished_by_resume(tmp_path, data,
                                                                           monkeypatch, name):
    folder = tmp_path / "R"
    with monkeypatch.context() as m:
        _cut_off_writes_to(m, name)
        with pytest.raises(KeyboardInterrupt):
            T.train(cfg(folder), data=data, progress=False)
    # no half file that the next call would take for the run's own: --resume finishes it
    run = T.train(cfg(folder), data=data, progress=False, resume=True)
    assert run.summary["epochs_run"] == 1 and T.load_run(folder).summary == run.summary
    assert not list(folder.glob("*.part"))


# ------------------------------------------------------------------------------------------
# 11. confidence bounds stay inside [0, 1]
# ------------------------------------------------------------------------------------------
def test_validation_ci_stays_in_the_unit_interval(finished):
    folder, _ = finished
    m = T.load_run(folder).metrics
    assert (m["val_map_high"] <= 1.0).all() and (m["val_map_low"] >= 0.0).all()


# ------------------------------------------------------------------------------------------
# 4. catalog folders: a hand-made catalog is never written over; one writer at a time
# ------------------------------------------------------------------------------------------
from mrlib import catalog as C  # noqa: E402


def _hand_made(folder: Path, catalog_json: str | None = None) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tracks.csv").write_text("track_id,artist_id,split,path,duration_s\nmine,me,train,mine.wav,3\n")
    (folder / "tags.csv").write_text("track_id,rock\nmine,1\n")
    (folder / "vocabulary.csv").write_text("tag,category\nrock,Genre\n")
    if catalog_json is not None:
        (folder / "catalog.json").write_text(catalog_json)
    return snapshot(folder)


@pytest.mark.parametrize("catalog_json", [None, "{trunc", '{"name": "mine"}'],
                         ids=["no-catalog-json", "unreadable", "not-a-synthetic-build"])
def test_build_refuses_a_hand_made_catalog_folder(tmp_path, catalog_json):
    folder = tmp_path / "hand"
    before = _hand_made(folder, catalog_json)
    with pytest.raises(ValueError, match="no synthetic build wrote.*nothing was changed"):
        C.build_synthetic(20, 0, 4.0, root=folder, n_jobs=1, progress=False)
    assert snapshot(folder) == before
    rc = C.main(["build", "synthetic", "--n-tracks", "20", "--duration", "4", "--root", str(folder),
                 "--jobs", "1", "--no-progress"])
    assert rc == 2 and snapshot(folder) == before


def test_build_overwrite_moves_a_hand_made_catalog_aside(tmp_path):
    folder = tmp_path / "hand"
    before = _hand_made(folder)
    C.build_synthetic(20, 0, 4.0, root=folder, n_jobs=1, progress=False, overwrite=True)
    kept = [p for p in folder.iterdir() if p.name.startswith("replaced-")]
    assert len(kept) == 1 and snapshot(kept[0]) == before
    assert len(C.read(folder)) == 20


def test_a_catalog_folder_being_written_refuses_a_second_build(tmp_path):
    folder = tmp_path / "cat"
    with FolderLock(folder, "catalog"):
        with pytest.raises(LockedError, match=f"catalog folder .* in use by pid {os.getpid()}"):
            C.build_synthetic(20, 0, 4.0, root=folder, n_jobs=1, progress=False)
    C.build_synthetic(20, 0, 4.0, root=folder, n_jobs=1, progress=False)
    assert not (folder / ".mrlib.lock").exists()


# ------------------------------------------------------------------------------------------
# 10. CSV problems name the file, the line and the column
# ------------------------------------------------------------------------------------------
def _audio_folder(tmp_path: Path, ids=("a", "b", "c"), base_hz: float = 220.0) -> Path:
    import soundfile as sf

    audio = tmp_path / "music"
    audio.mkdir(parents=True, exist_ok=True)
    for k, tid in enumerate(ids):
        t = np.arange(16000 * 2) / 16000
        sf.write(audio / f"{tid}.wav", (0.3 * np.sin(2 * np.pi * (base_hz + 110 * k) * t)).astype(np.float32), 16000)
    return audio


CSV_TEXT = "track_id,rock,calm\na,0.5,0.1\nb,0.2,0.9\nc,1,0\n"


@pytest.mark.parametrize("content,match", [
    (CSV_TEXT.encode("utf-16"), r"tags\.csv is UTF-16 encoded"),
    ("track_id,rock,café\na,0.5,0.1\nb,0.2,0.9\n".encode("latin-1"), r"tags\.csv is not UTF-8: byte 0xe9 on line 1"),
    (b"", r"tags\.csv is empty"),
    (b'""\n  \n', r"tags\.csv is empty"),      # blank rows only: no header (a TypeError before)
    (b"track_id,rock,calm\na,0.5,0.1\nb,0.2,0.9,0.4\n", r"tags\.csv line 3: 4 field\(s\), but the header has 3"),
    (b"track_id,rock,rock\na,0.5,0.1\n", r"tags\.csv: duplicate column name\(s\) 'rock' \(columns 2 and 3\)"),
], ids=["utf16", "latin1", "empty", "blank", "ragged", "duplicate-tag"])
def test_csv_errors_name_the_file_and_line(tmp_path, content, match):
    audio = _audio_folder(tmp_path)
    (tmp_path / "tags.csv").write_bytes(content)
    with pytest.raises(ValueError, match=match):
        C.from_folder(audio, tmp_path / "tags.csv", progress=False)


def test_a_catalog_folder_with_a_bad_tag_cell_names_line_and_column(tmp_path):
    cat = C.from_folder(_audio_folder(tmp_path), _write(tmp_path / "tags.csv", CSV_TEXT), progress=False)
    root = cat.save(tmp_path / "saved")
    text = (root / "tags.csv").read_text().splitlines()
    text[2] = text[2].rsplit(",", 1)[0] + ","                       # an empty tag cell
    (root / "tags.csv").write_text("\n".join(text) + "\n")
    with pytest.raises(ValueError, match=r"tags\.csv line 3, column 'calm': '' is not a number"):
        C.read(root)


def test_an_empty_tag_cell_in_a_folder_csv_is_reported(tmp_path):
    audio = _audio_folder(tmp_path)
    csv_path = _write(tmp_path / "tags.csv", "track_id,rock,calm\na,0.5,\nb,0.2,0.9\nc,1,0\n")
    with pytest.warns(UserWarning, match="skipped"):
        cat = C.from_folder(audio, csv_path, progress=False)
    assert dict(zip(cat.skipped.track_id, cat.skipped.reason))["a"] == "tag value missing (NaN) in ['calm']"
    assert cat.skipped.row.tolist() == [2]


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# ------------------------------------------------------------------------------------------
# 9. paths stay inside the catalog folder; one recording under several ids is noticed
# ------------------------------------------------------------------------------------------
def test_paths_outside_a_catalog_folder_are_refused_unless_allowed(tmp_path):
    cat = C.from_folder(_audio_folder(tmp_path), _write(tmp_path / "tags.csv", CSV_TEXT), progress=False)
    root = cat.save(tmp_path / "music")                # the audio lies in this folder
    outside = _audio_folder(tmp_path / "elsewhere", ids=("x",)) / "x.wav"
    tracks = pd.read_csv(root / "tracks.csv", dtype=str, keep_default_na=False)
    for bad in ("../elsewhere/music/x.wav", str(outside)):
        tracks.loc[1, "path"] = bad
        tracks.to_csv(root / "tracks.csv", index=False)
        with pytest.raises(ValueError, match=r"tracks\.csv line 3, column 'path'.*leads outside"):
            C.read(root)
        assert C.read(root, allow_outside=True).audio_path(1) == outside.resolve()
    os.symlink(outside, root / "link.wav")             # a symlink out of the folder
    tracks.loc[1, "path"] = "link.wav"
    tracks.to_csv(root / "tracks.csv", index=False)
    with pytest.raises(ValueError, match="leads outside"):
        C.read(root)
    tracks.loc[1, "path"] = tracks.loc[0, "path"]      # two ids, one file
    tracks.to_csv(root / "tracks.csv", index=False)
    with pytest.raises(ValueError, match=r"lines 2 and 3: track ids 'a' and 'b' share the audio file"):
        C.read(root)


def test_a_folder_csv_cannot_reach_outside_its_audio_folder(tmp_path):
    audio = _audio_folder(tmp_path)
    _audio_folder(tmp_path / "secret", ids=("s",), base_hz=1000.0)
    csv_path = _write(tmp_path / "tags.csv", "track_id,file,rock\na,a.wav,1\ns,../secret/music/s.wav,0\n"
                                             "b,b.wav,0.5\n")
    with pytest.warns(UserWarning, match="skipped"):
        cat = C.from_folder(audio, csv_path, path_column="file", progress=False)
    assert "outside the audio folder" in dict(zip(cat.skipped.track_id, cat.skipped.reason))["s"]
    cat = C.from_folder(audio, csv_path, path_column="file", progress=False, allow_outside=True)
    assert "s" in set(cat.track_ids)
    # found by id: a symlink out of the folder is outside it too, and named with its target
    os.symlink(tmp_path / "secret" / "music" / "s.wav", audio / "s.wav")
    csv_path = _write(tmp_path / "by_id.csv", "track_id,rock\na,1\ns,0\nb,0.5\nc,0\n")
    with pytest.warns(UserWarning, match="skipped"):
        cat = C.from_folder(audio, csv_path, progress=False)
    reason = dict(zip(cat.skipped.track_id, cat.skipped.reason))["s"]
    assert reason.startswith("outside the audio folder: s.wav leads to ") and "secret" in reason
    assert "s" in set(C.from_folder(audio, csv_path, progress=False, allow_outside=True).track_ids)


def test_one_recording_under_two_ids_is_reported_and_kept_in_one_split(tmp_path):
    import shutil

    ids = [f"t{i:02d}" for i in range(12)]
    audio = _audio_folder(tmp_path, ids=ids)
    shutil.copyfile(audio / "t00.wav", audio / "copy.wav")
    rows = "".join(f"{t},a{t},0.5\n" for t in ids) + "copy,someone-else,0.5\n"
    csv_path = _write(tmp_path / "tags.csv", "track_id,artist_id,rock\n" + rows)
    with pytest.warns(UserWarning, match=r"same audio as another.*copy = t00"):
        cat = C.from_folder(audio, csv_path, progress=False)
    split = dict(zip(cat.track_ids, cat.tracks.split))
    assert split["copy"] == split["t00"]
    with pytest.warns(UserWarning, match="skipped"):
        cat = C.from_folder(audio, csv_path, progress=False, duplicates="skip")
    assert "copy" not in set(cat.track_ids)
    with pytest.raises(ValueError, match="same audio"):
        C.from_folder(audio, csv_path, progress=False, duplicates="error")


def test_mtat_paths_stay_inside_and_csv_errors_are_named(tmp_path):
    from mrlib import mtat

    info = mtat.write_fixture(tmp_path / "mtat", n_clips=12, seed=0)
    ann = info.folder / mtat.ANNOTATIONS_FILE
    lines = ann.read_text().splitlines()
    outside = tmp_path / "outside.mp3"
    outside.write_bytes(b"ID3 not yours")
    row = lines[1].split("\t")
    row[-1] = f'"{outside}"'                         # mp3_path is the last column
    lines[1] = "\t".join(row)
    ann.write_text("\n".join(lines) + "\n")
    cat = mtat.load_catalog(info.folder, verbose=False)
    assert any("outside the audio folder" in r for r in cat.skipped.reason)
    ann.write_bytes(("\n".join(lines) + "\n").encode("utf-16"))
    with pytest.raises(ValueError, match=r"annotations_final\.csv is UTF-16"):
        mtat.load_catalog(info.folder, verbose=False)


# ------------------------------------------------------------------------------------------
# 11. an empty audio file is called empty
# ------------------------------------------------------------------------------------------
def test_a_zero_byte_file_is_empty_not_unreadable(tmp_path):
    audio = _audio_folder(tmp_path)
    (audio / "c.wav").write_bytes(b"")
    with pytest.warns(UserWarning, match="skipped"):
        cat = C.from_folder(audio, _write(tmp_path / "tags.csv", CSV_TEXT), progress=False)
    assert dict(zip(cat.skipped.track_id, cat.skipped.reason))["c"] == "empty audio file (0 bytes)"


# ------------------------------------------------------------------------------------------
# 5, 7, 8. the suite: atomic index, running/failed/interrupted, cell timeout, -p checked first
# ------------------------------------------------------------------------------------------
import nbformat  # noqa: E402

from mrlib import book, suite  # noqa: E402


def _notebook(path: Path, params: str, body: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(params, metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


@pytest.fixture
def nbs(tmp_path) -> Path:
    folder = tmp_path / "nbs"
    folder.mkdir()
    _notebook(folder / "00_a.ipynb", "n_tracks = 5\nwidth = 0.5\ncatalog = 'synthetic'\nlr = None",
              "x = n_tracks")
    _notebook(folder / "01_b.ipynb", "epochs = 3", "y = epochs")
    return folder


@pytest.mark.parametrize("overrides,match", [
    ({"n_trakcs": 30}, r"n_trakcs=30: no selected notebook declares 'n_trakcs' \(did you mean n_tracks\?\)"),
    ({"n_tracks": "30x"}, r"00_a expects int \(its default is 5\), got str"),
    ({"n_tracks": 2.5}, r"00_a expects int"),
    ({"epochs": True}, r"01_b expects int .* got bool"),
    ({"catalog": 3}, r"00_a expects str"),
], ids=["typo", "str-for-int", "float-for-int", "bool-for-int", "int-for-str"])
def test_bad_parameters_are_refused_before_anything_runs(nbs, tmp_path, overrides, match):
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=match):
        suite.run_suite("quick", overrides, out_dir=out, notebooks=nbs)
    assert not out.exists()
    suite.check_parameters({"width": 1, "lr": 0.01, "n_tracks": 30}, suite.list_notebooks(None, nbs))


def test_the_command_line_refuses_a_mistyped_parameter(nbs, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(suite, "notebooks_dir", lambda: nbs)
    assert suite.main(["run", "--profile", "quick", "-p", "n_trakcs=30", "--out", str(tmp_path / "o")]) == 2
    assert "did you mean n_tracks" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_a_killed_suite_leaves_running_entries_that_become_interrupted(nbs, tmp_path):
    _notebook(nbs / "02_slow.ipynb", "pause = 60", "import time\ntime.sleep(pause)")
    out = tmp_path / "out"
    env = dict(os.environ)
    proc = subprocess.Popen([sys.executable, "-c",
                             f"from mrlib import suite; suite.run_suite('quick', out_dir={str(out)!r}, "
                             f"notebooks={str(nbs)!r})"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    while True:
        index = json.loads((out / "results.json").read_text()) if (out / "results.json").exists() else {}
        if index.get("notebooks", {}).get("02_slow", {}).get("status") == "running":
            break
        assert proc.poll() is None and time.time() - t0 < 120, proc.communicate()[1][-2000:]
        time.sleep(0.2)
    proc.kill()                                   # kill -9: no chance to write anything
    proc.wait()
    assert index["notebooks"]["00_a"]["status"] == "ok"
    with pytest.raises(ValueError, match=r"02_slow\.ipynb: running"):
        book.stage_book(out, tmp_path / "stage")
    # the next suite run turns the dead run's entry into "interrupted"; its own run is new
    (nbs / "02_slow.ipynb").unlink()
    index = json.loads(suite.run_suite("quick", out_dir=out, notebooks=nbs).read_text())
    assert index["notebooks"]["02_slow"]["status"] == "interrupted"
    with pytest.raises(ValueError, match=r"02_slow\.ipynb: interrupted"):
        book.stage_book(out, tmp_path / "stage")


@pytest.mark.slow
def test_a_hanging_cell_times_out_and_a_failed_notebook_stays_out_of_the_book(nbs, tmp_path):
    _notebook(nbs / "02_hang.ipynb", "pause = 600", "import time\ntime.sleep(pause)")
    out = tmp_path / "out"
    with pytest.raises(suite.NotebookFailed, match="per-cell time limit of 3 s"):
        suite.run_suite("quick", out_dir=out, notebooks=nbs, timeout_s=3)
    index = json.loads((out / "results.json").read_text())
    assert index["notebooks"]["02_hang"]["status"] == "failed"
    with pytest.raises(ValueError, match=r"02_hang\.ipynb: failed"):
        book.stage_book(out, tmp_path / "stage")
    assert suite.DEFAULT_CELL_TIMEOUT_S["smoke"] > 0 and suite.DEFAULT_CELL_TIMEOUT_S["quick"] > 0


def test_in_place_refresh_cut_off_leaves_the_committed_notebook_whole(nbs, tmp_path, monkeypatch):
    def ran(path, out_path, parameters, timeout_s=None):     # papermill's executed copy
        nb = nbformat.read(path, as_version=4)
        nb.cells[1].outputs = [nbformat.v4.new_output("stream", text="x" * 10000)]
        nbformat.write(nb, out_path)
        return {"status": "ok", "parameters": parameters, "wall_s": 1.0, "metrics": {}}

    monkeypatch.setattr(suite, "run_notebook", ran)
    before = (nbs / "01_b.ipynb").read_bytes()
    _cut_off_writes_to(monkeypatch, "01_b.ipynb", folder=nbs)
    with pytest.raises(KeyboardInterrupt):
        suite.run_suite("quick", out_dir=tmp_path / "out", notebooks=nbs, only=["01"], inplace=True)
    assert (nbs / "01_b.ipynb").read_bytes() == before and not list(nbs.glob("*.part"))


def test_a_truncated_index_is_kept_aside_not_a_crash(nbs, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text('{"notebooks": {"00_a": {"sta')
    index = json.loads(suite.run_suite("quick", out_dir=out, notebooks=nbs, only=["01"]).read_text())
    assert index["notebooks"]["01_b"]["status"] == "ok"
    assert "could not be read" in capsys.readouterr().out
    assert len(list(out.glob("results.json.corrupt-*"))) == 1


def test_a_suite_folder_in_use_is_refused(nbs, tmp_path):
    out = tmp_path / "out"
    with FolderLock(out, "suite run"):
        with pytest.raises(LockedError, match="suite run folder"):
            suite.run_suite("quick", out_dir=out, notebooks=nbs)


def test_the_book_needs_an_index_for_a_run_folder(tmp_path):
    (tmp_path / "00_a.ipynb").write_text("{}")
    with pytest.raises(FileNotFoundError, match="no results.json"):
        book.stage_book(tmp_path, tmp_path / "stage")


def dead_pid() -> int:
    """The pid of a process that has exited."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_run_folder_loses_the_temporaries_of_a_killed_run(finished, data):
    folder, before = finished
    # a run killed while it wrote its checkpoint or summary left these; a live writer's stays
    dead = [folder / f"checkpoint.pt.{dead_pid()}.part", folder / f"summary.json.{dead_pid()}.part"]
    live = folder / f"checkpoint.pt.{os.getppid()}.part"
    for f in (*dead, live):
        f.write_bytes(b"half")
    # a file of the user's that only looks like a temporary is not the run's to delete
    own = folder / f"thesis.{dead_pid()}.part"
    own.write_bytes(b"draft")
    T.train(cfg(folder), data=data, progress=False, resume=True)
    assert not any(f.exists() for f in dead) and live.exists() and own.read_bytes() == b"draft"
    live.unlink()
    own.unlink()
    assert snapshot(folder) == before


def test_a_refused_run_deletes_nothing_not_even_dead_temporaries(finished, data):
    """A run refused with RunExistsError says nothing was changed: the folder is as it was."""
    folder, _ = finished
    dead = folder / f"checkpoint.pt.{dead_pid()}.part"
    dead.write_bytes(b"half")
    before = snapshot(folder)
    with pytest.raises(T.RunExistsError, match="another configuration"):
        T.train(cfg(folder, seed=1), data=data, progress=False)
    assert snapshot(folder) == before


def test_a_rebuild_removes_the_temporaries_of_killed_workers(tmp_path):
    from mrlib.paths import write_json_atomic

    root = C.build_synthetic(4, 0, 1.0, root=tmp_path / "cat", n_jobs=1, progress=False)
    info = json.loads((root / "catalog.json").read_text())
    write_json_atomic({**info, "complete": False}, root / "catalog.json")   # killed mid-build
    (root / "audio" / "syn00001.flac").unlink()
    # what a worker killed in its write leaves (reaped, or a zombie not yet reaped: a
    # container's init may never reap it), and a file an orphaned worker is still writing
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    stat = Path(f"/proc/{zombie.pid}/stat")
    while stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z":
        time.sleep(0.01)
    dead = [root / "audio" / f"syn00001.flac.{pid}.part" for pid in (dead_pid(), zombie.pid)]
    live = root / "audio" / f"syn00002.flac.{os.getppid()}.part"
    for f in (*dead, live):
        f.write_bytes(b"half a file")
    C.build_synthetic(4, 0, 1.0, root=root, n_jobs=1, progress=False)
    zombie.wait()
    assert not any(f.exists() for f in dead) and live.exists()
    assert sorted(p.name for p in (root / "audio").glob("*.flac")) == \
        [f"syn0000{i}.flac" for i in range(4)]


def test_dead_temporaries_are_only_atomic_path_ones_and_never_probed_where_that_kills(tmp_path, monkeypatch):
    from mrlib import paths

    dead = tmp_path / f"a.flac.{dead_pid()}.part"
    others = [tmp_path / "x.part", tmp_path / "notes.v2.part"]   # not <name>.<pid>.part: kept
    for f in (dead, *others):
        f.write_bytes(b"half")
    (tmp_path / f"folder.{dead_pid()}.part").mkdir()              # not a file: kept
    assert paths.remove_dead_temporaries(tmp_path) == [dead] and all(f.exists() for f in others)
    # where os.kill(pid, 0) would terminate the process (Windows), no pid is probed: age decides
    monkeypatch.setattr(paths, "_CAN_PROBE", False)
    monkeypatch.setattr(paths.os, "kill", lambda *a: pytest.fail("probed a pid"))
    fresh, old = tmp_path / "b.flac.1.part", tmp_path / "c.flac.2.part"
    for f in (fresh, old):
        f.write_bytes(b"half")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    assert paths.remove_dead_temporaries(tmp_path) == [old] and fresh.exists()


def test_a_worker_whose_build_died_writes_nothing(tmp_path):
    from mrlib import synth
    from mrlib.synth_catalog import _render_to_file

    attrs, _, _ = synth.sample_catalog(2, 0)
    target = tmp_path / "t.wav"
    # a worker's parent is the build; a worker that was re-parented (its build was killed)
    # renders nothing more to disk
    assert _render_to_file(attrs[0], 0, 8000, 1.0, str(target), "wav", parent=os.getppid() + 1) == ""
    assert not target.exists()
    assert _render_to_file(attrs[0], 0, 8000, 1.0, str(target), "wav", parent=os.getppid())
    assert target.is_file()
