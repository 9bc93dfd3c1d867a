"""``ptk versions``: every model version with its parent, what changed and its size.

The Mini-Fold registry (``ptk.models.minifold``: contact-classifier, v10 … v14) first, then the
trainable versions outside it (qFitLatent, the Pallatom refiner) as the task registry
(``ptk.models.tasks.extra_versions``) lists them. Parameter counts are of the default-size
model, built on the ``meta`` device (no memory, no weights).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import click

__all__ = ["versions", "version_rows"]

log = logging.getLogger("ptk.versions")


def _count(build: Any) -> tuple[int, int]:
    """(total, trainable) parameters of the module ``build()`` returns, built on ``meta``."""
    import torch

    try:
        with torch.device("meta"):
            model = build()
    except Exception:  # a model whose constructor needs real tensors: build it for real
        model = build()
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable


def _minifold_rows() -> list[dict[str, Any]]:
    from ptk.models import minifold
    from ptk.models.minifold.config import page_deviations

    rows = []
    for name in minifold.list_versions():
        cfg = minifold.load_version(name)
        total, trainable = _count(lambda cfg=cfg: minifold.build_model(cfg))
        rows.append(
            {
                "name": name,
                "family": cfg.family,
                "parent": cfg.parent,
                "description": cfg.description,
                "changes": list(cfg.changes),
                "changed_keys": minifold.changed_keys(name),
                "page_deviations": [
                    {"key": d.key, "value": value, "page": d.page, "why": d.why}
                    for d, value in page_deviations(cfg.to_dict())
                ],
                "params": total,
                "trainable_params": trainable,
            }
        )
    return rows


def _extra_rows() -> list[dict[str, Any]]:
    try:
        from ptk.models import tasks
    except ImportError:  # pragma: no cover - task registry not installed
        return []
    rows = []
    for extra in tasks.extra_versions():
        name = extra["name"]
        try:
            total, trainable = _count(lambda name=name: tasks.get_task(name, "default").build_model())
        except Exception as exc:  # report the row, not a crash, when a family cannot be built
            log.warning("cannot build %s: %s", name, exc)
            total = trainable = None
        rows.append(
            {
                "name": name,
                "family": extra.get("family", ""),
                "parent": extra.get("parent"),
                "description": extra.get("description", ""),
                "changes": list(extra.get("changes", [])),
                "changed_keys": [],
                "page_deviations": [],
                "params": total,
                "trainable_params": trainable,
            }
        )
    return rows


def version_rows() -> list[dict[str, Any]]:
    """One dict per version: name, family, parent, description, changes, changed_keys,
    page_deviations (key, value, page, why), params, trainable_params."""
    return _minifold_rows() + _extra_rows()


def _millions(n: int | None) -> str:
    return "?" if n is None else f"{n / 1e6:.2f}M"


@click.command("versions")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON.")
def versions(as_json: bool) -> None:
    """List every model version with its parent, what changed and its parameter count."""
    rows = version_rows()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    header = f"{'version':<20} {'family':<20} {'parent':<8} {'params':>8} {'trainable':>10}  description"
    click.echo(header)
    click.echo("-" * len(header))
    for row in rows:
        click.echo(
            f"{row['name']:<20} {row['family']:<20} {row['parent'] or '-':<8} {_millions(row['params']):>8} "
            f"{_millions(row['trainable_params']):>10}  {row['description']}"
        )
        for change in row["changes"]:
            click.echo(f"{'':<22}- {change}")
        for dev in row["page_deviations"]:
            click.echo(f"{'':<22}! {dev['key']} = {dev['value']} (page: --set {dev['key']}={dev['page']})")
    click.echo(f"{len(rows)} versions")
    if any(row["page_deviations"] for row in rows):
        click.echo("! = a default that differs from the reference page; `ptk versions --json` says why")
