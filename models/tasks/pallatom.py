"""The Pallatom tasks: configurations of the Pallatom atom transformer and losses."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from torch import nn

from ptk.models.tasks.task import Task

#: The Pallatom configurations the trainer knows; each is a small config over the Pallatom atom
#: transformer and the Pallatom losses.
PALLATOM_VERSIONS: dict[str, dict[str, Any]] = {
    "pallatom-refiner": {
        "description": "all-atom refiner: denoise noised heavy atoms of a cath domain with the Pallatom "
        "atom transformer (feature encoder -> attention decoder over the sparse residue window); "
        "loss = Kabsch-aligned atom MSE / sigma^2 + smooth lDDT",
        "default": {
            "c_atom": 128, "c_atompair": 16, "c_token": 128, "c_pair": 16, "n_blocks": 3, "n_heads": 4,
            "window_size": 32, "max_rel_pos": 32, "coord_scale": 10.0, "noise_min": 0.5, "noise_max": 4.0,
            "w_atom": 1.0, "w_lddt": 1.0,
        },
        # memorises a few CATH domains in CPU minutes (benchmarks/learning.py): tiny, twice as wide
        "small": {
            "c_atom": 64, "c_atompair": 16, "c_token": 64, "c_pair": 16, "n_blocks": 1, "n_heads": 4,
            "window_size": 8, "max_rel_pos": 8, "coord_scale": 10.0, "noise_min": 0.5, "noise_max": 4.0,
            "w_atom": 1.0, "w_lddt": 1.0,
        },
        "tiny": {
            "c_atom": 32, "c_atompair": 8, "c_token": 32, "c_pair": 8, "n_blocks": 1, "n_heads": 2,
            "window_size": 8, "max_rel_pos": 8, "coord_scale": 10.0, "noise_min": 0.5, "noise_max": 4.0,
            "w_atom": 1.0, "w_lddt": 1.0,
        },
    },
}  # fmt: skip

_LOSS_KEYS = ("w_atom", "w_lddt")


class PallatomTask(Task):
    """A Pallatom configuration (:data:`PALLATOM_VERSIONS`): the refiner of
    :mod:`ptk.models.pallatom.refiner` at a given size."""

    family = "pallatom"
    data_kind = "cath"

    def __init__(self, name: str, size: str, overrides: Mapping[str, Any] | None = None) -> None:
        self.name = name
        self.changes = (PALLATOM_VERSIONS[name]["description"],)
        super().__init__(size, overrides)

    def base_config(self) -> dict[str, Any]:
        return {"model": dict(PALLATOM_VERSIONS[self.name][self.size])}

    def validate_config(self, config: dict[str, Any]) -> dict[str, Any]:
        from ptk.models.pallatom.refiner import RefinerConfig

        model = dict(config["model"])
        self.rcfg = RefinerConfig.from_dict({k: v for k, v in model.items() if k not in _LOSS_KEYS})
        return {"model": {**dataclasses.asdict(self.rcfg), **{k: model[k] for k in _LOSS_KEYS}}}

    def base_train(self) -> dict[str, Any]:
        recipe = {
            "lr": 3e-4,
            "min_lr": 1e-5,
            "schedule": "warmup_cosine",
            "warmup_epochs": 1,
            "batch_size": 4,
            "epochs": 30,
            "clip": {"*": 1.0},
            "sample_every": 0,
            "max_length": 128,
        }
        if self.size == "small":
            recipe.update(lr=3e-3, warmup_epochs=0, batch_size=1, epochs=150, ema_decay=0.99)
        elif self.size == "tiny":
            recipe.update(lr=1e-3, warmup_epochs=0, batch_size=2, epochs=2, max_length=64)
        return recipe

    def build_model(self) -> nn.Module:
        from ptk.models.pallatom.refiner import AtomRefiner

        return AtomRefiner(self.rcfg)

    def loss(self, model, batch, *, epoch, step, training, generator=None):
        from ptk.models.pallatom.refiner import refiner_loss

        m = self.model_config["model"]
        return refiner_loss(model, batch, w_atom=m["w_atom"], w_lddt=m["w_lddt"], generator=generator)
