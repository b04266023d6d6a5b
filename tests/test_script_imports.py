"""Jobs that do not train or run a model start without torch (its import is most of
a light job's start-up time)."""

import re
import subprocess
import sys

from tests.conftest import ROOT

#: Scripts that load a trained model and so need torch.
NEEDS_TORCH = {
    "train.py",
    "predict.py",
    "plot_local_solutions.py",
    "plot_similarity_batches.py",
    "plot_vae_vs_odevae.py",
}


def test_light_rules_do_not_import_torch():
    modules = set()
    scripts = sorted((ROOT / "workflow" / "scripts").glob("*.py"))
    for script in scripts:
        if script.name not in NEEDS_TORCH:
            modules |= set(
                re.findall(r"^from (odevae[\w.]*) import", script.read_text(), re.M)
            )
    assert len(modules) > 10
    code = "\n".join(
        [
            *(f"import {m}" for m in sorted(modules)),
            "import sys",
            "print(sorted(sys.modules))",
        ]
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert "'odevae.runner'" in loaded
    assert "'torch'" not in loaded and "'lightning'" not in loaded
