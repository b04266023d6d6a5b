"""The code style CI holds the project to: ruff (lint + format) and snakefmt."""

import importlib.util
import subprocess
import sys

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
    if importlib.util.find_spec(command[0]) is None:
        pytest.skip(f"{command[0]} not installed (pip install -e '.[dev]')")
    result = subprocess.run(
        [sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
