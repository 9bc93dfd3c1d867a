"""The import direction of the three layers, read from the source with ``ast`` (every import,
the ones inside functions too; folder-based tools cannot see it, since ``ptk`` is ``toolkit/``):

- the core ``ptk`` (``toolkit/``) imports neither ``ptk.models`` nor ``ptk.pipelines``;
- ``ptk.models`` (``models/``) imports neither ``ptk.pipelines`` nor the command and cluster
  libraries (click, dask, distributed): a model is usable from any training script.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"toolkit": "ptk", "models": "ptk.models", "pipelines": "ptk.pipelines"}
FORBIDDEN = {
    "toolkit": ("ptk.models", "ptk.pipelines"),
    "models": ("ptk.pipelines", "click", "dask", "distributed"),
}


def imported_names(path: Path, module: str) -> list[tuple[int, str]]:
    """``(line, dotted name)`` of every import in ``path``, the file of ``module``: ``import a.b``
    gives ``a.b``, ``from a import b`` gives ``a.b`` (b may be a module), relative imports are
    resolved against ``module``."""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    names = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package[: len(package) - node.level + 1], *([base] if base else [])])
            names += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return names


def _module(path: Path) -> str:
    folder, *rest = path.relative_to(ROOT).with_suffix("").parts
    return ".".join([PACKAGES[folder], *rest])


def _violations(folder: str) -> list[str]:
    banned = FORBIDDEN[folder]
    return [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in sorted((ROOT / folder).rglob("*.py"))
        for line, name in imported_names(path, _module(path))
        if any(name == b or name.startswith(b + ".") for b in banned)
    ]


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_imports_point_one_way(folder: str) -> None:
    assert _violations(folder) == []


def test_the_walk_sees_every_kind_of_import(tmp_path: Path) -> None:
    """The checker itself, on a file of each form (a checker that saw nothing would pass every
    tree): absolute and relative, at module level and inside a function."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import ptk.models\n"
        "from ptk import pipelines\n"
        "from . import plots\n"
        "from .minifold import config\n"
        "from .. import pipelines as p\n"
        "def f():\n"
        "    import click\n"
    )
    assert [name for _, name in imported_names(probe, "ptk.models.probe")] == [
        "ptk.models",
        "ptk.pipelines",
        "ptk.models.plots",
        "ptk.models.minifold.config",
        "ptk.pipelines",
        "click",
    ]
    init = tmp_path / "__init__.py"
    init.write_text("from . import config\nfrom .. import losses\n")
    assert [name for _, name in imported_names(init, "ptk.models.minifold")] == [
        "ptk.models.minifold.config",
        "ptk.models.losses",
    ]
