"""The conventions every loss of :mod:`ptk.models.losses` follows, as code: fp32 inside
(:func:`fp32`), bool masks where ``None`` means all valid (:func:`valid_mask`), means over valid
elements only that give 0 when nothing is valid (:func:`masked_mean`), invalid points zeroed so
they cannot poison sums (:func:`zero_invalid`), and the masked cross-entropy of the distogram and
sequence terms (:func:`cross_entropy`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor

from ptk.models.precision import fp32_island, upcast

__all__ = ["all_finite", "cross_entropy", "fp32", "masked_mean", "valid_mask", "zero_invalid"]

_F = TypeVar("_F", bound=Callable[..., Tensor])


def _up(x: object) -> object:
    if isinstance(x, Tensor):
        return upcast(x)
    if isinstance(x, list | tuple) and any(isinstance(v, Tensor) for v in x):
        return type(x)(upcast(v) if isinstance(v, Tensor) else v for v in x)
    return x


def _first_tensor(values: Sequence[object]) -> Tensor | None:
    for v in values:
        if isinstance(v, Tensor):
            return v
        if isinstance(v, list | tuple):
            found = _first_tensor(v)
            if found is not None:
                return found
    return None


def fp32(fn: _F) -> _F:
    """Run ``fn`` with half-precision tensor arguments cast to fp32 and autocast disabled."""

    @functools.wraps(fn)
    def wrapper(*args: object, **kwargs: object) -> Tensor:
        args = tuple(_up(a) for a in args)
        kwargs = {k: _up(v) for k, v in kwargs.items()}
        ref = _first_tensor(list(args) + list(kwargs.values()))
        if ref is None:
            return fn(*args, **kwargs)
        with fp32_island(ref):
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def valid_mask(mask: Tensor | None, shape: torch.Size, device: torch.device) -> Tensor:
    """A bool mask of ``shape`` (``None`` → all True; float masks: nonzero = valid)."""
    if mask is None:
        return torch.ones(shape, dtype=torch.bool, device=device)
    return (mask != 0).expand(shape) if mask.dtype != torch.bool else mask.expand(shape)


def all_finite(x: Tensor) -> Tensor:
    return torch.isfinite(x).all(-1)


def masked_mean(x: Tensor, mask: Tensor, dims: int) -> Tensor:
    """Mean of ``x`` over its last ``dims`` dims where ``mask``; 0 where nothing is valid."""
    axes = tuple(range(-dims, 0))
    x = torch.where(mask, x, torch.zeros_like(x))
    return x.sum(axes) / mask.sum(axes).clamp(min=1).to(x.dtype)


def zero_invalid(x: Tensor, mask: Tensor) -> Tensor:
    """Points with a False mask (or NaN coordinates) replaced by 0, so they cannot poison sums."""
    return torch.where(mask[..., None], x, torch.zeros_like(x))


def cross_entropy(logits: Tensor, y: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Per-element −Σ_b y_b log softmax(logits)_b with one-hot/soft ``y`` ``[..., nb]`` or integer
    ``y`` ``[...]`` (out-of-range indices, e.g. −1, count as masked)."""
    n_bins = logits.shape[-1]
    logp = F.log_softmax(logits, dim=-1)
    if y.dim() == logits.dim():
        if y.shape[-1] != n_bins:
            raise ValueError(f"one-hot targets have {y.shape[-1]} bins, logits {n_bins}")
        nll = -(y.to(logp.dtype) * logp).sum(-1)
    elif y.dim() == logits.dim() - 1:
        if y.is_floating_point():
            raise TypeError("index targets must be integers (one-hot targets carry the bin axis)")
        in_range = (y >= 0) & (y < n_bins)
        mask = mask & in_range
        nll = -logp.gather(-1, y.long().clamp(0, n_bins - 1)[..., None])[..., 0]
    else:
        raise ValueError(
            f"targets of shape {tuple(y.shape)} fit neither logits {tuple(logits.shape)} "
            "(one-hot) nor their leading dims (indices)"
        )
    return nll, mask
