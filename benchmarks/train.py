"""Training throughput: patches/s per system, the data-wait share, and the no-data ceiling.

``python -m mrlib.bench train [--steps 10] [--paper-steps 2] [--systems tl at ...] [--device auto]``

For each system, at the notebook's defaults (06_training.ipynb: width 0.125, 96 x 64 patches)
and at the paper's scale (width 1.0, 96 x 512 patches; only a few steps on a CPU), it times
training steps through the trainer's own pipeline (sampler, patch extraction in the prefetch
thread, host-to-device copy, forward, backward, Adam) and prints patches/s and the share of
step time spent waiting for data. The reference, measured in the same run, is the objective
alone on one pre-made batch already on the device: the ceiling with no data wait. The ratio
pipeline / ceiling is the figure to read; absolute numbers depend on the machine.

Nothing is asserted: this is a benchmark, not a test.
"""
from __future__ import annotations

import argparse
import time

# The notebook's defaults (keep in step with the parameters cell of 06_training.ipynb).
LESSON = dict(width=0.125, patch_len=64, negatives_per_batch=42, batch_tracks=64, matchnet_patches=2)
PAPER = dict(width=1.0, patch_len=512, negatives_per_batch=42, batch_tracks=126, matchnet_patches=2)
MINING = {"at": "distance", "tl": "distance", "tl_autopool": "distance", "matchnet": "distance"}


def main(argv: list[str] | None = None) -> int:
    from mrlib import train as T

    ap = argparse.ArgumentParser(prog="python -m mrlib.bench train", description=__doc__.split("\n")[0])
    ap.add_argument("--systems", nargs="+", default=list(T.SYSTEMS), choices=list(T.SYSTEMS))
    ap.add_argument("--steps", type=int, default=10, help="timed steps at the notebook's scale")
    ap.add_argument("--paper-steps", type=int, default=None,
                    help="timed steps at the paper's scale (default: 2 on CPU, 20 on a GPU; 0 skips)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--n-tracks", type=int, default=200, help="synthetic catalog size")
    ap.add_argument("--prefetch", type=int, default=2)
    args = ap.parse_args(argv)

    device = T.pick_device(args.device)
    paper_steps = args.paper_steps if args.paper_steps is not None else (20 if device.type == "cuda" else 2)
    base = T.TrainConfig(n_tracks=args.n_tracks, device=args.device, prefetch=args.prefetch, seed=0)
    t0 = time.perf_counter()
    data = T.prepare_data(base, progress=False)
    print(f"device: {device}  catalog: {data.name} ({len(data)} tracks, features in "
          f"{time.perf_counter() - t0:.1f} s)  torch threads: {__import__('torch').get_num_threads()}")
    header = (f"{'system':<12} {'scale':<7} {'patches/batch':>13} {'pipeline p/s':>13} "
              f"{'data wait':>9} {'ceiling p/s':>12} {'ratio':>6}")
    print(header)
    print("-" * len(header))
    rows = []
    for system in args.systems:
        for scale, sizes, steps in (("lesson", LESSON, args.steps), ("paper", PAPER, paper_steps)):
            if steps <= 0:
                continue
            cfg = base.replace(system=system, mining=MINING[system], **sizes)
            warm = args.warmup if scale == "lesson" or device.type != "cpu" else 1
            r = T.measure_throughput(cfg, steps=steps, warmup=warm, data=data)
            rows.append((system, scale, r))
            print(f"{system:<12} {scale:<7} {r['patches_per_batch']:>13d} {r['patches_per_s']:>13.1f} "
                  f"{100 * r['data_wait_share']:>8.1f}% {r['ceiling_patches_per_s']:>12.1f} "
                  f"{r['ratio']:>6.2f}", flush=True)
    lesson = [r for s, sc, r in rows if sc == "lesson"]
    if lesson:
        worst = max(r["data_wait_share"] for r in lesson)
        print(f"\nlargest data-wait share at the notebook's scale: {100 * worst:.1f}% of step time")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
