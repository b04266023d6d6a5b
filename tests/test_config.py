import copy

import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from tests.conftest import ROOT, merge

SCHEMA = str(ROOT / "workflow" / "schemas" / "config.schema.yaml")


def _walk(schema, path="config"):
    yield path, schema
    for key, sub in schema.get("properties", {}).items():
        yield from _walk(sub, f"{path}.{key}")
    if isinstance(schema.get("items"), dict) and "properties" in schema["items"]:
        yield from _walk(schema["items"], f"{path}[]")


def test_every_key_has_a_description_and_a_default():
    schema = yaml.safe_load(open(SCHEMA))
    for path, sub in _walk(schema):
        if path == "config":
            continue
        assert sub.get("description"), path
        if not path.endswith("[]") and ".groups[]." not in path:
            assert "default" in sub, path


def test_shipped_config_is_valid(default_config):
    validate(copy.deepcopy(default_config), SCHEMA)


def test_defaults_fill_an_empty_config(default_config):
    config = {}
    validate(config, SCHEMA)
    assert config["train"]["epochs"] == default_config["train"]["epochs"]
    assert config["simulation"]["baseline"]["mode"] == "trueparams"
    assert config["simulation"]["groups"] == default_config["simulation"]["groups"]
    assert config["train"]["similarity"] == default_config["train"]["similarity"]


@pytest.mark.parametrize(
    ("override", "words"),
    [
        (
            {"train": {"lr": "fast"}},
            ["'fast' is not of type 'number'", "['train']['lr']"],
        ),
        ({"train": {"epoch": 3}}, ["'epoch' was unexpected", "['train']"]),
        ({"colour": "red"}, ["'colour' was unexpected"]),
        ({"cv": {"folds": 1}}, ["1 is less than the minimum of 2", "['cv']['folds']"]),
        (
            {"model": {"solver": "rk45"}},
            ["'rk45' is not one of", "['model']['solver']"],
        ),
        ({"name": "a b"}, ["does not match", "['name']"]),
        (
            {"train": {"similarity": {"neighbours": 0}}},
            [
                "0 is less than the minimum of 1",
                "['train']['similarity']['neighbours']",
            ],
        ),
        (
            {"train": {"batching": "knn"}},
            ["'knn' is not one of", "['train']['batching']"],
        ),
    ],
)
def test_bad_config_names_the_key(default_config, override, words):
    from tests.conftest import merge

    with pytest.raises(WorkflowError) as err:
        validate(merge(default_config, override), SCHEMA)
    for word in words:
        assert word in str(err.value)


@pytest.mark.parametrize(
    ("override", "key", "words"),
    [
        (
            {"loss": {"kind": "statistical", "statistical": {"skip_own": False}}},
            "loss.statistical.weighting",
            "needs skip_own: true",
        ),
        (
            {"model": {"system": "lotka_volterra", "solver": "closed_form"}},
            "model.solver",
            "no closed-form",
        ),
        (
            {"model": {"system": "lotka_volterra", "latent_dim": 3}},
            "model.latent_dim",
            "2-d system",
        ),
        (
            {"model": {"fixed_params": {"alpha": 1.0}}},
            "model.fixed_params",
            "no parameter(s) ['alpha']",
        ),
        (
            {"model": {"system": "linear_drift", "fixed_params": {"b1": 0, "b2": 0}}},
            "model.fixed_params",
            "nothing is left to learn",
        ),
        ({"model": {"adjoint": True}}, "model.adjoint", "torchdiffeq solvers"),
        (
            {"model": {"history_state": True}},
            "model.history_state",
            "set model.history: gru",
        ),
    ],
)
def test_invalid_model_combinations_name_the_key(default_config, override, key, words):
    from odevae.config_checks import check_model_config
    from odevae.errors import InputError
    from tests.conftest import merge

    config = merge(default_config, override)
    validate(config, SCHEMA)
    with pytest.raises(InputError) as err:
        check_model_config(config)
    assert err.value.key == key and f"config key '{key}'" in str(err.value)
    assert words in str(err.value)


def test_valid_model_combinations_pass(default_config):
    from odevae.config_checks import check_model_config
    from tests.conftest import merge

    for override in (
        {"model": {"system": "lotka_volterra"}},
        {"model": {"system": "neural", "solver": "rk4", "adjoint": True}},
        {"loss": {"kind": "statistical"}},
        {
            "loss": {
                "kind": "statistical",
                "statistical": {"weighting": False, "skip_own": False},
            }
        },
        {"model": {"system": "linear_full", "fixed_params": {"a12": 0.0}}},
    ):
        config = merge(default_config, override)
        validate(config, SCHEMA)
        check_model_config(config)


def test_every_cross_key_check_runs_from_one_call(default_config):
    """The workflow's parse-time call checks the simulation section too."""
    from odevae.config_checks import check_config
    from odevae.config_schema import resolve_auto
    from odevae.errors import InputError
    from tests.conftest import merge

    schema = yaml.safe_load(open(SCHEMA))
    config = merge(default_config, {})
    validate(config, SCHEMA)
    check_config(resolve_auto(config), schema)
    for override, key in (
        ({"simulation": {"p": 5}}, "simulation.p"),
        ({"model": {"latent_dim": 3}}, "model.latent_dim"),
        ({"data": {"source": "table"}}, "table.visits"),
        (  # a set of measurements the table does not have, before any job
            {
                "data": {"source": "table"},
                "table": {
                    "visits": "v.csv",
                    "time_unit": "days",
                    "measurements": ["bili"],
                },
                "evaluation": {"variable_sets": {"labs": ["bili", "albumin"]}},
            },
            "evaluation.variable_sets.labs",
        ),
    ):
        bad = merge(default_config, override)
        validate(bad, SCHEMA)
        with pytest.raises(InputError) as err:
            check_config(resolve_auto(bad), schema)
        assert err.value.key == key and f"'{key}'" in str(err.value)


def test_variable_sets_are_checked_where_the_config_names_every_measurement(
    default_config,
):
    """A table config with globs (or none) among its measurements leaves the
    check to rule evaluate, which sees the data's columns."""
    from odevae.config_checks import check_variable_sets

    for measurements in (["x*"], ["bili", "lab_?"], []):
        config = merge(
            default_config,
            {
                "data": {"source": "table"},
                "table": {"measurements": measurements},
                "evaluation": {"variable_sets": {"labs": ["albumin"]}},
            },
        )
        check_variable_sets(config)
    config["table"]["measurements"] = ["albumin", "bili"]
    check_variable_sets(config)
