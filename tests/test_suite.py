"""The suite runner: order, parameters, results index, failures named, record()."""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
import zmq
import zmq.asyncio
from jupyter_client.channels import AsyncZMQSocketChannel
from jupyter_client.session import Session

from mrlib import checks, experiments, suite
from mrlib.catalog import lesson_catalog
from mrlib.cqt import FeatureConfig
from mrlib.matchnet_cv import MatchNetConfig
from mrlib.train_config import PAPER_SCALE, TrainConfig, paper_config


def _notebook(path: Path, params: str, body: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# test"),
                nbformat.v4.new_code_cell(params, metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    _notebook(nbs / "00_first.ipynb", "n_tracks = 5\nseed = 0",
              "from mrlib.suite import record\nrecord('double', n_tracks * 2)")
    _notebook(nbs / "01_second.ipynb", "epochs = 3",
              "from mrlib.suite import record\nrecord('epochs_seen', epochs)")
    return nbs


def test_record_is_silent_outside_a_suite(monkeypatch, tmp_path):
    # returns None, so a record() that ends a notebook cell shows nothing; writes nothing
    monkeypatch.delenv(suite.RECORD_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert suite.record("x", {"rows": list(range(150))}) is None
    assert not any(tmp_path.iterdir())
    with pytest.raises(ValueError):
        suite.record("", 1)


def test_record_inside_suite_merges_json(tmp_path, monkeypatch):
    import numpy as np

    target = tmp_path / "r.json"
    monkeypatch.setenv(suite.RECORD_ENV, str(target))
    suite.record("a", np.float32(0.5))
    suite.record("b", {"rows": np.arange(3)})
    assert json.loads(target.read_text()) == {"a": 0.5, "b": {"rows": [0, 1, 2]}}


@pytest.mark.parametrize("damaged", ['{"map@20": 0.28, "table2": [1, 2', "[1, 2, 3]"])
def test_record_refuses_a_damaged_record_and_leaves_it(tmp_path, monkeypatch, damaged):
    """A record file that is not a JSON object (another process wrote it, or it was cut short)
    is an error: writing over it would lose the values recorded before, without a word."""
    target = tmp_path / "r.json"
    target.write_text(damaged)
    monkeypatch.setenv(suite.RECORD_ENV, str(target))
    with pytest.raises(ValueError):
        suite.record("x", 1)
    assert target.read_text() == damaged


def test_parse_value():
    assert suite.parse_value("3") == 3
    assert suite.parse_value("0.5") == 0.5
    assert suite.parse_value("false") is False
    assert suite.parse_value("music21") == "music21"
    assert suite.parse_value("[1, 2]") == [1, 2]


def test_parse_params_reads_values_and_refuses_malformed_items(capsys):
    parser = argparse.ArgumentParser(prog="x")
    assert suite.parse_params([" epochs = 3", "catalog=music21", "note=a=b"], parser) == {
        "epochs": 3, "catalog": "music21", "note": "a=b"}
    for bad in ("epochs", "=1", " =1"):
        with pytest.raises(SystemExit) as exit_:
            suite.parse_params([bad], parser)
        assert exit_.value.code == 2 and f"-p expects NAME=VALUE, got {bad!r}" in capsys.readouterr().err
    # both command lines read -p through it
    for main, argv in ((suite.main, ["run", "-p", "=1"]),
                       (experiments.main, ["run", "table2", "-p", "=1"])):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 2 and "-p expects NAME=VALUE, got '=1'" in capsys.readouterr().err


@pytest.mark.slow
def test_suite_runs_in_order_and_indexes(folder, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(ValueError, match="no selected notebook declares 'unused'"):
        suite.run_suite("smoke", {"epochs": 7, "unused": 1}, out_dir=out, notebooks=folder)
    assert not out.exists()                       # refused before anything ran
    index_path = suite.run_suite("smoke", {"epochs": 7}, out_dir=out, notebooks=folder)
    index = json.loads(index_path.read_text())
    assert list(index["notebooks"]) == ["00_first", "01_second"]
    first, second = index["notebooks"]["00_first"], index["notebooks"]["01_second"]
    # the smoke profile's n_tracks reaches the notebook that declares it, and only that one
    assert first["parameters"] == {"n_tracks": suite.PROFILES["smoke"]["n_tracks"]}
    assert first["metrics"] == {"double": 2 * suite.PROFILES["smoke"]["n_tracks"]}
    assert second["parameters"] == {"epochs": 7} and second["metrics"] == {"epochs_seen": 7}
    assert all(e["status"] == "ok" and e["wall_s"] > 0 for e in (first, second))
    assert "torch" in index["versions"] and index["profile"] == "smoke"
    # record() ends the notebooks' last cell, and adds no output to the executed copy
    executed = nbformat.read(out / "00_first.ipynb", as_version=4)
    assert executed.cells[-1].source.endswith("record('double', n_tracks * 2)")
    assert executed.cells[-1].outputs == []


@pytest.mark.slow
def test_a_relative_path_reaches_the_notebook_as_the_caller_meant_it(tmp_path, monkeypatch):
    """The notebooks run in their own folder: ``-p catalog=data/mine`` given from the caller's
    folder reaches them as that folder's absolute path (relative, it named nothing there);
    names and paths to nothing pass unchanged, and the run folder is named after the folder."""
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    _notebook(nbs / "00_reads.ipynb", "catalog = 'synthetic'\nother = 'x'",
              "from pathlib import Path\nfrom mrlib.suite import record\n"
              "record('exists', Path(catalog).is_dir())\nrecord('other', other)")
    (tmp_path / "data" / "mine").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MRLIB_RUNS", str(tmp_path / "runs"))
    index = json.loads(suite.run_suite("smoke", {"catalog": "data/mine", "other": "no/such/folder"},
                                       notebooks=nbs).read_text())
    entry = index["notebooks"]["00_reads"]
    assert entry["parameters"] == {"catalog": str(tmp_path / "data" / "mine"), "other": "no/such/folder"}
    assert entry["metrics"] == {"exists": True, "other": "no/such/folder"}
    assert (tmp_path / "runs" / "smoke_mine_other-no-such-folder" / "results.json").is_file()


def test_a_run_with_other_settings_gets_its_own_folder():
    """``-p`` settings name the run's folder, so a second run with another seed, catalog or
    device never replaces the first one's notebooks; the defaults add nothing."""
    name = suite.run_folder_name
    assert name("quick", {}) == "quick" == name("quick", {"device": "auto", "catalog": "synthetic"})
    assert name("quick", {"catalog": "music21"}) == "quick_music21"
    assert name("paper", {"device": "cuda"}) == "paper_device-cuda" != name("paper", {"device": "cpu"})
    assert name("quick", {"seed": 1, "catalog": "/data/my catalog"}) == "quick_my-catalog_seed-1"
    assert name("smoke", {"seed": 1}) != name("smoke", {"seed": 2}) != name("smoke", {})


def test_failing_notebook_is_named_and_kept(folder, tmp_path):
    _notebook(folder / "02_broken.ipynb", "x = 1", "raise ValueError('bad parameter x')")
    out = tmp_path / "run"
    with pytest.raises(suite.NotebookFailed) as err:
        suite.run_suite("quick", out_dir=out, notebooks=folder)
    message = str(err.value)
    assert "02_broken.ipynb" in message and "ValueError: bad parameter x" in message
    assert (out / "02_broken.ipynb").is_file()  # the executed copy is kept
    # the message names the failing cell by its In [n] and its first line
    count = int(re.search(r"failed at In \[(\d+)\], the cell that starts .raise ValueError", message).group(1))
    failed = [c for c in nbformat.read(out / "02_broken.ipynb", as_version=4).cells
              if c.cell_type == "code" and c.execution_count == count]
    assert [c.source for c in failed] == ["raise ValueError('bad parameter x')"]
    index = json.loads((out / "results.json").read_text())
    assert index["notebooks"]["00_first"]["status"] == "ok"
    assert index["notebooks"]["02_broken"]["status"] == "failed"


@pytest.mark.slow
def test_in_place_keeps_the_run_time_not_papermill_metadata(folder, tmp_path):
    suite.run_suite("quick", out_dir=tmp_path / "run", notebooks=folder, inplace=True)
    for path in sorted(folder.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        assert "papermill" not in nb.metadata
        assert all("papermill" not in c.metadata and "execution" not in c.metadata for c in nb.cells)
        run = nb.metadata["mrlib"]
        assert run["wall_s"] > 0 and run["profile"] == "quick" and run["cpu_count"] >= 1


def test_bad_arguments(folder):
    with pytest.raises(ValueError, match="profile must be one of"):
        suite.run_suite("huge", notebooks=folder)
    with pytest.raises(ValueError, match="no such notebook"):
        suite.list_notebooks(["42"], folder)
    with pytest.raises(ValueError, match="--inplace"):
        suite.run_suite("smoke", inplace=True, notebooks=folder)


# ------------------------------------------------------------------------------------------
# Table 2: one papermill run of the training notebook per row, then 07 reads them
# ------------------------------------------------------------------------------------------
def test_declared_parameters_survive_comments(tmp_path):
    # papermill's line parser drops these lines; the suite must still see every parameter
    nb = _notebook(tmp_path / "05_x.ipynb",
                   "width = 0.125   # (1.0 = the paper's Table 1)\n"
                   "table2_dir = None   # runs <dir>/<name>; None = train here\n"
                   "pair = (1, 2)\nexpr = 2 ** 3\nx: int = 4", "pass")
    assert suite.declared_parameters(nb) == {"width": 0.125, "table2_dir": None, "pair": (1, 2),
                                             "expr": "2 ** 3", "x": 4}
    bad = _notebook(tmp_path / "06_y.ipynb", "x = (", "pass")
    with pytest.raises(ValueError, match="not valid Python"):
        suite.declared_parameters(bad)


@pytest.mark.parametrize("path", suite.list_notebooks(), ids=lambda p: p.stem)
def test_papermill_reads_every_parameter_of_the_notebooks(path, caplog):
    # papermill skips (and warns about) any line with a second '=' -- e.g. one in a comment --
    # and then calls the suite's own injected values "unknown parameters" in every run log
    import papermill

    with caplog.at_level("WARNING", logger="papermill"):
        inferred = set(papermill.inspect_notebook(str(path)))
    assert inferred == set(suite.declared_parameters(path))
    assert not [r.getMessage() for r in caplog.records if "Unable to parse" in r.getMessage()]


@dataclasses.dataclass
class _Knobs:
    n: int = 1
    rate: float | None = None


def test_configs_share_one_checker_and_the_papers_scale():
    # the shared checker converts, and names the owner and the field of a refusal
    table = {"n": checks.int_at_least(1),
             "rate": (checks.rule(lambda v: checks.is_real(v) and 0 < v < 1, "None or in (0, 1)",
                                  convert=float, optional=True),)}
    knobs = _Knobs(np.int64(3), np.float32(0.5))
    checks.validate_fields(knobs, table)
    assert (knobs.n, knobs.rate) == (3, 0.5) and type(knobs.n) is int and type(knobs.rate) is float
    with pytest.raises(TypeError, match=r"^_Knobs\.n must be an int, got 1\.5$"):
        checks.validate_fields(_Knobs(n=1.5), table)
    with pytest.raises(ValueError, match=r"^_Knobs\.rate must be None or in \(0, 1\), got 2$"):
        checks.validate_fields(_Knobs(rate=2), table)
    # every config refuses through it, in the same words
    for make, field, bad, error in [(TrainConfig, "epochs", 2.5, TypeError),
                                    (TrainConfig, "epochs", -1, ValueError),
                                    (MatchNetConfig, "batch_size", "8", TypeError),
                                    (MatchNetConfig, "lr", 1.5, ValueError),
                                    (FeatureConfig, "hop_length", 0, ValueError)]:
        with pytest.raises(error, match=rf"^{make.__name__}\.{field} must be "):
            make(**{field: bad})
    # the suite's paper profile and paper_config() read one statement of the papers' scale
    config, profile = paper_config().to_dict(), suite.PROFILES["paper"]
    assert {k: config[k] for k in PAPER_SCALE} == PAPER_SCALE
    shared = set(config) & set(profile)
    assert {"n_tracks", "patch_len", "width", "epochs", "n_pos", "n_neg"} <= shared
    assert {k: profile[k] for k in shared} == {k: config[k] for k in shared}
    assert (PAPER_SCALE["n_tracks"], PAPER_SCALE["patch_len"], PAPER_SCALE["width"],
            PAPER_SCALE["n_pos"], PAPER_SCALE["n_neg"]) == (14246, 512, 1.0, 15, 250)


def test_the_suite_reads_the_papers_scale_without_loading_torch():
    # `python -m mrlib.suite` and every notebook's `from mrlib.suite import record` stay light
    out = subprocess.run([sys.executable, "-c", "import sys, mrlib.suite; print('torch' in sys.modules)"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


async def _reply_after_a_send(channel_class) -> str | None:
    """Wait on the shell channel for a reply that lands while the client sends on that socket.

    This is nbclient's situation in a widget cell: it answers an Output widget on the shell
    socket while it waits there for the cell's ``execute_reply``.
    """
    context = zmq.asyncio.Context()
    # inproc: a send lands in the peer's queue at once, with no I/O thread to wait for
    kernel = zmq.Context.shadow(context.underlying).socket(zmq.ROUTER)
    client = context.socket(zmq.DEALER)
    try:
        kernel.bind("inproc://shell")
        client.connect("inproc://shell")
        session = Session(key=b"test")
        channel = channel_class(client, session)
        session.send(client, "execute_request", content={})
        ident = kernel.recv_multipart()[0]
        waiting = asyncio.ensure_future(channel.get_msg(timeout=None))
        await asyncio.sleep(0.2)                         # the channel is waiting
        # the reply lands, and before the event loop runs again the client sends: that send
        # takes zmq's wake-up edge
        session.send(kernel, "execute_reply", content={"status": "ok"}, ident=[ident])
        session.send(client, "comm_msg", content={})
        try:
            return (await asyncio.wait_for(waiting, 3.0))["msg_type"]
        except asyncio.TimeoutError:
            return None
    finally:
        client.close(0)
        kernel.close(0)
        context.term()


def test_the_suite_sees_a_shell_reply_whose_wake_up_a_send_took():
    # jupyter_client's channel misses this reply (it would wait until the cell's time limit);
    # the suite's channel, which waits in slices of one second, receives it
    assert asyncio.run(_reply_after_a_send(AsyncZMQSocketChannel)) is None
    assert asyncio.run(_reply_after_a_send(suite._ShellChannel)) == "execute_reply"
    # and papermill's kernels get that channel
    assert suite._KernelManager().client().shell_channel_class is suite._ShellChannel


@pytest.mark.slow
@pytest.mark.parametrize("notebook, changed", [("00_overview", {"width": 0.0625}),
                                               ("06_training", {"lr": 0.002})])
def test_a_lesson_that_trains_runs_again_with_a_changed_parameter(notebook, changed, tmp_path,
                                                                  monkeypatch):
    """A student changes a parameter of a lesson that trains and runs it again: the runs of the
    changed configuration go to folders of their own (the first run's folders would refuse them
    with RunExistsError). Both runs hide the solutions, as a handed-out copy does."""
    monkeypatch.setenv("MRLIB_RUNS", str(tmp_path / "runs"))
    hidden = {"show_solutions": False}
    suite.run_suite("smoke", hidden, only=[notebook], out_dir=tmp_path / "first")
    index = suite.run_suite("smoke", {**hidden, **changed}, only=[notebook], out_dir=tmp_path / "second")
    entry = json.loads(index.read_text())["notebooks"][notebook]
    assert entry["status"] == "ok" and entry["parameters"].items() >= changed.items()
    folders = {p.parent.name for p in (tmp_path / "runs").rglob("config.json")}
    assert len(folders) >= 4, folders   # the first run's folders and the second's, side by side


@pytest.mark.slow
def test_lessons_read_a_catalog_folder_as_it_is(tmp_path, monkeypatch):
    """A catalog someone recorded is a folder with its own size: the lessons that otherwise build
    their catalog at a size of their own (07, 08) read the folder as it is."""
    smoke = suite.PROFILES["smoke"]
    folder = lesson_catalog("synthetic", n_tracks=smoke["n_tracks"], seed=0,
                            duration_s=smoke["duration_s"], progress=False).root
    monkeypatch.setenv("MRLIB_RUNS", str(tmp_path / "runs"))
    index = suite.run_suite("smoke", {"catalog": str(folder), "show_solutions": False},
                            only=["07", "08"], out_dir=tmp_path / "out")
    entries = json.loads(index.read_text())["notebooks"]
    assert [e["status"] for e in entries.values()] == ["ok", "ok"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_a_device_this_machine_lacks_stops_the_suite_before_any_notebook(tmp_path):
    with pytest.raises(ValueError, match=r"-p device=cuda: device 'cuda' asked for, but CUDA is not available"):
        suite.run_suite("smoke", {"device": "cuda"}, only=["00"], out_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()                    # nothing ran, nothing written
    with pytest.raises(ValueError, match=r"-p device=tpu: unknown device"):
        suite.run_suite("smoke", {"device": "tpu"}, only=["00"], out_dir=tmp_path / "out")


def test_list_names_every_notebook_with_the_parameters_p_sets(capsys):
    """``python -m mrlib.suite list`` is how a reader finds the names that ``-p`` accepts."""
    assert suite.main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    notebooks = suite.list_notebooks()
    assert [line.split(":")[0] for line in lines] == [nb.name for nb in notebooks]
    for line, nb in zip(lines, notebooks):
        assert line == f"{nb.name}: {suite.declared_parameters(nb)}"
    assert any("n_tracks" in line for line in lines)
