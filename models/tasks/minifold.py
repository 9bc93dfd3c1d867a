"""The Mini-Fold task: versions of the Mini-Fold registry (denoisers v10 … v14 and the
stage-1 contact classifier)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ptk.errors import ConfigError
from ptk.models.tasks.overrides import _config_dict
from ptk.models.tasks.task import Task
from ptk.models.tasks.warm_start import _ema_state, _resolve_checkpoint, load_partial

#: An epoch past every loss-weight anneal of the Mini-Fold recipes (validation weights).
_ANNEALED_EPOCH = 10**6

log = logging.getLogger("ptk.train")


class MiniFoldTask(Task):
    """A Mini-Fold registry version (denoisers v10 … v14, and the stage-1 contact classifier)."""

    def __init__(self, name: str, size: str, overrides: Mapping[str, Any] | None = None) -> None:
        from ptk.models import minifold

        self._mf = minifold
        self.name = name
        self._version = minifold.load_version(name, size)
        self.parent = self._version.parent
        self.changes = tuple(self._version.changes)
        self.init_from = self._version.init_from
        self.init_fresh = self._version.init_fresh
        self.encoder_from = self._version.encoder_from
        classifier = self._version.family in ("contact-classifier", "classifier")
        self.family = "contact-classifier" if classifier else "minifold"
        self.can_sample = not classifier
        if classifier:
            self.extra_columns = (
                "contact_precision",
                "top_l_long",
                "top_l5_long",
                "class_acc",
                "arch_acc",
                "contact_recall",
                "bce",
            )
        super().__init__(size, overrides)
        # one recipe: the trainer's (with --set applied) is also the one saved in the version config
        config = dict(self.model_config)
        config["train"] = self.train.to_dict()
        self.version_config = self._mf.VersionConfig.from_dict(config)
        self.model_config = _config_dict(self.version_config)
        self.predicts_backbone = self._predicts_backbone()

    def base_config(self) -> dict[str, Any]:
        config = _config_dict(self._version)
        config.pop("train", None)  # the recipe is TrainConfig's (see __init__)
        return config

    def validate_config(self, config: dict[str, Any]) -> dict[str, Any]:
        return _config_dict(self._mf.VersionConfig.from_dict(config))

    def base_train(self) -> dict[str, Any]:
        return dict(self._version.train)

    def initialize(self, model: nn.Module, run_dir: Path) -> list[str]:
        """Warm-start weights the version asks for (init_from, encoder_from). Returns log lines."""
        notes = []
        init = _resolve_checkpoint(self.train.init_checkpoint, run_dir, self.init_from)
        if init is not None:
            notes.append(load_partial(model, _ema_state(init), self.init_fresh) + f" from {init}")
        elif self.init_from:
            notes.append(
                f"init_from {self.init_from}: no run at {run_dir.parent / self.init_from}; from scratch"
            )
        if self.family == "minifold" and self.encoder_from:
            notes.append(self._initialize_encoder(model, run_dir))
        return notes

    def _initialize_encoder(self, model: nn.Module, run_dir: Path) -> str:
        """The sequence encoder as ``train.encoder`` asks (see :class:`TrainConfig`)."""
        mode = self.train.encoder
        if mode == "random":
            if self.train.encoder_checkpoint:
                raise ConfigError("--set encoder=random contradicts encoder_checkpoint; drop one of them")
            log.warning("encoder=random: the sequence encoder stays frozen at its random initialisation")
            return "frozen encoder: random initialisation (encoder=random)"
        enc = _resolve_checkpoint(self.train.encoder_checkpoint, run_dir, self.encoder_from)
        if enc is None and mode == "stage1":
            stage1 = run_dir.parent / self.encoder_from
            raise ConfigError(
                f"{self.name} conditions on the trained stage-1 encoder of {self.encoder_from}, and there is "
                f"no {self.encoder_from} run at {stage1} (checkpoints/best.pt). Train it first "
                f"(ptk train --version {self.encoder_from} --data SHARDS --out {stage1}), or name one with "
                "--set encoder_checkpoint=PATH, or pass --set encoder=train to train the encoder with "
                "the rest (unfrozen), or --set encoder=random for a smoke test"
            )
        note = "encoder: trained from scratch with the rest (encoder=train)"
        if enc is not None:
            self._mf.load_encoder(model, _ema_state(enc))
            note = f"frozen encoder from {enc}"
        if mode == "train":
            model.unfreeze_encoder()
            if enc is not None:
                note = f"encoder from {enc}, trained with the rest (encoder=train)"
        return note

    def _predicts_backbone(self) -> bool:
        model_cfg = self.model_config.get("model", {})
        return bool(model_cfg.get("denoiser", {}).get("backbone_head", False))

    def build_model(self) -> nn.Module:
        model = self._mf.build_model(self.version_config)
        if self.family == "minifold" and self.encoder_from and self.train.encoder == "train":
            model.unfreeze_encoder()
        return model

    def loss_terms(self, model, batch, *, epoch, generator=None) -> dict[str, Tensor]:
        """The weighted training terms, in the graph (they sum to the training loss): for the
        trainer's gradient-agreement diagnostic (``grad_cosine_every``). Denoisers only."""
        if self.family != "minifold":
            return {}
        _, terms = self._mf.training_step_loss(
            model, batch, self.version_config, epoch, generator=generator, graph_terms=True
        )
        return terms

    def loss(self, model, batch, *, epoch, step, training, generator=None):
        # Validation weighs the terms as at the end of the anneals (bond β(e), v14's backbone
        # ramp): with epoch-dependent weights the validation total would grow with the epoch by
        # construction, and early stopping / best.pt would always favour the first epochs.
        # val_weights = epoch is the page's Val Total.
        weight_epoch = epoch if training or self.train.val_weights == "epoch" else _ANNEALED_EPOCH
        return self._mf.training_step_loss(
            model, batch, self.version_config, weight_epoch, generator=generator
        )

    def extras(self, model, batch):
        """Stage-1 table metrics over the whole validation set: class and architecture accuracy
        (labelled domains only), contact recall at p > 0.5 (pairs ``contact_min_sep`` apart),
        class-balanced contact BCE (example-weighted)."""
        if self.family != "contact-classifier":
            return {}
        from ptk.models.minifold.contact_classifier import classifier_loss

        out = model(batch)
        _, terms = classifier_loss(out, batch, self.version_config.loss)
        y_class = self._mf.class_index(batch["cath_class"])
        y_arch = self._mf.arch_index(batch["cath_class"], batch["cath_architecture"])
        result = {}
        for name, logits, y in (
            ("class_acc", out["class_logits"], y_class),
            ("arch_acc", out["arch_logits"], y_arch),
        ):
            ok = y >= 0
            result[name] = (float((logits.argmax(-1) == y)[ok].sum()), float(ok.sum()))
        # one definition of the contact scores, the one ptk.metrics and the plots use
        from ptk.metrics import contact_metrics
        from ptk.models.minifold.contact_classifier import ca_trace

        scores = contact_metrics(torch.sigmoid(out["contact_logits"].float()), *ca_trace(batch))
        correct = float(scores["n_correct"].sum())
        result["contact_precision"] = (correct, float(scores["n_predicted"].sum()))
        result["contact_recall"] = (correct, float(scores["n_true"].sum()))
        for name in ("top_l_long", "top_l5_long"):  # mean over the chains that have a value
            finite = torch.isfinite(scores[name])
            result[name] = (float(scores[name][finite].sum()), float(finite.sum()))
        size = float(batch["residue_mask"].shape[0])
        result["bce"] = (float(terms["contact_bce"]) * size, size)
        return result

    def sample(self, model, batch, *, steps, eta, guidance, generator):
        return self._mf.sample(
            model,
            self.version_config,
            batch["aatype"],
            batch["residue_mask"],
            steps=steps,
            eta=eta,
            guidance=guidance,
            generator=generator,
        )

    def predict_x0(self, model, batch, *, t, generator):
        if not hasattr(self._mf, "predict_x0"):
            return None
        return self._mf.predict_x0(model, self.version_config, batch, t=t, generator=generator)
