"""Training on several processes (torchrun): the process group, and what ``verify_ddp`` checks.

Launched as ``torchrun --nproc_per_node=K -m mrlib.train ...`` the trainer runs PyTorch DDP
(NCCL on CUDA, gloo on CPU); without torchrun :func:`init_distributed` returns a context of one
rank and nothing changes.

Notebook: 06_training.ipynb
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

__all__ = ["Dist", "RankZeroFailed", "init_distributed", "WriteAudit", "param_checksum"]


class RankZeroFailed(RuntimeError):
    """What the other ranks raise when rank 0 failed at a step they wait for (its error is
    in the message; rank 0 raises the error itself).

    Notebook: 06_training.ipynb
    """


@dataclass
class Dist:
    """This process's rank among ``world_size`` (one rank without torchrun).

    Notebook: 06_training.ipynb
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.active:
            torch.distributed.barrier()

    def broadcast(self, obj):
        if not self.active:
            return obj
        box = [obj]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj) -> list:
        if not self.active:
            return [obj]
        out = [None] * self.world_size
        torch.distributed.all_gather_object(out, obj)
        return out

    def close(self) -> None:
        if self.owns_group and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def init_distributed(device_pref: str) -> Dist:
    """Join the torchrun process group when launched by torchrun (WORLD_SIZE > 1).

    Notebook: 06_training.ipynb
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return Dist(dist.get_rank(), dist.get_world_size(),
                     int(os.environ.get("LOCAL_RANK", dist.get_rank())), owns_group=False)
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Dist()
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    wants_cuda = device_pref.startswith("cuda") or (device_pref == "auto" and torch.cuda.is_available())
    dist.init_process_group(backend="nccl" if wants_cuda and dist.is_nccl_available() else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")),
                 owns_group=True)


class WriteAudit:
    """Record the files this process opens for writing under a folder (``verify_ddp``).

    Python audit hooks cannot be removed, so one hook is installed once per process and
    only records while a folder is set.

    Notebook: 06_training.ipynb
    """

    _installed = False
    folder: str | None = None
    seen: list = []

    @classmethod
    def start(cls, folder: Path) -> None:
        cls.folder, cls.seen = str(Path(folder).resolve()), []
        if not cls._installed:
            sys.addaudithook(cls._hook)
            cls._installed = True

    @classmethod
    def stop(cls) -> list:
        cls.folder = None
        return sorted(set(cls.seen))

    @classmethod
    def _hook(cls, event: str, args) -> None:
        if cls.folder is None:
            return
        if event == "open":
            mode, flags = args[1], args[2]
            if (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                    isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)):
                cls._note(args[0])
        elif event in ("os.remove", "os.unlink"):
            cls._note(args[0])
        elif event == "os.rename":   # os.replace's too: both names, an atomic write's real one
            cls._note(args[0])
            cls._note(args[1])

    @classmethod
    def _note(cls, path) -> None:
        if isinstance(path, (str, bytes, os.PathLike)):
            full = os.path.abspath(os.fsdecode(path))
            if full.startswith(cls.folder):
                cls.seen.append(os.path.relpath(full, cls.folder))


def param_checksum(model: nn.Module) -> torch.Tensor:
    """Two float64 sums per parameter (plain and position-weighted): a differing element
    changes at least one of them.

    Notebook: 06_training.ipynb
    """
    sums = []
    for p in model.parameters():
        v = p.detach().double().flatten()
        w = torch.arange(1, v.numel() + 1, device=v.device, dtype=torch.float64) / v.numel()
        sums.append(torch.stack([v.sum(), (v * w).sum()]))
    return torch.cat(sums).cpu()
