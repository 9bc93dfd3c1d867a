"""fp32 islands: the places where half precision is known to overflow or underflow.

The Mini-Fold report (``../shared/seeds/minifold_report_page.txt``, "v13 Numerical Stability
Fixes") found three fp16 failures: ``clamp(min=1e-6)`` underflowing to 0 in Gram-Schmidt and
slerp, the IPA point-attention logits overflowing ``exp``, and the triangle einsum's
L-term accumulation overflowing 65504. Those computations run inside :func:`fp32_island`
on inputs passed through :func:`upcast`.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["fp32_island", "upcast"]

_HALF = (torch.float16, torch.bfloat16)


def upcast(x: Tensor) -> Tensor:
    """``x`` as float32 when it is a half-precision float, else unchanged (float64 stays)."""
    return x.float() if x.dtype in _HALF else x


def fp32_island(reference: Tensor) -> torch.autocast:
    """A context in which autocast is off on ``reference``'s device, so ops keep their inputs'
    dtype (pass them through :func:`upcast` first)."""
    return torch.autocast(device_type=reference.device.type, enabled=False)
