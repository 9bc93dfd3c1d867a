"""The one registry (``ptk.models.registry``): every family's versions are TOML files, and list,
describe, task, build and parameter count are answered in one place for ``ptk versions``,
``ptk train`` and ``ptk report`` alike."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from ptk.errors import ConfigError
from ptk.models import registry
from ptk.models.minifold import registry as minifold_registry
from ptk.models.qfitlatent import QFitLatentConfig


@pytest.fixture
def family_dir(tmp_path, monkeypatch):
    """The registry reading a temporary copy of ``models/versions/``."""
    real = Path(registry.__file__).parent / "versions"
    for path in real.glob("*.toml"):
        (tmp_path / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")

    def clear():
        for fn in (registry._raw, registry._family_versions, registry.parameter_count):
            fn.cache_clear()

    clear()
    monkeypatch.setattr(registry, "_version_dir", lambda: tmp_path)
    yield tmp_path
    monkeypatch.undo()
    clear()


def test_every_family_is_listed_once_and_resolves_at_every_size():
    names = registry.list_versions()
    assert names == [*minifold_registry.list_versions(), "qfitlatent", "pallatom-refiner"]
    assert len(set(names)) == len(names)
    families = {name: registry.describe(name).family for name in names}
    assert families["qfitlatent"] == "qfitlatent" and families["pallatom-refiner"] == "pallatom"
    assert families["v13"] == "minifold" and families["contact-classifier"] == "contact-classifier"
    for name in ("qfitlatent", "pallatom-refiner"):
        for size in registry.SIZES:
            task = registry.get_task(name, size)
            assert task.name == name and task.size == size and task.family == families[name]
    with pytest.raises(ConfigError, match="allowed: contact-classifier"):
        registry.describe("v99")


def test_version_tables_merge_the_size_over_the_default():
    """A size table overrides key by key; the rest is the default's (README recipe for
    qFitLatent: AdamW 3e-4, cosine to lr/100, batch size 1)."""
    default, small = registry.version_tables("qfitlatent"), registry.version_tables("qfitlatent", "small")
    assert default["train"]["lr"] == 3e-4 and default["train"]["min_lr"] == pytest.approx(3e-4 / 100)
    assert default["train"]["batch_size"] == 1 == small["train"]["batch_size"]
    assert small["train"]["lr"] == 3e-3 and small["train"]["ema_decay"] == 0.99
    assert QFitLatentConfig.from_dict(default["model"]) == QFitLatentConfig()  # README's defaults
    assert QFitLatentConfig.small().d_s == 32 and QFitLatentConfig.tiny().d_s == 16
    refiner = registry.get_task("pallatom-refiner", "small").model_config["model"]
    assert refiner["c_atom"] == 64 and refiner["c_atompair"] == 16  # small's own, default's
    with pytest.raises(ConfigError, match="size"):
        registry.version_tables("qfitlatent", "huge")


@pytest.mark.parametrize("name", ["qfitlatent", "pallatom-refiner", "v11"])
def test_parameter_count_on_meta_equals_a_real_build(name):
    total, trainable = registry.parameter_count(name, "tiny")
    torch.manual_seed(0)
    model = registry.build(name, "tiny")
    assert total == sum(p.numel() for p in model.parameters())
    assert trainable == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert all(p.device.type == "cpu" for p in model.parameters())


def test_a_version_file_naming_an_unknown_table_or_family_is_a_config_error(family_dir):
    path = family_dir / "qfitlatent.toml"
    text = path.read_text(encoding="utf-8")
    path.write_text(text + "\n[optimizer]\nlr = 1.0\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="optimizer"):
        registry.list_versions()
    path.write_text(text.replace('family = "qfitlatent"', 'family = "alphafold"'), encoding="utf-8")
    registry._raw.cache_clear()
    registry._family_versions.cache_clear()
    with pytest.raises(ConfigError, match="alphafold"):
        registry.list_versions()
    path.write_text(text.replace("d_s = 32", "d_single = 32"), encoding="utf-8")
    registry._raw.cache_clear()
    registry._family_versions.cache_clear()
    with pytest.raises(ConfigError, match="d_single"):
        registry.get_task("qfitlatent", "small")


def test_a_new_version_file_is_a_new_version_everywhere(family_dir):
    """Adding a TOML is all it takes: ``ptk versions`` lists it with its size, and ``ptk train``
    would build it."""
    from ptk.pipelines.cli import cli
    from ptk.pipelines.report import version_info

    text = (family_dir / "pallatom-refiner.toml").read_text(encoding="utf-8")
    (family_dir / "pallatom-wide.toml").write_text(
        text.replace("c_atom = 128", "c_atom = 256"), encoding="utf-8"
    )
    assert registry.list_versions()[-2:] == ["pallatom-refiner", "pallatom-wide"]
    wide, base = registry.parameter_count("pallatom-wide"), registry.parameter_count("pallatom-refiner")
    assert wide[0] > base[0]
    rows = {row["name"]: row for row in json.loads(CliRunner().invoke(cli, ["versions", "--json"]).output)}
    assert rows["pallatom-wide"]["params"] == wide[0] and rows["pallatom-wide"]["family"] == "pallatom"
    assert registry.get_task("pallatom-wide").model_config["model"]["c_atom"] == 256
    info = version_info("pallatom-wide")
    assert info.family == "pallatom" and info.default_params == wide[0]


def test_the_report_card_and_ptk_versions_read_the_same_card():
    from ptk.pipelines.cli import cli
    from ptk.pipelines.report import version_info

    rows = {row["name"]: row for row in json.loads(CliRunner().invoke(cli, ["versions", "--json"]).output)}
    for name in ("v13", "qfitlatent"):
        card, info, row = registry.describe(name), version_info(name), rows[name]
        assert info.description == row["description"] == card.description
        assert info.default_params == row["params"] == registry.parameter_count(name)[0]
        assert [d[0] for d in info.page_deviations] == [d["key"] for d in row["page_deviations"]]
    assert version_info("v13").ancestors == ["v10", "v11", "v11b", "v12", "v12b"]
