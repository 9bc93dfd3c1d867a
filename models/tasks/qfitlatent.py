"""The qFitLatent task (``qfitlatent_readme.txt``), trained on ``qfit`` shards."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from ptk.models.tasks.task import RegisteredTask


class QFitLatentTask(RegisteredTask):
    """qFitLatent: SE(3)-invariant IPA trunk → per-residue von Mises mixture over χ1–χ4,
    occupancy-weighted NLL on the valid residues (``qfitlatent_readme.txt``); sizes and recipes
    in ``models/versions/qfitlatent.toml``."""

    family = "qfitlatent"
    data_kind = "qfit"
    extra_columns = ("val_nll_residue", "val_chi_acc_1", "val_chi_acc_2", "val_chi_acc_3", "val_chi_acc_4")

    def __init__(self, name: str, size: str, overrides: Mapping[str, Any] | None = None) -> None:
        from ptk.models import qfitlatent

        self._q = qfitlatent
        super().__init__(name, size, overrides)

    def base_config(self) -> dict[str, Any]:
        # every field, so that --set reaches the ones the version file leaves at their default
        return {"model": self._q.QFitLatentConfig.from_dict(self.tables["model"]).to_dict()}

    def validate_config(self, config: dict[str, Any]) -> dict[str, Any]:
        self.qcfg = self._q.QFitLatentConfig.from_dict(config["model"])
        return {"model": self.qcfg.to_dict()}

    def build_model(self) -> nn.Module:
        return self._q.build_model(self.qcfg)

    def loss(self, model, batch, *, epoch, step, training, generator=None):
        info = {"epoch": epoch, "step": step, "training": training}
        return self._q.compute_loss(model, batch, info)

    def extras(self, model, batch):
        """Residue-weighted validation NLL (``val_nll_residue``; the loss term's ``val_nll`` is the
        mean over batches) and top-mode χ accuracy (hits / defined χ)."""
        q = self._q
        outputs = model(batch)
        mixture = q.mixture_from_outputs(outputs)
        valid = batch["valid"].bool() & outputs["mask"]
        _, per_residue = q.qfit_nll(
            mixture, batch["chi"], batch["chi_mask"], batch["occupancy"], batch["chi_symmetric"],
            valid, batch.get("altloc_mask"),
        )  # fmt: skip
        result = {"val_nll_residue": (float(per_residue[valid].sum()), float(valid.sum()))}
        hits, counts = q.chi_accuracy(mixture, batch)
        for d in range(min(4, hits.shape[0])):
            result[f"val_chi_acc_{d + 1}"] = (float(hits[d]), float(counts[d]))
        return result
