"""Does Fabric() with defaults join torchrun's group on CPU?"""
from lightning.fabric import Fabric
f = Fabric(accelerator="cpu")
f.launch()
print("rank", f.global_rank, "world", f.world_size, "strategy", type(f.strategy).__name__, flush=True)
