"""The version card: goal, architecture, parameters, recipe, dataset, the run, and what changed
from the parent."""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

from ptk.report.blocks import card
from ptk.report.inputs import VersionInfo
from ptk.report.page import Page
from ptk.report.run import Run

_e = html.escape


def version_card(page: Page, run: Run, info: VersionInfo | None) -> None:
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
    page.add("card", f"{_e(run.version)}: version card", card(rows))


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
