"""Jobs that do not train or run a model start without torch (its import is most of
a light job's start-up time)."""

import ast
import subprocess
import sys

from tests.conftest import ROOT

#: Scripts that load a trained model and so need torch.
NEEDS_TORCH = {
    "train.py",
    "tune.py",
    "predict.py",
    "plot_local_solutions.py",
    "plot_similarity_batches.py",
    "plot_vae_vs_odevae.py",
}


def odevae_imports(script) -> list[str]:
    """The script's own ``from odevae... import ...`` statements, as written."""
    tree = ast.parse(script.read_text())
    return [
        ast.unparse(node)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("odevae")
    ]


def test_light_rules_do_not_import_torch():
    statements = []
    for script in sorted((ROOT / "workflow" / "scripts").glob("*.py")):
        if script.name not in NEEDS_TORCH:
            statements += odevae_imports(script)
    assert len(statements) > 20
    code = "\n".join(
        [*sorted(set(statements)), "import sys", "print(sorted(sys.modules))"]
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert "'odevae.runner'" in loaded
    assert "'torch'" not in loaded and "'lightning'" not in loaded
