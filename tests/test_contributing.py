"""CONTRIBUTING.md states facts about the package; these tests hold the package to them."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from test_structure import MODULES, import_graph

ROOT = Path(__file__).resolve().parents[1]


def module_map() -> list[tuple[str, set[str]]]:
    """CONTRIBUTING's module map: ``(layer, modules named in it)``, top layer first.

    Parenthesised text (a module's contents) is skipped, so that only the modules a layer lists
    count, not the names its descriptions mention.
    """
    text = (ROOT / "CONTRIBUTING.md").read_text()
    block = text.split("## Module map", 1)[1].split("```text\n", 1)[1].split("```", 1)[0]
    layers: list[list[str]] = []
    for line in block.splitlines():
        head = re.match(r"^([a-z]+)\s{2,}(.*)$", line)
        if head:
            layers.append([head.group(1), head.group(2)])
        else:
            layers[-1][1] += " " + line.strip()
    names = {p.stem for p in MODULES}
    out = []
    for layer, body in layers:
        while re.search(r"\([^()]*\)", body):
            body = re.sub(r"\([^()]*\)", " ", body)
        out.append((layer, {w for w in re.findall(r"[a-z_0-9]+", body) if w in names}))
    return out


def test_module_map_names_every_module_once():
    layers = module_map()
    seen: dict[str, str] = {}
    for layer, modules in layers:
        for m in modules:
            assert m not in seen, f"{m} is in two layers of the map: {seen[m]} and {layer}"
            seen[m] = layer
    missing = sorted({p.stem for p in MODULES} - set(seen) - {"__init__", "__main__"})
    assert not missing, f"modules not in CONTRIBUTING's module map: {missing}"


def test_imports_go_to_the_same_layer_or_above_only():
    rank = {m: i for i, (_, modules) in enumerate(module_map()) for m in modules}
    layer = {m: name for name, modules in module_map() for m in modules}
    upward = sorted(f"{a} ({layer[a]}) imports {b} ({layer[b]})"
                    for a, targets in import_graph().items() if a in rank
                    for b in targets if b in rank and rank[b] > rank[a])
    assert not upward, "imports against CONTRIBUTING's module map: " + "; ".join(upward)


def _hours(stem: str) -> float:
    """A stored experiment's wall time in hours, as its README block states it."""
    store = json.loads((ROOT / "data" / "results" / f"{stem}.json").read_text())
    walls = [e["wall_s"] for row in store["rows"].values() for e in row["seeds"].values()
             if e.get("wall_s") is not None]
    return round(sum(walls) / 3600, 2)


def test_quoted_costs_are_the_stored_ones():
    text = " ".join((ROOT / "CONTRIBUTING.md").read_text().split())
    table2 = re.search(r"Cost, measured: 27 row × seed runs, ([\d.]+) h of worker time", text)
    cfr = re.search(r"The stored 2017 table \(`mrlib/cfr2017.py`\) took ([\d.]+) h", text)
    assert table2 and cfr, "CONTRIBUTING no longer quotes the costs this test checks"
    assert float(table2.group(1)) == _hours("table2_synthetic_quick")
    assert float(cfr.group(1)) == _hours("cfr2017_synthetic_quick")


def test_quoted_kernel_spread_compares_with_the_stored_row():
    text = " ".join((ROOT / "CONTRIBUTING.md").read_text().split())
    quoted = re.search(r"the stored seed 0 now reads ([\d.]+)\).*?over the stored row's (\w+) "
                       r"seeds \(([\d.]+)\)", text)
    assert quoted, "CONTRIBUTING no longer quotes the stored row this test checks"
    store = json.loads((ROOT / "data/results/cfr2017_music21-by-collection_quick.json").read_text())
    seeds = store["rows"]["Triplet MatchNet (by comparison)"]["seeds"]
    cfr = [seeds[s]["metrics"]["CFR"]["mean"] for s in sorted(seeds, key=int)]
    assert float(quoted.group(1)) == round(cfr[0], 2)
    assert quoted.group(2) == {3: "three", 10: "ten"}.get(len(cfr))
    assert float(quoted.group(3)) == round(float(np.std(cfr, ddof=1)), 2)
