"""Synthetic-catalog rendering speed, in × real time (the target: ≥ 200× on one core).

``python benchmarks/synth.py [--n-tracks 200] [--duration 30] [--sr 22050]``
(or ``python -m mrlib.bench synth``). Renders tracks of the default catalog one after another
in this process (one core) and reports CPU time per track as × real time — mean, 95th
percentile and worst — plus the 16-bit FLAC write cost. The reference in the same run is the
cost of simply writing the same number of samples (the floor any generator pays).
"""
from __future__ import annotations

import argparse
import io
import time

import numpy as np
import soundfile as sf

from mrlib import synth


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/synth.py", description=__doc__)
    parser.add_argument("--n-tracks", type=int, default=200)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--sr", type=int, default=22050)
    args = parser.parse_args(argv)
    if args.n_tracks < 1 or args.duration <= 0:
        parser.error("--n-tracks must be ≥ 1 and --duration > 0")

    attrs, _, _ = synth.sample_catalog(args.n_tracks, 0)
    synth.render_catalog_track(attrs[0], 0, args.sr, args.duration)  # warm caches
    render, write = [], []
    for a in attrs:
        c0 = time.process_time()
        y = synth.render_catalog_track(a, 0, args.sr, args.duration)
        c1 = time.process_time()
        sf.write(io.BytesIO(), y, args.sr, subtype="PCM_16", format="FLAC")
        render.append(c1 - c0)
        write.append(time.process_time() - c1)
    render, write = np.array(render), np.array(write)
    rt = args.duration
    print(f"{args.n_tracks} tracks × {args.duration:g} s at {args.sr} Hz, one core (CPU time)")
    print(f"  render   mean {render.mean() * 1e3:7.1f} ms/track  → {rt / render.mean():6.0f}× real time")
    print(f"           p95  {np.percentile(render, 95) * 1e3:7.1f} ms/track  → "
          f"{rt / np.percentile(render, 95):6.0f}× real time")
    print(f"           max  {render.max() * 1e3:7.1f} ms/track  → {rt / render.max():6.0f}× real time")
    print(f"  FLAC write mean {write.mean() * 1e3:5.1f} ms/track (reference: writing the samples)")
    print(f"  render / write cost ratio: {render.mean() / write.mean():.1f}")
    print(f"  tracks under the 200× bar ({rt / 200 * 1e3:.0f} ms): {(render <= rt / 200).mean():.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
