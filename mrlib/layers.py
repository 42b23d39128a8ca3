"""The building blocks of the networks in :mod:`mrlib.models`: per-bin input BatchNorm, clamped
max-pools, the VGG-like backbone, a residual block, and the plumbing every network shares
(input checks, ``config``, the float16 cast).

Notebook: 05_autopool.ipynb
"""
from __future__ import annotations

import contextlib
from collections import OrderedDict
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mrlib.checks import check_int, check_positive

__all__ = ["FrequencyBatchNorm", "ClampedMaxPool2d", "Backbone", "ResidualBlock",
           "PatchModel", "scale_channels", "init_weights", "eval_mode"]

# ----------------------------------------------------------------------------- helpers
@contextlib.contextmanager
def eval_mode(model: nn.Module):
    """``model`` in eval mode for the block, then back in the mode it was in.

    Notebook: 05_autopool.ipynb
    """
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def scale_channels(channels: int, width: float) -> int:
    """Channel count at a width multiplier: ``round(width * channels)``, at least 1.

    Notebook: 05_autopool.ipynb
    """
    return max(1, int(round(width * channels)))


def init_weights(module: nn.Module) -> None:
    """He-normal convolutions (as in Choi et al.'s FCN; theirs have no bias, a BatchNorm follows
    each), unit BatchNorm with zero shift: the start of a new network, whatever ``module`` held.

    Notebook: 05_autopool.ipynb
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


# ----------------------------------------------------------------------------- layers
class FrequencyBatchNorm(nn.BatchNorm2d):
    """BatchNorm on the input CQT with one mean/variance (and affine pair) per frequency bin.

    Input and output: ``(B, 1, n_bins, T)``. Statistics are taken over batch and time; this is
    the "per each frequency" input normalisation of Choi et al.'s FCN. Log-CQT levels differ
    by tens of dB from bass to treble bins, which a single global BatchNorm would not fix.

    Notebook: 05_autopool.ipynb
    """

    def __init__(self, n_bins: int) -> None:
        super().__init__(check_int("n_bins", n_bins))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 1, F, T) -> (B, F, 1, T) and back
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


class ClampedMaxPool2d(nn.Module):
    """Max-pool with kernel = stride = ``min(kernel, size)`` per axis (see the module docstring).

    Input ``(B, C, F, T)``; output ``(B, C, F // kf', T // kt')`` with the clamped kernel
    ``kf' = min(kf, F)``, ``kt' = min(kt, T)``: an axis that has shrunk below the paper's kernel
    is pooled whole instead of vanishing.

    Notebook: 05_autopool.ipynb
    """

    def __init__(self, kernel: tuple[int, int]) -> None:
        super().__init__()
        if len(kernel) != 2:
            raise ValueError(f"kernel must be (freq, time), got {kernel!r}")
        self.kernel = (check_int("kernel[0]", kernel[0]), check_int("kernel[1]", kernel[1]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = (min(self.kernel[0], x.shape[-2]), min(self.kernel[1], x.shape[-1]))
        return F.max_pool2d(x, kernel_size=k, stride=k)

    def extra_repr(self) -> str:
        return f"kernel={self.kernel}"


class Backbone(nn.Sequential):
    """Input BatchNorm + conv blocks [Conv 3x3 'same' -> BN -> ReLU -> MaxPool (-> Dropout)].

    Input ``(B, 1, n_bins, T)``; output ``(B, widths[-1], F_out, T_out)`` with ``F_out`` and
    ``T_out`` set by ``final_size``.

    Parameters
    ----------
    n_bins : int
        CQT bins (per-frequency input BatchNorm).
    widths : sequence of int
        Output channels of each block (already scaled by the width multiplier).
    pools : sequence of (int, int)
        Max-pool kernel (freq, time) of each block, clamped at run time.
    final_size : (int or None, int or None)
        Output size of the closing adaptive max-pool; ``None`` keeps that axis.
    dropout : float
        Dropout after each block (FCN: 0.5), 0 for none.

    Notebook: 05_autopool.ipynb
    """

    def __init__(self, n_bins: int, widths, pools, final_size=(1, 1), dropout: float = 0.0) -> None:
        if len(widths) != len(pools) or len(widths) == 0:
            raise ValueError(f"need one pool per block, got {len(widths)} widths and {len(pools)} pools")
        layers: OrderedDict[str, nn.Module] = OrderedDict(input_bn=FrequencyBatchNorm(n_bins))
        # each block takes the channels of the one before (the CQT's single channel first)
        for i, (c_in, c, pool) in enumerate(zip([1, *widths], widths, pools), start=1):
            # No conv bias: the BatchNorm right after has its own shift.
            block = OrderedDict(conv=nn.Conv2d(c_in, c, kernel_size=3, padding=1, bias=False),
                                bn=nn.BatchNorm2d(c), relu=nn.ReLU(), pool=ClampedMaxPool2d(pool))
            if dropout > 0:
                block["dropout"] = nn.Dropout(dropout)
            layers[f"block{i}"] = nn.Sequential(block)
        layers["final_pool"] = nn.AdaptiveMaxPool2d(final_size)
        super().__init__(layers)      # run in order: input_bn, block1 ..., final_pool


class PatchModel(nn.Module):
    """Shared plumbing: input checks, ``config`` and the default ``input_shape``.

    Notebook: 05_autopool.ipynb
    """

    system: str = ""
    #: its embeddings lie on the unit sphere (a mean of them is normalised back onto it)
    unit_norm: bool = True
    #: it takes ``n_tags`` (a tagging head) instead of ``embedding_dim``
    takes_tags: bool = False

    def _setup(self, head: str, size: int, width: float, n_bins: int, patch_len: int, **rest) -> None:
        """Check the shared arguments, set the network's first one (``head``, e.g. ``n_tags``, to
        ``size``) and ``config``: the system, ``head``, width, n_bins, patch_len, then ``rest``."""
        setattr(self, head, check_int(head, size))
        self.n_bins = check_int("n_bins", n_bins)
        self.patch_len = check_int("patch_len", patch_len)
        self.width = check_positive("width", width)     # 1.0 = the paper
        # the keyword arguments that rebuild this model: build_model(**model.config)
        self.config = {"system": self.system, head: getattr(self, head), "width": self.width,
                       "n_bins": self.n_bins, "patch_len": self.patch_len, **rest}

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Default patch shape without the batch axis: ``(1, n_bins, patch_len)``."""
        return (1, self.n_bins, self.patch_len)

    def _prepare(self, x: Any, name: str = "x") -> torch.Tensor:
        """The batch of CQT patches ``x`` checked, as ``(B, 1, n_bins, T)`` in the weights' dtype."""
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            got = x.dtype if isinstance(x, torch.Tensor) else type(x).__name__
            raise TypeError(f"{name} must be a floating-point torch.Tensor of CQT patches, got {got}")
        if x.ndim == 3:
            x = x.unsqueeze(1)
        elif x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"{name} must have shape (B, n_bins, T) or (B, 1, n_bins, T), "
                             f"got {tuple(x.shape)}")
        if x.shape[2] != self.n_bins:
            raise ValueError(f"{name} has {x.shape[2]} frequency bins but the model was built for "
                             f"n_bins={self.n_bins} (shape {tuple(x.shape)})")
        if x.shape[0] == 0 or x.shape[3] == 0:
            raise ValueError(f"{name} is empty (shape {tuple(x.shape)})")
        # Feature caches hold float16: cast to the weights' dtype here, so callers
        # need not (under torch.autocast the convolutions still run in half precision).
        return x.to(next(self.parameters()).dtype)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The patch representation retrieval uses: :meth:`forward` (AT: tag probabilities)."""
        return self.forward(x)


class ResidualBlock(nn.Module):
    """Basic residual block (He et al. 2016): ``relu(bn(conv(relu(bn(conv(x))))) + shortcut(x))``.

    Two 3x3 'same' convolutions; the shortcut is the identity when the channel count is kept,
    else a 1x1 convolution + BatchNorm (projection shortcut). Input ``(B, c_in, F, T)``, output
    ``(B, c_out, F, T)``.

    Notebook: 04_losses.ipynb
    """

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Identity() if c_in == c_out else nn.Sequential(OrderedDict(
            conv=nn.Conv2d(c_in, c_out, 1, bias=False), bn=nn.BatchNorm2d(c_out)))
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.relu2(out + self.shortcut(x))
