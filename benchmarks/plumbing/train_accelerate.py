"""Hugging Face Accelerate. python train_accelerate.py ... or torchrun --nproc_per_node=2 train_accelerate.py ..."""
import sys

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import set_seed

import toy

args = toy.parser().parse_args()
acc = Accelerator(cpu=True, mixed_precision=args.amp)   # reads torchrun's env; gloo on CPU
torch.use_deterministic_algorithms(True)
X, Y = toy.make_data()

torch.manual_seed(0)
model = toy.make_model()
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
model, opt = acc.prepare(model, opt)              # DDP wrap + autocast in forward

set_seed(1000, device_specific=True)              # 1000 + process_index: python, numpy, torch
rank, ws = acc.process_index, acc.num_processes
patch_rng = np.random.default_rng([0, rank])
sampler = toy.EpochSampler(toy.N_SAMPLES, toy.BATCH, seed=0, rank=rank, world_size=ws)
counter = toy.Counter()


class PerRankPatchRNG(toy.PatchRNG):
    """Custom objects are written by the main process only: gather every rank's state."""

    def state_dict(self):
        return {"ranks": toy.gather_object(super().state_dict(), ws)}

    def load_state_dict(self, s):
        super().load_state_dict(s["ranks"][rank])


patch = toy.PatchRNG(patch_rng) if args.naive else PerRankPatchRNG(patch_rng)
acc.register_for_checkpointing(sampler, patch, counter)
if args.resume:
    acc.load_state(args.ckpt)   # model, optimizer, scaler, RNG (random_states_<rank>.pkl), custom objects

losses, batches = [], toy.stream(sampler)
while counter.step < args.steps:
    x, y = toy.make_batch(X, Y, next(batches), patch_rng)
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad(set_to_none=True)
    acc.backward(loss)
    opt.step()
    counter.step += 1
    losses.append(float(loss.detach()))
    if counter.step == args.stop_after:
        acc.save_state(args.ckpt)
        acc.wait_for_everyone()
        acc.end_training()
        sys.exit(0)

toy.write_final(args.out, acc.unwrap_model(model), losses, ws)
acc.end_training()
