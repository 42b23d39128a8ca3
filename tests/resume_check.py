"""The check that a resumed training run ended where an uninterrupted one did."""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from mrlib import train as T

# The run folder (inside the config), the timings (inside the metrics' copy) and the run time.
_MAY_DIFFER = ("config", "metrics", "elapsed_s")

def assert_resumed_exactly(full, resumed) -> None:
    """A resumed run ends where the uninterrupted one did: bit for bit on the CPU (the weights,
    Adam's moments, every RNG state, the sampler and early-stopping states, the metrics and the
    embeddings; only the run folder in the config and the timings may differ), within float
    tolerance on a GPU."""
    cols = ["loss", "loss_all", "active_fraction", "val_map", "val_auc", "step"]
    a = T.load_checkpoint(full.path / "checkpoint.pt")
    b = T.load_checkpoint(resumed.path / "checkpoint.pt")
    if T.pick_device(full.config.device).type != "cpu":
        pd.testing.assert_frame_equal(full.metrics[cols], resumed.metrics[cols], rtol=1e-6)
        for k in a["model"]:
            torch.testing.assert_close(a["model"][k], b["model"][k], rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(full.embeddings, resumed.embeddings, rtol=1e-5, atol=1e-6)
        return
    pd.testing.assert_frame_equal(full.metrics[cols], resumed.metrics[cols], check_exact=True)
    la, lb = (dict(_leaves({k: v for k, v in c.items() if k not in _MAY_DIFFER})) for c in (a, b))
    assert la.keys() == lb.keys() and any(isinstance(v, torch.Tensor) for v in la.values())
    for k, x in la.items():
        y = lb[k]
        same = x.dtype == y.dtype and torch.equal(x, y) if isinstance(x, torch.Tensor) else x == y
        assert same, k
    assert np.array_equal(full.embeddings, resumed.embeddings)


def _leaves(state, path: str = ""):
    """(path, value) for every leaf of a nested checkpoint state (tensors, strings, numbers)."""
    if isinstance(state, dict):
        for k, v in state.items():
            yield from _leaves(v, f"{path}/{k}")
    elif isinstance(state, (list, tuple)):
        for i, v in enumerate(state):
            yield from _leaves(v, f"{path}/{i}")
    else:
        yield path, state
