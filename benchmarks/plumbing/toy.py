"""Shared toy pieces for the three trainers: data, model, a seeded resumable sampler, RNG capture.

Mirrors what mrlib.train does by hand: a sampler with (seed, epoch, position) state and rank
shares, a numpy Generator for patch choice (mrlib's patch_rng), and python/numpy/torch global RNGs
all used in every step, so that exact resume needs every one of them.
"""
import argparse
import json
import os
import random

import numpy as np
import torch
from torch import nn

N_SAMPLES, BATCH = 192, 12          # 16 batches per epoch on one process, 8 per rank on two


def make_data():
    g = torch.Generator().manual_seed(1234)
    X = torch.randn(N_SAMPLES, 1, 24, 32, generator=g)
    Y = torch.randint(0, 10, (N_SAMPLES,), generator=g)
    return X, Y


def make_model() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Dropout(0.2), nn.Linear(16, 10))


class EpochSampler:
    """Seeded epochs; position inside the epoch; contiguous rank shares (like mrlib.mining)."""

    def __init__(self, n, batch, seed, rank=0, world_size=1):
        self.n, self.batch, self.seed, self.rank, self.world_size = n, batch, seed, rank, world_size
        self.epoch, self.position = 0, 0

    def __len__(self):
        return (self.n // self.batch) // self.world_size

    def __iter__(self):
        perm = np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
        nb = len(self)
        off = self.rank * nb
        while self.position < nb:
            b = off + self.position
            self.position += 1            # counted before it is yielded (as in mrlib)
            yield perm[b * self.batch:(b + 1) * self.batch]
        self.epoch, self.position = self.epoch + 1, 0

    def state_dict(self):
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, s):
        self.epoch, self.position = int(s["epoch"]), int(s["position"])


def stream(sampler):
    while True:
        yield from sampler


def make_batch(X, Y, idx, patch_rng):
    """Uses all four RNGs: numpy Generator, python random, numpy global, torch global."""
    t = torch.from_numpy(idx)
    x = X[t].clone()
    shifts = patch_rng.integers(0, 32, size=len(idx))
    x = torch.stack([torch.roll(xi, int(s), dims=-1) for xi, s in zip(x, shifts)])
    if random.random() < 0.5:
        x = x.flip(-2)
    x = x * float(np.random.uniform(0.9, 1.1))
    x = x + 0.05 * torch.randn_like(x)
    return x, Y[t]


def capture_rng(patch_rng) -> dict:
    """JSON strings + a tensor, so that torch.load(weights_only=True) reads it (as mrlib does)."""
    py = random.getstate()
    npst = np.random.get_state()
    return {"python": json.dumps([py[0], list(py[1]), py[2]]),
            "numpy": json.dumps([npst[0], npst[1].tolist(), int(npst[2]), int(npst[3]), float(npst[4])]),
            "patches": json.dumps(patch_rng.bit_generator.state),
            "torch": torch.get_rng_state()}


def restore_rng(state: dict, patch_rng) -> None:
    v, internal, gauss = json.loads(state["python"])
    random.setstate((v, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = json.loads(state["numpy"])
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    patch_rng.bit_generator.state = json.loads(state["patches"])
    torch.set_rng_state(state["torch"])


class PatchRNG:
    """A numpy Generator with state_dict/load_state_dict (for libraries that take 'stateful' objects)."""

    def __init__(self, rng):
        self.rng = rng

    def state_dict(self):
        return {"state": json.dumps(self.rng.bit_generator.state)}

    def load_state_dict(self, s):
        self.rng.bit_generator.state = json.loads(s["state"])


class Counter:
    def __init__(self):
        self.step = 0

    def state_dict(self):
        return {"step": self.step}

    def load_state_dict(self, s):
        self.step = int(s["step"])


def gather_object(obj, world_size):
    if world_size == 1:
        return [obj]
    out = [None] * world_size
    torch.distributed.all_gather_object(out, obj)
    return out


def parser():
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=24)
    p.add_argument("--stop-after", type=int, default=None, help="checkpoint after this step, exit")
    p.add_argument("--ckpt", default=None, help="checkpoint path (file or folder)")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--out", required=True)
    p.add_argument("--amp", choices=["no", "bf16", "fp16"], default="no")
    p.add_argument("--naive", action="store_true", help="accelerate: register the per-rank patch RNG as is")
    return p


def write_final(path, model: nn.Module, losses, world_size, extra=None):
    """Rank 0 writes weights, buffers, last gradients and losses; every rank checks equality."""
    params = torch.cat([p.detach().flatten() for p in model.parameters()])
    everyone = gather_object(params, world_size)
    ranks_equal = all(torch.equal(everyone[0], e) for e in everyone)
    rank = torch.distributed.get_rank() if world_size > 1 else 0
    if rank == 0:
        torch.save({"state": {k: v.detach().clone() for k, v in model.state_dict().items()},
                    "grads": {n: p.grad.detach().clone() for n, p in model.named_parameters()
                              if p.grad is not None},
                    "losses": losses, "world_size": world_size, "ranks_equal": ranks_equal,
                    **(extra or {})}, path)
        print(f"[{os.path.basename(path)}] steps done, last loss {losses[-1] if losses else None}, "
              f"ranks_equal={ranks_equal}", flush=True)
