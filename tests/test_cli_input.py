"""The command lines on bad input: a one-line error and an exit status, never a traceback.

Each test gives one CLI (or the path helper every CLI goes through) what a user might type by
mistake: a file where a folder is expected, a folder where a file is expected, a name that does
not exist, Ctrl-C, arguments that would be dropped.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from mrlib import (bench, book, catalog, experiments, paths, results, suite,
                   train_args)
from mrlib.paths import FolderLock, data_dir, runs_dir


@pytest.fixture
def a_file(tmp_path) -> Path:
    path = tmp_path / "notes.txt"
    path.write_text("a user's file\n")
    return path


# --------------------------------------------------------------------------------------------
# a file where a folder is expected
# --------------------------------------------------------------------------------------------
def test_make_folder_names_the_file_in_the_way(a_file):
    for target in (a_file, a_file / "sub" / "folder"):
        with pytest.raises(ValueError, match=f"{a_file} is a file, not a folder"):
            paths.make_folder(target, "run folder")
    assert a_file.read_text() == "a user's file\n"


def test_folder_lock_on_a_file_is_a_value_error(a_file):
    with pytest.raises(ValueError, match="training run folder"):
        FolderLock(a_file, "training run").acquire()
    assert a_file.read_text() == "a user's file\n"


@pytest.mark.parametrize("var, getter", [("MRLIB_DATA", data_dir), ("MRLIB_RUNS", runs_dir)])
def test_data_and_runs_roots_that_are_files(monkeypatch, a_file, var, getter):
    monkeypatch.setenv(var, str(a_file))
    with pytest.raises(ValueError, match=f"{var}.*is a file"):
        getter()


def test_catalog_build_into_a_file_is_one_line(a_file, capsys):
    status = catalog.main(["build", "synthetic", "--root", str(a_file), "--n-tracks", "4",
                           "--duration", "1", "--no-progress"])
    assert status == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert a_file.read_text() == "a user's file\n"


def test_experiments_store_below_a_file_is_a_usage_error(a_file, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("MRLIB_RESULTS", str(tmp_path / "results"))
    assert experiments.main(["run", "table2", "--profile", "smoke", "--quiet",
                             "--store", str(a_file / "table2.json")]) == 2
    assert "is a file, not a folder" in (err := capsys.readouterr().err) and err.count("\n") == 1


# --------------------------------------------------------------------------------------------
# an empty path or name (an unset shell variable): the current folder, or every notebook
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("main, argv", [
    (catalog.main, ["build", "synthetic", "--root", "", "--n-tracks", "2", "--duration", "1",
                    "--no-progress"]),
    (catalog.main, ["info", "synthetic", "--root", ""]),
    (suite.main, ["run", "--only", "00", "--out", ""]),
    (train_args.config_from_args, ["--out", ""]),
    (train_args.config_from_args, ["--config", ""]),     # was dropped: a default run trained
])
def test_an_empty_path_is_a_usage_error(tmp_path, monkeypatch, capsys, main, argv):
    # catalog build --root "" wrote the catalog into the current folder
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(suite, "_run_suite_locked", lambda *a, **k: pytest.fail("ran the suite"))
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert "expected a path, got ''" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_suite_refuses_a_negative_cell_timeout_before_running(tmp_path, monkeypatch, capsys):
    # run_suite passed a negative timeout_s on to papermill; only the command line refused it
    monkeypatch.setattr(suite, "_run_suite_locked", lambda *a, **k: pytest.fail("ran the suite"))
    with pytest.raises(ValueError, match=r"timeout_s \(--timeout, seconds; 0: none\) must be >= 0, got -1"):
        suite.run_suite("smoke", only=["00"], out_dir=tmp_path / "run", timeout_s=-1)
    assert suite.main(["run", "--only", "00", "--timeout", "-1", "--out", str(tmp_path / "run")]) == 2
    assert "must be >= 0, got -1" in (err := capsys.readouterr().err) and err.count("\n") == 1
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("only", ["", " "])
def test_suite_only_with_an_empty_name_is_refused(tmp_path, monkeypatch, capsys, only):
    # every notebook's name starts with "": --only "" ran the whole suite
    monkeypatch.setattr(suite, "_run_suite_locked", lambda *a, **k: pytest.fail("ran the suite"))
    assert suite.main(["run", "--only", "01", only, "--out", str(tmp_path / "run")]) == 2
    assert "an empty notebook name [" in (err := capsys.readouterr().err) and "matches every notebook" in err


def test_train_config_that_is_not_json_names_the_file(a_file, capsys):
    with pytest.raises(SystemExit) as exit_:
        train_args.config_from_args(["--config", str(a_file)])
    assert exit_.value.code == 2
    assert f"--config {a_file}: not a saved config.json (not JSON" in capsys.readouterr().err


def test_train_help_says_what_trainconfig_documents(capsys):
    """Each config flag's help is its field's description in TrainConfig's docstring, without
    reST markup, and a JSON flag says it takes JSON."""
    with pytest.raises(SystemExit) as exit_:
        train_args.config_from_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert exit_.value.code == 0
    assert "--margin MARGIN Triplet-loss margin δ. (default: 0.5)" in text
    assert "The system to train (a key of mrlib.systems.SYSTEMS). (default: 'tl')" in text
    assert "--catalog-kwargs JSON" in text and "``" not in text and ":func:" not in text


def test_train_catalog_kwargs_the_loader_lacks_is_one_line(capsys):
    from mrlib import train

    # was a TypeError traceback from build_synthetic
    assert train.main(["--catalog-kwargs", '{"bogus": 1}', "--n-tracks", "4", "--epochs", "0",
                       "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "TrainConfig.catalog_kwargs {'bogus': 1} do not fit catalog 'synthetic'" in err
    assert "Traceback" not in err


# --------------------------------------------------------------------------------------------
# a folder where a file is expected, a file of another shape
# --------------------------------------------------------------------------------------------
def test_read_store_of_a_folder(tmp_path):
    with pytest.raises(results.StoreError, match="is a folder"):
        results.read_store(tmp_path)


def test_read_store_of_another_shape(tmp_path):
    path = tmp_path / "table2_synthetic_quick.json"
    path.write_text(json.dumps({"schema": results.SCHEMA, "experiment": "table2",
                                "catalog": "synthetic", "profile": "quick",
                                "metrics": ["MAP@20"], "rows": []}))
    with pytest.raises(results.StoreError, match="'rows' must be a JSON object"):
        results.read_store(path)


def test_train_config_that_is_a_folder_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        train_args.config_from_args(["--config", str(tmp_path)])
    assert exit_.value.code == 2
    assert "Is a directory" in capsys.readouterr().err


def test_train_paper_with_an_unknown_system_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        train_args.config_from_args(["--paper", "--system", "bogus"])
    assert exit_.value.code == 2
    assert "TrainConfig.system must be one of" in capsys.readouterr().err


def test_train_config_and_paper_together_is_a_usage_error(tmp_path, capsys):
    from mrlib.train_config import TrainConfig

    TrainConfig(width=0.25).to_json(tmp_path / "config.json")   # --paper was dropped silently
    with pytest.raises(SystemExit) as exit_:
        train_args.config_from_args(["--config", str(tmp_path / "config.json"), "--paper"])
    assert exit_.value.code == 2
    assert "choose one" in capsys.readouterr().err


def test_book_from_a_folder_without_a_run(tmp_path, capsys):
    assert book.main(["--run", str(tmp_path)]) == 2
    assert "no executed notebooks" in capsys.readouterr().err


def test_book_from_an_unfinished_run(tmp_path, capsys):
    nb = sorted((paths.repo_root() / "notebooks").glob("00_*.ipynb"))[0]
    shutil.copyfile(nb, tmp_path / nb.name)
    (tmp_path / "results.json").write_text(
        json.dumps({"notebooks": {nb.stem: {"status": "interrupted"}}}))
    assert book.main(["--run", str(tmp_path)]) == 2
    assert f"{nb.name}: interrupted" in capsys.readouterr().err


@pytest.mark.parametrize("index", ['{"notebooks": [1]', '[1, 2]', '{"notebooks": [1, 2]}'])
def test_book_from_a_run_with_a_damaged_index(tmp_path, capsys, index):
    nb = sorted((paths.repo_root() / "notebooks").glob("00_*.ipynb"))[0]
    shutil.copyfile(nb, tmp_path / nb.name)
    (tmp_path / "results.json").write_text(index)
    assert book.main(["--run", str(tmp_path)]) == 2
    assert "results.json cannot be read" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# messages that send the user to a command that works
# --------------------------------------------------------------------------------------------
def test_catalog_info_hint_keeps_the_audio_format(capsys):
    status = catalog.main(["info", "synthetic", "--n-tracks", "12", "--duration", "5",
                           "--format", "wav"])
    assert status == 1
    out = capsys.readouterr().out
    assert "not built" in out and out.rstrip().endswith("--duration 5 --format wav")


def test_catalog_format_of_music21_is_refused(capsys):
    # music21 writes FLAC: --format wav used to be dropped without a word
    assert catalog.main(["build", "music21", "--format", "wav", "--n-tracks", "0"]) == 2
    assert "--format applies to the synthetic catalog only" in capsys.readouterr().err


@pytest.mark.parametrize("name, override", [("table2", {"device": "cpu"}),
                                            ("table2", {"n_jobs": 4, "lr": 0.01}),
                                            ("table2", {"epochs": 2}),      # smoke's own value
                                            ("autopool", {"prefetch": 4})])
def test_experiments_refuse_an_override_no_row_takes(tmp_path, name, override):
    # a row drops device, n_jobs ...: the -p was ignored, yet its hash sent a full rerun of
    # every row to an overrides file of its own
    with pytest.raises(ValueError, match="changes no row's parameters"):
        experiments.run_experiment(name, "synthetic", "smoke", [0], overrides=override,
                                   rows=["no such row"], store=tmp_path / "store.json")


def test_experiments_readme_keeps_the_committed_tables(tmp_path, monkeypatch, capsys):
    # with the results elsewhere, every claim of the README read "not run — table not stored"
    def must_not_write(*args, **kwargs):
        raise AssertionError("the README was rewritten")

    monkeypatch.setenv("MRLIB_RESULTS", str(tmp_path))
    monkeypatch.setattr(results, "replace_readme_block", must_not_write)
    assert experiments.main(["readme"]) == 2
    assert f"MRLIB_RESULTS points at {tmp_path}" in capsys.readouterr().err


def test_experiments_show_with_a_profile_the_experiment_lacks(capsys):
    assert experiments.main(["show", "cfr2017_curve", "--profile", "paper"]) == 2
    err = capsys.readouterr().err
    assert "the profile of cfr2017_curve must be one of ('smoke', 'quick'), got 'paper'" in err and "first" not in err


def test_bench_all_refuses_arguments_it_would_drop(monkeypatch, capsys):
    def must_not_run(name, argv=None):
        raise AssertionError(f"ran {name}")

    monkeypatch.setattr(bench, "run", must_not_run)
    assert bench.main(["all", "--n-tracks", "4"]) == 2
    assert "takes no arguments" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["all"], ["synth"]])
def test_bench_at_its_defaults_shows_a_defect_with_its_traceback(monkeypatch, argv):
    """A benchmark at its defaults (alone or under 'all'): an error there is no refused input."""
    def broken(name, argv=None):
        raise ValueError("operands could not be broadcast together")

    monkeypatch.setattr(bench, "run", broken)
    monkeypatch.setattr(bench, "available", lambda: ["synth"])
    with pytest.raises(ValueError, match="broadcast"):
        bench.main(argv)


def test_bench_reports_a_value_mrlib_refuses_in_one_line(capsys):
    # the synth benchmark passes --sr to mrlib.synth unchecked: a ValueError traceback
    assert bench.main(["synth", "--sr", "0", "--n-tracks", "1", "--duration", "1"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "python -m mrlib.bench synth: error: sr must be >= 8000, got 0"


@pytest.mark.parametrize("argv, message", [
    (["mining", "--n-jobs", "0"], "--n-jobs must be >= 1, or -1 for every core; got 0"),
    (["mining", "--json", "{folder}"], "is a folder; name the file to write"),
    (["retrieval", "--json", "{folder}"], "is a folder; name the file to write"),
])
def test_bench_refuses_before_the_measurements(tmp_path, capsys, argv, message):
    # these failed after the measurements (a child's or the JSON writer's traceback)
    argv = [a.replace("{folder}", str(tmp_path)) for a in argv]
    with pytest.raises(SystemExit) as exit_:
        bench.main(argv)
    assert exit_.value.code == 2
    out = capsys.readouterr()
    assert message in out.err and not out.out


def test_makefile_book_reads_the_runs_folder_the_suite_wrote(tmp_path):
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    env = {**os.environ, "MRLIB_RUNS": str(tmp_path / "elsewhere")}
    out = subprocess.run(["make", "-n", "book", "BIN=/nonexistent"], cwd=paths.repo_root(),
                         env=env, capture_output=True, text=True).stdout
    assert f"mrlib.book --run {tmp_path / 'elsewhere'}/quick" in out
    assert "--run runs/" not in out


# --------------------------------------------------------------------------------------------
# Ctrl-C
# --------------------------------------------------------------------------------------------
def test_catalog_build_interrupted_is_one_line(monkeypatch, capsys):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(catalog, "_cli_build", interrupted)
    try:
        status = catalog.main(["build", "synthetic", "--no-progress"])
    except KeyboardInterrupt:       # caught here, so that it does not stop the test session
        pytest.fail("Ctrl-C left catalog.main as a traceback")
    assert status == 130
    assert "run the same command again" in capsys.readouterr().err


def test_suite_interrupted_is_one_line(monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(suite, "run_suite", interrupted)
    asyncio_log = logging.getLogger("asyncio")
    level = asyncio_log.level
    try:
        status = suite.main(["run", "--profile", "smoke", "--only", "00"])
        # the cut-off cell's task is not logged after that line with two tracebacks
        quiet = not asyncio_log.isEnabledFor(logging.ERROR)
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C left suite.main as a traceback")
    finally:
        asyncio_log.setLevel(level)
    assert status == 130 and quiet
    assert "marked 'interrupted'" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# a damaged run folder
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("damaged", ["summary.json", "metrics.jsonl", "config.json"])
def test_load_run_names_the_damaged_file(tmp_path, damaged):
    from mrlib.runfolder import load_run
    from mrlib.train_config import TrainConfig

    TrainConfig().to_json(tmp_path / "config.json")
    (tmp_path / "summary.json").write_text("{}\n")
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 0, "val_map": 0.5}\n')
    with open(tmp_path / damaged, "a") as fh:        # a write cut short
        fh.write('{"epoch": 1, "val_m')
    with pytest.raises(ValueError, match=f"{tmp_path / damaged} cannot be read"):
        load_run(tmp_path)


# --------------------------------------------------------------------------------------------
# exit status
# --------------------------------------------------------------------------------------------
def _toy_rows(catalog, profile, overrides):
    return {row: {"row": row, **overrides} for row in "AB"}


def _toy_run(row, parameters, seed, device, workdir):
    if row == "B" and parameters.get("broken"):
        raise RuntimeError("broken on purpose")
    return {"score": [0.25, 0.5, 0.75 - 0.1 * seed]}, {}


@pytest.fixture
def cli_toy():
    experiments.register(experiments.Experiment(
        name="cli_toy", title="a toy experiment", notebook="07_evaluation.ipynb",
        metrics=("score",), unit="query", rows=_toy_rows, run=_toy_run))
    yield "cli_toy"
    experiments.EXPERIMENTS.pop("cli_toy")


def test_experiments_exit_status_is_the_commands_own(cli_toy, tmp_path, capsys):
    run = ["run", cli_toy, "--store", str(tmp_path / "toy.json"), "-p", "broken=true", "--quiet"]
    assert experiments.main([*run, "--seeds", "0"]) == 1          # B seed 0 failed
    assert "[experiments] failed: B seed 0" in capsys.readouterr().out
    # a later run of row A alone succeeds: B's stored failure is not this command's
    assert experiments.main([*run, "--seeds", "1", "--rows", "A"]) == 0
    assert "[experiments] failed" not in capsys.readouterr().out
    assert experiments.main([*run, "--seeds", "0", "1"]) == 1      # B is asked for again


def test_catalog_build_passes_the_music21_instrumentation(monkeypatch, capsys):
    """The by-collection variant (README: stored as music21-by-collection) is built from the
    catalogs' command line; the synthetic catalog refuses the option."""
    asked = []

    def record(name, **kw):
        asked.append((name, kw.get("instrumentation")))
        raise ValueError("recorded")

    monkeypatch.setattr(catalog, "build", record)
    for extra, expected in (([], "independent"), (["--instrumentation", "by_collection"], "by_collection")):
        assert catalog.main(["build", "music21", "--n-tracks", "2", *extra]) == 2
        assert asked.pop() == ("music21", expected)
    assert catalog.main(["build", "synthetic", "--instrumentation", "by_collection"]) == 2
    assert "--instrumentation applies to the music21 catalog only" in capsys.readouterr().err
    for flag in (["--events"], ["--format", "wav"]):    # the synthetic catalog's own options
        assert catalog.main(["build", "music21", *flag]) == 2 and not asked
        assert f"{flag[0]} applies to the synthetic catalog only" in capsys.readouterr().err
    assert not asked


def test_the_music21_module_is_no_command_line_that_builds_nothing():
    """A script written for a command line the module no longer has fails, naming the one to use."""
    import sys

    done = subprocess.run([sys.executable, "-m", "mrlib.music21_catalog", "build", "--n-tracks", "2"],
                          capture_output=True, text=True)
    assert done.returncode == 1
    assert "python -m mrlib.catalog build music21" in done.stderr


def test_catalog_info_finds_the_by_collection_build(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MRLIB_DATA", str(tmp_path))
    assert catalog.main(["info", "music21", "--n-tracks", "3", "--instrumentation", "by_collection"]) == 1
    out = capsys.readouterr().out
    assert "music21_n3_s0_by_collection: not built" in out
    assert "build music21 --n-tracks 3 --seed 0 --instrumentation by_collection" in out


def test_dead_temporaries_named_by_a_string_are_that_file_only(tmp_path):
    import subprocess as sp
    import sys

    proc = sp.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    for name in ("checkpoint.pt", "pt"):
        (tmp_path / f"{name}.{proc.pid}.part").write_bytes(b"half")
    gone = paths.remove_dead_temporaries(tmp_path, names="checkpoint.pt")
    assert [g.name for g in gone] == [f"checkpoint.pt.{proc.pid}.part"]
    assert (tmp_path / f"pt.{proc.pid}.part").exists()
