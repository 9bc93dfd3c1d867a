"""The ``ptk`` entry point as a user meets it: --help, --version, and error handling."""

from __future__ import annotations

import subprocess
import sys

import ptk


def run_ptk(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ptk.pipelines.cli", *args], capture_output=True, text=True, timeout=120
    )


def test_help_lists_every_command_without_importing_them() -> None:
    result = run_ptk("--help")
    assert result.returncode == 0, result.stderr
    for command in ("ingest", "fetch", "eval", "plot", "versions", "train", "sample", "report", "demo"):
        assert f"  {command}" in result.stdout


def test_version() -> None:
    result = run_ptk("--version")
    assert result.returncode == 0
    assert ptk.__version__ in result.stdout


def test_unknown_command_is_a_usage_error() -> None:
    result = run_ptk("frobnicate")
    assert result.returncode == 2
    assert "No such command" in result.stderr


def test_console_script_is_installed() -> None:
    result = subprocess.run(["ptk", "--version"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "ptk" in result.stdout
