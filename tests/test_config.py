import copy

import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from tests.conftest import ROOT

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
