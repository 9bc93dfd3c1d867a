"""``ptk report`` on real tiny runs: the page, its missing-piece messages, and a headless-Chromium
check that it loads without console errors, every image loads, the training table has one row
per epoch and the screenshot is not blank.

The session fixtures run the real commands in-process: ``ptk ingest cath`` on a few shared
``dompdb`` files + ``ptk train --version v13 --size tiny --epochs 2``, and ``ptk ingest qfit``
on the shipped altloc entries + ``ptk train --version qfitlatent --size tiny --epochs 2``.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from ptk.pipelines.cli import cli

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _ptk(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="session")
def report_runs(
    tmp_path_factory: pytest.TempPathFactory, dompdb_files: list[Path], shared_data: Path
) -> Path:
    """A runs folder with a tiny v13 run (2 epochs, DDIM sampled each epoch), a tiny qfitlatent
    run and a one-epoch contact classifier, all from the real commands."""
    from ptk.datasets import sample_data_dir

    root = tmp_path_factory.mktemp("report")
    cath, qfit, runs = root / "shards" / "cath", root / "shards" / "qfit", root / "runs"
    splits = shared_data / "cath" / "chain_set_splits.json"  # CATH classes (no validation rows)
    _ptk("ingest", "cath", *map(str, dompdb_files[:6]), "--out", str(cath), "--scheduler", "synchronous",
         "--splits", str(splits))  # fmt: skip
    _ptk("ingest", "qfit", str(sample_data_dir("altloc")), "--out", str(qfit), "--scheduler", "synchronous")
    common = ["--size", "tiny", "--epochs", "2", "--device", "cpu"]
    _ptk(
        "train",
        "--version",
        "v13",
        "--data",
        str(cath),
        "--out",
        str(runs / "v13"),
        *common,
        "--set",
        "encoder=random",
        "--set",
        "grad_cosine_every=1",
    )
    _ptk("train", "--version", "qfitlatent", "--data", str(qfit), "--out", str(runs / "qfit-try1"), *common)
    one = ["--size", "tiny", "--epochs", "1", "--device", "cpu"]
    _ptk("train", "--version", "contact-classifier", "--data", str(cath), "--out", str(runs / "cc"), *one)
    return runs


@pytest.fixture(scope="session")
def v13_report(report_runs: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("v13_report")
    output = _ptk("report", "--version", "v13", "--runs", str(report_runs), "--out", str(out))
    return out / "index.html", output


def test_v13_report_sections(v13_report: tuple[Path, str], report_runs: Path) -> None:
    page, output = v13_report
    assert f"report: {page}" in output
    text = page.read_text()
    for section in ("version card", "training progress", "Loss curves", "DDIM evaluation",
                    "Pseudo-Ramachandran", "All versions"):  # fmt: skip
        assert section in text, section
    # the version card comes from the registry and the run's config.json
    config = json.loads((report_runs / "v13" / "config.json").read_text())
    assert f"{config['n_params']:,} total" in text
    assert "Parent</th><td>v12b" in text
    assert "triangle" in text.lower()
    # defaults that differ from the reference page are named, each with the --set back to it
    card = text.split("Differs from the page</th>")[1].split("</tr>")[0]
    assert "--set model.denoiser.frame_init=snr_gated" in card and "--set train.sample_guidance=1.5" in card
    # every figure the page names exists next to it, and nothing points off the machine
    sources = re.findall(r'<img src="([^"]+)"', text)
    assert len(sources) >= 4
    for src in sources:
        assert (page.parent / src).is_file(), src
    assert "http://" not in text and "https://" not in text
    assert "<script" not in text and "<link" not in text
    # ancestors without runs are named, with the command that would make one
    assert "ptk train --version v12b" in text


def test_secondary_structure_by_cath_class(v13_report: tuple[Path, str], report_runs: Path) -> None:
    """The page's question per class: one row per CATH class of the latest DDIM samples, its
    count the number of sampled ids of that class in the training shards (read here)."""
    import collections

    from ptk import shards
    from ptk.labels import CATH_CLASS_NAMES

    text = v13_report[0].read_text()
    assert "Did it learn β-sheets?" in text
    section = text.split('<section id="classes">')[1].split("</table>")[0]
    latest = max((report_runs / "v13" / "samples").glob("epoch_*"))
    ids = sorted(p.stem for p in (latest / "ref").glob("*.pdb"))
    table = shards.read_table(json.loads((report_runs / "v13" / "config.json").read_text())["data"]["train"])
    cls = dict(zip(table.column("id").to_pylist(), table.column("cath_class").to_pylist(), strict=True))
    counts = collections.Counter(cls.get(i) for i in ids)
    assert sum(counts.values()) == len(ids) >= 1
    for key, n in counts.items():
        label = "no class" if key is None else f"{key} {CATH_CLASS_NAMES[key]}"
        assert re.search(rf"<td>{re.escape(label)}</td><td>{n}</td>", section), (label, n, section)


def test_gradient_agreement_section(v13_report: tuple[Path, str], report_runs: Path) -> None:
    """grad_cosine.csv (grad_cosine_every=1) becomes a table: one row per pair of loss terms, the
    mean cosine of the first and the last epoch as read from the CSV here."""
    import csv
    import statistics

    from ptk.report import _cell

    with open(report_runs / "v13" / "grad_cosine.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    epochs = sorted({int(r["epoch"]) for r in rows})
    pairs = list(dict.fromkeys((r["term_a"], r["term_b"]) for r in rows))
    assert len(pairs) >= 10 and epochs == [1, 2]
    section = v13_report[0].read_text().split('<section id="gradcos">')[1].split("</table>")[0]
    for a, b in pairs:
        means = [
            statistics.fmean(
                float(r["cosine"]) for r in rows if (r["term_a"], r["term_b"], r["epoch"]) == (a, b, str(e))
            )
            for e in epochs
        ]
        cells = "".join(f"<td>{_cell(m)}</td>" for m in means)  # the page's number format
        assert f"<td>{a}</td><td>{b}</td>{cells}" in section, (a, b, means)


def test_training_table_has_one_row_per_epoch(v13_report: tuple[Path, str], report_runs: Path) -> None:
    import pandas as pd

    text = v13_report[0].read_text()
    metrics = pd.read_csv(report_runs / "v13" / "metrics.csv")
    table = re.search(r'<table class="data metrics">(.*?)</table>', text, re.S).group(1)
    rows = re.findall(r"<tr( class=\"[^\"]*\")?><td>(\d+)</td>", table.split("<tbody>")[1])
    assert [int(epoch) for _, epoch in rows] == metrics["epoch"].tolist()
    best = metrics.index[metrics["status"] == "NEW BEST"]
    assert table.count('class="st-best">NEW BEST') == len(best)
    assert "overall-best" in table
    assert "Sampled during training after epoch 2" in text  # the run's own latest sampling


def test_qfitlatent_report_found_by_config_version(report_runs: Path, tmp_path: Path) -> None:
    # the qfitlatent run lives in runs/qfit-try1: found through its config.json
    output = _ptk("report", "--version", "qfitlatent", "--runs", str(report_runs), "--out", str(tmp_path))
    text = (tmp_path / "index.html").read_text()
    assert "qFitLatent: χ distributions" in text
    assert "χ1 accuracy" in text and "val NLL" in text
    assert "chi_density_0.png" in text and (tmp_path / "figures" / "chi_density_0.png").is_file()
    assert "DDIM evaluation" not in text  # not a diffusion model
    assert "missing:" not in output


def test_contact_classifier_report_has_predicted_contact_maps(report_runs: Path, tmp_path: Path) -> None:
    _ptk("report", "--version", "contact-classifier", "--runs", str(report_runs), "--out", str(tmp_path))
    text = (tmp_path / "index.html").read_text()
    assert "<h2>Contact maps</h2>" in text
    assert (tmp_path / "figures" / "contact_map_0.png").is_file()
    assert "contact recall" in text  # the family's validation metrics in the training table


def test_missing_pieces_are_named_with_commands(report_runs: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    shutil.copytree(report_runs / "v13", runs / "v13", ignore=shutil.ignore_patterns("samples", "*.pt"))
    result = CliRunner().invoke(
        cli, ["report", "--version", "v13", "--runs", str(runs), "--out", str(tmp_path / "r")],
        catch_exceptions=False,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "missing: no samples yet" in result.output
    assert f"ptk sample --run {runs / 'v13'}" in result.output
    text = (tmp_path / "r" / "index.html").read_text()
    assert "no samples yet" in text and "ptk sample --run" in text
    # a version with no run at all: a page that says so, and the train command
    result = CliRunner().invoke(
        cli, ["report", "--version", "v14", "--runs", str(runs), "--out", str(tmp_path / "r14")],
        catch_exceptions=False,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"ptk train --version v14 --data SHARDS --out {runs / 'v14'}" in result.output
    assert "no run of v14" in (tmp_path / "r14" / "index.html").read_text()
    # a misspelt version is an error that lists the versions
    result = CliRunner().invoke(cli, ["report", "--version", "v99", "--runs", str(runs)])
    assert result.exit_code != 0 and "v13" in str(result.exception)


# ---------------------------------------------------------------------------------------------
# headless Chromium

_PROBE = """<script>
window.__errors = [];
window.addEventListener('error', function (e) {
  var t = e.target && e.target !== window ? (e.target.src || e.target.href || e.target.tagName) : '';
  window.__errors.push('error: ' + (e.message || ('failed to load ' + t)));
}, true);
(function () {
  var original = console.error;
  console.error = function () {
    window.__errors.push('console.error: ' + Array.prototype.join.call(arguments, ' '));
    original.apply(console, arguments);
  };
})();
window.addEventListener('load', function () {
  var images = Array.prototype.slice.call(document.images).map(function (i) {
    return {src: i.getAttribute('src'), complete: i.complete, width: i.naturalWidth};
  });
  var probe = document.createElement('pre');
  probe.id = '__probe';
  probe.textContent = JSON.stringify({
    errors: window.__errors, images: images,
    rows: document.querySelectorAll('table.metrics tbody tr').length
  });
  document.body.appendChild(probe);
});
</script>"""


def _chromium(*args: str, user_dir: str) -> subprocess.CompletedProcess[str]:
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
        f"--user-data-dir={user_dir}", "--virtual-time-budget=5000",
    ]  # fmt: skip
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_report_in_headless_chromium(v13_report: tuple[Path, str], report_runs: Path) -> None:
    import numpy as np
    import pandas as pd
    from PIL import Image

    page = v13_report[0]
    # a copy of the page with a probe that records errors and image state into the DOM
    probed = page.with_name("_probe.html")
    probed.write_text(page.read_text().replace("<head>", "<head>" + _PROBE, 1))
    with tempfile.TemporaryDirectory() as user_dir:
        dom = _chromium("--dump-dom", probed.as_uri(), user_dir=user_dir)
        shot = page.parent / "screenshot.png"
        pic = _chromium("--window-size=1280,2400", f"--screenshot={shot}", page.as_uri(), user_dir=user_dir)
    probed.unlink()
    match = re.search(r'<pre id="__probe">(.*?)</pre>', dom.stdout, re.S)
    assert match, f"the page did not finish loading: {dom.stderr[-2000:]}"
    state = json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert state["errors"] == []
    assert len(state["images"]) >= 4
    for image in state["images"]:
        assert image["complete"] and image["width"] > 0, image
    assert state["rows"] == len(pd.read_csv(report_runs / "v13" / "metrics.csv"))
    assert shot.is_file(), pic.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert pixels.shape[1] == 1280
    assert pixels.std() > 10  # not a blank page
    assert len(np.unique(pixels)) > 50


def test_loss_curves_overlay_ancestors_with_runs(report_runs: Path, tmp_path: Path) -> None:
    # a second run labelled v12b (v13's parent) in a folder of another name: overlaid and compared
    runs = tmp_path / "runs"
    shutil.copytree(report_runs / "v13", runs / "v13", ignore=shutil.ignore_patterns("*.pt"))
    shutil.copytree(
        report_runs / "v13", runs / "older" / "b30", ignore=shutil.ignore_patterns("*.pt", "samples")
    )
    config_path = runs / "older" / "b30" / "config.json"
    config = json.loads(config_path.read_text())
    config.update(version="v12b", parent="v12")
    config_path.write_text(json.dumps(config))
    _ptk("report", "--version", "v13", "--runs", str(runs), "--out", str(tmp_path / "r"))
    text = (tmp_path / "r" / "index.html").read_text()
    note = re.search(r"Ancestors without a run under .*?: ([^.]*)\.", text).group(1)
    assert "v12b" not in note and "v12" in note
    compare = re.search(r'<table class="data compare">(.*?)</table>', text, re.S).group(1)
    assert "<strong>v12b</strong>" in compare and "<strong>v13</strong>" in compare
    assert "the parent v12b's best validation total" in text


def test_report_writes_only_into_a_report_folder(report_runs: Path, tmp_path: Path) -> None:
    """A folder of the user's is never overwritten; a report folder is rewritten on a rerun."""
    mine = tmp_path / "mine"
    (mine / "figures").mkdir(parents=True)
    (mine / "figures" / "keep.png").write_bytes(b"not ptk's")
    (mine / "notes.txt").write_text("mine")
    result = CliRunner().invoke(
        cli, ["report", "--version", "qfitlatent", "--runs", str(report_runs), "--out", str(mine)]
    )
    assert result.exit_code != 0 and "not a ptk report folder" in str(result.exception or result.output)
    assert (mine / "figures" / "keep.png").read_bytes() == b"not ptk's" and not (mine / "index.html").exists()

    out = tmp_path / "report"
    for _ in range(2):  # the second run replaces its own page
        _ptk("report", "--version", "qfitlatent", "--runs", str(report_runs), "--out", str(out))
    assert (out / "index.html").is_file() and (out / ".ptk-report").is_file()


def test_report_prefers_a_run_with_a_finished_epoch(report_runs: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    shutil.copytree(report_runs / "qfit-try1", runs / "qfit-try1", ignore=shutil.ignore_patterns("*.pt"))
    newer = runs / "qfit-try2"  # created later, interrupted before its first epoch ended
    newer.mkdir()
    config = json.loads((runs / "qfit-try1" / "config.json").read_text())
    config["created"] = "9999-01-01T00:00:00+00:00"
    (newer / "config.json").write_text(json.dumps(config))
    output = _ptk("report", "--version", "qfitlatent", "--runs", str(runs), "--out", str(tmp_path / "r"))
    assert f"from the run {runs / 'qfit-try1'}" in output
