"""Which recipe entry owns a parameter: the dotted module paths that ``lr_groups``, ``clip``
and the tripwire name, matched at any depth, and the check that each names a trainable module.
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn

from ptk.errors import ConfigError

__all__ = ["check_modules", "group_of", "module_matches"]


def module_matches(param_name: str, module: str) -> bool:
    """True when ``module`` (a dotted module path such as ``pair_stack`` or
    ``denoiser.backbone_head``) names a module that owns ``param_name``, at any depth.

    Matching at any depth is deliberate: the report page's v14 bug was an LR group keyed on
    ``model.backbone_head`` while the head lived at ``model.denoiser.backbone_head``.
    """
    if module == "*":
        return True
    return f".{param_name}".find(f".{module}.") >= 0


def group_of(name: str, modules: Iterable[str]) -> str:
    """The most specific (longest) module entry owning ``name``, or ``"*"``."""
    best = "*"
    for module in modules:
        if module != "*" and module_matches(name, module) and len(module) > len(best if best != "*" else ""):
            best = module
    return best


def _top_level_modules(model: nn.Module) -> list[str]:
    return sorted({name.split(".")[0] for name, _ in model.named_parameters()})


def check_modules(model: nn.Module, modules: Iterable[str], what: str) -> None:
    """ConfigError when a recipe names a module that owns no trainable parameter."""
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    for module in modules:
        if module != "*" and not any(module_matches(n, module) for n in names):
            raise ConfigError(
                f"{what} names module {module!r}, which owns no trainable parameter; "
                f"top-level modules: {', '.join(_top_level_modules(model))}"
            )
