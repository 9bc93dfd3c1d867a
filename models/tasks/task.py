"""The :class:`Task` interface: what the trainer (:mod:`ptk.models.trainer`), ``ptk train`` and
``ptk sample`` need of a model family."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ptk import runs
from ptk.errors import ConfigError
from ptk.models.optim import TrainConfig
from ptk.models.tasks.overrides import _jsonable, _set_path, split_overrides
from ptk.models.tasks.samples import _nanmean, _standard_error, write_and_score


class Task:
    """One trainable VERSION. Subclasses fill in the family-specific parts.

    Attributes:
        name: the version (``v13``, ``qfitlatent`` …); family: ``minifold``, ``contact-classifier``,
        ``qfitlatent`` or ``pallatom``; data_kind: ``cath`` or ``qfit`` shards;
        can_sample: whether DDIM sampling (and ``ptk sample``) applies;
        predicts_backbone: whether samples carry N/Cα/C/O (else Cα only);
        extra_columns: family metrics appended to each metrics.csv row.
    """

    name: str = ""
    family: str = ""
    data_kind: str = "cath"
    can_sample: bool = False
    predicts_backbone: bool = False
    extra_columns: tuple[str, ...] = ()
    parent: str | None = None
    changes: tuple[str, ...] = ()

    def __init__(self, size: str, overrides: Mapping[str, Any] | None = None) -> None:
        self.size = size
        self.overrides = dict(overrides or {})
        base = self.base_config()
        train_over, model_over = split_overrides(self.overrides, base)
        for path, value in model_over.items():
            _set_path(base, path, value)
        self.model_config = self.validate_config(base)
        self.train = TrainConfig.from_dict(train_over, base=TrainConfig.from_dict(self.base_train()))

    # --- subclass hooks
    def base_config(self) -> dict[str, Any]:
        raise NotImplementedError

    def validate_config(self, config: dict[str, Any]) -> dict[str, Any]:
        return config

    def base_train(self) -> dict[str, Any]:
        return {}

    def build_model(self) -> nn.Module:
        raise NotImplementedError

    def loss(
        self,
        model: nn.Module,
        batch: dict[str, Any],
        *,
        epoch: int,
        step: int,
        training: bool,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        raise NotImplementedError

    def extras(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, tuple[float, float]]:
        """Family metrics of one validation batch as (sum, count) pairs."""
        return {}

    def initialize(self, model: nn.Module, run_dir: Path) -> list[str]:
        """Warm-start a fresh model (not on resume). Returns what was done, for the log."""
        return []

    # --- data
    @property
    def collate(self) -> Callable[[list[dict[str, Any]]], dict[str, Any]]:
        from ptk import shards

        return shards.collate_qfit if self.data_kind == "qfit" else shards.collate_cath

    def dataset(
        self, path: str | Path, *, max_length: int | None, crop: str, seed: int, split: str | None = None
    ) -> Any:
        from ptk import shards

        cls = shards.QfitDataset if self.data_kind == "qfit" else shards.CathDataset
        kwargs: dict[str, Any] = {"max_length": max_length, "crop": crop, "seed": seed}
        if split is not None:
            kwargs["split"] = split
        return cls(str(path), **kwargs)

    # --- config.json
    def describe(self) -> dict[str, Any]:
        return {
            "version": self.name,
            "family": self.family,
            "parent": self.parent,
            "changes": list(self.changes),
            "size": self.size,
            "model": _jsonable(self.model_config),
            "train": _jsonable(self.train.to_dict()),
            "overrides": {
                k: (v if isinstance(v, int | float | bool) else str(v)) for k, v in self.overrides.items()
            },
        }

    # --- sampling
    def sample(
        self,
        model: nn.Module,
        batch: dict[str, Any],
        *,
        steps: int,
        eta: float,
        guidance: float,
        generator: torch.Generator | None,
    ) -> dict[str, Tensor | None]:
        raise ConfigError(f"version {self.name} is not a generative model; nothing to sample")

    def predict_x0(
        self, model: nn.Module, batch: dict[str, Any], *, t: int, generator: torch.Generator | None
    ) -> dict[str, Tensor | None] | None:
        return None

    def sample_and_evaluate(
        self,
        model: nn.Module,
        dataset: Any,
        out_dir: str | Path,
        *,
        n: int,
        steps: int,
        eta: float,
        guidance: float,
        x0_t: int,
        device: torch.device,
        generator: torch.Generator | None,
        batch_size: int,
        layout: str = "run",
        eval_name: str = runs.EVAL_NAME,
    ) -> dict[str, float]:
        """Sample the first ``n`` examples of ``dataset`` (DDIM from ``model``, and the one-step
        x0 prediction), write PDBs and ``eval.csv`` under ``out_dir`` and return the mean DDIM
        ``tm``, ``rmsd``, ``gdt_ts``, ``gdt_ha``, ``lddt``, and ``tm_se``, the standard error of
        the mean TM (sample standard deviation / √n; NaN for one structure).

        ``layout="run"``: ``ddim/ x0/ ref/`` (run folder samples); ``layout="flat"``: the DDIM
        samples directly in ``out_dir`` plus ``ref/`` and ``x0/`` (``ptk sample``, read by
        ``ptk eval --pred DIR --ref DIR/ref``); :func:`ptk.runs.sample_folders` names them and
        :func:`ptk.runs.write_eval_csv` writes the scores.
        """
        from ptk.models.trainer import to_device

        out_dir = Path(out_dir)
        dirs = runs.sample_folders(out_dir, layout)
        rows: list[dict[str, Any]] = []
        model.eval()
        count = min(n, len(dataset)) if n > 0 else len(dataset)
        for start in range(0, count, batch_size):
            items = [dataset[i] for i in range(start, min(count, start + batch_size))]
            batch = to_device(self.collate(items), device)
            with torch.no_grad():
                ddim = self.sample(model, batch, steps=steps, eta=eta, guidance=guidance, generator=generator)
                x0 = self.predict_x0(model, batch, t=x0_t, generator=generator)
            preds = {"ddim": ddim} if x0 is None else {"ddim": ddim, "x0": x0}
            rows.extend(write_and_score(batch, preds, dirs))
        runs.write_eval_csv(out_dir / eval_name, rows)
        ddim_rows = [r for r in rows if r["method"] == "ddim"]
        if not ddim_rows:
            return {}
        means = {k: _nanmean([r[k] for r in ddim_rows]) for k in ("tm", "rmsd", "gdt_ts", "gdt_ha", "lddt")}
        return {**means, "tm_se": _standard_error([r["tm"] for r in ddim_rows])}


class RegisteredTask(Task):
    """A task whose version is a ``models/versions/`` TOML file: its config and recipe are the
    file's tables at the size (:func:`ptk.models.registry.version_tables`)."""

    def __init__(self, name: str, size: str, overrides: Mapping[str, Any] | None = None) -> None:
        from ptk.models import registry

        self.name = name
        self.tables = registry.version_tables(name, size)
        self.changes = registry.describe(name).changes
        super().__init__(size, overrides)

    def base_config(self) -> dict[str, Any]:
        return {"model": dict(self.tables["model"])}

    def base_train(self) -> dict[str, Any]:
        return dict(self.tables["train"])
