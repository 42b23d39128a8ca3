"""The experiment runner and its store: resume, failures, invalidation, schema, statistics."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from mrlib import experiments as X
from mrlib import results as res
from mrlib import table2
from mrlib.evaluate import holm

N_UNITS = 30
CALLS: list[tuple[str, int]] = []


def _toy_rows(catalog, profile, overrides):
    # Row B's strength is the parameter `gain`; C fails when `broken` is set.
    rows = {"A": {"level": 0.3}, "B": {"level": 0.5, "gain": overrides.get("gain", 0.1)},
            "C": {"level": 0.4, "broken": overrides.get("broken", False)}}
    return rows


def _toy_run(row, parameters, seed, device, workdir):
    CALLS.append((row, seed))
    if parameters.get("broken"):
        raise RuntimeError(f"row {row} is broken on purpose")
    rng = np.random.default_rng([seed, len(row), int(1000 * parameters["level"])])
    x = np.clip(parameters["level"] + parameters.get("gain", 0) + 0.1 * rng.standard_normal(N_UNITS), 0, 1)
    return {"score": x, "half": x / 2}, {"note": f"{row}-{seed}"}


TOY = X.register(X.Experiment(name="toy", title="a toy experiment", notebook="07_evaluation.ipynb",
                              metrics=("score", "half"), unit="query", rows=_toy_rows, run=_toy_run))


@pytest.fixture()
def store(tmp_path):
    CALLS.clear()
    return tmp_path / "results" / "toy_synthetic_quick.json"


def test_rows_seeds_are_stored_and_a_second_invocation_runs_nothing(store):
    X.run_experiment("toy", seeds=[0, 1, 2], store=store, progress=False)
    assert sorted(CALLS) == sorted((r, s) for r in "ABC" for s in (0, 1, 2))
    first = json.loads(store.read_text())
    CALLS.clear()
    X.run_experiment("toy", seeds=[0, 1, 2], store=store, progress=False)
    assert CALLS == []
    again = json.loads(store.read_text())
    assert again["rows"] == first["rows"] and again["runs"] == first["runs"]
    # more seeds later: only the new ones run
    X.run_experiment("toy", seeds=[0, 1, 2, 3], store=store, progress=False)
    assert sorted(CALLS) == [("A", 3), ("B", 3), ("C", 3)]


def test_a_store_read_at_some_seeds_is_the_store_those_seeds_alone_make(store):
    # store_at_seeds is how two tables of different seeds are compared: its rows and summary
    # must be exactly those of a run of only those seeds, and the store read is left as it was
    X.run_experiment("toy", seeds=[0, 1, 2, 3], store=store, progress=False)
    X.run_experiment("toy", seeds=[0, 2], store=store.with_name("toy_two.json"), progress=False)
    four, two = res.read_store(store), res.read_store(store.with_name("toy_two.json"))
    kept = json.dumps(four)
    at = res.store_at_seeds(four, [2, 0])
    assert json.dumps(four) == kept and at["comparisons"] == []
    strip = ("finished", "wall_s", "commit", "versions", "cpu_kernels", "device")
    for r in "ABC":
        assert {s: {k: v for k, v in e.items() if k not in strip} for s, e in at["rows"][r]["seeds"].items()} == \
            {s: {k: v for k, v in e.items() if k not in strip} for s, e in two["rows"][r]["seeds"].items()}
    assert at["summary"] == {r: res.row_summary(two["rows"][r], two["metrics"]) for r in two["rows"]}
    assert at["summary"]["A"] != four["summary"]["A"]
    assert res.store_at_seeds(four, [])["summary"] == {r: {} for r in "ABC"}
    # a seed no row holds is simply not there: seed 7 adds nothing to seed 0
    assert res.store_at_seeds(four, [0, 7])["rows"] == res.store_at_seeds(four, [0])["rows"]
    assert all(list(row["seeds"]) == ["0"] for row in res.store_at_seeds(four, [0, 7])["rows"].values())


def test_seeds_run_on_two_machines_merge_into_the_file_one_machine_makes(store, tmp_path, capsys):
    """Seeds 0-1 on one machine and seed 2 on another, each into its own file, merge into what
    one run of seeds 0-2 stores (scores, summary, comparisons, command); merging again adds
    nothing, and a file of other settings or a seed trained twice is refused, naming the file,
    with the target left as it was."""
    X.run_experiment("toy", seeds=[0, 1, 2], store=store, workdir=tmp_path / "w", progress=False)
    boxes = [tmp_path / "box_a.json", tmp_path / "box_b.json"]
    X.run_experiment("toy", seeds=[0, 1], store=boxes[0], workdir=tmp_path / "wa", progress=False)
    X.run_experiment("toy", seeds=[2], store=boxes[1], workdir=tmp_path / "wb", progress=False)
    merged = tmp_path / "merged" / "toy.json"
    assert X.main(["merge", str(merged), *map(str, boxes)]) == 0
    assert "9 row × seed(s) added" in capsys.readouterr().out
    one, both = res.read_store(store), res.read_store(merged)

    def scores(data):
        return {r: {s: e["per_unit"] for s, e in row["seeds"].items()} for r, row in data["rows"].items()}

    assert scores(both) == scores(one) and len(scores(one)["A"]) == 3
    assert both["summary"] == one["summary"] and both["comparisons"] == one["comparisons"]
    assert both["command"] == one["command"] and len(both["runs"]) == 2
    before = merged.read_text()
    assert X.merge_stores(merged, boxes) == (merged, 0) and merged.read_text() == before
    other = tmp_path / "gain.json"
    X.run_experiment("toy", seeds=[3], store=other, overrides={"gain": 0.3}, workdir=tmp_path / "wg", progress=False)
    twice = res.read_store(boxes[1])
    twice["rows"]["A"]["seeds"]["2"]["per_unit"]["score"][0] += 0.25
    res.write_store(twice, boxes[1])
    older = res.read_store(boxes[0])
    older["rows"]["B"]["key"] = "0ld0ld0ld0ld"          # as a file from another version of the rows
    res.write_store(older, boxes[0])
    for source, said in ((other, "its overrides {'gain': 0.3}"), (boxes[1], "A, seed 2 is in both files"),
                         (boxes[0], "row 'B' ran with parameters that are not its parameters now")):
        assert X.main(["merge", str(merged), str(source)]) == 2
        err = capsys.readouterr().err
        assert str(source) in err and said in err, err
        assert merged.read_text() == before
    assert X.main(["merge", str(merged), str(tmp_path / "missing.json")]) == 2
    assert "missing.json" in capsys.readouterr().err


def test_a_merge_after_the_rows_changed_stores_what_the_runner_would(store, tmp_path, monkeypatch):
    """The committed file ran seed 0; then row A's parameters changed and a row D came in between
    A and B, and two machines ran seeds 1 and 2 with the new rows. Merging their files gives what
    the runner gives on that file: A's stale seed dropped, the rows in the experiment's order, the
    seeds in order, the same summary, comparisons and command; the sources stay as they were."""
    import hashlib
    from dataclasses import replace

    X.run_experiment("toy", seeds=[0], store=store, workdir=tmp_path / "w0", progress=False)

    def new_rows(catalog, profile, overrides):
        rows = _toy_rows(catalog, profile, overrides)
        return {"A": {"level": 0.35}, "D": {"level": 0.45}, **{r: rows[r] for r in "BC"}}

    monkeypatch.setitem(X.EXPERIMENTS, "toy", replace(TOY, rows=new_rows))
    boxes = [tmp_path / "box_b.json", tmp_path / "box_a.json"]
    for seed, box in zip((2, 1), boxes):
        X.run_experiment("toy", seeds=[seed], store=box, workdir=tmp_path / f"w{seed}", progress=False)
    reference = tmp_path / "reference.json"
    reference.write_bytes(store.read_bytes())
    X.run_experiment("toy", seeds=[1, 2], store=reference, workdir=tmp_path / "wr", progress=False)
    digests = [hashlib.sha256(b.read_bytes()).hexdigest() for b in boxes]
    X.merge_stores(store, boxes)
    merged, one = res.read_store(store), res.read_store(reference)
    assert [hashlib.sha256(b.read_bytes()).hexdigest() for b in boxes] == digests

    def seeds(data):
        return [(r, [(s, e["per_unit"]) for s, e in row["seeds"].items()]) for r, row in data["rows"].items()]

    assert seeds(merged) == seeds(one) and [r for r, _ in seeds(one)] == ["A", "D", "B", "C"]
    assert [s for s, _ in seeds(one)[0][1]] == ["1", "2"] and [s for s, _ in seeds(one)[2][1]] == ["0", "1", "2"]
    for field in ("summary", "comparisons", "command", "title"):
        assert merged[field] == one[field], field


def test_a_failing_row_is_recorded_and_the_others_go_on(store, capsys):
    X.run_experiment("toy", seeds=[0, 1], store=store, overrides={"broken": True}, progress=False)
    data = res.read_store(store)
    failed = data["rows"]["C"]["seeds"]["0"]
    assert failed["status"] == "failed" and "broken on purpose" in failed["error"]
    assert "RuntimeError" in failed["error"] and failed["traceback"]
    assert all(data["rows"][r]["seeds"][s]["status"] == "ok" for r in "AB" for s in "01")
    assert "failed: 0, 1" in res.results_frame(data).loc["C", "seeds"]
    assert data["runs"][-1]["failed"] == 2 and data["runs"][-1]["trained"] == 4
    assert "C seed 0 FAILED" in capsys.readouterr().out
    # the command line reports it with a non-zero status
    assert X.main(["run", "toy", "--seeds", "0", "--store", str(store), "-p", "broken=true", "--quiet"]) == 1


def test_failed_rows_are_retried(store):
    X.run_experiment("toy", seeds=[0], store=store, overrides={"broken": True}, progress=False)
    CALLS.clear()
    X.run_experiment("toy", seeds=[0], store=store, progress=False)   # fixed: C's parameters change
    assert CALLS == [("C", 0)]
    assert res.read_store(store)["rows"]["C"]["seeds"]["0"]["status"] == "ok"


def test_a_changed_parameter_reruns_only_the_rows_it_touches(store, capsys):
    X.run_experiment("toy", seeds=[0, 1], store=store, progress=False)
    before = res.read_store(store)
    CALLS.clear()
    X.run_experiment("toy", seeds=[0, 1], store=store, overrides={"gain": 0.2}, progress=False)
    assert sorted(CALLS) == [("B", 0), ("B", 1)]
    after = res.read_store(store)
    assert after["rows"]["A"] == before["rows"]["A"] and after["rows"]["C"] == before["rows"]["C"]
    assert after["rows"]["B"]["key"] != before["rows"]["B"]["key"]
    assert "B: parameters changed" in capsys.readouterr().out


def test_overrides_go_to_their_own_file_and_leave_the_defined_one_alone(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MRLIB_RESULTS", str(tmp_path / "results"))
    default = X.run_experiment("toy", seeds=[0, 1], workdir=tmp_path / "w", progress=False)
    before = default.read_text()
    CALLS.clear()
    other = X.run_experiment("toy", seeds=[0], rows=["A"], overrides={"gain": 0.3},
                             workdir=tmp_path / "w2", progress=False)
    assert other.parent == default.parent / "overrides" and other.name.startswith("toy_synthetic_quick_p-")
    assert default.read_text() == before                    # every finished seed is still there
    assert res.read_store(other)["overrides"] == {"gain": 0.3} and CALLS == [("A", 0)]
    assert list(res.stored_results()) == ["toy_synthetic_quick"]     # the README's files only
    capsys.readouterr()
    assert X.main(["list"]) == 0
    out = capsys.readouterr().out
    assert f"\nstored in {tmp_path / 'results'}:\n  toy_synthetic_quick: 3 rows, 2 seeds per row\n" in out


def test_a_subset_run_may_not_leave_stale_rows_behind(store, capsys):
    X.run_experiment("toy", seeds=[0, 1], store=store, progress=False)
    before = store.read_text()
    CALLS.clear()
    # B's parameters change; running only A would keep B's old results beside A's new ones
    with pytest.raises(ValueError, match=r"parameters of \['B'\] changed"):
        X.run_experiment("toy", seeds=[0], rows=["A"], store=store, overrides={"gain": 0.3},
                         progress=False)
    assert CALLS == [] and store.read_text() == before
    X.run_experiment("toy", seeds=[0], rows=["A", "B"], store=store, overrides={"gain": 0.3},
                     progress=False)
    assert sorted(CALLS) == [("B", 0)]


def test_a_device_this_machine_lacks_is_refused_before_anything_runs(store, monkeypatch):
    """--device cuda on a machine without CUDA: one clear error at the door (the paper profile
    otherwise built its 14,246-track catalog first, for hours, then failed every row)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="CUDA is not available here"):
        X.run_experiment("toy", seeds=[0], store=store, device="cuda", progress=False)
    assert CALLS == [] and not store.exists() and not store.parent.exists()


def test_a_store_of_another_catalog_is_refused(store):
    X.run_experiment("toy", seeds=[0], store=store, progress=False)
    before = store.read_text()
    with pytest.raises(ValueError, match="holds toy on catalog synthetic"):
        X.run_experiment("toy", catalog="music21", seeds=[0], store=store, progress=False)
    assert store.read_text() == before


def test_a_refused_store_leaves_no_work_folder(store, tmp_path):
    """A store that cannot be used is refused before the runner makes its work folder."""
    work = tmp_path / "work"
    store.parent.mkdir(parents=True)
    store.write_text("{not json")
    with pytest.raises(res.StoreError, match="not a JSON text"):
        X.run_experiment("toy", seeds=[0], store=store, workdir=work, progress=False)
    assert not work.exists()
    X.run_experiment("toy", seeds=[0], store=store.with_name("other.json"), workdir=work,
                     progress=False)
    other = work.with_name("work2")
    with pytest.raises(ValueError, match="holds toy on catalog synthetic"):
        X.run_experiment("toy", catalog="music21", seeds=[0], store=store.with_name("other.json"),
                         workdir=other, progress=False)
    assert not other.exists() and store.read_text() == "{not json"


def test_a_run_that_adds_nothing_keeps_the_recorded_command(store):
    X.run_experiment("toy", seeds=[0, 1], store=store, progress=False)
    command = res.read_store(store)["command"]
    X.run_experiment("toy", seeds=[0], rows=["A"], store=store, progress=False)
    assert res.read_store(store)["command"] == command
    # a subset that leaves the rows with different seeds: the file records the command for the
    # seeds every row holds and one for the rows that hold more; once every row holds the same
    # seeds, the one command that makes all of it
    X.run_experiment("toy", seeds=[2], rows=["B"], store=store, progress=False)
    assert res.read_store(store)["command"] == f"{command} && {command.replace('--seeds 0 1', '--seeds 2')} --rows B"
    X.run_experiment("toy", seeds=[3], rows=["C"], store=store, progress=False)
    assert res.read_store(store)["command"] == " && ".join(
        (command, command.replace("--seeds 0 1", "--seeds 2") + " --rows B",
         command.replace("--seeds 0 1", "--seeds 3") + " --rows C"))
    X.run_experiment("toy", seeds=[3], rows=["A", "B"], store=store, progress=False)
    assert res.read_store(store)["command"] == " && ".join(
        (command.replace("--seeds 0 1", "--seeds 0 1 3"), command.replace("--seeds 0 1", "--seeds 2") + " --rows B"))
    X.run_experiment("toy", seeds=[2], rows=["A", "C"], store=store, progress=False)
    data = res.read_store(store)
    assert data["command"] == command.replace("--seeds 0 1", "--seeds 0 1 2 3")
    assert data["runs"][-1]["command"].endswith("--seeds 2 --rows A C")


def test_a_mistyped_catalog_is_refused_and_a_folder_catalog_takes_no_build_options(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="'synthtic' is not a catalog"):
        X.experiment_rows("table2", "synthtic", "quick")
    assert X.main(["run", "table2", "--catalog", "synthtic", "--quiet"]) == 2
    assert "'synthtic' is not a catalog" in capsys.readouterr().err
    folder = tmp_path / "my_collection"
    folder.mkdir()
    (folder / "tracks.csv").write_text("track_id,artist_id,split,path,duration_s\n")
    for name in ("table2", "cfr2017"):
        rows = X.experiment_rows(name, str(folder), "quick")
        assert all(p["catalog_kwargs"] == {} for p in rows.values() if "catalog_kwargs" in p)
        assert any("catalog_kwargs" in p for p in rows.values())


def test_commit_outside_git_warns_once_without_waiting(store, capsys):
    t0 = time.perf_counter()
    X.run_experiment("toy", seeds=[0, 1], store=store, commit=True, progress=False)
    assert time.perf_counter() - t0 < 20 and len(CALLS) == 6
    assert capsys.readouterr().out.count("not in a git repository") == 1


def test_rows_subset_and_bad_arguments(store):
    X.run_experiment("toy", seeds=[0], rows=["A"], store=store, progress=False)
    assert CALLS == [("A", 0)]
    with pytest.raises(ValueError, match=r"a row of toy must be one of \('A', 'B', 'C'\), got 'Z'"):
        X.run_experiment("toy", seeds=[0], rows=["Z"], store=store, progress=False)
    with pytest.raises(ValueError, match="experiment must be one of .*, got 'nope'"):
        X.run_experiment("nope", store=store)
    with pytest.raises(ValueError, match="seeds"):
        X.run_experiment("toy", seeds=[1, 1], store=store)
    with pytest.raises(ValueError, match=r"the profile of toy must be one of \('smoke', 'quick', 'paper'\), got 'huge'"):
        X.run_experiment("toy", profile="huge", store=store)
    with pytest.raises(ValueError, match="already registered"):
        X.register(X.Experiment(name="toy", title="", notebook="", metrics=("x",), unit="query",
                                rows=_toy_rows, run=_toy_run))


def test_stored_file_schema(store):
    X.run_experiment("toy", seeds=[0, 1, 2], store=store, progress=False)
    data = json.loads(store.read_text())
    assert data["schema"] == res.SCHEMA
    for key in ("experiment", "title", "catalog", "profile", "notebook", "unit", "metrics", "rows",
                "summary", "comparisons", "runs", "command"):
        assert key in data, key
    assert data["command"] == "python -m mrlib.experiments run toy --catalog synthetic --profile quick --seeds 0 1 2"
    run = data["runs"][-1]
    assert {"started", "finished", "commit", "device", "trained", "reused", "failed", "wall_s"} <= set(run)
    for row in data["rows"].values():
        assert set(row) == {"parameters", "key", "seeds"}
        assert row["key"] == res.parameters_key(row["parameters"])
        for entry in row["seeds"].values():
            assert {"status", "metrics", "per_unit", "n_units", "extra", "wall_s", "device", "commit",
                    "versions", "finished", "cpu_kernels"} <= set(entry)
            assert entry["cpu_kernels"]["torch"] == torch.backends.cpu.get_cpu_capability()
            assert set(entry["metrics"]) == {"score", "half"} and entry["n_units"] == N_UNITS
            for m, v in entry["metrics"].items():
                x = np.asarray(entry["per_unit"][m])
                assert v["mean"] == pytest.approx(100 * x.mean(), abs=1e-3)
                assert v["low"] < v["mean"] < v["high"]
                assert v["ci"] == pytest.approx((v["high"] - v["low"]) / 2, abs=1e-3)
    s = data["summary"]["B"]["score"]
    means = [data["rows"]["B"]["seeds"][k]["metrics"]["score"]["mean"] for k in "012"]
    assert s["mean"] == pytest.approx(np.mean(means), abs=1e-3)
    assert s["sd"] == pytest.approx(np.std(means, ddof=1), abs=1e-3)
    assert s["n_seeds"] == 3
    assert len(data["comparisons"]) == 3 * 2            # 3 pairs x 2 metrics
    with pytest.raises(res.StoreError, match="schema"):
        bad = dict(data, schema=0)
        store.write_text(json.dumps(bad))
        res.read_store(store)
    store.write_text("{not json")
    with pytest.raises(res.StoreError, match="not a JSON text"):
        res.read_store(store)
    store.write_bytes("{}".encode("utf-16"))               # a spreadsheet's "Unicode text"
    with pytest.raises(res.StoreError, match="not a JSON text"):
        res.read_store(store)


def test_the_command_line_reports_a_broken_results_file_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MRLIB_RESULTS", str(tmp_path))
    (tmp_path / "toy_synthetic_quick.json").write_text("{truncated")
    for argv in (["list"], ["show", "toy"], ["readme"]):
        assert X.main(argv) == 2
        err = capsys.readouterr().err
        assert "toy_synthetic_quick.json: not a JSON text" in err and "Traceback" not in err


def test_a_defect_behind_the_command_line_keeps_its_traceback(tmp_path, monkeypatch):
    """Only refused inputs and results files are one-line errors: a ValueError from mrlib's own
    code (a defect) is not passed off as the user's mistake."""
    CALLS.clear()
    monkeypatch.setenv("MRLIB_RESULTS", str(tmp_path / "results"))
    X.run_experiment("toy", seeds=[0], workdir=tmp_path / "w", progress=False)

    def broken(*args, **kwargs):
        raise ValueError("operands could not be broadcast together")

    monkeypatch.setattr(res, "results_markdown", broken)
    with pytest.raises(ValueError, match="broadcast"):
        X.main(["show", "toy"])


def test_show_names_the_stored_results_when_the_asked_ones_are_missing(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MRLIB_RESULTS", str(tmp_path))
    assert X.main(["show", "table2", "--catalog", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1     # one line, no usage
    assert "table2_nope_quick.json does not exist" in err and "stored for" not in err
    store = res.new_store("table2", "music21", "quick", title="t", metrics=["MAP@20"], unit="query",
                          notebook="07_evaluation.ipynb")
    res.write_store(store, res.store_path("table2", "music21", "quick"))
    assert X.main(["show", "table2", "--catalog", "nope"]) == 2
    assert "(stored for table2: --catalog music21 --profile quick)" in capsys.readouterr().err


def test_seed_query_test_equals_a_plain_loop():
    from scipy import stats

    rng = np.random.default_rng(0)
    a = [rng.random(50) for _ in range(3)]
    b = [x - 0.05 + 0.05 * rng.standard_normal(50) for x in a]
    t = res.seed_query_test(a, b)
    # the same test written out: the variance of the grand mean from the units' seed-averaged
    # differences and from the seed means, Welch-Satterthwaite's degrees of freedom
    d = [[a[s][q] - b[s][q] for q in range(50)] for s in range(3)]
    per_unit = [sum(d[s][q] for s in range(3)) / 3 for q in range(50)]
    seed_mean = [sum(row) / 50 for row in d]
    grand = sum(seed_mean) / 3
    v_units = sum((x - grand) ** 2 for x in per_unit) / 49 / 50
    v_seeds = sum((x - grand) ** 2 for x in seed_mean) / 2 / 3
    df = (v_units + v_seeds) ** 2 / (v_units ** 2 / 49 + v_seeds ** 2 / 2)
    se = (v_units + v_seeds) ** 0.5
    assert t["mean_diff"] == pytest.approx(grand) and t["df"] == pytest.approx(df)
    assert t["low"] == pytest.approx(grand - stats.t.ppf(0.975, df) * se)
    assert t["high"] == pytest.approx(grand + stats.t.ppf(0.975, df) * se)
    assert t["p"] == pytest.approx(2 * stats.t.sf(abs(grand) / se, df))
    assert t["seeds_a_better"] == 3 and t["n_seeds"] == 3 and t["n_units"] == 50
    # a clear difference is significant, no difference is not
    assert t["p"] < 0.01 and t["low"] > 0
    same = res.seed_query_test(a, a)
    assert same["mean_diff"] == 0 and same["p"] == 1.0 and same["p_wilcoxon"] == 1.0
    # one seed: only the units vary (a paired t-test over the units)
    one = res.seed_query_test(a[:1], b[:1])
    assert one["p"] == pytest.approx(stats.ttest_rel(a[0], b[0]).pvalue)
    # a missing score is no evidence: refused at the door, naming the seed (a NaN p would only
    # fail later, in Holm's correction, with a message about p-values)
    with pytest.raises(ValueError, match=r"a\[0\] has 1 non-finite"):
        res.seed_query_test([[1.0, np.nan, 0.0]] * 3, [np.zeros(3)] * 3)
    # a level in percent would give NaN intervals and a test at no level at all
    with pytest.raises(ValueError, match=r"level must be a float in \(0, 1\)"):
        res.seed_query_test(a, b, level=95)


def test_seed_query_test_wilcoxon_ranks_equal_differences_as_ties():
    # Scores of 20-deep lists are multiples of 1/20: the seed-averaged differences of many units
    # are equal, or zero, but not in floating point (0.15 - 0.05 != 0.1). The signed-rank test
    # must see them as the whole numbers they are: zeros dropped, ties tied.
    rng = np.random.default_rng(3)
    ka, kb = rng.integers(0, 21, (3, 300)), rng.integers(0, 21, (3, 300))
    t = res.seed_query_test(list(ka / 20), list(kb / 20))
    exact = stats.wilcoxon((ka - kb).sum(axis=0), method="asymptotic").pvalue
    assert t["p_wilcoxon"] == pytest.approx(exact, rel=1e-9)


def test_compare_rows_names_a_damaged_score_an_unknown_row_and_metric(store):
    X.run_experiment("toy", seeds=[0, 1], store=store, progress=False)
    data = res.read_store(store)
    assert [(c["a"], c["b"]) for c in res.compare_rows(data, ["A", "B"])][:1] == [("A", "B")]
    assert res.compare_rows(data, []) == []                # no rows chosen, no pairs
    with pytest.raises(ValueError, match=r"alpha must be a float in \(0, 1\)"):
        res.compare_rows(data, alpha=5)
    with pytest.raises(ValueError, match=r"a row to compare must be one of \('A', 'B', 'C'\), got 'Z'"):
        res.compare_rows(data, ["A", "Z"])
    data["rows"]["B"]["seeds"]["1"]["per_unit"]["score"][4] = None      # a hand-edited file
    with pytest.raises(ValueError, match=r"row 'B', seed 1, score per-unit scores has 1 non-finite"):
        res.compare_rows(data)
    with pytest.raises(ValueError, match=r"row 'A', seed 0 has no per-unit scores of metric 'nope'"):
        res._paired_scores(data["rows"], "A", "B", "nope")
    with pytest.raises(ValueError, match=r"per_unit\['half'\] has 1 non-finite"):
        res.seed_entry({"score": np.ones(3), "half": [1.0, np.nan, 0.0]})


def test_seed_query_test_keeps_its_level_when_queries_and_seeds_both_vary():
    # Under no true difference, with a per-query advantage shared by every seed (some queries
    # suit one row) and a per-seed offset (training noise), a 5 % test must reject about 5 %
    # of the time. Resampling each seed's queries on their own, as if the seeds had other
    # queries, misses the shared part and rejects far more often.
    rng = np.random.default_rng(7)
    rejected = 0
    for _ in range(400):
        shared = rng.normal(0, 1.0, 200)
        d = [shared + rng.normal(0, 0.5, 200) + rng.normal(0, 0.07) for _ in range(3)]
        rejected += res.seed_query_test(d, [np.zeros(200)] * 3)["p"] < 0.05
    assert rejected / 400 < 0.09, rejected / 400


def test_compare_rows_tests_every_pair_with_holm(store):
    X.run_experiment("toy", seeds=[0, 1, 2], store=store, progress=False)
    data = res.read_store(store)
    score = [c for c in data["comparisons"] if c["metric"] == "score"]
    assert [(c["a"], c["b"]) for c in score] == [("A", "B"), ("A", "C"), ("B", "C")]
    np.testing.assert_allclose([c["p_holm"] for c in score], holm([c["p"] for c in score]), atol=1e-6)
    ab = score[0]
    rows = data["rows"]
    direct = res.seed_query_test([rows["A"]["seeds"][s]["per_unit"]["score"] for s in "012"],
                                 [rows["B"]["seeds"][s]["per_unit"]["score"] for s in "012"])
    assert ab["mean_diff"] == pytest.approx(100 * direct["mean_diff"], abs=1e-3)
    assert ab["p"] == pytest.approx(direct["p"], abs=1e-6)
    assert ab["mean_diff"] < 0 and ab["significant"]                  # B = A + 0.2 + noise
    # against a reference, each row reads `row − reference`: the stored (B, C) pair is flipped
    vs_b = res.comparisons_frame(data, "score", "B").set_index("a")
    assert list(vs_b.index) == ["A", "C"] and list(vs_b["b"]) == ["B", "B"]
    assert vs_b.loc["A", "mean_diff"] == ab["mean_diff"]
    bc = score[2]
    assert (vs_b.loc["C", "mean_diff"], vs_b.loc["C", "low"], vs_b.loc["C", "high"]) == \
        (-bc["mean_diff"], -bc["high"], -bc["low"])
    assert vs_b.loc["C", "seeds_a_better"] == bc["n_seeds"] - bc["seeds_a_better"]


def test_tables_render_from_the_store(store, tmp_path):
    X.run_experiment("toy", seeds=[0, 1], store=store, progress=False)
    data = res.read_store(store)
    frame = res.results_frame(data)
    s = data["summary"]["A"]["score"]
    assert frame.loc["A", "score"] == f"{s['mean']:.2f} ± {s['ci']:.2f} ({s['sd']:.2f})"
    md = res.results_markdown(data)
    assert f"| A | {frame.loc['A', 'score']} |" in md and "queries" in md
    readme = tmp_path / "README.md"
    stem = "toy_synthetic_quick"
    readme.write_text(f"intro\n<!-- results:{stem}:start -->\nold\n<!-- results:{stem}:end -->\nrest\n")
    res.update_readme_block(data, readme)
    text = readme.read_text()
    assert "old" not in text and md in text and text.startswith("intro") and text.endswith("rest\n")


def test_a_pipe_inside_a_cell_does_not_split_a_markdown_row():
    import re

    lines = res._markdown_table(["row", "mean |ρ|"], [["A", "0.002 (0.001)"], ["B|C", ""]])
    cells = [len(re.findall(r"(?<!\\)\|", line)) for line in lines]
    assert cells == [3, 3, 3, 3] and r"mean \|ρ\|" in lines[0] and r"B\|C" in lines[3]


@pytest.mark.slow
def test_table2_smoke_resumes_without_training(tmp_path, monkeypatch):
    store = tmp_path / "table2_synthetic_smoke.json"
    X.run_experiment("table2", profile="smoke", seeds=[0], store=store, progress=False)
    data = res.read_store(store)
    assert set(data["rows"]) == set(X.table2_rows("synthetic", "smoke"))
    assert all(r["seeds"]["0"]["status"] == "ok" for r in data["rows"].values()), \
        {k: r["seeds"]["0"].get("error") for k, r in data["rows"].items()}
    assert "tag_auc" in data["rows"]["AT Baseline"]["seeds"]["0"]["extra"]
    pooling = data["rows"]["TL Autopool"]["seeds"]["0"]["extra"]
    assert set(pooling["alpha"]) == {"mean", "min", "max", "mean_abs"}
    assert 0.0 <= pooling["rho"]["mean_abs"] <= 1.0 and abs(pooling["rho"]["mean"]) <= pooling["rho"]["mean_abs"]
    assert "mean |ρ|" in res.results_frame(data).columns

    def no_training(*args, **kwargs):
        raise AssertionError("a stored row × seed was trained again")

    monkeypatch.setattr("mrlib.train.train", no_training)
    monkeypatch.setattr("mrlib.train.prepare_data", no_training)
    X.run_experiment("table2", profile="smoke", seeds=[0], store=store, progress=False)
    assert res.read_store(store)["rows"] == data["rows"]


def test_table2_rows_at_each_profile():
    quick = X.table2_rows("synthetic", "quick")
    assert quick["TL Distance-based"]["epochs"] * quick["TL Distance-based"]["steps_per_epoch"] == 200
    assert quick["TL untrained"]["epochs"] == 0
    # offline mining at the paper's shares of a 1,200-track training list; overrides win
    from mrlib.mining import is_online
    for name, row in quick.items():
        mines = row.get("system") in ("tl", "tl_autopool") and row.get("epochs", 0) > 0 \
            and not is_online(row["mining"])
        assert (row.get("n_pos"), row.get("n_neg")) == ((2, 35) if mines else (None, None)), name
    assert X.table2_rows("synthetic", "quick", {"n_neg": 99})["TL Neighbors"]["n_neg"] == 99
    assert quick["Euclidean (mean CQT)"] == {"reference": "Euclidean (mean CQT)", "catalog": "synthetic",
                                             "n_tracks": 2000, "catalog_seed": 0,
                                             "catalog_kwargs": {"duration_s": 15.0}}
    # a learning-rate change touches the trained rows, not the references
    other = X.table2_rows("synthetic", "quick", {"lr": 3e-4})
    assert other["Euclidean (mean CQT)"] == quick["Euclidean (mean CQT)"]
    assert other["TL Neighbors"]["lr"] == 3e-4
    paper = X.table2_rows("synthetic", "paper")
    from mrlib.train import paper_config
    expected = paper_config("tl", "distance", run_name="tl_distance").to_dict()
    assert paper["TL Distance-based"] == {k: v for k, v in expected.items()
                                          if k not in ("device", "n_jobs", "out_dir", "prefetch", "seed")}
    with pytest.raises(ValueError, match="--seeds"):
        X.table2_rows("synthetic", "quick", {"seed": 1})


def test_autopool_ablation_rows():
    rows = X.experiment_rows("autopool", "synthetic", "quick")
    assert len(rows) == len(X.AUTOPOOL_PATCH_LENS) * len(table2.AUTOPOOL_ARMS) == 10
    assert {r["patch_len"] for r in rows.values()} == {64, 256}
    poolings = {(r["system"], r.get("pooling"), r.get("alpha_lr")) for r in rows.values()}
    assert poolings == {("tl", None, None), ("tl_autopool", "mean", None),
                        ("tl_autopool", "max", None), ("tl_autopool", None, None),
                        ("tl_autopool", None, 0.05)}
    # every arm: the events catalog, the same triplets (mining, sizes), seed-free, same budget
    shared = ("catalog", "n_tracks", "catalog_kwargs", "mining", "n_pos", "n_neg", "epochs",
              "steps_per_epoch", "negatives_per_batch", "sampler", "lr", "width")
    for key in shared:
        assert len({json.dumps(r.get(key), sort_keys=True) for r in rows.values()}) == 1, key
    first = next(iter(rows.values()))
    assert first["catalog_kwargs"]["events"] is True and first["negatives_per_batch"] == 16
    assert len({r["run_name"] for r in rows.values()}) == 10
    with pytest.raises(ValueError, match="patch_len"):
        X.experiment_rows("autopool", "synthetic", "quick", {"patch_len": 128})


def test_rows_on_music21_name_the_instrument_rule():
    for name in ("table2", "cfr2017"):
        for row in X.experiment_rows(name, "music21", "quick").values():
            assert row["catalog_kwargs"]["instrumentation"] == "independent"
    row = X.experiment_rows("table2", "music21", "quick",
                            {"catalog_kwargs": {"duration_s": 15.0,
                                                "instrumentation": "by_collection"}})["TL Neighbors"]
    assert row["catalog_kwargs"]["instrumentation"] == "by_collection"
    # the named variant: the same rows on the other instrument rule, stored under its own name
    variant = X.experiment_rows("table2", "music21-by-collection", "quick")
    assert all(r["catalog"] == "music21" and r["catalog_kwargs"]["instrumentation"] == "by_collection"
               for r in variant.values())
    assert res.store_path("table2", "music21-by-collection", "quick").name == \
        "table2_music21-by-collection_quick.json"


def test_one_runner_per_store(store, tmp_path):
    from mrlib.paths import FolderLock, LockedError

    workdir = tmp_path / "work"
    with FolderLock(workdir, "experiment"):           # a live runner of the same work folder
        with pytest.raises(LockedError):
            X.run_experiment("toy", seeds=[0], store=store, workdir=workdir, progress=False)
    store.parent.mkdir(parents=True, exist_ok=True)
    # a live runner of the same results file, with its run folders elsewhere
    with FolderLock(store.parent, "results file", file=store.name):
        with pytest.raises(LockedError, match="results file"):
            X.run_experiment("toy", seeds=[0], store=store, workdir=tmp_path / "elsewhere", progress=False)
    assert CALLS == [] and not store.exists()
    X.run_experiment("toy", seeds=[0], store=store, workdir=workdir, progress=False)
    assert len(CALLS) == 3


PARALLEL_RUNNER = """
import os, signal, sys, time
import numpy as np
from mrlib import experiments as X

def rows(catalog, profile, overrides):
    return {r: {"level": 0.5} for r in "ABCD"}

def run(row, parameters, seed, device, workdir):
    BODY
    return {"score": np.full(4, 0.5)}, {}

X.register(X.Experiment(name="parallel", title="parallel", notebook="07_evaluation.ipynb",
                        metrics=("score",), unit="query", rows=rows, run=run))
if __name__ == "__main__":
    X.run_experiment("parallel", seeds=[0], jobs=2, store=sys.argv[1], workdir=sys.argv[2], progress=False)
"""


def _parallel_runner(tmp_path: Path, body: str) -> tuple[list[str], Path]:
    """A script running four rows A-D with --jobs 2, each row doing ``body``: argv and store."""
    script, store = tmp_path / "parallel_runner.py", tmp_path / "parallel.json"
    script.write_text(textwrap.dedent(PARALLEL_RUNNER).replace("BODY", body))
    return [sys.executable, str(script), str(store), str(tmp_path / "work")], store


@pytest.mark.slow
def test_ctrl_c_stops_a_parallel_run_at_once_and_keeps_what_finished(tmp_path):
    argv, store = _parallel_runner(tmp_path, 'time.sleep(0 if row == "A" else 120)')
    proc = subprocess.Popen(argv, cwd=tmp_path, start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 90
        while not (store.exists() and "A" in store.read_text()) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert store.exists(), "row A never landed"
        os.killpg(proc.pid, signal.SIGINT)              # Ctrl-C in a terminal: the whole group
        t0 = time.monotonic()
        out, _ = proc.communicate(timeout=60)
        stopped_after = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert stopped_after < 30, f"took {stopped_after:.0f} s to stop (rows B-D sleep 120 s each)"
    assert "interrupted" in out
    kept = res.read_store(store)["rows"]
    assert kept["A"]["seeds"]["0"]["status"] == "ok" and not any(kept[r]["seeds"] for r in "BCD")


@pytest.mark.slow
def test_a_dead_worker_fails_the_rows_in_flight_and_leaves_the_rest_for_a_rerun(tmp_path):
    # row B is killed as the kernel's out-of-memory killer would
    argv, store = _parallel_runner(tmp_path, 'os.kill(os.getpid(), signal.SIGKILL) if row == "B" else time.sleep(1)')
    done = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-2000:]
    status = {r: {s: e["status"] for s, e in row["seeds"].items()}
              for r, row in res.read_store(store)["rows"].items()}
    # B's death fails the rows in flight with it (A may have finished first); the rows not yet
    # handed out are not marked failed: the next run does them
    assert status["B"] == {"0": "failed"} and status["D"] == {}
    assert all(v in ({}, {"0": "ok"}, {"0": "failed"}) for v in status.values())
    assert "left for the next run" in done.stdout


def test_readme_blocks_equal_the_stored_files():
    # What the README shows is rendered from data/results/ by results_markdown, to the last digit
    # (`python -m mrlib.experiments readme` rewrites the blocks after an experiment).
    from mrlib.paths import repo_root

    stores = res.stored_results(folder=repo_root() / "data" / "results")
    assert "table2_synthetic_quick" in stores
    for stem, store in stores.items():
        block = res._readme_parts(f"results:{stem}", None)[2].strip()   # raises when it is missing
        assert block == res.results_markdown(store), f"README block {stem} differs from its stored file"


def test_stored_table2_has_three_seeds_with_provenance():
    from mrlib.paths import repo_root

    store = res.read_store(repo_root() / "data" / "results" / "table2_synthetic_quick.json")
    assert set(store["rows"]) == set(X.table2_rows("synthetic", "quick"))
    for name, row in store["rows"].items():
        assert row["key"] == res.parameters_key(X.table2_rows("synthetic", "quick")[name]), name
        ok = {s: e for s, e in row["seeds"].items() if e["status"] == "ok"}
        assert len(ok) >= 3, name
        for e in ok.values():
            assert e["commit"] and e["versions"]["torch"] and e["device"] and e["wall_s"] >= 0
            assert e["n_units"] == 400
    assert store["command"].startswith("python -m mrlib.experiments run table2")


def test_prepare_runs_once_per_data_in_the_runner_before_any_row(tmp_path):
    # Parallel workers must not race to build the same catalog: what rows read is prepared
    # first, once per distinct parameters, in the runner's own process.
    import os

    prepared, order = [], []

    def prepare(parameters, *, progress):
        assert progress is False                    # the runner's own setting reaches it
        prepared.append((os.getpid(), parameters["level"]))
        order.append("prepare")

    def run(row, parameters, seed, device, workdir):
        order.append("run")
        return _toy_run(row, parameters, seed, device, workdir)

    X.register(X.Experiment(name="toy_prepared", title="toy", notebook="07_evaluation.ipynb",
                            metrics=("score", "half"), unit="query", rows=_toy_rows, run=run,
                            prepare=prepare))
    try:
        X.run_experiment("toy_prepared", seeds=[0, 1], store=tmp_path / "s.json",
                         workdir=tmp_path / "w", progress=False)
    finally:
        X.EXPERIMENTS.pop("toy_prepared")
    assert sorted(level for _, level in prepared) == [0.3, 0.4, 0.5]      # one per row's data
    assert {pid for pid, _ in prepared} == {os.getpid()}
    assert order[:3] == ["prepare"] * 3 and order.count("run") == 6


def test_selected_epochs_name_the_weights_each_row_was_scored_with():
    from mrlib.paths import repo_root

    store = res.read_store(repo_root() / "data" / "results" / "table2_synthetic_quick.json")
    chosen = res.selected_epochs(store)
    assert (chosen.loc["TL untrained"] == 0).all()                 # never trained
    for row in ("TL Neighbors", "TL Distance-based", "AT Baseline"):
        for seed, epoch in chosen.loc[row].items():
            curve = store["rows"][row]["seeds"][str(seed)]["extra"]["val_map"]
            assert curve[epoch] == max(curve)                          # the best validation epoch
    assert "Euclidean (mean CQT)" not in chosen.index               # references have no curve


def test_make_experiments_reproduces_every_stored_file():
    # README: "`make experiments` runs all of them": every stored file has its line in the
    # recipe (whether the line's rows match the file's is test_stored_rows_match_their_experiment's).
    import re
    import shlex

    from mrlib.paths import repo_root

    root = repo_root()
    recipe = (root / "Makefile").read_text().split("\nexperiments:", 1)[1].split("\n\n", 1)[0]
    made = set()
    for line in recipe.splitlines():
        if "mrlib.experiments run" not in line:
            continue
        argv = shlex.split(re.sub(r"\$\(\w+\)", "x", line.strip()))
        name = argv[argv.index("run") + 1]
        made.add(res.store_path(name, argv[argv.index("--catalog") + 1],
                                argv[argv.index("--profile") + 1]).name)
    stored = {p.name for p in (root / "data" / "results").glob("*.json")}
    assert stored and made == stored, (sorted(stored - made), sorted(made - stored))


def test_each_stored_file_records_the_commands_that_make_it_and_make_runs_them():
    # A file whose rows hold different seeds is made by several commands: its ``command`` names
    # each (joined by ``&&``, as the README's footers show it) and `make experiments` runs each,
    # making no row x seed the file lacks.
    import shlex
    import subprocess

    from mrlib import claims as C
    from mrlib.paths import repo_root

    root = repo_root()
    dry = subprocess.run(["make", "-n", "-s", "experiments", "DEVICE=auto"], cwd=root,
                         capture_output=True, text=True, check=True).stdout
    recipe = {tuple(shlex.split(line.split(" -m ", 1)[1].replace(" --device auto", "")))
              for line in dry.splitlines() if "mrlib.experiments run" in line}
    def pairs(commands, store):
        # the row x seed pairs command lines make, from their argv
        made = set()
        for argv in commands:
            flags = [i for i, a in enumerate(argv) if a.startswith("-")] + [len(argv)]
            values = {argv[i]: argv[i + 1:j] for i, j in zip(flags, flags[1:])}
            rows = values.get("--rows") or list(store["rows"])
            made |= {(r, int(s)) for r in rows for s in values["--seeds"]}
        return made

    several = 0
    for path in sorted((root / "data" / "results").glob("*.json")):
        store = res.read_store(path)
        assert store["command"] == X._whole_command(store["experiment"], store["catalog"], store["profile"],
                                                    store["rows"], store.get("overrides") or {}, "auto"), path.name
        parts = [tuple(shlex.split(part)[2:]) for part in store["command"].split(" && ")]
        several += len(parts) > 1
        held = {(r, int(s)) for r, row in store["rows"].items() for s in row["seeds"]}
        assert pairs(parts, store) == held, path.name
        mine = [argv for argv in recipe if argv[2] == store["experiment"]
                and argv[argv.index("--catalog") + 1] == store["catalog"]
                and argv[argv.index("--profile") + 1] == store["profile"]]
        assert pairs(mine, store) == held, path.name
        assert all(part in recipe for part in parts), (path.name, parts)
    assert several >= 1            # cfr2017 on each catalog: seeds 3-9 on the claims' rows
    # every look planned at a claim is complete in its file: each row of the claim holds its seeds
    for c in C.CLAIMS:
        for catalog, planned in c.looks:
            store = res.read_store(res.store_path(c.experiment, catalog, "quick", root / "data" / "results"))
            for r in C._claim_rows(c):
                assert set(range(max(planned))) <= set(map(int, res._ok_seeds(store["rows"][r]))), (c.key, r)


def test_every_commit_a_stored_run_records_is_in_the_history():
    # A stored run names the commit it ran at, for a reader to check that code out: the commit must
    # be in main's history, also when the run was made on a branch and joined as a file
    # (`experiments merge`), which CONTRIBUTING follows with `git merge -s ours <branch>`.
    import shutil
    import subprocess

    from mrlib.paths import repo_root

    root = repo_root()

    def git(*args):
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)

    if shutil.which("git") is None or git("rev-parse", "--is-shallow-repository").stdout.strip() != "false":
        pytest.skip("not a full clone: a shallow one (or a copy without git) lacks the history")
    recorded = set()
    for path in (root / "data" / "results").glob("*.json"):
        store = res.read_store(path)
        # a run started with uncommitted changes says so ("+dirty"); its commit is still history
        recorded |= {e["commit"].removesuffix("+dirty") for row in store["rows"].values() for e in row["seeds"].values()}
        recorded |= {run["commit"].removesuffix("+dirty") for run in store.get("runs", [])}
    assert len(recorded) > 10 and all(len(c) == 40 and set(c) <= set("0123456789abcdef") for c in recorded)
    missing = sorted(c for c in recorded if git("merge-base", "--is-ancestor", c, "HEAD").returncode != 0)
    assert not missing, f"recorded commits outside HEAD's history: {missing}"


def test_stored_rows_match_their_experiment():
    # A stored row whose parameters the code no longer produces would be run again from scratch
    # by `make experiments` (its seeds dropped): every committed file must be current.
    from mrlib.paths import repo_root

    for path in sorted((repo_root() / "data" / "results").glob("*.json")):
        store = res.read_store(path)
        spec = X.experiment_rows(store["experiment"], store["catalog"], store["profile"],
                                 store.get("overrides") or {})
        assert set(store["rows"]) == set(spec), path.name
        stale = [r for r, p in spec.items() if store["rows"][r]["key"] != res.parameters_key(p)]
        assert not stale, f"{path.name}: rows whose parameters changed since they were stored: {stale}"


def test_git_commit_is_dirty_when_code_or_a_result_input_changed(tmp_path):
    import subprocess

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    for name in ("mrlib/x.py", "data/oracle_weights.json", "data/results/t.json", "notes.md"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("0\n")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    clean = X.git_commit(tmp_path)
    assert len(clean) == 40
    for name, dirty in (("notes.md", False), ("data/results/t.json", False),   # results land here
                        ("data/oracle_weights.json", True), ("mrlib/x.py", True)):
        (tmp_path / name).write_text("1\n")
        assert X.git_commit(tmp_path) == clean + ("+dirty" if dirty else ""), name
        git("checkout", "--", name)


def test_compare_rows_reads_rows_given_as_an_iterator(store):
    X.run_experiment("toy", seeds=[0, 1], store=store, progress=False)
    data = res.read_store(store)
    rows = list(data["rows"])
    assert res.compare_rows(data, iter(rows)) == res.compare_rows(data, rows) != []


@pytest.mark.parametrize("path", sorted((Path(__file__).parents[1] / "data" / "results").glob("*.json")),
                         ids=lambda p: p.name)
def test_every_committed_store_holds_what_its_seeds_give(path):
    # summaries and comparisons are derived data: a change to the statistics rewrites them all
    stored = res.read_store(path)
    again = res.summarise_store(json.loads(json.dumps(stored)))
    assert again["summary"] == stored["summary"]
    assert again["comparisons"] == stored["comparisons"]


def test_compare_rows_decides_nothing_on_one_seed(store):
    # B = A + 0.2 + noise: clear over the units, but one seed shows nothing of the training's
    # variance, so the comparison is not called significant until a second seed is in
    X.run_experiment("toy", seeds=[0], store=store, progress=False)
    (ab, *_) = res.compare_rows(res.read_store(store))
    assert ab["n_seeds"] == 1 and ab["p_holm"] < 1e-6 and not ab["significant"]
    X.run_experiment("toy", seeds=[1], store=store, progress=False)
    (ab, *_) = res.compare_rows(res.read_store(store))
    assert ab["n_seeds"] == 2 and ab["significant"]


GROUPS = {"by": "artist", "labels": [f"artist{i // 3}" for i in range(N_UNITS)]}       # 3 queries each
TOY_GROUPED = X.register(X.Experiment(name="toy_grouped", title="a toy with artists", notebook="07_evaluation.ipynb",
                                      metrics=("score",), unit="query", rows=_toy_rows,
                                      run=lambda *a: (_toy_run(*a)[0], {}),
                                      unit_groups=lambda parameters, progress=False: GROUPS))


def test_a_store_of_grouped_units_counts_each_group_once(tmp_path, monkeypatch):
    from mrlib.stats import mean_ci

    path = tmp_path / "results" / "toy_grouped_synthetic_quick.json"
    X.run_experiment("toy_grouped", seeds=[0, 1, 2], rows=["A", "B"], store=path, progress=False)
    data = res.read_store(path)
    assert data["unit_groups"] == GROUPS and "clustered by artist" in res.results_markdown(data)
    # the row's ± is each seed's clustered half-width (G - 1 = 9 degrees of freedom), averaged
    labels = np.array(GROUPS["labels"])
    seeds = data["rows"]["A"]["seeds"].values()
    want = np.mean([100 * mean_ci(e["per_unit"]["score"], groups=labels).half_width for e in seeds])
    assert data["summary"]["A"]["score"]["ci"] == pytest.approx(want, abs=1e-4)
    plain = np.mean([e["metrics"]["score"]["ci"] for e in seeds])
    assert data["summary"]["A"]["score"]["ci"] != pytest.approx(plain, abs=1e-3)
    # the paired test: the units' variance by hand, over artists' sums of seed-averaged differences
    (ab,) = data["comparisons"]
    d = np.array([data["rows"]["A"]["seeds"][s]["per_unit"]["score"] for s in "012"]) - \
        np.array([data["rows"]["B"]["seeds"][s]["per_unit"]["score"] for s in "012"])
    unit, seed_means = d.mean(axis=0), d.mean(axis=1)
    sums = (unit - unit.mean()).reshape(10, 3).sum(axis=1)
    v_units, v_seeds = (sums ** 2).sum() / N_UNITS ** 2 * 10 / 9, seed_means.var(ddof=1) / 3
    df = (v_units + v_seeds) ** 2 / (v_units ** 2 / 9 + v_seeds ** 2 / 2)
    assert ab["df"] == pytest.approx(df, abs=0.01)
    assert ab["p"] == pytest.approx(2 * stats.t.sf(abs(unit.mean()) / (v_units + v_seeds) ** 0.5, df), abs=1e-6)
    # a file without groups takes those of a file merged into it; other groups are refused
    bare = {**data, "rows": {r: {**row, "seeds": {}} for r, row in data["rows"].items()}}
    del bare["unit_groups"]
    into = res.write_store(bare, tmp_path / "merged" / path.name)
    X.merge_stores(into, [path])
    assert res.read_store(into)["unit_groups"] == GROUPS
    # so does one whose groups are written as null (a file edited or made outside mrlib)
    into_null = res.write_store({**bare, "unit_groups": None}, tmp_path / "null" / path.name)
    X.merge_stores(into_null, [path])
    assert res.read_store(into_null)["unit_groups"] == GROUPS
    other = {**data, "unit_groups": {"by": "artist", "labels": GROUPS["labels"][::-1]}}
    with pytest.raises(res.StoreError, match="not grouped as those"):
        X.merge_stores(into, [res.write_store(other, tmp_path / "other.json")])
    # a seed of another number of units than the file groups is named
    short = {**data, "unit_groups": {"by": "artist", "labels": GROUPS["labels"][:-1]}}
    with pytest.raises(res.StoreError, match=r"row 'A', seed 0 has 30 units; the file groups 29"):
        res.summarise_store(short)
    # rows run again on other units than the file's are refused before anything runs
    monkeypatch.setitem(GROUPS, "labels", GROUPS["labels"][::-1])
    with pytest.raises(ValueError, match="grouped as artist over other units"):
        X.run_experiment("toy_grouped", seeds=[3], rows=["A"], store=path, progress=False)


def test_rows_that_score_different_units_are_refused(tmp_path):
    split = X.register(X.Experiment(
        name="toy_split", title="rows on two catalogs", notebook="07_evaluation.ipynb", metrics=("score",),
        unit="query", rows=_toy_rows, run=lambda *a: (_toy_run(*a)[0], {}),
        unit_groups=lambda p, progress=False: {"by": "artist", "labels": [str(p["level"] > 0.45)] * N_UNITS}))
    with pytest.raises(ValueError, match="score different units"):
        X.run_experiment(split.name, seeds=[0], rows=["A", "B"], store=tmp_path / "s.json", progress=False)
