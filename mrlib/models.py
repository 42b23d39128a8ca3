"""The networks of the two papers, for CQT patches of any length and any width.

Prétet et al. (2020), Table 1 — a VGG-like backbone (Choi et al.'s FCN-5):
input BatchNorm on the CQT, then 5 x [Conv2D 3x3 'same' -> BatchNorm -> ReLU -> MaxPool].

=================  ==========================  =====================================  ==============
system             widths (``width=1``)        pools (F, T)                           head
=================  ==========================  =====================================  ==============
``at``             128, 256, 512, 1024, 2048   (2,4) (2,4) (2,4) (3,3) (4,2)          FC(m) + sigmoid
``tl``             128, 256, 512, 1024, 2048   (2,4) (2,4) (2,4) (3,3) (4,2)          FC(d), L2-norm
``tl_autopool``    64, 128, 256, 512, 1024     (2,2) (2,2) (2,2) (2,2) (6,1)          FC(d) per frame,
                                                                                      AutoPool, L2-norm
=================  ==========================  =====================================  ==============

Lu et al. (2017) — :class:`TripletMatchNet`: a residual feature tower (He et al. 2016) that maps
a patch to an embedding, and a metric network on the concatenated pair ending in one logit
``z``; ``f = sigmoid(z)`` is a *dissimilarity* (0 similar, 1 dissimilar).

**Any patch length, any number of bins — the pooling rule.** Each max-pool kernel is clamped,
at run time, to the size that remains (``k = min(k_paper, size)``, stride = kernel, floor), so a
short patch never shrinks an axis to zero; the backbone then ends with an adaptive max-pool to
the paper's final size: ``F = T = 1`` for ``at``/``tl`` (a global max over what is left) and
``F = 1`` with the time axis kept for ``tl_autopool``. At 96 x 512 the clamps and the adaptive
pool change nothing (the adaptive pool is then the identity) and every output shape is Table 1's;
at 96 x 128 the AutoPool sees ``T = 128 / 16 = 8`` frames. ``width`` multiplies every channel
count (``round(width * c)``, at least 1).

**Inputs.** Every model takes ``(B, n_bins, T)`` or ``(B, 1, n_bins, T)`` float tensors (log-CQT
patches, dB) of any floating dtype; they are cast to the weights' dtype (float16 caches welcome). The input BatchNorm is per frequency bin (as in Choi et al.'s FCN code: each CQT
bin gets its own mean and variance), so ``n_bins`` is fixed at construction; ``T`` is free.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mrlib.autopool import AutoPool
from mrlib.checks import check_choice, check_int, is_int, is_real
from mrlib.layers import (Backbone, ClampedMaxPool2d, FrequencyBatchNorm, PatchModel, ResidualBlock,
                          eval_mode, init_weights, scale_channels)

__all__ = ["NETWORKS", "POOLINGS", "PAPER_WIDTHS", "PAPER_POOLS", "FrequencyBatchNorm",
           "ClampedMaxPool2d", "Backbone", "ATBaseline", "TL", "TLAutopool",
           "ResidualBlock", "TripletMatchNet", "build_model", "summary"]

#: Channel counts at ``width=1`` (2020 paper, Table 1).
PAPER_WIDTHS: dict[str, tuple[int, ...]] = {
    "at": (128, 256, 512, 1024, 2048),
    "tl": (128, 256, 512, 1024, 2048),
    "tl_autopool": (64, 128, 256, 512, 1024),
    # Not given by the 2017 slides: ResNet-style doubling, chosen for this suite.
    "matchnet": (64, 128, 256, 512),
}

#: Max-pool kernels (frequency, time) (2020 paper, Table 1).
PAPER_POOLS: dict[str, tuple[tuple[int, int], ...]] = {
    "at": ((2, 4), (2, 4), (2, 4), (3, 3), (4, 2)),
    "tl": ((2, 4), (2, 4), (2, 4), (3, 3), (4, 2)),
    "tl_autopool": ((2, 2), (2, 2), (2, 2), (2, 2), (6, 1)),
    "matchnet": ((2, 2), (2, 2), (2, 2), (2, 2)),
}


#: Temporal pooling of :class:`TLAutopool`: the learned AutoPool, or a fixed mean or max.
POOLINGS = ("autopool", "mean", "max")
_FIXED_POOLS = {"mean": lambda frames: frames.mean(dim=1),
                "max": lambda frames: frames.amax(dim=1)}


# ----------------------------------------------------------------------------- 2020 systems
class _PaperCNN(PatchModel):
    """The 2020 networks' shared part: Table 1's backbone of :attr:`system` (:meth:`_build`)."""

    #: the closing adaptive max-pool's output size (``None`` keeps that axis)
    final_size: tuple = (1, 1)

    def _build(self, head: str, size: int, width: float, n_bins: int, patch_len: int,
               dropout: float, **rest) -> None:
        """Check the arguments, set ``config``, the backbone and the FC head (``size`` outputs,
        on each frame when the backbone keeps time), and initialise the weights."""
        if not is_real(dropout) or not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self._setup(head, size, width, n_bins, patch_len, dropout=float(dropout), **rest)
        self.widths = [scale_channels(c, self.width) for c in PAPER_WIDTHS[self.system]]
        self.backbone = Backbone(n_bins, self.widths, PAPER_POOLS[self.system], self.final_size,
                                 self.config["dropout"])
        if self.final_size == (1, 1):     # one vector per patch, (B, C, 1, 1) -> (B, C)
            self.flatten = nn.Flatten()
        self.fc = nn.Linear(self.widths[-1], getattr(self, head))
        init_weights(self)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone output, ``(B, C)`` with ``C = round(2048 * width)``."""
        return self.flatten(self.backbone(self._prepare(x)))


class ATBaseline(_PaperCNN):
    """Auto-tagging baseline (FCN-5, Choi et al. 2016, as adapted in Prétet et al. 2020).

    Backbone with widths 128-2048 and pools (2,4),(2,4),(2,4),(3,3),(4,2), dropout after each
    block as in FCN's code (0.5), then FC(m) + sigmoid: one independent probability per tag.

    Parameters
    ----------
    n_tags : int
        Number of tags ``m``.
    width : float, default 1.0
        Channel multiplier (1.0 = paper).
    n_bins : int, default 96
    patch_len : int, default 512
        Default patch length (only for :func:`summary`; any length works).
    dropout : float, default 0.5

    Notes
    -----
    ``forward(x)`` -> tag probabilities ``(B, m)`` in (0, 1); train on :meth:`logits` with
    ``mrlib.losses.bce_loss(..., from_logits=True)``. :meth:`embed` returns the probabilities
    too: the AT system retrieves with the oracle S applied to them.

    Notebook: 04_losses.ipynb
    """

    system = "at"
    unit_norm = False
    takes_tags = True

    def __init__(self, n_tags: int, width: float = 1.0, n_bins: int = 96, patch_len: int = 512,
                 dropout: float = 0.5) -> None:
        super().__init__()
        self._build("n_tags", n_tags, width, n_bins, patch_len, dropout)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-sigmoid tag scores, ``(B, n_tags)``."""
        return self.fc(self.features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Tag probabilities, ``(B, n_tags)``."""
        return torch.sigmoid(self.logits(x))


class TL(_PaperCNN):
    """Triplet-loss network (TL): the AT backbone, FC(d) linear, L2-normalised.

    Parameters
    ----------
    embedding_dim : int, default 128
        ``d`` (2020 paper: 128).
    width, n_bins, patch_len
        As in :class:`ATBaseline`.
    dropout : float, default 0.0
        The paper does not state TL's dropout; 0.5 reproduces the AT backbone exactly.

    Notes
    -----
    ``forward(x)`` = ``embed(x)`` -> unit-norm embeddings ``(B, d)``.

    Notebook: 04_losses.ipynb
    """

    system = "tl"

    def __init__(self, embedding_dim: int = 128, width: float = 1.0, n_bins: int = 96,
                 patch_len: int = 512, dropout: float = 0.0) -> None:
        super().__init__()
        self._build("embedding_dim", embedding_dim, width, n_bins, patch_len, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Unit-norm embeddings, ``(B, embedding_dim)``."""
        return F.normalize(self.fc(self.features(x)), dim=-1)


class TLAutopool(_PaperCNN):
    """TL with Auto-pooling over time (Prétet et al. 2020, Table 1, column 3).

    Widths 64-1024; pools (2,2) x 4 then (6,1), so a 96 x 512 patch leaves ``T = 32`` frames of
    1024 channels; FC(d) on each frame; :class:`~mrlib.autopool.AutoPool` over time (one alpha per
    embedding dimension, initialised to the mean); L2 normalisation.

    Parameters
    ----------
    embedding_dim : int, default 128
    width, n_bins, patch_len
        As in :class:`ATBaseline`.
    dropout : float, default 0.0
    constrained : bool, default False
        AutoPool with alpha >= 0 (see :class:`~mrlib.autopool.AutoPool`).
    l2 : float, default 0.0
        AutoPool alpha penalty coefficient (add ``mrlib.autopool.autopool_penalty(model)``).
    pooling : {"autopool", "mean", "max"}, default "autopool"
        How the frames become one embedding: the learned AutoPool (the paper), or a fixed mean
        or max over time (the ablation's arms: the same network with the choice taken away;
        these have no ``autopool`` layer).

    Notes
    -----
    ``forward(x)`` = ``embed(x)`` -> ``(B, d)`` unit norm; :meth:`frame_embeddings` -> ``(B, T', d)``
    before pooling; :meth:`pooled` -> ``(B, d)`` after pooling, before normalisation.

    Notebook: 05_autopool.ipynb
    """

    system = "tl_autopool"
    final_size = (1, None)    # collapse what is left of frequency, keep every frame

    def __init__(self, embedding_dim: int = 128, width: float = 1.0, n_bins: int = 96,
                 patch_len: int = 512, dropout: float = 0.0, constrained: bool = False,
                 l2: float = 0.0, pooling: str = "autopool") -> None:
        super().__init__()
        check_choice("pooling", pooling, POOLINGS)
        # ``pooling`` enters the config only when it is not the paper's, so the configs (and
        # checkpoints) of AutoPool models stay what they are.
        extra = {} if pooling == "autopool" else {"pooling": pooling}
        self._build("embedding_dim", embedding_dim, width, n_bins, patch_len, dropout,
                    constrained=bool(constrained), l2=float(l2), **extra)
        self.pooling = pooling
        self.autopool = (AutoPool(self.embedding_dim, axis=1, constrained=constrained, l2=l2)
                         if pooling == "autopool" else None)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone output as frames, ``(B, T', C)``."""
        # (B, C, 1, T') -> (B, T', C): the frequency-free map as a sequence of frames
        return self.backbone(self._prepare(x)).squeeze(2).transpose(1, 2)

    def frame_embeddings(self, x: torch.Tensor) -> torch.Tensor:
        """FC(d) of every frame, before pooling: ``(B, T', d)``."""
        return self.fc(self.features(x))

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """The frames pooled over time (AutoPool, mean or max), before normalisation: ``(B, d)``."""
        frames = self.frame_embeddings(x)
        if self.autopool is not None:
            return self.autopool(frames)
        return _FIXED_POOLS[self.pooling](frames)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Unit-norm embeddings, ``(B, d)``."""
        return F.normalize(self.pooled(x), dim=-1)


# ----------------------------------------------------------------------------- 2017 system
class TripletMatchNet(PatchModel):
    """Triplet MatchNet (Lu et al. 2017): residual feature tower + metric network on pairs.

    Tower: per-frequency input BatchNorm, a 3x3 stem conv (BN, ReLU), then per stage a
    :class:`ResidualBlock` and a (2, 2) max-pool (clamped), a global average pool and a linear
    bottleneck to ``embedding_dim``. Metric network: ``[e(x), e(y)]`` (concatenated, ``2 e``)
    -> FC(h) -> ReLU -> FC(h) -> ReLU -> FC(1) = logit ``z``. ``f(x, y) = sigmoid(z)`` is a
    dissimilarity in (0, 1): near 0 for similar patches, near 1 for dissimilar ones. The
    slides give no layer sizes; the stage widths (64, 128, 256, 512) and ``h = 512`` at
    ``width=1`` follow MatchNet/ResNet practice. ``f`` is not forced to be symmetric (as in
    MatchNet); the song-level score averages over all ordered patch pairs.

    Parameters
    ----------
    embedding_dim : int, default 128
        Size of the tower's patch embedding.
    width : float, default 1.0
        Multiplier on stage widths and on ``h``.
    n_bins, patch_len
        As in :class:`ATBaseline`.
    metric_hidden : int, default 512
        ``h`` at ``width=1``.

    Notes
    -----
    * ``forward(x, y)`` -> logits ``z`` ``(B,)`` for paired patches ``x[b], y[b]``;
    * :meth:`embed` -> tower embeddings ``(B, e)``; :meth:`metric_pairs` -> logits of all pairs of
      two embedding sets; :meth:`pair_logits` -> ``(P_x, P_y)`` logits from two patch sets (the
      song-level score, the mean of ``f`` over them: :func:`mrlib.songlevel.pair_dissimilarities`).

    Notebook: 04_losses.ipynb
    """

    system = "matchnet"
    unit_norm = False

    def __init__(self, embedding_dim: int = 128, width: float = 1.0, n_bins: int = 96,
                 patch_len: int = 512, metric_hidden: int = 512) -> None:
        super().__init__()
        self._setup("embedding_dim", embedding_dim, width, n_bins, patch_len,
                    metric_hidden=check_int("metric_hidden", metric_hidden))
        widths = [scale_channels(c, self.width) for c in PAPER_WIDTHS["matchnet"]]
        tower = OrderedDict(input_bn=FrequencyBatchNorm(n_bins),
                            stem_conv=nn.Conv2d(1, widths[0], 3, padding=1, bias=False),
                            stem_bn=nn.BatchNorm2d(widths[0]), stem_relu=nn.ReLU())
        # each stage takes the channels of the one before (the stem's first)
        for i, (c_in, c, pool) in enumerate(zip(widths[:1] + widths[:-1], widths,
                                                PAPER_POOLS["matchnet"]), start=1):
            tower[f"res{i}"] = ResidualBlock(c_in, c)
            tower[f"pool{i}"] = ClampedMaxPool2d(pool)
        tower.update(global_pool=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten(),
                     bottleneck=nn.Linear(widths[-1], self.embedding_dim))
        self.tower = nn.Sequential(tower)
        h = scale_channels(self.config["metric_hidden"], self.width)
        self.metric = nn.Sequential(OrderedDict(
            fc1=nn.Linear(2 * self.embedding_dim, h), relu1=nn.ReLU(),
            fc2=nn.Linear(h, h), relu2=nn.ReLU(),
            fc3=nn.Linear(h, 1)))
        init_weights(self)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Tower embedding of each patch, ``(B, embedding_dim)``."""
        return self.tower(self._prepare(x))

    def metric_logits(self, ex: torch.Tensor, ey: torch.Tensor) -> torch.Tensor:
        """Logits ``z`` of paired embeddings ``(..., e)`` x ``(..., e)`` -> ``(...)``."""
        if ex.shape != ey.shape or ex.shape[-1] != self.embedding_dim:
            raise ValueError(f"paired embeddings must both be (..., {self.embedding_dim}), got "
                             f"{tuple(ex.shape)} and {tuple(ey.shape)}")
        return self.metric(torch.cat([ex, ey], dim=-1)).squeeze(-1)

    def metric_pairs(self, ex: torch.Tensor, ey: torch.Tensor) -> torch.Tensor:
        """Logits of every pair of two embedding sets.

        Parameters
        ----------
        ex : torch.Tensor, shape (..., P_x, e)
        ey : torch.Tensor, shape (..., P_y, e)
            Leading dimensions (e.g. a batch of song triplets) must match.

        Returns
        -------
        torch.Tensor, shape (..., P_x, P_y)
            ``z[..., i, j] = metric([ex[..., i, :], ey[..., j, :]])``.
        """
        if ex.ndim < 2 or ey.ndim < 2 or ex.shape[:-2] != ey.shape[:-2]:
            raise ValueError(f"need (..., P_x, e) and (..., P_y, e) with the same leading dims, got "
                             f"{tuple(ex.shape)} and {tuple(ey.shape)}")
        p_x, p_y = ex.shape[-2], ey.shape[-2]
        # Every (i, j) pair, so the metric MLP runs on P_x * P_y rows at once. Each side keeps its
        # own embedding size, so metric_logits still names a wrong one.
        exx = ex.unsqueeze(-2).expand(*ex.shape[:-1], p_y, ex.shape[-1])
        eyy = ey.unsqueeze(-3).expand(*ey.shape[:-2], p_x, p_y, ey.shape[-1])
        return self.metric_logits(exx, eyy)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Logits ``z`` (B,) for paired patches ``x`` and ``y`` (each ``(B, n_bins, T)``)."""
        x = self._prepare(x, "x")
        y = self._prepare(y, "y")
        # x and y of different lengths: metric_logits refuses the pair, naming both shapes
        return self.metric_logits(self.tower(x), self.tower(y))

    def pair_logits(self, x_patches: torch.Tensor, y_patches: torch.Tensor) -> torch.Tensor:
        """Logits for all patch pairs of two songs.

        Parameters
        ----------
        x_patches : torch.Tensor, (P_x, n_bins, T) or (P_x, 1, n_bins, T)
        y_patches : torch.Tensor, (P_y, n_bins, T) or (P_y, 1, n_bins, T)

        Returns
        -------
        torch.Tensor, (P_x, P_y)
            ``z[i, j]`` for the pair (x_patches[i], y_patches[j]); feed two of these to
            :func:`mrlib.losses.matchnet_loss`.
        """
        return self.metric_pairs(self.embed(x_patches), self.embed(y_patches))


# ----------------------------------------------------------------------------- factory
#: The networks :func:`build_model` builds, by name (the systems that train them:
#: :data:`mrlib.systems.SYSTEMS`).
NETWORKS: dict[str, type] = {"at": ATBaseline, "tl": TL, "tl_autopool": TLAutopool,
                             "matchnet": TripletMatchNet}


def build_model(system: str, n_tags: int | None = None, width: float = 1.0, n_bins: int = 96,
                patch_len: int = 512, embedding_dim: int = 128, *, seed: int | None = None,
                **kwargs: Any) -> nn.Module:
    """Build one of the four systems.

    Parameters
    ----------
    system : {"at", "tl", "tl_autopool", "matchnet"}
    n_tags : int, required for ``"at"`` (ignored by the others)
    width : float, default 1.0
        Channel multiplier; 1.0 = the paper's widths.
    n_bins : int, default 96
        CQT bins of the input.
    patch_len : int, default 512
        Default patch length in frames (for :func:`summary`); any length runs.
    embedding_dim : int, default 128
        ``d`` for TL / TL Autopool, the tower embedding for MatchNet (ignored by ``"at"``).
    seed : int or None
        Seeds the weight initialisation without touching the global RNG state.
    **kwargs
        Passed on to the class: ``dropout`` (at, tl, tl_autopool), ``constrained``, ``l2`` and
        ``pooling`` (tl_autopool), ``metric_hidden`` (matchnet).

    Returns
    -------
    torch.nn.Module
        :class:`ATBaseline`, :class:`TL`, :class:`TLAutopool` or :class:`TripletMatchNet`, with a
        ``config`` dict such that ``build_model(**model.config)`` rebuilds it.

    Notebook: 04_losses.ipynb
    """
    cls = NETWORKS[check_choice("system", system, NETWORKS)]
    # n_tags=None for "at" is refused by the class: "n_tags must be an int"
    head = {"n_tags": n_tags} if cls.takes_tags else {"embedding_dim": embedding_dim}
    if seed is not None and not is_int(seed):
        raise TypeError(f"seed must be an int or None, got {seed!r}")
    with torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(int(seed))
        # an argument the class does not take: Python's TypeError names both
        return cls(**head, width=width, n_bins=n_bins, patch_len=patch_len, **kwargs)


# ----------------------------------------------------------------------------- summary
#: How Table 1 names a layer, by type (the first that matches).
_DESCRIPTIONS: dict[type, Any] = {
    nn.Conv2d: lambda m: f"Conv2D ({m.kernel_size[0]},{m.kernel_size[1]}) x {m.out_channels}",
    ClampedMaxPool2d: lambda m: f"MP ({m.kernel[0]},{m.kernel[1]})",
    nn.AdaptiveMaxPool2d: lambda m: f"adaptive MP {m.output_size}",
    nn.AdaptiveAvgPool2d: lambda m: f"adaptive AP {m.output_size}",
    nn.Linear: lambda m: f"FC ({m.out_features})",
    AutoPool: lambda m: f"Autopool ({m.n_dims})",
    FrequencyBatchNorm: lambda m: f"BN per bin ({m.num_features})",
    nn.Dropout: lambda m: f"Dropout ({m.p})",
}


def summary(model: nn.Module, compact: bool = False):
    """Print and return a layer-by-layer table: name, description, output shape (F, T, C), parameters.

    Runs one forward pass (eval mode, no gradient; the model's mode is restored) on a seeded
    random batch of two patches of the model's ``input_shape`` (build the model with another
    ``patch_len`` to see another length) and records the output of every leaf module. Shapes are given without the
    batch axis, and for 4-D feature maps ``(B, C, F, T)`` also as the paper's ``F, T, C``
    (Table 1). For :class:`TripletMatchNet` the pair ``(x, x)`` is fed and the tower is listed
    once.

    Parameters
    ----------
    model : torch.nn.Module
        A model of this module.
    compact : bool, default False
        Keep only the rows Table 1 lists (input, convolutions, pools, FC, AutoPool) plus the
        total; parameters of the hidden rows (BatchNorm) still count in the total.

    Returns
    -------
    pandas.DataFrame
        Columns ``layer, description, output_shape, F, T, C, params``; the last row is the total.

    Notebook: 05_autopool.ipynb
    """
    import pandas as pd

    if not isinstance(model, PatchModel):
        raise TypeError(f"summary() needs a model of mrlib.models (build_model), got {type(model).__name__}")
    device = next(model.parameters()).device
    x = torch.randn((2, *model.input_shape), generator=torch.Generator().manual_seed(0)).to(device)
    df = pd.DataFrame([_shape_row("input", "CQT", x, 0), *_leaf_rows(model, x),
                       _shape_row("total", "", None, sum(p.numel() for p in model.parameters()))])
    if compact:
        keep = df["description"].str.match(r"(CQT|Conv2D|MP|adaptive|FC|Autopool)") | (df["layer"] == "total")
        df = df[keep].reset_index(drop=True)
    df = df.astype({"F": "Int64", "T": "Int64", "C": "Int64"})
    print(df.to_string(index=False))
    return df


def _shape_row(name: str, desc: str, out: Any, params: int) -> dict:
    """A summary row: the output shape without the batch axis, and as the paper's F, T, C."""
    shape = tuple(out.shape[1:]) if isinstance(out, torch.Tensor) else ()
    f = t = c = None
    if len(shape) == 3:
        c, f, t = shape
    elif len(shape) == 2:         # (T, C): frames of a frequency-collapsed map
        f, (t, c) = 1, shape
    elif len(shape) == 1:
        c = shape[0]
    return dict(layer=name, description=desc, output_shape=shape, F=f, T=t, C=c, params=params)


def _leaf_rows(model: nn.Module, x: torch.Tensor) -> list[dict]:
    """One row per leaf module, from a forward pass in eval mode (the model's mode restored)."""
    names = {m: n for n, m in model.named_modules() if n and not list(m.children())}
    rows: dict[str, dict] = {}

    def hook(module, _inputs, output):
        name = names[module]
        if name not in rows:          # MatchNet's tower runs twice per pair; list it once
            desc = next((f(module) for cls, f in _DESCRIPTIONS.items() if isinstance(module, cls)),
                        type(module).__name__)
            n_params = sum(p.numel() for p in module.parameters(recurse=False))
            rows[name] = _shape_row(name, desc, output, n_params)

    handles = [m.register_forward_hook(hook) for m in names]
    try:
        with eval_mode(model), torch.no_grad():
            args = (x, x) if isinstance(model, TripletMatchNet) else (x,)   # MatchNet: a pair
            model(*args)
    finally:
        for h in handles:
            h.remove()
    return list(rows.values())
