# The config: checked before any job (the schema, then every cross-key check of
# odevae.config_checks), each problem as one `odevae:` line naming the key; then
# the paths and constants every rule file uses.
import hashlib
import os
import sys
from pathlib import Path

import yaml
from snakemake.utils import min_version, validate

# The odevae library of this checkout (torch-free modules only in this process).
sys.path.insert(0, str(Path(workflow.basedir) / "src"))
from odevae import config_checks
from odevae.config_schema import (
    fill_defaults,
    in_schema_order,
    load_yaml,
    resolve_auto,
    schema_error,
)
from odevae.errors import InputError

min_version("9.0")


def config_hash():
    """A digest of the whole config, so that a record of it is rewritten when it
    changes."""
    text = yaml.safe_dump(config, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def config_error(message):
    """Stop before any job with one ``odevae:`` line (no traceback)."""
    print(f"odevae: {message}", file=sys.stderr)
    sys.exit(1)


def validate_config(schema):
    """The schema's checks as one line naming the key, then Snakemake's validation
    (which fills in the defaults); then the config in canonical key order, so that
    equal configs give equal params (no rerun) whichever route merged them."""
    rules = load_yaml(schema)
    problem = schema_error(config, rules)
    if problem is not None:
        config_error(problem)
    validate(config, schema=schema)
    if workflow.modifier.skip_validation:  # the paper's modules (paper.smk)
        fill_defaults(config, load_yaml(schema))
    ordered = in_schema_order(config, rules)
    config.clear()
    config.update(ordered)


def check_config(schema):
    """Every cross-key check (:mod:`odevae.config_checks`) as one line naming the
    key."""
    try:
        config_checks.check_config(config, load_yaml(schema))
    except InputError as error:
        config_error(error)


# ===== config ==========================================================
SCHEMA = Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml"
validate_config(SCHEMA)
resolve_auto(config)
check_config(SCHEMA)

# A sweep puts each seed's run under results/<name>/seed<seed>/ (a {seed} wildcard
# in every path) and the tables over seeds under results/<name>/sweep/.
RUN = f"results/{config['name']}"
SWEEP = f"{RUN}/sweep"
OUT = f"{RUN}/seed{{seed}}" if config["sweep"]["seeds"] else RUN
LOGS = f"{OUT}/logs"
FOLDS = list(range(config["cv"]["folds"]))

# Jobs import the odevae library of this checkout, also in --use-conda environments.
# (Set here, not required from the user: hence no envvars directive.)
os.environ.update(
    PYTHONPATH=os.pathsep.join(
        filter(None, [str(Path(workflow.basedir) / "src"), os.getenv("PYTHONPATH")])
    )
)


wildcard_constraints:
    fold=r"\d+",
    seed=r"\d+",
    candidate=r"[A-Za-z0-9_]+",
