"""Reference: plain PyTorch. python train_plain.py ... or torchrun --nproc_per_node=2 train_plain.py ..."""
import os
import random
import sys

import numpy as np
import torch
import torch.nn.functional as F

import toy

args = toy.parser().parse_args()
ws, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
if ws > 1:
    torch.distributed.init_process_group("gloo")
torch.use_deterministic_algorithms(True)
X, Y = toy.make_data()

torch.manual_seed(0)
model = toy.make_model()
net = torch.nn.parallel.DistributedDataParallel(model) if ws > 1 else model
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.amp)

seed = 1000 + rank
random.seed(seed); np.random.seed(seed); torch.manual_seed(seed)
patch_rng = np.random.default_rng([0, rank])
sampler = toy.EpochSampler(toy.N_SAMPLES, toy.BATCH, seed=0, rank=rank, world_size=ws)
step = 0
if args.resume:
    ck = torch.load(args.ckpt, weights_only=True)
    model.load_state_dict(ck["model"])
    opt.load_state_dict(ck["optimizer"])
    sampler.load_state_dict(ck["sampler"])
    if not os.environ.get("SKIP_RNG"):  # negative control: the test must notice
        toy.restore_rng(ck["rng"][rank], patch_rng)
    step = ck["step"]

losses, batches = [], toy.stream(sampler)
while step < args.steps:
    x, y = toy.make_batch(X, Y, next(batches), patch_rng)
    with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
        loss = F.cross_entropy(net(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    step += 1
    losses.append(float(loss.detach()))
    if step == args.stop_after:
        rngs = toy.gather_object(toy.capture_rng(patch_rng), ws)
        if rank == 0:
            torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                        "sampler": sampler.state_dict(), "rng": rngs, "step": step}, args.ckpt)
        if ws > 1:
            torch.distributed.barrier()
            torch.distributed.destroy_process_group()
        sys.exit(0)

toy.write_final(args.out, model, losses, ws)
if ws > 1:
    torch.distributed.destroy_process_group()
