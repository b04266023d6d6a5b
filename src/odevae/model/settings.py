"""The model's settings: the ``model`` and ``loss`` config sections and their
library defaults, in one place.

:class:`~odevae.model.module.ODEVAE` takes the two sections (missing keys take
the defaults below, which equal the schema's) and stores them, filled in, as its
hyperparameters. Checkpoints of older versions hold the same settings as flat
keywords (``kl_weight=…``, ``loss="statistical"``, ``weighting=…``);
:func:`sections_from_flat` files them into the sections. Torch-free.
"""

from __future__ import annotations

import copy

#: ``model`` settings of the model itself, with their defaults.
MODEL_DEFAULTS: dict = {
    "latent_dim": 2,
    "system": "linear_diagonal",
    "fixed_params": None,
    "neural": {"n_cond": 2, "hidden": 16},
    "param_bound": "auto",
    "param_scale": 1.0,
    "bottleneck": 0,
    "hidden_width": 0,
    "autoencoder": "learned",
    "history": "none",
    "history_hidden": 16,
    "history_state": False,
    "solver": "auto",
    "rtol": 1e-6,
    "atol": 1e-7,
    "adjoint": False,
}

#: ``model`` settings that prepare the data (resolved by the training before the
#: model is built, and passed as ``binary`` and ``time_scale``): not the model's.
DATA_KEYS = (
    "binary_measurements",
    "standardize_measurements",
    "time_scale",
    "standardize_covariates",
)

#: ``loss`` settings, with their defaults (``statistical``: that loss's own).
LOSS_DEFAULTS: dict = {
    "kind": "initial_value",
    "kl_weight": 0.5,
    "free_bits": 0.0,
    "decoder_l2": 0.01,
    "param_l2": 0.0,
    "param_group_lasso": 0.0,
    "consistency_weight": 1.0,
    "own_reconstruction_weight": 0.0,
    "forecast_weight": 1.0,
    "history_kl_weight": 1.0,
    "statistical": {
        "weighting": True,
        "skip_own": True,
        "mu_weight": 1.0,
        "var_weight": 2.0,
        "var_penalty": "log_diff",
        "var_offset": 0.1,
    },
}

LOSSES = ("initial_value", "statistical", "vae")
#: ``history``: none (the papers: parameters from baseline covariates alone) or gru
#: (:mod:`~odevae.model.history`: a posterior given the visits seen so far).
HISTORIES = ("none", "gru")


def _filled(defaults: dict, given: dict | None, section: str) -> dict:
    out = copy.deepcopy(defaults)
    for key, value in (given or {}).items():
        if key not in defaults:
            raise ValueError(
                f"unknown {section} setting {key!r}, expected one of {list(defaults)}"
            )
        if isinstance(defaults[key], dict):
            value = _filled(defaults[key], value, f"{section}.{key}")
        out[key] = copy.deepcopy(value)
    return out


def model_section(given: dict | None = None) -> dict:
    """The ``model`` section ``given`` (a config's, or part of one) with every
    model setting, defaults filled in; the data settings (:data:`DATA_KEYS`) are
    dropped."""
    given = {k: v for k, v in (given or {}).items() if k not in DATA_KEYS}
    model = _filled(MODEL_DEFAULTS, given, "model")
    if model["history"] not in HISTORIES:
        raise ValueError(f"unknown history {model['history']!r}, expected {HISTORIES}")
    return model


def loss_section(given: dict | None = None) -> dict:
    """The ``loss`` section ``given`` with every setting, defaults filled in."""
    loss = _filled(LOSS_DEFAULTS, given, "loss")
    if loss["kind"] not in LOSSES:
        raise ValueError(
            f"unknown loss {loss['kind']!r}, expected one of {list(LOSSES)}"
        )
    return loss


def sections_from_flat(
    flat: dict, model: dict | None = None, loss: dict | None = None
) -> tuple[dict, dict]:
    """The sections ``model`` and ``loss`` (default: empty) updated with the flat
    keywords of older checkpoints: ``loss`` is the loss's kind, the statistical
    loss's settings go to ``loss.statistical``, the rest by name. Unknown names
    raise TypeError."""
    model = dict(model or {})
    loss = dict(loss or {})
    if any(key in LOSS_DEFAULTS["statistical"] for key in flat):
        loss["statistical"] = dict(loss.get("statistical") or {})
    for key, value in flat.items():
        if key == "loss":
            loss["kind"] = value
        elif key in MODEL_DEFAULTS:
            model[key] = value
        elif key in LOSS_DEFAULTS:
            loss[key] = value
        elif key in LOSS_DEFAULTS["statistical"]:
            loss["statistical"][key] = value
        else:
            raise TypeError(f"ODEVAE got an unexpected keyword argument {key!r}")
    return model, loss


def hyperparameters(
    p: int,
    q: int,
    model: dict | None = None,
    loss: dict | str | None = None,
    lr: float = 5e-3,
    binary: list[bool] | None = None,
    time_scale: float = 1.0,
    **flat,
) -> dict:
    """A trained model's stored hyperparameters, filled in: ``p``, ``q``, the
    ``model`` and ``loss`` sections (flat keywords of older checkpoints filed in by
    :func:`sections_from_flat`; a string ``loss`` is the loss's kind, as older
    checkpoints give it), ``lr``, ``binary`` and ``time_scale``."""
    if isinstance(loss, str):
        flat, loss = {"loss": loss, **flat}, None
    model, loss = sections_from_flat(flat, model, loss)
    return {
        "p": p,
        "q": q,
        "model": model_section(model),
        "loss": loss_section(loss),
        "lr": lr,
        "binary": binary,
        "time_scale": time_scale,
    }
