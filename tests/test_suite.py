"""The suite runner: order, parameters, results index, failures named, record()."""
from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from mrlib import suite
from mrlib.paths import repo_root


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


def test_record_outside_suite_returns_value(monkeypatch):
    monkeypatch.delenv(suite.RECORD_ENV, raising=False)
    assert suite.record("x", 3) == 3
    with pytest.raises(ValueError):
        suite.record("", 1)


def test_record_inside_suite_merges_json(tmp_path, monkeypatch):
    import numpy as np

    target = tmp_path / "r.json"
    monkeypatch.setenv(suite.RECORD_ENV, str(target))
    suite.record("a", np.float32(0.5))
    suite.record("b", {"rows": np.arange(3)})
    assert json.loads(target.read_text()) == {"a": 0.5, "b": {"rows": [0, 1, 2]}}


def test_parse_value():
    assert suite.parse_value("3") == 3
    assert suite.parse_value("0.5") == 0.5
    assert suite.parse_value("false") is False
    assert suite.parse_value("music21") == "music21"
    assert suite.parse_value("[1, 2]") == [1, 2]


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
    assert (out / "00_first.ipynb").is_file()


@pytest.mark.slow
def test_failing_notebook_is_named_and_kept(folder, tmp_path):
    _notebook(folder / "02_broken.ipynb", "x = 1", "raise ValueError('bad parameter x')")
    out = tmp_path / "run"
    with pytest.raises(suite.NotebookFailed) as err:
        suite.run_suite("quick", out_dir=out, notebooks=folder)
    message = str(err.value)
    assert "02_broken.ipynb" in message and "ValueError: bad parameter x" in message
    assert "cell" in message
    assert (out / "02_broken.ipynb").is_file()  # the executed copy is kept
    index = json.loads((out / "results.json").read_text())
    assert index["notebooks"]["00_first"]["status"] == "ok"
    assert index["notebooks"]["02_broken"]["status"] == "failed"


def test_bad_arguments(folder):
    with pytest.raises(ValueError, match="unknown profile"):
        suite.run_suite("huge", notebooks=folder)
    with pytest.raises(ValueError, match="no such notebook"):
        suite.list_notebooks(["42"], folder)
    with pytest.raises(ValueError, match="--inplace"):
        suite.run_suite("smoke", inplace=True, notebooks=folder)


# ------------------------------------------------------------------------------------------
# Table 2: one papermill run of the training notebook per row, then 07 reads them
# ------------------------------------------------------------------------------------------
_EVAL_PARAMS = ("catalog = 'synthetic'\nn_tracks = 1000\ncatalog_seed = 0\nduration_s = 15.0\n"
                "patch_len = 64\nwidth = 0.125\nepochs = 16\nsteps_per_epoch = 25\nlr = 1e-3\n"
                "seed = 0\ndevice = 'auto'\nn_jobs = 2\ntable2_dir = None")
_TRAIN_BODY = """
import json, pathlib
from mrlib.suite import record
if train_config:                     # a row of the sweep (else: the notebook's own run)
    run = pathlib.Path(out_dir) / run_name
    run.mkdir(parents=True, exist_ok=True)
    (run / 'config.json').write_text(json.dumps(train_config))
    (run / 'summary.json').write_text('{}')
    record('trained', train_config['system'] + ':' + str(train_config['epochs']))
"""
_EVAL_BODY = """
import json, os
from mrlib.suite import record
rows = sorted(os.listdir(table2_dir)) if table2_dir else []
record('rows', rows)
record('table2', {r: {'MAP@20': {'mean': 12.5, 'ci': 1.25}, 'n_queries': 200} for r in rows if '.' not in r})
"""


@pytest.fixture()
def table2_folder(tmp_path: Path) -> Path:
    nbs = tmp_path / "t2"
    nbs.mkdir()
    _notebook(nbs / "06_training.ipynb",
              "train_config = None\nout_dir = None\nrun_name = None\nshow_solutions = True", _TRAIN_BODY)
    _notebook(nbs / "07_evaluation.ipynb", _EVAL_PARAMS, _EVAL_BODY)
    return nbs


@pytest.mark.slow
def test_table2_rows_are_runs_of_the_training_notebook(table2_folder, tmp_path, capsys):
    from mrlib.evaluate import TABLE2_ROWS

    out = tmp_path / "run"
    index_path = suite.run_suite("quick", {"epochs": 3}, out_dir=out, notebooks=table2_folder)
    index = json.loads(index_path.read_text())
    expected = suite.table2_configs({**suite.declared_parameters(table2_folder / "07_evaluation.ipynb"),
                                     "epochs": 3})
    sweep = index["table2_runs"]
    assert [e["row"] for e in sweep.values()] == list(TABLE2_ROWS)
    for name, entry in sweep.items():
        cfg = expected[entry["row"]]
        assert entry["status"] == "ok" and entry["parameters"]["train_config"] == cfg
        # the row's config reached the notebook: the untrained row keeps 0 epochs
        assert entry["metrics"]["trained"] == f"{cfg['system']}:{cfg['epochs']}"
        assert json.loads((out / "table2" / name / "config.json").read_text()) == cfg
    assert sweep["tl_untrained"]["metrics"]["trained"] == "tl:0"
    seven = index["notebooks"]["07_evaluation"]
    assert seven["parameters"]["table2_dir"] == str(out / "table2")
    assert set(seven["metrics"]["rows"]) >= {c["run_name"] for c in expected.values()}
    # an interrupted (here: repeated) suite does not train the finished rows again
    capsys.readouterr()
    suite.run_suite("quick", {"epochs": 3}, out_dir=out, notebooks=table2_folder, only=["07"])
    assert capsys.readouterr().out.count("finished earlier, kept") == len(TABLE2_ROWS)
    # ... but a changed configuration is trained again (the untrained row keeps 0 epochs)
    suite.run_suite("quick", {"epochs": 4}, out_dir=out, notebooks=table2_folder, only=["07"])
    log = capsys.readouterr().out
    assert log.count("finished earlier, kept") == 1 and "'TL untrained': finished earlier" in log
    # the table reaches the README block
    md = suite.table2_markdown(index_path)
    assert "| tl_neighbors | 12.50 ± 1.25 |" in md and "200 test queries" in md
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{suite.README_TABLE2[0]}\nold\n{suite.README_TABLE2[1]}\nrest\n")
    suite.update_readme(index_path, readme)
    text = readme.read_text()
    assert "old" not in text and md in text and text.startswith("intro") and text.endswith("rest\n")


def test_table2_dir_given_skips_the_sweep(table2_folder, tmp_path):
    given = tmp_path / "given"
    given.mkdir()
    out = tmp_path / "run"
    index = json.loads(suite.run_suite("quick", {"table2_dir": str(given)}, out_dir=out,
                                       notebooks=table2_folder, only=["07"]).read_text())
    assert "table2_runs" not in index and not (out / "table2").exists()
    with pytest.raises(KeyError, match="no finished 07_evaluation"):
        suite.table2_markdown(_empty_index(tmp_path))


def _empty_index(tmp_path: Path) -> Path:
    p = tmp_path / "empty.json"
    p.write_text(json.dumps({"notebooks": {}}))
    return p


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


def _index_with_table2(tmp_path: Path, catalog: str, map_mean: float) -> Path:
    row = {"MAP@20": {"mean": map_mean, "ci": 1.0, "low": map_mean - 1, "high": map_mean + 1},
           "nDCG@20": {"mean": 2 * map_mean, "ci": 1.5, "low": 0.0, "high": 0.0}, "n_queries": 40}
    entry = {"status": "ok", "started": "2026-01-01T00:00:00+00:00", "wall_s": 12.5,
             "parameters": {"catalog": catalog, "table2_dir": str(repo_root() / "runs" / "x" / "table2")}
             if catalog != "synthetic" else {},
             "metrics": {"table2": {"TL": row, "Random ranking": {**row, "MAP@20": {
                             "mean": 0.5, "ci": 0.25, "low": 0.25, "high": 0.75}}},
                         "table2_configs": {"TL": {"catalog": catalog, "n_tracks": 200}},
                         "table2_n_queries": 40, "table2_best": "TL", "table2_bar": {"TL": True}}}
    path = tmp_path / catalog / "results.json"
    path.parent.mkdir(parents=True)
    overrides = {"catalog": catalog} if catalog != "synthetic" else {}
    path.write_text(json.dumps({"profile": "quick", "overrides": overrides, "versions": {"mrlib": "x"},
                                "notebooks": {"07_evaluation": entry}}))
    return path


def test_stored_tables_compare_catalogs(tmp_path):
    store = tmp_path / "store"
    for catalog, value in (("synthetic", 12.0), ("music21", 7.25)):
        out = suite.save_table2(_index_with_table2(tmp_path, catalog, value), store / f"table2_{catalog}.json")
        assert out.name == f"table2_{catalog}.json"
    stored = suite.stored_table2s(store)
    assert set(stored) == {"synthetic", "music21"}
    m21 = stored["music21"]
    assert m21["command"] == "python -m mrlib.suite run --profile quick -p catalog=music21"
    assert (m21["n_tracks"], m21["n_queries"], m21["best"], m21["wall_s"]) == (200, 40, "TL", 12.5)
    # paths inside the repository are stored relative to it (a committed file names no machine)
    assert m21["parameters"]["table2_dir"] == "runs/x/table2"
    assert '"table2_dir": "runs/x/table2"' in suite.table2_markdown(tmp_path / "music21" / "results.json")
    side = suite.table2_side_by_side({c: s["table2"] for c, s in stored.items()})
    assert side.loc["TL", ("MAP@20", "music21")] == "7.25 ± 1.00"
    assert side.loc["TL", ("nDCG@20", "synthetic")] == "24.00 ± 1.50"
    assert side.loc["Random ranking", ("MAP@20", "synthetic")] == "0.50 ± 0.25"
    # a system one table lacks gets an empty cell, not an error
    side = suite.table2_side_by_side({"a": stored["music21"]["table2"], "b": {"Other": m21["table2"]["TL"]}})
    assert side.loc["Other", ("MAP@20", "a")] == "" and side.loc["Other", ("MAP@20", "b")] == "7.25 ± 1.00"
    (store / "table2_broken.json").write_text("{}")
    with pytest.raises(ValueError, match="not a stored Table 2"):
        suite.stored_table2s(store)
    with pytest.raises(KeyError, match="no finished 07_evaluation"):
        suite.save_table2(_empty_index(tmp_path), store / "x.json")


def test_readme_keeps_one_table2_block_per_catalog(tmp_path):
    synthetic = _index_with_table2(tmp_path, "synthetic", 12.0)
    music21 = _index_with_table2(tmp_path, "music21", 7.25)
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{suite.README_TABLE2[0]}\nold\n{suite.README_TABLE2[1]}\nmid\n"
                      "<!-- table2-music21:start -->\nold m21\n<!-- table2-music21:end -->\nrest\n")
    suite.update_readme(music21, readme)
    text = readme.read_text()
    assert "old m21" not in text and "\nold\n" in text and "| TL | 7.25 ± 1.00 |" in text
    suite.update_readme(synthetic, readme)
    text = readme.read_text()
    assert "\nold\n" not in text and "| TL | 12.00 ± 1.00 |" in text and "| TL | 7.25 ± 1.00 |" in text
    assert text.startswith("intro\n") and "\nmid\n" in text and text.endswith("rest\n")
    readme.write_text("no blocks\n")
    with pytest.raises(ValueError, match="table2-music21:start"):
        suite.update_readme(music21, readme)
