"""The behaviour fingerprint: hashes of what seeded mrlib calls produce, to prove a refactoring
changed no byte.

    python tests/fingerprint.py before.json          # on the old commit
    python tests/fingerprint.py after.json           # on the new one
    diff before.json after.json                      # no output: the same bytes

It hashes generated catalogs (synthetic, synthetic with events, music21: audio bytes and
tracks.csv), the oracle S and the triplets of each offline mining strategy on a 60-track
catalog, and eight 2-epoch training runs on it (AT; TL with each of the five mining strategies;
TL Autopool; Triplet MatchNet): ``model.pt`` (the best epoch), the last epoch's weights, the
embeddings and the metrics that do not time anything. About a minute on 2 cores. Everything is
written below a temporary folder.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

# the metrics of metrics.jsonl that are fixed by the seed (the rest are timings)
SEEDED_METRICS = ("epoch", "step", "loss", "loss_all", "active_fraction", "val_map", "val_map_low",
                  "val_map_high", "val_recall", "val_rr", "val_ndcg", "val_auc")
CATALOGS = {"synthetic": ("synthetic", dict(n_tracks=8, seed=3, duration_s=4)),
            "synthetic_events": ("synthetic", dict(n_tracks=6, seed=2, duration_s=4, events=True)),
            "music21": ("music21", dict(n_tracks=4, seed=1, clip_s=4))}
RUNS = [("at", "distance"), ("tl", "distance"), ("tl", "neighbors"), ("tl", "uniform"),
        ("tl", "online-hard"), ("tl", "online-semihard"), ("tl_autopool", "distance"),
        ("matchnet", "distance")]


def _hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def fingerprint(tmp: Path) -> dict[str, str]:
    os.environ["MRLIB_DATA"] = str(tmp / "data")
    os.environ["MRLIB_RUNS"] = str(tmp / "runs")
    from mrlib import catalog, mining, similarity, train

    out = {}
    for key, (source, kwargs) in CATALOGS.items():
        root = catalog.build(source, root=tmp / key, n_jobs=1, progress=False, **kwargs)
        audio = sorted(p for p in (root / "audio").rglob("*") if p.is_file())
        out[f"catalog_{key}_audio"] = _hash(b"".join(p.read_bytes() for p in audio))
        out[f"catalog_{key}_tracks"] = _hash(catalog.load(root).tracks.to_csv(index=False).encode())

    root = catalog.build("synthetic", n_tracks=60, seed=0, duration_s=12, n_jobs=1, progress=False)
    cat = catalog.load(root)
    S = similarity.oracle(cat)
    out["oracle"] = _hash(np.ascontiguousarray(S).tobytes())
    for strategy in ("neighbors", "uniform", "distance"):
        triplets = mining.mine(S=S, train_idx=cat.split_indices("train"), strategy=strategy,
                               n_pos=5, n_neg=20, seed=4, progress=False)
        out[f"mine_{strategy}"] = _hash(np.ascontiguousarray(triplets).tobytes())

    for system, strategy in RUNS:
        name = f"train_{system}_{strategy}"
        config = train.TrainConfig(system=system, mining=strategy, catalog=str(root), epochs=2,
                                   steps_per_epoch=3, seed=0, out_dir=str(tmp / "runs" / name),
                                   n_jobs=1, batch_tracks=8, n_pos=3, n_neg=10,
                                   negatives_per_batch=4, matchnet_patches=4, val_patches=2)
        run = train.train(config, progress=False)
        out[f"{name}_model"] = _hash((run.path / "model.pt").read_bytes())     # the best epoch's
        last = train.load_checkpoint(run.path / "checkpoint.pt")["model"]       # the last epoch's
        out[f"{name}_last_weights"] = _hash(b"".join(t.numpy().tobytes() for t in last.values()))
        out[f"{name}_embeddings"] = _hash(np.ascontiguousarray(run.embeddings).tobytes())
        columns = [c for c in SEEDED_METRICS if c in run.metrics.columns]
        out[f"{name}_metrics"] = _hash(run.metrics[columns].to_csv(index=False).encode())
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/fingerprint.py OUT.json")
    with tempfile.TemporaryDirectory() as tmp:
        result = fingerprint(Path(tmp))
    Path(sys.argv[1]).write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    print(f"{len(result)} hashes -> {sys.argv[1]}")
