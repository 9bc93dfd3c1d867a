"""Linear layers with the AlphaFold2 initialisations (Jumper et al. 2021, supplementary 1.11.4).

``init`` names how the weight starts:

- ``"default"``: LeCun (fan-in) truncated normal, std √(1/fan_in);
- ``"relu"``: He truncated normal, std √(2/fan_in), for layers followed by a ReLU;
- ``"glorot"``: Xavier uniform, for attention projections;
- ``"gating"``: weight 0, bias 1 (a sigmoid gate that starts open);
- ``"final"``: weight 0 (and bias 0), for the last layer of a residual branch, so the block
  starts as the identity.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from ptk.errors import unknown_choice

__all__ = ["Init", "INITS", "Linear", "LinearNoBias", "init_linear"]

Init = Literal["default", "relu", "glorot", "gating", "final"]
INITS: tuple[str, ...] = ("default", "relu", "glorot", "gating", "final")

# std of a unit normal truncated to [-2, 2]; dividing by it restores the intended variance.
_TRUNCATED_STD = 0.87962566103423978


def _trunc_normal_(weight: torch.Tensor, scale: float) -> None:
    fan_in = weight.shape[1]
    std = math.sqrt(scale / max(1, fan_in)) / _TRUNCATED_STD
    with torch.no_grad():
        nn.init.trunc_normal_(weight, mean=0.0, std=std, a=-2.0 * std, b=2.0 * std)


def init_linear(layer: nn.Linear, init: str = "default") -> None:
    """Initialise ``layer`` in place with one of :data:`INITS` (the bias, if any, to 0 or 1)."""
    if init not in INITS:
        raise unknown_choice("linear init", init, INITS)
    with torch.no_grad():
        if init == "default":
            _trunc_normal_(layer.weight, 1.0)
        elif init == "relu":
            _trunc_normal_(layer.weight, 2.0)
        elif init == "glorot":
            nn.init.xavier_uniform_(layer.weight, gain=1.0)
        else:  # gating, final
            layer.weight.zero_()
        if layer.bias is not None:
            layer.bias.fill_(1.0 if init == "gating" else 0.0)


class Linear(nn.Linear):
    """``nn.Linear`` with an AlphaFold2 initialisation (see the module docstring)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, init: Init = "default"):
        super().__init__(in_features, out_features, bias=bias)
        self.init = init
        init_linear(self, init)


class LinearNoBias(Linear):
    """A bias-free :class:`Linear` (AF2's ``LinearNoBias``, e.g. Alg. 22 lines 1–3)."""

    def __init__(self, in_features: int, out_features: int, init: Init = "default"):
        super().__init__(in_features, out_features, bias=False, init=init)
