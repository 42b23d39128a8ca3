"""The 2020 paper's scale, in one place that imports nothing.

The catalog's size, the patches, the network width, the mining shares and the training
schedule of Prétet et al. (2020, §3.2, §4; Table 1), as :class:`mrlib.train_config.TrainConfig`
fields. :mod:`mrlib.mining` takes ``Np``, ``Nn`` and the training list from it,
:func:`mrlib.train_config.paper_config` and the suite's ``paper`` profile
(:data:`mrlib.suite.PROFILES`) take every field they set; it has no imports, so that the suite
reads it without loading torch.

Notebook: 06_training.ipynb
"""
from __future__ import annotations

__all__ = ["PAPER_SCALE"]

#: The 2020 catalog's 14,246 tracks, 96 × 512 patches, the full-width networks, Np = 15
#: positives and Nn = 250 negatives, 42 negatives per batch, 100 epochs of 2000 batches,
#: patience 10.
PAPER_SCALE: dict[str, float] = dict(n_tracks=14246, patch_len=512, width=1.0, n_pos=15, n_neg=250,
                                     negatives_per_batch=42, epochs=100, steps_per_epoch=2000,
                                     patience=10)
