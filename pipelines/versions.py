"""``ptk versions``: every model version with its parent, what changed and its size, as the one
registry (:mod:`ptk.models.registry`) describes them: the Mini-Fold versions (contact-classifier,
v10 … v14) first, then qFitLatent and the Pallatom refiner. Parameter counts are of the
default-size model, built on the ``meta`` device (no memory, no weights).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import click

__all__ = ["versions", "version_rows"]

log = logging.getLogger("ptk.versions")


def _row(name: str) -> dict[str, Any]:
    from ptk.models import registry

    card = registry.describe(name)
    try:
        total, trainable = registry.parameter_count(name)
    except Exception as exc:  # report the row, not a crash, when a family cannot be built
        log.warning("cannot build %s: %s", name, exc)
        total = trainable = None
    return {
        "name": name,
        "family": card.family,
        "parent": card.parent,
        "description": card.description,
        "changes": list(card.changes),
        "changed_keys": list(card.changed_keys),
        "page_deviations": [
            {"key": key, "value": value, "page": page, "why": why}
            for key, value, page, why in card.page_deviations
        ],
        "params": total,
        "trainable_params": trainable,
    }


def version_rows() -> list[dict[str, Any]]:
    """One dict per version: name, family, parent, description, changes, changed_keys,
    page_deviations (key, value, page, why), params, trainable_params."""
    from ptk.models import registry

    return [_row(name) for name in registry.list_versions()]


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
