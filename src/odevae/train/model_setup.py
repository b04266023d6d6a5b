"""The model a fold trains, sized for its cohort: the latent and hidden widths the
cohort allows, the internal time unit, and what to check when the loss diverges."""

from __future__ import annotations

import logging

import numpy as np

from odevae.config_schema import standardize_measurements
from odevae.data.cohort import Cohort
from odevae.model.core import corrects_state, identity_autoencoder
from odevae.model.module import ODEVAE

log = logging.getLogger(__name__)


def build_model(
    cohort: Cohort,
    model_cfg: dict,
    loss_cfg: dict,
    lr: float,
    binary: list[bool] | None = None,
    time_scale: float = 1.0,
) -> ODEVAE:
    """An untrained :class:`ODEVAE` sized for ``cohort`` from the config sections;
    ``binary`` flags the measurements with a Bernoulli likelihood, ``time_scale``
    is the internal time unit in data time units (:func:`resolve_time_scale`)."""
    flags = [False] * cohort.p if binary is None else binary
    width = model_cfg["hidden_width"]
    identity = identity_autoencoder(model_cfg["autoencoder"], cohort.p, flags)
    setting = model_cfg.get("history_state", False)
    history = model_cfg.get("history") == "gru" and loss_cfg.get("kind") != "vae"
    # stored resolved in the checkpoint: true only where a history encoder corrects
    state = history and corrects_state(setting, identity)
    if setting == "auto" and history:
        log.info(
            "model.history_state auto: the history encoder %s the forecast's latent "
            "state (%s)",
            "corrects" if state else "does not correct",
            "the measurements are the latent state"
            if identity
            else "a learned encoder gives the latent state",
        )
    if identity:
        dim = cohort.p  # the state is the measurements; no hidden layers
        log.info(
            "model.autoencoder %s: the %d measurement(s) are the latent state (no "
            "encoder or decoder network); the ODE runs on the measurements",
            model_cfg["autoencoder"],
            cohort.p,
        )
    else:
        dim = latent_dim(model_cfg["latent_dim"], cohort.p, model_cfg["system"])
        width = hidden_width(width, cohort.p)
    return ODEVAE(
        p=cohort.p,
        q=cohort.q,
        model={
            **model_cfg,
            "latent_dim": dim,
            "hidden_width": width,
            "history_state": state,
        },
        loss=loss_cfg,
        lr=lr,
        binary=binary,
        time_scale=time_scale,
    )


#: The narrowest autoencoder hidden layer that ``model.hidden_width: 0`` (p, the
#: papers' width for 10-20 item scores) gives: one tanh unit cannot reconstruct a
#: single score over its range.
MIN_HIDDEN_WIDTH = 8


def hidden_width(setting: int, p: int) -> int:
    """``model.hidden_width``: 0 is p (the papers), but at least
    :data:`MIN_HIDDEN_WIDTH` for cohorts with fewer measurements (logged)."""
    if setting or p >= MIN_HIDDEN_WIDTH:
        return setting
    log.info(
        "model.hidden_width 0 (p = %d) is below %d: the autoencoder's hidden "
        "layers are %d wide",
        p,
        MIN_HIDDEN_WIDTH,
        MIN_HIDDEN_WIDTH,
    )
    return MIN_HIDDEN_WIDTH


def latent_dim(setting: int, p: int, system: str = "linear_diagonal") -> int:
    """``model.latent_dim`` for a cohort of ``p`` measurements: at most p (the
    2-d Lotka-Volterra system excepted). A single-score cohort (p = 1) has nothing
    to compress, so its latent state is one-dimensional and the ODE runs on (an
    encoding of) the score itself; the change is logged."""
    if setting <= p or system == "lotka_volterra":
        return setting
    log.info(
        "the latent space has %d dimension(s), one per measurement of the cohort "
        "(model.latent_dim %d caps it)",
        p,
        setting,
    )
    return p


def resolve_time_scale(setting, train: Cohort) -> float:
    """``model.time_scale``: a number is taken as it is; ``auto`` is 1 for cohorts
    without a time unit (simulated: their times are already the model's scale) and
    otherwise the training patients' median follow-up (time 0 to last visit) in the
    data's unit, so that the internal follow-up is about 1 whatever the unit. A
    cohort whose median follow-up is 0 falls back to its longest follow-up, then 1.
    """
    if setting != "auto":
        return float(setting)
    if train.time_unit == "a.u.":
        return 1.0
    follow_up = np.where(train.visits, train.times, 0.0).max(1)
    for value in (np.median(follow_up), follow_up.max()):
        if value > 0:
            return float(value)
    return 1.0


def divergence_hints(cohort: Cohort, config: dict, time_scale: float = 1.0) -> str:
    """What in the data and config usually makes the loss blow up, with values."""
    x = cohort.values[cohort.observed & cohort.visits[..., None]]
    largest = float(np.abs(x).max()) if x.size else 0.0
    t_max = float(cohort.times[cohort.visits].max()) if cohort.visits.any() else 0.0
    standardized = standardize_measurements(config)
    return (
        f"train.lr = {config['train']['lr']} too high for these data; "
        f"measurements up to |x| = {largest:.3g} with "
        f"model.standardize_measurements = {str(standardized).lower()}; "
        f"visit times up to {t_max:.3g} {cohort.time_unit}, i.e. "
        f"{t_max / time_scale:.3g} internal time units with model.time_scale = "
        f"{time_scale:.4g} (growing dynamics over long internal times overflow: "
        "use model.time_scale: auto or a larger scale)"
    )
