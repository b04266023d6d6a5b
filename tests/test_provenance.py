"""The record of what a run was made with."""

from importlib import metadata

from odevae.provenance import pinned_packages, software_table
from tests.conftest import ROOT


def test_software_table_lists_every_pin_with_its_installed_version():
    packages = pinned_packages(ROOT / "workflow" / "envs" / "odevae.yaml")
    assert packages[:3] == ["torch", "lightning", "torchdiffeq"]
    table = software_table(packages).set_index("package")["version"]
    assert table["statsmodels"] == metadata.version("statsmodels")
    assert table["torch"].startswith("2.13.0")
    assert set(packages) <= set(table.index) and "python" in table.index
    missing = software_table(["no-such-package-here"]).set_index("package")
    assert missing.loc["no-such-package-here", "version"] == "not installed"
