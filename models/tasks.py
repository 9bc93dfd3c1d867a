"""Task adapters: how each trainable VERSION is built, fed, scored and sampled.

``ptk train --version V`` and ``ptk sample`` resolve V here, so the trainer
(:mod:`ptk.models.trainer`) never imports a model family itself. VERSION is

- a Mini-Fold version from :mod:`ptk.models.minifold` (v10 … v14, and ``contact-classifier``),
- ``qfitlatent`` (:mod:`ptk.models.qfitlatent`, trained on ``qfit`` shards),
- a Pallatom configuration: ``pallatom-refiner``, an all-atom refiner that denoises the ``cath``
  shards' heavy atoms with the Pallatom atom transformer, trained with Kabsch-aligned atom MSE +
  smooth lDDT (:mod:`ptk.models.pallatom`, :mod:`ptk.models.losses`).

Every task resolves to one nested config dict (saved as ``config.json``'s ``model``) plus a
:class:`~ptk.models.optim.TrainConfig`; ``--set key=value`` edits either, type-checked, and an
unknown key is a :class:`~ptk.errors.ConfigError` that lists the allowed ones.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import logging
import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ptk.errors import ConfigError, unknown_choice
from ptk.models.minifold.registry import SIZES
from ptk.models.optim import TrainConfig, coerce

__all__ = [
    "Task",
    "list_versions",
    "extra_versions",
    "get_task",
    "split_overrides",
    "write_structures",
]

log = logging.getLogger("ptk.train")

#: An epoch past every loss-weight anneal of the Mini-Fold recipes (validation weights).
_ANNEALED_EPOCH = 10**6


# ---------------------------------------------------------------------------------------------
# nested config dicts and --set


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in d.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value and not _is_leaf_mapping(path):
            out.update(_flatten(value, path + "."))
        else:
            out[path] = value
    return out


def _is_leaf_mapping(path: str) -> bool:
    """Dict-valued options that are set as a whole (``--set lr_groups='{"pair_stack": 3}'``)."""
    leaf = path.rsplit(".", 1)[-1]
    return leaf in {"lr_groups", "clip", "clip_modules"}


def _set_path(d: dict[str, Any], path: str, value: Any) -> None:
    keys = path.split(".")
    for key in keys[:-1]:
        d = d[key]
    d[keys[-1]] = value


#: the keys of a version config that name the version rather than set it, and what to use instead.
_IDENTITY_KEYS: dict[str, str] = {
    "version": "choose the version with --version",
    "size": "choose the size with --size",
    "init_from": "name the weights with --set init_checkpoint=PATH",
    "encoder_from": "name the stage-1 run with --set encoder_checkpoint=PATH",
    "family": "it describes the version",
    "parent": "it describes the version",
    "description": "it describes the version",
    "changes": "it describes the version",
}


def split_overrides(
    overrides: Mapping[str, Any], model_config: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Sort ``--set`` pairs into (train recipe keys, model-config paths).

    ``train.lr`` and ``lr`` name the recipe; ``model.d_s`` / ``loss.w_fape`` (a dotted path of the
    model config) or a bare leaf name that occurs exactly once in it name the model config.
    """
    train_keys = TrainConfig.keys()
    flat = _flatten(model_config)
    for key in overrides:
        if key.removeprefix("model.") in _IDENTITY_KEYS:
            name = key.removeprefix("model.")
            raise ConfigError(f"--set {key}: not a setting ({_IDENTITY_KEYS[name]})")
    leaves: dict[str, list[str]] = {}
    for path in flat:
        leaves.setdefault(path.rsplit(".", 1)[-1], []).append(path)
    train: dict[str, Any] = {}
    model: dict[str, Any] = {}
    for key, value in overrides.items():
        if key.startswith("train.") and key[6:] in train_keys:
            train[key[6:]] = value
        elif key in train_keys:
            train[key] = value
        elif key in flat:
            model[key] = coerce(key, value, flat[key])
        elif key.startswith("model.") and key[6:] in flat:
            model[key[6:]] = coerce(key, value, flat[key[6:]])
        elif key in leaves and len(leaves[key]) == 1:
            path = leaves[key][0]
            model[path] = coerce(key, value, flat[path])
        elif key in leaves:
            raise ConfigError(f"--set {key} is ambiguous; use one of: {', '.join(leaves[key])}")
        else:
            allowed = [f"train.{k}" for k in train_keys] + sorted(flat)
            raise unknown_choice("--set key", key, allowed)
    return train, model


def _config_dict(obj: Any) -> dict[str, Any]:
    """A JSON-able dict of a config object (``to_dict``, dataclass, or mapping)."""
    if hasattr(obj, "to_dict"):
        return copy.deepcopy(obj.to_dict())
    if dataclasses.is_dataclass(obj):
        return dataclasses.asdict(obj)
    if isinstance(obj, Mapping):
        return copy.deepcopy(dict(obj))
    raise TypeError(f"cannot turn {type(obj).__name__} into a config dict")


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


# ---------------------------------------------------------------------------------------------
# the Task interface


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
        eval_name: str = "eval.csv",
    ) -> dict[str, float]:
        """Sample the first ``n`` examples of ``dataset`` (DDIM from ``model``, and the one-step
        x0 prediction), write PDBs and ``eval.csv`` under ``out_dir`` and return the mean DDIM
        ``tm``, ``rmsd``, ``gdt_ts``, ``gdt_ha``, ``lddt``, and ``tm_se``, the standard error of
        the mean TM (sample standard deviation / √n; NaN for one structure).

        ``layout="run"``: ``ddim/ x0/ ref/`` (run folder samples); ``layout="flat"``: the DDIM
        samples directly in ``out_dir`` plus ``ref/`` and ``x0/`` (``ptk sample``, read by
        ``ptk eval --pred DIR --ref DIR/ref``).
        """
        from ptk.models.trainer import to_device

        out_dir = Path(out_dir)
        dirs = {
            "ddim": out_dir / "ddim" if layout == "run" else out_dir,
            "x0": out_dir / "x0",
            "ref": out_dir / "ref",
        }
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
        _write_eval_csv(out_dir / eval_name, rows)
        ddim_rows = [r for r in rows if r["method"] == "ddim"]
        if not ddim_rows:
            return {}
        means = {k: _nanmean([r[k] for r in ddim_rows]) for k in ("tm", "rmsd", "gdt_ts", "gdt_ha", "lddt")}
        return {**means, "tm_se": _standard_error([r["tm"] for r in ddim_rows])}


# ---------------------------------------------------------------------------------------------
# structures out


def _score(pred: Tensor, ref: Tensor, mask: Tensor) -> dict[str, Tensor]:
    """TM, RMSD, GDT-TS/HA and lDDT of Cα traces [b,n,3] (:func:`ptk.metrics.score_batch`)."""
    from ptk import metrics

    out = metrics.score_batch(pred, ref, mask)
    return {k: out[k] for k in ("tm", "rmsd", "gdt_ts", "gdt_ha", "lddt")}


def write_structures(
    folder: Path,
    batch: Mapping[str, Any],
    coords: Tensor,
    atom_mask: Tensor | None = None,
) -> list[Path]:
    """One PDB per example of ``batch``, named ``<id>.pdb``: ``coords`` [b,n,3] (Cα) or
    [b,n,4,3] (N, Cα, C, O), residues where ``residue_mask`` holds."""
    from ptk.pdbio import write_pdb

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    mask = batch["residue_mask"].cpu()
    for b, ident in enumerate(batch["id"]):
        keep = mask[b]
        resnum = batch["resnum"][b].cpu()[keep] if "resnum" in batch else None
        am = atom_mask[b].cpu()[keep] if atom_mask is not None else None
        path = folder / f"{ident}.pdb"
        write_pdb(
            path,
            batch["aatype"][b].cpu()[keep],
            coords[b].detach().float().cpu()[keep],
            atom_mask=am,
            resnum=resnum,
        )
        paths.append(path)
    return paths


def write_and_score(
    batch: Mapping[str, Any], preds: Mapping[str, Mapping[str, Tensor | None]], dirs: Mapping[str, Path]
) -> list[dict[str, Any]]:
    """Write reference and predicted structures, score every prediction's Cα trace against the
    reference's. Returns one row per (example, method)."""
    ref_bb = batch["backbone"]
    ref_mask = batch.get("backbone_mask")
    write_structures(dirs["ref"], batch, ref_bb, ref_mask)
    ref_ca = ref_bb[..., 1, :]
    ca_mask = batch["residue_mask"] & (ref_mask[..., 1] if ref_mask is not None else True)
    rows = []
    for method, out in preds.items():
        coords = out["backbone"] if out.get("backbone") is not None else out["ca"]
        write_structures(dirs[method], batch, coords)
        scores = _score(out["ca"].float(), ref_ca.float(), ca_mask)
        for b, ident in enumerate(batch["id"]):
            row = {"id": ident, "length": int(batch["residue_mask"][b].sum()), "method": method}
            row.update({k: float(v[b]) for k, v in scores.items()})
            rows.append(row)
    return rows


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if v == v]
    return sum(finite) / len(finite) if finite else float("nan")


def _standard_error(values: Sequence[float]) -> float:
    """Standard error of the mean of the finite ``values`` (ddof 1); NaN below two values."""
    finite = [v for v in values if v == v]
    if len(finite) < 2:
        return float("nan")
    return statistics.stdev(finite) / math.sqrt(len(finite))


def _write_eval_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cols = ["id", "length", "method", "tm", "rmsd", "gdt_ts", "gdt_ha", "lddt"]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=cols)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{row[k]:.6g}" if isinstance(row[k], float) else row[k]) for k in cols})


# ---------------------------------------------------------------------------------------------
# warm starts


def _resolve_checkpoint(explicit: str, run_dir: Path, version: str | None) -> Path | None:
    """An explicit checkpoint/run folder, else ``<runs>/<version>/checkpoints/best.pt`` beside
    ``run_dir`` when that exists."""
    if explicit:
        path = Path(explicit)
        if path.is_dir():
            path = path / "checkpoints" / "best.pt"
        if not path.is_file():
            raise ConfigError(f"checkpoint {explicit!r} not found")
        return path
    if version:
        path = run_dir.parent / version / "checkpoints" / "best.pt"
        if path.is_file() and path.resolve() != (run_dir / "checkpoints" / "best.pt").resolve():
            return path
    return None


def _ema_state(path: Path) -> dict[str, Tensor]:
    from ptk.models.optim import load_checkpoint

    state = load_checkpoint(path)
    return state["ema"]["module"] if "ema" in state else state.get("model", state)


def load_partial(model: nn.Module, state: Mapping[str, Tensor], fresh: Sequence[str] = ()) -> str:
    """``load_state_dict(strict=False)`` that also skips tensors whose shape changed (a new
    architecture block of the same name trains from scratch) and those of the modules named in
    ``fresh`` (``"pair_stack"``: every ``pair_stack.*`` tensor). Returns a one-line account."""
    own = model.state_dict()
    unknown = [m for m in fresh if not any(k == m or k.startswith(m + ".") for k in own)]
    if unknown:
        raise ConfigError(f"init_fresh names {unknown}, which the model does not have")
    usable = {
        k: v
        for k, v in state.items()
        if k in own and own[k].shape == v.shape and not any(k == m or k.startswith(m + ".") for m in fresh)
    }
    model.load_state_dict(usable, strict=False)
    kept = f" ({', '.join(fresh)} by the version)" if fresh else ""
    return f"warm start: {len(usable)}/{len(own)} tensors loaded, {len(own) - len(usable)} from scratch{kept}"


# ---------------------------------------------------------------------------------------------
# Mini-Fold versions and the contact classifier


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


# ---------------------------------------------------------------------------------------------
# qFitLatent


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


# ---------------------------------------------------------------------------------------------
# Pallatom configurations

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


# ---------------------------------------------------------------------------------------------
# registry


def _minifold_versions() -> list[str]:
    try:
        from ptk.models import minifold
    except ImportError:  # pragma: no cover - during development only
        return []
    if not hasattr(minifold, "list_versions"):
        return []
    return list(minifold.list_versions())


def list_versions() -> list[str]:
    """Every VERSION ``ptk train`` accepts."""
    return _minifold_versions() + ["qfitlatent"] + sorted(PALLATOM_VERSIONS)


def extra_versions() -> list[dict[str, Any]]:
    """The trainable versions outside the Mini-Fold registry, for ``ptk versions``."""
    rows = [{"name": "qfitlatent", "family": "qfitlatent", "description": QFitLatentTask.changes[0]}]
    for name, spec in sorted(PALLATOM_VERSIONS.items()):
        rows.append({"name": name, "family": "pallatom", "description": spec["description"]})
    return rows


def get_task(version: str, size: str = "default", overrides: Mapping[str, Any] | None = None) -> Task:
    """The adapter of ``version`` at ``size`` with ``--set`` overrides applied."""
    if size not in SIZES:
        raise unknown_choice("size", size, SIZES)
    if version == "qfitlatent":
        return QFitLatentTask(size, overrides)
    if version in PALLATOM_VERSIONS:
        return PallatomTask(version, size, overrides)
    if version in _minifold_versions():
        return MiniFoldTask(version, size, overrides)
    raise unknown_choice("version", version, list_versions())
