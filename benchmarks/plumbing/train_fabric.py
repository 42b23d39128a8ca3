"""Lightning Fabric. python train_fabric.py ... or torchrun --nproc_per_node=2 train_fabric.py ..."""
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from lightning.fabric import Fabric

import toy

args = toy.parser().parse_args()
ws = int(os.environ.get("WORLD_SIZE", "1"))
precision = {"no": "32-true", "bf16": "bf16-mixed", "fp16": "16-mixed"}[args.amp]
fabric = Fabric(accelerator="cpu", devices=int(os.environ.get("LOCAL_WORLD_SIZE", "1")),
                strategy="ddp" if ws > 1 else "auto", precision=precision)
fabric.launch()                      # under torchrun: joins the process group (gloo on CPU)
torch.use_deterministic_algorithms(True)
X, Y = toy.make_data()

torch.manual_seed(0)
model = toy.make_model()
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
model, opt = fabric.setup(model, opt)             # DDP wrap + autocast in forward

fabric.seed_everything(1000 + fabric.global_rank, verbose=False)
rank = fabric.global_rank
patch_rng = np.random.default_rng([0, rank])
sampler = toy.EpochSampler(toy.N_SAMPLES, toy.BATCH, seed=0, rank=rank, world_size=fabric.world_size)
# Fabric calls state_dict()/load_state_dict() on modules, optimisers and any object that has them
state = {"model": model, "optimizer": opt, "sampler": sampler, "step": 0, "rng": None}
if args.resume:
    fabric.load(args.ckpt, state)                 # in place; plain values come back in `state`
    toy.restore_rng(state["rng"][rank], patch_rng)  # Fabric saves no RNG state itself

losses, batches = [], toy.stream(sampler)
while state["step"] < args.steps:
    x, y = toy.make_batch(X, Y, next(batches), patch_rng)
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad(set_to_none=True)
    fabric.backward(loss)
    opt.step()
    state["step"] += 1
    losses.append(float(loss.detach()))
    if state["step"] == args.stop_after:
        # per-rank RNG: Fabric's ddp strategy saves on rank 0 only, so gather by hand
        state["rng"] = toy.gather_object(toy.capture_rng(patch_rng), fabric.world_size)
        fabric.save(args.ckpt, state)
        sys.exit(0)

toy.write_final(args.out, model.module if hasattr(model, "module") else model, losses, fabric.world_size)
