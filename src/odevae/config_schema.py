"""The config against its JSON schema, as one line a person can act on."""

from __future__ import annotations

import copy
import functools
import os

import yaml
from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError, best_match


@functools.cache
def _parsed(path: str, version: tuple):
    with open(path, encoding="utf-8") as f:
        return yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def load_yaml(path) -> dict:
    """A YAML file's content, a fresh copy of it parsed once per process and file
    version (modification time, size and inode), with libyaml where PyYAML has
    it. One ``snakemake`` call parses the workflow once for itself and once per
    paper module (eight times), and each parse reads the schema and the presets;
    in pure Python that was seconds."""
    path = os.path.abspath(path)
    stat = os.stat(path)
    version = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
    return copy.deepcopy(_parsed(path, version))


def _set_defaults(validator, properties, instance, schema):
    for name, subschema in properties.items():
        if "default" in subschema:
            instance.setdefault(name, subschema["default"])
    yield from Draft202012Validator.VALIDATORS["properties"](
        validator, properties, instance, schema
    )


#: The schema's validator that fills in each missing key's default as it goes
#: (jsonschema's FAQ recipe, which ``snakemake.utils.validate`` uses too).
_DefaultsValidator = validators.extend(
    Draft202012Validator, {"properties": _set_defaults}
)


def fill_defaults(config: dict, schema: dict) -> dict:
    """``config`` (modified) with every key the schema gives a default filled in,
    as ``snakemake.utils.validate`` fills them; for the paper's modules, which skip
    Snakemake's validation because it parses the schema file again, in pure
    Python, for each of them. ``schema`` must be a fresh copy (:func:`load_yaml`):
    its default objects become parts of the config."""
    _DefaultsValidator(schema).validate(config)
    return config


def _allowed(error: ValidationError) -> str:
    """What the schema allows where ``error`` happened, when the message lacks it."""
    if error.validator == "additionalProperties":
        return f"; allowed keys: {', '.join(error.schema.get('properties', {}))}"
    return ""  # type, enum and bound messages state what is allowed


def schema_error(config: dict, schema: dict) -> str | None:
    """The most relevant violation of ``schema`` by ``config`` as one line naming
    the key path, what was found and what is allowed; None if the config is valid."""
    error = best_match(Draft202012Validator(schema).iter_errors(config))
    if error is None:
        return None
    key = ".".join(str(part) for part in error.absolute_path) or "(top level)"
    return f"config key '{key}': {error.message}{_allowed(error)}"


def standardize_measurements(config: dict) -> bool:
    """``model.standardize_measurements`` resolved: ``auto`` standardises the
    measurements of table sources (real labs and signs on any scale) and leaves
    simulated cohorts and registry item scores (which share one scale) as they are."""
    setting = config["model"]["standardize_measurements"]
    if setting == "auto":
        return config.get("data", {}).get("source", "simulate") == "table"
    return bool(setting)


#: Sources of real patients (no ground truth): they get an inner split by default.
REAL_SOURCES = ("table", "smartcare")

#: ``train.early_stopping.inner_fraction`` of real cohorts when set to ``auto``.
REAL_INNER_FRACTION = 0.2


def resolve_auto(config: dict) -> dict:
    """Settings whose default depends on the cohort, resolved in place once, when
    the workflow reads its config (and returned): ``train.early_stopping.
    inner_fraction: auto`` is 0.2 for real cohorts (an inner split of the
    training patients for early stopping and the choice of predictor and
    settings) and 0 for simulations (the papers' fixed epochs); ``tuning.
    candidates: auto`` is ``tuning.real_cohort_candidates`` for real cohorts and
    none for simulations (``none``: none); ``model.standardize_measurements: auto`` is
    :func:`standardize_measurements`."""
    real = config.get("data", {}).get("source", "simulate") in REAL_SOURCES
    model = config.get("model", {})
    if model.get("standardize_measurements") == "auto":
        model["standardize_measurements"] = standardize_measurements(config)
    stopping = config["train"]["early_stopping"]
    if stopping["inner_fraction"] == "auto":
        stopping["inner_fraction"] = REAL_INNER_FRACTION if real else 0.0
    tuning = config.get("tuning", {})
    if tuning.get("candidates") == "auto":
        default = tuning.get("real_cohort_candidates", {})
        tuning["candidates"] = copy.deepcopy(default) if real else {}
    elif tuning.get("candidates") == "none":
        tuning["candidates"] = {}
    return config


def in_schema_order(value, schema: dict):
    """``value`` with the keys of every object whose keys the schema names in the
    schema's order (keys it does not name after them, as given), recursively; maps
    of free names (``table.transforms``, ``tuning.candidates``) keep their order,
    which can matter (the first matching transform pattern wins).

    The canonical form of a config: equal configs give equal rule params (Snakemake
    compares their ``repr``) whichever route merged them, e.g. ``--configfile`` over
    config/config.yaml or ``snakemake paper``'s module config.
    """
    if isinstance(value, dict):
        named = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        extra = extra if isinstance(extra, dict) else {}
        keys = [k for k in named if k in value] + [k for k in value if k not in named]
        return {k: in_schema_order(value[k], named.get(k, extra)) for k in keys}
    if isinstance(value, list):
        items = schema.get("items")
        return [
            in_schema_order(v, items if isinstance(items, dict) else {}) for v in value
        ]
    return value
