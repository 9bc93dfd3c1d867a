"""The static HTML training report of a model version (``ptk report``).

:func:`build_report` writes ``OUT/index.html`` plus ``OUT/figures/*.png`` for the run of one
version found under a runs folder (``docs/run-folder.md``: ``config.json``, ``metrics.csv``,
``samples/<name>/``). The page needs no network and no script: plain HTML, inline CSS and PNG
files next to it. Sections:

- version card (goal, architecture, parameters, recipe, dataset, what changed from the parent);
- training table (one row per epoch: every logged loss, DDIM scores when measured, NEW BEST /
  pat k, best rows highlighted);
- loss curves of this version overlaid on its ancestors that have runs
  (:func:`ptk.plots.loss_curves_figure`);
- DDIM evaluation of the latest sampling (TM, RMSD, GDT distributions from ``eval.csv``);
- pseudo-Ramachandran panels (ground truth, DDIM samples, x0 predictions) from the latest
  samples' PDB files (:func:`ptk.plots.pseudo_ramachandran_figure`) and contact maps
  (:func:`ptk.plots.contact_map_figure`);
- qFitLatent runs: NLL, per-χ accuracy and χ1/χ2 densities (:func:`ptk.plots.chi_density_figure`);
- a comparison table of every version that has a run.

This module reads run folders and draws; it imports no model code. What needs a model (the
contact classifier's predictions, qFitLatent's mixtures) is computed by the caller
(:mod:`ptk.pipelines.report`) and handed in as plain arrays (:class:`ContactPrediction`,
:class:`ChiPanel`). A section whose inputs are missing says so on the page, and
:attr:`Report.missing` lists the ``ptk`` command that would produce them.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import math
import os
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ptk.errors import PtkError
from ptk.files import atomic_write

__all__ = [
    "Run",
    "VersionInfo",
    "ContactPrediction",
    "ChiPanel",
    "Missing",
    "Report",
    "load_run",
    "find_runs",
    "pick_run",
    "latest_samples",
    "build_report",
    "DIFFUSION_FAMILIES",
]

#: Families whose runs write DDIM samples (``samples/epoch_NNN/``).
DIFFUSION_FAMILIES = ("minifold",)

_EPOCH_DIR = re.compile(r"^epoch_(\d+)$")
_METRIC_NAMES = {"tm": "TM-score", "rmsd": "RMSD (Å)", "gdt_ts": "GDT-TS", "gdt_ha": "GDT-HA", "lddt": "lDDT"}


# ---------------------------------------------------------------------------------------------
# run folders


@dataclass
class Run:
    """One run folder: its ``config.json`` and ``metrics.csv`` (None before the first epoch)."""

    path: Path
    config: dict[str, Any]
    metrics: Any  # pandas.DataFrame | None

    @property
    def version(self) -> str:
        return str(self.config.get("version", self.path.name))

    @property
    def family(self) -> str:
        return str(self.config.get("family", ""))

    @property
    def n_epochs(self) -> int:
        return 0 if self.metrics is None else len(self.metrics)

    @property
    def best_index(self) -> int | None:
        """Row index of the best epoch: the last row whose status is ``NEW BEST``."""
        frame = self.metrics
        if frame is None or "status" not in frame or not len(frame):
            return None
        best = frame.index[frame["status"].astype(str).str.strip() == "NEW BEST"]
        return int(best[-1]) if len(best) else None

    @property
    def best_row(self) -> Mapping[str, Any] | None:
        i = self.best_index
        return None if i is None else self.metrics.loc[i]

    @property
    def created(self) -> str:
        return str(self.config.get("created") or "")


def load_run(path: str | os.PathLike[str]) -> Run:
    """The run folder ``path`` (``config.json`` required, ``metrics.csv`` optional).

    Raises:
        PtkError: no readable ``config.json``.
    """
    import pandas as pd

    path = Path(path)
    config_path = path / "config.json"
    try:
        config = json.loads(config_path.read_text())
    except FileNotFoundError as exc:
        raise PtkError(f"{path}: not a run folder (no config.json)") from exc
    except (OSError, json.JSONDecodeError) as exc:
        raise PtkError(f"{config_path}: unreadable ({exc})") from exc
    metrics = None
    csv = path / "metrics.csv"
    if csv.is_file() and csv.stat().st_size > 0:
        try:
            metrics = pd.read_csv(csv)
        except (pd.errors.EmptyDataError, pd.errors.ParserError):
            metrics = None
    return Run(path=path, config=config, metrics=metrics)


def find_runs(runs_dir: str | os.PathLike[str], max_depth: int = 3) -> list[Run]:
    """Every run folder (a folder with ``config.json`` holding a ``version``) at most
    ``max_depth`` levels under ``runs_dir`` (itself included), sorted by path. Unreadable
    folders are skipped."""
    root = Path(runs_dir)
    if not root.is_dir():
        return []
    found: list[Run] = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        depth = len(here.relative_to(root).parts)
        # a run's own subfolders (checkpoints, samples) hold no runs
        dirnames[:] = [] if "config.json" in filenames or depth >= max_depth else sorted(dirnames)
        if "config.json" in filenames:
            try:
                run = load_run(here)
            except PtkError:
                continue
            if "version" in run.config:
                found.append(run)
    return sorted(found, key=lambda r: str(r.path))


def pick_run(version: str, runs_dir: str | os.PathLike[str], runs: Sequence[Run] | None = None) -> Run | None:
    """The run of ``version``: ``runs_dir/<version>/`` when it is one, else the most recently
    created run whose ``config.json`` names that version (None when there is none); runs with a
    finished epoch come before runs without one."""
    runs = find_runs(runs_dir) if runs is None else runs
    candidates = [r for r in runs if r.version == version]
    if not candidates:
        return None
    # an interrupted run with no finished epoch has nothing to show while another run does
    candidates = [r for r in candidates if r.n_epochs > 0] or candidates
    preferred = (Path(runs_dir) / version).resolve()
    for run in candidates:
        if run.path.resolve() == preferred:
            return run
    return max(candidates, key=lambda r: (r.created, r.n_epochs, str(r.path)))


@dataclass
class Sampling:
    """One sampling of a run: the folder, its scores CSV and the PDB folders."""

    path: Path
    csv: Path
    ddim: Path
    ref: Path
    x0: Path
    epoch: int | None

    @property
    def label(self) -> str:
        return f"epoch {self.epoch}" if self.epoch is not None else self.path.name


def _sampling(folder: Path) -> Sampling | None:
    match = _EPOCH_DIR.match(folder.name)
    epoch = int(match.group(1)) if match else None
    if (folder / "eval.csv").is_file():  # written during training: ddim/ x0/ ref/
        return Sampling(folder, folder / "eval.csv", folder / "ddim", folder / "ref", folder / "x0", epoch)
    if (folder / "summary" / "samples.csv").is_file():  # `ptk sample --out` layout: flat
        return Sampling(
            folder, folder / "summary" / "samples.csv", folder, folder / "ref", folder / "x0", epoch
        )
    return None


def latest_samples(run: Run) -> Sampling | None:
    """The latest sampling of ``run`` under ``run/samples/``: training-time ``epoch_NNN/``
    folders and ``ptk sample --out run/samples/NAME`` folders alike, the most recently
    written scores CSV winning (ties: the higher epoch)."""
    root = run.path / "samples"
    if not root.is_dir():
        return None
    found = [s for s in (_sampling(p) for p in sorted(root.iterdir()) if p.is_dir()) if s is not None]
    if not found:
        return None
    return max(found, key=lambda s: (s.csv.stat().st_mtime, s.epoch or 0))


# ---------------------------------------------------------------------------------------------
# inputs from the caller


@dataclass
class VersionInfo:
    """What the model registry says about a version (filled by the caller; all optional)."""

    name: str
    family: str = ""
    parent: str | None = None
    description: str = ""
    changes: list[str] = field(default_factory=list)
    changed_keys: list[str] = field(default_factory=list)
    ancestors: list[str] = field(default_factory=list)  # root first, without ``name``
    default_params: int | None = None
    #: (config key, this run's value, the page's value, why) where ptk's default differs from
    #: the reference page and the run kept ptk's default.
    page_deviations: list[tuple[str, str, str, str]] = field(default_factory=list)


@dataclass
class ContactPrediction:
    """One chain's predicted contact probabilities ``[n, n]`` and its true Cα ``[n, 3]``."""

    id: str
    prob: np.ndarray
    ca: np.ndarray


@dataclass
class ChiPanel:
    """χ angles for a density figure: ``sets`` label → (chi [..., 4] rad, chi_mask [..., 4])."""

    title: str
    sets: dict[str, tuple[np.ndarray, np.ndarray]]
    caption: str = ""


@dataclass
class Missing:
    """A section the page could not fill, and the command that would."""

    section: str
    message: str
    command: str | None = None

    def line(self) -> str:
        return self.message + (f": run `{self.command}`" if self.command else "")


@dataclass
class Report:
    """What :func:`build_report` wrote."""

    html: Path
    out_dir: Path
    run: Run | None
    figures: list[Path]
    missing: list[Missing]


# ---------------------------------------------------------------------------------------------
# HTML helpers

_e = html.escape


def _cell(value: Any, column: str = "") -> str:
    """A table cell: empty for NaN/None, ints as ints, LR in scientific notation, else 4 sig."""
    if value is None:
        return ""
    if isinstance(value, str):
        return _e(value)
    try:
        x = float(value)
    except (TypeError, ValueError):
        return _e(str(value))
    if math.isnan(x):
        return ""
    if column in ("epoch", "skipped_batches") or (column.endswith("epochs") and x.is_integer()):
        return str(int(x))
    if column == "lr" or (x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e5)):
        return f"{x:.2e}"
    if column == "wall_time_s":
        return f"{x:.1f}"
    return f"{x:.4g}" if abs(x) >= 1 else f"{x:.4f}"


def _table(
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    row_classes: Sequence[str] | None = None,
    cls: str = "data",
) -> str:
    head = "".join(f"<th>{h}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        klass = f' class="{row_classes[i]}"' if row_classes and row_classes[i] else ""
        body.append(f"<tr{klass}>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>")
    table = f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
    return f'<div class="scroll">{table}</div>'


def _missing_box(item: Missing) -> str:
    cmd = f"<br>To produce it, run <code>{_e(item.command)}</code>" if item.command else ""
    return f'<p class="missing"><strong>Missing:</strong> {_e(item.message)}.{cmd}</p>'


def _figure(src: str, alt: str, caption: str = "") -> str:
    cap = f"<figcaption>{caption}</figcaption>" if caption else ""
    return f'<figure><img src="{_e(src)}" alt="{_e(alt)}">{cap}</figure>'


def _pretty_name(column: str) -> str:
    name = column.removeprefix("val_").removeprefix("train_")
    return name.replace("_", " ")


# ---------------------------------------------------------------------------------------------
# the builder


class _Page:
    """Collects sections, figures and missing pieces while the report is built."""

    def __init__(self, out_dir: Path, dpi: int) -> None:
        self.out_dir = out_dir
        self.fig_dir = out_dir / "figures"
        self.dpi = dpi
        self.sections: list[tuple[str, str, str]] = []  # (anchor, title, html)
        self.figures: list[Path] = []
        self.missing: list[Missing] = []

    def add(self, anchor: str, title: str, body: str) -> None:
        self.sections.append((anchor, title, body))

    def miss(self, section: str, message: str, command: str | None = None) -> str:
        item = Missing(section, message, command)
        self.missing.append(item)
        return _missing_box(item)

    def save(self, fig: Any, name: str) -> str:
        from ptk.plots import save_figure

        path = save_figure(fig, self.fig_dir / name, dpi=self.dpi)
        self.figures.append(path)
        return f"figures/{name}"


def _data_hint(run: Run) -> str:
    return str((run.config.get("data") or {}).get("train") or "SHARDS")


def _version_card(page: _Page, run: Run, info: VersionInfo | None) -> None:
    cfg = run.config
    train = cfg.get("train") or {}
    data = cfg.get("data") or {}
    rows: list[tuple[str, str]] = []
    goal = (info.description if info and info.description else "") or "; ".join(cfg.get("changes") or [])
    rows.append(("Goal", _e(goal) or "<em>no description in the registry</em>"))
    family = cfg.get("family", info.family if info else "")
    parent = cfg.get("parent", info.parent if info else None)
    rows.append(("Family", _e(str(family))))
    rows.append(("Parent", _e(str(parent)) if parent else "none (a root version)"))
    rows.append(("Architecture", _architecture(cfg.get("model") or {})))
    params = cfg.get("n_params")
    p_txt = f"{params:,} total" if isinstance(params, int) else "unknown"
    if isinstance(cfg.get("n_trainable_params"), int):
        p_txt += f", {cfg['n_trainable_params']:,} trainable"
    p_txt += f" (this run, size <code>{_e(str(cfg.get('size', '?')))}</code>)"
    if info and info.default_params:
        p_txt += f"; default size: {info.default_params / 1e6:.1f}M"
    rows.append(("Parameters", p_txt))
    rows.append(("Recipe", _recipe(train, cfg)))
    n_train, n_val = cfg.get("n_train"), cfg.get("n_val")
    split = data.get("split")
    ds = f"<code>{_e(str(data.get('train')))}</code>"
    if data.get("val"):
        ds += f" (validation: <code>{_e(str(data['val']))}</code>)"
    ds += f": {n_train} train / {n_val} validation chains"
    if split:
        ds += f" ({_e(str(split))} split)"
    if train.get("max_length"):
        ds += f", cropped to {train['max_length']} residues"
    rows.append(("Dataset", ds))
    run_txt = (
        f"<code>{_e(str(run.path))}</code>, created {_e(run.created or '?')}"
        f"{', resumed ' + str(len(cfg['resumed_at'])) + '×' if cfg.get('resumed_at') else ''}; "
        f"device {_e(str(cfg.get('device', '?')))}, world size {_e(str(cfg.get('world_size', 1)))}; "
        f"ptk {_e(str(cfg.get('ptk_version', '?')))}, torch {_e(str(cfg.get('torch_version', '?')))}"
    )
    rows.append(("Run", run_txt))
    if cfg.get("command"):
        rows.append(("Command", f"<code>{_e(str(cfg['command']))}</code>"))
    if cfg.get("overrides"):
        rows.append(
            ("Overrides", ", ".join(f"<code>{_e(f'{k}={v}')}</code>" for k, v in cfg["overrides"].items()))
        )
    changes = list(cfg.get("changes") or (info.changes if info else []))
    if changes:
        items = "".join(f"<li>{_e(c)}</li>" for c in changes)
        changed = f"<ul>{items}</ul>"
    else:
        changed = "<em>nothing recorded</em>"
    if info and info.changed_keys:
        keys = "".join(f"<li><code>{_e(k)}</code></li>" for k in info.changed_keys)
        summary = f"{len(info.changed_keys)} resolved config keys differ from {_e(str(parent))}"
        changed += f"<details><summary>{summary}</summary><ul>{keys}</ul></details>"
    rows.append((f"What changed from {_e(str(parent))}" if parent else "What it is", changed))
    if info and info.page_deviations:
        items = "".join(
            f"<li><code>{_e(key)} = {_e(value)}</code> (page: <code>{_e(page)}</code>; "
            f"<code>--set {_e(key)}={_e(page)}</code> restores it): {_e(why)}</li>"
            for key, value, page, why in info.page_deviations
        )
        rows.append(("Differs from the page", f"<ul>{items}</ul>"))
    body = (
        '<table class="card">' + "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows) + "</table>"
    )
    page.add("card", f"{_e(run.version)}: version card", body)


_NOT_ARCHITECTURE = {"loss", "train", "lr_groups", "clip", "tiny"}
_META = {"version", "family", "parent", "description", "changes", "size", "init_from", "encoder_from"}


def _architecture(model: Mapping[str, Any]) -> str:
    """The model config, one line per block (loss weights folded away; the recipe is separate)."""
    if not model:
        return "<em>no model config recorded</em>"

    def line(d: Mapping[str, Any]) -> str:
        flat = [(k, v) for k, v in d.items() if not isinstance(v, Mapping)]
        text = ", ".join(f"{_e(str(k))} = {_e(_short(v))}" for k, v in flat)
        nested = "".join(
            f'<div class="block"><strong>{_e(str(k))}</strong>: {line(v)}</div>'
            for k, v in d.items()
            if isinstance(v, Mapping)
        )
        return f'<span class="kv">{text}</span>{nested}'

    if isinstance(model.get("model"), Mapping):  # a version config: its model blocks sit under "model"
        model = {**model["model"], **{k: v for k, v in model.items() if k != "model"}}
    blocks = [(k, v) for k, v in model.items() if isinstance(v, Mapping) and k not in _NOT_ARCHITECTURE]
    loose = {k: v for k, v in model.items() if not isinstance(v, Mapping) and k not in _META}
    out = "".join(f'<div class="block"><strong>{_e(str(k))}</strong>: {line(v)}</div>' for k, v in blocks)
    if loose:
        out += f'<div class="block">{line(loose)}</div>'
    if isinstance(model.get("loss"), Mapping):
        out += f"<details><summary>loss weights</summary>{line(model['loss'])}</details>"
    return out or "<em>no model config recorded</em>"


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple) and len(value) > 8:
        return f"[{', '.join(map(str, value[:8]))}, … ({len(value)})]"
    return str(value)


def _recipe(train: Mapping[str, Any], cfg: Mapping[str, Any]) -> str:
    if not train:
        return "<em>no training recipe recorded</em>"
    parts = []
    bs, acc = train.get("batch_size"), train.get("grad_accum", 1)
    ws = cfg.get("world_size", 1) or 1
    if bs is not None:
        eff = bs * (acc or 1) * ws
        parts.append(f"batch {bs} × accum {acc} × {ws} device(s) = {eff} per step")
    if "lr" in train:
        parts.append(
            f"LR {train['lr']:g} → min {train.get('min_lr', 0):g}, schedule {train.get('schedule', '?')}"
        )
    if train.get("warmup_epochs"):
        parts.append(
            f"warmup {train['warmup_epochs']:g} epochs (from {train.get('warmup_start_factor', 0):g}×), "
            f"constant {train.get('constant_epochs', 0):g}"
        )
    if train.get("lr_groups"):
        parts.append("LR groups " + ", ".join(f"{k} {v:g}×" for k, v in train["lr_groups"].items()))
    if train.get("clip"):
        parts.append("clip " + ", ".join(f"{k} {v:g}" for k, v in train["clip"].items()))
    for key, label in (
        ("weight_decay", "weight decay"),
        ("ema_decay", "EMA"),
        ("amp", "AMP"),
        ("epochs", "epochs"),
        ("patience", "patience"),
    ):
        if key in train:
            parts.append(f"{label} {_short(train[key])}")
    if train.get("sample_every"):
        parts.append(
            f"DDIM every {train['sample_every']} epoch(s): {train.get('sample_n', '?')} chains, "
            f"{train.get('sample_steps', '?')} steps, η {train.get('sample_eta', '?')}, "
            f"guidance {train.get('sample_guidance', '?')}"
        )
    text = "; ".join(_e(p) for p in parts)
    others = {k: v for k, v in train.items() if not isinstance(v, Mapping)}
    full = ", ".join(f"{_e(str(k))} = {_e(_short(v))}" for k, v in others.items())
    return f'{text}<details><summary>every training key</summary><p class="small">{full}</p></details>'


def _loss_columns(frame: Any) -> tuple[list[str], list[str]]:
    """(validation columns, training columns) of the logged losses, totals first."""
    val = [c for c in frame.columns if c.startswith("val_") and c != "val_loss"]
    train = [c for c in frame.columns if c.startswith("train_") and c != "train_loss"]
    return (["val_loss"] if "val_loss" in frame else []) + val, (
        ["train_loss"] if "train_loss" in frame else []
    ) + train


def _highlights(run: Run, parent_run: Run | None) -> str:
    """Two or three plain sentences on how the run went (the page's 'what happened')."""
    frame = run.metrics
    best = run.best_row
    if frame is None or best is None or "val_loss" not in frame:
        return ""
    first = float(frame["val_loss"].iloc[0])
    value = float(best["val_loss"])
    out = [f"Best validation total {_cell(value)} at epoch {int(best['epoch'])} of {len(frame)}"]
    if int(best["epoch"]) > int(frame["epoch"].iloc[0]) and first > 0:
        out[-1] += f", {100 * (first - value) / first:.0f}% below epoch {int(frame['epoch'].iloc[0])}"
    last = str(frame["status"].iloc[-1]).strip() if "status" in frame else ""
    if last.startswith("pat"):
        out.append(f"the last epoch is at {_e(last)} (no improvement for {last.split()[-1]} epochs)")
    elif "STOP" in last:
        out.append("training stopped early (patience ran out)")
    if "ddim_tm" in frame and frame["ddim_tm"].notna().any():
        measured = frame[frame["ddim_tm"].notna()]
        top = measured.loc[measured["ddim_tm"].idxmax()]
        out.append(f"the best DDIM TM-score so far is {_cell(top['ddim_tm'])} (epoch {int(top['epoch'])})")
    if parent_run is not None and parent_run.best_row is not None and "val_loss" in parent_run.metrics:
        theirs = parent_run.best_row["val_loss"]
        out.append(
            f"for reference, the parent {_e(parent_run.version)}'s best validation total is {_cell(theirs)} "
            f"(epoch {int(parent_run.best_row['epoch'])}, <code>{_e(str(parent_run.path))}</code>)"
        )
    return '<p class="highlights">' + "; ".join(out) + ".</p>"


def _training_table(page: _Page, run: Run, runs_for_parent: Run | None = None) -> None:
    title = f"{_e(run.version)}: training progress"
    frame = run.metrics
    if frame is None or not len(frame):
        body = page.miss(
            "training",
            f"{run.path}/metrics.csv has no finished epoch yet",
            f"ptk train --out {run.path} --resume",
        )
        page.add("training", title, body)
        return
    val_cols, train_cols = _loss_columns(frame)
    ddim = [c for c in ("ddim_tm", "ddim_tm_se", "ddim_rmsd", "ddim_gdt_ts") if c in frame]
    fixed = {"epoch", "status", "lr", "skipped_batches", "wall_time_s", *val_cols, *train_cols, *ddim}
    extras = [c for c in frame.columns if c not in fixed]
    # the columns read first stay in view: totals, DDIM scores and the status, then the terms
    totals = [c for c in ("val_loss", "train_loss") if c in frame]
    columns = [
        "epoch",
        *totals,
        *ddim,
        "status",
        *[c for c in val_cols if c not in totals],
        *extras,
        *[c for c in train_cols if c not in totals],
        "lr",
        "skipped_batches",
        "wall_time_s",
    ]
    keep_empty = set(ddim) if run.family in DIFFUSION_FAMILIES else set()
    columns = [
        c for c in columns if c in frame and (c in keep_empty or c == "status" or frame[c].notna().any())
    ]
    groups = {c: "val" for c in val_cols} | {c: "train" for c in train_cols} | {c: "ddim" for c in ddim}
    header = []
    for c in columns:
        label = {
            "val_loss": "val total",
            "train_loss": "train total",
            "ddim_tm": "DDIM TM",
            "ddim_tm_se": "± s.e.",
            "ddim_rmsd": "DDIM RMSD",
            "ddim_gdt_ts": "DDIM GDT-TS",
            "skipped_batches": "skipped",
            "wall_time_s": "time (s)",
            "lr": "LR",
        }.get(c, ("train " if c.startswith("train_") else "") + _pretty_name(c))
        group = groups.get(c, "")
        header.append(f'<span class="g-{group}">{_e(label)}</span>' if group else _e(label))
    best = run.best_index
    rows, classes = [], []
    for i, row in frame.iterrows():
        status = str(row.get("status", "") if "status" in frame else "").strip()
        cells = []
        for c in columns:
            v = row[c]
            if c == "status":
                klass = "st-best" if status == "NEW BEST" else ("st-stop" if "STOP" in status else "st-pat")
                cells.append(
                    f'<span class="{klass}">{_e(status)}</span>' if status and status != "nan" else ""
                )
            else:
                cells.append(_cell(v, c))
        rows.append(cells)
        classes.append(("best " if status == "NEW BEST" else "") + ("overall-best" if i == best else ""))
    n = len(frame)
    best_txt = ""
    if best is not None:
        b = frame.loc[best]
        val = _cell(b.get("val_loss"), "val_loss")
        best_txt = f" Best epoch: <strong>{int(b['epoch'])}</strong> (val total {val})."
    highlights = _highlights(run, runs_for_parent)
    intro = highlights + (
        f"<p>{n} epoch{'s' if n != 1 else ''} logged in "
        f"<code>{_e(str(run.path / 'metrics.csv'))}</code>.{best_txt} "
        'Rows marked <span class="st-best">NEW BEST</span> improved the validation total (EMA weights); '
        "<em>pat k</em> counts epochs since the best. The totals, DDIM scores (empty where not sampled) and "
        "the status come first, then every validation term, family metrics and every training term.</p>"
    )
    page.add("training", title, intro + _table(header, rows, classes, cls="data metrics"))


def _loss_curves(
    page: _Page, run: Run, info: VersionInfo | None, runs: Sequence[Run], runs_dir: Path
) -> None:
    from ptk.plots import loss_curves_figure

    title = "Loss curves"
    if run.metrics is None or not len(run.metrics):
        page.add("curves", title, page.miss("curves", "no epochs logged yet, so no curves"))
        return
    chain = list(info.ancestors) if info else []
    series: dict[str, Any] = {}
    absent = []
    for name in chain:
        ancestor = pick_run(name, runs_dir, runs)
        if ancestor is not None and ancestor.metrics is not None and len(ancestor.metrics):
            series[name] = ancestor.metrics
        else:
            absent.append(name)
    series[run.version] = run.metrics
    val_cols, _ = _loss_columns(run.metrics)
    terms = []
    for c in val_cols[1:]:
        term = c.removeprefix("val_")
        values = run.metrics[c].dropna()
        if not len(values) or f"train_{term}" not in run.metrics or "acc" in term:
            continue
        if len(values) == 1 or bool((values != values.iloc[0]).any()):
            terms.append(term)
    terms = terms[:4]
    parts = []
    label = " overlaid on " + ", ".join(k for k in series if k != run.version) if len(series) > 1 else ""
    fig = loss_curves_figure(series, terms=["loss", *terms[:3]], title=f"{run.version}{label}")
    parts.append(
        _figure(
            page.save(fig, "loss_curves.png"),
            "loss curves",
            "Weighted totals (first panel) and the first loss terms per epoch: training solid, "
            "validation dashed (EMA weights); a dot marks each run's best epoch.",
        )
    )
    if chain and absent:
        cmds = "; ".join(
            f"ptk train --version {a} --data {_data_hint(run)} --out {runs_dir / a}" for a in absent
        )
        parts.append(
            '<p class="note">Ancestors without a run under '
            f"<code>{_e(str(runs_dir))}</code> (not drawn): {_e(', '.join(absent))}. "
            f"Train one with <code>{_e(cmds.split('; ')[-1])}</code>.</p>"
        )
    elif not chain:
        parts.append(f'<p class="note">{_e(run.version)} has no ancestor versions to overlay.</p>')
    page.add("curves", title, "".join(parts))


def _ddim_section(page: _Page, run: Run, sampling: Sampling | None) -> Any:
    import pandas as pd

    title = "DDIM evaluation"
    if run.family not in DIFFUSION_FAMILIES:
        return None
    if sampling is None:
        where = run.path / "samples" / "manual"
        cmd = f"ptk sample --run {run.path} --data {_data_hint(run)} --out {where} --n 8"
        page.add("ddim", title, page.miss("ddim", f"no samples yet in {run.path / 'samples'}", cmd))
        return None
    frame = pd.read_csv(sampling.csv)
    if "method" not in frame:
        frame["method"] = "ddim"
    metrics = [m for m in ("tm", "rmsd", "gdt_ts", "gdt_ha", "lddt") if m in frame]
    rows = []
    for method, group in frame.groupby("method", sort=True):
        for m in metrics:
            vals = pd.to_numeric(group[m], errors="coerce").dropna()
            if not len(vals):
                continue
            rows.append(
                [
                    _e(str(method)),
                    _METRIC_NAMES[m],
                    str(len(vals)),
                    _cell(vals.mean()),
                    _cell(vals.median()),
                    _cell(vals.min()),
                    _cell(vals.max()),
                ]
            )
    parts = [
        f"<p>Latest sampling: <code>{_e(str(sampling.path))}</code> ({_e(sampling.label)}), "
        f"{frame['id'].nunique() if 'id' in frame else len(frame)} structures; Cα scores against the "
        "reference chains (<code>ptk.metrics.score_batch</code>). <em>ddim</em>: DDIM samples from "
        "the EMA weights; <em>x0</em>: one-step x0 predictions from the noised reference.</p>",
        _table(["method", "metric", "n", "mean", "median", "min", "max"], rows, cls="data"),
    ]
    train = run.config.get("train") or {}
    if sampling.epoch is not None and "sample_steps" in train:
        parts.insert(
            1,
            f'<p class="note">Sampled during training after epoch {sampling.epoch}: '
            f"{_e(str(train.get('sample_steps')))} DDIM steps, η {_e(str(train.get('sample_eta')))}, "
            f"guidance {_e(str(train.get('sample_guidance')))}, "
            f"x0 from t = {_e(str(train.get('x0_t', 100)))}.</p>",
        )
    fig = _metric_histograms(frame, [m for m in ("tm", "rmsd", "gdt_ts") if m in frame])
    if fig is not None:
        parts.append(
            _figure(
                page.save(fig, "ddim_scores.png"),
                "DDIM score distributions",
                "Distributions of TM-score, RMSD and GDT-TS per method.",
            )
        )
    sampled = run.metrics[run.metrics["ddim_tm"].notna()] if "ddim_tm" in run.metrics else None
    if sampled is not None and len(sampled) >= 2:
        from ptk.plots import loss_curves_figure

        terms = [t for t in ("ddim_tm", "ddim_rmsd") if t in sampled]
        fig = loss_curves_figure(
            {run.version: sampled}, terms=terms, log=False, title="DDIM samples over training", ylabel="score"
        )
        parts.append(
            _figure(
                page.save(fig, "ddim_over_epochs.png"),
                "DDIM TM-score and RMSD over the epochs",
                "Mean over the chains sampled during training (metrics.csv ddim_tm, ddim_rmsd): rising "
                "TM-score and falling RMSD show the samples turning into the reference structures.",
            )
        )
    page.add("ddim", title, "".join(parts))
    return frame


def _metric_histograms(frame: Any, metrics: Sequence[str]) -> Any:
    """One histogram panel per metric, methods overlaid (these are score distributions, not one
    of the :mod:`ptk.plots` figure kinds)."""
    import pandas as pd
    from matplotlib.figure import Figure

    if not metrics:
        return None
    fig = Figure(figsize=(3.4 * len(metrics) + 0.6, 2.9), layout="constrained")
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    ranges = {"tm": (0, 1), "gdt_ts": (0, 1), "gdt_ha": (0, 1), "lddt": (0, 1)}
    for ax, m in zip(axes, metrics, strict=True):
        for j, (method, group) in enumerate(frame.groupby("method", sort=True)):
            vals = pd.to_numeric(group[m], errors="coerce").dropna().to_numpy()
            if not len(vals):
                continue
            lo, hi = ranges.get(m, (0.0, max(1.0, float(np.nanmax(frame[m].astype(float))) * 1.05)))
            ax.hist(
                vals, bins=20, range=(lo, hi), alpha=0.6, color=f"C{j}", label=f"{method} (n={len(vals)})"
            )
            ax.axvline(float(np.mean(vals)), color=f"C{j}", linestyle="--", linewidth=1)
        ax.set_xlabel(_METRIC_NAMES.get(m, m))
        ax.grid(True, color="0.9", linewidth=0.5)
    axes[0].set_ylabel("structures")
    axes[-1].legend(fontsize=8)
    return fig


def _read_traces(folder: Path, limit: int = 400) -> list[np.ndarray]:
    """Cα coordinates of the structure files in ``folder`` (sorted, at most ``limit``)."""
    import warnings

    from ptk.errors import StructureError
    from ptk.metrics import read_ca

    if not folder.is_dir():
        return []
    out = []
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in (".pdb", ".cif", ".gz"))
    for path in files[:limit]:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out.append(read_ca(path).coords)
        except StructureError:
            continue
    return out


def _structure_section(
    page: _Page, run: Run, sampling: Sampling | None, contacts: Sequence[ContactPrediction]
) -> None:
    from ptk.plots import contact_map_figure, pseudo_ramachandran_figure

    parts = []
    if run.family in DIFFUSION_FAMILIES and sampling is not None:
        sets = {
            "ground truth": _read_traces(sampling.ref),
            "DDIM samples": _read_traces(sampling.ddim),
            "x0 predictions": _read_traces(sampling.x0),
        }
        empty = [k for k, v in sets.items() if not v]
        sets = {k: v for k, v in sets.items() if v}
        if sets:
            fig = pseudo_ramachandran_figure(
                sets, title=f"{run.version} pseudo-Ramachandran ({sampling.label})"
            )
            parts.append(
                _figure(
                    page.save(fig, "pseudo_ramachandran.png"),
                    "pseudo-Ramachandran panels",
                    "Consecutive Cα pseudo-torsions (τᵢ₋₁, τᵢ), as the Mini-Fold page draws them: "
                    "helices sit near (50°, 50°), strands around (−150°, −150°), wrapping across "
                    "the ±180° edges to the top-left corner (the page writes (−120°, 120°)); "
                    "samples that learned local geometry concentrate there. "
                    "<code>ptk plot rama --axes tau-theta</code> draws τ against the pseudo-bond angle θ.",
                )
            )
        for k in empty:
            parts.append(page.miss("rama", f"no {k} PDB files in {sampling.path}"))
        ref, ddim = sampling.ref, sampling.ddim
        pairs = [(p, ddim / p.name) for p in sorted(ref.glob("*.pdb")) if (ddim / p.name).is_file()]
        if pairs and not contacts:
            from ptk.metrics import read_ca

            ref_path, pred_path = pairs[0]
            ref_ca, pred_ca = read_ca(ref_path).coords, read_ca(pred_path).coords
            if len(ref_ca) == len(pred_ca):
                d = np.linalg.norm(pred_ca[:, None] - pred_ca[None], axis=-1)
                fig = contact_map_figure(
                    (d < 8.0).astype(float),
                    ref_ca,
                    title=f"{ref_path.stem}: reference contacts vs the DDIM sample's (Cα < 8 Å, as 0/1)",
                )
                parts.append(_figure(page.save(fig, "contact_map_sample.png"), "contact map of a sample"))
    elif run.family in DIFFUSION_FAMILIES:
        parts.append(page.miss("rama", "no samples, so no pseudo-Ramachandran panels"))
    for i, pred in enumerate(contacts[:3]):
        fig = contact_map_figure(pred.prob, pred.ca, title=f"{pred.id}: predicted contact probabilities")
        parts.append(_figure(page.save(fig, f"contact_map_{i}.png"), f"contact map {pred.id}"))
    if run.family == "contact-classifier" and not contacts:
        parts.append(page.miss("contacts", "no contact predictions were computed for this run"))
    if parts:
        title = "Pseudo-Ramachandran and contact maps" if run.family in DIFFUSION_FAMILIES else "Contact maps"
        page.add("structure", title, "".join(parts))


def _qfit_section(page: _Page, run: Run, chi_panels: Sequence[ChiPanel], note: str | None) -> None:
    from ptk.plots import chi_density_figure, loss_curves_figure

    if run.family != "qfitlatent":
        return
    parts = []
    frame = run.metrics
    acc_cols = [
        c
        for c in (f"val_chi_acc_{d}" for d in range(1, 5))
        if frame is not None and c in frame and frame[c].notna().any()
    ]
    if frame is not None and len(frame):
        best = run.best_row if run.best_row is not None else frame.iloc[-1]
        header = ["", "val NLL"] + [f"χ{c[-1]} accuracy" for c in acc_cols]
        cells = [_cell(best.get("val_nll", best.get("val_loss")))] + [_cell(best.get(c)) for c in acc_cols]
        last = frame.iloc[-1]
        last_cells = [_cell(last.get("val_nll", last.get("val_loss")))] + [
            _cell(last.get(c)) for c in acc_cols
        ]
        parts.append(
            "<p>Occupancy-weighted von Mises mixture NLL over the valid validation residues "
            "(≥ 2 conformers, ≥ 1 defined χ) and the top-mode χ accuracy (μ of the heaviest component "
            "within 20° of the highest-occupancy altloc).</p>"
        )
        parts.append(
            _table(
                header,
                [
                    ["best epoch " + str(int(best["epoch"]))] + cells,
                    ["last epoch " + str(int(last["epoch"]))] + last_cells,
                ],
            )
        )
        if acc_cols:
            acc_terms = [c.removeprefix("val_") for c in acc_cols]
            fig = loss_curves_figure(
                {run.version: frame},
                terms=["nll", *acc_terms],
                log=False,
                title="qFitLatent: NLL and per-χ accuracy per epoch",
            )
            parts.append(_figure(page.save(fig, "qfit_nll_acc.png"), "NLL and per-chi accuracy"))
    for i, panel in enumerate(chi_panels):
        fig = chi_density_figure(panel.sets, title=panel.title)
        parts.append(_figure(page.save(fig, f"chi_density_{i}.png"), panel.title, _e(panel.caption)))
    if not chi_panels:
        parts.append(page.miss("chi", note or "no χ densities were computed for this run"))
    page.add("qfit", "qFitLatent: χ distributions", "".join(parts))


def _comparison(page: _Page, runs: Sequence[Run], runs_dir: Path, current: Run | None) -> None:
    versions = sorted({r.version for r in runs})
    if not versions:
        page.add("compare", "All versions", page.miss("compare", f"no runs under {runs_dir}"))
        return
    header = [
        "version",
        "family",
        "size",
        "params",
        "epochs",
        "best epoch",
        "best val total",
        "DDIM TM",
        "DDIM GDT-TS",
        "family metrics",
        "run",
    ]
    rows, classes = [], []
    for v in versions:
        r = pick_run(v, runs_dir, runs)
        if r is None:
            continue
        best = r.best_row
        tm = gdt = ""
        fam = []
        if r.metrics is not None and len(r.metrics):
            frame = r.metrics
            if "ddim_tm" in frame and frame["ddim_tm"].notna().any():
                measured = frame[frame["ddim_tm"].notna()]
                at = measured[measured["epoch"] <= (best["epoch"] if best is not None else 1e9)]
                pick = (at if len(at) else measured).iloc[-1]
                tm = f'{_cell(pick["ddim_tm"])} <span class="small">(E{int(pick["epoch"])})</span>'
                gdt = _cell(pick.get("ddim_gdt_ts"))
            src = best if best is not None else frame.iloc[-1]
            for c in ("val_nll", "val_chi_acc_1", "val_chi_acc_2", "class_acc", "arch_acc", "contact_recall"):
                if c in frame and not _cell(src.get(c)) == "":
                    fam.append(f"{c.removeprefix('val_')} {_cell(src.get(c))}")
        params = r.config.get("n_params")
        rows.append(
            [
                f"<strong>{_e(v)}</strong>",
                _e(r.family),
                _e(str(r.config.get("size", ""))),
                f"{params:,}" if isinstance(params, int) else "",
                str(r.n_epochs),
                str(int(best["epoch"])) if best is not None else "",
                _cell(best.get("val_loss")) if best is not None else "",
                tm,
                gdt,
                _e(", ".join(fam)),
                f"<code>{_e(str(r.path))}</code>",
            ]
        )
        classes.append("current" if current is not None and r.path == current.path else "")
    body = (
        f"<p>Every version with a run under <code>{_e(str(runs_dir))}</code> (one run per version: "
        "<code>RUNS/&lt;version&gt;</code> when present, else the newest). Metrics are at each run's best "
        "epoch; DDIM scores at the last sampling up to it. Totals of different families are not "
        "comparable.</p>" + _table(header, rows, classes, cls="data compare")
    )
    page.add("compare", "All versions", body)


def _gradient_agreement(page: _Page, run: Run) -> None:
    """``grad_cosine.csv`` (``--set grad_cosine_every=N``): the mean cosine between each pair of
    weighted loss terms' gradients, in the first and the last epoch logged."""
    import pandas as pd

    path = run.path / "grad_cosine.csv"
    if not path.is_file():
        return
    frame = pd.read_csv(path)
    if frame.empty:
        return
    first, last = int(frame["epoch"].min()), int(frame["epoch"].max())
    mean = frame.groupby(["term_a", "term_b", "epoch"])["cosine"].mean()
    rows = []
    for (a, b), _ in frame.groupby(["term_a", "term_b"], sort=False):
        cells = [_cell(mean.get((a, b, e), math.nan)) for e in (first, last)]
        rows.append([_e(a), _e(b), *cells])
    header = ["term", "term", f"mean cosine, epoch {first}", f"mean cosine, epoch {last}"]
    body = (
        "<p>Cosine similarity between the gradients of two weighted loss terms over the trainable "
        "parameters, every <code>grad_cosine_every</code> steps (<code>grad_cosine.csv</code>): "
        "negative values are terms pulling against each other, the page's gradient competition.</p>"
        + _table(header, rows, cls="data gradcos")
    )
    page.add("gradcos", "Gradient agreement between loss terms", body)


def _run_classes(run: Run) -> dict[str, int]:
    """id → CATH class of the run's training shards (config.json ``data``); {} when they are
    gone or are not cath shards."""
    from ptk import shards
    from ptk.errors import ShardError

    data = (run.config.get("data") or {}).get("train")
    try:
        return shards.cath_classes(data) if data else {}
    except (OSError, ShardError):
        return {}


def _by_class(run: Run, sampling: Sampling) -> dict[Any, dict[str, dict[str, float]]]:
    """Per CATH class: TM, both sides' helix/strand fractions and long-range contact recall of
    the DDIM samples of ``sampling`` against their references."""
    import torch

    from ptk.metrics import evaluate_pairs, summarize_by

    pairs = [(r, sampling.ddim / r.name) for r in sorted(sampling.ref.glob("*.pdb"))]
    pairs = [(r, d) for r, d in pairs if d.is_file()]
    if not pairs:
        return {}
    frame = evaluate_pairs(
        [str(d) for _, d in pairs], [str(r) for r, _ in pairs], torch.device("cpu"),
        structure_stats=True, names=[r.stem for r, _ in pairs],
    )  # fmt: skip
    classes = _run_classes(run)
    frame["cath_class"] = frame["name"].map(classes).astype("Int64")
    return summarize_by(frame, "cath_class")


#: The columns of the per-class table (metric, header).
_CLASS_COLUMNS = (
    ("tm", "DDIM TM"),
    ("ref_helix", "ref helix"),
    ("pred_helix", "sample helix"),
    ("ref_strand", "ref strand"),
    ("pred_strand", "sample strand"),
    ("lr_contact_recall", "LR contact recall"),
)


def _class_section(page: _Page, runs: Sequence[Run], runs_dir: Path, current: Run | None) -> None:
    """The page's central question, per CATH class and version: do the samples keep the
    references' β-strands (and helices)?"""
    from ptk.labels import CATH_CLASS_NAMES

    picked = [pick_run(v, runs_dir, runs) for v in sorted({r.version for r in runs})]
    if current is not None and all(r is None or r.path != current.path for r in picked):
        picked.append(current)
    rows, classes = [], []
    for r in picked:
        sampling = latest_samples(r) if r is not None and r.family in DIFFUSION_FAMILIES else None
        if r is None or sampling is None:
            continue
        for key, summary in _by_class(r, sampling).items():
            label = "no class" if key is None else f"{int(key)} {CATH_CLASS_NAMES.get(int(key), '?')}"
            n = summary.get("tm", {}).get("n", 0)
            cells = [_cell(summary[c]["mean"]) if c in summary else "" for c, _ in _CLASS_COLUMNS]
            rows.append(
                [f"<strong>{_e(r.version)}</strong> ({_e(sampling.label)})", _e(label), str(n), *cells]
            )
            classes.append("current" if current is not None and r.path == current.path else "")
    if not rows:
        if current is not None and current.family in DIFFUSION_FAMILIES:
            page.add("classes", "Did it learn β-sheets?", page.miss("classes", "no DDIM samples to classify"))
        return
    header = ["version (sampling)", "CATH class", "n", *(h for _, h in _CLASS_COLUMNS)]
    body = (
        "<p>v13 exists because v12b “learns helices but not β-sheets”. Per version's latest DDIM "
        "samples and CATH class (from the run's training shards; <em>no class</em> where they hold "
        "none): helix and strand fractions of the references and of the samples (biotite's Cα "
        "P-SEA), and the fraction of the references' long-range (|i − j| ≥ 24) Cα contacts the "
        "samples make. A version that learned β-sheets keeps the mainly-β rows' strand fraction. "
        "<code>ptk eval --structure-stats --by cath_class</code> gives the same table for any "
        "folder of samples.</p>" + _table(header, rows, classes, cls="data classes")
    )
    page.add("classes", "Did it learn β-sheets? Secondary structure by CATH class", body)


def _template() -> string.Template:
    text = (resources.files("ptk.pipelines") / "templates" / "report.html").read_text(encoding="utf-8")
    return string.Template(text)


#: the file that marks a folder as a ptk report's, so a rerun may replace its page and figures.
REPORT_MARKER = ".ptk-report"


def claim_report_folder(out_dir: str | os.PathLike[str]) -> Path:
    """``out_dir``, created or checked to be a report's: new, empty, marked by
    :data:`REPORT_MARKER`, or holding only ``index.html`` and ``figures/`` (a report of ptk 0.1).
    Any other folder is refused, since writing the report replaces ``index.html`` and every
    ``figures/*.png`` in it."""
    from ptk.errors import PtkError

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise PtkError(f"--out {out}: a file, not a folder")
    if out.is_dir() and not (out / REPORT_MARKER).is_file():
        found = sorted(p.name for p in out.iterdir())
        if found and not set(found) <= {"index.html", "figures"}:
            raise PtkError(
                f"--out {out}: not a ptk report folder (it holds {', '.join(found[:3])}"
                f"{', ...' if len(found) > 3 else ''}); name a new or empty folder"
            )
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / REPORT_MARKER).write_text("written by ptk report; a rerun replaces index.html and figures/\n")
    except OSError as exc:
        raise PtkError(f"--out {out}: cannot write there ({exc.strerror or exc})") from None
    return out


def build_report(
    version: str,
    runs_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    info: VersionInfo | None = None,
    run: Run | None = None,
    contacts: Sequence[ContactPrediction] = (),
    chi_panels: Sequence[ChiPanel] = (),
    chi_note: str | None = None,
    dpi: int = 110,
) -> Report:
    """Write the report of ``version`` (its run under ``runs_dir``, or ``run``) to ``out_dir``.

    Without a run, the page still holds the version card from ``info`` (when given), the
    comparison table and the ``ptk train`` command that would make the run.
    """
    runs_dir = Path(runs_dir)
    out = claim_report_folder(out_dir)
    page = _Page(out, dpi)
    runs = find_runs(runs_dir)
    if run is None:
        run = pick_run(version, runs_dir, runs)
    elif all(r.path.resolve() != run.path.resolve() for r in runs):
        runs = [*runs, run]
    # start from a clean figures folder so a re-run leaves no stale PNG
    if page.fig_dir.is_dir():
        for old in page.fig_dir.glob("*.png"):
            old.unlink()
    if run is None:
        card = ""
        if info is not None:
            card = f"<p><strong>{_e(version)}</strong> ({_e(info.family)}): {_e(info.description)}</p>"
            if info.changes:
                card += "<ul>" + "".join(f"<li>{_e(c)}</li>" for c in info.changes) + "</ul>"
        cmd = f"ptk train --version {version} --data SHARDS --out {runs_dir / version}"
        page.add(
            "card", f"{_e(version)}", card + page.miss("run", f"no run of {version} under {runs_dir}", cmd)
        )
    else:
        _version_card(page, run, info)
        parent = run.config.get("parent") or (info.parent if info else None)
        parent_run = pick_run(parent, runs_dir, runs) if parent else None
        _training_table(page, run, parent_run)
        _loss_curves(page, run, info, runs, runs_dir)
        _gradient_agreement(page, run)
        sampling = latest_samples(run)
        _ddim_section(page, run, sampling)
        _structure_section(page, run, sampling, contacts)
        _qfit_section(page, run, chi_panels, chi_note)
    _class_section(page, runs, runs_dir, run)
    _comparison(page, runs, runs_dir, run)
    if page.missing:
        items = "".join(
            f"<li>{_e(m.message)}" + (f": <code>{_e(m.command)}</code>" if m.command else "") + "</li>"
            for m in page.missing
        )
        page.add("missing", "Missing pieces", f'<ul class="missing-list">{items}</ul>')
    nav = "".join(f'<a href="#{a}">{_strip_tags(t)}</a>' for a, t, _ in page.sections)
    body = "".join(f'<section id="{a}"><h2>{t}</h2>{b}</section>' for a, t, b in page.sections)
    now = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    summary = _summary_line(version, run)
    text = _template().substitute(
        title=_e(f"ptk report: {version}"),
        heading=_e(version),
        summary=summary,
        nav=nav,
        body=body,
        generated=_e(now),
        runs_dir=_e(str(runs_dir)),
    )
    path = out / "index.html"
    atomic_write(path, text)
    return Report(html=path, out_dir=out, run=run, figures=list(page.figures), missing=list(page.missing))


def _strip_tags(text: str) -> str:
    return re.sub(r"<[^>]+>", "", text)


def _summary_line(version: str, run: Run | None) -> str:
    if run is None:
        return f"No run of {_e(version)} yet."
    best = run.best_row
    text = f"{_e(run.family)} · size {_e(str(run.config.get('size', '?')))} · {run.n_epochs} epoch(s)"
    if best is not None:
        text += f" · best epoch {int(best['epoch'])}, val total {_cell(best.get('val_loss'))}"
        if "ddim_tm" in run.metrics and run.metrics["ddim_tm"].notna().any():
            text += f" · last DDIM TM {_cell(run.metrics['ddim_tm'].dropna().iloc[-1])}"
    return text
