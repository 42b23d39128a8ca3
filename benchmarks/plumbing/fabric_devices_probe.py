"""Fabric(accelerator='cpu', devices=2) under torchrun (strategy auto)."""
from lightning.fabric import Fabric
f = Fabric(accelerator="cpu", devices=2)
f.launch()
print("rank", f.global_rank, "world", f.world_size, "strategy", type(f.strategy).__name__, flush=True)
