"""Gradients per module: their norms, per-module clipping (the report page's v12b on:
denoiser 1.0, pair_stack 0.5) and the cosine agreement of the loss terms' gradients."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import torch
from torch import Tensor, nn

from ptk.models.optim.modules import group_of, module_matches

__all__ = ["clip_by_module", "gradient_cosines", "module_grad_norm"]


def _grads(params: Iterable[nn.Parameter]) -> list[Tensor]:
    return [p.grad for p in params if p.grad is not None]


def module_grad_norm(model: nn.Module, module: str) -> float:
    """L2 norm of the gradients of every parameter ``module`` owns (``inf``/``nan`` propagate)."""
    grads = _grads(p for n, p in model.named_parameters() if module_matches(n, module))
    if not grads:
        return 0.0
    return float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])))


def clip_by_module(model: nn.Module, clip: Mapping[str, float]) -> dict[str, float]:
    """Clip each module's gradient to its own max norm (v12b: global clipping let the denoiser
    take the whole gradient budget and starve the pair stack). ``"*"`` covers every parameter no
    other entry claims. Returns the pre-clip norm per entry."""
    if not clip:
        return {}
    owned: dict[str, list[nn.Parameter]] = {key: [] for key in clip}
    for name, param in model.named_parameters():
        if param.grad is None:
            continue
        group = group_of(name, [k for k in clip if k != "*"])
        if group == "*" and "*" not in clip:
            continue
        owned[group].append(param)
    norms = {}
    for key, params in owned.items():
        if params:
            norms[key] = float(torch.nn.utils.clip_grad_norm_(params, float(clip[key])))
    return norms


def gradient_cosines(
    terms: Mapping[str, Tensor], params: list[nn.Parameter]
) -> tuple[list[str], Tensor, Tensor]:
    """Agreement of the loss terms' gradients: each term's gradient over ``params`` (one
    backward each, the graph kept), then the cosine similarity of every pair.

    Returns:
        ``(names, cosine [k, k], norm [k])``; a term with no gradient (norm 0) has NaN cosines.
    """
    names = list(terms)
    flat = []
    for name in names:
        grads = torch.autograd.grad(terms[name], params, retain_graph=True, allow_unused=True)
        flat.append(torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1).float()
                               for g, p in zip(grads, params, strict=True)]))  # fmt: skip
    stacked = torch.stack(flat)
    norms = stacked.norm(dim=1)
    unit = stacked / norms.clamp(min=1e-30)[:, None]
    cosine = unit @ unit.T
    dead = norms == 0
    cosine[dead, :] = math.nan
    cosine[:, dead] = math.nan
    return names, cosine, norms
