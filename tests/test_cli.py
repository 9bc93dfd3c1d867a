"""The ``ptk`` entry point as a user meets it: --help, --version, and error handling."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest

import ptk
import ptk.pipelines.cli as cli_module


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


@click.command()
@click.pass_context
def _exit_three(ctx: click.Context) -> None:
    ctx.exit(3)


def test_ctx_exit_code_reaches_the_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(cli_module.COMMANDS, "exit-three", (f"{__name__}:_exit_three", "test"))
    with pytest.raises(SystemExit) as info:
        cli_module.main(["exit-three"])
    assert info.value.code == 3
