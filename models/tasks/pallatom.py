"""The Pallatom tasks: configurations of the Pallatom atom transformer and losses."""

from __future__ import annotations

import dataclasses
from typing import Any

from torch import nn

from ptk.models.tasks.task import RegisteredTask

_LOSS_KEYS = ("w_atom", "w_lddt")


class PallatomTask(RegisteredTask):
    """A Pallatom configuration (``models/versions/pallatom-*.toml``): the refiner of
    :mod:`ptk.models.pallatom.refiner` at a given size; its ``model`` table holds
    :class:`~ptk.models.pallatom.refiner.RefinerConfig`'s fields and the loss weights."""

    family = "pallatom"
    data_kind = "cath"

    def validate_config(self, config: dict[str, Any]) -> dict[str, Any]:
        from ptk.models.pallatom.refiner import RefinerConfig

        model = dict(config["model"])
        self.rcfg = RefinerConfig.from_dict({k: v for k, v in model.items() if k not in _LOSS_KEYS})
        return {"model": {**dataclasses.asdict(self.rcfg), **{k: model[k] for k in _LOSS_KEYS}}}

    def build_model(self) -> nn.Module:
        from ptk.models.pallatom.refiner import AtomRefiner

        return AtomRefiner(self.rcfg)

    def loss(self, model, batch, *, epoch, step, training, generator=None):
        from ptk.models.pallatom.refiner import refiner_loss

        m = self.model_config["model"]
        return refiner_loss(model, batch, w_atom=m["w_atom"], w_lddt=m["w_lddt"], generator=generator)
