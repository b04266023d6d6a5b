"""Jobs that do not train or run a model start without torch (its import is most of
a light job's start-up time), and jobs that run a trained model start without
Lightning (seconds more)."""

import ast
import json
import subprocess
import sys

from tests.conftest import ROOT

#: Scripts that train, and so need Lightning.
TRAINING = {"train.py", "tune.py"}
#: Scripts that load a trained model and so need torch.
NEEDS_TORCH = TRAINING | {
    "predict.py",
    "plot_local_solutions.py",
    "plot_similarity_batches.py",
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


def test_jobs_that_run_a_trained_model_do_not_import_lightning():
    statements = []
    for name in sorted(NEEDS_TORCH - TRAINING):
        statements += odevae_imports(ROOT / "workflow" / "scripts" / name)
    assert any("load_trained" in s for s in statements)
    code = "\n".join(
        [*sorted(set(statements)), "import sys", "print(sorted(sys.modules))"]
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert "'torch'" in loaded and "'lightning'" not in loaded


#: Light jobs run as Snakemake runs them (the script's globals hold ``snakemake``),
#: one after another in one process: simulate → preprocess → split → comparators →
#: plot_cohort. Arguments: the jobs' folder, the scripts' folder, the simulation
#: config (JSON).
LIGHT_JOBS = """
import json, runpy, sys
from pathlib import Path
from types import SimpleNamespace
from snakemake.iocontainers import Namedlist

tmp, scripts = Path(sys.argv[1]), Path(sys.argv[2])
simulation = json.loads(sys.argv[3])
path = lambda v: [str(tmp / x) for x in v] if isinstance(v, list) else str(tmp / v)
files = lambda **kw: Namedlist(fromdict={k: path(v) for k, v in kw.items()})
def job(script, input={}, output={}, params={}, fold=None):
    snakemake = SimpleNamespace(
        input=files(**input), output=files(**output),
        params=Namedlist(fromdict=params), log=[str(tmp / f"{script}.log")],
        wildcards=Namedlist(fromdict={"fold": str(fold)}), threads=1, config={},
    )
    runpy.run_path(str(scripts / f"{script}.py"), {"snakemake": snakemake})

data = {k: f"{k}.tsv" for k in ("visits", "baseline")}
job("simulate", output=data | {k: f"{k}.tsv" for k in (
    "truth_patients", "truth_trajectories")}, params={"simulation": simulation,
    "seed": 1})
job("preprocess", input=data | {"drops": [], "notes": []},
    output={"cohort": "cohort.npz", "patients": "patients.tsv", "report": "r.tsv"},
    params={"options": None, "time_unit": "a.u.", "standardized": False})
job("split", input={"cohort": "cohort.npz"}, output={"folds": "folds.tsv"},
    params={"k": 2, "seed": 1, "inner_fraction": 0.0})
job("comparators", input={"cohort": "cohort.npz", "folds": "folds.tsv"},
    output={"predictions": "predictions.tsv", "fits": "fits.tsv",
            "multivariate": "multivariate_mixed.npz"},
    params={"transforms": {}, "mixed_model_max_patients": 2000, "seed": 1},
    fold=0)
job("plot_cohort", input={"cohort": "cohort.npz"},
    output={"visit_times": "times.png", "measurements": "measurements.png"},
    params={"transforms": {}, "time_unit": "a.u.", "dpi": 20})
print(sorted(sys.modules))
"""


def test_light_jobs_run_without_torch(tiny_config, tmp_path):
    """Not only the imports: running light jobs, runner included, loads no torch."""
    scripts, simulation = ROOT / "workflow" / "scripts", tiny_config["simulation"]
    done = subprocess.run(
        [sys.executable, "-c", LIGHT_JOBS, tmp_path, scripts, json.dumps(simulation)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    made = ("predictions.tsv", "fits.tsv", "multivariate_mixed.npz", "times.png")
    for name in (*made, "measurements.png"):
        assert (tmp_path / name).stat().st_size > 0
    loaded = done.stdout
    assert "'odevae.evaluate.prediction.comparators'" in loaded
    assert "'torch'" not in loaded and "'lightning'" not in loaded
