"""CQT extraction speed, in × real time, against a plain single-thread ``librosa.cqt`` loop.

``python benchmarks/cqt.py [--n-tracks 24] [--duration 30] [--n-jobs 2] [--paper] [--no-torch]``
(or ``python -m mrlib.bench cqt ...``). Everything is measured in the same run on the same files:

* reference — read each file with soundfile, ``librosa.cqt`` + log, one thread, no cache;
* ``mrlib.features.extract`` — the same work plus the robust loader and the float16 cache,
  in parallel over tracks, on a cold cache after the worker processes are warm (a worker's first
  task pays about 3–7 s of imports: librosa loads scipy.signal lazily);
* ``extract`` again — every track served from the cache;
* ``cqt_torch`` — the torch path one track at a time on CPU (and on CUDA when available), after
  the one-off measurement of librosa's operator.

Figures are ratios within one run; they are not timed assertions. Wall time is what a user
waits; CPU time (this process only, so not shown for worker processes) tells the per-core cost
when the machine is shared and wall times are inflated by other load.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np


def _music(duration: float, sr: int, seed: int) -> np.ndarray:
    """Deterministic music-like test audio: harmonic notes over a bass drone, with noise."""
    rng = np.random.default_rng(seed)
    n = int(duration * sr)
    t = np.arange(n) / sr
    y = 0.01 * rng.standard_normal(n)
    note = int(0.25 * sr)
    for start in range(0, n, note):
        seg = slice(start, min(n, start + note))
        f0 = 110 * 2 ** (rng.integers(0, 24) / 12)
        env = np.exp(-8 * (t[seg] - t[start]))
        for h in range(1, 6):
            y[seg] += 0.1 / h * env * np.sin(2 * np.pi * f0 * h * t[seg])
    y += 0.1 * np.sin(2 * np.pi * 55 * t)
    return (0.5 * y / np.abs(y).max()).astype(np.float32)


def _catalog(root: Path, n: int, duration: float, sr: int, prefix: str):
    import pandas as pd
    import soundfile as sf

    (root / "audio").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        path = f"audio/{prefix}{i:04d}.flac"
        sf.write(str(root / path), _music(duration, sr, seed=i), sr, subtype="PCM_16")
        rows.append((f"{prefix}{i:04d}", path))
    return types.SimpleNamespace(root=root, tracks=pd.DataFrame(rows, columns=["track_id", "path"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/cqt.py", description=__doc__.splitlines()[0])
    parser.add_argument("--n-tracks", type=int, default=24)
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per track")
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--paper", action="store_true", help="44.1 kHz, hop 1024 (FeatureConfig.paper())")
    parser.add_argument("--no-torch", action="store_true", help="skip the torch CQT")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.n_tracks < 1 or args.duration <= 0:
        parser.error("--n-tracks must be >= 1 and --duration > 0")

    import librosa
    import soundfile as sf
    from threadpoolctl import threadpool_limits

    from mrlib import features as F

    config = F.FeatureConfig.paper() if args.paper else F.FeatureConfig()
    tmp = Path(tempfile.mkdtemp(prefix="mrlib-bench-cqt-"))
    rows: list[tuple[str, float, float | None]] = []  # (name, wall s, this-process CPU s)
    try:
        cat = _catalog(tmp / "bench", args.n_tracks, args.duration, config.sr, "t")
        warm = _catalog(tmp / "warm", max(2, 2 * args.n_jobs), min(args.duration, 10.0), config.sr, "w")
        audio_s = args.n_tracks * args.duration
        files = [cat.root / p for p in cat.tracks["path"]]
        print(f"CQT extraction: {args.n_tracks} tracks x {args.duration:g} s = {audio_s:g} s of audio, "
              f"{config.sr} Hz, hop {config.hop_length}, {config.n_bins} bins, librosa {librosa.__version__}")

        def reference(path):
            y, _ = sf.read(str(path), dtype="float32")
            C = librosa.cqt(y, sr=config.sr, hop_length=config.hop_length, fmin=config.fmin,
                            n_bins=config.n_bins, bins_per_octave=config.bins_per_octave)
            return 10 * np.log10(np.maximum(np.abs(C) ** 2, config.log_floor))

        def timed(name, fn):
            w0, c0 = time.perf_counter(), time.process_time()
            out = fn()
            rows.append((name, time.perf_counter() - w0, time.process_time() - c0))
            return out

        with threadpool_limits(1):
            reference(files[0])  # warm-up: imports, filter bases
            timed("reference: librosa.cqt loop, 1 thread", lambda: [reference(p) for p in files])
            timed("extract(), n_jobs=1, in this process",
                  lambda: F.extract(cat, config, n_jobs=1, progress=False, cache_dir=tmp / "c1"))

        F.extract(warm, config, n_jobs=args.n_jobs, progress=False, verbose=False)  # warm workers
        fs = timed(f"extract(), n_jobs={args.n_jobs}, cold cache",
                   lambda: F.extract(cat, config, n_jobs=args.n_jobs, progress=False))
        rows[-1] = rows[-1][:2] + (None,)  # the work ran in the workers
        if fs.report.count:
            print(fs.report)
        again = timed("extract(), every track cached",
                      lambda: F.extract(cat, config, n_jobs=args.n_jobs, progress=False))
        assert again.n_computed == 0

        if not args.no_torch:
            import torch

            devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
            for device in devices:
                y0, _ = sf.read(str(files[0]), dtype="float32")
                t0 = time.perf_counter()
                F.cqt_torch(y0, config, device)  # measures librosa's operator once per config
                setup = time.perf_counter() - t0
                sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
                sync()

                def run_torch():
                    for path in files:
                        y, _ = sf.read(str(path), dtype="float32")
                        F.cqt_torch(y, config, device).cpu()
                    sync()

                timed(f"cqt_torch, {device}, one track at a time", run_torch)
                print(f"(cqt_torch one-off set-up on {device}: {setup:.1f} s)")

        ref = rows[0][1]
        print(f"{'':42s}{'wall s':>8s}{'x real time':>13s}{'vs reference':>14s}"
              f"{'CPU s':>8s}{'x real time/CPU s':>19s}")
        for name, wall, cpu in rows:
            cpu_cols = f"{cpu:8.2f}{audio_s / cpu:19.0f}" if cpu else f"{'-':>8s}{'-':>19s}"
            print(f"{name:42s}{wall:8.2f}{audio_s / wall:13.0f}{ref / wall:13.2f}x{cpu_cols}")
        try:
            print(f"load average during the run: {' '.join(f'{x:.1f}' for x in os.getloadavg())} "
                  f"on {os.cpu_count()} cores")
        except OSError:
            pass
    finally:
        if args.keep:
            print(f"files kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
