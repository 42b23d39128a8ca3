"""AutoPool: a learned interpolation between min-, mean- and max-pooling.

McFee, Salamon & Bello (2018), "Adaptive pooling operators for weakly labeled sound event
detection", IEEE/ACM TASLP 26(11). For a sequence ``x[t, c]`` pooled over ``t``::

    y_c = sum_t x[t, c] * softmax_t(alpha_c * x[t, c])

with one ``alpha_c`` per output dimension ``c``. ``alpha_c = 0`` gives uniform weights (the
mean), ``alpha_c -> +inf`` puts all the weight on the largest value (the max) and
``alpha_c -> -inf`` on the smallest (the min). Prétet et al. (2020) pool a TL network's
per-frame embeddings over time with it (``TL Autopool``, Table 1, column 3).

The variants of the AutoPool paper are options of :class:`AutoPool`:

* ``constrained=True`` (their CAP): ``alpha >= 0``, so the operator lives between mean and max;
* ``l2 > 0`` (their RAP): :meth:`AutoPool.penalty` returns ``l2 * ||alpha||^2`` to add to the
  loss (:func:`autopool_penalty` sums it over a whole model).
"""
from __future__ import annotations

import numbers
from typing import Any

import torch
from torch import nn

from mrlib.checks import check_int, is_int

__all__ = ["autopool", "AutoPool", "autopool_penalty", "pooling_position"]


def _check_axis(x: Any, axis: int) -> int:
    """``axis`` of the floating-point tensor ``x``, normalised (non-negative); else a clear error
    (a 0-d ``x`` has no axis to pool over)."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        what = f"a tensor of {x.dtype}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise TypeError(f"x must be a floating-point torch.Tensor, got {what}")
    if not is_int(axis):
        raise TypeError(f"axis must be an int, got {type(axis).__name__}")
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(f"axis={axis} is out of range for a tensor with {x.ndim} dimension(s)")
    return int(axis) % x.ndim


def autopool(x: torch.Tensor, alpha: torch.Tensor | float, axis: int = -1) -> torch.Tensor:
    r"""Auto-pool ``x`` along ``axis`` with sharpness ``alpha`` (functional form).

    .. math::

        y = \sum_t x_t \, \frac{\exp(\alpha x_t)}{\sum_{t'} \exp(\alpha x_{t'})}

    computed with the maximum of ``alpha * x`` subtracted before the exponential, so that no
    ``alpha`` and no input scale overflows. Half-precision inputs (float16, bfloat16) are
    pooled in float32 and the result is cast back to the input dtype: the softmax weights
    of a long sequence underflow in float16.

    Parameters
    ----------
    x : torch.Tensor, floating, any shape with ``x.shape[axis] >= 1``
        The values to pool, e.g. per-frame embeddings ``(B, T, d)`` pooled over ``axis=1``.
    alpha : float or torch.Tensor
        Sharpness, broadcastable against ``x`` (a Python float, a 0-d tensor, or e.g. shape
        ``(d,)`` for ``x`` of shape ``(B, T, d)`` pooled over ``axis=1``). ``0`` is the mean,
        large positive values approach the max, large negative values the min.
    axis : int, default -1
        The axis pooled away.

    Returns
    -------
    torch.Tensor
        ``x`` with ``axis`` removed, same dtype as ``x``.

    Raises
    ------
    TypeError
        ``x`` is not a floating-point tensor.
    ValueError
        ``axis`` out of range, or an empty pooled axis.

    Examples
    --------
    >>> x = torch.tensor([0.0, 1.0, 3.0])
    >>> [round(autopool(x, a).item(), 4) for a in (0.0, 50.0, -50.0)]   # mean, max, min
    [1.3333, 3.0, 0.0]

    Notebook: 05_autopool.ipynb
    """
    ax = _check_axis(x, axis)
    if x.shape[ax] == 0:
        raise ValueError(f"cannot pool over an empty axis (x.shape={tuple(x.shape)}, axis={axis})")
    # Pool in at least float32: exp() of a float16 softmax underflows and the weighted sum
    # of many frames loses precision; the result goes back to the caller's dtype.
    work = torch.promote_types(x.dtype, torch.float32)
    xw = x.to(work)
    z = torch.as_tensor(alpha, dtype=work, device=x.device) * xw
    # Subtracting the max changes nothing mathematically (softmax is shift-invariant per
    # slice) and keeps exp() in (0, 1]. It is detached: its gradient is exactly zero anyway.
    z = z - z.amax(dim=ax, keepdim=True).detach()
    w = torch.exp(z)
    w = w / w.sum(dim=ax, keepdim=True)
    return (xw * w).sum(dim=ax).to(x.dtype)


def pooling_position(y: torch.Tensor, x: torch.Tensor, axis: int = -1) -> torch.Tensor:
    """Where a pooled value ``y`` lies between the min, the mean and the max of ``x``: ρ.

    ``ρ = (y - mean) / (max - mean)`` when ``y >= mean`` and ``(y - mean) / (mean - min)``
    below it: −1 at the min, 0 at the mean, +1 at the max, piecewise linear in ``y``. Unlike
    ``alpha``, which acts on ``alpha * x`` and so depends on the scale of ``x``, ρ says how far
    the pooling moved from the mean whatever that scale. A constant slice gives 0, a slice
    holding a NaN gives NaN. ``y`` must have been pooled in float32 or wider: float16 rounding
    of ``y`` alone moves ρ by up to about 0.2 on activations near 100.

    Parameters
    ----------
    y : torch.Tensor
        Pooled values, ``x``'s shape without ``axis``.
    x : torch.Tensor, floating
        The sequences that were pooled.
    axis : int, default -1
        The axis ``y`` pooled away.

    Returns
    -------
    torch.Tensor, float32 or wider, ``y``'s shape, values in [−1, 1]

    Examples
    --------
    >>> x = torch.tensor([0.0, 1.0, 3.0])
    >>> [round(pooling_position(autopool(x, a), x).item(), 3) for a in (0.0, 50.0, -50.0)]
    [0.0, 1.0, -1.0]

    Notebook: 05_autopool.ipynb
    """
    ax = _check_axis(x, axis)
    if tuple(y.shape) != tuple(x.shape[:ax] + x.shape[ax + 1:]):
        raise ValueError(f"y must have x's shape without axis {axis}: x {tuple(x.shape)}, y {tuple(y.shape)}")
    work = torch.promote_types(x.dtype, torch.float32)
    x, y = x.to(work), y.to(work)
    mean, lo, hi = x.mean(ax), x.amin(ax), x.amax(ax)
    tiny = torch.finfo(work).tiny
    up = (y - mean) / (hi - mean).clamp(min=tiny)
    down = (y - mean) / (mean - lo).clamp(min=tiny)
    # Rounding can put y a hair outside [min, max], or off the mean of a constant slice.
    rho = torch.where(y >= mean, up, down).clamp(-1.0, 1.0)
    return torch.where(hi == lo, torch.zeros_like(rho), rho)


class AutoPool(nn.Module):
    r"""Auto-pooling layer with one learned sharpness ``alpha`` per output dimension.

    .. math::

        y_c = \sum_t x_{t,c}\, \mathrm{softmax}_t(\alpha_c\, x_{t,c})

    ``alpha`` is initialised to 0, so a fresh layer is mean pooling; training moves each
    ``alpha_c`` towards max (``+inf``) or min (``-inf``) pooling as the task asks.

    Parameters
    ----------
    n_dims : int
        Number of output dimensions ``c`` (one ``alpha`` each); ``1`` shares a single
        ``alpha`` across all dimensions (and allows inputs without a channel axis).
    axis : int, default -1
        The axis pooled away (the time axis).
    constrained : bool, default False
        Keep ``alpha >= 0`` (McFee et al.'s constrained AutoPool: between mean and max). It is
        enforced by projection, as with a Keras weight constraint: the forward pass uses
        ``clamp(alpha, min=0)``, and in training mode the stored parameter is first projected
        back onto ``alpha >= 0`` if an optimiser step left it negative, so a projected
        component is free to move up again at the next step. (A softplus reparametrisation
        could not start exactly at the mean, which the paper requires.)
    l2 : float, default 0.0
        L2 coefficient for :meth:`penalty` (McFee et al.'s regularised AutoPool). The layer
        never adds it to a loss by itself: add ``model_penalty = autopool_penalty(model)``.

    Attributes
    ----------
    alpha : torch.nn.Parameter, float32, shape (n_dims,)
        The raw parameter; :attr:`effective_alpha` is what the forward pass uses.

    Notes
    -----
    Input: a floating tensor whose channel axis, the last axis other than ``axis`` (``-1`` for
    ``(B, T, d)`` pooled on ``axis=1``, ``-2`` for ``(B, C, T)`` pooled on ``axis=-1``), holds
    ``n_dims`` values (unless ``n_dims == 1``).
    Output: the same tensor with ``axis`` removed and the input's dtype.

    Notebook: 05_autopool.ipynb
    """

    def __init__(self, n_dims: int, axis: int = -1, constrained: bool = False, l2: float = 0.0) -> None:
        super().__init__()
        self.n_dims = check_int("n_dims", n_dims)
        if not is_int(axis):
            raise TypeError(f"axis must be an int, got {axis!r}")
        if not isinstance(l2, numbers.Real) or l2 < 0 or l2 != l2:
            raise ValueError(f"l2 must be a non-negative number, got {l2!r}")
        self.axis = int(axis)
        self.constrained = bool(constrained)
        self.l2 = float(l2)
        # Initialised to 0 = mean pooling, as in McFee et al. (2018).
        self.alpha = nn.Parameter(torch.zeros(self.n_dims))

    @property
    def effective_alpha(self) -> torch.Tensor:
        """The ``alpha`` the forward pass uses: clamped at 0 when constrained, shape (n_dims,)."""
        return self.alpha.clamp(min=0.0) if self.constrained else self.alpha

    def _alpha_shape(self, x: torch.Tensor) -> tuple[int, ...]:
        """Shape that broadcasts ``alpha`` along the channel axis of ``x``."""
        ax = _check_axis(x, self.axis)
        if self.n_dims == 1:
            return (1,) * x.ndim
        if x.ndim < 2:
            raise ValueError(f"AutoPool(n_dims={self.n_dims}) needs a channel axis besides the "
                             f"pooled one; got an input of shape {tuple(x.shape)}")
        cax = x.ndim - 1 if ax != x.ndim - 1 else x.ndim - 2
        if x.shape[cax] != self.n_dims:
            raise ValueError(f"AutoPool has n_dims={self.n_dims} but the input has {x.shape[cax]} "
                             f"along its channel axis {cax} (shape {tuple(x.shape)}, pooled axis {ax})")
        return tuple(self.n_dims if i == cax else 1 for i in range(x.ndim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pool ``x`` over :attr:`axis`; see the class docstring for shapes."""
        if self.constrained and self.training:
            # Lazy projection (projected gradient descent): runs at most once per optimiser
            # step, before alpha enters any graph of that step, so autograd is not disturbed.
            with torch.no_grad():
                if bool((self.alpha < 0).any()):
                    self.alpha.clamp_(min=0.0)
        alpha = self.effective_alpha.reshape(self._alpha_shape(x))
        return autopool(x, alpha, axis=self.axis)

    def penalty(self) -> torch.Tensor:
        """L2 regulariser ``l2 * sum(alpha**2)`` (a 0-d tensor; zero when ``l2 == 0``).

        Notebook: 05_autopool.ipynb
        """
        return self.l2 * (self.effective_alpha ** 2).sum()

    def extra_repr(self) -> str:
        return (f"n_dims={self.n_dims}, axis={self.axis}, constrained={self.constrained}, "
                f"l2={self.l2}")


def autopool_penalty(model: nn.Module) -> torch.Tensor:
    """Sum of :meth:`AutoPool.penalty` over every AutoPool layer inside ``model``.

    Add it to the training loss: ``loss = triplet + autopool_penalty(model)``. Returns a 0-d
    zero tensor when the model has no AutoPool layer.

    Parameters
    ----------
    model : torch.nn.Module

    Returns
    -------
    torch.Tensor, 0-d, in the dtype of the model's first parameter (float32 without one)

    Notebook: 05_autopool.ipynb
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"autopool_penalty() needs an nn.Module, got {type(model).__name__}")
    first = next(model.parameters(), torch.zeros(()))
    zero = torch.zeros((), device=first.device, dtype=first.dtype)
    # left to right, as the modules come, from an exact 0 (the result without an AutoPool layer)
    return sum((m.penalty() for m in model.modules() if isinstance(m, AutoPool)), start=zero)
