"""The qFitLatent task (``qfitlatent_readme.txt``), trained on ``qfit`` shards."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from ptk.models.tasks.task import Task


class QFitLatentTask(Task):
    """qFitLatent: SE(3)-invariant IPA trunk → per-residue von Mises mixture over χ1–χ4,
    occupancy-weighted NLL on the valid residues (``qfitlatent_readme.txt``). AdamW 3e-4, cosine
    to lr/100, batch size 1 (one full protein per step)."""

    name = "qfitlatent"
    family = "qfitlatent"
    data_kind = "qfit"
    extra_columns = ("val_nll", "val_chi_acc_1", "val_chi_acc_2", "val_chi_acc_3", "val_chi_acc_4")
    changes = ("SE(3)-invariant IPA trunk with a von Mises mixture head over chi1-4",)

    def __init__(self, size: str, overrides: Mapping[str, Any] | None = None) -> None:
        from ptk.models import qfitlatent

        self._q = qfitlatent
        super().__init__(size, overrides)

    def base_config(self) -> dict[str, Any]:
        cls = self._q.QFitLatentConfig
        sized = {"default": cls, "small": cls.small, "tiny": cls.tiny}[self.size]
        return {"model": sized().to_dict()}

    def validate_config(self, config: dict[str, Any]) -> dict[str, Any]:
        self.qcfg = self._q.QFitLatentConfig.from_dict(config["model"])
        return {"model": self.qcfg.to_dict()}

    def base_train(self) -> dict[str, Any]:
        # README "Optimization": AdamW 3e-4, cosine annealing to lr/100 over the run, batch size 1;
        # small and tiny train short runs: lr 3e-3, and small an EMA of 0.99 (0.999 would still
        # be a third of the initialisation after 1,200 steps)
        recipe = {
            "lr": 3e-4,
            "min_lr": 3e-6,
            "schedule": "cosine",
            "batch_size": 1,
            "grad_accum": 1,
            "epochs": 50,
            "clip": {"*": 1.0},
            "sample_every": 0,
            "max_length": 1024,
            "patience": 15,
        }
        if self.size == "small":
            recipe.update(lr=3e-3, min_lr=1e-5, ema_decay=0.99, epochs=300)
        elif self.size == "tiny":
            recipe.update(lr=3e-3, min_lr=3e-5, epochs=2, max_length=64)
        return recipe

    def build_model(self) -> nn.Module:
        return self._q.build_model(self.qcfg)

    def loss(self, model, batch, *, epoch, step, training, generator=None):
        info = {"epoch": epoch, "step": step, "training": training}
        return self._q.compute_loss(model, batch, info)

    def extras(self, model, batch):
        """Residue-weighted validation NLL and top-mode χ accuracy (hits / defined χ)."""
        q = self._q
        outputs = model(batch)
        mixture = q.mixture_from_outputs(outputs)
        valid = batch["valid"].bool() & outputs["mask"]
        _, per_residue = q.qfit_nll(
            mixture, batch["chi"], batch["chi_mask"], batch["occupancy"], batch["chi_symmetric"],
            valid, batch.get("altloc_mask"),
        )  # fmt: skip
        result = {"val_nll": (float(per_residue[valid].sum()), float(valid.sum()))}
        hits, counts = q.chi_accuracy(mixture, batch)
        for d in range(min(4, hits.shape[0])):
            result[f"val_chi_acc_{d + 1}"] = (float(hits[d]), float(counts[d]))
        return result
