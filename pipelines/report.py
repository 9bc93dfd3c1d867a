"""``ptk report``: the static HTML training report of a version.

The page itself is built by :func:`ptk.report.build_report` from the run folder (config.json,
metrics.csv, samples/). This module adds what needs the model code: the registry's description
of the version (goal, parent chain, what changed, default-size parameter count), and, loaded
from the run's best checkpoint, the contact classifier's predicted contact maps and qFitLatent's
predicted χ mixtures on a few validation chains.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

import click

from ptk import runs
from ptk.errors import PtkError

__all__ = ["report", "write_report", "version_info"]

log = logging.getLogger("ptk.report")


def deviation_rows(config: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(key, value, the page's value, why) of a resolved Mini-Fold config (``VersionConfig.to_dict``
    or a run's ``config.json`` model) where it differs from the reference page."""
    try:
        from ptk.models.minifold.config import page_deviations
    except ImportError:  # pragma: no cover - model code missing from an installation
        return []
    return [(d.key, str(value), str(d.page), d.why) for d, value in page_deviations(config)]


def version_info(version: str) -> Any:
    """A :class:`ptk.report.VersionInfo` from the model registry (bare when unknown)."""
    from ptk.report import VersionInfo

    try:
        from ptk.models import registry
    except ImportError:  # pragma: no cover - model code missing from an installation
        return VersionInfo(name=version)
    if version not in registry.list_versions():
        return VersionInfo(name=version)
    card = registry.describe(version)
    params = None
    try:
        params = registry.parameter_count(version)[0]
    except Exception as exc:  # the count is a nicety; never fail the report on it
        log.info("no default-size parameter count for %s: %s", version, exc)
    return VersionInfo(
        name=version,
        family=card.family,
        parent=card.parent,
        description=card.description,
        changes=list(card.changes),
        changed_keys=list(card.changed_keys),
        ancestors=list(card.ancestors),
        default_params=params,
        page_deviations=[(key, str(value), str(page), why) for key, value, page, why in card.page_deviations],
    )


def _validation_set(run: Any, task: Any) -> Any:
    """The run's validation chains, split as training split them (crop "first")."""
    from ptk.models.runs import build_datasets

    data = run.config.get("data") or {}
    train_path = Path(data.get("train") or "")
    if not train_path.is_absolute() and not train_path.is_dir():
        train_path = (run.path / train_path).resolve() if (run.path / train_path).is_dir() else train_path
    if not train_path.is_dir():
        raise PtkError(f"the run's training data {data.get('train')!r} is not a folder here")
    val_path = Path(data["val"]) if data.get("val") else None
    _, val, _ = build_datasets(task, train_path, val_path)
    return val


def contact_predictions(run: Any, n: int = 2) -> tuple[list[Any], str | None]:
    """Predicted contact probabilities of the contact classifier on ``n`` validation chains."""
    import torch

    from ptk.models.runs import load_run_model
    from ptk.report import ContactPrediction

    task, model, _ = load_run_model(run.path, "best", "cpu")
    val = _validation_set(run, task)
    out = []
    with torch.no_grad():
        for i in range(min(n, len(val))):
            batch = task.collate([val[i]])
            logits = model(batch)["contact_logits"][0]
            ca = batch["backbone"][0, :, 1].clone()
            ca[~batch["backbone_mask"][0, :, 1]] = float("nan")
            out.append(
                ContactPrediction(id=str(batch["id"][0]), prob=torch.sigmoid(logits).numpy(), ca=ca.numpy())
            )
    return out, None if out else "the run has no validation chains"


def chi_panels(run: Any, n_residues: int = 3, n_draws: int = 400) -> tuple[list[Any], str | None]:
    """χ1/χ2 density panels of a qFitLatent run: all valid validation residues (observed altlocs
    against draws from the predicted mixtures), then ``n_residues`` single residues with the
    most conformers."""
    import numpy as np
    import torch

    from ptk.models.qfitlatent import mixture_from_outputs
    from ptk.models.runs import load_run_model
    from ptk.report import ChiPanel

    task, model, _ = load_run_model(run.path, "best", "cpu")
    val = _validation_set(run, task)
    torch.manual_seed(0)
    obs_chi, obs_mask, pred_chi, pred_mask = [], [], [], []
    singles: list[tuple[int, str, np.ndarray, np.ndarray, np.ndarray]] = []
    with torch.no_grad():
        for i in range(len(val)):
            batch = task.collate([val[i]])
            mixture = mixture_from_outputs(model(batch))
            valid = batch["valid"][0]
            if not bool(valid.any()):
                continue
            chi, cmask, alt = batch["chi"][0], batch["chi_mask"][0].bool(), batch["altloc_mask"][0].bool()
            keep = cmask & alt[..., None] & valid[:, None, None]
            obs_chi.append(chi[keep.any(-1)].numpy())
            obs_mask.append(keep[keep.any(-1)].numpy())
            draws = mixture.sample((n_draws,), symmetric=batch["chi_symmetric"])[:, 0]  # [s, n, 4]
            dmask = cmask.any(1) & valid[:, None]  # [n, 4] χ the residue defines
            pred_chi.append(draws[:, valid].reshape(-1, 4).numpy())
            pred_mask.append(dmask[valid].expand(n_draws, -1, -1).reshape(-1, 4).numpy())
            both = cmask[..., 0] & cmask[..., 1] & alt
            for r in torch.nonzero(valid & (both.sum(-1) >= 2)).flatten().tolist():
                resnum = int(batch["resnum"][0, r]) if "resnum" in batch else r + 1
                label = f"{batch['id'][0]} {_resname(int(batch['aatype'][0, r]))}{resnum}"
                singles.append((int(both[r].sum()), label, chi[r][both[r]].numpy(), cmask[r][both[r]].numpy(),
                                draws[:, r].numpy()))  # fmt: skip
    if not obs_chi:
        return [], "no validation residue with at least two conformers and a defined χ"
    panels = [
        ChiPanel(
            title="χ1/χ2 over the valid validation residues",
            sets={
                "observed altlocs": (np.concatenate(obs_chi), np.concatenate(obs_mask)),
                f"predicted mixtures ({n_draws} draws/residue)": (
                    np.concatenate(pred_chi),
                    np.concatenate(pred_mask),
                ),
            },
            caption="Left: every conformer of the residues qFitLatent is scored on; right: draws from the "
            "mixture it predicts for the same residues.",
        )
    ]
    singles.sort(key=lambda s: -s[0])
    for count, label, chi, cmask, draws in singles[:n_residues]:
        panels.append(
            ChiPanel(
                title=f"{label}: {count} observed conformers vs the predicted mixture",
                sets={
                    "observed altlocs": (chi, cmask),
                    "predicted mixture": (draws, np.broadcast_to(cmask.any(0), draws.shape)),
                },
            )
        )
    return panels, None


def _resname(aatype: int) -> str:
    from ptk import residues

    return residues.RESTYPES_3[aatype] if 0 <= aatype < len(residues.RESTYPES_3) else "UNK"


def write_report(
    version: str, runs_dir: str | os.PathLike[str] = "runs", out: str | os.PathLike[str] | None = None
) -> Any:
    """Build the report of ``version`` (see :func:`ptk.report.build_report`); returns the
    :class:`ptk.report.Report`. ``out`` defaults to ``RUNS/<version>/report`` beside the run,
    or ``report-<version>`` when there is no run."""
    from ptk import report as rep

    runs_dir = Path(runs_dir)
    info = version_info(version)
    run = rep.pick_run(version, runs_dir)
    if run is not None and isinstance(run.config.get("model"), dict):
        info.page_deviations = deviation_rows(run.config["model"])
    if run is None:
        from ptk.errors import unknown_choice
        from ptk.models.registry import list_versions

        if version not in list_versions():
            raise unknown_choice("version", version, list_versions())
    if out is None:
        out = runs.report_dir(run.path) if run is not None else Path(f"report-{version}")
    contacts: list[Any] = []
    panels: list[Any] = []
    note = None
    if run is not None and runs.checkpoints_dir(run.path).is_dir():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if run.family == "contact-classifier":
                    contacts, note = contact_predictions(run)
                elif run.family == "qfitlatent":
                    panels, note = chi_panels(run)
        except (PtkError, FileNotFoundError, KeyError, RuntimeError) as exc:
            note = f"could not evaluate the checkpoint ({exc})"
            log.warning("%s", note)
    elif run is not None and run.family in ("contact-classifier", "qfitlatent"):
        note = f"no checkpoint in {runs.checkpoints_dir(run.path)}"
    return rep.build_report(
        version, runs_dir, out, info=info, run=run, contacts=contacts, chi_panels=panels, chi_note=note
    )


@click.command("report")
@click.option("--version", "version", required=True, help="Model version (see `ptk versions`).")
@click.option(
    "--runs",
    "runs_dir",
    default="runs",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder holding run folders (RUNS/<version>/ or any run whose config.json names the version).",
)
@click.option(
    "--out",
    default=None,
    type=click.Path(file_okay=False),
    help="Folder for index.html and figures/ (default: RUNS/<version>/report).",
)
def report(version: str, runs_dir: str, out: str | None) -> None:
    """Write the static HTML training report of a version (HTML + PNG, viewable offline).

    \b
    ptk report --version v13 --runs runs --out report/v13
    """
    result = write_report(version, runs_dir, out)
    for item in result.missing:
        click.echo(f"ptk report: missing: {item.line()}", err=True)
    chosen = (
        f"the run {result.run.path}" if result.run is not None else f"no run of {version} under {runs_dir}"
    )
    click.echo(
        f"report: {result.html} ({len(result.figures)} figures, {len(result.missing)} missing pieces), "
        f"from {chosen}"
    )
