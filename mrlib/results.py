"""Stored experiment results: the files under ``data/results/``, their statistics and tables.

An *experiment* (Table 2 of the 2020 paper, the 2017 CFR table, an ablation) is a set of rows
trained with several seeds. Each finished row × seed is stored at once in one small JSON file
per experiment × catalog × profile, with its per-unit scores (one value per test query, or per
test comparison), so that anything computed from the store — a seed mean, a paired test, a table —
can be computed again from the committed file alone. This module reads and writes those files
and turns them into tables; :mod:`mrlib.experiments` runs the experiments.

Statistics of a row (per metric, in percent):

* per seed: the mean over units and its 95 % Student interval (the *query interval*);
* over seeds: the mean of the seed means and their standard deviation (the *seed spread*);
* between two rows: the mean paired difference, with a Student interval and p-value whose
  variance counts the units and the seeds (:func:`seed_query_test`), and Holm's correction
  over the pairs of a metric.

A file whose units come in groups (``unit_groups``: the artist of each test query) counts each
group as one draw in the row summaries and the paired tests (:func:`store_groups`); the
per-seed entries keep their per-unit intervals as they were stored.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from mrlib.checks import as_vector, check_choice, check_level
from mrlib.evaluate import format_ci, holm, mean_ci
from mrlib.paths import atomic_path, repo_root
from mrlib.stats import mean_variance, signed_rank_p

__all__ = ["SCHEMA", "results_dir", "store_path", "parameters_key", "new_store", "read_store",
           "write_store", "seed_entry", "store_groups", "row_summary", "seed_query_test", "compare_rows",
           "summarise_store", "store_at_seeds", "stored_results", "results_frame",
           "results_markdown", "seed_frame", "selected_epochs", "comparisons_frame",
           "update_readme_block", "replace_readme_block", "StoreError"]

#: Version of the stored file's layout; a reader refuses files of another version.
SCHEMA = 1

#: Decimal places of stored per-unit scores (fractions; 4 places keep every AP@20 and
#: nDCG@20 to 1e-4, far below any difference a table reports).
UNIT_DECIMALS = 4


class StoreError(ValueError):
    """A results file that cannot be read as a store (names the file and what is wrong).

    Notebook: 07_evaluation.ipynb
    """


def results_dir() -> Path:
    """The committed results folder, ``<repo>/data/results`` (``$MRLIB_RESULTS`` overrides it).

    Notebook: 07_evaluation.ipynb
    """
    return Path(os.environ.get("MRLIB_RESULTS", repo_root() / "data" / "results"))


def store_path(experiment: str, catalog: str, profile: str, folder: Path | None = None) -> Path:
    """``<results_dir>/<experiment>_<catalog>_<profile>.json`` (a folder catalog by its name).

    Notebook: 07_evaluation.ipynb
    """
    label = re.sub(r"[^A-Za-z0-9]+", "-", Path(str(catalog)).name).strip("-") or "catalog"
    return Path(folder or results_dir()) / f"{experiment}_{label}_{profile}.json"


def parameters_key(parameters: Mapping[str, Any]) -> str:
    """A short hash of a row's parameters (JSON with sorted keys): equal keys, same training.

    Notebook: 07_evaluation.ipynb
    """
    text = json.dumps(parameters, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def new_store(experiment: str, catalog: str, profile: str, *, title: str, metrics: Sequence[str],
              unit: str, notebook: str) -> dict:
    """An empty store of one experiment × catalog × profile.

    Notebook: 07_evaluation.ipynb
    """
    return {"schema": SCHEMA, "experiment": experiment, "title": title, "catalog": catalog,
            "profile": profile, "notebook": notebook, "unit": unit, "metrics": list(metrics),
            "rows": {}, "summary": {}, "comparisons": [], "runs": []}


def _check_store(store: Any, where: str) -> dict:
    if not isinstance(store, dict):
        raise StoreError(f"{where}: not a results store (a JSON object was expected)")
    if store.get("schema") != SCHEMA:
        raise StoreError(f"{where}: schema {store.get('schema')!r}, this mrlib reads schema {SCHEMA}")
    missing = [k for k in ("experiment", "catalog", "profile", "metrics", "rows") if k not in store]
    if missing:
        raise StoreError(f"{where}: lacks {missing}")
    # every reader walks these two: a hand-edited file of another shape is named here
    if not isinstance(store["rows"], dict) or not isinstance(store["metrics"], (list, tuple)):
        raise StoreError(f"{where}: 'rows' must be a JSON object and 'metrics' a list, got "
                         f"{type(store['rows']).__name__} and {type(store['metrics']).__name__}")
    if "unit_groups" in store and store["unit_groups"] is None:   # null: ungrouped, as when absent
        del store["unit_groups"]
    return store


def read_store(path: str | os.PathLike) -> dict:
    """Read a results file; :class:`StoreError` names the file when it is not one.

    Notebook: 07_evaluation.ipynb
    """
    path = Path(path)
    try:
        store = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise StoreError(f"{path}: not a JSON text ({err}); restore it from git "
                         f"(`git checkout -- {path}`) or from a copy") from None
    except IsADirectoryError:
        raise StoreError(f"{path} is a folder, not a results file") from None
    return _check_store(store, str(path))


def _dumps(store: dict) -> str:
    """JSON with one line per list of numbers (per-unit scores stay compact and diff well)."""
    text = json.dumps(store, indent=1, ensure_ascii=False)
    number = r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?|null"
    return re.sub(rf"\[\s*((?:(?:{number}),\s*)*(?:{number}))\s*\]",
                  lambda m: "[" + re.sub(r"\s+", "", m.group(1)).replace(",", ", ") + "]", text)


def write_store(store: dict, path: str | os.PathLike) -> Path:
    """Write a store atomically (a temporary file, then a rename): a reader never sees half a file.

    Notebook: 07_evaluation.ipynb
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(_dumps(_check_store(store, str(path))) + "\n", encoding="utf-8")
    return path


def seed_entry(per_unit: Mapping[str, Sequence[float]], *, extra: Mapping[str, Any] | None = None,
               level: float = 0.95) -> dict:
    """A finished row × seed: per-unit scores (fractions) and their mean and interval in percent.

    Parameters
    ----------
    per_unit : mapping metric name -> float array (n_units,)
        E.g. ``{"MAP@20": ap_per_query, ...}``; every array the same length.
    extra : mapping, optional
        Further JSON values of the run (a tag AUC, a learned α, the validation curve).

    Returns
    -------
    dict with ``metrics`` (``{name: {"mean", "ci", "low", "high"}}``, percent),
    ``per_unit`` (rounded to :data:`UNIT_DECIMALS`), ``n_units`` and ``extra``.

    Notebook: 07_evaluation.ipynb
    """
    arrays = {m: as_vector(f"per_unit[{m!r}]", np.ravel(v)) for m, v in per_unit.items()}
    sizes = {a.size for a in arrays.values()}
    if len(sizes) != 1:
        raise ValueError(f"per_unit arrays differ in length: { {m: a.size for m, a in arrays.items()} }")
    cis = {m: mean_ci(a, level=level) for m, a in arrays.items()}
    metrics = {m: {k: round(100 * v, 4) for k, v in zip(("mean", "ci", "low", "high"),
                                                         (c.mean, c.half_width, c.low, c.high))}
               for m, c in cis.items()}
    return {"status": "ok", "metrics": metrics, "n_units": sizes.pop(),
            "per_unit": {m: np.round(a, UNIT_DECIMALS).tolist() for m, a in arrays.items()},
            "extra": dict(extra or {})}


def _ok_seeds(row: Mapping[str, Any]) -> dict[str, dict]:
    return {s: e for s, e in row.get("seeds", {}).items() if e.get("status") == "ok"}


def _paired_scores(rows: Mapping[str, Any], a: str, b: str, metric: str) -> list[list]:
    """The per-unit scores of rows ``a`` and ``b`` on the seeds both finished, seed by seed
    (a score that is missing or not a number names the row, seed and metric: a damaged file)."""
    sa, sb = _ok_seeds(rows.get(a, {})), _ok_seeds(rows.get(b, {}))
    common = sorted(set(sa) & set(sb), key=int)
    out = [[], []]
    for scores, (name, seeds) in zip(out, ((a, sa), (b, sb))):
        for s in common:
            unit = seeds[s].get("per_unit", {})
            if metric not in unit:
                raise ValueError(f"row {name!r}, seed {s} has no per-unit scores of metric {metric!r} "
                                 f"(it has {sorted(unit)})")
            scores.append(as_vector(f"row {name!r}, seed {s}, {metric} per-unit scores", unit[metric]))
    return out


def store_groups(store: Mapping[str, Any]) -> np.ndarray | None:
    """The group of each unit of a store (``store["unit_groups"]["labels"]``), or None.

    Units of one group (the test queries of one artist) are not independent draws: the
    intervals and paired tests of a store that records groups count each group once
    (:func:`mrlib.stats.mean_variance`).

    Notebook: 07_evaluation.ipynb
    """
    groups = store.get("unit_groups")
    if groups is None:
        return None
    if not (isinstance(groups, dict) and isinstance(groups.get("labels"), list) and "by" in groups):
        raise StoreError("'unit_groups' must be an object with 'by' and a list of 'labels'")
    labels = np.asarray([str(g) for g in groups["labels"]])
    for r, row in store.get("rows", {}).items():
        for s, e in _ok_seeds(row).items():
            if e.get("n_units") != labels.size:
                raise StoreError(f"row {r!r}, seed {s} has {e.get('n_units')} units; the file groups "
                                 f"{labels.size} ({groups['by']})")
    return labels


def row_summary(row: Mapping[str, Any], metrics: Sequence[str], groups=None) -> dict:
    """Seed mean, seed standard deviation and mean query half-width of a stored row (percent).

    With ``groups`` (:func:`store_groups`), each seed's half-width is recomputed from its
    per-unit scores with the units clustered by group.

    Returns
    -------
    dict metric -> ``{"mean", "sd", "ci", "n_seeds"}``; ``sd`` is None with one seed.

    Notebook: 07_evaluation.ipynb
    """
    seeds = list(_ok_seeds(row).values())
    if not seeds:
        return {}
    out = {}
    for m in metrics:
        means = np.array([e["metrics"][m]["mean"] for e in seeds])
        cis = ([e["metrics"][m]["ci"] for e in seeds] if groups is None else
               [100 * mean_ci(e["per_unit"][m], groups=groups).half_width for e in seeds])
        out[m] = {"mean": round(float(means.mean()), 4),
                  "sd": round(float(means.std(ddof=1)), 4) if len(seeds) > 1 else None,
                  "ci": round(float(np.mean(cis)), 4), "n_seeds": len(seeds)}
    return out


def seed_query_test(a: Sequence[np.ndarray], b: Sequence[np.ndarray], *, level: float = 0.95,
                    groups=None) -> dict:
    r"""Row A vs row B over seeds and units: the paired difference, its interval and p-value.

    ``a[s]`` and ``b[s]`` are the per-unit scores of the two rows trained with the same seed
    and scored on the same units (test queries). The difference
    $\bar d = \frac1{S}\sum_s \frac1{n}\sum_q d_{sq}$, $d_{sq} = a_{sq} - b_{sq}$, varies with
    the test units *and* with the training seeds, and its variance counts both:
    $\operatorname{var}_q(\bar d_{\cdot q})/n$ over the units' seed-averaged differences plus
    $\operatorname{var}_s(\bar d_{s\cdot})/S$ over the seed means (conservative: the seed × unit
    interaction is in both, up to twice the variance where it dominates). With ``groups`` the
    units' part is the cluster-robust variance of :func:`mrlib.stats.mean_variance` (one degree
    of freedom per group); the Wilcoxon p-value still ranks the units one by one. The interval and the two-sided p-value use Student's
    distribution with Welch–Satterthwaite's degrees of freedom, so with three seeds a large seed
    spread costs what it should; with one seed only the units vary. ``seeds_a_better`` — in
    how many seeds A's mean is above B's — is reported beside it, and the Wilcoxon signed-rank
    p-value (normal approximation) over the units' seed-averaged differences.

    Parameters
    ----------
    a, b : sequences of finite float arrays
        One array per seed, paired (same seed, same units in the same order). Seeds may have
        other units than each other (then only the seed means carry the variance). A NaN
        score is refused (``ValueError``): a missing score is no evidence either way.
    level : float, default 0.95
    groups : array_like (n_units,), optional
        The group of each unit (the artist of each query): the units' variance is then the
        clustered one of :func:`mrlib.stats.mean_variance`, one degree of freedom per group.

    Returns
    -------
    dict
        ``mean_diff``, ``low``, ``high`` (fractions), ``p``, ``df``, ``p_wilcoxon``,
        ``seeds_a_better``, ``n_seeds``, ``n_units``.

    Notebook: 07_evaluation.ipynb
    """
    if len(a) != len(b) or not len(a):
        raise ValueError(f"need the same number (≥ 1) of seeds for both rows, got {len(a)} and {len(b)}")
    level = check_level(level)
    d, scale = [], 0.0             # scale: the largest score, for the signed-rank test
    for s, (x, y) in enumerate(zip(a, b)):
        x, y = as_vector(f"a[{s}]", x), as_vector(f"b[{s}]", y)     # a NaN score is refused here
        if x.shape != y.shape or x.size < 2:
            raise ValueError(f"seed {s}: paired scores need the same ≥ 2 units, got {x.shape} and {y.shape}")
        scale = max(scale, np.abs(x).max(), np.abs(y).max())
        d.append(x - y)
    n_seeds = len(d)
    seed_means = np.array([x.mean() for x in d])
    mean = float(seed_means.mean())
    # Variance of the grand mean from the units (the unit's difference averaged over seeds) plus
    # the seeds (their means): with the same units in every seed, the two cross, and the sum
    # counts their interaction twice, which errs on the safe side (up to twice the variance
    # where seed-to-seed noise per unit dominates).
    parts = []
    if len({x.size for x in d}) == 1:
        per_unit = np.mean(d, axis=0)
        parts.append(mean_variance(per_unit, groups))
        p_w = signed_rank_p(per_unit, scale, method="asymptotic")
    elif groups is not None:
        raise ValueError("groups need the same units in every seed")
    else:                                    # other units in each seed: the seed means hold both
        p_w = float("nan")
    if n_seeds > 1:
        parts.append((seed_means.var(ddof=1) / n_seeds, n_seeds - 1))
    var = sum(v for v, _ in parts)
    if var > 0:
        df = var ** 2 / sum(v ** 2 / k for v, k in parts)          # Welch-Satterthwaite
        half = float(stats.t.ppf((1 + level) / 2, df) * math.sqrt(var))
        p = float(2 * stats.t.sf(abs(mean) / math.sqrt(var), df))
    else:                                    # every difference equal
        df, half, p = float("nan"), 0.0, float(mean == 0)
    return {"mean_diff": mean, "low": mean - half, "high": mean + half, "p": p, "df": float(df),
            "p_wilcoxon": p_w, "seeds_a_better": int((seed_means > 0).sum()), "n_seeds": n_seeds,
            "n_units": int(d[0].size)}


def compare_rows(store: Mapping[str, Any], rows: Sequence[str] | None = None, *, level: float = 0.95,
                 alpha: float = 0.05) -> list[dict]:
    """Every pair of rows, per metric, on the seeds both rows finished (Holm over a metric's pairs).

    Each test is :func:`seed_query_test`.

    Parameters
    ----------
    store : dict
        A results store.
    rows : sequence of str, optional
        Rows to compare (default: every row with a finished seed), in table order; pairs are
        ``(earlier, later)``, differences ``earlier − later``.

    Returns
    -------
    list of dict
        ``a``, ``b``, ``metric``, ``mean_diff``/``low``/``high`` (percentage points),
        ``p``, ``df``, ``p_holm``, ``p_wilcoxon``, ``significant`` (``p_holm < alpha`` on two
        seeds or more: one seed's interval counts the units, not the training's variance),
        ``seeds_a_better``, ``n_seeds``, ``n_units``.

    Notebook: 07_evaluation.ipynb
    """
    alpha = check_level(alpha, "alpha", 0.05)
    all_rows = store["rows"]
    rows = None if rows is None else list(rows)                  # an iterator is read twice
    for r in rows or ():
        check_choice("a row to compare", r, all_rows)
    rows = [r for r in (all_rows if rows is None else rows) if _ok_seeds(all_rows[r])]
    groups = store_groups(store)
    out = []
    for m in store["metrics"]:
        tests = []
        for ra, rb in itertools.combinations(rows, 2):
            xs, ys = _paired_scores(all_rows, ra, rb, m)
            if not xs or any(len(x) != len(y) for x, y in zip(xs, ys)):
                continue
            t = seed_query_test(xs, ys, level=level, groups=groups)
            tests.append({"a": ra, "b": rb, "metric": m, **t})
        adjusted = holm([t["p"] for t in tests])
        for t, p in zip(tests, adjusted):
            t.update({k: round(100 * t[k], 4) for k in ("mean_diff", "low", "high")})
            t["p"], t["df"] = round(t["p"], 6), None if math.isnan(t["df"]) else round(t["df"], 2)
            t["p_holm"] = round(float(p), 6)
            t["p_wilcoxon"] = None if math.isnan(t["p_wilcoxon"]) else float(f"{t['p_wilcoxon']:.6g}")
            t["significant"] = bool(p < alpha and t["n_seeds"] > 1)
            out.append(t)
    return out


def _summaries(store: Mapping[str, Any], rows: Mapping[str, Any]) -> dict:
    """:func:`row_summary` of each of ``rows`` (a store's, or a subset of their seeds)."""
    groups = store_groups(store)
    return {r: row_summary(row, store["metrics"], groups) for r, row in rows.items()}


def summarise_store(store: dict) -> dict:
    """Recompute a store's ``summary`` (per row) and ``comparisons`` from its seeds, in place.

    Notebook: 07_evaluation.ipynb
    """
    store["summary"] = _summaries(store, store["rows"])
    store["comparisons"] = compare_rows(store)
    return store


def store_at_seeds(store: Mapping[str, Any], seeds: Iterable[int]) -> dict:
    """The store restricted to some seeds: each row keeps its entries for them (the seeds it
    lacks stay missing), and the summary is recomputed from those alone.

    Two tables that hold different seeds are compared on the same seeds; a claim read more than
    once reads each look's seeds (:mod:`mrlib.claims`). The other fields (``command``,
    ``runs``) are kept; the comparisons are left empty: :func:`summarise_store` recomputes them.

    Notebook: 07_evaluation.ipynb
    """
    keep = {str(int(s)) for s in seeds}
    rows = {r: {**row, "seeds": {s: e for s, e in row.get("seeds", {}).items() if s in keep}}
            for r, row in store.get("rows", {}).items()}
    return {**store, "rows": rows, "summary": _summaries(store, rows), "comparisons": []}


def stored_results(experiment: str | None = None, folder: Path | None = None) -> dict[str, dict]:
    """Every stored results file (optionally of one experiment), keyed by file stem.

    Notebook: 07_evaluation.ipynb
    """
    folder = Path(folder or results_dir())
    pattern = f"{experiment}_*.json" if experiment else "*.json"
    stores = {path.stem: read_store(path) for path in sorted(folder.glob(pattern))}
    return {stem: s for stem, s in stores.items() if experiment is None or s["experiment"] == experiment}


def seed_frame(store: Mapping[str, Any]) -> pd.DataFrame:
    """Every finished row × seed of a store as a long table (percent), for plots and checks.

    Returns
    -------
    pandas.DataFrame
        Columns ``row``, ``seed`` (int), ``metric``, ``mean``, ``ci`` (the seed's 95 % half-width
        over units, as stored: units one by one, whatever the file's groups), ``wall_s``.

    Notebook: 07_evaluation.ipynb
    """
    records = [{"row": r, "seed": int(s), "metric": m, "mean": v["mean"], "ci": v["ci"],
                "wall_s": e.get("wall_s")}
               for r, row in store["rows"].items() for s, e in _ok_seeds(row).items()
               for m, v in e["metrics"].items()]
    return pd.DataFrame(records, columns=["row", "seed", "metric", "mean", "ci", "wall_s"])


def selected_epochs(store: Mapping[str, Any]) -> pd.DataFrame:
    """The epoch whose weights each trained row × seed was scored with (0 = untrained).

    The trainer keeps the weights of the best validation epoch, epoch 0 included: a row whose
    validation MAP@20 never beat its starting point is scored as the network at initialisation.
    Read from ``extra["best_epoch"]``, else the first maximum of ``extra["val_map"]``.

    Returns
    -------
    pandas.DataFrame
        Index: rows that store a validation curve; columns: seeds (int); values: epochs.

    Notebook: 07_evaluation.ipynb
    """
    records = {}
    for r, row in store["rows"].items():
        for seed, e in _ok_seeds(row).items():
            extra = e.get("extra", {})
            epoch = extra.get("best_epoch")
            if epoch is None and extra.get("val_map"):
                epoch = int(np.argmax(extra["val_map"]))
            if epoch is not None:
                records.setdefault(r, {})[int(seed)] = int(epoch)
    return pd.DataFrame.from_dict(records, orient="index").sort_index(axis=1).astype("Int64")


def comparisons_frame(store: Mapping[str, Any], metric: str, reference: str) -> pd.DataFrame:
    """A store's paired tests of one metric as a table: every row against ``reference``.

    Each test is oriented as ``row − reference`` (the sign of the difference and of its
    interval flipped where the stored pair is the other way round).

    Returns
    -------
    pandas.DataFrame
        Columns ``a``, ``b``, ``metric``, ``mean_diff``, ``low``, ``high`` (percentage points),
        ``p``, ``p_holm``, ``p_wilcoxon``, ``significant``, ``seeds_a_better``, ``n_seeds``.

    Notebook: 07_evaluation.ipynb
    """
    df = pd.DataFrame(store.get("comparisons") or [])
    if df.empty:
        return df
    df = df[df["metric"] == metric]
    ab, ba = df[df["b"] == reference].copy(), df[df["a"] == reference].copy()
    ba["a"], ba["b"] = ba["b"], reference
    ba["mean_diff"], ba["low"], ba["high"] = -ba["mean_diff"], -ba["high"], -ba["low"]
    ba["seeds_a_better"] = ba["n_seeds"] - ba["seeds_a_better"]
    return pd.concat([ab, ba]).reset_index(drop=True)


def _cell(entry: Mapping[str, Any] | None, decimals: int = 2) -> str:
    """``"12.08 ± 1.45 (0.52)"``: seed mean ± mean query half-width (seed standard deviation)."""
    if not entry:
        return ""
    text = format_ci(entry["mean"], entry["ci"], decimals=decimals, scale=1.0)
    if entry.get("sd") is not None:
        text += f" ({entry['sd']:.{decimals}f})"
    return text


#: Scalar values a run stores in ``extra`` that the tables show as a column (mean (sd) over
#: seeds) when some row has them; a dotted key reaches into a dict (``rho.mean_abs``). A learned
#: AutoPool shows the mean of ``|α|`` over its dimensions and the mean of ``|ρ|``, how far its
#: pooling moved from the mean towards the max or the min (0 to 1) on the test patches.
EXTRA_COLUMNS = {"tag_auc": "tag AUC", "alpha.mean_abs": "mean |α|", "rho.mean_abs": "mean |ρ|"}


def _extra_value(extra: Mapping[str, Any], key: str) -> Any:
    for part in key.split("."):
        extra = extra.get(part) if isinstance(extra, Mapping) else None
    return extra


def _extra_cell(row: Mapping[str, Any], key: str) -> str:
    values = [v for e in _ok_seeds(row).values()
              if (v := _extra_value(e.get("extra", {}), key)) is not None]
    if not values:
        return ""
    sd = f" ({np.std(values, ddof=1):.3f})" if len(values) > 1 else ""
    mean = f"{np.mean(values):.3f}"
    return ("0.000" if mean == "-0.000" else mean) + sd


def results_frame(store: Mapping[str, Any], metrics: Sequence[str] | None = None,
                  decimals: int = 2) -> pd.DataFrame:
    """A stored experiment as a table of strings: rows × metrics, plus the seeds of each row.

    Cells read ``mean ± ci (sd)``: the mean over seeds of the row's metric (percent), the mean
    over seeds of the 95 % half-width over test units, and the standard deviation over seeds.
    Scalars of :data:`EXTRA_COLUMNS` (the AT baseline's tag AUC) get a column ``mean (sd)``
    when some row stores them.
    Rows that failed for some seed say so in the ``seeds`` column. The README and the
    notebooks show stored results through this one function.

    Notebook: 07_evaluation.ipynb
    """
    metrics = list(metrics or store["metrics"])
    summary = store.get("summary") or _summaries(store, store["rows"])
    records = []
    for r, row in store["rows"].items():
        s = summary.get(r, {})
        ok = sorted(_ok_seeds(row), key=int)
        failed = sorted((k for k, e in row.get("seeds", {}).items() if e.get("status") != "ok"), key=int)
        seeds = ", ".join(ok) + (f"; failed: {', '.join(failed)}" if failed else "")
        extras = {label: _extra_cell(row, key) for key, label in EXTRA_COLUMNS.items()}
        records.append({"row": r, **{m: _cell(s.get(m), decimals) for m in metrics}, **extras,
                        "seeds": seeds})
    df = pd.DataFrame(records).set_index("row")
    return df.drop(columns=[c for c in EXTRA_COLUMNS.values() if not df[c].astype(bool).any()])


def _markdown_table(header: Sequence[str], rows) -> list[str]:
    """The lines of a Markdown table: the header, its rule, then one line per row of cells (a
    ``|`` inside a cell, as in ``mean |α|``, escaped so that it does not split the cell)."""
    lines = ["| " + " | ".join(str(c).replace("|", r"\|") for c in cells) + " |" for cells in (header, *rows)]
    return [lines[0], "|---" * len(header) + "|", *lines[1:]]


def results_markdown(store: Mapping[str, Any]) -> str:
    """:func:`results_frame` as a Markdown table, followed by where the numbers come from.

    Notebook: 07_evaluation.ipynb
    """
    df = results_frame(store)
    lines = _markdown_table(["row", *df.columns], [[r, *df.loc[r]] for r in df.index])
    entries = [e for row in store["rows"].values() for e in _ok_seeds(row).values()]
    walls = [e.get("wall_s", 0) for e in entries]
    # each row × seed records the commit it ran at; a file filled over time names several
    commits = sorted({str(e.get("commit", "?"))[:10] for e in entries})
    units = {e["n_units"] for e in entries}
    plural = "queries" if store.get("unit") == "query" else f"{store.get('unit')}s"
    over = plural if store.get("unit_groups") is None else f"{plural} clustered by {store['unit_groups']['by']}"
    lines += ["", f"{'/'.join(str(u) for u in sorted(units))} test {plural}; "
              f"cells: mean over training seeds ± one seed's 95 % interval over {over}, its "
              f"half-width averaged over seeds (standard deviation over seeds), percent. "
              f"`{store.get('command', '')}` — "
              f"commit{'s' if len(commits) > 1 else ''} {', '.join(commits)}, {len(walls)} row × seed runs, "
              f"{sum(walls) / 3600:.2f} h of training and evaluation in all."]
    return "\n".join(lines)


def _readme_parts(name: str, readme: Path | None) -> tuple[Path, str, str, str]:
    """The README's path and its text before, inside and after the block ``name``."""
    readme = Path(readme or repo_root() / "README.md")
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    content = readme.read_text()
    if start not in content or end not in content:
        raise ValueError(f"{readme} has no {start} … {end} block")
    head, rest = content.split(start, 1)
    block, tail = rest.split(end, 1)
    return readme, head + start, block, end + tail


def replace_readme_block(name: str, text: str, readme: Path | None = None) -> Path:
    """Replace the README's text between ``<!-- <name>:start -->`` and ``<!-- <name>:end -->``.

    Raises
    ------
    ValueError
        When the README has no such block.

    Notebook: 07_evaluation.ipynb
    """
    readme, head, _, tail = _readme_parts(name, readme)
    readme.write_text(f"{head}\n{text}\n{tail}")
    return readme


def update_readme_block(store: Mapping[str, Any], readme: Path | None = None) -> Path:
    """Write a stored experiment into the README between its markers.

    The markers are ``<!-- results:<experiment>_<catalog>_<profile>:start -->`` and ``…:end -->``.

    Raises
    ------
    ValueError
        When the README has no such block.

    Notebook: 07_evaluation.ipynb
    """
    stem = store_path(store["experiment"], store["catalog"], store["profile"]).stem
    return replace_readme_block(f"results:{stem}", results_markdown(store), readme)


def now() -> str:
    """The current UTC time, ISO 8601 to the second (the store's time stamps)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
