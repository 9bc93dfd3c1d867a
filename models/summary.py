"""Parameter counts of a model, whole and per top-level block (for ``ptk versions`` and reports)."""

from __future__ import annotations

from torch import nn

__all__ = ["count_parameters", "parameter_table"]


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters (shared tensors counted once)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def parameter_table(module: nn.Module, depth: int = 1) -> dict[str, int]:
    """``{child name: parameter count}`` for the submodules ``depth`` levels down, plus
    ``"total"``; parameters held directly by a parent appear under ``"<parent>.(own)"``."""
    table: dict[str, int] = {}

    def visit(mod: nn.Module, prefix: str, level: int) -> None:
        own = sum(p.numel() for p in mod.parameters(recurse=False))
        if level == depth or not list(mod.children()):
            table[prefix or "(root)"] = count_parameters(mod)
            return
        if own:
            table[f"{prefix}.(own)" if prefix else "(own)"] = own
        for name, child in mod.named_children():
            visit(child, f"{prefix}.{name}" if prefix else name, level + 1)

    visit(module, "", 0)
    table["total"] = count_parameters(module)
    return table
