"""What a run was made with: package versions and the config used."""

from __future__ import annotations

import platform
import re
from importlib import metadata
from pathlib import Path

import pandas as pd
import yaml


def pinned_packages(environment: str | Path) -> list[str]:
    """Names of the pinned packages of the rules' environment file (the pins of
    pyproject.toml, kept equal by a test), in its order."""
    deps = yaml.safe_load(Path(environment).read_text())["dependencies"]
    pins = next(d["pip"] for d in deps if isinstance(d, dict))
    return [re.split(r"[=<>!~\[; ]", pin, maxsplit=1)[0] for pin in pins]


def software_table(packages: list[str]) -> pd.DataFrame:
    """Python and each package's installed version (``not installed`` if absent)."""
    rows = [{"package": "python", "version": platform.python_version()}]
    for name in ["odevae", *packages]:
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            version = "not installed"
        rows.append({"package": name, "version": version})
    return pd.DataFrame(rows)
