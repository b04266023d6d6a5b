"""Schema violations become one line naming the key path, found and allowed."""

import copy
import os

import yaml
from snakemake.utils import update_config, validate

from odevae.config_schema import (
    fill_defaults,
    in_schema_order,
    load_yaml,
    resolve_auto,
    schema_error,
)
from tests.conftest import ROOT

SCHEMA = yaml.safe_load(
    (ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text()
)


def test_valid_default_config_has_no_error(default_config):
    assert schema_error(default_config, SCHEMA) is None


def test_each_kind_of_violation_names_its_key(default_config):
    cases = [
        ("train", "epoch", 10, "config key 'train': Additional properties"),
        ("train", "lr", "x", "config key 'train.lr': 'x' is not of type"),
        ("cv", "folds", 1, "config key 'cv.folds': 1 is less than the minimum"),
        ("data", "source", "csv", "config key 'data.source': 'csv' is not one of"),
        ("loss", "kind", 3, "config key 'loss.kind'"),
    ]
    for section, key, value, expected in cases:
        config = copy.deepcopy(default_config)
        config[section][key] = value
        message = schema_error(config, SCHEMA)
        assert message is not None and message.startswith(expected), message
        assert "\n" not in message
    config = copy.deepcopy(default_config)
    config["train"]["epoch"] = 10
    assert "allowed keys: epochs, batch_size" in schema_error(config, SCHEMA)


def test_inner_split_defaults_to_real_cohorts_only(default_config):
    """train.early_stopping.inner_fraction auto: an inner split (early stopping and
    the inner choices) for real cohorts, the papers' fixed epochs for
    simulations."""
    shipped = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    assert shipped["train"]["early_stopping"]["inner_fraction"] == "auto"
    for source, expected in [
        ("table", 0.2),
        ("smartcare", 0.2),
        ("simulate", 0.0),
        ("simulate_registry", 0.0),
    ]:
        config = copy.deepcopy(shipped)
        config["data"]["source"] = source
        resolved = resolve_auto(config)["train"]["early_stopping"]["inner_fraction"]
        assert resolved == expected, source
    config = copy.deepcopy(shipped)
    config["train"]["early_stopping"]["inner_fraction"] = 0.1
    assert resolve_auto(config)["train"]["early_stopping"]["inner_fraction"] == 0.1


def test_in_schema_order_orders_named_keys_and_keeps_free_maps():
    config = {
        "table": {"transforms": {"b*": "log", "a*": "logit"}, "visits": "v.csv"},
        "train": {"lr": 0.01, "epochs": 3},
        "name": "x",
    }
    ordered = in_schema_order(config, SCHEMA)
    assert ordered == config
    names = list(SCHEMA["properties"])
    assert list(ordered) == sorted(config, key=names.index)
    train = list(SCHEMA["properties"]["train"]["properties"])
    assert list(ordered["train"]) == sorted(config["train"], key=train.index)
    # the first matching pattern wins: a map of free names keeps its order
    assert list(ordered["table"]["transforms"]) == ["b*", "a*"]
    # the same config merged in another order: the same canonical form
    other = {
        "name": "x",
        "train": {"epochs": 3, "lr": 0.01},
        "table": {"visits": "v.csv", "transforms": {"b*": "log", "a*": "logit"}},
    }
    assert repr(in_schema_order(other, SCHEMA)) == repr(ordered)


def test_real_cohorts_tune_over_the_shipped_candidates_by_default():
    """tuning.candidates auto: the real-cohort candidates of config/config.yaml
    for tables and registry exports (each a valid override of model and loss),
    nothing for simulations."""
    shipped = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    assert shipped["tuning"]["candidates"] == "auto"
    default = shipped["tuning"]["real_cohort_candidates"]
    assert {"papers", "history"} <= set(default)
    assert any(c["model"].get("history") == "gru" for c in default.values())
    for source, expected in [("table", default), ("simulate", {})]:
        config = copy.deepcopy(shipped)
        config["data"]["source"] = source
        assert resolve_auto(config)["tuning"]["candidates"] == expected
    for name, overrides in default.items():
        assert set(overrides) <= {"model", "loss", "train"}, name
        merged = copy.deepcopy(shipped)
        for section, values in overrides.items():
            merged[section].update(values)
        merged["tuning"]["candidates"] = {}
        assert schema_error(merged, SCHEMA) is None, name


def test_a_configfile_turns_tuning_off_with_none():
    """An empty mapping in a --configfile is merged into the default auto (it
    cannot say "no candidates"); none can, and a real cohort then trains as it is."""
    from snakemake.utils import update_config

    shipped = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    for off, expected in [({}, "auto"), ("none", "none")]:
        config = copy.deepcopy(shipped)
        update_config(config, {"data": {"source": "table"}})
        update_config(config, {"tuning": {"candidates": off}})
        assert config["tuning"]["candidates"] == expected
        assert schema_error(config, SCHEMA) is None
    assert resolve_auto(config)["tuning"]["candidates"] == {}


def test_the_modules_defaults_are_snakemakes():
    """The paper's modules fill their defaults with fill_defaults (they skip
    Snakemake's validation): for the shipped config and every preset, alone and
    merged over config/config.yaml as the paper merges them, it gives what
    snakemake.utils.validate gives."""
    base = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    configs = [{}, base]
    for path in sorted((ROOT / "config").glob("*.yaml")):
        preset = yaml.safe_load(path.read_text())
        merged = copy.deepcopy(base)
        update_config(merged, preset)
        configs += [preset, merged]
    schema_path = ROOT / "workflow" / "schemas" / "config.schema.yaml"
    for config in configs:
        ours = fill_defaults(copy.deepcopy(config), load_yaml(schema_path))
        theirs = copy.deepcopy(config)
        validate(theirs, str(schema_path))
        assert ours == theirs
    assert ours["train"]["epochs"] > 0
    assert "tuning" in fill_defaults({}, load_yaml(schema_path))


def test_load_yaml_gives_a_fresh_copy(tmp_path):
    path = tmp_path / "a.yaml"
    path.write_text("a: {b: [1, 2]}\n")
    first = load_yaml(path)
    first["a"]["b"].append(3)
    assert load_yaml(path) == {"a": {"b": [1, 2]}}
    path.write_text("a: {b: [1, 2]}\nc: 1.0e-6\n")  # a new version is read again
    os.utime(path, ns=(0, os.stat(path).st_mtime_ns + 1))
    assert load_yaml(path) == {"a": {"b": [1, 2]}, "c": 1.0e-6}
