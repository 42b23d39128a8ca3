"""Triplet mining at paper scale: time and peak memory per strategy, against a plain-Python
reference implementation of the same definition (Prétet et al. 2020, §3.2).

    python benchmarks/mining.py [--n 14246] [--strategy all|neighbors|uniform|distance]
                                [--stream | --whole] [--n-pos 15] [--n-neg 250] [--n-jobs -1]
                                [--ref-anchors 8] [--source lowrank|oracle] [--seed 0]
    python -m mrlib.bench mining [same arguments]

For each strategy, a fresh child process mines the whole training set (all N tracks are
training tracks here) and reports its wall time, CPU time and peak resident memory
(``ru_maxrss`` of the child, which includes Python, numpy and torch themselves):

* ``whole``  — ``mrlib.mining.mine`` with the similarity held as an (N, N) float32 matrix
  and the full int32 (M, 3) array returned (53.4 M × 3 at paper scale: 0.64 GB);
* ``stream`` — ``mrlib.mining.iter_mine`` with a callable giving similarity rows chunk by
  chunk, so neither S nor the triplet array is ever held (the chunks are counted and
  checksummed, then dropped).

The reference is a plain-Python loop over anchors — ``sorted`` ranked list, then for each
positive a slice / ``random.sample`` / Efraimidis–Spirakis weighted sampling without
replacement over the suffix — timed on ``--ref-anchors`` anchors and extrapolated to all
anchors (its cost is linear in the number of anchors). Its neighbors output is compared
with the fast one on those anchors; for the random strategies both outputs are checked
valid (positives, ranks, no duplicate).

The similarity is synthetic but shaped like the oracle: ``--source lowrank`` (default)
gates a sharpened cosine of random 8-d track vectors by 12 random "genres" and quantises it
to 0.01 (a few near tracks, most below 0.5, ties and zeros); ``--source oracle`` uses
``mrlib.synth.sample_catalog`` tags through ``mrlib.similarity.oracle`` (slower to build).
Timings exclude building S; the streaming timing includes computing S rows on the fly,
reported separately as "S rows".
"""
from __future__ import annotations

import argparse
import heapq
import json
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

STRATEGIES = ("neighbors", "uniform", "distance")


# --------------------------------------------------------------------------------------
# The synthetic similarity
# --------------------------------------------------------------------------------------
class LowRankS:
    """Callable ``S(rows) -> float32 (len(rows), N)``: a gated, sharpened, quantised cosine."""

    def __init__(self, n: int, seed: int = 0, dims: int = 8, genres: int = 12):
        rng = np.random.default_rng(seed)
        self.n = n
        self.genre = rng.integers(genres, size=n)
        F = rng.standard_normal((n, dims)).astype(np.float32)
        self.F = F / np.linalg.norm(F, axis=1, keepdims=True)

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows)
        s = (0.5 + 0.5 * (self.F[rows] @ self.F.T)) ** 3
        s *= np.where(self.genre[rows][:, None] == self.genre[None, :], 1.0, 0.25).astype(np.float32)
        s = np.round(s, 2).astype(np.float32)      # ties and exact zeros, like tag-based S
        s[np.arange(rows.size), rows] = 1.0
        return s


class OracleS:
    """Callable S rows from synthetic tags through ``mrlib.similarity.oracle``."""

    def __init__(self, n: int, seed: int = 0):
        from mrlib import similarity, synth

        cat = synth.sample_catalog(n, seed=seed)
        self.tags, self.vocab, self.n = cat.tags, cat.vocabulary, n
        self._oracle = similarity.oracle

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        return self._oracle(self.tags[np.asarray(rows)], self.tags, categories=self.vocab)


def make_source(name: str, n: int, seed: int):
    if name == "lowrank":
        return LowRankS(n, seed)
    if name == "oracle":
        return OracleS(n, seed)
    raise ValueError(f"unknown --source {name!r}; expected 'lowrank' or 'oracle'")


def full_matrix(S_fn, n: int, block: int = 1024) -> np.ndarray:
    S = np.empty((n, n), dtype=np.float32)
    for s in range(0, n, block):
        S[s:s + block] = S_fn(np.arange(s, min(s + block, n)))
    return S


def checksum(T: np.ndarray) -> int:
    """Order-sensitive 64-bit checksum of a triplet array (wrap-around arithmetic)."""
    T = T.astype(np.uint64)
    w = np.arange(1, T.shape[0] + 1, dtype=np.uint64)
    mixed = (T[:, 0] * np.uint64(1_000_003) + T[:, 1]) * np.uint64(1_000_033) + T[:, 2]
    with np.errstate(over="ignore"):
        return int(np.sum(mixed * (w * np.uint64(2654435761)), dtype=np.uint64))


# --------------------------------------------------------------------------------------
# The plain-Python reference
# --------------------------------------------------------------------------------------
def reference_mine(S_fn, n: int, strategy: str, anchors, n_pos: int, n_neg: int, seed: int):
    """The definition, written plainly: one sort per anchor, one pass per (anchor, positive)."""
    rnd = random.Random(seed)
    out = []
    train = range(n)
    for t in anchors:
        row = S_fn(np.array([t]))[0].tolist()
        ranked = sorted((x for x in train if x != t), key=lambda x: (-row[x], x))
        for i in range(1, min(n_pos, len(ranked)) + 1):
            p = ranked[i - 1]
            suffix = ranked[i:]
            k = min(n_neg, len(suffix))
            if strategy == "neighbors":
                negs = suffix[:k]
            elif strategy == "uniform":
                negs = rnd.sample(suffix, k)
            else:
                # Efraimidis–Spirakis: the k largest u^(1/w) are a weighted sample without
                # replacement; zero weights get keys below every positive one
                keys = [rnd.random() ** (1.0 / row[x]) if row[x] > 0 else -rnd.random() for x in suffix]
                negs = [suffix[j] for j in heapq.nlargest(k, range(len(suffix)), key=keys.__getitem__)]
            out.extend((t, p, x) for x in negs)
    return out


# --------------------------------------------------------------------------------------
# One measurement in a fresh process
# --------------------------------------------------------------------------------------
def _child(cfg: dict) -> dict:
    from mrlib import mining

    S_fn = make_source(cfg["source"], cfg["n"], cfg["seed"])
    train = np.arange(cfg["n"])
    kw = dict(strategy=cfg["strategy"], n_pos=cfg["n_pos"], n_neg=cfg["n_neg"], seed=cfg["seed"],
              progress=False, n_jobs=cfg["n_jobs"])
    res = {"strategy": cfg["strategy"], "mode": cfg["mode"]}
    if cfg["mode"] == "whole":
        t0 = time.perf_counter()
        S = full_matrix(S_fn, cfg["n"])
        res["S_build_s"] = time.perf_counter() - t0
        res["rss_before_mb"] = _rss_mb()
        w0, c0 = time.perf_counter(), time.process_time()
        T = mining.mine(None, train, S=S, **kw)
        res["wall_s"], res["cpu_s"] = time.perf_counter() - w0, time.process_time() - c0
        # the high-water mark now, before the checksum's temporaries
        res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        res["M"], res["checksum"] = int(T.shape[0]), checksum(T)
        res["head"] = T[:cfg["ref_rows"]].tolist()
    else:
        # time the S rows alone, the same chunks as the mining will ask for
        w0 = time.perf_counter()
        for s in range(0, cfg["n"], 256):
            S_fn(np.arange(s, min(s + 256, cfg["n"])))
        res["S_rows_s"] = time.perf_counter() - w0
        res["rss_before_mb"] = _rss_mb()
        M, chunks = 0, []
        w0, c0 = time.perf_counter(), time.process_time()
        for chunk in mining.iter_mine(None, train, S=S_fn, **kw):
            M += chunk.shape[0]
            chunks.append(checksum_part(chunk, M))
        res["wall_s"], res["cpu_s"] = time.perf_counter() - w0, time.process_time() - c0
        res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        res["M"] = M
        with np.errstate(over="ignore"):
            res["checksum"] = int(np.sum(np.array(chunks, dtype=np.uint64), dtype=np.uint64))
    return res


def checksum_part(chunk: np.ndarray, end: int) -> int:
    """This chunk's share of :func:`checksum` (row weights continue across chunks)."""
    T = chunk.astype(np.uint64)
    w = np.arange(end - chunk.shape[0] + 1, end + 1, dtype=np.uint64)
    mixed = (T[:, 0] * np.uint64(1_000_003) + T[:, 1]) * np.uint64(1_000_033) + T[:, 2]
    with np.errstate(over="ignore"):
        return int(np.sum(mixed * (w * np.uint64(2654435761)), dtype=np.uint64))


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def _run_child(cfg: dict) -> dict:
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", json.dumps(cfg)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"child failed ({cfg['strategy']}, {cfg['mode']}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------
def _check_reference(strategy, fast_rows, ref_rows, S_fn, n, n_pos) -> str:
    fast = np.asarray(fast_rows, dtype=np.int64).reshape(-1, 3)
    ref = np.asarray(ref_rows, dtype=np.int64).reshape(-1, 3)
    if fast.shape != ref.shape:
        return f"MISMATCH (shapes {fast.shape} vs {ref.shape})"
    if strategy == "neighbors":
        return "identical" if np.array_equal(fast, ref) else "MISMATCH"
    if not np.array_equal(fast[:, :2], ref[:, :2]):
        return "MISMATCH (positives)"
    for t in np.unique(fast[:, 0]):
        row = S_fn(np.array([t]))[0].tolist()
        ranked = sorted((x for x in range(n) if x != t), key=lambda x: (-row[x], x))
        rank = {x: r + 1 for r, x in enumerate(ranked)}
        sel = fast[fast[:, 0] == t]
        if any(rank[p] > n_pos or rank[q] <= rank[p] for _, p, q in sel):
            return "INVALID"
        if len({(p, q) for _, p, q in sel}) != len(sel):
            return "INVALID (duplicates)"
    return "both valid"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=14246, help="training tracks (paper: 14,246)")
    ap.add_argument("--strategy", default="all", choices=("all",) + STRATEGIES)
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--stream", action="store_true", help="only the streaming form")
    mode.add_argument("--whole", action="store_true", help="only the whole-array form")
    ap.add_argument("--n-pos", type=int, default=15)
    ap.add_argument("--n-neg", type=int, default=250)
    ap.add_argument("--n-jobs", type=int, default=-1, help="mining threads (-1: every core)")
    ap.add_argument("--ref-anchors", type=int, default=32,
                    help="anchors the plain-Python reference is timed on (then extrapolated)")
    ap.add_argument("--repeats", type=int, default=3,
                    help="times each measurement (reference, fresh child) is taken; the fastest "
                         "counts, timeit's rule: slower runs measure the machine's noise")
    ap.add_argument("--source", default="lowrank", choices=("lowrank", "oracle"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child is not None:
        print(json.dumps(_child(json.loads(args.child))))
        return 0
    if args.n < 2 or args.n_pos < 1 or args.n_neg < 1 or args.ref_anchors < 1 or args.repeats < 1:
        ap.error("--n must be >= 2; --n-pos, --n-neg, --ref-anchors and --repeats >= 1")
    if args.n_jobs < 1 and args.n_jobs != -1:      # the child processes would fail one by one
        ap.error(f"--n-jobs must be >= 1, or -1 for every core; got {args.n_jobs}")
    if args.json and Path(args.json).is_dir():     # found out before the minutes of mining
        ap.error(f"--json {args.json} is a folder; name the file to write")

    from mrlib import mining

    strategies = STRATEGIES if args.strategy == "all" else (args.strategy,)
    modes = ("stream",) if args.stream else ("whole",) if args.whole else ("whole", "stream")
    n_jobs = os.cpu_count() if args.n_jobs == -1 else args.n_jobs
    M = mining.n_triplets(args.n, args.n_pos, args.n_neg)
    per_anchor = M // args.n
    n_ref = min(args.ref_anchors, args.n)
    print(f"Triplet mining: N = {args.n:,} training tracks, Np = {args.n_pos}, Nn = {args.n_neg} "
          f"-> M = {M:,} triplets; S: {args.source}; {n_jobs} thread(s) on {os.cpu_count()} core(s)")
    print(f"reference: plain Python on {n_ref} anchors, extrapolated x{args.n / n_ref:,.0f}; "
          f"every figure is the fastest of {args.repeats} run(s)\n")

    S_fn = make_source(args.source, args.n, args.seed)
    header = (f"{'strategy':<10} {'form':<7} {'wall s':>8} {'cpu s':>8} {'peak RSS':>9} {'S rows s':>9} "
              f"{'ref wall s':>11} {'speed-up':>9} {'(cpu)':>7} {'vs ref':>12}")
    print(header)
    print("-" * len(header))
    results = []
    for strategy in strategies:
        ref_wall = ref_cpu = float("inf")
        for _ in range(args.repeats):
            w0, c0 = time.perf_counter(), time.process_time()
            ref_rows = reference_mine(S_fn, args.n, strategy, range(n_ref), args.n_pos, args.n_neg,
                                      args.seed)
            ref_wall = min(ref_wall, (time.perf_counter() - w0) * args.n / n_ref)
            ref_cpu = min(ref_cpu, (time.process_time() - c0) * args.n / n_ref)
        checksums = {}
        for form in modes:
            cfg = dict(n=args.n, strategy=strategy, mode=form, n_pos=args.n_pos, n_neg=args.n_neg,
                       n_jobs=n_jobs, seed=args.seed, source=args.source, ref_rows=n_ref * per_anchor)
            runs = [_run_child(cfg) for _ in range(args.repeats)]
            r = min(runs, key=lambda x: x["wall_s"])
            if len({x["checksum"] for x in runs}) != 1:
                raise RuntimeError(f"{strategy}/{form}: repeated runs gave different triplets")
            checksums[form] = r["checksum"]
            agree = _check_reference(strategy, r["head"], ref_rows, S_fn, args.n, args.n_pos) \
                if form == "whole" else "-"
            r.update(ref_wall_s=ref_wall, ref_cpu_s=ref_cpu, speedup_wall=ref_wall / r["wall_s"],
                     speedup_cpu=ref_cpu / r["cpu_s"], reference_check=agree)
            r.pop("head", None)
            if r["M"] != M:
                raise RuntimeError(f"{strategy}/{form}: mined {r['M']} triplets, expected {M}")
            results.append(r)
            s_rows = f"{r['S_rows_s']:9.1f}" if "S_rows_s" in r else f"{'-':>9}"
            print(f"{strategy:<10} {form:<7} {r['wall_s']:8.1f} {r['cpu_s']:8.1f} "
                  f"{r['peak_rss_mb'] / 1024:7.2f} GiB {s_rows} {ref_wall:11.0f} "
                  f"{r['speedup_wall']:8.0f}x {r['speedup_cpu']:6.0f}x {agree:>12}", flush=True)
        if len(checksums) == 2:
            same = checksums["whole"] == checksums["stream"]
            print(f"{'':<10} whole and stream outputs {'identical' if same else 'DIFFER'} (checksum)")
    print("\nwall/cpu s: mining only (S held as a matrix for 'whole'; for 'stream' S rows are computed "
          "on the fly, 'S rows s' of which). peak RSS: the child process, Python + numpy + torch included. "
          "speed-up: extrapolated reference wall time / mining wall time; (cpu): the same with CPU "
          "times, which a busy machine distorts less.")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "M": M, "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
