"""Retrieval at scale: exact top-k vs a FAISS index on a simulated 1M-track catalog.

``python benchmarks/retrieval.py [--n 1000000] [--dim 128] [--queries 1000] [--kind ivf|hnsw]``
(or ``python -m mrlib.bench retrieval ...``).

The catalog is a clustered simulation of L2-normalised track embeddings — genres, artists
inside genres, tracks around their artist — so that a track's nearest neighbours are
mostly the same artist's and genre's tracks, as a trained embedding would place them, and
not the meaningless neighbours of uniform noise on the sphere (where an ANN index's recall
says little). Queries are new tracks drawn from the same process (unseen by the index).

Printed from one run: queries/s of exact chunked search (:func:`mrlib.evaluate.exact_topk`)
and of the FAISS index, their ratio, the index build time, and FAISS's recall@k against the
exact top-k. Memory: the catalog is n × dim float32 (512 MB at 1M × 128), built in chunks;
an IVF-Flat or HNSW index holds one more copy (+ the graph's links for HNSW).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

# Runnable both as a script (python benchmarks/retrieval.py) and through mrlib.bench.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from mrlib.evaluate import build_faiss_index, exact_topk, recall_at_k  # noqa: E402


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


class ClusteredCatalog:
    """A seeded generative model of track embeddings: genre → artist → track.

    In ``dim`` dimensions, a genre centre is a random unit vector; an artist centre is its
    genre's centre plus Gaussian noise of total norm ≈ ``artist_spread``; a track is its
    artist's centre plus noise of norm ≈ ``track_spread``; every vector is L2-normalised.
    Artist sizes are uneven (log-normal popularity), as in real catalogs.
    """

    def __init__(self, dim: int = 128, n_genres: int = 64, n_artists: int = 20_000,
                 artist_spread: float = 0.8, track_spread: float = 0.6, seed: int = 0):
        rng = np.random.default_rng([seed, 0])
        self.dim, self.track_spread, self.seed = dim, track_spread, seed
        genres = _unit(rng.standard_normal((n_genres, dim)))
        genre_of = rng.integers(0, n_genres, size=n_artists)
        noise = rng.standard_normal((n_artists, dim)) * (artist_spread / math.sqrt(dim))
        self.artists = _unit(genres[genre_of] + noise).astype(np.float32)
        popularity = rng.lognormal(0.0, 1.0, size=n_artists)
        self.p_artist = popularity / popularity.sum()

    def sample(self, n: int, stream: int, chunk: int = 100_000, progress: bool = False) -> np.ndarray:
        """``n`` track embeddings (float32, unit rows); ``stream`` separates catalog and queries."""
        rng = np.random.default_rng([self.seed, 1, stream])
        out = np.empty((n, self.dim), dtype=np.float32)
        for s in tqdm(range(0, n, chunk), desc="simulating catalog", unit="chunk", disable=not progress):
            e = min(s + chunk, n)
            artist = rng.choice(self.artists.shape[0], size=e - s, p=self.p_artist)
            noise = rng.standard_normal((e - s, self.dim), dtype=np.float32)
            noise *= np.float32(self.track_spread / math.sqrt(self.dim))
            out[s:e] = _unit(self.artists[artist] + noise)
        return out


def run(n: int = 1_000_000, dim: int = 128, n_queries: int = 1000, k: int = 20, kind: str = "ivf",
        nlist: int | None = None, nprobe: tuple[int, ...] = (8, 16, 32, 64), M: int = 32,
        ef_construction: int = 80, ef_search: tuple[int, ...] = (32, 64, 128, 256),
        chunk_size: int | None = None, seed: int = 0, progress: bool = True) -> dict:
    """Run the benchmark and return its figures (printed by :func:`main`).

    One exact search and one index build; the index is then searched once per value of its
    search-time knob (``nprobe`` for IVF, ``ef_search`` for HNSW), each row with its
    queries/s, the ratio to exact search and recall@k, so the speed/recall trade-off is
    read off one run.
    """
    out: dict = {"n": n, "dim": dim, "queries": n_queries, "k": k, "kind": kind,
                 "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
                 "load_before": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}
    t0 = time.perf_counter()
    model = ClusteredCatalog(dim=dim, seed=seed)
    base = model.sample(n, stream=0, progress=progress)
    queries = model.sample(n_queries, stream=1)
    out["simulate_s"] = time.perf_counter() - t0

    # Exact search: the reference for both speed and recall.
    t0 = time.perf_counter()
    exact_d, exact_i = exact_topk(queries, base, k, chunk_size=chunk_size, progress=progress)
    out["exact_s"] = time.perf_counter() - t0
    out["exact_qps"] = n_queries / out["exact_s"]

    # How much structure the simulation has: squared distance to the 1st / k-th exact
    # neighbour vs to a random catalog track (uniform noise would give ~2 for all three).
    rand = base[np.random.default_rng(seed).integers(0, n, size=n_queries)]
    out["d2_nn1"] = float(exact_d[:, 0].mean())
    out["d2_nnk"] = float(exact_d[:, -1].mean())
    out["d2_random"] = float(((queries - rand) ** 2).sum(axis=1).mean())

    t0 = time.perf_counter()
    index = build_faiss_index(base, kind=kind, nlist=nlist, M=M,
                              ef_construction=ef_construction, seed=seed, progress=progress)
    out["build_s"] = time.perf_counter() - t0
    index.search(queries[: min(10, n_queries)], k)  # warm-up (thread pool, caches)
    rows = []
    for value in (nprobe if kind == "ivf" else ef_search):
        index.set_params(**({"nprobe": value} if kind == "ivf" else {"ef_search": value}))
        t0 = time.perf_counter()
        _, approx_i = index.search(queries, k)
        seconds = time.perf_counter() - t0
        per_query = recall_at_k(approx_i, exact_i, k, per_query=True)
        rows.append({**index.params(), "faiss_s": seconds, "faiss_qps": n_queries / seconds,
                     "speedup": n_queries / seconds / out["exact_qps"],
                     "recall": float(per_query.mean()), "recall_min": float(per_query.min()),
                     "frac_perfect": float((per_query == 1.0).mean())})
    out["faiss"] = rows
    out["load_after"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="catalog size")
    parser.add_argument("--dim", type=int, default=128, help="embedding dimension")
    parser.add_argument("--queries", type=int, default=1000, help="number of queries")
    parser.add_argument("--k", type=int, default=20, help="neighbours per query")
    parser.add_argument("--kind", choices=["ivf", "hnsw"], default="ivf", help="FAISS index")
    parser.add_argument("--nlist", type=int, default=None, help="IVF cells (default 4*sqrt(n), at most n/39)")
    parser.add_argument("--nprobe", type=int, nargs="+", default=[8, 16, 32, 64],
                        help="IVF cells scanned per query (one search per value)")
    parser.add_argument("--M", type=int, default=32, help="HNSW links per node")
    parser.add_argument("--ef-construction", type=int, default=80, help="HNSW build beam")
    parser.add_argument("--ef-search", type=int, nargs="+", default=[32, 64, 128, 256],
                        help="HNSW search beam (one search per value)")
    parser.add_argument("--chunk-size", type=int, default=None, help="queries per exact-search block")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    for name in ("n", "dim", "queries", "k"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1")
    if args.k > args.n:
        parser.error(f"--k={args.k} exceeds --n={args.n}")
    if args.json is not None and args.json.is_dir():     # found out before the searches
        parser.error(f"--json {args.json} is a folder; name the file to write")

    r = run(n=args.n, dim=args.dim, n_queries=args.queries, k=args.k, kind=args.kind, nlist=args.nlist,
            nprobe=args.nprobe, M=args.M, ef_construction=args.ef_construction, ef_search=args.ef_search,
            chunk_size=args.chunk_size, seed=args.seed, progress=not args.no_progress)
    k = args.k
    load = "" if r["load_before"] is None else f"; load average {r['load_before']:.1f} -> {r['load_after']:.1f}"
    print(f"\nretrieval benchmark: {r['n']:,} x {r['dim']}-d unit vectors (clustered), "
          f"{r['queries']:,} queries, top-{k}; {r['cpu_count']} CPUs, torch threads {r['torch_threads']}{load}")
    print(f"  simulated catalog in {r['simulate_s']:.1f} s; mean squared distance: "
          f"1st neighbour {r['d2_nn1']:.3f}, {k}th {r['d2_nnk']:.3f}, random track {r['d2_random']:.3f}")
    print(f"  exact (mrlib.evaluate.exact_topk): {r['exact_s']:.2f} s -> {r['exact_qps']:,.0f} queries/s")
    print(f"  faiss {r['kind']} built in {r['build_s']:.1f} s")
    print(f"  {'setting':>22} {'queries/s':>10} {'x exact':>8} {'recall@' + str(k):>10} {'worst':>6} {'perfect':>8}")
    for row in r["faiss"]:
        setting = ", ".join(f"{key}={val}" for key, val in row.items() if key in ("nprobe", "nlist", "ef_search"))
        print(f"  {setting:>22} {row['faiss_qps']:>10,.0f} {row['speedup']:>7.1f}x {row['recall']:>10.4f} "
              f"{row['recall_min']:>6.2f} {100 * row['frac_perfect']:>7.1f}%")
    if args.json is not None:
        args.json.write_text(json.dumps(r, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
