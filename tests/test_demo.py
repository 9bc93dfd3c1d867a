"""``ptk demo --quick`` end to end on the shipped sample data (CPU, offline)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from ptk.pipelines.cli import cli


@pytest.mark.slow
def test_demo_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = CliRunner().invoke(cli, ["demo", "--out", str(out), "--quick"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    text = result.output
    # every step ran, through the real commands
    for step in range(1, 10):
        assert f"== {step}/9" in text
    assert "$ ptk ingest cath" in text and "$ ptk train --version v13" in text and "$ ptk eval" in text
    # the last lines say where the report is, and it is there
    match = re.search(r"ptk demo: done in \d+ s\. Open the report: (\S+)", text)
    assert match, text[-2000:]
    page = Path(match.group(1))
    assert page == (out / "report" / "v13" / "index.html").resolve() and page.is_file()
    html = page.read_text()
    assert "DDIM evaluation" in html and "pseudo_ramachandran.png" in html
    assert "ddim_over_epochs.png" in html  # the TM-score over the epochs of the memorisation run
    assert "ptk train --version contact-classifier" in text  # stage 1 first
    assert (out / "report" / "qfitlatent" / "index.html").is_file()
    assert (out / "runs" / "v13" / "samples" / "demo" / "scores.csv").is_file()
    # the v13 report shows the demo's own sampling (the latest)
    assert "samples/demo" in html

    # re-running into the demo's folder starts over; a foreign folder is refused
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    refused = CliRunner().invoke(cli, ["demo", "--out", str(foreign), "--quick"])
    assert refused.exit_code != 0
    assert (foreign / "notes.txt").read_text() == "keep me"
