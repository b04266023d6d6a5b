"""The code style CI holds the project to: ruff (lint + format) and snakefmt."""

import shutil
import subprocess

import pytest

from tests.conftest import ROOT


@pytest.mark.parametrize(
    "command",
    [
        ["ruff", "check", "."],
        ["ruff", "format", "--check", "."],
        ["snakefmt", "--check", "."],
    ],
    ids=["ruff-check", "ruff-format", "snakefmt"],
)
def test_style(command):
    if shutil.which(command[0]) is None:
        pytest.skip(f"{command[0]} not installed (pip install -e '.[dev]')")
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
