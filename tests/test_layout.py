"""The stages' layering: prediction, evaluation and figures read no module of the
train stage (the padded patients are :mod:`odevae.data.batching`'s)."""

import ast

import pytest

from tests.conftest import ROOT

PACKAGE = ROOT / "src" / "odevae"


def imported_modules(path) -> set[str]:
    """Every module a file imports, at any depth (lazy imports in functions too)."""
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import"
            modules |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return modules


def stage_modules(*stages: str) -> list:
    return sorted(path for stage in stages for path in (PACKAGE / stage).rglob("*.py"))


def test_stage_modules_are_found():
    names = {path.name for path in stage_modules("evaluate", "figures")}
    assert {"predict.py", "model.py", "paper_figures.py", "plots.py"} <= names


@pytest.mark.parametrize(
    "path",
    stage_modules("evaluate", "figures"),
    ids=lambda path: str(path.relative_to(PACKAGE)),
)
def test_evaluate_and_figures_do_not_import_train(path):
    train = sorted(
        module
        for module in imported_modules(path)
        if module == "odevae.train" or module.startswith("odevae.train.")
    )
    assert train == [], f"{path.relative_to(PACKAGE)} imports {train}"
