"""Which device to train on, in which precision, and how much memory a run took.

A low module (torch and threadpoolctl): the CQT notebook and the MatchNet trainer pick a device
without importing the trainer.

Notebook: 06_training.ipynb
"""
from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import sys
from pathlib import Path

import threadpoolctl
import torch

__all__ = ["mps_available", "pick_device", "amp_dtype", "sum_dtype", "memory_available", "peak_memory", "synchronize",
           "torch_threads", "cpu_kernels"]


def mps_available() -> bool:
    """Whether this torch build and machine offer Apple's MPS backend.

    Notebook: 06_training.ipynb
    """
    return torch.backends.mps.is_available()


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """The device to train on: CUDA, then Apple MPS, then the CPU — or the one asked for.

    Parameters
    ----------
    device : str, torch.device or None
        ``None`` or ``"auto"`` picks; anything else (``"cpu"``, ``"cuda"``, ``"cuda:1"``,
        ``"mps"``) is checked to exist.

    Returns
    -------
    torch.device

    Raises
    ------
    ValueError
        For an unknown device string, or a device this machine does not have.

    Examples
    --------
    >>> pick_device("cpu")
    device(type='cpu')

    Notebook: 06_training.ipynb
    """
    if device is None or (isinstance(device, str) and device.strip().lower() == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else
                            "mps" if mps_available() else "cpu")
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"device must be None, 'auto', a device string or a torch.device, got {device!r}")
    try:
        dev = torch.device(device.strip().lower() if isinstance(device, str) else device)
    except RuntimeError as err:
        raise ValueError(f"unknown device {device!r} ({err}); use 'auto', 'cpu', 'cuda', "
                         "'cuda:N' or 'mps'") from None
    available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": mps_available()}
    if dev.type not in available:
        raise ValueError(f"device type {dev.type!r} is not supported; use 'cpu', 'cuda' or 'mps'")
    if not available[dev.type]:
        raise ValueError(f"device {device!r} asked for, but {dev.type.upper()} is not available "
                         "here; use device='auto' or 'cpu'")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device {device!r}: this machine has {torch.cuda.device_count()} GPU(s)")
    return dev


#: The vector extensions that choose oneDNN's and MKL's kernels, widest first.
_ISA_FLAGS = ("amx_tile", "avx512_bf16", "avx512_vnni", "avx512f", "avx2", "sve2", "sve", "asimd", "neon")

#: Environment variables that hold torch, oneDNN, MKL or OpenBLAS to narrower kernels.
KERNEL_OVERRIDES = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS", "OPENBLAS_CORETYPE")


def _cpu_model() -> str:
    """The CPU's model name, with which of :data:`_ISA_FLAGS` it has where Linux lists them."""
    if sys.platform == "darwin":
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            return subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True,
                                  text=True, check=True).stdout.strip()
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    fields = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in info.splitlines() if ":" in line)}
    flags = set((fields.get("flags") or fields.get("Features") or "").split())
    model = fields.get("model name") or fields.get("CPU part") or platform.processor() or platform.machine()
    return f"{model} ({' '.join(f for f in _ISA_FLAGS if f in flags) or 'no listed extension'})"


def cpu_kernels() -> dict:
    """Which vector kernels, and how many threads, torch and numpy's BLAS run with here.

    A float sum is split across vector lanes and threads, so its rounding depends on both: a
    seeded CPU run repeats bit for bit on one machine with the same threads, and may differ in
    the last bits (then, through training, in a network's ranks) on a CPU with other extensions.
    Stored experiment results record this with each row × seed.

    Returns
    -------
    dict
        ``torch``: torch's CPU capability (``"AVX512"``); ``threads``: torch's intra-op threads;
        ``blas``: each BLAS threadpoolctl finds loaded, with the architecture it chose
        (``"none loaded"`` when it finds none, e.g. Apple's Accelerate); ``cpu``: the model name
        and, on Linux, its widest vector extensions (oneDNN and MKL choose their kernels from
        these); ``overrides``: those of :data:`KERNEL_OVERRIDES` that are set.

    Notebook: 06_training.ipynb
    """
    blas = sorted({f"{info.get('internal_api', '?')} {info.get('architecture') or '?'}"
                   for info in threadpoolctl.threadpool_info() if info.get("user_api") == "blas"})
    return {"torch": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(),
            "blas": ", ".join(blas) or "none loaded", "cpu": _cpu_model(),
            "overrides": {k: os.environ[k] for k in KERNEL_OVERRIDES if k in os.environ}}


def amp_dtype(device: torch.device, amp: bool = True) -> torch.dtype | None:
    """The autocast dtype for mixed precision, or None when training in float32.

    bfloat16 on CUDA GPUs that support it (Ampere and later: same exponent range as float32,
    no loss scaling), float16 on older CUDA GPUs (with a ``GradScaler``), None on CPU and MPS
    (CPU autocast is slower than float32 on most CPUs; MPS autocast is not used here).

    Notebook: 06_training.ipynb
    """
    if not amp or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def sum_dtype(device: torch.device) -> torch.dtype:
    """The dtype of running sums kept on ``device``: float64, or float32 on MPS, which has no
    float64.

    Notebook: 06_training.ipynb
    """
    return torch.float32 if device.type == "mps" else torch.float64


def memory_available(device: torch.device) -> float | None:
    """Free bytes on a CUDA device, or of the machine's memory for the CPU; None if unknown.

    Notebook: 06_training.ipynb
    """
    if device.type == "cuda":
        with contextlib.suppress(Exception):
            return float(torch.cuda.mem_get_info(device)[0])
    elif device.type == "cpu":
        with contextlib.suppress(Exception):
            import psutil   # optional

            return float(psutil.virtual_memory().available)
    return None


def peak_memory(device: torch.device) -> tuple[int, str]:
    """Peak memory in bytes and what it measures.

    Notebook: 06_training.ipynb
    """
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device)), "torch.cuda.max_memory_allocated"
    if device.type == "mps" and hasattr(torch, "mps"):
        with contextlib.suppress(Exception):
            return int(torch.mps.driver_allocated_memory()), "torch.mps.driver_allocated_memory"
    try:
        import resource

        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        # Linux reports KiB, macOS bytes.
        return int(rss if sys.platform == "darwin" else rss * 1024), "peak RSS of the process"
    except ImportError:  # pragma: no cover - Windows
        return 0, "unavailable"


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (timings of GPU steps end here).

    Notebook: 06_training.ipynb
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


@contextlib.contextmanager
def torch_threads(threads: int | None):
    """Run the body with ``threads`` torch threads (None: unchanged), restoring the setting after.

    Notebook: 08_triplet_matchnet.ipynb
    """
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
