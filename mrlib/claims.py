"""The papers' claims, tested on the stored experiments.

Each claim of Prétet et al. (2020) and Lu et al. (2017) is written as a few directed comparisons
between rows of one stored table (:mod:`mrlib.results`): ``(a, ">", b, metric)`` says "row *a*
scores higher than row *b*", ``(a, ">=", b, metric)`` says "row *a* is not worse". Each
comparison is a paired test on the stored per-unit scores (its variance counts the seeds and
the units, :func:`mrlib.results.seed_query_test`), Holm-corrected over the claim's comparisons:

* ``">"`` **holds** when the difference is significant and positive, is **reversed** when it is
  significant and negative, and is **open** otherwise — always open on one seed, whose interval
  counts the test units but not the training's variance;
* ``">="`` is tested the same way. No margin of equivalence was fixed before the experiments,
  so the data can show "not worse" only by showing "better": a difference that is not
  significant leaves it open, not held.

A claim is **reproduced** when every comparison holds, **not reproduced** when at least one is
reversed, and **inconclusive** otherwise (some comparison open, none reversed); **not run** when
its table or one of its rows is not stored. Statuses are computed from the committed files,
never typed in.

Adding seeds after reading a verdict is a second look at the same claim, and each look is a
chance of a false verdict. A claim read more than once on a catalog (:attr:`Claim.looks`) is
therefore tested at the level divided by the number of looks on the seeds each look read, and
the first look that decides gives the verdict (Bonferroni over the looks: the error over the
looks so tested stays at the level; a first look read at the full level before the second was
planned adds its own share, up to 1.5 times the level in all for two looks).

Notebook: 07_evaluation.ipynb
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from mrlib import results as res
from mrlib.checks import check_choice, check_level
from mrlib.evaluate import holm

__all__ = ["Claim", "CLAIMS", "CLAIM_CATALOGS", "comparison_status", "claim_status", "claims_frame",
           "claims_markdown", "update_readme_claims"]

TABLE2_METRICS = ("MAP@20", "Recall@20", "RR@20", "nDCG@20")


@dataclass(frozen=True)
class Claim:
    """One claim of a paper as comparisons between stored rows.

    Attributes
    ----------
    key : str
        Short identifier.
    paper : str
        ``"2020"`` (Prétet et al.) or ``"2017"`` (Lu et al.).
    text : str
        The claim, as the paper makes it.
    experiment : str
        The stored experiment that tests it (``table2``, ``cfr2017``).
    tests : tuple of (a, relation, b, metric)
        Directed comparisons; relation ``">"`` or ``">="``.
    note : str
        What the reader must know to read the status (a choice tuned on validation, a stand-in).
    looks : tuple of (catalog, tuple of int)
        Catalogs on which the claim's own table (its ``experiment``, profile ``quick``, no
        overrides) is read more than once (seeds added after a first verdict), with the number
        of seeds each look reads: a look at ``n`` reads seeds 0 to n − 1. The looks a store has
        completed (every row of the claim holding their seeds), and once all are complete the
        seeds past the last that every row holds, are each tested at the level divided by their
        number (Bonferroni); the first that decides gives the verdict, as a run stopped there
        would have (:func:`claim_status`).

    Notebook: 07_evaluation.ipynb
    """

    key: str
    paper: str
    text: str
    experiment: str
    tests: tuple[tuple[str, str, str, str], ...]
    note: str = ""
    looks: tuple[tuple[str, tuple[int, ...]], ...] = ()


def _all(rows_a: Sequence[str], rel: str, rows_b: Sequence[str],
         metrics: Sequence[str]) -> tuple[tuple[str, str, str, str], ...]:
    return tuple((a, rel, b, m) for a in rows_a for b in rows_b if a != b for m in metrics)


#: The catalogs the claims are tested on: the synthetic one, music21, and music21 with each
#: collection's own instruments (where timbre reveals the collection).
CLAIM_CATALOGS = ("synthetic", "music21", "music21-by-collection")


_TL = ("TL Neighbors", "TL Random uniform", "TL Distance-based", "TL Autopool")
_BY_COMPARISON = " (by comparison)"
_EUC, _SVM, _MAH = "Euclidean / ", "SVM (Schultz & Joachims) / ", "Mahalanobis (LSML, stand-in) / "
# The 2017 table's rows by comparison ran seeds 3-9 after the claims had been read at seeds 0-2,
# on every catalog: each 2017 claim was looked at twice on each.
_SECOND_LOOK = tuple((cat, (3, 10)) for cat in CLAIM_CATALOGS)
# Table 2's rows on the music21 catalogs: seeds 3-9 of the claims' rows were planned after the
# claims had been read at seeds 0-2 and before any of them ran.
_TABLE2_LOOKS = tuple((cat, (3, 10)) for cat in CLAIM_CATALOGS if cat != "synthetic")
# How the looks above came about, said once under the claims table (claims_markdown).
_LOOKS_HISTORY = ("Seeds 3–9 were added after a first look at seeds 0–2: to the 2017 claims' rows on "
                  "every catalog, and to the 2020 claims' rows on both music21 catalogs, where they "
                  "were planned after that look and before any of them ran.")

#: The claims, in the papers' order.
CLAIMS: tuple[Claim, ...] = (
    Claim("tl>at", "2020", "The AT baseline is outperformed by all TL systems on all metrics (§4.3)",
          "table2", _all(_TL, ">", ("AT Baseline",), TABLE2_METRICS),
          note="at the CPU profiles the AT row trains without dropout, chosen on validation tag "
               "AUC; on the synthetic catalog, against the AT row at the paper's dropout 0.5 and "
               "rate 10⁻⁴ (`at_sweep`), every TL row, the untrained one too, scores higher on "
               "average: the verdict turns on the AT row's tuning. The TL rows keep Table 2's "
               "rate 10⁻³; TL Distance-based's own sweep of rate and margin (`tl_sweep`), chosen "
               "on validation, gains under a point of test MAP@20, far short of the AT row's lead; "
               "with every TL row at the rate that sweep chose (`tl_tuned`: on the synthetic "
               "catalog, and on both music21 catalogs at that same, untuned rate), the verdict at "
               "the same seeds (0–2) is the same", looks=_TABLE2_LOOKS),
    Claim("distance-best", "2020", "Distance-based mining performs best of the three strategies "
          "on all metrics (§4.3)", "table2",
          _all(("TL Distance-based",), ">", ("TL Neighbors", "TL Random uniform"), TABLE2_METRICS),
          looks=_TABLE2_LOOKS),
    Claim("neighbors-rr", "2020", "Neighbors has the higher RR@20, Random uniform the higher "
          "Recall@20 (Table 2)", "table2",
          (("TL Neighbors", ">", "TL Random uniform", "RR@20"),
           ("TL Random uniform", ">", "TL Neighbors", "Recall@20")),
          note="as the paper's Table 2 reads; its §4.3 text says the reverse", looks=_TABLE2_LOOKS),
    Claim("autopool-best", "2020", "TL Autopool is the best system on all metrics (§4.3)", "table2",
          _all(("TL Autopool",), ">", ("AT Baseline",) + _TL, TABLE2_METRICS),
          looks=_TABLE2_LOOKS),
    Claim("learned>handcrafted", "2017", "Features learned by Triplet MatchNet beat handcrafted "
          "ones for the baseline metrics (CFR, by-comparison folds)", "cfr2017",
          tuple((f"{m}MatchNet{_BY_COMPARISON}", ">", f"{m}HandCrafted{_BY_COMPARISON}", "CFR")
                for m in (_EUC, _MAH)),
          note="LSML stands in for MLR/RMLR", looks=_SECOND_LOOK),
    Claim("pca<handcrafted", "2017", "PCA features fall below the handcrafted ones (CFR, "
          "by-comparison folds)", "cfr2017",
          tuple((f"{m}HandCrafted{_BY_COMPARISON}", ">", f"{m}PCA{_BY_COMPARISON}", "CFR")
                for m in (_EUC, _MAH)),
          note="LSML stands in for MLR/RMLR", looks=_SECOND_LOOK),
    Claim("matchnet>=baselines", "2017", "Triplet MatchNet is at least as good as the baselines "
          "on handcrafted features (CFR, by-comparison folds)", "cfr2017",
          tuple((f"Triplet MatchNet{_BY_COMPARISON}", ">=", f"{m}HandCrafted{_BY_COMPARISON}", "CFR")
                for m in (_EUC, _SVM, _MAH)),
          looks=_SECOND_LOOK),
)


def _short(row: str) -> str:
    """A row's name without what the claim already says (the split, the method's reference)."""
    return re.sub(r" \((by comparison|LSML, stand-in|Schultz & Joachims)\)", "", row)


def comparison_status(store: Mapping[str, Any], a: str, rel: str, b: str, metric: str) -> dict:
    """One directed comparison, tested on the seeds both rows of a store finished.

    The test is :func:`mrlib.results.seed_query_test` (over seeds and units); ``significant``
    is left to :func:`claim_status`, which corrects over the claim.

    Returns
    -------
    dict
        ``diff``, ``low``, ``high`` (a − b in percentage points, 95 % interval), ``p``,
        ``n_seeds``; ``status`` ``"not run"`` (and ``None`` figures) when a row has no seed.

    Notebook: 07_evaluation.ipynb
    """
    check_choice("relation", rel, (">", ">="))
    xs, ys = res._paired_scores(store.get("rows", {}), a, b, metric)
    if not xs:
        return {"status": "not run", "diff": None, "low": None, "high": None, "p": None,
                "n_seeds": 0}
    t = res.seed_query_test(xs, ys, groups=res.store_groups(store))
    return {"status": None, "diff": 100 * t["mean_diff"], "low": 100 * t["low"],
            "high": 100 * t["high"], "p": t["p"], "n_seeds": t["n_seeds"]}


# (a comparison's status, the claim's verdict), checked in order: the first status any of the
# claim's comparisons has gives the verdict; if none has one, the claim is reproduced
_VERDICTS = (("not run", "not run"), ("reversed", "not reproduced"), ("open", "inconclusive"))
_DECIDED = ("reproduced", "not reproduced")


def claim_status(claim: Claim, store: Mapping[str, Any] | None, alpha: float = 0.05) -> dict:
    """A claim's status on one stored table, with the comparisons behind it.

    The claim's comparisons are one family: Holm's correction runs over them (a claim is a
    hypothesis stated before the experiment, not a search among the table's pairs). On a
    catalog where the claim's table is read more than once (:attr:`Claim.looks`), each look is
    tested at ``alpha`` divided by the number of looks, and the first look that decides
    (reproduced or not reproduced) gives the status. A later look is read only once every row
    of the claim holds all its seeds: until then the store is read at the looks it completed
    (the first alone, at ``alpha``, until the second is complete; the first as far as it got
    when a row lacks one of its seeds), and the evidence says the next is not complete. Once
    every recorded look is complete, seeds past the last are one more look, read once every row
    of the claim holds them (until then the evidence says they are not read).

    Returns
    -------
    dict
        From the deciding look (else the last): ``status``, ``evidence`` (one line: counts, the
        weakest comparison and, over several looks, the level and the last look's evidence),
        ``tests`` (:func:`comparison_status` results with ``a``, ``rel``, ``b``, ``metric``,
        ``p_holm`` and ``status``), ``counts`` (one line: the comparisons per status),
        ``weakest`` (the test whose interval reaches lowest, or None), ``min_seeds``, and
        ``look_seeds`` (the look read seeds 0 to ``look_seeds`` − 1).

    Notebook: 07_evaluation.ipynb
    """
    alpha = check_level(alpha, "alpha", 0.05)
    if store is None:
        return {"status": "not run", "evidence": "table not stored", "tests": [], "counts": "",
                "weakest": None, "min_seeds": 0, "look_seeds": 0}
    rows = store.get("rows", {})
    seeds = [set(map(int, res._ok_seeds(rows.get(r, {"seeds": {}})))) for r in _claim_rows(claim)]
    held = 1 + max(max(s, default=-1) for s in seeds)
    full = next(n for n in range(held, -1, -1) if all(set(range(n)) <= s for s in seeds))
    # the looks are those of the claim's own table (tl_tuned on the same catalog, another
    # profile or an overrides file is read once)
    own = (store.get("experiment", claim.experiment) == claim.experiment
           and store.get("profile", "quick") == "quick" and not store.get("overrides"))
    planned = dict(claim.looks).get(store.get("catalog"), ()) if own else ()
    if planned:
        # a look is read once every row of the claim holds its seeds, an incomplete one not at
        # all; seeds past the last recorded look are one more look once every row holds them
        looks = [n for n in planned if n <= full] or [min(held, planned[0])]
        waiting = [n for n in planned if n > looks[-1]]
        if full > looks[-1] and not waiting:
            looks.append(full)
    else:
        looks, waiting = [held], []
    seen = [_look(claim, res.store_at_seeds(store, range(n)), alpha / len(looks)) for n in looks]
    k = next((i for i, st in enumerate(seen) if st["status"] in _DECIDED), len(seen) - 1)
    st = {**seen[k], "look_seeds": looks[k]}
    unread = ""
    if waiting and held > looks[-1]:
        unread = f"; the look at seeds 0–{waiting[0] - 1} is not complete and not read"
    elif planned and held > looks[-1]:
        span = (f"seed {looks[-1]} is" if held - 1 == looks[-1]
                else f"seeds {looks[-1]}–{held - 1} are")
        unread = f"; {span} not in every row of the claim and not read"
    if len(looks) == 1:
        return {**st, "evidence": st["evidence"] + unread}
    last, n_last = seen[-1], looks[-1]
    if k < len(seen) - 1:
        how = (f"decided at seeds 0–{looks[k] - 1} (at seeds 0–{n_last - 1}: {last['evidence']}, "
               f"Holm p {last['weakest']['p_holm']:.3f})")
    elif st["status"] in _DECIDED:
        how = f"decided at seeds 0–{n_last - 1}"
    else:
        how = "none decided" + (f" (at seeds 0–{n_last - 1}, Holm p of the weakest "
                                f"{st['weakest']['p_holm']:.3f})" if st["weakest"] else "")
    level = f"level {alpha / len(looks):g} at each of {len(looks)} looks"
    return {**st, "evidence": f"{st['evidence']}; {level}: {how}{unread}"}


def _claim_rows(claim: Claim) -> list[str]:
    return sorted({r for a, _, b, _ in claim.tests for r in (a, b)})


def _look(claim: Claim, store: Mapping[str, Any], alpha: float) -> dict:
    """The claim's status on the seeds a store holds, at one level."""
    tests = [{"a": a, "rel": rel, "b": b, "metric": m, **comparison_status(store, a, rel, b, m)}
             for a, rel, b, m in claim.tests]
    run = [t for t in tests if t["status"] != "not run"]
    for t, p in zip(run, holm([t["p"] for t in run])):
        t["p_holm"] = float(p)
        # one seed shows nothing of the training's own variance, which the claim is about
        decided = p < alpha and t["n_seeds"] > 1
        t["status"] = ("holds" if t["diff"] > 0 else "reversed") if decided else "open"
    counts = {s: sum(t["status"] == s for t in tests) for s in ("holds", "reversed", "open", "not run")}
    status = next((verdict for s, verdict in _VERDICTS if counts[s]), "reproduced")
    said = "; ".join(f"{counts[s]}/{len(tests)} {s}" for s in counts if counts[s])
    # the comparison furthest from the claimed direction: the lowest bound of a - b
    worst = min(run, key=lambda t: t["low"]) if run else None
    evidence = said if worst is None else (
        f"{said}; weakest: {_short(worst['a'])} − {_short(worst['b'])}, {worst['metric']} "
        f"{worst['diff']:+.2f} [{worst['low']:+.2f}, {worst['high']:+.2f}] pp")
    if any(t["n_seeds"] == 1 for t in run):
        evidence += "; one seed: its interval counts the units only, so it stays open"
    return {"status": status, "evidence": evidence, "tests": tests, "counts": said, "weakest": worst,
            "min_seeds": min((t["n_seeds"] for t in run), default=0)}


def claims_frame(profile: str = "quick", folder: Path | None = None) -> pd.DataFrame:
    """Every claim's status per catalog of :data:`CLAIM_CATALOGS`, from the stored files.

    Returns
    -------
    pandas.DataFrame
        One row per claim: ``paper``, ``claim``, then per catalog ``<catalog>`` (the status)
        and ``<catalog> evidence``, then ``file`` (the stores read) and ``note``.

    Notebook: 07_evaluation.ipynb
    """
    check_choice("profile", profile, ("smoke", "quick", "paper"))   # else: "not run" everywhere
    paths = {(c.experiment, cat): res.store_path(c.experiment, cat, profile, folder)
             for c in CLAIMS for cat in CLAIM_CATALOGS}
    stores = {key: res.read_store(path) if path.exists() else None for key, path in paths.items()}
    rows = []
    for c in CLAIMS:
        row: dict[str, Any] = {"paper": c.paper, "claim": c.text}
        for cat in CLAIM_CATALOGS:
            st = claim_status(c, stores[(c.experiment, cat)])
            row.update({cat: st["status"], f"{cat} evidence": st["evidence"]})
        rows.append({**row, "file": f"{c.experiment}_<catalog>_{profile}.json", "note": c.note})
    return pd.DataFrame(rows)


def claims_markdown(profile: str = "quick", folder: Path | None = None) -> str:
    """The claims table as Markdown (the README's block and notebook 07's table).

    Notebook: 07_evaluation.ipynb
    """
    df = claims_frame(profile, folder)
    rows = [[r["paper"], r["claim"] + (f" *({r['note']})*" if r["note"] else ""),
             *(f"**{r[c]}** — {r[c + ' evidence']}" for c in CLAIM_CATALOGS), f"`{r['file']}`"]
            for _, r in df.iterrows()]
    lines = res._markdown_table(["paper", "claim", *CLAIM_CATALOGS, "file"], rows)
    lines += ["", f"Profile `{profile}`. A comparison holds when the paired test over the stored "
              "seeds and test units is significant in the claimed direction "
              "after Holm's correction over the claim's comparisons (level 0.05; *at least as good* "
              "too, as no margin of equivalence was fixed in advance). " + _LOOKS_HISTORY + " Where a "
              "claim is read at several looks, each is tested at the level divided by their number "
              "(0.025 for two), and the first look that decides gives the verdict. *Weakest* is the "
              "comparison whose 95 % interval of the difference reaches lowest. Written by "
              "`python -m mrlib.experiments readme` from the files under `data/results/`."]
    return "\n".join(lines)


def update_readme_claims(profile: str = "quick") -> Path:
    """Write the claims table into the README between ``<!-- claims:<profile>:start/end -->``.

    Notebook: 07_evaluation.ipynb
    """
    return res.replace_readme_block(f"claims:{profile}", claims_markdown(profile=profile))
