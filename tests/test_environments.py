"""The conda files install the same pins as the pip route (pyproject.toml)."""

import tomllib

import yaml

from tests.conftest import ROOT


def pip_section(path):
    deps = yaml.safe_load(path.read_text())["dependencies"]
    return next(d["pip"] for d in deps if isinstance(d, dict))


def test_rule_environment_pins_equal_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert (
        pip_section(ROOT / "workflow" / "envs" / "odevae.yaml")
        == project["dependencies"]
    )


def test_environment_yml_installs_torch_first_then_the_project():
    assert pip_section(ROOT / "environment.yml") == ["torch==2.13.0", "-e .[dev]"]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["dependencies"][0] == "torch==2.13.0"
